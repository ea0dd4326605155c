"""Streamed TFDS sources: a real imagenet2012 prepared offline and
tfds.testing.mock_data; metadata, sharding, records, views of the stream."""

import numpy as np
import pytest

from supcon_tf.config import AugmentationType, ConfigError, DataConfig, EvalCropMethod
from supcon_tf.data import order, pipeline, sources
from supcon_tf.data.augment import ops, views
from supcon_tf.data.sources import tfds_stream
from supcon_tf.data.sources.records import StreamRecords
from tests import testing
from tests.data.helpers import eval_spec, options, take, view_spec


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


def test_imagenet_is_streamed_with_its_metadata(imagenet):
  data_dir, classes = imagenet
  source = sources.load_source(_imagenet_config(data_dir))
  assert isinstance(source, tfds_stream.TfdsStreamSource)
  assert (source.num_train, source.num_eval) == (24, 10)
  assert source.num_classes == 1000 and source.num_channels == 3
  assert source.class_names[:3] == tuple(classes)
  # 4 files over 2 pipelines: by files, 12 examples each; over 8: by examples.
  assert source.shard_sizes("train", 2) == (True, [12, 12])
  assert source.shard_sizes("train", 8) == (False, [3] * 8)
  assert source.steps_per_epoch(8, 2) == 3
  meta = sources.dataset_metadata(_imagenet_config(data_dir))
  assert (meta.num_train, meta.num_eval, meta.num_classes) == (24, 10, 1000)


def test_stream_source_satisfies_the_protocol(imagenet):
  data_dir, _ = imagenet
  source = sources.load_source(_imagenet_config(data_dir))
  assert isinstance(source, sources.Source) and not source.reports_corrupt
  train = source.train_records(2)
  assert isinstance(train, StreamRecords) and train.pipeline_sizes == (12, 12)
  assert source.eval_records(8).pipeline_sizes == tuple(source.shard_sizes(
      "validation", 8)[1])
  everything = [int(r["label"]) for r in train.read(None, None)]
  assert len(everything) == 24


def test_stream_views_decode_only_the_crop_and_match_the_decoded_image(imagenet):
  """The streamed views are train_view of the decoded JPEG with the example's seed:
  decode_and_crop_jpeg gives the same pixels as decode then crop."""
  data_dir, _ = imagenet
  source = sources.load_source(_imagenet_config(data_dir))
  spec = view_spec(size=16, area_range=(0.3, 1.0), aspect_range=(0.75, 4 / 3),
                   augmentation_type=AugmentationType.SIMCLR, color_strength=0.5)
  input_spec = pipeline.TrainInputSpec(8, 2, seed=3, stage=1)
  batch = take(pipeline.train_dataset(source, input_spec, spec, options()), 1)[0]
  assert batch["views"].shape == (8, 2, 16, 16, 3) and batch["views"].dtype == np.float32
  assert 0.0 <= batch["views"].min() and batch["views"].max() <= 1.0
  # Recompute example 0 of epoch 0 from the record the stream put first.
  key = order.epoch_key(3, 1, 0)
  records = source.records("train", None, order.scalar_seed(key, 0))
  first = next(iter(records.shuffle(10000, seed=order.scalar_seed(key, 1))))
  decoded = ops.decode_image(first["encoded"], 3)
  expected = views.train_views(decoded, pipeline.example_seed(3, 1, 0, 0), 2, spec)
  # decode_and_crop_jpeg upsamples chroma differently at the crop's edges (up to
  # 16/255 on a few pixels of these small JPEGs): equal up to that.
  diff = np.abs(batch["views"][0] - expected.numpy())
  assert diff.max() < 20 / 255 and diff.mean() < 2 / 255, (diff.max(), diff.mean())
  assert batch["labels"][0] == first["label"]
  other = views.train_views(decoded, pipeline.example_seed(3, 1, 0, 1), 2, spec)
  assert np.abs(batch["views"][0] - other.numpy()).mean() > 10 / 255  # the seed matters


def test_stream_eval_sees_the_split_once_in_order(imagenet):
  import tensorflow_datasets as tfds
  data_dir, _ = imagenet
  source = sources.load_source(_imagenet_config(data_dir))
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  want = [int(ex["label"]) for ex in builder.as_dataset(split="validation")]
  espec = eval_spec(size=16, method=EvalCropMethod.RESIZE_THEN_CROP, crop_padding=4)
  batches = take(pipeline.eval_dataset(source, 4, espec, options()), 100)
  assert [b["image"].shape for b in batches] == [(4, 16, 16, 3)] * 3
  got = np.concatenate([b["labels"][b["valid"]] for b in batches])
  assert sorted(got) == sorted(want)  # every example once, padding invalid
  assert sum(int((~b["valid"]).sum()) for b in batches) == 2


def test_stream_num_train_examples_and_bad_split(imagenet):
  data_dir, _ = imagenet
  source = sources.load_source(_imagenet_config(data_dir, num_train_examples=16))
  assert source.train_split == "train[:16]" and source.num_train == 16
  with pytest.raises(ConfigError, match="sliced split"):
    sources.load_source(_imagenet_config(data_dir, train_split="train[:50%]",
                                         num_train_examples=8))
  with pytest.raises(ConfigError, match="bad split 'nope'"):
    sources.load_source(_imagenet_config(data_dir, train_split="nope"))
  sliced = sources.load_source(_imagenet_config(data_dir, train_split="train[:50%]",
                                                eval_split="train[50%:]"))
  assert (sliced.num_train, sliced.num_eval) == (12, 12)


def test_imagenet_under_mock_data_streams(tmp_path, monkeypatch):
  """tfds.testing.mock_data: imagenet2012 (variable-size JPEG images) is streamed."""
  import tensorflow_datasets as tfds
  monkeypatch.setattr(tfds_stream, "tfds_prepared", lambda n, d: True)
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
    source = sources.load_source(_imagenet_config(str(tmp_path)))
    assert isinstance(source, tfds_stream.TfdsStreamSource)
    assert source.num_train == 12 and source.num_classes == 1000
    spec = pipeline.TrainInputSpec(4, 2, seed=0, stage=1)
    batches = take(pipeline.train_dataset(source, spec, view_spec(size=16), options()), 4)
    evaluation = take(pipeline.eval_dataset(source, 4, eval_spec(size=16), options()), 10)
  assert all(b["views"].shape == (4, 2, 16, 16, 3) for b in batches)
  assert sum(int(b["valid"].sum()) for b in evaluation) == 12
