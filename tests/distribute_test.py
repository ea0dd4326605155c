"""Strategies from the config and the replica helpers (`supcon_tf/distribute.py`).

tests/conftest.py splits the CPU into 4 logical devices before any TensorFlow op.
No MultiWorkerMirroredStrategy is built here (it starts servers): the multi-worker
paths run in two real processes in tests/multiworker_test.py.
"""

import json
import subprocess
import sys
import textwrap
import types

import pytest
import tensorflow as tf

from supcon_tf import distribute
from supcon_tf.config import ConfigError, StrategyType
from tests import testing


def _initialised_cpus():
  return tf.config.list_logical_devices("CPU")  # initialises the devices if needed


# ------------------------------------------------------------ configure_virtual_cpus
@pytest.mark.parametrize("num", [1, 2, 4])
def test_configure_virtual_cpus_is_a_no_op_when_the_split_is_large_enough(num):
  assert len(_initialised_cpus()) == 4
  distribute.configure_virtual_cpus(num)
  cpu = tf.config.list_physical_devices("CPU")[0]
  assert len(tf.config.get_logical_device_configuration(cpu)) == 4
  assert len(_initialised_cpus()) == 4


def test_configure_virtual_cpus_beyond_the_initialised_split_is_a_config_error():
  assert len(_initialised_cpus()) == 4  # initialised: the split can no longer change
  with pytest.raises(ConfigError, match="cannot split the CPU into 8 devices after "
                     "TensorFlow initialised its devices") as info:
    distribute.configure_virtual_cpus(8)
  assert "\n" not in str(info.value)
  assert len(_initialised_cpus()) == 4


def test_configure_virtual_cpus_splits_a_fresh_process():
  # The split itself can only happen before TensorFlow initialises its devices,
  # which conftest already did here: a fresh interpreter.
  code = textwrap.dedent("""
      import tensorflow as tf
      from supcon_tf import distribute
      from supcon_tf.config import ConfigError
      distribute.configure_virtual_cpus(3)
      distribute.configure_virtual_cpus(2)  # smaller: keeps the 3
      assert len(tf.config.list_logical_devices("CPU")) == 3
      distribute.configure_virtual_cpus(3)  # after initialisation, large enough
      try:
        distribute.configure_virtual_cpus(5)
      except ConfigError as e:
        assert "into 5 devices" in str(e), e
      else:
        raise AssertionError("no ConfigError")
      print("ok")
  """)
  result = subprocess.run([sys.executable, "-c", code], cwd=testing.REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "ok"


# ------------------------------------------------------------ create_strategy
def test_default_strategy_is_tensorflows_default():
  strategy = distribute.create_strategy(StrategyType.DEFAULT)
  assert strategy is tf.distribute.get_strategy()
  assert not tf.distribute.has_strategy()  # the default, not an entered strategy
  assert strategy.num_replicas_in_sync == 1


def test_mirrored_strategy_over_two_virtual_cpus():
  strategy = distribute.create_strategy(StrategyType.MIRRORED, num_virtual_cpus=2)
  assert isinstance(strategy, tf.distribute.MirroredStrategy)
  assert strategy.num_replicas_in_sync == 2
  assert [d.split("/")[-1] for d in strategy.extended.worker_devices] == [
      "device:CPU:0", "device:CPU:1"]
  # Two replicas really run (ReductionToOneDevice: no collective ops).
  ids = strategy.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group)
  assert strategy.reduce(tf.distribute.ReduceOp.SUM, ids, axis=None).numpy() == 0 + 1


def test_mirrored_strategy_without_virtual_cpus_is_one_cpu_replica():
  strategy = distribute.create_strategy(StrategyType.MIRRORED)
  assert isinstance(strategy, tf.distribute.MirroredStrategy)
  assert strategy.num_replicas_in_sync == 1
  assert strategy.extended.worker_devices[0].endswith("device:CPU:0")


