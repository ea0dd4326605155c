"""Shared test helpers."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def write_idx(path, array, gz=True):
  """Writes `array` (uint8 or int32) as an idx file, gzipped if `gz`."""
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = array.astype(array.dtype.newbyteorder(">")).tobytes()
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(header + payload)


def write_fake_fashion_mnist(directory, num_train=64, num_test=40, seed=0):
  """Fashion-MNIST-shaped idx files whose classes are learnable: class c is a
  bright horizontal band at row 2c plus noise. Returns the arrays written."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
      images[i, 2 * c + 4:2 * c + 7, :] = 255
    arrays[f"{prefix}-images-idx3-ubyte"] = images
    arrays[f"{prefix}-labels-idx1-ubyte"] = labels
  os.makedirs(directory, exist_ok=True)
  for name, arr in arrays.items():
    write_idx(os.path.join(directory, name + ".gz"), arr)
  return arrays


def run_cli(args, timeout=600, **kwargs):
  """Runs `python -m supcon_tf.run ARGS` from the repository root."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  return subprocess.run([sys.executable, "-m", "supcon_tf.run"] + list(args),
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout, **kwargs)


def synthetic_source(n=16, size=16, channels=3, classes=4, num_test=8, seed=0):
  """An in-memory source of random uint8 images; labels cycle through the classes
  and the test split is the first `num_test` training examples."""
  from supcon_tf.data.datasets import InMemorySource  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
  labels = (np.arange(n) % classes).astype(np.int32)
  return InMemorySource("synthetic", images, labels, images[:num_test], labels[:num_test],
                        classes, "test")
