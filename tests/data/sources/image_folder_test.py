"""Image-folder sources: splits and slices, refusals, corrupt files, views of the
files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import AugmentationType, ConfigError, DataConfig
from supcon_tf.data import order, pipeline, sources
from supcon_tf.data.augment import ops, views
from supcon_tf.data.sources import image_folder
from supcon_tf.data.sources.records import FileRecords
from tests import testing
from tests.data.helpers import eval_spec, options, take, view_spec


def _load(root, **kw):
  return sources.load_source(DataConfig(dataset="image_folder", image_dir=str(root), **kw))


def test_folder_with_split_subfolders(tmp_path):
  testing.write_image_folder(str(tmp_path / "train"), per_class=5)
  testing.write_image_folder(str(tmp_path / "val"), classes=("cat", "fox"), per_class=2)
  (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
  (tmp_path / "train" / "cat" / ".hidden.png").write_bytes(b"x")
  os.makedirs(tmp_path / "train" / "dog" / "nested")
  (tmp_path / "train" / "dog" / "nested" / "x.PNG").write_bytes(
      (tmp_path / "train" / "dog" / "000.png").read_bytes())
  source = _load(tmp_path, eval_split="val")
  assert isinstance(source, image_folder.ImageFolderSource)
  assert source.class_names == ("cat", "dog", "fox")
  assert source.num_train == 16 and list(np.bincount(source.train_labels)) == [5, 6, 5]
  # The eval split's classes keep the training split's ids (fox is 2, not 1).
  assert sorted(set(source.eval_labels)) == [0, 2] and source.num_eval == 4
  assert all(f.endswith((".png", ".jpg", ".PNG")) for f in source.train_files)
  meta = sources.dataset_metadata(DataConfig(dataset="image_folder",
                                             image_dir=str(tmp_path), eval_split="val"))
  assert (meta.num_train, meta.num_eval, meta.num_classes, meta.channels) == (16, 4, 3, 3)


def test_folder_source_satisfies_the_protocol(tmp_path):
  testing.write_image_folder(str(tmp_path), per_class=4)
  source = _load(tmp_path, train_split="all[:50%]", eval_split="all[50%:]")
  assert isinstance(source, sources.Source) and source.reports_corrupt
  assert source.steps_per_epoch(2, 1) == source.steps_per_epoch(2, 2) == 3
  train, evaluation = source.train_records(2), source.eval_records(2)
  assert isinstance(train, FileRecords) and isinstance(evaluation, FileRecords)
  assert list(train.files) == list(source.train_files)
  assert list(evaluation.labels) == list(source.eval_labels)
  assert image_folder.parse_folder_split("all[90%:]") == ("all", 90.0, 100.0)
  assert image_folder.probe_decodable(source) == (6, 0, "")


def test_folder_all_slices_are_disjoint_stratified_and_stable(tmp_path):
  testing.write_image_folder(str(tmp_path), per_class=20)
  def load(train, evaluation):
    return _load(tmp_path, train_split=train, eval_split=evaluation)
  source = load("all[:75%]", "all[75%:]")
  train, evaluation = set(source.train_files), set(source.eval_files)
  assert not train & evaluation and len(train | evaluation) == 60
  assert list(np.bincount(source.train_labels)) == [15, 15, 15]
  assert list(np.bincount(source.eval_labels)) == [5, 5, 5]
  # Not simply the first files of each class, and the same on every load.
  assert sorted(train)[:15] != sorted(f for f in train | evaluation if "/cat/" in f)[:15]
  assert set(load("all[:75%]", "all[75%:]").train_files) == train
  assert len(load("all", "all[10%:20%]").eval_files) == 6


@pytest.mark.parametrize("setup, split, message", [
    ("missing", "train", "does not exist"),
    ("empty", "all", "no class sub-folders"),
    ("no_images", "all", "has no images"),
    ("flat", "train", "no sub-folder 'train'.*all\\[:90%\\]"),
    ("flat", "all[:90]", "expected NAME or NAME\\[a%:b%\\]"),
    ("flat", "all[50%:20%]", "0 <= a < b <= 100"),
])
def test_folder_refusals(tmp_path, setup, split, message):
  root = tmp_path / "photos"
  if setup != "missing":
    root.mkdir()
  if setup == "no_images":
    (root / "cat").mkdir()
    (root / "cat" / "readme.txt").write_text("x")
  if setup == "flat":
    testing.write_image_folder(str(root), per_class=2)
  with pytest.raises(ConfigError, match=message):
    _load(root, train_split=split, eval_split=split)


def test_folder_unknown_eval_class_and_undecodable_folder_refused(tmp_path):
  testing.write_image_folder(str(tmp_path / "a" / "train"), classes=("cat",), per_class=2)
  testing.write_image_folder(str(tmp_path / "a" / "test"), classes=("cow",), per_class=2)
  with pytest.raises(ConfigError, match="classes the training split does not have: cow"):
    _load(tmp_path / "a")
  bad = {(c, i) for c in ("cat", "dog", "fox") for i in range(3)}
  testing.write_image_folder(str(tmp_path / "b"), per_class=4, corrupt=bad)
  with pytest.raises(ConfigError, match="9 of 12 sampled images do not decode"):
    _load(tmp_path / "b", train_split="all", eval_split="all")


def test_folder_views_are_the_augmentation_of_the_file(tmp_path):
  testing.write_image_folder(str(tmp_path), per_class=4)
  source = _load(tmp_path, train_split="all", eval_split="all")
  spec = view_spec(size=12, area_range=(0.3, 1.0),
                   augmentation_type=AugmentationType.STACKED_RANDAUGMENT)
  input_spec = pipeline.TrainInputSpec(6, 2, seed=7, stage=1)
  batch = take(pipeline.train_dataset(source, input_spec, spec, options()), 1)[0]
  item = next(iter(order.indexed_epochs(source.num_train, input_spec, None)))
  path = source.train_files[int(item["index"])]
  expected = views.train_views(ops.decode_image(tf.io.read_file(path), 3),
                               pipeline.example_seed(7, 1, 0, 0), 2, spec)
  np.testing.assert_allclose(batch["views"][0], expected, atol=1e-6)
  assert batch["labels"][0] == source.train_labels[int(item["index"])]
  assert not batch["corrupt"].any()


def test_corrupt_file_is_replaced_counted_once_per_epoch_and_printed(tmp_path, capfd):
  testing.write_image_folder(str(tmp_path), per_class=4, corrupt={("dog", 1)})
  source = _load(tmp_path, train_split="all", eval_split="all")
  bad = next(i for i, f in enumerate(source.train_files) if f.endswith("dog/001.jpg"))
  spec = pipeline.TrainInputSpec(4, 1, seed=0, stage=1)
  batches = take(pipeline.train_dataset(source, spec, view_spec(size=8), options()),
                 9)  # 3 epochs of 3 steps
  for epoch in range(3):
    corrupt = np.concatenate([b["corrupt"] for b in batches[3 * epoch:3 * epoch + 3]])
    labels = np.concatenate([b["labels"] for b in batches[3 * epoch:3 * epoch + 3]])
    assert corrupt.sum() == 1
    # The bad dog is replaced by the next file in the folder's order: dog/002.
    assert labels[corrupt == 1][0] == source.train_labels[bad + 1]
  assert all(b["views"].shape == (4, 1, 8, 8, 3) for b in batches)
  err = capfd.readouterr().err
  assert err.count("skipped an undecodable image:") == 1 and "dog/001.jpg" in err
  evaluation = take(pipeline.eval_dataset(source, 5, eval_spec(size=8), options()), 10)
  assert sum(int(b["corrupt"].sum()) for b in evaluation) == 1
  assert sum(int(b["valid"].sum()) for b in evaluation) == 11  # 12 files, 1 bad, 3 pads
