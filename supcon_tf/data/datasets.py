"""Data sources: where the (image, label) examples come from.

Three kinds, one interface (`train_dataset`, `eval_dataset`, `eval_examples`,
`steps_per_epoch` and a few sizes), chosen by `load_source` from the config:

* `InMemorySource`: decoded uint8 arrays. Fashion-MNIST from Debian's idx files,
  and any prepared TFDS dataset of fixed-size images whose splits fit in
  `--max_in_memory_gb` (cifar10, cifar100, fashion_mnist, ...): decoded once, the
  cache of small datasets.
* `TfdsStreamSource`: a prepared TFDS image-classification dataset (features
  `image` and `label`) read from its record files on every epoch: imagenet2012,
  variable-size datasets and anything larger than the memory budget. Per-host
  sharding through `tfds.ReadConfig(input_context=...)`; JPEGs decoded crop-only.
* `ImageFolderSource`: a user's folder of images, one sub-folder per class;
  undecodable files are skipped and counted (see `pipeline.py`).

A missing or empty source raises `ConfigError` with a one-line message before any
expensive work.
"""

import dataclasses
import gzip
import hashlib
import json
import os
import re
import struct
from typing import List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from supcon_tf.config import ConfigError, DataConfig, IMAGE_FOLDER

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32,
               0x0D: np.float32, 0x0E: np.float64}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
CLASSES_FILE = "classes.json"


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
  """Split sizes without reading images (for --mode=dry_run): an image folder is
  listed, a TFDS dataset prepared under --data_dir gives its own split sizes, and
  the datasets of the experiment files have their catalog sizes."""
  d = data_config
  if d.image_dir:
    source = load_image_folder(d)
    return DatasetMetadata(IMAGE_FOLDER, source.num_train, source.num_eval,
                           source.num_classes, source.num_channels, source.origin)
  if tfds_prepared(d.dataset, d.data_dir):
    source = TfdsStreamSource.create(d)
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


def _options(options):
  from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  return options if options is not None else pipeline.InputOptions()


