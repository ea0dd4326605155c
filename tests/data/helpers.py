"""Helpers of the data tests: images, specs and options.

The specs and options are the run's defaults (`DataConfig()`) with fields
replaced; DataConfig's defaults are what the views and pipelines took by default
before they took specs, so the tests keep their values.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from supcon_tf.config import DataConfig
from supcon_tf.data import pipeline
from supcon_tf.data.augment import views
from tests import testing


def view_spec(**fields) -> views.ViewSpec:
  """`ViewSpec.from_config(DataConfig())` with `fields` replaced."""
  return dataclasses.replace(views.ViewSpec.from_config(DataConfig()), **fields)


def eval_spec(**fields) -> views.EvalViewSpec:
  """`EvalViewSpec.from_config(DataConfig())` with `fields` replaced."""
  return dataclasses.replace(views.EvalViewSpec.from_config(DataConfig()), **fields)


def options(**fields) -> pipeline.InputOptions:
  """Deterministic input options (`InputOptions.from_config` of a
  --deterministic run) with `fields` replaced."""
  return dataclasses.replace(
      pipeline.InputOptions.from_config(DataConfig(deterministic=True)), **fields)


def take(ds, n):
  """The first `n` elements of `ds` as dicts of NumPy arrays."""
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


SEED = tf.constant([3, 4], tf.int64)
OTHER_SEED = tf.constant([3, 5], tf.int64)


def image(channels, dtype, size=36, seed=1):
  """A random [size, size, channels] image, uint8 or float32 in [0, 1]."""
  rng = np.random.default_rng(seed)
  pixels = rng.integers(0, 256, (size, size, channels)).astype(np.uint8)
  if dtype == tf.uint8:
    return tf.constant(pixels)
  return tf.constant(pixels / 255.0, tf.float32)


def smooth_image(height, width, seed=0):
  """A smooth uint8 RGB image (encodes well as JPEG)."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((1, 4, 4, 3)).astype(np.float32) * 255.0
  return tf.cast(tf.image.resize(coarse, [height, width])[0], tf.uint8)


def mapped(fn, *args):
  """`fn(*args)` run inside Dataset.map (a traced graph)."""
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  return next(iter(dataset))


def check_range(x, low=0.0, high=1.0):
  assert x.dtype == tf.float32
  assert float(tf.reduce_min(x)) >= low and float(tf.reduce_max(x)) <= high


def fake_fashion_dir(directory, n_train=40, n_test=20, gz=True):
  """Fashion-MNIST idx files of random images in `directory`; returns the arrays."""
  rng = np.random.default_rng(0)
  suffix = ".gz" if gz else ""
  arrays = {
      "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
      "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
      "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
  }
  for name, arr in arrays.items():
    testing.write_idx(os.path.join(directory, name + suffix), arr, gz)
  return arrays
