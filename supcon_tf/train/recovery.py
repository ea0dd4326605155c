"""Non-finite losses: the check after every chunk, and recovery by skipping the batch.

The outer loop (`loop.py`) hands each chunk's metric means to `NanRecovery.check`. A
finite loss passes. A non-finite one stops the run with `errors.NonFiniteLossError`
naming the stage, the chunk's global steps and the non-finite term(s) — unless
--nan_recovery_trials=N > 0 and fewer than N recoveries have happened in this
command (a rerun counts afresh). A recovery:

1. restores the newest checkpoint, global step S (a fresh run with N > 0 saves
   ckpt-0, its initial state, so that there always is one);
2. replays from S one step at a time, on the step-indexed input, until the first
   step k whose loss is non-finite. That loss was computed from the weights before
   step k's update, but the update has been applied (and is non-finite too), so:
3. restores S again, replays S+1..k-1 and skips batch k: the global step and the
   optimizer's `iterations` advance by one with no update (the learning rate
   schedule and the input position stay those of the plan), the input moves past
   the batch;
4. prints `warning: non-finite loss at global step k (stage s, contrastive_loss=nan):
   restored ckpt-S, skipped batch k (recovery 1 of N)` on stderr (and the log),
   counts it in the TensorBoard scalar `train/nan_recoveries`, saves a checkpoint if
   k is a checkpoint step, and the loop goes on from k.

If the replay reaches the end of the failed chunk with finite losses, the failure
did not recur (non-deterministic kernels, a flaky device): the line says so and the
loop goes on from there. A recovery costs up to 2 x --checkpoint_steps replayed
steps. When the trials are used up, the run stops with the error above, which then
says so. The undecodable-image count of the replayed steps is not reported.

Fault injection (tests): with `SUPCON_TEST_NAN_AT_STEP=k` (or `k1,k2,...`) in the
environment, the stage step multiplies its loss — and the contrastive term, or the
cross-entropy term in a stage without the contrastive loss — by NaN at global step k,
every time step k runs, so its gradients and update are NaN as a real failure's
would be. Read once when the step is built (trace time); unset, it adds no op.
"""

import math
import os
import sys
from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from supcon_tf.errors import NonFiniteLossError

NAN_AT_STEP_ENV = "SUPCON_TEST_NAN_AT_STEP"

# The loss terms a non-finite total is traced to (metric names of step.py).
LOSS_TERMS = ("contrastive_loss", "cross_entropy_loss", "weight_decay_loss")


# ------------------------------------------------------------------ fault injection
def injected_nan_steps() -> Tuple[int, ...]:
  """The global steps named by NAN_AT_STEP_ENV (empty when unset)."""
  spec = os.environ.get(NAN_AT_STEP_ENV, "")
  return tuple(int(s) for s in spec.split(",") if s.strip())


def poison(terms: Dict[str, tf.Tensor], step, nan_steps: Tuple[int, ...],
           term: str) -> Dict[str, tf.Tensor]:
  """`terms` with "loss" and `term` multiplied by NaN at the steps `nan_steps`.

  Multiplied (by 1 elsewhere: bit-identical values and gradients), so that the
  gradients of the loss are NaN too.

  Args:
    terms: the step's loss terms ({"loss", "contrastive_loss", ...}).
    step: the global step being run (a scalar tensor).
    nan_steps: where to inject.
    term: the term the NaN is attributed to.
  """
  hit = tf.reduce_any(tf.equal(tf.cast(step, tf.int64),
                               tf.constant(nan_steps, tf.int64)))
  terms = dict(terms)
  for name in ("loss", term):
    factor = tf.where(hit, tf.constant(float("nan"), terms[name].dtype),
                      tf.constant(1.0, terms[name].dtype))
    terms[name] = terms[name] * factor
  return terms


def non_finite_terms(values: Dict[str, float]) -> List[str]:
  """`name=value` of the non-finite loss terms in a step's or chunk's metrics."""
  return [f"{k}={values[k]}" for k in LOSS_TERMS
          if k in values and not math.isfinite(values[k])]


