"""--nan_recovery_trials: a non-finite loss restores the last checkpoint, the replay
finds the step, its batch is skipped and training goes on — bit-identical under
--deterministic to a run that skipped the batch by construction (its counters moved
past the step in a checkpoint); without the flag, or with the trials used up, the run
stops naming the step and the term. The non-finite losses are injected with
SUPCON_TEST_NAN_AT_STEP (`train/recovery.py`)."""

import math
import os
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

from supcon_tf import train
from supcon_tf.train import preemption
from supcon_tf.train import recovery
from supcon_tf.train.state import checkpoint_digest
from tests import cli
from tests import testing
from tests.train import common

_STEP = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
_ITER = "stage_{}_optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"
_QUIET = ("--deterministic", "--mode=train", "--export_at_end=false",
          "--projector_examples=0", "--summary_images=0")


def _run(args, nan_at=None, kill_at=None):
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  if nan_at:
    env[recovery.NAN_AT_STEP_ENV] = nan_at
  if kill_at:
    env[preemption.KILL_AT_STEP_ENV] = str(kill_at)
  return subprocess.run([sys.executable, "-m", "supcon_tf.run"] + list(args),
                        cwd=testing.REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def _latest(model_dir):
  return tf.train.latest_checkpoint(str(model_dir))


def _skip_in_checkpoint(path, stage):
  """Writes ckpt-(N+1) holding checkpoint `path` (global step N) with the global step
  and the stage's optimizer iterations advanced by one: resumed, the run skips batch
  N+1 by construction (the input is step-indexed)."""
  reader = tf.train.load_checkpoint(path)
  names = sorted(reader.get_variable_to_shape_map())
  tensors = [reader.get_tensor(n) + 1 if n in (_STEP, _ITER.format(stage))
             else reader.get_tensor(n) for n in names]
  model_dir = os.path.dirname(path)
  prefix = os.path.join(model_dir, f"ckpt-{int(reader.get_tensor(_STEP)) + 1}")
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(t) for t in tensors])
  tf.compat.v1.train.update_checkpoint_state(model_dir, prefix,
                                             all_model_checkpoint_paths=[path, prefix])


