"""Sources of decoded images held in memory: Fashion-MNIST and small TFDS datasets.

`InMemorySource` holds uint8 arrays. It is loaded from Debian's Fashion-MNIST idx
files (`load_fashion_mnist_idx`, the embedded default) or from any prepared TFDS
dataset of fixed-size images whose splits fit in `--max_in_memory_gb`
(`load_tfds_in_memory`: cifar10, cifar100, fashion_mnist, ...), decoded once: the
cache of small datasets.
"""

import dataclasses
import gzip
import os
import struct
from typing import ClassVar, Dict, Tuple

import numpy as np

from supcon_tf.config import ConfigError
from supcon_tf.data.sources.records import MemoryRecords
from supcon_tf.data.sources import tfds_stream

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32,
               0x0D: np.float32, 0x0E: np.float64}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class InMemorySource:
  """Decoded examples: images uint8 [N, H, W, C], labels int32 [N] (a `Source`)."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  origin: str
  class_names: Tuple[str, ...] = ()
  reports_corrupt: ClassVar[bool] = False  # decoded images cannot be corrupt

  @property
  def num_channels(self) -> int:
    return int(self.train_images.shape[-1])

  @property
  def num_train(self) -> int:
    return len(self.train_labels)

  @property
  def num_eval(self) -> int:
    return len(self.test_labels)

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int) -> int:
    """Whole global steps per epoch (every pipeline takes its share of one global
    permutation, so `num_pipelines` does not matter)."""
    del num_pipelines
    return self.num_train // global_batch_size

  def train_records(self, num_pipelines: int) -> MemoryRecords:
    del num_pipelines  # indexed: the pipeline shards the positions
    return MemoryRecords(self.train_images, self.train_labels)

  def eval_records(self, num_pipelines: int) -> MemoryRecords:
    del num_pipelines
    return MemoryRecords(self.test_images, self.test_labels)


def subset(source: InMemorySource, num_train: int, num_eval: int) -> InMemorySource:
  """The first examples of each split.

  Args:
    source: the source.
    num_train: training examples to keep (0: all).
    num_eval: evaluation examples to keep (0: all).

  Returns:
    The source with its splits cut.
  """
  def cut(arr, n):
    return arr[:n] if n else arr
  return dataclasses.replace(
      source,
      train_images=cut(source.train_images, num_train),
      train_labels=cut(source.train_labels, num_train),
      test_images=cut(source.test_images, num_eval),
      test_labels=cut(source.test_labels, num_eval))


def split_parts(flag: str, split: str, sizes: Dict[str, int], where: str) -> list:
  """The absolute [from, to) ranges of a TFDS-style split over named split sizes.

  Args:
    flag: the flag that gave the split (for the message).
    split: e.g. "train[:90%]" or "train+test[:50%]".
    sizes: {split name: examples}.
    where: which splits exist, for the message.

  Returns:
    TFDS's absolute instructions (`.splitname`, `.from_`, `.to`).

  Raises:
    ConfigError: a split the syntax or the names do not allow.
  """
  import types  # pylint: disable=g-import-not-at-top
  infos = {k: types.SimpleNamespace(name=k, num_examples=n) for k, n in sizes.items()}
  try:
    return tfds_stream.read_instruction(split).to_absolute(infos)
  except (ValueError, AssertionError) as e:
    raise ConfigError(f"--{flag}={split!r}: {str(e).splitlines()[0]} ({where})") from None


def select_splits(source: InMemorySource, train_split: str,
                  eval_split: str) -> InMemorySource:
  """The TFDS-style splits (e.g. "train[:90%]", "train[90%:]") of a source's two.

  Lets a source without TFDS metadata (the Fashion-MNIST idx files) hold out a
  validation set, with TFDS's own slicing semantics (percent rounding, "+" unions).

  Args:
    source: a source whose `train_*` arrays are split "train" and `test_*` "test".
    train_split: the split to train on.
    eval_split: the split to evaluate on.

  Returns:
    The source with its arrays cut and joined as the splits say.

  Raises:
    ConfigError: a split the syntax or the source's split names do not allow.
  """
  if (train_split, eval_split) == ("train", "test"):
    return source
  arrays = {"train": (source.train_images, source.train_labels),
            "test": (source.test_images, source.test_labels)}
  sizes = {k: len(v[1]) for k, v in arrays.items()}
  chosen = []
  for flag, split in (("train_split", train_split), ("eval_split", eval_split)):
    parts = split_parts(flag, split, sizes,
                        f"the {source.name} idx files have splits train and test")
    images = np.concatenate([arrays[p.splitname][0][p.from_:p.to] for p in parts])
    labels = np.concatenate([arrays[p.splitname][1][p.from_:p.to] for p in parts])
    if not len(labels):
      raise ConfigError(f"--{flag}={split!r} of {source.name} is empty")
    chosen += [images, labels]
  return dataclasses.replace(source, train_images=chosen[0], train_labels=chosen[1],
                             test_images=chosen[2], test_labels=chosen[3])


# ------------------------------------------------------------------ idx files
def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (optionally gzipped).

  Args:
    path: the file; gzipped if it ends with ".gz".

  Returns:
    The array, in native byte order.

  Raises:
    ValueError: not an idx file, or its size does not match its header.
  """
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
  """Fashion-MNIST from its four idx files (gzipped or not).

  Args:
    directory: holds train-images-idx3-ubyte[.gz] and the three others.

  Returns:
    The source (28 x 28 x 1 images, 10 named classes).

  Raises:
    ConfigError: a file is missing or a split is empty.
    ValueError: a file is not an idx file, or images and labels do not match.
  """
  arrays = {}
  for split, (images_stem, labels_stem) in _IDX_FILES.items():
    images = read_idx(_find_idx(directory, images_stem))
    labels = read_idx(_find_idx(directory, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(f"{directory}: {split} images {images.shape} and labels "
                       f"{labels.shape} do not match")
    if not len(labels):
      raise ConfigError(f"{directory}: the Fashion-MNIST {split} split is empty")
    arrays[split] = (images[..., None].astype(np.uint8), labels.astype(np.int32))
  return InMemorySource("fashion_mnist", *arrays["train"], *arrays["test"],
                        num_classes=10, origin=f"idx files in {directory}",
                        class_names=FASHION_MNIST_CLASSES)


# ------------------------------------------------------------------ TFDS
def load_tfds_in_memory(name: str, data_dir: str, train_split: str,
                        eval_split: str) -> InMemorySource:
  """A prepared TFDS image-classification dataset of fixed-size images, decoded.

  Args:
    name: the TFDS name (features `image` and `label`).
    data_dir: where it is prepared.
    train_split: TFDS split of the training examples (e.g. "train[:90%]").
    eval_split: TFDS split of the evaluation examples.

  Returns:
    The source.

  Raises:
    ConfigError: variable-size images, a bad split name or an empty split.
  """
  builder = tfds_stream.tfds_builder(name, data_dir)
  features = builder.info.features
  shape = features["image"].shape
  if None in shape[:2]:
    raise ConfigError(f"TFDS {name} has variable-size images {shape}: it is streamed, "
                      "not held in memory")
  splits = {}
  for role, split in (("train", train_split), ("eval", eval_split)):
    tfds_stream.split_num_examples(builder, split)  # a clear error for a bad split
    chunks = tfds_stream.numpy_batches(builder, split, 8192)
    if not chunks:
      raise ConfigError(f"TFDS {name} split {split!r} is empty")
    images = np.concatenate([c["image"] for c in chunks])
    labels = np.concatenate([c["label"] for c in chunks])
    if images.ndim == 3:
      images = images[..., None]
    splits[role] = (images.astype(np.uint8), labels.astype(np.int32))
  label = features["label"]
  return InMemorySource(name, *splits["train"], *splits["eval"],
                        num_classes=label.num_classes,
                        origin=f"TFDS under {data_dir} (decoded in memory)",
                        class_names=tuple(label.names))
