r"""Runs the package's evidence study (issue #14) end to end, in the background if you
like; stop it at any moment (SIGTERM, Ctrl-C) and start it again to continue.

  nohup .venv/bin/python scripts/evidence.py > evidence.log 2>&1 &
  .venv/bin/python scripts/evidence.py --steps=robustness,report   # some steps only

Steps, in order (each skips what is finished, resumes what was interrupted):

1. tuning: `study.py experiments/study/tuning --seeds=1` — every method's candidate
   settings on the validation split (train[:90%] / train[90%:]); results/tuning.json.
2. accuracy: `study.py experiments/study/accuracy` with seeds 1,2,3 on the test
   split: SupCon, SupCon L_in, SimCLR and cross-entropy with their tuned settings
   and one budget of images; results/accuracy.json.
3. robustness: `--mode=eval_robustness` of every finished accuracy run, the
   cross-entropy run of the same seed as the baseline of the others (its own errors
   first); skipped where results.json already holds that evaluation. The results
   file of step 2 is rewritten with the mCE columns.
4. stability: `study.py experiments/study/stability --seeds=1` — SupCon and
   cross-entropy across augmentations, optimizers and learning rates;
   results/stability.json.
5. report: `python -m supcon_tf.report` rebuilds docs/figures/ from the runs.

Commit results/ and docs/figures/ as they come. Standard library only.
"""

import argparse
import glob
import os
import signal
import subprocess
import sys

import study  # scripts/study.py

STEPS = ("tuning", "accuracy", "robustness", "stability", "report")
_SEEDS = {"tuning": "1", "accuracy": "1,2,3", "stability": "1"}
BASELINE_VARIANT = "cross_entropy"


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", default=",".join(STEPS),
                      help=f"comma-separated steps of {', '.join(STEPS)}")
  parser.add_argument("--runs_dir", default=os.path.join("runs", "studies"))
  parser.add_argument("--results_dir", default="results",
                      help="where the studies' results files go")
  parser.add_argument("--figures", default=os.path.join("docs", "figures"))
  parser.add_argument("--python", default=sys.executable)
  args = parser.parse_args(argv)
  args.steps = [s for s in args.steps.split(",") if s]
  unknown = [s for s in args.steps if s not in STEPS]
  if unknown:
    raise SystemExit(f"error: unknown step(s) {', '.join(unknown)}; steps are "
                     f"{', '.join(STEPS)}")
  return args


def _study_args(args, name, *extra):
  return [os.path.join("experiments", "study", name), f"--seeds={_SEEDS[name]}",
          f"--runs_dir={os.path.join(args.runs_dir, name)}", f"--python={args.python}",
          f"--results={os.path.join(args.results_dir, name + '.json')}", *extra]


def _evaluated_against(model_dir, baseline):
  robustness = (study._read_json(os.path.join(model_dir, "results.json"))  # pylint: disable=protected-access
                or {}).get("robustness") or {}
  return bool(robustness) and robustness.get("baseline_model_dir") == baseline


def robustness(args) -> int:
  """--mode=eval_robustness of the finished accuracy runs; returns an exit code."""
  root = os.path.join(args.runs_dir, "accuracy")
  failed = 0
  for seed in _SEEDS["accuracy"].split(","):
    runs = sorted(d for d in glob.glob(os.path.join(root, "*", f"seed_{seed}"))
                  if study.finished(d))
    base = os.path.join(root, BASELINE_VARIANT, f"seed_{seed}")
    if base not in runs:
      print(f"evidence: no finished {BASELINE_VARIANT} seed {seed}: its robustness "
            "waits", flush=True)
      continue
    for model_dir in [base] + [r for r in runs if r != base]:
      baseline = None if model_dir == base else base
      if _evaluated_against(model_dir, baseline):
        print(f"evidence: {model_dir} robustness done already: skipped", flush=True)
        continue
      cmd = [args.python, "-m", "supcon_tf.run", "--mode=eval_robustness",
             f"--model_dir={model_dir}"] + ([f"--baseline_model_dir={baseline}"]
                                            if baseline else [])
      code = study.run_command(cmd, model_dir, count_wall=False)
      if code != 0:
        print(f"evidence: {model_dir} robustness failed (exit {code})", flush=True)
        failed += 1
  if glob.glob(os.path.join("experiments", "study", "accuracy", "*.cfg")):
    study.main(_study_args(args, "accuracy", "--table"))  # the results file, with mCE
  return 1 if failed else 0


def report(args) -> int:
  cmd = [args.python, "-m", "supcon_tf.report",
         f"--model_dirs={os.path.join(args.runs_dir, 'accuracy', '*', 'seed_*')}",
         f"--stability_model_dirs={os.path.join(args.runs_dir, 'stability', '*', 'seed_*')}",
         f"--output_dir={args.figures}"]
  print(f"evidence: {' '.join(cmd)}", flush=True)
  return subprocess.call(cmd, cwd=study.REPO_ROOT,
                         env=dict(os.environ, PYTHONPATH=study.REPO_ROOT))


def main(argv=None) -> int:
  args = _parse(sys.argv[1:] if argv is None else argv)
  signal.signal(signal.SIGTERM, study._interrupt)  # pylint: disable=protected-access
  worst = 0
  for step in args.steps:
    print(f"evidence: step {step}", flush=True)
    try:
      if step in _SEEDS:
        code = study.main(_study_args(args, step))
      elif step == "robustness":
        code = robustness(args)
      else:
        code = report(args)
    except KeyboardInterrupt:
      code = study._PREEMPTED  # pylint: disable=protected-access
    except SystemExit as e:  # e.g. a study directory without configurations yet
      print(f"evidence: step {step}: {e}; going on", flush=True)
      code = 1
    if code == study._PREEMPTED:  # pylint: disable=protected-access
      print("evidence: stopped; rerun the same command to continue", flush=True)
      return code
    worst = max(worst, code)
  return worst


if __name__ == "__main__":
  sys.exit(main())
