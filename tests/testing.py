"""Shared test helpers."""

import tensorflow as tf


def setup_virtual_cpus(n: int) -> None:
  """Splits the physical CPU into (at least) `n` logical CPU devices.

  Must run before TensorFlow initialises its devices (before the first op). It is
  idempotent: if the CPU is already configured (or initialised) with >= n logical
  devices it does nothing; with fewer it raises a RuntimeError saying why.
  """
  cpus = tf.config.list_physical_devices("CPU")
  if not cpus:
    raise RuntimeError("no physical CPU device found")
  configured = tf.config.get_logical_device_configuration(cpus[0])
  if configured:
    if len(configured) >= n:
      return
    raise RuntimeError(
        f"the CPU is already configured with {len(configured)} logical devices, "
        f"{n} are needed: call setup_virtual_cpus({n}) before any other setup")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
  except RuntimeError as e:
    # Devices were initialised already (some TF op ran first).
    logical = tf.config.list_logical_devices("CPU")
    if len(logical) >= n:
      return
    raise RuntimeError(
        f"TensorFlow initialised {len(logical)} logical CPU device(s) before "
        f"setup_virtual_cpus({n}) ran: call it (e.g. from tests/conftest.py) before "
        f"any TensorFlow op") from e


def mirrored_cpu_strategy(n: int, cross_device_ops=None):
  """A MirroredStrategy over logical CPUs 0..n-1 (see `setup_virtual_cpus`).

  Strategies over different device sets in one process would otherwise allocate
  the same collective group keys and fail ("joining a group with size 4, but that
  group has size 2"); like TensorFlow's own strategy_combinations, move every new
  strategy's collective key base out of the way of the previous ones.
  """
  logical = tf.config.list_logical_devices("CPU")
  if len(logical) < n:
    raise RuntimeError(f"{n} logical CPUs needed, {len(logical)} configured: call "
                       f"setup_virtual_cpus({n}) before any TensorFlow op")
  # pylint: disable=protected-access
  tf.distribute.MirroredStrategy._collective_key_base += 100000
  # pylint: enable=protected-access
  return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)],
                                        cross_device_ops=cross_device_ops)
