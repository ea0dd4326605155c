"""Data sources: where the (image, label) examples come from.

This release holds Fashion-MNIST in memory, read either from a prepared TFDS copy
under `--data_dir` or from the idx files of Debian's `dataset-fashion-mnist`
package. The pipeline (`pipeline.py`) only needs an `InMemorySource`, so other
sources (TFDS streams, image folders) can be added beside it.
"""

import dataclasses
import gzip
import os
import struct

from absl import logging
import numpy as np

from supcon_tf.config import ConfigError, DataConfig

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32,
               0x0D: np.float32, 0x0E: np.float64}


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
  """What a run needs to know about a dataset before reading it."""
  name: str
  num_train: int
  num_eval: int
  num_classes: int
  channels: int
  origin: str


# Published split sizes (TFDS catalog) of the datasets the experiments name.
_KNOWN = {
    "fashion_mnist": (60000, 10000, 10, 1),
    "mnist": (60000, 10000, 10, 1),
    "cifar10": (50000, 10000, 10, 3),
    "cifar100": (50000, 10000, 100, 3),
    "imagenet2012": (1281167, 50000, 1000, 3),
}


def dataset_metadata(data_config: DataConfig) -> DatasetMetadata:
  """Split sizes without reading data (for --mode=dry_run)."""
  if data_config.dataset not in _KNOWN:
    raise ConfigError(f"--dataset={data_config.dataset!r}: sizes unknown; known: "
                      f"{', '.join(sorted(_KNOWN))}")
  train, evaluation, classes, channels = _KNOWN[data_config.dataset]
  if data_config.num_train_examples:
    train = min(train, data_config.num_train_examples)
  if data_config.num_eval_examples:
    evaluation = min(evaluation, data_config.num_eval_examples)
  return DatasetMetadata(data_config.dataset, train, evaluation, classes, channels,
                         "the TFDS catalog")


@dataclasses.dataclass(frozen=True)
class InMemorySource:
  """Decoded examples: images uint8 [N, H, W, C], labels int32 [N]."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  origin: str

  @property
  def image_shape(self):
    return self.train_images.shape[1:]

  @property
  def num_channels(self):
    return self.train_images.shape[-1]


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (optionally gzipped) into a NumPy array."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"{path} is not an idx file (bad magic number)")
  dtype = np.dtype(_IDX_DTYPES[data[2]]).newbyteorder(">")
  ndim = data[3]
  dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  expected = int(np.prod(dims)) * dtype.itemsize
  payload = data[4 + 4 * ndim:]
  if len(payload) != expected:
    raise ValueError(f"{path}: expected {expected} bytes of data for shape {dims}, "
                     f"found {len(payload)}")
  return np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(dims)


def _find_idx(directory, stem):
  for candidate in (stem + ".gz", stem):
    path = os.path.join(directory, candidate)
    if os.path.exists(path):
      return path
  raise ConfigError(
      f"Fashion-MNIST file {stem}[.gz] not found in {directory!r}: install Debian's "
      "dataset-fashion-mnist package (make data) or pass --fashion_mnist_dir")


def load_fashion_mnist_idx(directory: str) -> InMemorySource:
  arrays = {}
  for split, (images_stem, labels_stem) in _IDX_FILES.items():
    images = read_idx(_find_idx(directory, images_stem))
    labels = read_idx(_find_idx(directory, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(f"{directory}: {split} images {images.shape} and labels "
                       f"{labels.shape} do not match")
    arrays[split] = (images[..., None].astype(np.uint8), labels.astype(np.int32))
  return InMemorySource("fashion_mnist", *arrays["train"], *arrays["test"],
                        num_classes=10, origin=f"idx files in {directory}")


def tfds_prepared(name: str, data_dir: str) -> bool:
  """True if TFDS dataset `name` is prepared under `data_dir`."""
  if not data_dir:
    return False
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False


# Decoded in memory only below this size; larger datasets need a streaming source.
_MAX_IN_MEMORY_BYTES = 4 << 30


def load_tfds_in_memory(name: str, data_dir: str, train_split: str = "train",
                        eval_split: str = "test") -> InMemorySource:
  """A prepared TFDS image-classification dataset (features `image`, `label`),
  decoded into memory. Raises ConfigError when it is too large for that."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ConfigError(f"TFDS {name} has no 'image' and 'label' features")
  shape = features["image"].shape
  if None in shape[:2]:
    raise ConfigError(f"TFDS {name} has variable-size images {shape}: in-memory loading "
                      "needs fixed sizes (streaming sources are not implemented yet)")
  splits = {}
  for role, split in (("train", train_split), ("eval", eval_split)):
    try:
      ds = builder.as_dataset(split=split)
    except (ValueError, KeyError) as e:
      raise ConfigError(f"TFDS {name}: bad split {split!r}: {str(e).splitlines()[0]}") from None
    count = int(ds.cardinality())
    if count > 0 and count * int(np.prod([d or 1 for d in shape])) > _MAX_IN_MEMORY_BYTES:
      raise ConfigError(f"TFDS {name} split {split!r} is too large to hold in memory")
    chunks = list(tfds.as_numpy(ds.batch(8192)))
    if not chunks:
      raise ConfigError(f"TFDS {name} split {split!r} is empty")
    images = np.concatenate([c["image"] for c in chunks])
    labels = np.concatenate([c["label"] for c in chunks])
    if images.ndim == 3:
      images = images[..., None]
    splits[role] = (images.astype(np.uint8), labels.astype(np.int32))
  num_classes = features["label"].num_classes
  return InMemorySource(name, *splits["train"], *splits["eval"],
                        num_classes=num_classes, origin=f"TFDS under {data_dir}")


def load_source(data_config: DataConfig) -> InMemorySource:
  """The source named by the config. Raises ConfigError if it cannot be found.

  A TFDS dataset prepared under --data_dir is used when there is one; otherwise
  fashion_mnist is read from Debian's idx files.
  """
  name = data_config.dataset
  if tfds_prepared(name, data_config.data_dir):
    source = load_tfds_in_memory(name, data_config.data_dir, data_config.train_split,
                                 data_config.eval_split)
  elif name == "fashion_mnist":
    if data_config.data_dir:
      logging.info("TFDS %s not prepared under %s; reading the idx files", name,
                   data_config.data_dir)
    if not os.path.isdir(data_config.fashion_mnist_dir):
      raise ConfigError(
          f"--fashion_mnist_dir={data_config.fashion_mnist_dir!r} does not exist: "
          "install Debian's dataset-fashion-mnist package (make data), or put the "
          "four idx files in a directory and pass it")
    source = load_fashion_mnist_idx(data_config.fashion_mnist_dir)
  else:
    raise ConfigError(
        f"--dataset={name!r} is not prepared under --data_dir={data_config.data_dir!r}: "
        "prepare it with TFDS (e.g. `tfds build " + name + " --data_dir=DIR`) and pass "
        "that directory")
  return subset(source, data_config.num_train_examples, data_config.num_eval_examples)


def subset(source: InMemorySource, num_train: int, num_eval: int) -> InMemorySource:
  """The first `num_train` / `num_eval` examples (0 keeps all)."""
  def cut(arr, n):
    return arr[:n] if n else arr
  return dataclasses.replace(
      source,
      train_images=cut(source.train_images, num_train),
      train_labels=cut(source.train_labels, num_train),
      test_images=cut(source.test_images, num_eval),
      test_labels=cut(source.test_labels, num_eval))
