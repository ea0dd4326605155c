"""What the report reads from training runs: one `Run` per finished model_dir, the
TensorBoard scalars of its training, and embeddings of its evaluation images.

A run's facts come from results.json's "run" record when it has one, otherwise
from config.json and eval_results.json (`method_of` names the method from the
config). Runs whose model_dir has neither a "run" record nor eval_results.json are
unfinished and skipped. The t-SNE takes `<model_dir>/embeddings.npz` (written by
`write_embeddings`) when present, else embeds the first evaluation images with the
run's exported encoder.

No TensorFlow at import: only embedding with an export loads it.
"""

import collections
import dataclasses
import glob
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from supcon_tf import config as config_lib
from supcon_tf import results as results_lib
from supcon_tf import workdir
from supcon_tf.report import events

EMBEDDINGS_FILE = "embeddings.npz"
SUPCON, SUPCON_L_IN, SIMCLR, CROSS_ENTROPY = (
    "supcon", "supcon_l_in", "simclr", "cross_entropy")
# Methods in the order the plots and the table list them; others follow by name.
METHOD_ORDER = (SUPCON, SUPCON_L_IN, SIMCLR, CROSS_ENTROPY)

Series = events.Series


class MissingData(Exception):
  """A plot or a run lacks what it needs. The message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished training run.

  Attributes:
    model_dir: its directory.
    method: "supcon", "supcon_l_in", "simclr", "cross_entropy" or another name.
    seed: the run's seed.
    top_1: test top-1 accuracy in [0, 1].
    top_5: test top-5 accuracy (None if unknown).
    global_step: the step evaluated (None if unknown).
    dataset: the dataset's name.
    config: config.json's object ({} without one).
    results: results.json's object ({} without one).
  """
  model_dir: str
  method: str
  seed: int
  top_1: float
  top_5: Optional[float]
  global_step: Optional[int]
  dataset: str
  config: dict
  results: dict

  @property
  def robustness(self) -> Optional[dict]:
    """results.json's "robustness" record, if any."""
    found = self.results.get("robustness")
    return found if isinstance(found, dict) else None


# ------------------------------------------------------------------ runs
def method_of(cfg: config_lib.Config) -> str:
  """The method a configuration trains.

  Args:
    cfg: the run's config.

  Returns:
    `results.method`'s name (what the run itself records in results.json).
  """
  return results_lib.method(cfg)


def _config(model_dir: str, stored: Optional[dict]) -> Optional[config_lib.Config]:
  if stored is None:
    return None
  try:
    return config_lib.Config.from_dict(stored)
  except ValueError as e:
    raise config_lib.ConfigError(
        f"{os.path.join(model_dir, workdir.CONFIG_FILE)}: {e}") from None


def read_run(model_dir: str) -> Run:
  """The finished run in a model_dir.

  Args:
    model_dir: the run's directory.

  Returns:
    The run, from results.json's "run" record where it has one, else from
    config.json and eval_results.json.

  Raises:
    MissingData: the run is unfinished (no eval_results.json) or the directory is
      no run's (no config.json).
    ConfigError: a file is not valid JSON or config.json holds an unknown value.
  """
  stored = workdir.read_json(os.path.join(model_dir, workdir.CONFIG_FILE))
  results = results_lib.read(model_dir)
  record = results.get("run") if isinstance(results.get("run"), dict) else {}
  evaluation = workdir.read_json(os.path.join(model_dir, workdir.EVAL_RESULTS_FILE))
  evaluation = evaluation if isinstance(evaluation, dict) else {}
  cfg = _config(model_dir, stored)
  if cfg is None and not record.get("method"):
    raise MissingData(f"no {workdir.CONFIG_FILE} (not a run's model_dir)")
  if "top_1" not in record and "top_1" not in evaluation:
    raise MissingData(f"no {workdir.EVAL_RESULTS_FILE} (unfinished run)")

  def fact(key, default=None):
    for source in (record, evaluation):
      if source.get(key) is not None:
        return source[key]
    return default

  return Run(model_dir=model_dir,
             method=str(record.get("method") or method_of(cfg)),
             seed=int(record.get("seed", cfg.data.seed if cfg else 0)),
             top_1=float(fact("top_1")),
             top_5=None if fact("top_5") is None else float(fact("top_5")),
             global_step=None if fact("global_step") is None else int(fact("global_step")),
             dataset=str(record.get("dataset") or (cfg.data.dataset if cfg else "")),
             config=stored or {}, results=results)


def expand(patterns: str) -> List[str]:
  """The directories matching comma-separated glob patterns, sorted, each once.

  Args:
    patterns: e.g. "runs/studies/x/*/seed_*,runs/fashion_mnist".
  """
  found = set()
  for pattern in (p.strip() for p in patterns.split(",")):
    if pattern:
      found.update(os.path.normpath(p) for p in glob.glob(pattern) if os.path.isdir(p))
  return sorted(found)