# ------------------------------------------------------------------ recovery
class NanRecovery:
  """The non-finite loss check of a Trainer and its recoveries (module docstring)."""

  def __init__(self, trainer):
    """Args:
      trainer: the `loop.Trainer` (its state, metrics, input and compiled loop).
    """
    self.trainer = trainer
    self.trials = trainer.cfg.runtime.nan_recovery_trials
    self.skipped: List[int] = []  # the global steps whose batches were skipped
    self.used = 0

  def save_initial_state(self) -> None:
    """Saves ckpt-0 in a fresh run with recoveries on: a state to restore.

    Decided by the global step alone (a ckpt-0 already there is written again, with
    the same state): under MultiWorkerMirroredStrategy saving is a collective, and
    every worker must make the same decision whenever it looks at model_dir.
    """
    if self.trials and self.trainer.state.step == 0:
      path = self.trainer.save()
      log = self.trainer.log
      log(f"saved {path}: the initial state, for --nan_recovery_trials")

  def check(self, plan, values: Dict[str, float], first: int, last: int):
    """Checks a chunk's loss; recovers from a non-finite one.

    Args:
      plan: the stage (a `plan.StagePlan`).
      values: the chunk's metric means.
      first: the chunk's first global step.
      last: its last global step (the current one).

    Returns:
      None if the loss is finite; else, after a recovery, the input iterator
      positioned at the (new) current global step.

    Raises:
      NonFiniteLossError: the loss is not finite and no recovery is left (or possible).
    """
    if math.isfinite(values["loss"]):
      return None
    terms = non_finite_terms(values)
    message = (f"non-finite loss {values['loss']} in stage {plan.index} at global step "
               f"{last} (steps {first}..{last})"
               + (f"; non-finite term(s): {', '.join(terms)}" if terms else ""))
    if not self.trials:
      raise NonFiniteLossError(message)
    if self.used >= self.trials:
      raise NonFiniteLossError(
          f"{message}; --nan_recovery_trials={self.trials} used up (skipped the "
          f"batch(es) of global step(s) {', '.join(map(str, self.skipped)) or 'none'})")
    self.used += 1
    return self._recover(plan, values, first, last, message)

  def _restore(self, plan) -> Tuple[str, int]:
    """Restores the newest checkpoint as the loop would resume from it."""
    state = self.trainer.state
    path = state.restore()
    start = state.step
    if path is None or start < plan.first_step:
      return path, start
    if plan.config.reinitialize_classifier and start == plan.first_step:
      state.reinitialize_classifier(self.trainer.cfg.data.seed, plan.index)  # as loop.py
    return path, start

  def _run(self, plan, iterator, num_steps: int) -> Dict[str, float]:
    """`num_steps` steps through the compiled loop; their metric means."""
    t = self.trainer
    t.reset_metrics()
    t.compiled_loop(plan)(iterator, tf.constant(num_steps, tf.int32))
    return {k: float(v.result()) for k, v in t.metrics.items()}

  def _recover(self, plan, values, first: int, last: int, message: str):
    """Steps 1-4 of the module docstring; returns the iterator to go on with."""
    t, state = self.trainer, self.trainer.state
    path, start = self._restore(plan)
    if path is None or start < plan.first_step:
      raise NonFiniteLossError(
          f"{message}; cannot recover: the newest readable checkpoint "
          f"({path or 'none'}) is not in stage {plan.index}")
    name = os.path.basename(path)
    # 2. The first non-finite step, one step at a time from the checkpoint.
    iterator = t.train_iterator(plan, start - plan.first_step)
    bad, step_values = None, values
    for step in range(start + 1, last + 1):
      step_values = self._run(plan, iterator, 1)
      if not math.isfinite(step_values["loss"]):
        bad = step
        break
    count = f"recovery {self.used} of {self.trials}"
    terms = ", ".join(non_finite_terms(step_values if bad is not None else values)) or (
        f"loss={values['loss']}")
    if bad is None:
      self._report(f"non-finite loss in global steps {first}..{last} (stage "
                   f"{plan.index}, {terms}) did not recur when replayed from {name}: "
                   f"transient; continuing at global step {last} ({count})", plan, last)
      return iterator
    # 3. Again from the checkpoint (step `bad` updated the weights with NaN), up to
    # the step before, then past its batch with no update.
    path, start = self._restore(plan)
    iterator = t.train_iterator(plan, start - plan.first_step)
    if bad - 1 > start:
      self._run(plan, iterator, bad - 1 - start)
    next(iterator)
    state.global_step.assign_add(1)
    t.optimizers[plan.index].iterations.assign_add(1)
    self.skipped.append(bad)
    self._report(f"non-finite loss at global step {bad} (stage {plan.index}, {terms}): "
                 f"restored {os.path.basename(path)}, skipped batch {bad} ({count})",
                 plan, bad)
    return iterator

  def _report(self, line: str, plan, step: int) -> None:
    """The warning line, the TensorBoard count, and the checkpoint due at `step`."""
    t = self.trainer
    logging.info(line)  # (absl would repeat a warning on stderr)
    if t.is_chief:
      print(f"warning: {line}", file=sys.stderr, flush=True)
    t.summaries.scalars("train", {"nan_recoveries": self.used}, step)
    if step % t.cfg.runtime.checkpoint_steps == 0 or step == plan.end_step:
      t.save()
