"""The model_dir contract: what a run keeps where, and how it is written.

Layout of a model_dir:

- `config.json`: the resolved configuration of the run (`Config.to_json`);
- `classes.json`: the class names behind the label ids (when the source has them);
- `ckpt-<step>.*`, `checkpoint`: the checkpoints (`tf.train.CheckpointManager`);
- `train/`, `eval/`: TensorBoard event files; `projector/<name>/`: embeddings;
- `eval_results.json`: the latest evaluation;
- `export/`: the TF-Hub SavedModels (unless --export_dir says otherwise);
- `tmp_worker/<task>/`: scratch of non-chief workers under MultiWorkerMirroredStrategy
  (every worker must take part in saving; only the chief writes the real files).

Every file is written whole or not at all: `write_text_atomic` writes a sibling and
renames it into place; `write_directory_atomic` does the same for a directory tree
(a crash leaves the previous complete directory, the new complete one, or nothing at
the target path, never a partial one).
"""

import json
import os
import sys
import time
from typing import Callable, Optional

import tensorflow as tf

from supcon_tf import config as config_lib

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
EVAL_RESULTS_FILE = "eval_results.json"
EXPORT_DIR = "export"
SCRATCH_DIR = "tmp_worker"

# Test hooks. PAUSE_ENV="PHASE:SECONDS[,PHASE:SECONDS...]" makes a write print
# "supcon-export-pause PHASE" on stderr and sleep at that point, for SECONDS or until
# a file named PHASE appears in the directory named by RESUME_ENV. Phases of
# `write_directory_atomic`: "written" (the temporary directory is complete, nothing
# renamed yet), "swapped" (the previous directory is renamed aside, the new one is not
# in place yet); the export adds "partial" (see `export.py`).
PAUSE_ENV = "SUPCON_EXPORT_TEST_PAUSE"
RESUME_ENV = "SUPCON_EXPORT_TEST_RESUME"

_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


# ------------------------------------------------------------------ layout
def default_export_dir(cfg: config_lib.Config) -> str:
  """Where the SavedModels go.

  Args:
    cfg: the run's config.

  Returns:
    --export_dir, else <model_dir>/export.
  """
  return cfg.runtime.export_dir or os.path.join(cfg.runtime.model_dir, EXPORT_DIR)


def scratch_dir(model_dir: str, task_id: int) -> str:
  """The directory a non-chief worker writes its (never read) copies into.

  Args:
    model_dir: the run's model_dir.
    task_id: the worker's task id.

  Returns:
    `<model_dir>/tmp_worker/<task_id>`.
  """
  return os.path.join(model_dir, SCRATCH_DIR, str(task_id))


# ------------------------------------------------------------------ atomic writes
def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a sibling temporary file and a rename.

  Args:
    path: the target file (local or any tf.io.gfile file system); its directory is
      created if missing.
    text: the content.
  """
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = f"{path}{_TMP_MARK}{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_json(path: str) -> Optional[dict]:
  """The JSON object in a file.

  Args:
    path: the file.

  Returns:
    Its object, or None if there is no such file.

  Raises:
    ConfigError: the file is not valid JSON.
  """
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    try:
      return json.load(f)
    except ValueError:
      raise config_lib.ConfigError(f"{path} is not valid JSON") from None


def test_pause(phase: str) -> None:
  """The test hook (see PAUSE_ENV); does nothing unless the variable is set.

  Args:
    phase: the point reached ("partial", "written" or "swapped").
  """
  spec = os.environ.get(PAUSE_ENV, "")
  for item in filter(None, spec.split(",")):
    name, _, seconds = item.partition(":")
    if name != phase:
      continue
    print(f"supcon-export-pause {phase}", file=sys.stderr, flush=True)
    resume = os.path.join(os.environ.get(RESUME_ENV, ""), phase)
    deadline = time.time() + float(seconds or 60)
    while time.time() < deadline and not (os.environ.get(RESUME_ENV) and
                                          os.path.exists(resume)):
      time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale(target: str) -> None:
  """Deletes `<target>.tmp-<pid>`/`.old-<pid>` left by processes that are gone."""
  parent = os.path.dirname(target) or "."
  base = os.path.basename(target)
  if not tf.io.gfile.isdir(parent):
    return
  for entry in tf.io.gfile.listdir(parent):
    entry = entry.rstrip("/")
    for mark in (_TMP_MARK, _OLD_MARK):
      if entry.startswith(base + mark):
        pid = entry[len(base + mark):]
        local = "://" not in target
        if pid.isdigit() and local and _pid_alive(int(pid)):
          continue  # another live writer (or ours)
        tf.io.gfile.rmtree(os.path.join(parent, entry))


def write_directory_atomic(target: str, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_dir)`, then puts `tmp_dir` at `target`.

  The previous `target` (if any) is renamed to `<target>.old-<pid>`, the new one
  renamed into place and the old one deleted; on an error the previous directory is
  put back. Leftover `.tmp-*`/`.old-*` siblings of dead processes are removed first.

  Args:
    target: the directory to (re)place.
    write: fills the temporary directory it is given (which it must create).
  """
  target = target.rstrip("/")
  parent = os.path.dirname(target)
  if parent:
    tf.io.gfile.makedirs(parent)
  _remove_stale(target)
  tmp = f"{target}{_TMP_MARK}{os.getpid()}"
  old = f"{target}{_OLD_MARK}{os.getpid()}"
  for path in (tmp, old):
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  try:
    write(tmp)
    test_pause("written")
    if tf.io.gfile.exists(target):
      tf.io.gfile.rename(target, old)
      test_pause("swapped")
    tf.io.gfile.rename(tmp, target)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
    if tf.io.gfile.exists(old) and not tf.io.gfile.exists(target):
      tf.io.gfile.rename(old, target)  # put the previous directory back
    raise
  if tf.io.gfile.exists(old):
    tf.io.gfile.rmtree(old)