def read_runs(model_dirs: Sequence[str]) -> Tuple[List[Run], List[Tuple[str, str]]]:
  """The finished runs among model_dirs, and the skipped ones with why.

  Args:
    model_dirs: directories, e.g. from `expand`.

  Returns:
    (runs in model_dirs' order, [(model_dir, reason)]).

  Raises:
    ConfigError: see `read_run`.
  """
  runs, skipped = [], []
  for model_dir in model_dirs:
    try:
      runs.append(read_run(model_dir))
    except MissingData as e:
      skipped.append((model_dir, str(e)))
  return runs, skipped


def methods(runs: Sequence[Run]) -> List[str]:
  """The methods of `runs`, those of `METHOD_ORDER` first, then others by name."""
  names = {r.method for r in runs}
  return ([m for m in METHOD_ORDER if m in names] +
          sorted(names - set(METHOD_ORDER)))


def by_method(runs: Sequence[Run]) -> Dict[str, List[Run]]:
  """{method: its runs}, methods ordered as `methods`."""
  return {m: [r for r in runs if r.method == m] for m in methods(runs)}


# ------------------------------------------------------------------ stability
# The config fields that make a hyperparameter setting (not where a run lives).
_SETTING_SECTIONS = ("data", "loss", "model", "stage_1", "stage_2")
_NOT_SETTINGS = ("data.seed",)


def _settings(run: Run) -> Dict[str, str]:
  """A run's hyperparameters: {"section.field": JSON of its value} (+ the batch)."""
  found = {}
  for section in _SETTING_SECTIONS:
    for key, value in (run.config.get(section) or {}).items():
      found[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
  found["runtime.batch_size"] = json.dumps((run.config.get("runtime") or {})
                                           .get("batch_size"))
  for key in _NOT_SETTINGS:
    found.pop(key, None)
  return found


def _axis_name(keys: Sequence[str]) -> str:
  """"stage_1.optimizer" -> "optimizer"; stage 2's fields keep their section."""
  return " + ".join(k if k.startswith("stage_2.") else k.split(".", 1)[1]
                    for k in sorted(keys))


def stability_axes(runs: Sequence[Run]) -> Dict[str, Dict[str, List[Run]]]:
  """The hyperparameter axes a set of runs varies, as the paper's stability figure
  groups them.

  Per method, a run's setting is compared with the most common value of each
  hyperparameter among that method's runs (the reference); the fields where it
  differs name its axis. The reference run (no difference) belongs to every axis.

  Args:
    runs: the finished runs of the stability study.

  Returns:
    {axis: {method: its runs on the axis}} in axis-name order; {} when no run
    differs from its method's reference.
  """
  axes: Dict[str, Dict[str, List[Run]]] = {}
  references: Dict[str, List[Run]] = {}
  for method, group in by_method(runs).items():
    settings = [_settings(r) for r in group]
    keys = sorted(set().union(*settings))
    common = {k: collections.Counter(s.get(k) for s in settings).most_common(1)[0][0]
              for k in keys}
    references[method] = []
    for run, setting in zip(group, settings):
      differs = [k for k in keys if setting.get(k) != common[k]]
      if differs:
        axes.setdefault(_axis_name(differs), {}).setdefault(method, []).append(run)
      else:
        references[method].append(run)
  for axis in axes.values():
    for method, reference in references.items():
      axis.setdefault(method, [])[:0] = reference
  return {name: {m: axis[m] for m in methods(runs) if axis.get(m)}
          for name, axis in sorted(axes.items())}


def stability_panels(runs: Sequence[Run]) -> List[Tuple[str, Dict[str, List[Run]]]]:
  """What the stability figure and table show: [(axis, {method: runs})] for each
  axis of `stability_axes`, then ("all settings", every run by method)."""
  return list(stability_axes(runs).items()) + [("all settings", by_method(runs))]


# ------------------------------------------------------------------ curves
LOSS, TRAIN_ACCURACY, KNN_TOP_1 = "loss", "train_accuracy", "knn_top_1"


def training_series(run: Run) -> Dict[str, Series]:
  """A run's training curves.

  Args:
    run: the run.

  Returns:
    {"loss": loss/total, "train_accuracy": train/accuracy, "knn_top_1": results.json's
    "knn" entries (else eval's knn/top_1)}, each only when the run has it.
  """
  train = events.read_scalars(os.path.join(run.model_dir, "train"),
                       ("loss/total", "train/accuracy"))
  out = {}
  for tag, name in (("loss/total", LOSS), ("train/accuracy", TRAIN_ACCURACY)):
    if tag in train:
      out[name] = train[tag]
  knn = [e for e in run.results.get("knn") or []
         if "global_step" in e and "top_1" in e]
  if knn:
    out[KNN_TOP_1] = (np.array([e["global_step"] for e in knn], np.int64),
                      np.array([e["top_1"] for e in knn], np.float64))
  else:
    found = events.read_scalars(os.path.join(run.model_dir, "eval"), ("knn/top_1",))
    if "knn/top_1" in found:
      out[KNN_TOP_1] = found["knn/top_1"]
  return out


def encoder_passes(run: Run) -> Optional[Tuple[float, float, float, float]]:
  """How a run's global steps map to passes of the training set through its encoder.

  The study's budget is counted in these passes (each view of an image is one), so
  methods with different batches and stage lengths line up on this axis.

  Args:
    run: the run (config.json's stage lengths in epochs, the final global step from
      results.json's "training" or "run" record).

  Returns:
    (steps_per_epoch, stage-1 steps, stage-1 views, stage-2 views), or None when a
    stage is given in steps or the final step is unknown (plot against the step).
  """
  if not run.config:
    return None
  try:
    cfg = config_lib.Config.from_dict(run.config)
  except ValueError:
    return None
  stages = (cfg.stage_1, cfg.stage_2)
  if any(s.steps > 0 for s in stages):
    return None
  epochs = sum(s.epochs for s in stages)
  training = run.results.get("training") or {}
  total = training.get("global_step") or run.global_step
  if not total or epochs <= 0:
    return None
  per_epoch = total / epochs
  return (per_epoch, round(cfg.stage_1.epochs * per_epoch),
          *(float(s.views(cfg.data.num_views)) for s in stages))


def to_passes(steps: np.ndarray, mapping: Tuple[float, float, float, float]) -> np.ndarray:
  """Global steps -> passes through the encoder (see `encoder_passes`)."""
  per_epoch, first, views_1, views_2 = mapping
  steps = np.asarray(steps, np.float64)
  return (views_1 * np.minimum(steps, first)
          + views_2 * np.maximum(steps - first, 0.0)) / per_epoch


# ------------------------------------------------------------------ embeddings
def write_embeddings(model_dir: str, embeddings: np.ndarray, labels: np.ndarray) -> str:
  """Writes `<model_dir>/embeddings.npz`, the t-SNE's input.

  Args:
    model_dir: the run's directory.
    embeddings: float [N, D].
    labels: int [N], the class of each row.

  Returns:
    The file's path.

  Raises:
    ValueError: the shapes do not match.
  """
  embeddings = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels, np.int64)
  if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
    raise ValueError(f"embeddings [N, D] and labels [N] needed, got "
                     f"{embeddings.shape} and {labels.shape}")
  path = os.path.join(model_dir, EMBEDDINGS_FILE)
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(tmp, embeddings=embeddings, labels=labels)
  os.replace(tmp, path)
  return path


