"""The report's figures: each function writes one small PNG (Agg, 100 dpi).

Every function takes the finished runs (`data.Run`) and a path, and raises
`data.MissingData` with one line when the runs lack what the figure shows. Methods
keep one colour across the figures (`colors`). Accuracies are drawn in percent;
several runs of a method (seeds) are averaged, their spread shown where it helps.
"""

import os
from typing import Dict, List, Optional, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from supcon_tf import workdir
from supcon_tf.report import data
from supcon_tf.report import summary

DPI = 100
TSNE_SEED = 0


def colors(runs: Sequence[data.Run]) -> Dict[str, str]:
  """{method: colour}: tab10's colours in `data.methods` order."""
  palette = [f"C{i}" for i in range(10)]
  return {m: palette[i % len(palette)] for i, m in enumerate(data.methods(runs))}


def _figure(width: float, height: float, panels: int = 1):
  fig = Figure(figsize=(width, height), dpi=DPI)
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, panels)
  return fig, (list(axes) if panels > 1 else [axes])


def _save(fig: Figure, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  return path


def _label(method: str, count: int) -> str:
  return f"{method} ({count} run{'s' if count != 1 else ''})"


# ------------------------------------------------------------------ curves
def mean_curve(series: Sequence[data.Series]) -> data.Series:
  """The mean of several curves, e.g. one per seed.

  Args:
    series: [(steps, values)], each sorted by step.

  Returns:
    (steps, mean): on the first curve's steps within the range every curve covers
    (all curves' steps when they do not overlap), each curve interpolated linearly.
  """
  low = max(s[0] for s, _ in series)
  high = min(s[-1] for s, _ in series)
  grid = series[0][0][(series[0][0] >= low) & (series[0][0] <= high)]
  if not len(grid):
    grid = np.unique(np.concatenate([s for s, _ in series]))
  return grid, np.mean([np.interp(grid, s, v) for s, v in series], axis=0)


def _break_at(x: np.ndarray, y: np.ndarray, boundary: float) -> data.Series:
  """(x, y) with a gap (NaN) where x crosses `boundary`, when points lie on both sides."""
  after = np.searchsorted(x, boundary, side="right")
  if 0 < after < len(x):
    x = np.insert(np.asarray(x, np.float64), after, boundary)
    y = np.insert(np.asarray(y, np.float64), after, np.nan)
  return x, y


def training_curves(runs: Sequence[data.Run], path: str,
                    palette: Optional[Dict[str, str]] = None) -> str:
  """training_curves.png: per method, the training loss and the accuracies.

  Left: loss/total. Right: the kNN monitor's top-1 (solid) and the training
  batches' accuracy (dashed). One line per method, the mean over its runs that have
  the curve, broken where stage 2 starts. The x axis is the passes of the training
  set through the encoder (the study's budget: methods with other batches and stage
  lengths line up) when every run's stages are given in epochs, else the global step.

  Raises:
    MissingData: no run has training summaries or kNN results.
  """
  palette = palette or colors(runs)
  curves = {m: [data.training_series(r) for r in group]
            for m, group in data.by_method(runs).items()}
  if not any(c for found in curves.values() for c in found):
    raise data.MissingData("no run has training summaries (<model_dir>/train event "
                           "files) or kNN results")
  mappings = {m: [data.encoder_passes(r) for r in group]
              for m, group in data.by_method(runs).items()}
  in_passes = all(all(found) for found in mappings.values())
  fig, (loss_ax, acc_ax) = _figure(10, 3.6, 2)
  for method, found in curves.items():
    for ax, key, style, scale in ((loss_ax, data.LOSS, "-", 1.0),
                                  (acc_ax, data.KNN_TOP_1, "-", 100.0),
                                  (acc_ax, data.TRAIN_ACCURACY, "--", 100.0)):
      series = [(data.to_passes(c[key][0], mapping) if in_passes else c[key][0],
                 c[key][1]) for c, mapping in zip(found, mappings[method]) if key in c]
      if not series:
        continue
      steps, mean = mean_curve(series)
      if in_passes:
        steps, mean = _break_at(steps, mean, data.to_passes(mappings[method][0][1],
                                                            mappings[method][0]))
      name = {data.LOSS: "", data.KNN_TOP_1: " kNN", data.TRAIN_ACCURACY: " train"}[key]
      ax.plot(steps, scale * mean, style, color=palette[method], linewidth=1.2,
              label=_label(method + name, len(series)))
  xlabel = ("images through the encoder (passes over the training set)" if in_passes
            else "global step")
  loss_ax.set(xlabel=xlabel, ylabel="loss/total", title="training loss")
  acc_ax.set(xlabel=xlabel, ylabel="accuracy (%)",
             title="kNN top-1 (solid), train accuracy (dashed)")
  for ax in (loss_ax, acc_ax):
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=7)
  return _save(fig, path)