def test_multi_worker_without_tf_config_is_a_config_error(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ConfigError, match="--strategy=multi_worker needs the TF_CONFIG "
                     "environment variable") as info:
    distribute.create_strategy(StrategyType.MULTI_WORKER)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON with a 'cluster' key"),
    (json.dumps({"task": {"type": "worker", "index": 0}}),
     "TF_CONFIG is not valid JSON with a 'cluster' key"),
    ("[1, 2]", "TF_CONFIG is not valid JSON with a 'cluster' key"),
    (json.dumps({"cluster": {}}), "needs the TF_CONFIG environment variable"),
    ("", "needs the TF_CONFIG environment variable"),
])
def test_multi_worker_with_invalid_tf_config_is_a_config_error(monkeypatch, tf_config,
                                                               message):
  monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(ConfigError, match=message) as info:
    distribute.create_strategy(StrategyType.MULTI_WORKER)
  assert "\n" not in str(info.value)


# ------------------------------------------------------------ batch sizes
def test_check_batch_divisible():
  assert distribute.check_batch_divisible(8, 2, "batch_size") == 4
  assert distribute.check_batch_divisible(8, 1, "batch_size") == 8
  assert distribute.check_batch_divisible(12, 4, "eval_batch_size") == 3
  with pytest.raises(ConfigError, match=r"^--eval_batch_size=10 is not divisible by the "
                     r"4 replicas in sync$"):
    distribute.check_batch_divisible(10, 4, "eval_batch_size")


# ------------------------------------------------------------ replica helpers
@pytest.fixture(scope="module")
def mirrored_2():
  return testing.mirrored_cpu_strategy(2)


def test_helpers_on_the_default_strategy():
  strategy = tf.distribute.get_strategy()
  assert distribute.num_input_pipelines(strategy) == 1
  assert distribute.num_workers(strategy) == 1
  assert distribute.task_id(strategy) == 0
  assert distribute.is_chief(strategy)


def test_helpers_on_a_mirrored_strategy(mirrored_2):
  assert mirrored_2.num_replicas_in_sync == 2
  assert mirrored_2.cluster_resolver is None
  assert distribute.num_input_pipelines(mirrored_2) == 1  # one worker, one pipeline
  assert distribute.num_workers(mirrored_2) == 1
  assert distribute.task_id(mirrored_2) == 0
  assert distribute.is_chief(mirrored_2)


def _with_resolver(cluster, task_type, task_id):
  """A stand-in strategy: the helpers below read only `cluster_resolver`."""
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
  return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize("cluster, expected", [
    ({"worker": ["a:1", "b:1"]}, 2),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, 3),
    ({"worker": ["a:1"], "ps": ["p:1", "q:1"]}, 1),  # parameter servers are no workers
    ({"ps": ["p:1"]}, 1),  # at least one
])
def test_num_workers_counts_the_chief_and_the_workers(cluster, expected):
  assert distribute.num_workers(_with_resolver(cluster, "worker", 0)) == expected


def test_task_id_reads_the_resolver():
  cluster = {"worker": ["a:1", "b:1", "c:1"]}
  assert distribute.task_id(_with_resolver(cluster, "worker", 2)) == 2
  assert distribute.task_id(_with_resolver(cluster, None, None)) == 0


def test_only_multi_worker_strategies_have_a_non_chief():
  # is_chief looks at the task only on a MultiWorkerMirroredStrategy (not built
  # in-process; see tests/multiworker_test.py): any other strategy is the chief,
  # whatever its resolver says.
  assert distribute.is_chief(_with_resolver({"worker": ["a:1", "b:1"]}, "worker", 1))


# ------------------------------------------------------------ XLA and collectives
def test_xla_holds_collectives_with_one_replica_not_two_cpus(mirrored_2):
  assert distribute.xla_holds_collectives(tf.distribute.get_strategy())
  assert distribute.xla_holds_collectives(testing.mirrored_cpu_strategy(1))
  # Two CPU replicas: collectives must go through merge_call, outside XLA.
  assert not distribute.xla_holds_collectives(mirrored_2)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))


def test_worker_devices_of_the_default_and_a_mirrored_strategy():
  assert distribute.worker_devices(tf.distribute.get_strategy()) == ["/device:CPU:0"]
  strategy = testing.mirrored_cpu_strategy(2)
  devices = distribute.worker_devices(strategy)
  assert len(devices) == 2 and all("CPU" in d for d in devices)
