"""The class list kept in model_dir/classes.json (`sources.check_and_write_classes`,
`sources.classes_record`)."""

import json
import os

import pytest

from supcon_tf.config import ConfigError, DataConfig
from supcon_tf.data import sources
from tests import testing


def test_class_list_written_and_checked(tmp_path):
  testing.write_image_folder(str(tmp_path / "a"), per_class=2)
  testing.write_image_folder(str(tmp_path / "b"), classes=("cat", "dog", "owl"),
                             per_class=2)
  def load(name):
    return sources.load_source(DataConfig(dataset="image_folder",
                                          image_dir=str(tmp_path / name),
                                          train_split="all", eval_split="all"))
  model_dir = str(tmp_path / "run")
  sources.check_and_write_classes(model_dir, load("a"), write=False)
  assert not os.path.exists(os.path.join(model_dir, "classes.json"))
  sources.check_and_write_classes(model_dir, load("a"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]
  sources.check_and_write_classes(model_dir, load("a"), write=True)  # same: fine
  with pytest.raises(ConfigError, match="new: owl.*use a new --model_dir"):
    sources.check_and_write_classes(model_dir, load("b"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]  # untouched


def test_classes_record_and_a_source_without_names(tmp_path):
  unnamed = testing.synthetic_source()  # class_names ()
  assert sources.classes_record(unnamed) is None
  sources.check_and_write_classes(str(tmp_path / "run"), unnamed, write=True)
  assert not os.path.exists(tmp_path / "run" / "classes.json")
  testing.write_image_folder(str(tmp_path / "a"), per_class=2)
  folder = sources.load_source(DataConfig(dataset="image_folder",
                                          image_dir=str(tmp_path / "a"),
                                          train_split="all", eval_split="all"))
  assert sources.classes_record(folder) == {
      "dataset": "image_folder", "num_classes": 3, "classes": ["cat", "dog", "fox"]}
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "classes.json").write_text("{not json")
  with pytest.raises(ConfigError, match="not valid JSON"):
    sources.check_and_write_classes(str(tmp_path / "bad"), folder, write=True)