# ------------------------------------------------------------------ accuracy
def accuracy(runs: Sequence[data.Run], path: str,
             palette: Optional[Dict[str, str]] = None) -> str:
  """accuracy.png: mean test top-1 per method, the std over its runs as error bars,
  the mean and the number of runs written on each bar."""
  palette = palette or colors(runs)
  rows = summary.method_rows(runs)
  fig, (ax,) = _figure(1.5 + 1.2 * len(rows), 3.6)
  for i, row in enumerate(rows):
    mean, std, count = row["top_1"]
    ax.bar(i, 100 * mean, yerr=100 * std if count > 1 else None, capsize=4,
           color=palette[row["method"]], alpha=0.85)
    ax.text(i, 100 * (mean + std) + 1.5, f"{100 * mean:.2f}\nn={count}",
            ha="center", va="bottom", fontsize=8)
  ax.set_xticks(range(len(rows)), [r["method"] for r in rows], fontsize=8)
  ax.set(ylabel="test top-1 (%)", ylim=(0, 112), title="top-1 accuracy")
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def corruption_curve(runs: Sequence[data.Run], path: str,
                     palette: Optional[Dict[str, str]] = None) -> str:
  """corruption_curve.png: accuracy (1 - error, the mean over the corruptions)
  against the severity, 0 (clean) to 5, one line per method (the mean over its
  runs, their std shaded).

  Raises:
    MissingData: no run has a usable "robustness" record in results.json.
  """
  palette = palette or colors(runs)
  fig, (ax,) = _figure(5.5, 3.6)
  drawn = False
  for method, group in data.by_method(runs).items():
    curves = [summary.severity_accuracy(r.robustness) for r in group if r.robustness]
    curves = [c for c in curves if c is not None]
    if not curves:
      continue
    stacked = 100 * np.array(curves)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    x = np.arange(len(mean))
    ax.plot(x, mean, "o-", color=palette[method], markersize=4, linewidth=1.2,
            label=_label(method, len(curves)))
    if len(curves) > 1:
      ax.fill_between(x, mean - std, mean + std, color=palette[method], alpha=0.15)
    drawn = True
  if not drawn:
    raise data.MissingData('no run has "robustness" (clean and per-severity errors) '
                           "in results.json")
  ax.set_xticks(range(summary.SEVERITIES + 1),
                ["clean"] + [str(s) for s in range(1, summary.SEVERITIES + 1)])
  ax.set(xlabel="corruption severity", ylabel="accuracy (%)",
         title="accuracy under corruptions")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return _save(fig, path)


def _boxes(ax, groups: Dict[str, List[data.Run]], palette: Dict[str, str]) -> None:
  """One box per method of its runs' top-1, every run drawn as a point."""
  values = [[100 * r.top_1 for r in group] for group in groups.values()]
  ax.boxplot(values, positions=range(len(values)), widths=0.5, showfliers=False,
             medianprops={"color": "black"})
  jitter = np.random.default_rng(0)
  for i, (method, top_1) in enumerate(zip(groups, values)):
    ax.scatter(i + jitter.uniform(-0.12, 0.12, len(top_1)), top_1, s=14,
               color=palette[method], zorder=3)
  ax.set_xticks(range(len(groups)),
                [f"{m}\nn={len(v)}" for m, v in zip(groups, values)], fontsize=8)
  ax.grid(axis="y", alpha=0.3)


