"""A user's folder of labelled images, one sub-folder per class.

Splits are sub-folders (`train`, `val`, ...) each holding the class folders, or
`all`: the class folders directly under the root; TFDS-style slices are taken per
class (`all[:90%]`, `all[90%:]`) in a stable pseudo-random order of the paths.
The sorted class names are the class ids. Undecodable files are skipped and
counted by the pipeline (`reports_corrupt`); `probe_decodable` samples the folder
at start-up so that a folder of mostly bad files is refused before any work.
"""

import dataclasses
import hashlib
import os
import re
from typing import ClassVar, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig, IMAGE_FOLDER
from supcon_tf.data.sources.records import FileRecords

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class ImageFolderSource:
  """Image files, one sub-folder per class (a `Source`)."""
  name: str
  root: str
  class_names: Tuple[str, ...]
  train_files: np.ndarray  # str paths
  train_labels: np.ndarray  # int32
  eval_files: np.ndarray
  eval_labels: np.ndarray
  origin: str
  num_channels: int = 3
  reports_corrupt: ClassVar[bool] = True  # batches flag undecodable images ("corrupt")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_train(self) -> int:
    return len(self.train_labels)

  @property
  def num_eval(self) -> int:
    return len(self.eval_labels)

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int) -> int:
    """Whole global steps per epoch (one global permutation of the files)."""
    del num_pipelines
    return self.num_train // global_batch_size

  def train_records(self, num_pipelines: int) -> FileRecords:
    del num_pipelines  # indexed: the pipeline shards the positions
    return FileRecords(self.train_files, self.train_labels)

  def eval_records(self, num_pipelines: int) -> FileRecords:
    del num_pipelines
    return FileRecords(self.eval_files, self.eval_labels)


_SPLIT_RE = re.compile(r"^([^\[\]]+)(?:\[(-?\d+(?:\.\d+)?)?%?:(-?\d+(?:\.\d+)?)?%?\])?$")


def parse_folder_split(split: str) -> Tuple[str, float, float]:
  """A split of an image folder: its sub-folder and its slice of each class.

  'train' -> ('train', 0, 100); 'all[:90%]' -> ('all', 0, 90); 'x[90%:]' ->
  ('x', 90, 100).

  Args:
    split: NAME or NAME[a%:b%].

  Returns:
    (name, low, high) percentages.

  Raises:
    ConfigError: another form, or not 0 <= a < b <= 100.
  """
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
  names = []
  for entry in tf.io.gfile.listdir(directory):
    entry = entry.rstrip("/")
    if not entry.startswith(".") and tf.io.gfile.isdir(os.path.join(directory, entry)):
      names.append(entry)
  return sorted(names)


def _scan_split(root: str, split: str, class_names: Optional[Sequence[str]]):
  """(files, labels, class names) of `split` of an image folder."""
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


def _spread_subset(files, labels, num):
  """`num` examples spread over the classes (every k-th file)."""
  if num >= len(files):
    return files, labels
  keep = np.linspace(0, len(files) - 1, num).round().astype(int)
  return [files[i] for i in keep], [labels[i] for i in keep]


def load_image_folder(data_config: DataConfig) -> ImageFolderSource:
  """The image folder --image_dir with its two splits (files listed, not read).

  Args:
    data_config: image_dir, train_split, eval_split and the example limits.

  Returns:
    The source.

  Raises:
    ConfigError: a missing folder or split, no class folders or no images, an
      evaluation class the training split does not have.
  """
  d = data_config
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


def probe_decodable(source: ImageFolderSource, max_files: int = 64) -> Tuple[int, int, str]:
  """Decodes training images spread over the folder.

  Args:
    source: the folder.
    max_files: at most this many files are tried.

  Returns:
    (tried, failed, the first failure's message).
  """
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