def test_a_non_finite_step_is_skipped_bit_identically(tmp_path, fake_data):
  plan = ("--stage_1_steps=8", "--stage_2_steps=2") + _QUIET
  # Chunks 1..4 (ckpt-4) and 5..8, whose step 7 is non-finite (and so is 8, from
  # the NaN weights): restore ckpt-4, replay 5, 6, 7; restore, run 5..6, skip 7.
  recovered = _run(cli.tiny_args(tmp_path / "recovered", fake_data, *plan,
                                 "--steps_per_loop=4", "--checkpoint_steps=4",
                                 "--nan_recovery_trials=1"), nan_at="7")
  assert recovered.returncode == 0, recovered.stderr[-3000:]
  warnings = [l for l in recovered.stderr.splitlines() if l.startswith("warning:")]
  assert warnings == ["warning: non-finite loss at global step 7 (stage 1, "
                      "contrastive_loss=nan): restored ckpt-4, skipped batch 7 "
                      "(recovery 1 of 1)"], recovered.stderr[-3000:]
  assert "ckpt-0: the initial state" in recovered.stdout
  latest = _latest(tmp_path / "recovered")
  reader = tf.train.load_checkpoint(latest)
  assert reader.get_tensor(_STEP) == 10
  assert reader.get_tensor(_ITER.format(1)) == 8 and reader.get_tensor(_ITER.format(2)) == 2
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and value.dtype.kind == "f":
      assert np.all(np.isfinite(value)), name

  # The reference: no NaN; stopped after ckpt-6 (killed at 8, before its save), the
  # counters of ckpt-6 advanced past step 7 into ckpt-7, then resumed.
  reference = tmp_path / "reference"
  args = cli.tiny_args(reference, fake_data, *plan, "--steps_per_loop=4",
                       "--checkpoint_steps=2")
  assert _run(args, kill_at=8).returncode == -signal.SIGKILL
  assert _latest(reference).endswith("ckpt-6")
  _skip_in_checkpoint(_latest(reference), stage=1)
  resumed = _run(args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming at stage step 7" in resumed.stdout
  assert checkpoint_digest(_latest(reference)) == checkpoint_digest(latest)


def test_without_the_flag_the_run_stops_naming_the_step_and_the_term(tmp_path,
                                                                     fake_data):
  model_dir = tmp_path / "run"
  result = _run(cli.tiny_args(model_dir, fake_data, "--stage_1_steps=2",
                              "--stage_2_steps=0", "--stage_2_epochs=0",
                              "--steps_per_loop=1", "--checkpoint_steps=1", *_QUIET),
                nan_at="2")
  line = cli.one_error_line(result)
  assert line == ("error: non-finite loss nan in stage 1 at global step 2 (steps 2..2); "
                  "non-finite term(s): contrastive_loss=nan"), line
  assert _latest(model_dir).endswith("ckpt-1")  # no ckpt-0 without the flag
  assert not os.path.exists(model_dir / "ckpt-0.index")


def test_the_run_stops_when_the_trials_are_used_up(tmp_path, fake_data):
  model_dir = tmp_path / "run"
  result = _run(cli.tiny_args(model_dir, fake_data, "--stage_1_steps=8",
                              "--stage_2_steps=0", "--stage_2_epochs=0",
                              "--steps_per_loop=4", "--checkpoint_steps=4",
                              "--nan_recovery_trials=1", *_QUIET), nan_at="6,7")
  assert "restored ckpt-4, skipped batch 6 (recovery 1 of 1)" in result.stderr
  line = cli.one_error_line(result)
  assert line.startswith("error: non-finite loss nan in stage 1 at global step 8 "
                         "(steps 7..8); non-finite term(s): contrastive_loss=nan"), line
  assert line.endswith("--nan_recovery_trials=1 used up (skipped the batch(es) of "
                       "global step(s) 6)"), line
  assert _latest(model_dir).endswith("ckpt-4")


# ------------------------------------------------------------------ in one process
def test_recovery_from_ckpt_0_and_at_a_stage_start(tmp_path, capsys, monkeypatch):
  # Step 1 (no checkpoint yet but the ckpt-0 the flag saves) and step 6, the only
  # step of stage 2, which re-initialises its classifier: both batches skipped.
  monkeypatch.setenv(recovery.NAN_AT_STEP_ENV, "1,6")
  model_dir = str(tmp_path)
  cfg = common.tiny_config(model_dir, steps_per_loop=2, checkpoint_steps=2,
                           summary_images=0, nan_recovery_trials=2)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), model_dir,
                          verbose=False)
  trainer.train()
  trainer.close()
  err = capsys.readouterr().err
  assert ("non-finite loss at global step 1 (stage 1, contrastive_loss=nan): restored "
          "ckpt-0, skipped batch 1 (recovery 1 of 2)") in err, err
  assert ("non-finite loss at global step 6 (stage 2, cross_entropy_loss=nan): "
          "restored ckpt-5, skipped batch 6 (recovery 2 of 2)") in err, err
  assert trainer.state.step == 6
  assert int(trainer.optimizers[1].iterations.numpy()) == 5
  assert int(trainer.optimizers[2].iterations.numpy()) == 1
  assert all(np.all(np.isfinite(v.numpy())) for v in trainer.model.variables)
  # Stage 2 took no step: its classifier is the seeded re-initialisation's.
  kernel = trainer.model.classifier.trainable_variables[0].numpy()
  trainer.state.reinitialize_classifier(cfg.data.seed, 2)
  np.testing.assert_array_equal(
      kernel, trainer.model.classifier.trainable_variables[0].numpy())
  assert _latest(model_dir).endswith("ckpt-6")
  counts = [tf.make_ndarray(e.tensor_proto).item() for e in
            common.events(os.path.join(model_dir, "train")).Tensors("nan_recoveries")]
  assert counts == [1, 2]


def test_a_failure_that_does_not_recur_is_transient(tmp_path, capsys, monkeypatch):
  model_dir = str(tmp_path)
  cfg = common.tiny_config(model_dir, steps_per_loop=2, checkpoint_steps=2,
                           summary_images=0, nan_recovery_trials=1)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), model_dir,
                          verbose=False)
  check = trainer._nan.check  # pylint: disable=protected-access
  seen = {}

  def flaky(plan, values, first, last):
    """The chunk 3..4 reports a NaN that its replay from ckpt-2 will not find."""
    if last != 4 or seen:
      return check(plan, values, first, last)
    seen["weights"] = [v.numpy() for v in trainer.model.variables]  # after 3..4
    iterator = check(plan, dict(values, loss=math.nan, contrastive_loss=math.nan),
                     first, last)
    seen["step"] = trainer.state.step
    seen["iterations"] = int(trainer.optimizers[1].iterations.numpy())
    seen["replayed"] = [v.numpy() for v in trainer.model.variables]
    return iterator

  monkeypatch.setattr(trainer._nan, "check", flaky)  # pylint: disable=protected-access
  trainer.train()
  err = capsys.readouterr().err
  assert ("warning: non-finite loss in global steps 3..4 (stage 1, contrastive_loss=nan) "
          "did not recur when replayed from ckpt-2: transient; continuing at global "
          "step 4 (recovery 1 of 1)") in err, err
  # Replayed from ckpt-2: steps 3 and 4 again, to the weights the chunk had reached
  # (up to oneDNN's rounding in this process; the CLI test above is bit-exact).
  assert seen["step"] == 4 and seen["iterations"] == 4
  for a, b in zip(seen["weights"], seen["replayed"]):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
  assert os.path.exists(os.path.join(model_dir, "ckpt-4.index"))  # the save due at 4
  assert trainer.state.step == 6
