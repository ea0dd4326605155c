"""The report's numbers: per method, mean and spread over its runs, as a Markdown table.

Accuracies and errors are fractions in the files and percentages in the table; a
spread is the sample standard deviation over the method's runs (seeds) that have
the number, left out where only one has it. No TensorFlow, no matplotlib.
"""

import statistics
from typing import Dict, List, Optional, Sequence

import numpy as np

from supcon_tf.report import data

SEVERITIES = 5


def mean_std(values: Sequence[Optional[float]]) -> Optional[tuple]:
  """(mean, sample std (0.0 for one value), count) of the values that are not None,
  or None when all are."""
  values = [float(v) for v in values if v is not None]
  if not values:
    return None
  return (statistics.mean(values),
          statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def severity_accuracy(robustness: dict) -> Optional[np.ndarray]:
  """Accuracy at severity 0 (clean) to 5, each the mean over the corruptions.

  Args:
    robustness: results.json's "robustness" record.

  Returns:
    float [6] (1 - error), or None when the record has no clean error or no
    corruption with one error per severity.
  """
  errors = [e for e in (robustness.get("errors") or {}).values()
            if isinstance(e, (list, tuple)) and len(e) == SEVERITIES]
  if robustness.get("clean_error") is None or not errors:
    return None
  by_severity = np.mean(np.array(errors, np.float64), axis=0)
  return 1.0 - np.concatenate([[float(robustness["clean_error"])], by_severity])


def _percent(stats: Optional[tuple]) -> str:
  if stats is None:
    return "-"
  mean, std, count = stats
  return f"{100 * mean:.2f} ± {100 * std:.2f}" if count > 1 else f"{100 * mean:.2f}"


def method_rows(runs: Sequence[data.Run]) -> List[Dict[str, object]]:
  """Per method (ordered as `data.methods`), the statistics the table shows.

  Args:
    runs: the finished runs.

  Returns:
    [{"method", "runs", "top_1", "top_5", "corruption_error", "mce",
    "relative_mce"}]: "runs" is the count, the others `mean_std` tuples (or None).
  """
  rows = []
  for method, group in data.by_method(runs).items():
    robust = [r.robustness or {} for r in group]
    rows.append({
        "method": method, "runs": len(group),
        "top_1": mean_std([r.top_1 for r in group]),
        "top_5": mean_std([r.top_5 for r in group]),
        "corruption_error": mean_std([x.get("mean_corruption_error") for x in robust]),
        "mce": mean_std([x.get("mce") for x in robust]),
        "relative_mce": mean_std([x.get("relative_mce") for x in robust]),
    })
  return rows


def markdown_table(runs: Sequence[data.Run], baseline_method: str) -> str:
  """The summary table.

  Columns: method, seeds (runs), top-1 and top-5 (%, mean ± std), the top-1
  difference to `baseline_method`'s mean (points, when it has runs), and, when any
  run has them in results.json's "robustness": the mean corruption error, mCE and
  relative mCE (%).

  Args:
    runs: the finished runs.
    baseline_method: the method the others are compared with.

  Returns:
    The table's lines, joined.
  """
  rows = method_rows(runs)
  baseline = next((r["top_1"] for r in rows if r["method"] == baseline_method), None)
  optional = [(key, title) for key, title in (
      ("corruption_error", "corruption error (%)"), ("mce", "mCE (%)"),
      ("relative_mce", "relative mCE (%)")) if any(r[key] for r in rows)]
  header = ["method", "seeds", "top-1 (%)", "top-5 (%)"]
  if baseline is not None:
    header.append(f"top-1 vs {baseline_method} (pts)")
  header += [title for _, title in optional]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [str(row["method"]), str(row["runs"]), _percent(row["top_1"]),
             _percent(row["top_5"])]
    if baseline is not None:
      cells.append(f"{100 * (row['top_1'][0] - baseline[0]):+.2f}")
    cells += [_percent(row[key]) for key, _ in optional]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def stability_table(runs: Sequence[data.Run]) -> str:
  """The stability study as a table: per hyperparameter axis the runs vary
  (`data.stability_axes`, the reference setting counted in each) and over all the
  runs, per method: the settings, the mean, lowest and highest top-1 (%) and the
  spread, highest minus lowest (points).

  Args:
    runs: the finished runs of the stability study.

  Returns:
    The table's lines, joined.
  """
  panels = data.stability_panels(runs)
  lines = ["| hyperparameter | method | settings | mean top-1 (%) | lowest (%) | "
           "highest (%) | spread (pts) |", "|" + "---|" * 7]
  for axis, groups in panels:
    for method, group in groups.items():
      top_1 = [100 * r.top_1 for r in group]
      lines.append(f"| {axis} | {method} | {len(top_1)} | {statistics.mean(top_1):.2f} "
                   f"| {min(top_1):.2f} | {max(top_1):.2f} | "
                   f"{max(top_1) - min(top_1):.2f} |")
  return "\n".join(lines)


def corruption_table(runs: Sequence[data.Run]) -> Optional[str]:
  """Per corruption, each method's top-1 error (%): the mean over severities 1-5,
  then over the method's runs that evaluated it (± std over those runs when more
  than one). The first row is the clean error, the last the mean over corruptions.

  Args:
    runs: the finished runs (those with results.json's "robustness" count).

  Returns:
    The table's lines, joined, or None when no run has per-corruption errors.
  """
  robust = {m: [r.robustness for r in g if r.robustness and r.robustness.get("errors")]
            for m, g in data.by_method(runs).items()}
  robust = {m: found for m, found in robust.items() if found}
  if not robust:
    return None
  names = list(dict.fromkeys(c for found in robust.values() for x in found
                             for c in x["errors"]))

  def cell(values):
    return _percent(mean_std(values))

  lines = ["| corruption | " + " | ".join(robust) + " |", "|" + "---|" * (len(robust) + 1),
           "| clean | " + " | ".join(cell([x.get("clean_error") for x in found])
                                     for found in robust.values()) + " |"]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(
        cell([float(np.mean(x["errors"][name])) if x["errors"].get(name) else None
              for x in found]) for found in robust.values()) + " |")
  lines.append("| mean over corruptions | " + " | ".join(
      cell([x.get("mean_corruption_error") for x in found])
      for found in robust.values()) + " |")
  return "\n".join(lines)
