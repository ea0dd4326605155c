"""The model_dir contract: what a run keeps where, and what a later command may change.

Layout of a model_dir (`RUN_OUTPUTS`: what runs create there; `--overwrite` removes
exactly these):

- `config.json`: the resolved configuration of the run that created the model_dir,
  written once (`write_config_once`) and never rewritten;
- `classes.json`: the class names behind the label ids (when the source has them);
- `ckpt-<step>.*`, `checkpoint`: the checkpoints (`tf.train.CheckpointManager`);
- `train/`, `eval/`: TensorBoard event files; `projector/<name>/`: embeddings;
  `plugins/profile/`: --profile_steps traces;
- `eval_results.json`: the latest evaluation;
- `results.json`: the run's results over its steps (`results.py`), e.g. the kNN
  monitor's top-1 at each --knn_every step;
- `export/`: the TF-Hub SavedModels (unless --export_dir says otherwise);
- `tmp_worker/<task>/`: scratch of non-chief workers under MultiWorkerMirroredStrategy
  (every worker must take part in saving; only the chief writes the real files).

The contract: a later command on the same model_dir computes what the first run
computed. It may differ only in the fields of `MAY_DIFFER`; any other difference is
refused (`check_config`) before anything is built. --mode=eval/export take the run's
configuration from config.json (`config_for_command`).

No TensorFlow at import: `run.py` checks the model_dir before TensorFlow loads (local
files are read with `open`; gs:// and other file systems through `atomic.gfile`).
Files are written whole or not at all (`atomic.py`).
"""

import fnmatch
import json
import os
import shlex
from typing import FrozenSet, List, Optional, Tuple

from supcon_tf import atomic
from supcon_tf import config as config_lib
from supcon_tf import validation

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
EVAL_RESULTS_FILE = "eval_results.json"
RESULTS_FILE = "results.json"  # see results.py
EXPORT_DIR = "export"
SCRATCH_DIR = "tmp_worker"

# Everything runs create in a model_dir (fnmatch patterns), for --overwrite. Files of
# the user's own in the directory are left alone; an --export_dir outside it too (the
# next export replaces it).
RUN_OUTPUTS = (
    CONFIG_FILE, CLASSES_FILE, EVAL_RESULTS_FILE, RESULTS_FILE,
    "checkpoint", "checkpoint.tmp*", "ckpt-*",  # tf.train.CheckpointManager
    "train", "eval", "projector", "plugins",  # summaries, projector, profile traces
    EXPORT_DIR, SCRATCH_DIR,
    f"*{atomic.TMP_MARK}*", f"*{atomic.OLD_MARK}*")  # interrupted atomic writes


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


def read_json(path: str) -> Optional[dict]:
  """The JSON object in a file.

  Args:
    path: the file (local: read without TensorFlow; else through tf.io.gfile).

  Returns:
    Its object, or None if there is no such file.

  Raises:
    ConfigError: the file is not valid JSON.
  """
  local = "://" not in path
  if not (os.path.exists(path) if local else atomic.gfile().exists(path)):
    return None
  with (open(path) if local else atomic.gfile().GFile(path)) as f:
    try:
      return json.load(f)
    except ValueError:
      raise config_lib.ConfigError(f"{path} is not valid JSON") from None


