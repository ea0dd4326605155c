"""Data sources: TFDS streamed (a real imagenet2012 prepared offline, and
tfds.testing.mock_data), TFDS in memory, image folders (splits, refusals, corrupt
files), and the class list kept in model_dir."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig
from supcon_tf.data import augment, datasets, pipeline
from tests import testing


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
  """A prepared TFDS imagenet2012: 3 classes x 8 JPEGs in 4 train shards, 10
  validation images in 4 shards."""
  root = tmp_path_factory.mktemp("imagenet")
  data_dir, classes = testing.make_fake_imagenet(str(root))
  return data_dir, classes


def _imagenet_config(data_dir, **kw):
  return DataConfig(**{"dataset": "imagenet2012", "data_dir": data_dir,
                       "eval_split": "validation", "image_size": 16, **kw})


def _take(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


# ------------------------------------------------------------------ TFDS streamed
def test_imagenet_is_streamed_with_its_metadata(imagenet):
  data_dir, classes = imagenet
  source = datasets.load_source(_imagenet_config(data_dir))
  assert isinstance(source, datasets.TfdsStreamSource)
  assert (source.num_train, source.num_eval) == (24, 10)
  assert source.num_classes == 1000 and source.num_channels == 3
  assert source.class_names[:3] == tuple(classes)
  # 4 files over 2 pipelines: by files, 12 examples each; over 8: by examples.
  assert source.shard_sizes("train", 2) == (True, [12, 12])
  assert source.shard_sizes("train", 8) == (False, [3] * 8)
  assert source.steps_per_epoch(8, 2) == 3
  meta = datasets.dataset_metadata(_imagenet_config(data_dir))
  assert (meta.num_train, meta.num_eval, meta.num_classes) == (24, 10, 1000)


def test_stream_views_decode_only_the_crop_and_match_the_decoded_image(imagenet):
  """The streamed views are train_view of the decoded JPEG with the example's seed:
  decode_and_crop_jpeg gives the same pixels as decode then crop."""
  import tensorflow_datasets as tfds
  data_dir, _ = imagenet
  source = datasets.load_source(_imagenet_config(data_dir))
  kw = dict(size=16, area_range=(0.3, 1.0), aspect_range=(0.75, 4 / 3),
            augmentation_type="simclr", color_strength=0.5)
  spec = pipeline.TrainInputSpec(8, 2, seed=3, stage=1)
  batch = _take(source.train_dataset(spec, kw), 1)[0]
  assert batch["views"].shape == (8, 2, 16, 16, 3) and batch["views"].dtype == np.float32
  assert 0.0 <= batch["views"].min() and batch["views"].max() <= 1.0
  # Recompute example 0 of epoch 0 from the record the stream put first.
  key = pipeline._epoch_key(3, 1, 0)
  records = source.records("train", None, pipeline._scalar_seed(key, 0))
  first = next(iter(records.shuffle(10000, seed=pipeline._scalar_seed(key, 1))))
  decoded = augment.decode_image(first["encoded"], 3)
  expected = augment.train_views(decoded, pipeline.example_seed(3, 1, 0, 0), 2, **kw)
  # decode_and_crop_jpeg upsamples chroma differently at the crop's edges (up to
  # 16/255 on a few pixels of these small JPEGs): equal up to that.
  diff = np.abs(batch["views"][0] - expected.numpy())
  assert diff.max() < 20 / 255 and diff.mean() < 2 / 255, (diff.max(), diff.mean())
  assert batch["labels"][0] == first["label"]
  other = augment.train_views(decoded, pipeline.example_seed(3, 1, 0, 1), 2, **kw)
  assert np.abs(batch["views"][0] - other.numpy()).mean() > 10 / 255  # the seed matters
  del tfds


def test_stream_eval_sees_the_split_once_in_order(imagenet):
  import tensorflow_datasets as tfds
  data_dir, _ = imagenet
  source = datasets.load_source(_imagenet_config(data_dir))
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  want = [int(ex["label"]) for ex in builder.as_dataset(split="validation")]
  batches = _take(source.eval_dataset(4, dict(size=16, method="resize_then_crop",
                                                  crop_padding=4)), 100)
  assert [b["image"].shape for b in batches] == [(4, 16, 16, 3)] * 3
  got = np.concatenate([b["labels"][b["valid"]] for b in batches])
  assert sorted(got) == sorted(want)  # every example once, padding invalid
  assert sum(int((~b["valid"]).sum()) for b in batches) == 2


def test_stream_num_train_examples_and_bad_split(imagenet):
  data_dir, _ = imagenet
  source = datasets.load_source(_imagenet_config(data_dir, num_train_examples=16))
  assert source.train_split == "train[:16]" and source.num_train == 16
  with pytest.raises(ConfigError, match="sliced split"):
    datasets.load_source(_imagenet_config(data_dir, train_split="train[:50%]",
                                          num_train_examples=8))
  with pytest.raises(ConfigError, match="bad split 'nope'"):
    datasets.load_source(_imagenet_config(data_dir, train_split="nope"))
  sliced = datasets.load_source(_imagenet_config(data_dir, train_split="train[:50%]",
                                                 eval_split="train[50%:]"))
  assert (sliced.num_train, sliced.num_eval) == (12, 12)


def test_imagenet_under_mock_data_streams(tmp_path, monkeypatch):
  """tfds.testing.mock_data: imagenet2012 (variable-size JPEG images) is streamed."""
  import tensorflow_datasets as tfds
  monkeypatch.setattr(datasets, "tfds_prepared", lambda n, d: True)
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
    source = datasets.load_source(_imagenet_config(str(tmp_path)))
    assert isinstance(source, datasets.TfdsStreamSource)
    assert source.num_train == 12 and source.num_classes == 1000
    spec = pipeline.TrainInputSpec(4, 2, seed=0, stage=1)
    batches = _take(source.train_dataset(spec, dict(size=16)), 4)
    evaluation = _take(source.eval_dataset(4, dict(size=16)), 10)
  assert all(b["views"].shape == (4, 2, 16, 16, 3) for b in batches)
  assert sum(int(b["valid"].sum()) for b in evaluation) == 12


def test_cifar_streams_when_memory_budget_is_zero(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  monkeypatch.setattr(datasets, "tfds_prepared", lambda n, d: True)
  with tfds.testing.mock_data(num_examples=16, data_dir=str(tmp_path)):
    in_memory = datasets.load_source(DataConfig(dataset="cifar10", data_dir=str(tmp_path),
                                                image_size=32))
    streamed = datasets.load_source(DataConfig(dataset="cifar10", data_dir=str(tmp_path),
                                               image_size=32, max_in_memory_gb=0))
    assert isinstance(in_memory, datasets.InMemorySource)
    assert isinstance(streamed, datasets.TfdsStreamSource)
    assert in_memory.class_names == streamed.class_names and len(in_memory.class_names) == 10
    batch = _take(streamed.train_dataset(pipeline.TrainInputSpec(8, 2, 0, 1),
                                         dict(size=32)), 1)[0]
  assert batch["views"].shape == (8, 2, 32, 32, 3)


# ------------------------------------------------------------------ image folders
def test_folder_with_split_subfolders(tmp_path):
  testing.write_image_folder(str(tmp_path / "train"), per_class=5)
  testing.write_image_folder(str(tmp_path / "val"), classes=("cat", "fox"), per_class=2)
  (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
  (tmp_path / "train" / "cat" / ".hidden.png").write_bytes(b"x")
  os.makedirs(tmp_path / "train" / "dog" / "nested")
  (tmp_path / "train" / "dog" / "nested" / "x.PNG").write_bytes(
      (tmp_path / "train" / "dog" / "000.png").read_bytes())
  source = datasets.load_source(DataConfig(dataset="image_folder", image_dir=str(tmp_path),
                                           eval_split="val"))
  assert isinstance(source, datasets.ImageFolderSource)
  assert source.class_names == ("cat", "dog", "fox")
  assert source.num_train == 16 and list(np.bincount(source.train_labels)) == [5, 6, 5]
  # The eval split's classes keep the training split's ids (fox is 2, not 1).
  assert sorted(set(source.eval_labels)) == [0, 2] and source.num_eval == 4
  assert all(f.endswith((".png", ".jpg", ".PNG")) for f in source.train_files)
  meta = datasets.dataset_metadata(DataConfig(dataset="image_folder",
                                              image_dir=str(tmp_path), eval_split="val"))
  assert (meta.num_train, meta.num_eval, meta.num_classes, meta.channels) == (16, 4, 3, 3)


def test_folder_all_slices_are_disjoint_stratified_and_stable(tmp_path):
  testing.write_image_folder(str(tmp_path), per_class=20)
  def load(train, evaluation):
    return datasets.load_source(DataConfig(
        dataset="image_folder", image_dir=str(tmp_path), train_split=train,
        eval_split=evaluation))
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
    datasets.load_source(DataConfig(dataset="image_folder", image_dir=str(root),
                                    train_split=split, eval_split=split))


def test_folder_unknown_eval_class_and_undecodable_folder_refused(tmp_path):
  testing.write_image_folder(str(tmp_path / "a" / "train"), classes=("cat",), per_class=2)
  testing.write_image_folder(str(tmp_path / "a" / "test"), classes=("cow",), per_class=2)
  with pytest.raises(ConfigError, match="classes the training split does not have: cow"):
    datasets.load_source(DataConfig(dataset="image_folder",
                                    image_dir=str(tmp_path / "a")))
  bad = {(c, i) for c in ("cat", "dog", "fox") for i in range(3)}
  testing.write_image_folder(str(tmp_path / "b"), per_class=4, corrupt=bad)
  with pytest.raises(ConfigError, match="9 of 12 sampled images do not decode"):
    datasets.load_source(DataConfig(dataset="image_folder", image_dir=str(tmp_path / "b"),
                                    train_split="all", eval_split="all"))


def test_folder_views_are_the_augmentation_of_the_file(tmp_path):
  testing.write_image_folder(str(tmp_path), per_class=4)
  source = datasets.load_source(DataConfig(dataset="image_folder", image_dir=str(tmp_path),
                                           train_split="all", eval_split="all"))
  kw = dict(size=12, area_range=(0.3, 1.0), augmentation_type="stacked_randaugment")
  spec = pipeline.TrainInputSpec(6, 2, seed=7, stage=1)
  batch = _take(source.train_dataset(spec, kw), 1)[0]
  item = next(iter(pipeline._indexed_epochs(source.num_train, spec, None)))
  path = source.train_files[int(item["index"])]
  expected = augment.train_views(augment.decode_image(tf.io.read_file(path), 3),
                                 pipeline.example_seed(7, 1, 0, 0), 2, **kw)
  np.testing.assert_allclose(batch["views"][0], expected, atol=1e-6)
  assert batch["labels"][0] == source.train_labels[int(item["index"])]
  assert not batch["corrupt"].any()


def test_corrupt_file_is_replaced_counted_once_per_epoch_and_printed(tmp_path, capfd):
  testing.write_image_folder(str(tmp_path), per_class=4, corrupt={("dog", 1)})
  source = datasets.load_source(DataConfig(dataset="image_folder", image_dir=str(tmp_path),
                                           train_split="all", eval_split="all"))
  bad = next(i for i, f in enumerate(source.train_files) if f.endswith("dog/001.jpg"))
  spec = pipeline.TrainInputSpec(4, 1, seed=0, stage=1)
  batches = _take(source.train_dataset(spec, dict(size=8)), 9)  # 3 epochs of 3 steps
  for epoch in range(3):
    corrupt = np.concatenate([b["corrupt"] for b in batches[3 * epoch:3 * epoch + 3]])
    labels = np.concatenate([b["labels"] for b in batches[3 * epoch:3 * epoch + 3]])
    assert corrupt.sum() == 1
    # The bad dog is replaced by the next file in the folder's order: dog/002.
    assert labels[corrupt == 1][0] == source.train_labels[bad + 1]
  assert all(b["views"].shape == (4, 1, 8, 8, 3) for b in batches)
  err = capfd.readouterr().err
  assert err.count("skipped an undecodable image:") == 1 and "dog/001.jpg" in err
  evaluation = _take(source.eval_dataset(5, dict(size=8)), 10)
  assert sum(int(b["corrupt"].sum()) for b in evaluation) == 1
  assert sum(int(b["valid"].sum()) for b in evaluation) == 11  # 12 files, 1 bad, 3 pads


# ------------------------------------------------------------------ classes.json
def test_class_list_written_and_checked(tmp_path):
  testing.write_image_folder(str(tmp_path / "a"), per_class=2)
  testing.write_image_folder(str(tmp_path / "b"), classes=("cat", "dog", "owl"),
                             per_class=2)
  def load(name):
    return datasets.load_source(DataConfig(dataset="image_folder",
                                           image_dir=str(tmp_path / name),
                                           train_split="all", eval_split="all"))
  model_dir = str(tmp_path / "run")
  datasets.check_and_write_classes(model_dir, load("a"), write=False)
  assert not os.path.exists(os.path.join(model_dir, "classes.json"))
  datasets.check_and_write_classes(model_dir, load("a"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]
  datasets.check_and_write_classes(model_dir, load("a"), write=True)  # same: fine
  with pytest.raises(ConfigError, match="new: owl.*use a new --model_dir"):
    datasets.check_and_write_classes(model_dir, load("b"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]  # untouched


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
