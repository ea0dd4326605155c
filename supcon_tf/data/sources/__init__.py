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
expensive work. The class list of a run is kept in model_dir/classes.json
(`check_and_write_classes`).
"""

import dataclasses
import json
import os
from typing import Optional, Protocol, Tuple, runtime_checkable

from absl import logging
import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig, IMAGE_FOLDER
from supcon_tf.data.sources import image_folder
from supcon_tf.data.sources import memory
from supcon_tf.data.sources import records
from supcon_tf.data.sources import tfds_stream

CLASSES_FILE = "classes.json"


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
    ConfigError: the source cannot be found, is empty, or (image folder) most
      sampled images do not decode.
  """
  d = data_config
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


# Published split sizes (TFDS catalog) of the datasets the experiments name.
_KNOWN = {
    "fashion_mnist": (60000, 10000, 10, 1),
    "mnist": (60000, 10000, 10, 1),
    "cifar10": (50000, 10000, 10, 3),
    "cifar100": (50000, 10000, 100, 3),
    "imagenet2012": (1281167, 50000, 1000, 3),
}


def dataset_metadata(data_config: DataConfig) -> DatasetMetadata:
  """Split sizes without reading images (for --mode=dry_run).

  An image folder is listed, a TFDS dataset prepared under --data_dir gives its
  own split sizes, and the datasets of the experiment files have their catalog
  sizes.

  Args:
    data_config: the run's data configuration.

  Returns:
    The metadata.

  Raises:
    ConfigError: a dataset neither prepared nor in the catalog table.
  """
  d = data_config
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
  train, evaluation, classes, channels = _KNOWN[d.dataset]
  if d.num_train_examples:
    train = min(train, d.num_train_examples)
  if d.num_eval_examples:
    evaluation = min(evaluation, d.num_eval_examples)
  return DatasetMetadata(d.dataset, train, evaluation, classes, channels,
                         "the TFDS catalog")


# ------------------------------------------------------------------ class list
def classes_record(source: Source) -> Optional[dict]:
  """What model_dir/classes.json holds for `source`.

  Args:
    source: the run's source.

  Returns:
    {"dataset", "num_classes", "classes"}, or None when it names no classes.
  """
  names = tuple(source.class_names)
  if not names:
    return None
  return {"dataset": source.name, "num_classes": len(names), "classes": list(names)}


def check_and_write_classes(model_dir: str, source: Source, write: bool) -> None:
  """Keeps the meaning of the label ids of a model_dir.

  Refuses a model_dir whose classes.json lists other classes (the label ids
  would mean different things); writes it (atomically) when `write`.

  Args:
    model_dir: the run's directory.
    source: the run's source.
    write: write classes.json if it is missing (the chief of a training run).

  Raises:
    ConfigError: classes.json is not JSON or lists other classes.
  """
  record = classes_record(source)
  if record is None:
    return
  path = os.path.join(model_dir, CLASSES_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      try:
        old = json.load(f)
      except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None
    if old.get("classes") != record["classes"]:
      added = sorted(set(record["classes"]) - set(old.get("classes", [])))[:3]
      raise ConfigError(
          f"the classes of the data ({len(record['classes'])}"
          + (f", e.g. new: {', '.join(added)}" if added else "") + ") differ from the "
          f"{len(old.get('classes', []))} in {path}: use a new --model_dir")
    return
  if write:
    tf.io.gfile.makedirs(model_dir)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(json.dumps(record, indent=2) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
