"""The run's results file, <model_dir>/results.json: what a run measured, by step.

One JSON object whose keys name kinds of results, each a list of entries that carry
the `global_step` they were measured at, sorted by it, e.g.

    {"knn": [{"global_step": 500, "top_1": 0.81, "k": 200, "bank_size": 60000,
              "num_examples": 10000}, ...]}

(the kNN monitor, `train/knn.py`). Writers add their entries with `record`, which
keeps every other key of the file as it is (several kinds of results share it) and
replaces an entry of the same kind at the same step (a resumed run that retakes a
step measures it again) instead of adding a second one. Three keys hold one object
each (`put`), not a list:

- "training": {"wall_seconds", "global_step"}: training time summed over the
  invocations that worked on the run, up to its newest checkpoint (`TrainingClock`);
- "run": the run's summary, written with every evaluation (`run_summary`): config
  hash, dataset, method, seed, top-1/top-5, wall time, hardware, package and
  TensorFlow versions — what sweeps and `python -m supcon_tf.report` read;
- "robustness": --mode=eval_robustness's errors and mCE (`train/robustness.py`).

The file is rewritten whole through a rename (`atomic.py`): a crash leaves the
previous file or the new one. Only the chief writes it. No TensorFlow at import.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import time
from typing import List, Optional

from supcon_tf import atomic
from supcon_tf import config as config_lib
from supcon_tf import workdir

STEP_KEY = "global_step"


def path(model_dir: str) -> str:
  """`<model_dir>/results.json`."""
  return os.path.join(model_dir, workdir.RESULTS_FILE)


def read(model_dir: str) -> dict:
  """The results recorded so far.

  Args:
    model_dir: the run's model_dir.

  Returns:
    results.json's object ({} when there is no file).

  Raises:
    ConfigError: the file is not valid JSON, or not a JSON object.
  """
  found = workdir.read_json(path(model_dir))
  if found is None:
    return {}
  if not isinstance(found, dict):
    raise config_lib.ConfigError(f"{path(model_dir)} is not a JSON object")
  return found


def entries(model_dir: str, kind: str) -> List[dict]:
  """The entries of one kind (e.g. "knn"), sorted by global step ([] if none)."""
  return list(read(model_dir).get(kind, []))


def _write(model_dir: str, results: dict) -> dict:
  atomic.write_text_atomic(path(model_dir), json.dumps(results, indent=2) + "\n")
  return results


def record(model_dir: str, kind: str, entry: dict) -> dict:
  """Adds `entry` to the `kind` list of results.json, written atomically.

  Args:
    model_dir: the run's model_dir.
    kind: the key of the list (e.g. "knn").
    entry: a JSON-ready dict with a `global_step`; an entry of the same kind at
      that step is replaced.

  Returns:
    The whole results object as written.

  Raises:
    ValueError: `entry` has no global step.
    ConfigError: an existing results.json is not valid JSON or `kind` in it is
      not a list.
  """
  if STEP_KEY not in entry:
    raise ValueError(f"a results entry needs a {STEP_KEY!r}: {entry}")
  results = read(model_dir)
  old: Optional[list] = results.get(kind, [])
  if not isinstance(old, list):
    raise config_lib.ConfigError(f"{path(model_dir)}: {kind!r} is not a list")
  step = int(entry[STEP_KEY])
  kept = [e for e in old if int(e.get(STEP_KEY, -1)) != step]
  results[kind] = sorted(kept + [dict(entry)], key=lambda e: int(e.get(STEP_KEY, -1)))
  return _write(model_dir, results)


def put(model_dir: str, key: str, value: dict) -> dict:
  """Sets the object under `key` of results.json (other keys kept), atomically.

  Returns:
    The whole results object as written.
  """
  results = read(model_dir)
  results[key] = value
  return _write(model_dir, results)


class TrainingClock:
  """Sums the training time kept in checkpoints into results.json's "training".

  Every `saved(step)` adds the time since the previous one (or since the clock
  started, after the restore) to the total of the earlier invocations. Time after
  the newest checkpoint of a killed run is not counted: a resume redoes that work.
  """

  def __init__(self, model_dir: str, is_chief: bool):
    self.model_dir, self.is_chief = model_dir, is_chief
    self._mark = time.time()

  def saved(self, global_step: int) -> None:
    now = time.time()
    if self.is_chief:
      before = read(self.model_dir).get("training", {})
      put(self.model_dir, "training", {
          "wall_seconds": round(float(before.get("wall_seconds", 0.0))
                                + now - self._mark, 1),
          "global_step": int(global_step)})
    self._mark = now


def config_hash(cfg: config_lib.Config) -> str:
  """12 hex digits naming what a run computes, the same for every seed.

  The config's leaves minus those that may differ between commands of one run
  (`workdir.MAY_DIFFER`: locations, strategy, logging, ...) and minus data.seed, so
  the seeds of one configuration share the hash.
  """
  flat = {k: v for k, v in workdir.flat_config(cfg.to_dict()).items()
          if k not in workdir.MAY_DIFFER and k != "data.seed"}
  return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def method(cfg: config_lib.Config) -> str:
  """The method a run trains its encoder with: supcon, supcon_l_in, simclr or
  cross_entropy (no stage with a contrastive loss)."""
  contrastive = any(s.trains and s.contrastive_loss_weight > 0
                    for s in (cfg.stage_1, cfg.stage_2))
  if not contrastive:
    return "cross_entropy"
  if not cfg.loss.use_labels:
    return "simclr"
  inside = cfg.loss.summation_location == config_lib.SummationLocation.INSIDE
  return "supcon_l_in" if inside else "supcon"


def hardware(strategy_name: str, replicas: int, devices: List[str]) -> dict:
  """The machine a run measured on: CPU model and cores, the strategy, its replicas
  and this worker's devices."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "strategy": strategy_name,
          "replicas": int(replicas), "devices": sorted(set(devices))}


def versions() -> dict:
  """The package's and TensorFlow's versions (None where not installed)."""
  found = {}
  for key, dist in (("package_version", "supcon_tf"), ("tensorflow_version",
                                                        "tensorflow")):
    try:
      found[key] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      found[key] = None
  return found


def run_summary(cfg: config_lib.Config, dataset: str, evaluation: dict,
                machine: dict) -> dict:
  """The "run" object: what the run is and what it measured.

  Args:
    cfg: the run's config.
    dataset: the source's name.
    evaluation: `Trainer.evaluate`'s result (top_1, top_5, global_step, ...).
    machine: `hardware(...)`.

  Returns:
    A JSON-ready dict; wall_seconds from "training" (None if not recorded).
  """
  training = read(cfg.runtime.model_dir).get("training", {})
  return {"config_hash": config_hash(cfg), "dataset": dataset, "method": method(cfg),
          "seed": cfg.data.seed, "top_1": evaluation.get("top_1"),
          "top_5": evaluation.get("top_5"), "num_examples": evaluation.get("num_examples"),
          "global_step": evaluation.get("global_step"),
          "wall_seconds": training.get("wall_seconds"), "hardware": machine,
          **versions()}
