"""--mode=eval_robustness end to end, as a user runs it, on 2 virtual CPUs: per-corruption
errors in results.json, the same numbers on a rerun and on one device, the mCE
against a baseline run, and the refusals (before any evaluation, nothing changed)."""

import json

import pytest

from supcon_tf import mce
from tests import cli
from tests import testing

_CORRUPTIONS = "gaussian_noise,contrast,pixelate"


def _train(model_dir, data, *extra):
  result = testing.run_cli(cli.tiny_args(model_dir, data, "--steps_per_loop=3",
                                         "--export_at_end=false", *extra))
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _robustness(model_dir, *extra):
  return testing.run_cli([f"--model_dir={model_dir}", "--mode=eval_robustness",
                          f"--corruptions={_CORRUPTIONS}", *extra])


def _recorded(model_dir):
  with open(model_dir / "results.json") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, fake_data):
  root = tmp_path_factory.mktemp("robustness")
  ce, supcon = root / "ce", root / "supcon"
  _train(ce, fake_data, "--stage_1_steps=6", "--stage_2_steps=0",
         "--stage_1_contrastive_loss_weight=0", "--stage_1_cross_entropy_loss_weight=1",
         "--stop_gradient_before_classification_head=false")
  _train(supcon, fake_data, "--stage_1_steps=6", "--stage_2_steps=3")
  return ce, supcon


def test_errors_per_corruption_and_severity_are_recorded_and_reproducible(two_runs):
  ce, _ = two_runs
  first = _robustness(ce)
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  got = _recorded(ce)["robustness"]
  with open(ce / "eval_results.json") as f:
    clean = json.load(f)
  assert list(got["errors"]) == _CORRUPTIONS.split(",")
  assert all(len(row) == 5 and all(0.0 <= e <= 1.0 for e in row)
             for row in got["errors"].values())
  assert got["clean_error"] == pytest.approx(1.0 - clean["top_1"])
  assert got["mean_corruption_error"] == pytest.approx(
      sum(map(sum, got["errors"].values())) / 15)
  assert got["dataset"] == "fashion_mnist" and got["corruption_seed"] == 0
  assert got["baseline_model_dir"] is None and "mce" not in got
  for name in _CORRUPTIONS.split(","):
    assert f"{name} severity 5: top-1" in first.stdout
  assert "mean corruption error" in first.stdout
  # The corrupted copies are generated from the seed: the same errors on a rerun,
  # and on one device instead of two replicas.
  alone = _robustness(ce, "--strategy=default", "--num_virtual_cpus=0")
  assert alone.returncode == 0, alone.stderr[-2000:]
  again = _recorded(ce)["robustness"]
  for name, row in got["errors"].items():
    assert again["errors"][name] == pytest.approx(row, abs=1.01 / 40)
  assert "with 1 replica(s)" in alone.stdout


def test_mce_against_a_baseline_run(two_runs):
  ce, supcon = two_runs
  if "robustness" not in _recorded(ce):
    assert _robustness(ce).returncode == 0
  result = _robustness(supcon, f"--baseline_model_dir={ce}")
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  got, base = _recorded(supcon)["robustness"], _recorded(ce)["robustness"]
  expected = mce.summarize(got["errors"], got["clean_error"], base["errors"],
                           base["clean_error"])
  # (Tiny untrained models: a ratio the baseline leaves undefined is None.)
  assert got["mce"] == pytest.approx(expected["mce"])
  assert got["relative_mce"] == pytest.approx(expected["relative_mce"])
  assert got["undefined"] == expected["undefined"]
  assert got["baseline_model_dir"] == str(ce)
  for name in got["errors"]:
    if sum(base["errors"][name]):
      assert got["corruption_errors"][name] == pytest.approx(
          sum(got["errors"][name]) / sum(base["errors"][name]))
  assert "mCE" in result.stdout and f"(baseline {ce})" in result.stdout
  assert _recorded(supcon)["run"]["method"] == "supcon"


def test_refusals_come_before_any_evaluation_and_change_nothing(two_runs, tmp_path):
  ce, supcon = two_runs
  before = cli.tree_digest(supcon)
  colour = testing.run_cli([f"--model_dir={supcon}", "--mode=eval_robustness",
                            "--corruptions=saturate"])
  assert "saturate" in cli.one_error_line(colour) and "RGB" in colour.stderr
  unknown = testing.run_cli([f"--model_dir={supcon}", "--mode=eval_robustness",
                             "--corruptions=rain"])
  assert "'rain'" in cli.one_error_line(unknown)
  empty = tmp_path / "not_evaluated"
  empty.mkdir()
  no_base = _robustness(supcon, f"--baseline_model_dir={empty}")
  assert "has no robustness results" in cli.one_error_line(no_base)
  if "robustness" not in _recorded(ce):
    assert _robustness(ce).returncode == 0
  other_seed = _robustness(supcon, f"--baseline_model_dir={ce}", "--corruption_seed=5")
  assert "corruption_seed" in cli.one_error_line(other_seed)
  itself = _robustness(supcon, f"--baseline_model_dir={supcon}")
  assert "is the run being evaluated" in cli.one_error_line(itself)
  for result in (colour, unknown, no_base, other_seed, itself):
    assert "severity" not in result.stdout  # refused before the first evaluation
  assert cli.tree_digest(supcon) == before
