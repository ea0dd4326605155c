"""Data sources: where the (image, label) examples come from.

A source is anything that satisfies the written `Source` protocol below: its
sizes and class names, and the *records* of each split (`sources/records.py`) that
`data/pipeline.py` turns into datasets. Sources build no pipelines. Three kinds,
chosen by `load_source` from the config:

* `memory.InMemorySource`: decoded uint8 arrays (Fashion-MNIST from Debian's idx
  files; prepared TFDS datasets of fixed-size images that fit
  `--max_in_memory_gb`), read by index.
* `tfds_stream.TfdsStreamSource`: a prepared TFDS dataset read from its record
  files on every epoch (imagenet2012, variable-size or larger datasets).
* `image_folder.ImageFolderSource`: a user's folder of images, one sub-folder
  per class, read by index; undecodable files are skipped and counted.

A missing or empty source raises `ConfigError` with a one-line message before any
expensive work. The class names (`class_names`) are what model_dir/classes.json
keeps (`workdir.check_and_write_classes`).
"""

import dataclasses
import os
from typing import Protocol, Tuple, runtime_checkable

from absl import logging
import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig, IMAGE_FOLDER
from supcon_tf.data.sources import image_folder
from supcon_tf.data.sources import memory
from supcon_tf.data.sources import records
from supcon_tf.data.sources import tfds_stream

@runtime_checkable
class Source(Protocol):
  """What the trainer and the pipeline know of a data source.

  Attributes:
    name: the dataset's name (a TFDS name, or `IMAGE_FOLDER`).
    origin: where the examples come from, for the start-up line.
    num_train: training examples (one epoch, before truncation to whole steps).
    num_eval: evaluation examples.
    num_classes: label ids are 0..num_classes-1.
    num_channels: channels of the images (1 or 3).
    class_names: the name of each label id; () when the dataset names none.
    reports_corrupt: whether training and evaluation batches carry "corrupt"
      (undecodable images skipped and counted).
  """
  name: str
  origin: str
  num_train: int
  num_eval: int
  num_classes: int
  num_channels: int
  class_names: Tuple[str, ...]
  reports_corrupt: bool

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int) -> int:
    """Whole global steps of one training epoch read by `num_pipelines` pipelines."""

  def train_records(self, num_pipelines: int) -> records.Records:
    """The training split's records for `num_pipelines` input pipelines."""

  def eval_records(self, num_pipelines: int) -> records.Records:
    """The evaluation split's records for `num_pipelines` input pipelines."""


def check_given_locations(data_config: DataConfig, remote: bool = True) -> None:
  """Refuses a data location the command gives that does not exist.

  Even where the source could do without it (--data_dir on the embedded
  Fashion-MNIST default, where a dataset not prepared there falls back to the idx
  files): a mistyped path must not silently select other data. --fashion_mnist_dir
  counts as given when it is not its default and the dataset is fashion_mnist.

  Args:
    data_config: the run's data configuration.
    remote: also check gs:// (and other non-local) paths, through tf.io.gfile.

  Raises:
    ConfigError: the first location that does not exist.
  """
  d = data_config
  given = [("data_dir", d.data_dir)] if d.data_dir else []
  if (d.dataset == "fashion_mnist" and
      d.fashion_mnist_dir != DataConfig().fashion_mnist_dir):
    given.append(("fashion_mnist_dir", d.fashion_mnist_dir))
  for flag, path in given:
    if "://" in path and not remote:
      continue
    if not (tf.io.gfile.isdir(path) if "://" in path else os.path.isdir(path)):
      raise ConfigError(f"--{flag}={path!r} does not exist (a given data location is "
                        "never skipped: fix the path or drop the flag)")


def check_balanced_batches(source: Source, samples_per_class: int,
                           batch_size: int) -> None:
  """Refuses --samples_per_class a source cannot give (`data/balanced.py`).

  Raises:
    ConfigError: a streamed source (no random access by class), or more classes per
      batch (batch_size / samples_per_class) than the source has.
  """
  if not samples_per_class:
    return
  if isinstance(source, tfds_stream.TfdsStreamSource):
    raise ConfigError(f"--samples_per_class needs random access by class; {source.name} "
                      "is streamed from its TFDS records (--max_in_memory_gb decides)")
  if batch_size // samples_per_class > source.num_classes:
    raise ConfigError(f"--samples_per_class={samples_per_class}: a batch of {batch_size} "
                      f"needs {batch_size // samples_per_class} classes; "
                      f"{source.name} has {source.num_classes}")