# ------------------------------------------------------------------ the contract
# The config leaves (dotted "section.field") a later command on a model_dir may set
# differently from the run that created it: none changes what the run computes (its
# checkpoints, losses, accuracies), only where things are, how fast they run, or what
# else is written. Every other leaf is compared, so a new Config field is refused
# when changed until it is listed here with its reason (tests/workdir_test.py walks
# every leaf).
MAY_DIFFER = frozenset({
    # Where the data is, not which data: the dataset, its splits and example counts
    # are compared, and classes.json pins the class names. Taken from config.json
    # unless the command gives them (`_FROM_RUN_UNLESS_GIVEN`).
    "data.data_dir", "data.fashion_mnist_dir", "data.image_dir",
    # tf.data's private thread pool: speed. The input is seeded per example; with
    # --deterministic (compared) the order is kept whatever the pool size.
    "data.input_threads",
    # The bound at which a run stops for undecodable images, not what it computes.
    "data.max_corrupt_fraction",
    # The same blur with each view's own seed, applied to the batch instead of each
    # image (views_test/pipeline_test: equal to 1e-5).
    "data.defer_blur",
    # What this command does with the run, and where the run is (a moved or copied
    # model_dir keeps working).
    "runtime.mode", "runtime.model_dir",
    # The replicas: --batch_size (the global batch) is compared, the loss takes its
    # negatives from the gathered global batch and BatchNorm is synchronised
    # (--use_global_batch_norm, compared), so only the summation order changes.
    "runtime.strategy", "runtime.tpu", "runtime.num_virtual_cpus",
    # Evaluation pads the split to whole batches and counts only real examples, with
    # BatchNorm in inference mode: the same top-1/top-5 at any evaluation batch.
    "runtime.eval_batch_size",
    # The same step compiled by XLA: floating-point rounding only (step_test).
    "runtime.jit_compile",
    # The same loss and gradients computed in chunks of anchor rows (memory, not
    # math: losses_chunked_test, step_test): floating-point rounding only.
    "loss.loss_chunk_size",
    # How many steps one call into the compiled loop runs, and when checkpoints are
    # saved and kept: the input is indexed by the global step and the optimizer
    # takes the same steps, so a resume from any checkpoint continues the same run.
    "runtime.steps_per_loop", "runtime.checkpoint_steps", "runtime.keep_checkpoint_max",
    # Acts only where the run would otherwise stop (a non-finite loss): a run it
    # recovered skipped a batch, which its log and TensorBoard name.
    "runtime.nan_recovery_trials",
    # Progress lines and profiler traces.
    "runtime.log_steps", "runtime.profile_steps",
    # Where and whether the SavedModels of the trained variables are written.
    "runtime.export_dir", "runtime.export_at_end", "runtime.export_momentum_encoder",
    # TensorBoard extras built from their own pipelines (never the training batches).
    "runtime.summary_images", "runtime.projector_examples",
    # The kNN monitor reads the weights between chunks and writes knn/top_1 and
    # results.json; it changes no variable and no input position.
    "runtime.knn_every", "runtime.knn_k", "runtime.knn_temperature",
    "runtime.knn_bank_size",
    # This command's action on the directory, not a setting of the run.
    "runtime.overwrite",
    # What --mode=eval_robustness measures the trained run on.
    "runtime.corruptions", "runtime.corruption_seed", "runtime.baseline_model_dir",
})
# Data locations a command need not repeat: a command that does not give them reads
# the data where the run read it (the same data), not at the flag's default.
_FROM_RUN_UNLESS_GIVEN = frozenset({"data.data_dir", "data.fashion_mnist_dir",
                                    "data.image_dir"})
_READERS = config_lib.READER_MODES


def flat_config(d: dict) -> dict:
  """{"section.field": value} of a `Config.to_dict()`-shaped dict."""
  return {f"{s}.{k}": v for s, section in d.items() if isinstance(section, dict)
          for k, v in section.items()}


def differences(stored: dict, cfg: config_lib.Config,
                names: Optional[FrozenSet[str]] = None) -> List[Tuple[str, object, object]]:
  """The leaves outside `MAY_DIFFER` in which `cfg` differs from a config.json.

  A key config.json lacks (written before the field existed) counts as the field's
  default in `Config()` (a stage's own default), i.e. what that run used.

  Args:
    stored: config.json's object.
    cfg: this command's config.
    names: compare only these dotted leaves (None: all).

  Returns:
    [(dotted name, config.json's value, this command's value)], in `Config` order,
    values as in `to_dict` (enum values, lists).
  """
  old = {**flat_config(config_lib.Config().to_dict()), **flat_config(stored)}
  return [(name, old[name], value)
          for name, value in flat_config(cfg.to_dict()).items()
          if name not in MAY_DIFFER and (names is None or name in names)
          and old[name] != value]


def as_flag(name: str, value) -> str:
  """`--flag=value` of a dotted leaf and a `to_dict` value, as a user would type it."""
  section, key = name.split(".")
  if isinstance(value, bool):
    text = "true" if value else "false"
  elif isinstance(value, list):
    text = ",".join(str(v) for v in value)
  else:
    text = str(value)
  return f"--{config_lib.flag_name(section, key)}={shlex.quote(text)}"


