"""What each kind of source hands the pipeline: its kind of records, sized to the
split."""

import numpy as np

from supcon_tf.config import DataConfig
from supcon_tf.data import sources
from supcon_tf.data.sources import records
from tests import testing


def test_memory_sources_give_their_arrays():
  source = testing.synthetic_source(n=12, size=8, channels=1, classes=3, num_test=5)
  train, test = source.train_records(1), source.eval_records(1)
  assert isinstance(train, records.MemoryRecords)
  assert train.images is source.train_images and test.images is source.test_images
  np.testing.assert_array_equal(train.labels, source.train_labels)
  assert len(test.labels) == 5


def test_image_folders_give_their_files_in_label_order(tmp_path):
  testing.write_image_folder(str(tmp_path / "photos"), per_class=3)
  source = sources.load_source(DataConfig(image_dir=str(tmp_path / "photos"),
                                          dataset="image_folder", train_split="all",
                                          eval_split="all"))
  train = source.train_records(1)
  assert isinstance(train, records.FileRecords)
  assert len(train.files) == len(train.labels) == source.num_train == 9
  names = source.class_names
  for path, label in zip(train.files, train.labels):
    assert f"/{names[label]}/" in str(path)  # each file carries its folder's label
