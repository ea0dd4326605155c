"""The model_dir contract: config.json checks, classes.json, atomic file and
directory writes, the non-chief scratch path."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from supcon_tf import config as config_lib
from supcon_tf import workdir
from supcon_tf.data import sources
from tests import testing


def _config(model_dir, mode=config_lib.Mode.TRAIN, **model):
  return config_lib.Config(model=config_lib.ModelConfig(**model),
                           runtime=config_lib.RuntimeConfig(model_dir=str(model_dir),
                                                            mode=mode))


def test_config_json_round_trip(tmp_path):
  cfg = _config(tmp_path, resnet_depth=18)
  workdir.write_config(cfg)
  with open(tmp_path / workdir.CONFIG_FILE) as f:
    assert config_lib.Config.from_dict(json.load(f)) == cfg
  assert os.listdir(tmp_path) == [workdir.CONFIG_FILE]  # no temporary file left
  workdir.check_config(cfg)  # the same config resumes


def test_a_changed_model_or_dataset_is_refused(tmp_path):
  workdir.write_config(_config(tmp_path, resnet_depth=18))
  with pytest.raises(config_lib.ConfigError, match="--resnet_depth=50 differs from 18"):
    workdir.check_config(_config(tmp_path, resnet_depth=50))
  other = _config(tmp_path, resnet_depth=18)
  other = dataclasses.replace(other, data=dataclasses.replace(other.data, image_size=32))
  with pytest.raises(config_lib.ConfigError, match="--image_size=32 differs from 28"):
    workdir.check_config(other)


def test_eval_and_export_need_a_config_json(tmp_path):
  for mode in (config_lib.Mode.EVAL, config_lib.Mode.EXPORT):
    with pytest.raises(config_lib.ConfigError, match="has no config.json"):
      workdir.check_config(_config(tmp_path, mode=mode))
  workdir.check_config(_config(tmp_path))  # training creates it


def test_invalid_json_is_a_config_error(tmp_path):
  (tmp_path / workdir.CONFIG_FILE).write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="is not valid JSON"):
    workdir.check_config(_config(tmp_path))


def test_classes_are_written_once_and_checked(tmp_path):
  names = ("cat", "dog", "fox")
  workdir.check_and_write_classes(str(tmp_path), "pets", names, write=False)
  assert not os.path.exists(tmp_path / workdir.CLASSES_FILE)  # only the writer writes
  workdir.check_and_write_classes(str(tmp_path), "pets", names, write=True)
  record = json.loads((tmp_path / workdir.CLASSES_FILE).read_text())
  assert record == {"dataset": "pets", "num_classes": 3, "classes": list(names)}
  workdir.check_and_write_classes(str(tmp_path), "pets", names, write=True)  # same: ok
  with pytest.raises(config_lib.ConfigError, match="e.g. new: emu"):
    workdir.check_and_write_classes(str(tmp_path), "pets", ("cat", "dog", "emu"),
                                    write=True)
  # Reordered names would renumber the labels: refused too.
  with pytest.raises(config_lib.ConfigError, match="differ from the 3"):
    workdir.check_and_write_classes(str(tmp_path), "pets", ("dog", "cat", "fox"),
                                    write=True)
  # A source without class names has nothing to check.
  workdir.check_and_write_classes(str(tmp_path / "x"), "mnist", (), write=True)
  assert not os.path.exists(tmp_path / "x")


def test_write_text_atomic_replaces_whole_files(tmp_path):
  path = tmp_path / "sub" / "results.json"
  workdir.write_text_atomic(str(path), "one")
  workdir.write_text_atomic(str(path), "two")
  assert path.read_text() == "two" and os.listdir(path.parent) == ["results.json"]
  workdir.write_eval_results(str(tmp_path), {"top_1": 0.5})
  assert json.loads((tmp_path / workdir.EVAL_RESULTS_FILE).read_text()) == {"top_1": 0.5}


def test_a_failed_directory_write_keeps_the_previous_directory(tmp_path):
  target = tmp_path / "export"

  def write(marker):
    def fill(tmp):
      os.makedirs(tmp)
      (open(os.path.join(tmp, "marker"), "w")).write(marker)
    return fill

  workdir.write_directory_atomic(str(target), write("first"))

  def broken(tmp):
    write("second")(tmp)
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    workdir.write_directory_atomic(str(target), broken)
  assert (target / "marker").read_text() == "first"
  assert sorted(os.listdir(tmp_path)) == ["export"]  # no .tmp-/.old- left
  workdir.write_directory_atomic(str(target), write("third"))
  assert (target / "marker").read_text() == "third"


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  dead_pid = int(dead.stdout)
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    for name in (f"export.tmp-{dead_pid}", f"export.old-{dead_pid}",
                 f"export.tmp-{live.pid}"):
      os.makedirs(tmp_path / name)
    workdir.write_directory_atomic(str(tmp_path / "export"), os.makedirs)
    assert sorted(os.listdir(tmp_path)) == ["export", f"export.tmp-{live.pid}"]
  finally:
    live.kill()
    live.wait()


def test_scratch_and_export_paths(tmp_path):
  assert workdir.scratch_dir("/runs/x", 3) == "/runs/x/tmp_worker/3"
  cfg = _config("/runs/x")
  assert workdir.default_export_dir(cfg) == "/runs/x/export"
  cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime,
                                                             export_dir="/hub/enc"))
  assert workdir.default_export_dir(cfg) == "/hub/enc"

def check(model_dir, source, write):
  """`check_and_write_classes` of a data source's name and class names."""
  workdir.check_and_write_classes(model_dir, source.name, source.class_names, write)


def test_class_list_written_and_checked(tmp_path):
  testing.write_image_folder(str(tmp_path / "a"), per_class=2)
  testing.write_image_folder(str(tmp_path / "b"), classes=("cat", "dog", "owl"),
                             per_class=2)
  def load(name):
    return sources.load_source(config_lib.DataConfig(dataset="image_folder",
                                          image_dir=str(tmp_path / name),
                                          train_split="all", eval_split="all"))
  model_dir = str(tmp_path / "run")
  check(model_dir, load("a"), write=False)
  assert not os.path.exists(os.path.join(model_dir, "classes.json"))
  check(model_dir, load("a"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]
  check(model_dir, load("a"), write=True)  # same: fine
  with pytest.raises(config_lib.ConfigError, match="new: owl.*use a new --model_dir"):
    check(model_dir, load("b"), write=True)
  with open(os.path.join(model_dir, "classes.json")) as f:
    assert json.load(f)["classes"] == ["cat", "dog", "fox"]  # untouched


def test_classes_record_and_a_source_without_names(tmp_path):
  unnamed = testing.synthetic_source()  # class_names ()
  assert workdir.classes_record(unnamed.name, unnamed.class_names) is None
  check(str(tmp_path / "run"), unnamed, write=True)
  assert not os.path.exists(tmp_path / "run" / "classes.json")
  testing.write_image_folder(str(tmp_path / "a"), per_class=2)
  folder = sources.load_source(config_lib.DataConfig(dataset="image_folder",
                                          image_dir=str(tmp_path / "a"),
                                          train_split="all", eval_split="all"))
  assert workdir.classes_record(folder.name, folder.class_names) == {
      "dataset": "image_folder", "num_classes": 3, "classes": ["cat", "dog", "fox"]}
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "classes.json").write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="not valid JSON"):
    check(str(tmp_path / "bad"), folder, write=True)