def check_config(cfg: config_lib.Config,
                 given: Optional[FrozenSet[str]] = None) -> Optional[dict]:
  """Refuses a command that would change what the run in its model_dir computes.

  Training modes compare every leaf; --mode=eval/export (which take the rest from
  config.json, see `config_for_command`) only the leaves the command sets.
  Nothing is checked for --mode=dry_run or with --overwrite (the run starts over).

  Args:
    cfg: this command's config.
    given: the dotted leaves the command line sets (None: all).

  Returns:
    config.json's object, or None when there is none (or nothing was checked).

  Raises:
    ConfigError: eval/export of a model_dir without config.json, or differences
      outside `MAY_DIFFER`, all named with both values on one line.
  """
  rt = cfg.runtime
  if rt.mode == config_lib.Mode.DRY_RUN or rt.overwrite:
    return None
  path = os.path.join(rt.model_dir, CONFIG_FILE)
  stored = read_json(path)
  if stored is None:
    if rt.mode in _READERS:
      raise config_lib.ConfigError(f"--mode={rt.mode.value} needs a trained "
                                   f"model_dir; {rt.model_dir!r} has no {CONFIG_FILE}")
    return None
  diffs = differences(stored, cfg, given if rt.mode in _READERS else None)
  if diffs:
    hint = (f"--mode={rt.mode.value} takes the run's configuration from {path}: drop "
            "those flags" if rt.mode in _READERS else
            "use a new --model_dir, or --overwrite to start over")
    raise config_lib.ConfigError(
        f"model_dir {rt.model_dir} holds "
        f"{' '.join(as_flag(n, old) for n, old, _ in diffs)}; this command says "
        f"{' '.join(as_flag(n, new) for n, _, new in diffs)} ({hint})")
  return stored


def config_for_command(cfg: config_lib.Config,
                       given: FrozenSet[str]) -> config_lib.Config:
  """The configuration this command runs with, after `check_config`.

  Training: the command's, with the data locations of config.json that the command
  does not give. --mode=eval/export: config.json's, with the `MAY_DIFFER` leaves
  (mode, export_dir, eval batch, strategy, ...) from the command, data locations
  only if given: a shorter command line cannot change what they compute.

  Args:
    cfg: the command's validated config.
    given: the dotted leaves the command line sets (`flags.given_fields`).

  Returns:
    The validated config to run.

  Raises:
    ConfigError: see `check_config`; config.json holds an unknown enum value; the
      merged config does not validate.
  """
  stored = check_config(cfg, given)
  if stored is None:
    return cfg
  try:
    run = config_lib.Config.from_dict(stored).to_dict()
  except ValueError as e:
    raise config_lib.ConfigError(f"{os.path.join(cfg.runtime.model_dir, CONFIG_FILE)}: "
                                 f"{e}") from None
  command = cfg.to_dict()
  from_command = MAY_DIFFER if cfg.runtime.mode in _READERS else None
  for section, values in run.items():
    for key in values:
      name = f"{section}.{key}"
      if name in _FROM_RUN_UNLESS_GIVEN and name not in given:
        continue
      if from_command is None or name in from_command:
        values[key] = command[section][key]
  merged = config_lib.Config.from_dict(run)
  validation.validate(merged)
  return merged


def write_config_once(cfg: config_lib.Config) -> bool:
  """Writes the run's config to <model_dir>/config.json unless it is there.

  Args:
    cfg: the resolved config.

  Returns:
    Whether it was written (the run creating the model_dir, or starting it over).
  """
  path = os.path.join(cfg.runtime.model_dir, CONFIG_FILE)
  if read_json(path) is not None:
    return False
  atomic.write_text_atomic(path, cfg.to_json())
  return True


def start_over(model_dir: str) -> str:
  """Removes every `RUN_OUTPUTS` entry of a model_dir (--overwrite).

  Args:
    model_dir: the run's model_dir (need not exist).

  Returns:
    The line saying what was removed (checkpoint files summed up per step).
  """
  fs = atomic.gfile()
  if not fs.isdir(model_dir):
    return f"--overwrite: {model_dir} does not exist yet, nothing to remove"
  removed = []
  for entry in sorted(e.rstrip("/") for e in fs.listdir(model_dir)):
    if not any(fnmatch.fnmatchcase(entry, p) for p in RUN_OUTPUTS):
      continue
    path = os.path.join(model_dir, entry)
    if fs.isdir(path):
      fs.rmtree(path)
      entry += "/"
    else:
      fs.remove(path)
    if entry.startswith("ckpt-"):
      entry = entry.split(".")[0]  # ckpt-4.index, ckpt-4.data-... -> ckpt-4
    if entry not in removed:
      removed.append(entry)
  if not removed:
    return f"--overwrite: nothing to remove in {model_dir}"
  return f"--overwrite: removed {', '.join(removed)} from {model_dir}"


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
    atomic.write_text_atomic(path, json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------ eval results
def write_eval_results(model_dir: str, result: dict) -> None:
  """Writes the latest evaluation to <model_dir>/eval_results.json.

  Args:
    model_dir: the run's model_dir.
    result: what `Trainer.evaluate` returned.
  """
  atomic.write_text_atomic(os.path.join(model_dir, EVAL_RESULTS_FILE),
                           json.dumps(result, indent=2))
