"""scripts/study.py: a study stopped by SIGTERM mid-run continues where it stopped,
skips finished runs, and writes its results file and table from the model_dirs."""

import json
import os
import signal
import subprocess
import sys

from tests import cli
from tests import testing

_SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "study.py")


def _study(args, **kwargs):
  return subprocess.Popen([sys.executable, _SCRIPT] + list(args), cwd=testing.REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kwargs)


def test_a_stopped_study_continues_skips_finished_runs_and_tabulates(tmp_path, fake_data):
  study = tmp_path / "tiny_study"
  study.mkdir()
  flags = [a for a in cli.tiny_args("unused", fake_data) if not a.startswith("--model_dir")]
  flags += ["--stage_1_steps=10", "--stage_2_steps=2", "--steps_per_loop=1",
            "--checkpoint_steps=2", "--mode=train_then_eval", "--export_at_end=false",
            "--summary_images=0", "--projector_examples=0"]
  (study / "tiny.cfg").write_text("\n".join(flags) + "\n")
  runs, results = tmp_path / "runs", tmp_path / "results.json"
  args = [str(study), "--seeds=1,2", f"--runs_dir={runs}", f"--results={results}"]

  first = _study(args)
  try:
    testing.wait_for_checkpoint(first, runs / "tiny" / "seed_1", 2)
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=300)[0]
  finally:
    if first.poll() is None:
      first.kill()
  assert first.returncode == 75, out
  assert "rerun the same command to continue" in out
  assert not (runs / "tiny" / "seed_1" / "eval_results.json").exists()
  assert json.loads(results.read_text())["runs"] == []

  second = _study(args)
  out = second.communicate(timeout=600)[0]
  assert second.returncode == 0, out
  assert out.count("resuming at stage step") == 1, out  # seed 1 continued, seed 2 fresh
  rows = json.loads(results.read_text())["runs"]
  assert [(r["variant"], r["seed"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
  for row in rows:
    evaluation = json.loads((runs / "tiny" / f"seed_{row['seed']}" /
                             "eval_results.json").read_text())
    assert row["top_1"] == evaluation["top_1"] and row["global_step"] == 12
    assert row["wall_seconds"] > 0 and "--seed=" in row["command"]

  third = _study(args)
  out = third.communicate(timeout=120)[0]
  assert third.returncode == 0, out
  assert out.count("finished already: skipped") == 2 and "supcon_tf.run" not in out
  table = subprocess.run([sys.executable, _SCRIPT, "--table"] + args, capture_output=True,
                         text=True, timeout=60, check=True).stdout
  assert "| tiny | 2 | " in table and "±" in table


def test_bad_study_arguments_are_refused(tmp_path):
  (tmp_path / "a.cfg").write_text("--seed=1\n")
  for args, message in (([str(tmp_path / "none")], "no *.cfg flagfiles"),
                        ([str(tmp_path), "--variants=b"], "no variant b"),
                        ([str(tmp_path), "--seeds=x"], "--seeds must be integers")):
    result = subprocess.run([sys.executable, _SCRIPT] + args, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


_EVIDENCE = os.path.join(testing.REPO_ROOT, "scripts", "evidence.py")


def test_evidence_refuses_unknown_steps_and_waits_for_its_baseline(tmp_path):
  bad = subprocess.run([sys.executable, _EVIDENCE, "--steps=tuning,bogus"],
                       cwd=testing.REPO_ROOT, capture_output=True, text=True, timeout=60)
  assert bad.returncode != 0 and "unknown step(s) bogus" in bad.stderr
  # No accuracy run has finished: robustness has nothing to evaluate and says why.
  runs, results = tmp_path / "runs", tmp_path / "results"
  waiting = subprocess.run([sys.executable, _EVIDENCE, "--steps=robustness",
                            f"--runs_dir={runs}", f"--results_dir={results}"],
                           cwd=testing.REPO_ROOT, capture_output=True, text=True,
                           timeout=120)
  assert waiting.returncode == 0, waiting.stdout + waiting.stderr
  for seed in (1, 2, 3):
    assert f"no finished cross_entropy seed {seed}" in waiting.stdout
  assert not os.path.exists(runs)  # nothing run, nothing created


def test_robustness_evaluations_do_not_count_in_a_runs_wall_time(tmp_path):
  # A finished cross-entropy run (its evaluation recorded) and its study wall time.
  runs, results = tmp_path / "runs", tmp_path / "results"
  model_dir = runs / "accuracy" / "cross_entropy" / "seed_1"
  model_dir.mkdir(parents=True)
  (model_dir / "eval_results.json").write_text(json.dumps({"top_1": 0.9}))
  wall = model_dir / "study_wall_seconds.json"
  wall.write_text(json.dumps({"seconds": 100.0}))
  # --python=/bin/true stands in for the evaluation: it succeeds at once.
  done = subprocess.run([sys.executable, _EVIDENCE, "--steps=robustness",
                         f"--runs_dir={runs}", f"--results_dir={results}",
                         "--python=/bin/true"], cwd=testing.REPO_ROOT,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stdout + done.stderr
  assert f"--mode=eval_robustness --model_dir={model_dir}" in done.stdout
  assert json.loads(wall.read_text()) == {"seconds": 100.0}
  table = json.loads((results / "accuracy.json").read_text())
  assert [r["wall_seconds"] for r in table["runs"]] == [100.0]