# ------------------------------------------------------------------ in memory
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
  class_names: Tuple[str, ...] = ()

  @property
  def image_shape(self):
    return self.train_images.shape[1:]

  @property
  def num_channels(self):
    return self.train_images.shape[-1]

  @property
  def num_train(self):
    return len(self.train_labels)

  @property
  def num_eval(self):
    return len(self.test_labels)

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int = 1) -> int:
    del num_pipelines  # every pipeline takes its share of one global permutation
    return self.num_train // global_batch_size

  def train_dataset(self, spec, view_kwargs, input_context=None, options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    return pipeline.train_dataset(self.train_images, self.train_labels, spec,
                                  view_kwargs, input_context, _options(options))

  def eval_dataset(self, global_batch_size, eval_kwargs, input_context=None,
                   options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    return pipeline.eval_dataset(self.test_images, self.test_labels, global_batch_size,
                                 eval_kwargs, input_context, _options(options))

  def eval_examples(self, num: int, eval_kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """The first `num` evaluation images (eval views, float [n, H, W, C]), labels."""
    return _first_eval_examples(self, num, eval_kwargs)


def _first_eval_examples(source, num: int, eval_kwargs):
  images, labels = [], []
  num = min(num, source.num_eval)
  if num <= 0:
    return np.zeros((0,)), np.zeros((0,), np.int32)
  from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  quiet = pipeline.InputOptions(report_corrupt=False)  # evaluation reports them
  for batch in source.eval_dataset(min(num, 256), eval_kwargs, None, quiet):
    valid = batch["valid"].numpy()
    images.append(batch["image"].numpy()[valid])
    labels.append(batch["labels"].numpy()[valid])
    if sum(len(l) for l in labels) >= num:
      break
  return np.concatenate(images)[:num], np.concatenate(labels)[:num]


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
    if not len(labels):
      raise ConfigError(f"{directory}: the Fashion-MNIST {split} split is empty")
    arrays[split] = (images[..., None].astype(np.uint8), labels.astype(np.int32))
  return InMemorySource("fashion_mnist", *arrays["train"], *arrays["test"],
                        num_classes=10, origin=f"idx files in {directory}",
                        class_names=FASHION_MNIST_CLASSES)


# ------------------------------------------------------------------ TFDS
def tfds_prepared(name: str, data_dir: str) -> bool:
  """True if TFDS dataset `name` is prepared under `data_dir`."""
  if not data_dir:
    return False
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False


def _tfds_builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ConfigError(f"TFDS {name} has no 'image' and 'label' features "
                      f"(it has: {', '.join(features.keys())})")
  if not isinstance(features["image"], tfds.features.Image):
    raise ConfigError(f"TFDS {name}: 'image' is a {type(features['image']).__name__}, "
                      "not an Image feature")
  return builder


def _split_num_examples(builder, split: str) -> int:
  """Examples in `split`; ConfigError for a bad split name."""
  try:
    return int(builder.info.splits[split].num_examples)
  except Exception:  # pylint: disable=broad-except
    pass  # unknown to the metadata (e.g. tfds.testing.mock_data): ask the reader
  try:
    count = int(builder.as_dataset(split=split).cardinality())
  except (ValueError, KeyError, AssertionError) as e:
    raise ConfigError(f"TFDS {builder.name}: bad split {split!r}: "
                      f"{str(e).splitlines()[0]}") from None
  if count < 0:
    raise ConfigError(f"TFDS {builder.name}: cannot tell the size of split {split!r}")
  return count


def _limit_split(split: str, num: int) -> str:
  """`split` restricted to its first `num` examples (0: all)."""
  if not num:
    return split
  if "[" in split or "+" in split:
    raise ConfigError(f"--num_train_examples/--num_eval_examples cannot be combined "
                      f"with the sliced split {split!r} of a streamed dataset")
  return f"{split}[:{num}]"


# Decoded in memory only below this size; larger datasets are streamed.
def _fits_in_memory(builder, splits: Sequence[str], max_gb: float) -> bool:
  shape = builder.info.features["image"].shape
  if None in shape or max_gb <= 0:
    return False
  total = sum(_split_num_examples(builder, s) for s in splits) * int(np.prod(shape))
  return total <= max_gb * (1 << 30)


def load_tfds_in_memory(name: str, data_dir: str, train_split: str = "train",
                        eval_split: str = "test") -> InMemorySource:
  """A prepared TFDS image-classification dataset (features `image`, `label`) of
  fixed-size images, decoded into memory."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(name, data_dir)
  features = builder.info.features
  shape = features["image"].shape
  if None in shape[:2]:
    raise ConfigError(f"TFDS {name} has variable-size images {shape}: it is streamed, "
                      "not held in memory")
  splits = {}
  for role, split in (("train", train_split), ("eval", eval_split)):
    _split_num_examples(builder, split)  # a clear error for a bad split name
    ds = builder.as_dataset(split=split)
    chunks = list(tfds.as_numpy(ds.batch(8192)))
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


@dataclasses.dataclass(frozen=True)
class TfdsStreamSource:
  """A prepared TFDS dataset read from its record files, sharded per input pipeline.

  The image feature is read undecoded (`tfds.decode.SkipDecoding`); the pipeline
  decodes it (JPEG: only the training crop).
  """
  name: str
  builder: object
  train_split: str
  eval_split: str
  num_train: int
  num_eval: int
  num_classes: int
  num_channels: int
  class_names: Tuple[str, ...]
  origin: str

  @classmethod
  def create(cls, d: DataConfig, builder=None) -> "TfdsStreamSource":
    builder = builder or _tfds_builder(d.dataset, d.data_dir)
    train_split = _limit_split(d.train_split, d.num_train_examples)
    eval_split = _limit_split(d.eval_split, d.num_eval_examples)
    num_train = _split_num_examples(builder, train_split)
    num_eval = _split_num_examples(builder, eval_split)
    for split, num in ((train_split, num_train), (eval_split, num_eval)):
      if num == 0:
        raise ConfigError(f"TFDS {d.dataset} split {split!r} under {d.data_dir} is empty")
    features = builder.info.features
    channels = features["image"].shape[-1] or 3
    label = features["label"]
    return cls(d.dataset, builder, train_split, eval_split, num_train, num_eval,
               label.num_classes, int(channels), tuple(label.names),
               f"TFDS under {d.data_dir} (streamed)")

  # -- sharding
  def shard_sizes(self, split: str, num_pipelines: int) -> Tuple[bool, List[int]]:
    """(by_files, examples of each pipeline) as the reader will shard `split`.

    TFDS shards by files (pipeline p reads files p, p+P, ...) when there are at
    least as many files as pipelines; otherwise every pipeline reads the split
    and keeps every P-th example.
    """
    try:
      instructions = list(self.builder.info.splits[split].file_instructions)
    except Exception:  # pylint: disable=broad-except
      instructions = []  # no file metadata (e.g. mock data): shard by examples
    if num_pipelines > 1 and len(instructions) >= num_pipelines:
      return True, [sum(fi.take for fi in instructions[p::num_pipelines])
                    for p in range(num_pipelines)]
    total = (sum(fi.take for fi in instructions) if instructions
             else _split_num_examples(self.builder, split))
    return False, [len(range(p, total, num_pipelines)) for p in range(num_pipelines)]

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int = 1) -> int:
    _, sizes = self.shard_sizes(self.train_split, num_pipelines)
    return min(sizes) // (global_batch_size // num_pipelines)

  def records(self, split: str, input_context=None, shuffle_seed=None,
              by_files: Optional[bool] = None):
    """This pipeline's shard of `split`: {"encoded": string, "label": int32}.

    `shuffle_seed` (scalar, may be a tensor): shuffle the files with it; None:
    files in their order. `by_files`: `shard_sizes(split, P)[0]` (pass it when
    calling from inside a traced function).
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    if by_files is None:
      by_files, _ = self.shard_sizes(split, num_pipelines)
    read_config = tfds.ReadConfig(
        input_context=input_context if by_files else None,
        shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False,
        interleave_cycle_length=16, interleave_block_length=1, skip_prefetch=True,
        try_autocache=False)
    ds = self.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                                 decoders={"image": tfds.decode.SkipDecoding()},
                                 read_config=read_config)
    if num_pipelines > 1 and not by_files:
      ds = ds.shard(num_pipelines, input_context.input_pipeline_id)
    return ds.map(lambda ex: {"encoded": ex["image"],
                              "label": tf.cast(ex["label"], tf.int32)})

  def train_dataset(self, spec, view_kwargs, input_context=None, options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    by_files, sizes = self.shard_sizes(self.train_split, num_pipelines)
    return pipeline.stream_train_dataset(
        lambda ctx, seed: self.records(self.train_split, ctx, seed, by_files), min(sizes),
        self.num_channels, spec, view_kwargs, input_context, _options(options))

  def eval_dataset(self, global_batch_size, eval_kwargs, input_context=None,
                   options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    _, sizes = self.shard_sizes(self.eval_split, num_pipelines)
    per_pipeline = global_batch_size // num_pipelines
    batches = -(-max(sizes) // per_pipeline)
    return pipeline.stream_eval_dataset(
        self.records(self.eval_split, input_context), batches, self.num_channels,
        global_batch_size, eval_kwargs, input_context, _options(options))

  def eval_examples(self, num: int, eval_kwargs):
    return _first_eval_examples(self, num, eval_kwargs)


# ------------------------------------------------------------------ image folders
@dataclasses.dataclass(frozen=True)
class ImageFolderSource:
  """Image files, one sub-folder per class (sorted names are the class ids)."""
  name: str
  root: str
  class_names: Tuple[str, ...]
  train_files: np.ndarray  # str paths
  train_labels: np.ndarray  # int32
  eval_files: np.ndarray
  eval_labels: np.ndarray
  origin: str
  num_channels: int = 3
  reports_corrupt = True  # batches flag undecodable images ("corrupt")

  @property
  def num_classes(self):
    return len(self.class_names)

  @property
  def num_train(self):
    return len(self.train_labels)

  @property
  def num_eval(self):
    return len(self.eval_labels)

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int = 1) -> int:
    del num_pipelines
    return self.num_train // global_batch_size

  def train_dataset(self, spec, view_kwargs, input_context=None, options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    return pipeline.files_train_dataset(self.train_files, self.train_labels, spec,
                                        view_kwargs, self.num_channels, input_context,
                                        _options(options))

  def eval_dataset(self, global_batch_size, eval_kwargs, input_context=None,
                   options=None):
    from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    return pipeline.files_eval_dataset(self.eval_files, self.eval_labels,
                                       self.num_channels, global_batch_size,
                                       eval_kwargs, input_context, _options(options))

  def eval_examples(self, num: int, eval_kwargs):
    return _first_eval_examples(self, num, eval_kwargs)


_SPLIT_RE = re.compile(r"^([^\[\]]+)(?:\[(-?\d+(?:\.\d+)?)?%?:(-?\d+(?:\.\d+)?)?%?\])?$")


def parse_folder_split(split: str) -> Tuple[str, float, float]:
  """'train' -> ('train', 0, 100); 'all[:90%]' -> ('all', 0, 90); 'x[90%:]' ->
  ('x', 90, 100). Slices are percentages of each class."""
  m = _SPLIT_RE.match(split.strip())
  if not m or ("[" in split and "%" not in split):
    raise ConfigError(f"split {split!r} of --image_dir: expected NAME or NAME[a%:b%] "
                      "(e.g. train, val, all[:90%], all[90%:])")
  name, lo, hi = m.group(1), m.group(2), m.group(3)
  lo = float(lo) if lo is not None else 0.0
  hi = float(hi) if hi is not None else 100.0
  if not 0 <= lo < hi <= 100:
    raise ConfigError(f"split {split!r} of --image_dir: need 0 <= a < b <= 100")
  return name, lo, hi


def _stable_order(paths: List[str], root: str) -> List[str]:
  """A pseudo-random order that depends only on each file's path under `root`
  (so slices of a class are random and stay put when files are added)."""
  def key(path):
    rel = os.path.relpath(path, root) if not root.startswith("gs://") else path[len(root):]
    return hashlib.md5(rel.encode("utf-8")).hexdigest()
  return sorted(paths, key=key)


def _list_images(directory: str) -> Tuple[List[str], int]:
  """(image files under `directory`, recursively, sorted; number of other files)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images, others = [], 0
  for dirpath, dirnames, filenames in tf.io.gfile.walk(directory):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      if name.startswith("."):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        images.append(os.path.join(dirpath, name))
      else:
        others += 1
  return sorted(images), others


def _class_dirs(directory: str) -> List[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names = []
  for entry in tf.io.gfile.listdir(directory):
    entry = entry.rstrip("/")
    if not entry.startswith(".") and tf.io.gfile.isdir(os.path.join(directory, entry)):
      names.append(entry)
  return sorted(names)


def _scan_split(root: str, split: str, class_names: Optional[Sequence[str]]):
  """(files, labels, class names) of `split` of an image folder."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  name, lo, hi = parse_folder_split(split)
  directory = root if name == "all" else os.path.join(root, name)
  if not tf.io.gfile.isdir(directory):
    present = ", ".join(_class_dirs(root)) or "nothing"
    raise ConfigError(
        f"--image_dir={root!r} has no sub-folder {name!r} for split {split!r} (it has: "
        f"{present}); name an existing sub-folder with --train_split/--eval_split, or "
        "split the class folders directly under it with --train_split=all[:90%] "
        "--eval_split=all[90%:]")
  classes = _class_dirs(directory)
  if not classes:
    raise ConfigError(f"{directory!r} has no class sub-folders (one sub-folder of "
                      "images per class is expected)")
  if class_names is None:
    class_names = classes
  else:
    unknown = sorted(set(classes) - set(class_names))
    if unknown:
      raise ConfigError(f"{directory!r} has classes the training split does not have: "
                        f"{', '.join(unknown[:5])}")
  index = {c: i for i, c in enumerate(class_names)}
  files, labels, ignored = [], [], 0
  for c in classes:
    images, others = _list_images(os.path.join(directory, c))
    ignored += others
    if not images:
      logging.warning("class folder %s has no images", os.path.join(directory, c))
    if lo > 0 or hi < 100:
      ordered = _stable_order(images, directory)
      n = len(ordered)
      images = sorted(ordered[int(round(lo * n / 100)):int(round(hi * n / 100))])
    files += images
    labels += [index[c]] * len(images)
  if ignored:
    logging.warning("%s: ignored %d files that are not %s images", directory, ignored,
                    "/".join(e[1:] for e in IMAGE_EXTENSIONS))
  if not files:
    raise ConfigError(f"split {split!r} of --image_dir={root!r} has no images "
                      f"({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files in the "
                      "class folders)")
  return files, labels, list(class_names)


def load_image_folder(d: DataConfig) -> ImageFolderSource:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  root = d.image_dir.rstrip("/") or "/"
  if not tf.io.gfile.isdir(root):
    raise ConfigError(f"--image_dir={d.image_dir!r} does not exist or is not a folder")
  train_files, train_labels, classes = _scan_split(root, d.train_split, None)
  eval_files, eval_labels, _ = _scan_split(root, d.eval_split, classes)
  if d.num_train_examples:
    train_files, train_labels = _spread_subset(train_files, train_labels,
                                               d.num_train_examples)
  if d.num_eval_examples:
    eval_files, eval_labels = _spread_subset(eval_files, eval_labels,
                                             d.num_eval_examples)
  overlap = set(train_files) & set(eval_files)
  if overlap:
    logging.warning("%d images are in both the training and the evaluation split "
                    "(e.g. %s)", len(overlap), sorted(overlap)[0])
  return ImageFolderSource(
      IMAGE_FOLDER, root, tuple(classes), np.array(train_files),
      np.array(train_labels, np.int32), np.array(eval_files),
      np.array(eval_labels, np.int32),
      origin=f"image folder {root} (splits {d.train_split!r} / {d.eval_split!r}, "
             f"{len(classes)} classes)")


def _spread_subset(files, labels, num):
  """`num` examples spread over the classes (every k-th file)."""
  if num >= len(files):
    return files, labels
  keep = np.linspace(0, len(files) - 1, num).round().astype(int)
  return [files[i] for i in keep], [labels[i] for i in keep]


def probe_decodable(source: ImageFolderSource, max_files: int = 64) -> Tuple[int, int, str]:
  """Decodes up to `max_files` training images spread over the folder; returns
  (tried, failed, first failure message)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  picks = np.unique(np.linspace(0, source.num_train - 1,
                                min(max_files, source.num_train)).round().astype(int))
  failed, first = 0, ""
  for i in picks:
    path = str(source.train_files[i])
    try:
      tf.io.decode_image(tf.io.read_file(path), channels=source.num_channels,
                         expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
      failed += 1
      first = first or f"{path}: {str(e).splitlines()[0][:120]}"
  return len(picks), failed, first


# ------------------------------------------------------------------ selection
def load_source(data_config: DataConfig):
  """The source named by the config. Raises ConfigError if it cannot be found.

  --image_dir: an image folder. A TFDS dataset prepared under --data_dir: in
  memory if its images have a fixed size and the splits fit --max_in_memory_gb,
  else streamed. fashion_mnist otherwise comes from Debian's idx files.
  """
  d = data_config
  name = d.dataset
  if d.image_dir:
    source = load_image_folder(d)
    tried, failed, first = probe_decodable(source)
    if failed * 2 > tried:
      raise ConfigError(f"--image_dir={d.image_dir!r}: {failed} of {tried} sampled "
                        f"images do not decode (e.g. {first})")
    return source
  if tfds_prepared(name, d.data_dir):
    builder = _tfds_builder(name, d.data_dir)
    if _fits_in_memory(builder, (d.train_split, d.eval_split), d.max_in_memory_gb):
      source = load_tfds_in_memory(name, d.data_dir, d.train_split, d.eval_split)
      return subset(source, d.num_train_examples, d.num_eval_examples)
    return TfdsStreamSource.create(d, builder)
  if name == "fashion_mnist":
    if d.data_dir:
      logging.info("TFDS %s not prepared under %s; reading the idx files", name,
                   d.data_dir)
    if not os.path.isdir(d.fashion_mnist_dir):
      raise ConfigError(
          f"--fashion_mnist_dir={d.fashion_mnist_dir!r} does not exist: "
          "install Debian's dataset-fashion-mnist package (make data), or put the "
          "four idx files in a directory and pass it")
    source = load_fashion_mnist_idx(d.fashion_mnist_dir)
    return subset(source, d.num_train_examples, d.num_eval_examples)
  raise ConfigError(
      f"--dataset={name!r} is not prepared under --data_dir={d.data_dir!r}: "
      "prepare it with TFDS (e.g. `tfds build " + name + " --data_dir=DIR`; imagenet2012 "
      "needs the manual download) and pass that directory")


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


# ------------------------------------------------------------------ class list
def classes_record(source) -> Optional[dict]:
  """What model_dir/classes.json holds for `source` (None: no class names)."""
  names = tuple(getattr(source, "class_names", ()) or ())
  if not names:
    return None
  return {"dataset": source.name, "num_classes": len(names), "classes": list(names)}


def check_and_write_classes(model_dir: str, source, write: bool) -> None:
  """Refuses a model_dir whose classes.json lists other classes (the label ids
  would mean different things); writes it (atomically) when `write`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
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
