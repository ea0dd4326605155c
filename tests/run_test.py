"""The command line's refusals, in subprocesses (as a user runs it): unknown flags,
bad values, indivisible batches, missing data, a dry run of a pod config here."""

import os
import time

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


def test_refusals_before_training(tmp_path, fake_data):
  indivisible = testing.run_cli(cli.tiny_args(tmp_path / "a", fake_data, "--batch_size=15"))
  assert "not divisible by the 2 replicas" in cli.one_error_line(indivisible)
  missing = testing.run_cli(cli.tiny_args(tmp_path / "b", "/nonexistent/fashion"))
  assert "fashion_mnist_dir" in cli.one_error_line(missing)
  assert not os.path.exists(tmp_path / "a" / "checkpoint")


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
