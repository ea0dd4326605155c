"""The command line's refusals, in subprocesses (as a user runs it): unknown flags,
bad values, indivisible batches, missing data, a dry run of a pod config here; the
model_dir contract (a changed computation refused, eval/export reading config.json,
--overwrite)."""

import json
import os
import shutil
import time
import types

import pytest

from tests import cli
from tests import testing


def test_unknown_flag_fails_fast_with_one_line(tmp_path):
  t0 = time.time()
  result = testing.run_cli(["--model_dir", str(tmp_path), "--no_such_flag=3"])
  line = cli.one_error_line(result)
  assert "no_such_flag" in line
  assert result.stderr.strip() == line  # nothing else: TensorFlow was not even imported
  assert time.time() - t0 < 30


@pytest.mark.parametrize("args, fragment", [
    (["--contrast_mode=sideways"], "contrast_mode"),
    (["--temperature=-1"], "temperature"),
    (["--resnet_depth=20"], "resnet_depth"),
    (["--mode=eval"], "needs a trained model_dir"),
])
def test_bad_values_fail_with_one_line(tmp_path, fake_data, args, fragment):
  result = testing.run_cli(cli.tiny_args(tmp_path / "m", fake_data, *args))
  assert fragment in cli.one_error_line(result)


@pytest.mark.parametrize("args, start", [
    (["--bogus=1"], "error: Unknown command line flag 'bogus'"),
    (["--flagfile=/no/such.cfg"], "error: Unable to open flagfile: [Errno 2] No such "
                                  "file or directory: '/no/such.cfg'"),
    (["extra"], "error: unexpected positional arguments: extra"),
    (["--contrast_mode=xyz"], "error: flag --contrast_mode=xyz: value should be one of "
                              "<all_views|one_view>"),
    (["--temperature=0"], "error: --temperature must be > 0, got 0.0"),
])
def test_command_line_refusals_come_before_tensorflow(tmp_path, args, start):
  result = cli.run_without_tensorflow(tmp_path, [f"--model_dir={tmp_path / 'm'}"] + args)
  assert cli.one_error_line(result).startswith(start)
  assert not os.path.exists(tmp_path / "m")


def test_refusals_before_training(tmp_path, fake_data):
  indivisible = testing.run_cli(cli.tiny_args(tmp_path / "a", fake_data, "--batch_size=15"))
  assert "not divisible by the 2 replicas" in cli.one_error_line(indivisible)
  missing = testing.run_cli(cli.tiny_args(tmp_path / "b", "/nonexistent/fashion"))
  assert "fashion_mnist_dir" in cli.one_error_line(missing)
  (tmp_path / "empty").mkdir()
  empty = testing.run_cli(cli.tiny_args(tmp_path / "b", tmp_path / "empty"))
  assert cli.one_error_line(empty).startswith(
      "error: Fashion-MNIST file train-images-idx3-ubyte[.gz] not found in ")
  # Refused before anything is written: config.json is written once, so a refused
  # first run must not leave one behind.
  too_big = testing.run_cli(cli.tiny_args(tmp_path / "c", fake_data, "--batch_size=128",
                                          "--stage_1_steps=2"))
  assert "--batch_size=128 is larger than the 64" in cli.one_error_line(too_big)
  for name in "abc":
    assert not os.path.exists(tmp_path / name)


def test_dry_run_of_a_pod_config_on_a_laptop(tmp_path):
  """r200.cfg names a TPU; a dry run plans it here without one and writes nothing."""
  result = testing.run_cli(["--flagfile=experiments/r200.cfg", "--mode=dry_run",
                            f"--model_dir={tmp_path / 'm'}"])
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout
  assert "planning with the default strategy" in out
  assert "ResNet-200" in out and "62,624,832 trainable parameters" in out
  assert "312 steps/epoch" in out  # 1,281,167 // 4096
  assert not os.path.exists(tmp_path / "m")


# ------------------------------------------------------------------ the model_dir contract
@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_data):
  """A finished tiny run: 2 + 1 steps on 2 virtual CPUs, evaluated."""
  model_dir = tmp_path_factory.mktemp("contract") / "run"
  args = cli.tiny_args(model_dir, fake_data, "--stage_1_steps=2", "--stage_2_steps=1",
                       "--projector_examples=0", "--summary_images=0",
                       "--export_at_end=false")
  result = testing.run_cli(args)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  return types.SimpleNamespace(model_dir=model_dir, args=args, data=fake_data)


