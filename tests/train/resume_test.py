"""Nothing lost: a run killed with SIGKILL (in stage 1, at the stage boundary, in
stage 2, before its first checkpoint) and rerun ends bit-identical to an
uninterrupted run under --deterministic; SIGTERM saves and exits with code 75, and
the rerun continues with the exact step count. Runs the CLI in subprocesses on 2
virtual CPUs (MirroredStrategy), as users run it."""

import os
import signal
import subprocess
import sys
import time

import tensorflow as tf

from supcon_tf.errors import Preempted
from supcon_tf.train import preemption
from supcon_tf.train.state import checkpoint_digest
from tests import cli
from tests import testing

_PLAN = ("--deterministic", "--stage_1_steps=6", "--stage_2_steps=4",
         "--steps_per_loop=1", "--checkpoint_steps=2", "--mode=train",
         "--export_at_end=false", "--projector_examples=0", "--summary_images=0")


def _global_step(model_dir):
  return int(tf.train.load_variable(tf.train.latest_checkpoint(str(model_dir)),
                                    "global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _run(args, kill_at=None):
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  if kill_at:
    env[preemption.KILL_AT_STEP_ENV] = str(kill_at)
  return subprocess.run([sys.executable, "-m", "supcon_tf.run"] + list(args),
                        cwd=testing.REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def test_kill_9_anywhere_then_resume_is_bit_identical(tmp_path, fake_data):
  straight = tmp_path / "straight"
  done = _run(cli.tiny_args(straight, fake_data, *_PLAN))
  assert done.returncode == 0, done.stderr[-3000:]
  assert _global_step(straight) == 10
  want = checkpoint_digest(tf.train.latest_checkpoint(str(straight)))

  killed = tmp_path / "killed"
  args = cli.tiny_args(killed, fake_data, *_PLAN)
  # Step 1: before the first checkpoint (the rerun starts from scratch: seeded
  # weights); 3: mid stage 1, between checkpoints; 6: the last stage-1 step, before
  # its checkpoint (the rerun redoes it, then re-initialises nothing twice); 8: in
  # stage 2 at a checkpoint step, before the save.
  resumed_from = []
  for kill_at in (1, 3, 6, 8):
    before = _global_step(killed) if tf.train.latest_checkpoint(str(killed)) else 0
    result = _run(args, kill_at=kill_at)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    if before:
      assert "resuming at stage step" in result.stdout, result.stdout
    resumed_from.append(before)
    # Killed before the save of step kill_at: the newest checkpoint is older.
    latest = tf.train.latest_checkpoint(str(killed))
    assert latest is None or _global_step(killed) < kill_at
  assert resumed_from == [0, 0, 2, 4], resumed_from
  final = _run(args)
  assert final.returncode == 0, final.stderr[-3000:]
  assert _global_step(killed) == 10
  assert checkpoint_digest(tf.train.latest_checkpoint(str(killed))) == want


def test_sigterm_saves_at_the_next_step_and_the_rerun_continues(tmp_path, fake_data):
  model_dir = tmp_path / "run"
  args = cli.tiny_args(model_dir, fake_data, "--stage_1_steps=30", "--stage_2_steps=0",
                       "--stage_2_epochs=0",
                       "--steps_per_loop=1", "--checkpoint_steps=100", "--mode=train",
                       "--export_at_end=false", "--projector_examples=0",
                       "--summary_images=0")
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  proc = subprocess.Popen([sys.executable, "-m", "supcon_tf.run"] + args,
                          cwd=testing.REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    for line in proc.stdout:  # wait until training runs
      assert time.time() < deadline, "no progress line within 300 s"
      if line.startswith("stage 1 |") and "step 2/30" in line:
        break
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == Preempted.EXIT_CODE, err[-3000:]
  assert time.time() - sent < 60  # one chunk of one step, plus the save
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "SIGTERM at global step" in errors[0], err[-2000:]
  stopped_at = int(errors[0].split("global step ")[1].split(":")[0])
  assert 2 <= stopped_at < 30
  # Saved although no checkpoint step was reached (--checkpoint_steps=100).
  assert _global_step(model_dir) == stopped_at

  rerun = testing.run_cli(args, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  steps = [int(l.split("| step ")[1].split("/")[0]) for l in rerun.stdout.splitlines()
           if l.startswith("stage 1 |")]
  assert steps[0] == stopped_at + 1 and steps[-1] == 30  # no step lost or repeated
  assert _global_step(model_dir) == 30


def test_torn_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, fake_data):
  straight = tmp_path / "straight"
  assert _run(cli.tiny_args(straight, fake_data, *_PLAN)).returncode == 0
  want = checkpoint_digest(tf.train.latest_checkpoint(str(straight)))

  torn = tmp_path / "torn"
  args = cli.tiny_args(torn, fake_data, *_PLAN)
  assert _run(args, kill_at=5).returncode == -signal.SIGKILL
  assert _global_step(torn) == 4
  data = [f for f in os.listdir(torn) if f.startswith("ckpt-4.data")]
  assert data
  with open(torn / data[0], "r+b") as f:  # a save cut short (crash, full disk)
    f.truncate(os.path.getsize(torn / data[0]) // 2)
  resumed = _run(args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "ckpt-4 is unreadable" in resumed.stderr and "trying the previous one" in \
      resumed.stderr
  assert "resuming at stage step 2" in resumed.stdout
  assert checkpoint_digest(tf.train.latest_checkpoint(str(torn))) == want

  # With every checkpoint unreadable the run refuses (one line) instead of silently
  # starting over; nothing is deleted.
  for name in os.listdir(torn):
    if name.startswith("ckpt-") and ".data" in name:
      with open(torn / name, "r+b") as f:
        f.truncate(8)
  before = cli.tree_digest(torn)
  broken = _run(args)
  assert "can be read" in cli.one_error_line(broken)
  assert cli.tree_digest(torn) == before


def test_non_finite_loss_stops_the_run_naming_the_step_and_the_term(tmp_path,
                                                                    fake_data):
  model_dir = tmp_path / "run"
  args = cli.tiny_args(model_dir, fake_data, "--stage_1_steps=6", "--stage_2_steps=0",
                       "--stage_2_epochs=0",
                       "--steps_per_loop=1", "--checkpoint_steps=1", "--mode=train",
                       "--stage_1_optimizer=momentum", "--stage_1_weight_decay=1e-4",
                       # BatchNorm keeps the activations finite; the decay term of
                       # weights blown up to ~1e27 overflows float32.
                       "--stage_1_base_learning_rate=1e30", "--export_at_end=false",
                       "--projector_examples=0", "--summary_images=0")
  result = _run(args)
  line = cli.one_error_line(result)
  assert "non-finite loss" in line and "in stage 1 at global step" in line, line
  assert "non-finite term(s): weight_decay_loss=inf" in line, line
  failed_at = int(line.split("global step ")[1].split(" ")[0])
  assert 1 < failed_at <= 6
  # The checkpoints before the failure stay; the failing step's is not written.
  assert _global_step(model_dir) == failed_at - 1
