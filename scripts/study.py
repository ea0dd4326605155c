r"""Runs a study: every configuration of a study directory under several seeds, one
after the other, in the background if you like; stop it at any moment and start it
again to continue.

  .venv/bin/python scripts/study.py experiments/small_batch            # run / continue
  nohup .venv/bin/python scripts/study.py experiments/small_batch > study.log 2>&1 &
  .venv/bin/python scripts/study.py experiments/small_batch --table    # mean +- std

A study directory holds `*.cfg` flagfiles (one per variant; file name = variant).
Each (variant, seed) runs as
`python -m supcon_tf.run --flagfile=<cfg> --seed=<seed> --model_dir=<runs>/<variant>/seed_<seed>`
plus any arguments after `--`. Seeds go first (seed 1 of every variant, then seed 2,
...), so a partial study already compares every variant.

- A run whose model_dir has `eval_results.json` with a top-1 is finished: skipped.
- Anything else reruns the same command, and the run resumes from its newest
  checkpoint (the package's model_dir contract: the same command continues).
- Each run's wall time is kept in `<model_dir>/study_wall_seconds.json`, updated every
  30 s and summed over the invocations that worked on it.
- After each finished run the study's results file (default
  `results/<study>.json`, meant to be committed) is rewritten whole from every
  finished model_dir: variant, seed, top-1/top-5, the last kNN top-1 if any, wall
  time, the command.
- SIGTERM or Ctrl-C stops the current run through its own SIGTERM handling (a
  checkpoint, exit 75) and ends the study; rerun to continue.

Standard library only: it never imports TensorFlow (the runs do).
"""

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WALL_FILE = "study_wall_seconds.json"
_PREEMPTED = 75  # the package's exit code after a SIGTERM saved a checkpoint


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("study", help="a directory of *.cfg flagfiles, one per variant")
  parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
  parser.add_argument("--variants", default="",
                      help="comma-separated variant names (default: every *.cfg)")
  parser.add_argument("--runs_dir", default="", help="default runs/studies/<study>")
  parser.add_argument("--results", default="", help="default results/<study>.json")
  parser.add_argument("--table", action="store_true",
                      help="rewrite the results file, print it as a Markdown table, exit")
  parser.add_argument("--python", default=sys.executable)
  args, extra = parser.parse_known_args(argv)
  if extra and extra[0] == "--":
    extra = extra[1:]
  args.extra = extra
  name = os.path.basename(os.path.normpath(args.study))
  args.runs_dir = args.runs_dir or os.path.join("runs", "studies", name)
  args.results = args.results or os.path.join("results", f"{name}.json")
  args.name = name
  return args


def variants(args):
  """{variant name: flagfile}, in name order."""
  files = sorted(glob.glob(os.path.join(args.study, "*.cfg")))
  found = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
  if not found:
    raise SystemExit(f"error: no *.cfg flagfiles in {args.study}")
  wanted = [v for v in args.variants.split(",") if v]
  missing = [v for v in wanted if v not in found]
  if missing:
    raise SystemExit(f"error: no variant {', '.join(missing)} in {args.study} "
                     f"(it has {', '.join(found)})")
  return {v: found[v] for v in (wanted or found)}


def seeds(args):
  try:
    values = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    raise SystemExit(f"error: --seeds must be integers, got {args.seeds!r}") from None
  if not values:
    raise SystemExit("error: --seeds is empty")
  return values


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path, value):
  """Whole or not at all: a temporary file renamed over the target."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def finished(model_dir):
  """The run's evaluation if it finished (a top-1 in eval_results.json), else None."""
  result = _read_json(os.path.join(model_dir, "eval_results.json"))
  return result if result and "top_1" in result else None


def command(args, flagfile, seed, model_dir):
  return [args.python, "-m", "supcon_tf.run", f"--flagfile={flagfile}", f"--seed={seed}",
          f"--model_dir={model_dir}"] + list(args.extra)


def _wall(model_dir):
  return float((_read_json(os.path.join(model_dir, WALL_FILE)) or {}).get("seconds", 0.0))


def run_one(args, flagfile, seed, model_dir):
  """Runs (or continues) one run; returns its exit code."""
  os.makedirs(os.path.dirname(model_dir), exist_ok=True)
  return run_command(command(args, flagfile, seed, model_dir), model_dir)