# ------------------------------------------------------------------ config.json
# Sections (and data fields) whose change makes an existing model_dir unusable.
_INCOMPATIBLE_SECTIONS = ("model",)
_INCOMPATIBLE_DATA_FIELDS = ("dataset", "image_size")


def check_config(cfg: config_lib.Config) -> None:
  """Refuses to reuse a model_dir written with an incompatible config.

  Args:
    cfg: the config of this command.

  Raises:
    ConfigError: eval/export of a model_dir without config.json, or a config whose
      model section, dataset or image size differs from the model_dir's.
  """
  path = os.path.join(cfg.runtime.model_dir, CONFIG_FILE)
  old = read_json(path)
  if old is None:
    if cfg.runtime.mode in (config_lib.Mode.EVAL, config_lib.Mode.EXPORT):
      raise config_lib.ConfigError(f"--mode={cfg.runtime.mode.value} needs a trained "
                                   f"model_dir; {cfg.runtime.model_dir!r} has no "
                                   f"{CONFIG_FILE}")
    return
  new = cfg.to_dict()
  for section in _INCOMPATIBLE_SECTIONS:
    for key, value in new[section].items():
      if old.get(section, {}).get(key, value) != value:
        raise config_lib.ConfigError(
            f"--{key}={value} differs from {old[section][key]} in {path}: use a new "
            "--model_dir (or the same flags) to keep the existing checkpoints intact")
  for key in _INCOMPATIBLE_DATA_FIELDS:
    if old.get("data", {}).get(key, new["data"][key]) != new["data"][key]:
      raise config_lib.ConfigError(
          f"--{key}={new['data'][key]} differs from {old['data'][key]} in {path}: use "
          "a new --model_dir")


def write_config(cfg: config_lib.Config) -> None:
  """Writes the run's config to <model_dir>/config.json.

  Args:
    cfg: the resolved config.
  """
  write_text_atomic(os.path.join(cfg.runtime.model_dir, CONFIG_FILE), cfg.to_json())


# ------------------------------------------------------------------ classes.json
def classes_record(dataset: str, class_names) -> Optional[dict]:
  """What classes.json holds for a source (None: the source names no classes).

  Args:
    dataset: the source's name.
    class_names: its class names, in label-id order (may be empty).
  """
  names = list(class_names)
  if not names:
    return None
  return {"dataset": dataset, "num_classes": len(names), "classes": names}


def check_and_write_classes(model_dir: str, dataset: str, class_names,
                            write: bool) -> None:
  """Refuses a model_dir whose classes.json lists other classes (the label ids
  would mean different things); writes it when `write` and it is missing.

  Args:
    model_dir: the run's model_dir.
    dataset: the source's name.
    class_names: the source's class names in label-id order (may be empty: nothing
      to check or write).
    write: whether this process writes (the chief of a training run).

  Raises:
    ConfigError: the classes differ, or classes.json is not valid JSON.
  """
  record = classes_record(dataset, class_names)
  if record is None:
    return
  path = os.path.join(model_dir, CLASSES_FILE)
  old = read_json(path)
  if old is not None:
    if old.get("classes") != record["classes"]:
      added = sorted(set(record["classes"]) - set(old.get("classes", [])))[:3]
      raise config_lib.ConfigError(
          f"the classes of the data ({len(record['classes'])}"
          + (f", e.g. new: {', '.join(added)}" if added else "") + ") differ from the "
          f"{len(old.get('classes', []))} in {path}: use a new --model_dir")
    return
  if write:
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------ eval results
def write_eval_results(model_dir: str, result: dict) -> None:
  """Writes the latest evaluation to <model_dir>/eval_results.json.

  Args:
    model_dir: the run's model_dir.
    result: what `Trainer.evaluate` returned.
  """
  write_text_atomic(os.path.join(model_dir, EVAL_RESULTS_FILE),
                    json.dumps(result, indent=2))