def load_source(data_config: DataConfig) -> Source:
  """The source named by the config.

  --image_dir: an image folder. A TFDS dataset prepared under --data_dir: in
  memory if its images have a fixed size and the splits fit --max_in_memory_gb,
  else streamed. fashion_mnist otherwise comes from Debian's idx files.

  Args:
    data_config: the run's data configuration.

  Returns:
    The source.

  Raises:
    ConfigError: a given location does not exist (`check_given_locations`), the
      source cannot be found, is empty, or (image folder) most sampled images do
      not decode.
  """
  d = data_config
  check_given_locations(d)
  check_labelled_splits(d)
  name = d.dataset
  if d.image_dir:
    source = image_folder.load_image_folder(d)
    tried, failed, first = image_folder.probe_decodable(source)
    if failed * 2 > tried:
      raise ConfigError(f"--image_dir={d.image_dir!r}: {failed} of {tried} sampled "
                        f"images do not decode (e.g. {first})")
    return source
  if tfds_stream.tfds_prepared(name, d.data_dir):
    builder = tfds_stream.tfds_builder(name, d.data_dir)
    if tfds_stream.fits_in_memory(builder, (d.train_split, d.eval_split),
                                  d.max_in_memory_gb):
      source = memory.load_tfds_in_memory(name, d.data_dir, d.train_split, d.eval_split)
      return memory.subset(source, d.num_train_examples, d.num_eval_examples)
    return tfds_stream.TfdsStreamSource.create(d, builder)
  if name == "fashion_mnist":
    if d.data_dir:
      logging.info("TFDS %s not prepared under %s; reading the idx files", name,
                   d.data_dir)
    if not os.path.isdir(d.fashion_mnist_dir):
      raise ConfigError(
          f"--fashion_mnist_dir={d.fashion_mnist_dir!r} does not exist: "
          "install Debian's dataset-fashion-mnist package (make data), or put the "
          "four idx files in a directory and pass it")
    source = memory.load_fashion_mnist_idx(d.fashion_mnist_dir)
    source = memory.select_splits(source, d.train_split, d.eval_split)
    return memory.subset(source, d.num_train_examples, d.num_eval_examples)
  raise ConfigError(
      f"--dataset={name!r} is not prepared under --data_dir={d.data_dir!r}: "
      "prepare it with TFDS (e.g. `tfds build " + name + " --data_dir=DIR`; imagenet2012 "
      "needs the manual download) and pass that directory")


# ------------------------------------------------------------------ metadata
@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
  """What a run needs to know about a dataset before reading it."""
  name: str
  num_train: int
  num_eval: int
  num_classes: int
  channels: int
  origin: str


# Published split sizes (TFDS catalog) of the datasets the experiments name:
# ({split: examples}, classes, channels).
_KNOWN = {
    "fashion_mnist": ({"train": 60000, "test": 10000}, 10, 1),
    "mnist": ({"train": 60000, "test": 10000}, 10, 1),
    "cifar10": ({"train": 50000, "test": 10000}, 10, 3),
    "cifar100": ({"train": 50000, "test": 10000}, 100, 3),
    "imagenet2012": ({"train": 1281167, "validation": 50000, "test": 100000}, 1000, 3),
}
# Splits TFDS ships without labels (every label -1): nothing to train or score on.
_UNLABELLED = {"imagenet2012": ("test",)}


def check_labelled_splits(data_config: DataConfig) -> None:
  """Refuses a --train_split/--eval_split naming a split TFDS ships unlabelled.

  imagenet2012's "test" split has label -1 on every image: evaluating on it would
  score 0% (and train on it, learn nothing) without an error.

  Raises:
    ConfigError: such a split.
  """
  d = data_config
  for flag, split in (("train_split", d.train_split), ("eval_split", d.eval_split)):
    names = {part.split("[")[0].strip() for part in split.split("+")}
    for name in sorted(names.intersection(_UNLABELLED.get(d.dataset, ()))):
      raise ConfigError(f"--{flag}={split!r}: {d.dataset}'s {name!r} split has no "
                        "labels (TFDS gives -1); evaluate on 'validation'")


def dataset_metadata(data_config: DataConfig) -> DatasetMetadata:
  """Split sizes without reading images (for --mode=dry_run).

  An image folder is listed, a TFDS dataset prepared under --data_dir gives its
  own split sizes, and the datasets of the experiment files have their catalog
  sizes, sliced as --train_split/--eval_split say (e.g. train[:90%]: 54,000 of
  Fashion-MNIST's 60,000).

  Args:
    data_config: the run's data configuration.

  Returns:
    The metadata.

  Raises:
    ConfigError: a given local location does not exist (remote ones are not
      checked: a dry run plans a pod's run on a laptop), a dataset neither
      prepared nor in the catalog table, a split it does not have or an unlabelled
      one.
  """
  d = data_config
  check_given_locations(d, remote=False)
  check_labelled_splits(d)
  if d.image_dir:
    source = image_folder.load_image_folder(d)
    return DatasetMetadata(IMAGE_FOLDER, source.num_train, source.num_eval,
                           source.num_classes, source.num_channels, source.origin)
  if tfds_stream.tfds_prepared(d.dataset, d.data_dir):
    source = tfds_stream.TfdsStreamSource.create(d)
    return DatasetMetadata(d.dataset, source.num_train, source.num_eval,
                           source.num_classes, source.num_channels, source.origin)
  if d.dataset not in _KNOWN:
    raise ConfigError(f"--dataset={d.dataset!r}: not prepared under --data_dir="
                      f"{d.data_dir!r} and its sizes are unknown; known: "
                      f"{', '.join(sorted(_KNOWN))}")
  sizes, classes, channels = _KNOWN[d.dataset]
  where = f"{d.dataset} has splits {', '.join(sizes)}"
  train, evaluation = (
      sum((sizes[p.splitname] if p.to is None else p.to) - (p.from_ or 0)
          for p in memory.split_parts(flag, split, sizes, where))
      for flag, split in (("train_split", d.train_split), ("eval_split", d.eval_split)))
  if d.num_train_examples:
    train = min(train, d.num_train_examples)
  if d.num_eval_examples:
    evaluation = min(evaluation, d.num_eval_examples)
  return DatasetMetadata(d.dataset, train, evaluation, classes, channels,
                         "the TFDS catalog")
