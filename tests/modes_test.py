"""The modes end to end, in subprocesses (as a user runs them): train, kill, resume,
eval; image folders with corrupt files; TFDS ImageNet streamed under
MirroredStrategy; refused sources; an untrained classifier; XLA on 2 virtual CPUs."""

import json
import os
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from tests import cli
from tests import testing


def test_train_kill_resume_eval(tmp_path, fake_data):
  """Two stages under MirroredStrategy on 2 virtual CPUs: killed (SIGKILL) after a
  checkpoint, rerun with the same command, resumes at the checkpointed step (the
  step counter continues, nothing retrains), finishes and evaluates."""
  model_dir = tmp_path / "run"
  args = cli.tiny_args(model_dir, fake_data, "--stage_1_steps=40", "--stage_2_steps=6",
                    "--steps_per_loop=1", "--checkpoint_steps=2")
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  proc = subprocess.Popen([sys.executable, "-m", "supcon_tf.run"] + args,
                          cwd=testing.REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  testing.wait_for_checkpoint(proc, model_dir, 4)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  first_output = proc.stdout.read()
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(model_dir / "eval_results.json")
  killed_at = int(tf.train.load_variable(tf.train.latest_checkpoint(str(model_dir)),
                                         "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
  assert 4 <= killed_at < 40, first_output
  config = json.loads((model_dir / "config.json").read_text())
  assert config["stage_1"]["steps"] == 40 and config["runtime"]["batch_size"] == 16

  resumed = testing.run_cli(args)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  out = resumed.stdout
  assert f"resuming at stage step {killed_at}" in out
  steps = [int(line.split("| step ")[1].split("/")[0]) for line in out.splitlines()
           if line.startswith("stage 1 |")]
  assert steps[0] == killed_at + 1 and steps[-1] == 40  # continues, nothing retrains
  assert "stage 2 |" in out and "test top-1:" in out
  result = json.loads((model_dir / "eval_results.json").read_text())
  assert result["global_step"] == 46 and result["num_examples"] == 40
  assert 0.0 <= result["top_1"] <= result["top_5"] <= 1.0
  assert os.path.isdir(model_dir / "train") and os.path.isdir(model_dir / "eval")
  # results.json: the run's summary for sweeps and the report.
  recorded = json.loads((model_dir / "results.json").read_text())
  assert recorded["training"]["global_step"] == 46
  assert recorded["training"]["wall_seconds"] > 0
  run = recorded["run"]
  assert (run["method"], run["dataset"], run["seed"]) == ("supcon", "fashion_mnist", 0)
  assert run["top_1"] == result["top_1"] and run["global_step"] == 46
  assert run["wall_seconds"] == recorded["training"]["wall_seconds"]
  assert run["hardware"]["strategy"] == "MirroredStrategy"
  assert run["hardware"]["replicas"] == 2 and run["package_version"]

  # Rerunning a finished run trains nothing; eval mode reproduces the numbers.
  again = testing.run_cli(args[:] + ["--mode=eval"])
  assert again.returncode == 0, again.stderr
  assert "stage 1 |" not in again.stdout
  assert json.loads((model_dir / "eval_results.json").read_text())["top_1"] == \
      pytest.approx(result["top_1"])

  # A different model in the same model_dir is refused; checkpoints stay intact.
  before = sorted(os.listdir(model_dir))
  changed = testing.run_cli(cli.tiny_args(model_dir, fake_data, "--resnet_width=0.125",
                                       "--stage_1_steps=40", "--stage_2_steps=6"))
  assert "resnet_width" in cli.one_error_line(changed)
  assert sorted(os.listdir(model_dir)) == before


def _folder_args(model_dir, image_dir, *extra):
  return cli.tiny_args(model_dir, "/unused", f"--image_dir={image_dir}", "--batch_size=8",
                    "--eval_batch_size=8", "--steps_per_loop=1", *extra)


def test_image_folder_run_skips_corrupt_images_and_keeps_the_class_list(tmp_path):
  """A user's folder (train/ and test/ with one sub-folder per class, PNG and JPEG
  of several sizes, one undecodable file in each): trains both stages under
  MirroredStrategy, reports the skipped images per epoch and in evaluation, keeps
  the class list in model_dir and the export; another class set is refused."""
  photos = tmp_path / "photos"
  testing.write_image_folder(str(photos / "train"), corrupt={("dog", 3)})
  testing.write_image_folder(str(photos / "test"), per_class=3, corrupt={("cat", 1)},
                             seed=1)
  model_dir = tmp_path / "run"
  args = _folder_args(model_dir, photos, "--stage_1_steps=6", "--stage_2_steps=3",
                      "--max_corrupt_fraction=0.2", "--checkpoint_steps=3")
  result = testing.run_cli(args)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  out = result.stdout
  assert "image_folder from image folder" in out and "24 train / 9 eval images" in out
  for epoch in (1, 2):
    assert f"stage 1 epoch {epoch}: skipped 1 undecodable image(s) of 24 read" in out
  assert "stage 2 epoch 1: skipped 1 undecodable image(s)" in out
  assert "evaluation: skipped 1 undecodable image(s) of 9" in out
  assert result.stderr.count("skipped an undecodable image:") == 3  # once per run+stage+eval
  assert "train/dog/003.jpg" in result.stderr and "test/cat/001.jpg" in result.stderr
  evaluation = json.loads((model_dir / "eval_results.json").read_text())
  assert evaluation["num_examples"] == 8 and evaluation["corrupt_images"] == 1
  classes = json.loads((model_dir / "classes.json").read_text())
  assert classes["classes"] == ["cat", "dog", "fox"] and classes["dataset"] == "image_folder"
  info = json.loads((model_dir / "export" / "export_info.json").read_text())
  assert info["classes"] == ["cat", "dog", "fox"]

  other = tmp_path / "other"
  testing.write_image_folder(str(other / "train"), classes=("cat", "dog", "owl"))
  testing.write_image_folder(str(other / "test"), classes=("cat", "dog", "owl"))
  before = sorted(os.listdir(model_dir))
  refused = testing.run_cli(_folder_args(model_dir, other, "--stage_1_steps=6",
                                         "--stage_2_steps=3"))
  assert "new: owl" in cli.one_error_line(refused)
  assert sorted(os.listdir(model_dir)) == before


def test_too_many_corrupt_images_fail_the_run_and_keep_its_checkpoints(tmp_path):
  """A run stopped (SIGKILL) after its first epoch's checkpoint is resumed with a
  stricter --max_corrupt_fraction (which may differ on a resume): it fails at the
  end of its next epoch and saves nothing."""
  photos = tmp_path / "photos"
  testing.write_image_folder(str(photos / "train"), corrupt={("dog", 3), ("fox", 5)})
  testing.write_image_folder(str(photos / "test"), per_class=2, seed=1)
  model_dir = tmp_path / "run"
  plan = ("--stage_1_steps=30", "--stage_2_steps=0", "--stage_2_epochs=0",
          "--mode=train", "--checkpoint_steps=3")  # 3 steps per epoch
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  first = subprocess.Popen(
      [sys.executable, "-m", "supcon_tf.run"] + _folder_args(
          model_dir, photos, *plan, "--max_corrupt_fraction=0.1"),
      cwd=testing.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  testing.wait_for_checkpoint(first, model_dir, 3)
  first.send_signal(signal.SIGKILL)
  first.wait()
  assert "skipped 2 undecodable image(s) of 24" in first.stdout.read()
  stopped_at = int(tf.train.load_variable(tf.train.latest_checkpoint(str(model_dir)),
                                          "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
  assert 3 <= stopped_at < 30
  checkpoints = sorted(p for p in os.listdir(model_dir) if p.startswith("ckpt-"))
  strict = testing.run_cli(_folder_args(model_dir, photos, *plan,
                                        "--max_corrupt_fraction=0.05"))
  line = cli.one_error_line(strict)
  assert "do not decode, more than --max_corrupt_fraction=0.05" in line
  assert sorted(p for p in os.listdir(model_dir) if p.startswith("ckpt-")) == checkpoints


def test_imagenet2012_from_tfds_streamed_under_mirrored(tmp_path):
  """The ImageNet path end to end on a real TFDS imagenet2012 prepared offline
  (small JPEGs): streamed, decoded crop-only, AutoAugment, ImageNet centre crops,
  the blur deferred to the replica step, two replicas; evaluated on validation."""
  data_dir, synsets = testing.make_fake_imagenet(str(tmp_path / "imagenet"))
  model_dir = tmp_path / "run"
  result = testing.run_cli(cli.tiny_args(
      model_dir, "/unused", "--dataset=imagenet2012", f"--data_dir={data_dir}",
      "--eval_split=validation", "--augmentation_type=autoaugment",
      "--eval_crop_method=resize_then_crop", "--crop_padding=4", "--blur_probability=0.5",
      "--defer_blur", "--deterministic", "--input_threads=2", "--batch_size=8",
      "--eval_batch_size=4", "--stage_1_steps=3", "--stage_2_steps=2",
      "--input_normalization=imagenet"))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "imagenet2012 from TFDS under" in result.stdout and "(streamed)" in result.stdout
  assert "24 train / 10 eval images, 1000 classes" in result.stdout
  evaluation = json.loads((model_dir / "eval_results.json").read_text())
  assert evaluation["num_examples"] == 10 and "corrupt_images" not in evaluation
  classes = json.loads((model_dir / "classes.json").read_text())["classes"]
  assert len(classes) == 1000 and classes[:3] == synsets


def test_missing_or_conflicting_sources_are_refused(tmp_path):
  missing = testing.run_cli(_folder_args(tmp_path / "a", tmp_path / "nope"))
  assert "does not exist" in cli.one_error_line(missing)
  both = testing.run_cli(_folder_args(tmp_path / "b", tmp_path, "--dataset=cifar10"))
  assert "name two sources" in cli.one_error_line(both)
  (tmp_path / "empty").mkdir()
  empty = testing.run_cli(_folder_args(tmp_path / "c", tmp_path / "empty",
                                       "--train_split=all", "--eval_split=all"))
  assert "no class sub-folders" in cli.one_error_line(empty)
  not_prepared = testing.run_cli(cli.tiny_args(tmp_path / "d", "/unused",
                                            "--dataset=imagenet2012",
                                            "--eval_split=validation",
                                            f"--data_dir={tmp_path / 'empty'}"))
  assert "not prepared under --data_dir" in cli.one_error_line(not_prepared)
  unlabelled = testing.run_cli(cli.tiny_args(tmp_path / "e", "/unused",
                                          "--dataset=imagenet2012",
                                          f"--data_dir={tmp_path / 'empty'}"))
  assert ("--eval_split='test': imagenet2012's 'test' split has no labels"
          in cli.one_error_line(unlabelled))
  for refused in "acde":
    assert not os.path.exists(tmp_path / refused)


def test_untrained_classifier_gets_no_number(tmp_path, fake_data):
  """Stage 1 only with a zero-initialised classifier: in_top_k would report 100%."""
  model_dir = tmp_path / "m"
  args = cli.tiny_args(model_dir, fake_data, "--stage_1_steps=2", "--stage_2_steps=0",
                    "--stage_2_epochs=0", "--zero_initialize_classifier",
                    "--steps_per_loop=1", "--projector_examples=0",
                    "--export_at_end=false")
  trained = testing.run_cli(args)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert "evaluation skipped: no stage trains the classifier" in trained.stdout
  assert "top-1" not in trained.stdout
  with open(model_dir / "eval_results.json") as f:
    result = json.load(f)
  assert "top_1" not in result and "no stage trains" in result["skipped"]
  assert result["global_step"] == 2
  refused = testing.run_cli(args + ["--mode=eval"])
  assert "--mode=eval refused: no stage trains the classifier" in cli.one_error_line(refused)
  # Eval reads the plan from config.json: a command naming another plan is refused
  # (a classifier stage planned but not reached: plan_test).
  planned = testing.run_cli(args + ["--mode=eval", "--stage_2_steps=3"])
  assert "holds --stage_2_steps=0; this command says --stage_2_steps=3" in \
      cli.one_error_line(planned)


def test_jit_compile_on_two_virtual_cpus_from_the_cli(tmp_path, fake_data):
  """The failure users met first: XLA with 2 replicas died at the first SupCon step."""
  result = testing.run_cli(cli.tiny_args(
      tmp_path / "m", fake_data, "--jit_compile", "--use_projection_batch_norm",
      "--stage_1_steps=3", "--stage_2_steps=2", "--steps_per_loop=2",
      "--projector_examples=0", "--export_at_end=false"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "with 2 replica(s)" in result.stdout and "test top-1" in result.stdout
  with open(tmp_path / "m" / "eval_results.json") as f:
    assert json.load(f)["global_step"] == 5
