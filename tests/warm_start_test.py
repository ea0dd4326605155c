"""Stage 2 needs a trained encoder: from stage 1, --encoder_checkpoint or, on purpose,
--random_encoder; another model's checkpoints are refused in one line (CLI)."""

import os
import shutil

import numpy as np
import tensorflow as tf

from tests import cli
from tests import testing

_LINEAR = ("--stage_1_steps=0", "--stage_1_epochs=0", "--stage_2_steps=2",
           "--mode=train", "--export_at_end=false", "--projector_examples=0",
           "--summary_images=0")


def test_stage_2_without_an_encoder_is_refused_before_tensorflow(tmp_path, fake_data):
  m = tmp_path / "m"
  result = cli.run_without_tensorflow(tmp_path, cli.tiny_args(m, fake_data, *_LINEAR))
  assert cli.one_error_line(result) == (
      "error: stage_2 trains a classifier on a frozen encoder that nothing trained: give "
      "--encoder_checkpoint=<the model_dir of a run that trained it>, or "
      "--random_encoder for a random encoder on purpose")
  assert not m.exists()
  both = cli.run_without_tensorflow(tmp_path, cli.tiny_args(
      m, fake_data, *_LINEAR, "--random_encoder", f"--encoder_checkpoint={tmp_path}"))
  assert "name two starts" in cli.one_error_line(both)
  missing = cli.run_without_tensorflow(tmp_path, cli.tiny_args(
      m, fake_data, *_LINEAR, f"--encoder_checkpoint={tmp_path / 'nothing'}"))
  assert "is no checkpoint" in cli.one_error_line(missing)
  assert not m.exists()


def _encoder_values(path):
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("model/encoder/") and ".OPTIMIZER_SLOT" not in k}


def test_a_linear_evaluation_of_another_runs_encoder(tmp_path, fake_data):
  pretrained = tmp_path / "pretrained"
  first = testing.run_cli(cli.tiny_args(
      pretrained, fake_data, "--stage_1_steps=3", "--stage_2_steps=0",
      "--stage_2_epochs=0", "--mode=train", "--export_at_end=false",
      "--projector_examples=0", "--summary_images=0"))
  assert first.returncode == 0, first.stderr[-2000:]
  # An encoder flag its run did not have: refused before TensorFlow, nothing written.
  other = cli.run_without_tensorflow(tmp_path, cli.tiny_args(
      tmp_path / "x", fake_data, *_LINEAR, f"--encoder_checkpoint={pretrained}",
      "--first_conv_stride=2"))
  assert cli.one_error_line(other) == (
      f"error: --encoder_checkpoint='{pretrained}' holds an encoder with "
      "--first_conv_stride=1; this command says --first_conv_stride=2 (give the "
      "encoder flags of its run)")
  assert not (tmp_path / "x").exists()

  linear = tmp_path / "linear"
  second = testing.run_cli(cli.tiny_args(linear, fake_data, *_LINEAR,
                                         f"--encoder_checkpoint={pretrained}"))
  assert second.returncode == 0, second.stderr[-2000:]
  source = tf.train.latest_checkpoint(str(pretrained))
  assert f"encoder initialised from {source}" in second.stdout
  final = tf.train.latest_checkpoint(str(linear))
  assert final.endswith("ckpt-2")
  # Stage 2 freezes the encoder (and its BatchNorm statistics): it ends as it came.
  theirs, ours = _encoder_values(source), _encoder_values(final)
  assert theirs.keys() == ours.keys() and len(ours) > 20
  for key, value in theirs.items():
    np.testing.assert_array_equal(value, ours[key], err_msg=key)
  # A resume does not read it again: the run's own checkpoints hold the encoder now.
  shutil.rmtree(pretrained)
  again = testing.run_cli(cli.tiny_args(linear, fake_data, *_LINEAR,
                                        f"--encoder_checkpoint={pretrained}"))
  assert again.returncode == 0, again.stderr[-2000:]
  assert "training already finished at global step 2" in again.stdout


def test_a_checkpoint_of_another_width_is_refused_in_one_line(tmp_path, fake_data):
  m = tmp_path / "m"
  args = ("--stage_1_steps=2", "--stage_2_steps=0", "--stage_2_epochs=0", "--mode=train",
          "--export_at_end=false", "--projector_examples=0", "--summary_images=0")
  first = testing.run_cli(cli.tiny_args(m, fake_data, *args))
  assert first.returncode == 0, first.stderr[-2000:]
  os.remove(m / "config.json")  # checkpoints from elsewhere, without their config
  digest = cli.tree_digest(m)
  wider = testing.run_cli(cli.tiny_args(m, fake_data, *args, "--resnet_width=0.125"))
  line = cli.one_error_line(wider)
  assert line.startswith(f"error: checkpoint {m}/ckpt-2 holds another model: "
                         "model/encoder/")
  assert "there and [" in line and "in this run" in line and "--overwrite" in line
  assert cli.tree_digest(m) == digest
