"""In-memory sources: the idx reader, Fashion-MNIST, TFDS decoded in memory,
subsets, the records handed to the pipeline."""

import struct

import numpy as np
import pytest

from supcon_tf.config import DataConfig
from supcon_tf.data import sources
from supcon_tf.data.sources import memory, tfds_stream
from supcon_tf.data.sources.records import MemoryRecords
from tests import testing
from tests.data.helpers import fake_fashion_dir


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
  arrays = fake_fashion_dir(tmp_path, gz=gz)
  source = memory.load_fashion_mnist_idx(str(tmp_path))
  np.testing.assert_array_equal(source.train_images[..., 0],
                                arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(source.test_labels, arrays["t10k-labels-idx1-ubyte"])
  assert source.train_images.shape == (40, 28, 28, 1)
  assert source.train_labels.dtype == np.int32 and source.num_classes == 10


def test_idx_int32_and_bad_magic(tmp_path):
  arr = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
  testing.write_idx(tmp_path / "a.gz", arr)
  np.testing.assert_array_equal(memory.read_idx(str(tmp_path / "a.gz")), arr)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
  with pytest.raises(ValueError, match="magic"):
    memory.read_idx(str(tmp_path / "bad"))
  (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
  with pytest.raises(ValueError, match="expected 10 bytes"):
    memory.read_idx(str(tmp_path / "short"))


@pytest.mark.parametrize("name, shape, classes", [("cifar10", (32, 32, 3), 10),
                                                  ("cifar100", (32, 32, 3), 100)])
def test_tfds_cifar_in_memory_with_splits(tmp_path, monkeypatch, name, shape, classes):
  import tensorflow_datasets as tfds
  monkeypatch.setattr(tfds_stream, "tfds_prepared", lambda n, d: True)
  with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path)):
    source = sources.load_source(DataConfig(dataset=name, data_dir=str(tmp_path),
                                            train_split="train[:50%]",
                                            eval_split="train[50%:]"))
  assert source.train_images.shape[1:] == shape and source.num_classes == classes
  assert source.train_images.dtype == np.uint8 and source.train_labels.dtype == np.int32


def test_fashion_mnist_is_a_source_of_memory_records(tmp_path):
  fake_fashion_dir(tmp_path)
  source = memory.load_fashion_mnist_idx(str(tmp_path))
  assert isinstance(source, sources.Source)
  assert source.class_names == memory.FASHION_MNIST_CLASSES
  assert not source.reports_corrupt and source.num_channels == 1
  assert (source.num_train, source.num_eval) == (40, 20)
  assert source.steps_per_epoch(8, 1) == source.steps_per_epoch(8, 2) == 5
  train, evaluation = source.train_records(2), source.eval_records(2)
  assert isinstance(train, MemoryRecords) and isinstance(evaluation, MemoryRecords)
  assert train.images is source.train_images and train.labels is source.train_labels
  assert evaluation.images is source.test_images and evaluation.labels is source.test_labels


def test_subset_keeps_the_first_examples():
  source = testing.synthetic_source(n=16, num_test=8)
  cut = memory.subset(source, 5, 3)
  np.testing.assert_array_equal(cut.train_images, source.train_images[:5])
  np.testing.assert_array_equal(cut.test_labels, source.test_labels[:3])
  whole = memory.subset(source, 0, 0)  # 0 keeps all
  assert (whole.num_train, whole.num_eval) == (16, 8)
  assert whole.class_names == source.class_names and whole.name == source.name


def test_idx_splits_hold_out_a_validation_set(tmp_path):
  arrays = fake_fashion_dir(tmp_path)  # 40 train, 20 test
  train_images = arrays["train-images-idx3-ubyte"]
  cfg = DataConfig(fashion_mnist_dir=str(tmp_path), train_split="train[:75%]",
                   eval_split="train[75%:]")
  source = sources.load_source(cfg)
  assert (source.num_train, source.num_eval) == (30, 10)
  np.testing.assert_array_equal(source.train_images[..., 0], train_images[:30])
  np.testing.assert_array_equal(source.test_images[..., 0], train_images[30:])
  np.testing.assert_array_equal(source.test_labels,
                                arrays["train-labels-idx1-ubyte"][30:])
  both = sources.load_source(DataConfig(fashion_mnist_dir=str(tmp_path),
                                        train_split="train+test[:5]", eval_split="test[5:]"))
  assert (both.num_train, both.num_eval) == (45, 15)
  np.testing.assert_array_equal(both.train_labels[40:],
                                arrays["t10k-labels-idx1-ubyte"][:5])


@pytest.mark.parametrize("split, message", [("validation", "Unknown split"),
                                            ("train[:200%]", "train\\[:200%\\]"),
                                            ("train[40:]", "empty")])
def test_idx_bad_splits_are_refused(tmp_path, split, message):
  fake_fashion_dir(tmp_path)
  from supcon_tf.config import ConfigError
  with pytest.raises(ConfigError, match=message):
    sources.load_source(DataConfig(fashion_mnist_dir=str(tmp_path), eval_split=split))
