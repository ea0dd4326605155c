"""The run's results file, <model_dir>/results.json: what a run measured, by step.

One JSON object whose keys name kinds of results, each a list of entries that carry
the `global_step` they were measured at, sorted by it, e.g.

    {"knn": [{"global_step": 500, "top_1": 0.81, "k": 200, "bank_size": 60000,
              "num_examples": 10000}, ...]}

(the kNN monitor, `train/knn.py`). Writers add their entries with `record`, which
keeps every other key of the file as it is (several kinds of results share it) and
replaces an entry of the same kind at the same step (a resumed run that retakes a
step measures it again) instead of adding a second one. The file is rewritten
whole through a rename (`atomic.py`): a crash leaves the previous file or the new
one. Only the chief writes it. No TensorFlow at import.
"""

import json
import os
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
  atomic.write_text_atomic(path(model_dir), json.dumps(results, indent=2) + "\n")
  return results
