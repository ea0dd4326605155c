"""Distribution strategies from the config, and small replica helpers."""

import json
import os
from typing import List

import tensorflow as tf

from supcon_tf.config import ConfigError, StrategyType


def configure_virtual_cpus(num: int) -> None:
  """Splits the first physical CPU into `num` logical devices (tests, CPU runs).

  Must run before TensorFlow initialises its devices. Idempotent: nothing happens
  when the CPU is already split (or initialised) into at least `num` devices.

  Args:
    num: logical CPU devices wanted.

  Raises:
    ConfigError: TensorFlow initialised fewer devices before this call.
  """
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current is not None and len(current) >= num:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num)])
  except RuntimeError as e:
    if len(tf.config.list_logical_devices("CPU")) >= num:
      return
    raise ConfigError(f"cannot split the CPU into {num} devices after TensorFlow "
                      f"initialised its devices: {e}") from None


def create_strategy(strategy_type: StrategyType, tpu: str = "",
                    num_virtual_cpus: int = 0) -> tf.distribute.Strategy:
  """Creates the strategy of --strategy.

  Args:
    strategy_type: DEFAULT (TensorFlow's default strategy), MIRRORED (every GPU;
      without GPUs `num_virtual_cpus` logical CPUs, or CPU:0), TPU or
      MULTI_WORKER (from the TF_CONFIG environment variable).
    tpu: TPU name or address; empty: the resolver's default.
    num_virtual_cpus: MIRRORED without GPUs: replicas on that many logical CPUs
      (split by `configure_virtual_cpus`) when > 1.

  Returns:
    The strategy.

  Raises:
    ConfigError: with a one-line reason: the TPU cannot be reached, TF_CONFIG is
      missing or invalid, or the CPU cannot be split.
  """
  if strategy_type == StrategyType.TPU:
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
      raise ConfigError(f"cannot reach TPU {tpu!r}: {str(e).splitlines()[0]}") from None
    return tf.distribute.TPUStrategy(resolver)
  if strategy_type == StrategyType.MIRRORED:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
      return tf.distribute.MirroredStrategy()
    if num_virtual_cpus > 1:
      configure_virtual_cpus(num_virtual_cpus)
      devices = [f"/cpu:{i}" for i in range(num_virtual_cpus)]
      return tf.distribute.MirroredStrategy(
          devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.MirroredStrategy(["/cpu:0"])
  if strategy_type == StrategyType.MULTI_WORKER:
    tf_config = os.environ.get("TF_CONFIG", "")
    try:
      cluster = json.loads(tf_config)["cluster"] if tf_config else None
    except (ValueError, KeyError, TypeError):
      raise ConfigError("TF_CONFIG is not valid JSON with a 'cluster' key") from None
    if not cluster:
      raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment "
                        "variable (cluster and task)")
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Workers of the cluster (chief included; 1 without a cluster resolver).

  Args:
    strategy: any strategy; only its `cluster_resolver` is read.

  Returns:
    The number of "worker" plus "chief" tasks, at least 1.
  """
  resolver = strategy.cluster_resolver
  if resolver is None:
    return 1
  spec = resolver.cluster_spec().as_dict()
  return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def num_input_pipelines(strategy: tf.distribute.Strategy) -> int:
  """Input pipelines `distribute_datasets_from_function` will create.

  Args:
    strategy: the run's strategy.

  Returns:
    One per worker (MultiWorkerMirroredStrategy) or TPU host, 1 otherwise.
  """
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return max(1, int(strategy.extended.num_hosts))
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return num_workers(strategy)
  return 1


def task_id(strategy: tf.distribute.Strategy) -> int:
  """This worker's task id.

  Args:
    strategy: any strategy; only its `cluster_resolver` is read.

  Returns:
    The resolver's task id; 0 without a cluster resolver or task id.
  """
  resolver = strategy.cluster_resolver
  return int(resolver.task_id or 0) if resolver is not None else 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this worker writes summaries, configs and checkpoints.

  Args:
    strategy: the run's strategy.

  Returns:
    True except on a MultiWorkerMirroredStrategy worker that is not the chief:
    the "chief" task, or worker 0 when the cluster has no chief.
  """
  resolver = strategy.cluster_resolver
  if resolver is None or not isinstance(strategy,
                                        tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                          "chief" not in resolver.cluster_spec().jobs)


def xla_holds_collectives(strategy: tf.distribute.Strategy) -> bool:
  """Whether an XLA-compiled piece of the replica step may contain collectives.

  E.g. synchronised BatchNorm: TensorFlow compiles collectives without
  `merge_call` only when every replica is a GPU (or on TPU, where the whole step
  is XLA).

  Args:
    strategy: the run's strategy.

  Returns:
    True for one replica, a TPU strategy, or replicas that are all GPUs.
  """
  if strategy.num_replicas_in_sync == 1 or isinstance(strategy, tf.distribute.TPUStrategy):
    return True
  return all("GPU" in d.upper() for d in strategy.extended.worker_devices)


def worker_devices(strategy: tf.distribute.Strategy) -> List[str]:
  """This worker's replica devices (the default strategy's: the one TensorFlow
  places on, the first GPU if any, else the CPU)."""
  try:
    return list(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy does not say
    gpus = tf.config.list_logical_devices("GPU")
    return [gpus[0].name if gpus else "/device:CPU:0"]


def check_batch_divisible(batch_size: int, num_replicas: int, name: str) -> int:
  """The per-replica batch size.

  Args:
    batch_size: global batch size.
    num_replicas: replicas in sync.
    name: the flag of `batch_size`, for the message (e.g. "eval_batch_size").

  Returns:
    `batch_size // num_replicas`.

  Raises:
    ConfigError: `batch_size` does not divide by `num_replicas`.
  """
  if batch_size % num_replicas:
    raise ConfigError(f"--{name}={batch_size} is not divisible by the "
                      f"{num_replicas} replicas in sync")
  return batch_size // num_replicas