def stability(runs: Sequence[data.Run], path: str,
              palette: Optional[Dict[str, str]] = None) -> str:
  """stability.png: per method, box plots of the top-1 of its runs (each a
  hyperparameter setting), every run drawn as a point.

  As in the paper's stability figure, one panel per hyperparameter the runs vary
  (`data.stability_axes`: augmentation, optimizer, learning rate, ...), the reference
  setting counted in each, and a last panel with all the runs.

  Raises:
    MissingData: no runs (no --stability_model_dirs given).
  """
  if not runs:
    raise data.MissingData("no --stability_model_dirs given")
  palette = palette or colors(runs)
  panels = data.stability_panels(runs)
  width = sum(0.6 + 0.9 * len(groups) for _, groups in panels)
  fig, axes = _figure(max(width, 3.5), 3.6, len(panels))
  for ax, (name, groups) in zip(axes, panels):
    _boxes(ax, groups, palette)
    ax.set_title(name, fontsize=9)
  low, high = (100 * f(r.top_1 for r in runs) for f in (min, max))
  margin = max(0.5, 0.08 * (high - low))
  for ax in axes:  # one scale, so the panels' spreads compare
    ax.set_ylim(low - margin, high + margin)
  axes[0].set_ylabel("test top-1 (%)")
  fig.suptitle("top-1 across hyperparameters", fontsize=10)
  return _save(fig, path)


# ------------------------------------------------------------------ t-SNE
def _class_names(run: data.Run) -> List[str]:
  found = workdir.read_json(os.path.join(run.model_dir, workdir.CLASSES_FILE))
  return list(found.get("classes", [])) if isinstance(found, dict) else []


def tsne_points(embeddings: np.ndarray) -> np.ndarray:
  """2-D t-SNE of the rows (L2-normalised first, as the kNN monitor compares them).

  Args:
    embeddings: float [N, D], N >= 5.

  Returns:
    float [N, 2].
  """
  # pylint: disable=g-import-not-at-top
  from sklearn.manifold import TSNE
  from threadpoolctl import threadpool_limits
  # pylint: enable=g-import-not-at-top
  norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
  x = embeddings / np.maximum(norms, 1e-12)
  perplexity = float(min(30.0, (len(x) - 1) / 3.0))
  # One thread: Barnes-Hut's OpenMP threads spin against each other on a busy
  # 2-core machine (measured: 60 points 0.25 s alone, 20 s with the default threads
  # while other work ran; 2,000 points 19 s against 54 s).
  with threadpool_limits(limits=1):
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                learning_rate="auto", random_state=TSNE_SEED).fit_transform(x)


def tsne(runs: Sequence[data.Run], path: str, baseline_method: str,
         examples: int = 2000) -> str:
  """tsne.png: t-SNE of the evaluation embeddings of the first SupCon run (left;
  without one, the first run of another method) and the first `baseline_method`
  run (right), points coloured by class.

  Raises:
    MissingData: one of the two runs is missing, or has no embeddings.npz and no
      usable export (`data.read_embeddings`).
  """
  groups = data.by_method(runs)
  if baseline_method not in groups:
    raise data.MissingData(f"no {baseline_method} run to compare with")
  others = [m for m in groups if m != baseline_method]
  if not others:
    raise data.MissingData(f"no run of a method other than {baseline_method}")
  chosen = [groups[data.SUPCON if data.SUPCON in groups else others[0]][0],
            groups[baseline_method][0]]
  panels = []
  for run in chosen:
    embeddings, labels = data.read_embeddings(run, examples)
    if len(embeddings) < 5:
      raise data.MissingData(f"{run.model_dir}: {len(embeddings)} embeddings, "
                             "too few for a t-SNE")
    panels.append((run, tsne_points(embeddings), labels))
  names = _class_names(chosen[0])
  classes = sorted(set(int(c) for _, _, l in panels for c in l))
  cmap = matplotlib.colormaps["tab10" if classes[-1] < 10 else "tab20"]
  fig, axes = _figure(10, 4.6, 2)
  for ax, (run, points, labels) in zip(axes, panels):
    ax.scatter(points[:, 0], points[:, 1], c=[cmap(int(c) % cmap.N) for c in labels],
               s=3, linewidths=0)
    ax.set_title(f"{run.method} (seed {run.seed}, top-1 {100 * run.top_1:.1f}%)",
                 fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  handles = [Line2D([], [], marker="o", linestyle="", markersize=4,
                    color=cmap(c % cmap.N)) for c in classes]
  fig.legend(handles, [names[c] if 0 <= c < len(names) else str(c) for c in classes],
             loc="center right", fontsize=7, frameon=False)
  fig.tight_layout(rect=(0, 0, 0.9, 1))
  fig.savefig(path, dpi=DPI)
  return path
