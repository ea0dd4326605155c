"""The model_dir contract: config.json written once and compared field by field
(`MAY_DIFFER`), eval/export reading the run's configuration, --overwrite's removal,
classes.json, eval results, the non-chief scratch path."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from supcon_tf import config as config_lib
from supcon_tf import workdir
from supcon_tf.data import sources
from tests import cli
from tests import testing
from tests.config_test import _other_value  # a value of a field's type that differs

Mode = config_lib.Mode


def _config(model_dir, mode=Mode.TRAIN, **model):
  return config_lib.Config(model=config_lib.ModelConfig(**model),
                           runtime=config_lib.RuntimeConfig(model_dir=str(model_dir),
                                                            mode=mode))


def _replace(cfg, name, value):
  """`cfg` with the dotted leaf `name` set to `value`."""
  section, key = name.split(".")
  return dataclasses.replace(cfg, **{section: dataclasses.replace(
      getattr(cfg, section), **{key: value})})


def _leaves():
  """(dotted name, dataclass field, default value) of every leaf of `Config`."""
  defaults = config_lib.Config()
  for section in config_lib.SECTIONS:
    value = getattr(defaults, section)
    for f in dataclasses.fields(value):
      yield f"{section}.{f.name}", f, getattr(value, f.name)


# ------------------------------------------------------------------ config.json
def test_config_json_is_written_once(tmp_path):
  cfg = _config(tmp_path, resnet_depth=18)
  assert workdir.write_config_once(cfg)
  with open(tmp_path / workdir.CONFIG_FILE) as f:
    assert config_lib.Config.from_dict(json.load(f)) == cfg
  assert os.listdir(tmp_path) == [workdir.CONFIG_FILE]  # no temporary file left
  workdir.check_config(cfg)  # the same config resumes
  before = (tmp_path / workdir.CONFIG_FILE).read_bytes()
  resumed = _replace(cfg, "runtime.log_steps", 5)  # allowed to differ
  workdir.check_config(resumed)
  assert not workdir.write_config_once(resumed)
  assert (tmp_path / workdir.CONFIG_FILE).read_bytes() == before  # never rewritten


def test_every_leaf_is_either_allowed_to_differ_or_refused(tmp_path):
  """A new Config field is compared until MAY_DIFFER lists it (with its reason)."""
  names = [name for name, _, _ in _leaves()]
  assert workdir.MAY_DIFFER <= set(names), workdir.MAY_DIFFER - set(names)
  base = _config(tmp_path)
  stored = base.to_dict()
  refused = []
  for name, f, default in _leaves():
    changed = _replace(base, name, _other_value(f, getattr(
        getattr(base, name.split(".")[0]), f.name)))
    diffs = workdir.differences(stored, changed)
    if name in workdir.MAY_DIFFER:
      assert diffs == [], name
    else:
      assert [d[0] for d in diffs] == [name], name
      refused.append(name)
  # What the issue names as computed is among the refused.
  for name in ("model.resnet_depth", "loss.temperature", "loss.use_labels",
               "data.dataset", "data.train_split", "data.num_views", "data.seed",
               "data.num_train_examples", "stage_1.epochs", "stage_1.steps",
               "stage_2.optimizer", "stage_2.base_learning_rate",
               "stage_1.learning_rate_decay", "runtime.batch_size",
               "runtime.precision"):
    assert name in refused, name


def test_a_refusal_names_every_field_with_both_values_on_one_line(tmp_path):
  first = _config(tmp_path)
  first = _replace(_replace(first, "stage_1.epochs", 5.0), "runtime.batch_size", 256)
  workdir.write_config_once(first)
  digest = cli.tree_digest(tmp_path)
  command = _replace(_replace(first, "stage_1.epochs", 3.0), "runtime.batch_size", 128)
  command = _replace(command, "runtime.log_steps", 9)  # allowed: not named
  with pytest.raises(config_lib.ConfigError) as info:
    workdir.check_config(command)
  assert str(info.value) == (
      f"model_dir {tmp_path} holds --stage_1_epochs=5.0 --batch_size=256; this "
      "command says --stage_1_epochs=3.0 --batch_size=128 (use a new --model_dir, or "
      "--overwrite to start over)")
  assert cli.tree_digest(tmp_path) == digest
  # Lists and strings are written as flags a user can paste.
  cfg = _replace(first, "model.projection_head_layers", (64, 32))
  cfg = _replace(cfg, "data.train_split", "train[:90%]")
  with pytest.raises(config_lib.ConfigError,
                     match=r"holds --train_split=train --projection_head_layers=2048,128; "
                           r"this command says --train_split='train\[:90%\]' "
                           r"--projection_head_layers=64,32") as info:
    workdir.check_config(_replace(_replace(cfg, "stage_1.epochs", 5.0),
                                  "runtime.batch_size", 256))
  assert "\n" not in str(info.value)


def test_an_old_config_json_without_a_key_reads_as_its_default(tmp_path):
  """A key added after the run was written counts as what that run used: the
  default of its own section (stage_1's optimizer is lars, StageConfig's momentum)."""
  cfg = _config(tmp_path)
  stored = cfg.to_dict()
  del stored["stage_1"]["optimizer"], stored["runtime"]["overwrite"]
  del stored["loss"]
  (tmp_path / workdir.CONFIG_FILE).write_text(json.dumps(stored))
  workdir.check_config(cfg)
  assert workdir.config_for_command(cfg, frozenset()) == cfg
  momentum = _replace(cfg, "stage_1.optimizer", config_lib.Optimizer.MOMENTUM)
  with pytest.raises(config_lib.ConfigError, match="holds --stage_1_optimizer=lars; "
                     "this command says --stage_1_optimizer=momentum"):
    workdir.check_config(momentum)


def test_eval_and_export_need_a_config_json(tmp_path):
  for mode in (Mode.EVAL, Mode.EXPORT):
    with pytest.raises(config_lib.ConfigError, match="has no config.json"):
      workdir.check_config(_config(tmp_path, mode=mode))
  workdir.check_config(_config(tmp_path))  # training creates it


def test_invalid_json_is_a_config_error(tmp_path):
  (tmp_path / workdir.CONFIG_FILE).write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="is not valid JSON"):
    workdir.check_config(_config(tmp_path))


def test_dry_run_and_overwrite_are_not_checked(tmp_path):
  workdir.write_config_once(_config(tmp_path, resnet_depth=18))
  for name, value in (("runtime.mode", Mode.DRY_RUN), ("runtime.overwrite", True)):
    cfg = _replace(_config(tmp_path, resnet_depth=50), name, value)
    assert workdir.check_config(cfg) is None
    assert workdir.config_for_command(cfg, frozenset()) == cfg


def _run(tmp_path):
  """The config.json of a finished run: its own data dir, steps, eval batch."""
  cfg = _config(tmp_path, resnet_depth=18)
  cfg = _replace(cfg, "data.fashion_mnist_dir", "/data/first")
  cfg = _replace(cfg, "stage_1.steps", 3)
  cfg = _replace(cfg, "runtime.eval_batch_size", 16)
  cfg = _replace(cfg, "runtime.strategy", config_lib.StrategyType.MIRRORED)
  workdir.write_config_once(cfg)
  return cfg


def test_eval_and_export_compute_what_config_json_says(tmp_path):
  run = _run(tmp_path)
  for mode in (Mode.EVAL, Mode.EXPORT):
    # `--model_dir=... --mode=eval`: everything else is at its default.
    short = _config(tmp_path, mode=mode)
    got = workdir.config_for_command(short, frozenset({"runtime.model_dir",
                                                       "runtime.mode"}))
    # The run's configuration and data; this command's mode, eval batch, strategy.
    expected = _replace(run, "runtime.mode", mode)
    expected = _replace(expected, "runtime.eval_batch_size", 1024)
    expected = _replace(expected, "runtime.strategy", config_lib.StrategyType.DEFAULT)
    assert got == expected
    # A data location the command gives is used.
    moved = _replace(short, "data.fashion_mnist_dir", "/data/moved")
    got = workdir.config_for_command(moved, frozenset({"data.fashion_mnist_dir"}))
    assert got.data.fashion_mnist_dir == "/data/moved" and got.stage_1.steps == 3
    # A computed field given with the run's value is fine; with another, refused.
    same = _replace(short, "stage_1.steps", 3)
    assert workdir.config_for_command(same, frozenset({"stage_1.steps"})).stage_1 == \
        run.stage_1
    with pytest.raises(config_lib.ConfigError, match=(
        f"holds --resnet_depth=18 --stage_1_steps=3; this command says "
        f"--resnet_depth=50 --stage_1_steps=5 \\(--mode={mode.value} takes the run's "
        "configuration from .*config.json: drop those flags\\)")):
      workdir.config_for_command(_replace(short, "stage_1.steps", 5),
                                 frozenset({"stage_1.steps", "model.resnet_depth"}))


def test_a_resume_reads_the_data_where_the_run_read_it_unless_given(tmp_path):
  run = _run(tmp_path)
  command = _replace(run, "data.fashion_mnist_dir",
                     config_lib.DataConfig().fashion_mnist_dir)  # not repeated
  command = _replace(command, "runtime.log_steps", 1)
  got = workdir.config_for_command(command, frozenset({"runtime.log_steps"}))
  assert got == _replace(run, "runtime.log_steps", 1)
  moved = _replace(run, "data.fashion_mnist_dir", "/data/moved")
  assert workdir.config_for_command(moved, frozenset({"data.fashion_mnist_dir"})) == moved


def test_workdir_checks_a_local_model_dir_without_tensorflow(tmp_path):
  (tmp_path / workdir.CONFIG_FILE).write_text(_config(tmp_path).to_json())
  code = ("import sys; from supcon_tf import config, workdir; "
          f"cfg = config.Config(runtime=config.RuntimeConfig(model_dir={str(tmp_path)!r}));"
          "workdir.config_for_command(cfg, frozenset()); "
          "assert 'tensorflow' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True,
                 env=dict(os.environ, PYTHONPATH=testing.REPO_ROOT))


# ------------------------------------------------------------------ --overwrite
def test_start_over_removes_what_runs_create_and_nothing_else(tmp_path):
  run_files = ("config.json", "classes.json", "eval_results.json", "checkpoint",
               "ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-3.index",
               "train/events.out", "eval/events.out", "projector/stage_1/metadata.tsv",
               "plugins/profile/x/host.xplane.pb", "export/encoder/saved_model.pb",
               "export.tmp-123/partial", "tmp_worker/1/ckpt-2.index",
               "config.json.tmp-99")
  for name in run_files + ("notes.txt", "mine/ckpt-9.index"):
    os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
    (tmp_path / name).write_text("x")
  line = workdir.start_over(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["mine", "notes.txt"]
  assert line == (
      "--overwrite: removed checkpoint, ckpt-2, ckpt-3, classes.json, config.json, "
      "config.json.tmp-99, eval/, eval_results.json, export/, export.tmp-123/, "
      f"plugins/, projector/, tmp_worker/, train/ from {tmp_path}")
  assert workdir.start_over(str(tmp_path)) == f"--overwrite: nothing to remove in {tmp_path}"
  assert "does not exist yet" in workdir.start_over(str(tmp_path / "new"))
  assert not os.path.exists(tmp_path / "new")


# ------------------------------------------------------------------ classes.json
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


def test_eval_results_are_written_whole(tmp_path):
  workdir.write_eval_results(str(tmp_path), {"top_1": 0.5})
  assert json.loads((tmp_path / workdir.EVAL_RESULTS_FILE).read_text()) == {"top_1": 0.5}
  assert os.listdir(tmp_path) == [workdir.EVAL_RESULTS_FILE]


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