def test_a_rerun_that_changes_the_computation_is_refused_before_tensorflow(
    trained, tmp_path):
  m = trained.model_dir
  digest = cli.tree_digest(m)
  changed = cli.run_without_tensorflow(tmp_path, trained.args + [
      "--stage_1_steps=3", "--batch_size=8", "--eval_batch_size=8", "--log_steps=1"])
  line = cli.one_error_line(changed)
  assert line == (
      f"error: model_dir {m} holds --stage_1_steps=2 --batch_size=16; this command says "
      "--stage_1_steps=3 --batch_size=8 (use a new --model_dir, or --overwrite to "
      "start over)")
  assert changed.stderr.strip() == line
  # A shorter command line is a different plan too (the stages' defaults).
  shorter = cli.run_without_tensorflow(tmp_path, [
      a for a in trained.args if not a.startswith(("--stage_1_steps", "--stage_2_steps"))])
  assert "holds --stage_1_steps=2 --stage_2_steps=1; this command says " \
      "--stage_1_steps=0 --stage_2_steps=0" in cli.one_error_line(shorter)
  assert cli.tree_digest(m) == digest


def test_eval_of_a_short_command_computes_what_the_run_computed(trained):
  m = trained.model_dir
  config = (m / "config.json").read_bytes()
  trained_result = json.loads((m / "eval_results.json").read_text())
  # No data location, no stages, default strategy and eval batch: config.json says.
  result = testing.run_cli([f"--model_dir={m}", "--mode=eval", "--projector_examples=0"])
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "with 1 replica(s)" in result.stdout
  evaluated = json.loads((m / "eval_results.json").read_text())
  assert evaluated["global_step"] == trained_result["global_step"] == 3
  assert evaluated["num_examples"] == trained_result["num_examples"] == 40
  assert evaluated["top_1"] == trained_result["top_1"]
  assert evaluated["top_5"] == trained_result["top_5"]
  assert (m / "config.json").read_bytes() == config


def test_eval_and_export_refuse_a_changed_computation_and_overwrite(trained, tmp_path):
  m = trained.model_dir
  digest = cli.tree_digest(m)
  changed = cli.run_without_tensorflow(tmp_path, [f"--model_dir={m}", "--mode=eval",
                                               "--stage_2_steps=3"])
  assert cli.one_error_line(changed) == (
      f"error: model_dir {m} holds --stage_2_steps=1; this command says "
      f"--stage_2_steps=3 (--mode=eval takes the run's configuration from "
      f"{m}/config.json: drop those flags)")
  overwrite = cli.run_without_tensorflow(tmp_path, trained.args + ["--mode=export",
                                                                "--overwrite"])
  assert cli.one_error_line(overwrite) == (
      "error: --overwrite starts a training run over; --mode=export reads the run in "
      "--model_dir: drop one of them")
  assert cli.tree_digest(m) == digest


def test_a_data_dir_that_does_not_exist_is_refused(trained):
  """On the embedded Fashion-MNIST default, which does not need it."""
  digest = cli.tree_digest(trained.model_dir)
  result = testing.run_cli(trained.args + ["--data_dir=/no/such/dir"])
  assert cli.one_error_line(result) == (
      "error: --data_dir='/no/such/dir' does not exist (a given data location is never "
      "skipped: fix the path or drop the flag)")
  assert cli.tree_digest(trained.model_dir) == digest


def test_overwrite_starts_over(trained, tmp_path):
  m = tmp_path / "run"
  shutil.copytree(trained.model_dir, m)
  (m / "notes.txt").write_text("mine")
  result = testing.run_cli(cli.tiny_args(
      m, trained.data, "--stage_1_steps=3", "--stage_2_steps=0", "--stage_2_epochs=0",
      "--mode=train", "--projector_examples=0", "--summary_images=0",
      "--export_at_end=false", "--overwrite"))
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  removed = [l for l in result.stdout.splitlines() if l.startswith("--overwrite:")]
  assert len(removed) == 1, result.stdout
  assert removed[0].startswith("--overwrite: removed checkpoint, ckpt-2, ckpt-3, "
                               "classes.json, config.json, eval/, eval_results.json")
  assert removed[0].endswith(f"train/ from {m}")
  assert "resuming at stage step" not in result.stdout  # started over at step 0
  assert "stage 1 | epoch 0.75 | step 3/3" in result.stdout
  config = json.loads((m / "config.json").read_text())
  assert config["stage_1"]["steps"] == 3 and config["stage_2"]["epochs"] == 0
  assert sorted(os.listdir(m)) == ["checkpoint", "ckpt-3.data-00000-of-00001",
                                   "ckpt-3.index", "classes.json", "config.json",
                                   "notes.txt", "results.json", "train"]
  # results.json is the new run's: its training time only, no evaluation of the old.
  assert set(json.loads((m / "results.json").read_text())) == {"training"}