def _exported(run: Run, limit: int) -> Tuple[np.ndarray, np.ndarray]:
  """The first `limit` evaluation images embedded by the run's exported encoder."""
  if not run.config:
    raise MissingData(f"{run.model_dir} has no {EMBEDDINGS_FILE} and no "
                      f"{workdir.CONFIG_FILE} to find its export")
  cfg = config_lib.Config.from_dict(run.config)
  cfg = dataclasses.replace(
      cfg, runtime=dataclasses.replace(cfg.runtime, model_dir=run.model_dir))
  encoder_dir = os.path.join(workdir.default_export_dir(cfg), "encoder")
  if not os.path.exists(os.path.join(encoder_dir, "saved_model.pb")):
    raise MissingData(f"{run.model_dir} has no {EMBEDDINGS_FILE} and no exported "
                      f"encoder ({encoder_dir})")
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from supcon_tf.data import pipeline
  from supcon_tf.data import sources
  from supcon_tf.data.augment import views
  # pylint: enable=g-import-not-at-top
  try:
    source = sources.load_source(cfg.data)
  except config_lib.ConfigError as e:
    raise MissingData(f"{run.model_dir}: no evaluation images to embed ({e})") from None
  images, labels = pipeline.eval_examples(source, limit,
                                          views.EvalViewSpec.from_config(cfg.data))
  encoder = tf.saved_model.load(encoder_dir)
  parts = [encoder(tf.constant(images[i:i + 256]), training=False).numpy()
           for i in range(0, len(images), 256)]
  return np.concatenate(parts).astype(np.float32), labels.astype(np.int64)


def read_embeddings(run: Run, limit: int) -> Tuple[np.ndarray, np.ndarray]:
  """At most `limit` embeddings of a run's evaluation images and their labels.

  Args:
    run: the run.
    limit: how many rows at most (the first ones).

  Returns:
    (float32 [n, D], int64 [n]) from embeddings.npz, else from the exported encoder.

  Raises:
    MissingData: the run has neither, or its evaluation images cannot be loaded.
  """
  path = os.path.join(run.model_dir, EMBEDDINGS_FILE)
  if os.path.exists(path):
    with np.load(path) as found:
      if "embeddings" not in found or "labels" not in found:
        raise MissingData(f"{path} lacks the arrays 'embeddings' and 'labels'")
      return (found["embeddings"][:limit].astype(np.float32),
              found["labels"][:limit].astype(np.int64))
  return _exported(run, limit)