def run_command(cmd, model_dir, count_wall=True):
  """Runs `cmd` from the repository; returns its exit code. Ctrl-C or SIGTERM (see
  `_interrupt`) is forwarded as SIGTERM.

  Args:
    cmd: the command.
    model_dir: the run it works on.
    count_wall: add its wall time to the run's (False for work on a finished run,
      e.g. a robustness evaluation, which is not the run's cost).
  """
  print(f"study: {' '.join(cmd)}", flush=True)
  before = _wall(model_dir)
  start = time.time()
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT))

  def record():
    if count_wall and os.path.isdir(model_dir):
      _write_json(os.path.join(model_dir, WALL_FILE),
                  {"seconds": before + time.time() - start})

  try:
    while proc.poll() is None:
      try:
        proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        pass
      record()
  except KeyboardInterrupt:
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    record()
    raise
  record()  # the time since the last 30 s check
  return proc.returncode


def _interrupt(signum, _):
  """SIGTERM as Ctrl-C, whether a run is going (it is forwarded) or not."""
  raise KeyboardInterrupt(signum)


def collect(args):
  """Every finished run of the study, as the results file holds them."""
  rows = []
  for variant, flagfile in variants(args).items():
    for seed in seeds(args):
      model_dir = os.path.join(args.runs_dir, variant, f"seed_{seed}")
      evaluation = finished(model_dir)
      if evaluation is None:
        continue
      row = {"variant": variant, "seed": seed, "model_dir": model_dir,
             "top_1": evaluation["top_1"], "top_5": evaluation.get("top_5"),
             "global_step": evaluation.get("global_step"),
             "wall_seconds": round(_wall(model_dir), 1),
             "command": " ".join(command(args, flagfile, seed, model_dir)[1:])}
      recorded = _read_json(os.path.join(model_dir, "results.json")) or {}
      knn = recorded.get("knn") or []
      if knn:
        row["knn_top_1"] = knn[-1]["top_1"]
      if recorded.get("run"):
        row["method"] = recorded["run"].get("method")
      robustness = recorded.get("robustness") or {}
      for key in ("clean_error", "mean_corruption_error", "mce", "relative_mce"):
        if robustness.get(key) is not None:
          row[key] = robustness[key]
      rows.append(row)
  return {"study": args.name, "seeds": seeds(args), "runs": rows}


def table(results) -> str:
  """Markdown: per variant, the seeds finished and mean +- std of each figure."""
  lines = ["| variant | seeds | top-1 (%) | kNN top-1 (%) | wall (min) |",
           "|---|---|---|---|---|"]
  by_variant = {}
  for row in results["runs"]:
    by_variant.setdefault(row["variant"], []).append(row)

  def spread(values, scale=100.0):
    values = [scale * v for v in values if v is not None]
    if not values:
      return "-"
    if len(values) == 1:
      return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

  for variant, rows in by_variant.items():
    lines.append(f"| {variant} | {len(rows)} | {spread([r['top_1'] for r in rows])} | "
                 f"{spread([r.get('knn_top_1') for r in rows])} | "
                 f"{spread([r['wall_seconds'] for r in rows], 1 / 60)} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  args = _parse(sys.argv[1:] if argv is None else argv)
  todo = variants(args)
  order = seeds(args)
  if args.table:
    collected = collect(args)
    _write_json(args.results, collected)
    print(table(collected))
    return 0
  failed = []
  signal.signal(signal.SIGTERM, _interrupt)
  for seed in order:
    for variant, flagfile in todo.items():
      model_dir = os.path.join(args.runs_dir, variant, f"seed_{seed}")
      try:
        if finished(model_dir):
          print(f"study: {variant} seed {seed} finished already: skipped", flush=True)
          continue
        code = run_one(args, flagfile, seed, model_dir)
      except KeyboardInterrupt:
        print("study: stopped; rerun the same command to continue", flush=True)
        _write_json(args.results, collect(args))
        return _PREEMPTED
      if code == _PREEMPTED:
        print("study: the run was preempted; rerun the same command to continue",
              flush=True)
        _write_json(args.results, collect(args))
        return _PREEMPTED
      if code != 0:
        print(f"study: {variant} seed {seed} failed (exit {code}); going on", flush=True)
        failed.append(f"{variant}/seed_{seed}")
      _write_json(args.results, collect(args))
  print(table(collect(args)))
  if failed:
    print(f"study: failed: {', '.join(failed)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
