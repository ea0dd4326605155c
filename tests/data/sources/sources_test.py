"""Choosing a source (`load_source`), metadata without reading (`dataset_metadata`),
and the written `Source` protocol."""

import dataclasses

import numpy as np
import pytest

from supcon_tf.config import ConfigError, DataConfig
from supcon_tf.data import pipeline, sources
from supcon_tf.data.sources import memory, tfds_stream
from tests import testing
from tests.data.helpers import fake_fashion_dir, options, take, view_spec


def test_load_source_errors(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    sources.load_source(DataConfig(fashion_mnist_dir=str(tmp_path / "nope")))
  with pytest.raises(ConfigError, match="not found"):
    sources.load_source(DataConfig(fashion_mnist_dir=str(tmp_path)))
  with pytest.raises(ConfigError, match="not prepared under --data_dir"):
    sources.load_source(DataConfig(dataset="imagenet2012", eval_split="validation"))


def test_given_data_locations_that_do_not_exist_are_refused(tmp_path):
  """Even where the source could do without them: --data_dir on the embedded
  Fashion-MNIST default would otherwise fall back to the idx files silently."""
  fake_fashion_dir(tmp_path)
  nowhere = str(tmp_path / "no" / "such")
  for cfg in (DataConfig(fashion_mnist_dir=str(tmp_path), data_dir=nowhere),
              DataConfig(dataset="cifar10", data_dir=nowhere)):
    with pytest.raises(ConfigError, match=f"--data_dir='{nowhere}' does not exist"):
      sources.load_source(cfg)
    with pytest.raises(ConfigError, match="--data_dir="):
      sources.dataset_metadata(cfg)  # a dry run too
  with pytest.raises(ConfigError, match=f"--fashion_mnist_dir='{nowhere}' does not"):
    sources.check_given_locations(DataConfig(data_dir=str(tmp_path),
                                             fashion_mnist_dir=nowhere))
  # Not given: the default idx directory, the idx directory of another dataset, a
  # remote path in a dry run (planned on a laptop).
  sources.check_given_locations(DataConfig(data_dir=str(tmp_path)))
  sources.check_given_locations(DataConfig(dataset="cifar10", fashion_mnist_dir=nowhere))
  sources.check_given_locations(DataConfig(data_dir="gs://no-such-bucket/tfds"),
                                remote=False)


def test_load_source_subset_and_tfds_fallback(tmp_path):
  fake_fashion_dir(tmp_path)
  (tmp_path / "no_tfds_here").mkdir()
  cfg = DataConfig(fashion_mnist_dir=str(tmp_path), num_train_examples=12,
                   num_eval_examples=5, data_dir=str(tmp_path / "no_tfds_here"))
  source = sources.load_source(cfg)
  assert len(source.train_labels) == 12 and len(source.test_labels) == 5
  assert "idx" in source.origin


def test_tfds_source_used_when_prepared(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  assert not tfds_stream.tfds_prepared("fashion_mnist", str(tmp_path))
  assert not tfds_stream.tfds_prepared("fashion_mnist", "")
  # No network here: mock_data serves generated examples through the real TFDS
  # API; `is_prepared` looks at files, so it is patched to say "prepared".
  monkeypatch.setattr(tfds_stream, "tfds_prepared", lambda name, data_dir: True)
  with tfds.testing.mock_data(num_examples=30, data_dir=str(tmp_path)):
    source = sources.load_source(DataConfig(data_dir=str(tmp_path)))
  assert "TFDS" in source.origin
  assert source.train_images.shape[1:] == (28, 28, 1)
  assert len(source.train_labels) == 30 and source.num_classes == 10
  assert source.train_images.dtype == np.uint8


def test_cifar_streams_when_memory_budget_is_zero(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  monkeypatch.setattr(tfds_stream, "tfds_prepared", lambda n, d: True)
  with tfds.testing.mock_data(num_examples=16, data_dir=str(tmp_path)):
    in_memory = sources.load_source(DataConfig(dataset="cifar10", data_dir=str(tmp_path),
                                               image_size=32))
    streamed = sources.load_source(DataConfig(dataset="cifar10", data_dir=str(tmp_path),
                                              image_size=32, max_in_memory_gb=0))
    assert isinstance(in_memory, memory.InMemorySource)
    assert isinstance(streamed, tfds_stream.TfdsStreamSource)
    assert in_memory.class_names == streamed.class_names and len(in_memory.class_names) == 10
    batch = take(pipeline.train_dataset(streamed, pipeline.TrainInputSpec(8, 2, 0, 1),
                                        view_spec(size=32), options()), 1)[0]
  assert batch["views"].shape == (8, 2, 32, 32, 3)


@pytest.mark.parametrize("dataset, eval_split, sizes", [
    ("imagenet2012", "validation", (1281167, 50000, 1000, 3)),
    ("fashion_mnist", "test", (60000, 10000, 10, 1)),
    ("cifar100", "test", (50000, 10000, 100, 3))])
def test_dataset_metadata_of_the_catalog(dataset, eval_split, sizes):
  meta = sources.dataset_metadata(DataConfig(dataset=dataset, eval_split=eval_split))
  assert (meta.num_train, meta.num_eval, meta.num_classes, meta.channels) == sizes
  assert meta.name == dataset and meta.origin == "the TFDS catalog"
  cut = sources.dataset_metadata(DataConfig(dataset=dataset, eval_split=eval_split,
                                            num_train_examples=100, num_eval_examples=7))
  assert (cut.num_train, cut.num_eval) == (100, 7)
  with pytest.raises(ConfigError, match="sizes are unknown"):
    sources.dataset_metadata(DataConfig(dataset="svhn_cropped"))


def test_dataset_metadata_slices_the_catalog_splits_as_tfds_does():
  # The study's validation split: what a dry run plans is what training reads.
  held_out = DataConfig(train_split="train[:90%]", eval_split="train[90%:]")
  meta = sources.dataset_metadata(held_out)
  assert (meta.num_train, meta.num_eval) == (54000, 6000)
  both = sources.dataset_metadata(DataConfig(dataset="cifar10",
                                             train_split="train+test[:50%]"))
  assert both.num_train == 55000
  with pytest.raises(ConfigError, match=r"^--eval_split='validation': .*"
                     r"\(fashion_mnist has splits train, test\)$"):
    sources.dataset_metadata(DataConfig(eval_split="validation"))


@pytest.mark.parametrize("flag", ["train_split", "eval_split"])
def test_unlabelled_imagenet_test_split_is_refused_before_reading(flag, tmp_path):
  cfg = DataConfig(dataset="imagenet2012", data_dir=str(tmp_path),
                   **{"eval_split": "validation", flag: "test[:10%]"})
  message = (f"--{flag}='test[:10%]': imagenet2012's 'test' split has no labels "
             "(TFDS gives -1); evaluate on 'validation'")
  for check in (sources.dataset_metadata, sources.load_source):  # dry run, training
    with pytest.raises(ConfigError) as e:
      check(cfg)
    assert str(e.value) == message


def test_every_source_kind_satisfies_the_protocol(tmp_path, fake_data):
  """The protocol's members, by name: what the trainer and the pipeline may use."""
  members = ("name", "origin", "num_train", "num_eval", "num_classes", "num_channels",
             "class_names", "reports_corrupt", "steps_per_epoch", "train_records",
             "eval_records")
  testing.write_image_folder(str(tmp_path / "folder"), per_class=2)
  kinds = [
      sources.load_source(DataConfig(fashion_mnist_dir=fake_data)),
      testing.synthetic_source(),
      sources.load_source(DataConfig(dataset="image_folder",
                                     image_dir=str(tmp_path / "folder"),
                                     train_split="all", eval_split="all")),
  ]
  for source in kinds:
    assert isinstance(source, sources.Source), type(source).__name__
    assert isinstance(source.class_names, tuple)
    assert isinstance(source.reports_corrupt, bool)
    assert all(m in dir(source) for m in members)
  assert set(sources.Source.__annotations__) == set(members[:8])


def test_an_object_missing_a_member_is_not_a_source():
  source = testing.synthetic_source()
  @dataclasses.dataclass(frozen=True)
  class NoRecords:  # everything but the records
    name: str = "x"
    origin: str = "x"
    num_train: int = 1
    num_eval: int = 1
    num_classes: int = 1
    num_channels: int = 1
    class_names: tuple = ()
    reports_corrupt: bool = False

    def steps_per_epoch(self, global_batch_size, num_pipelines):
      return 0

  assert isinstance(source, sources.Source)
  assert not isinstance(NoRecords(), sources.Source)
