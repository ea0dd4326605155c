"""Stopping a run cleanly: SIGTERM or a preemption notice, and the fault-injection hook.

A stop request is honoured at a chunk boundary: the run saves a checkpoint there (a
normal `ckpt-<global step>` of `TrainState.save`) and raises `errors.Preempted`,
which the CLI turns into exit code `Preempted.EXIT_CODE` (75); rerunning the same
command continues the run with the exact step count. A second SIGTERM while the
first is pending kills the process as the default handler would. `stop_request`
picks the mechanism by strategy:

- Default, Mirrored, OneDevice and TPU strategies: `StopSignal`. One process drives
  every replica (a TPUStrategy program is a single client), so it saves alone at
  the end of the chunk that is running when SIGTERM comes: the wait is bounded by
  one chunk (at most --steps_per_loop steps; --log_steps and --checkpoint_steps end
  chunks earlier).
- MultiWorkerMirroredStrategy: `ClusterStop`. Saving is a collective, so every
  worker must save at the same step. TensorFlow's
  `tf.distribute.experimental.PreemptionCheckpointHandler` agrees on it through the
  coordination service: the first worker with a notice publishes "save at the next
  call" and waits until every worker has acknowledged it. The notice is SIGTERM
  (caught here, polled by the handler once a second), and on GCE GPU VMs also the
  metadata server's `TERMINATE_ON_HOST_MAINTENANCE` maintenance event, which
  TensorFlow watches there. Every worker calls the handler
  (`save_checkpoint_if_preempted`) once per chunk boundary, in lockstep since each
  chunk is collective; at the agreed call all save through `TrainState.save` (the
  chief into model_dir, the others into their scratch directory, deleted) and stop
  with `Preempted`. The handler's exit_fn only records the stop, so the exit code is
  75 rather than the handler's own `sys.exit` (42; 143 on GCE). grace_period=0: the
  run stops at the agreed call (TensorFlow's GCE default, 3600 s, would train on and
  save again once the grace period has passed; with `save_checkpoint_if_preempted`
  its margin for that last save is zero).
  As the handler saves one call after it sees the notice, the wait is bounded by two
  chunks (the running one and the next) plus the 1 s poll. When the agreed call
  would be the run's last boundary, training just finishes (that boundary saves
  anyway; there is no later one to agree on). The handler's own bookkeeping (its
  call counter) is a separate checkpoint that is never saved: run checkpoints are
  unchanged. One handler per process: its coordination-service keys live as long as
  the cluster.
  On GCE CPU VMs the handler does nothing (TensorFlow does not support them); there
  SIGTERM keeps its default effect under MWMS, with a warning.
- TPU: the handler's TPUStrategy support is for Google's internal TPUs only (on
  Cloud TPU VMs it does nothing), and a TPUStrategy program is one client: the
  `StopSignal` above.

`kill_hook` is the fault injector's: with `SUPCON_TEST_KILL_AT_STEP=N` in the
environment, the process SIGKILLs itself when a chunk ends at global step N, before
that step's checkpoint is written — the worst moment of a real kill -9.
"""

import os
import signal
import threading
from typing import Callable, Optional

from absl import logging
import tensorflow as tf

from supcon_tf import distribute
from supcon_tf import workdir

KILL_AT_STEP_ENV = "SUPCON_TEST_KILL_AT_STEP"


def kill_hook(step: int) -> None:
  """SIGKILLs this process at the global step named by KILL_AT_STEP_ENV (if any).

  Args:
    step: the global step a chunk just ended at.
  """
  spec = os.environ.get(KILL_AT_STEP_ENV, "")
  if spec and step == int(spec):
    os.kill(os.getpid(), signal.SIGKILL)


class StopSignal:
  """A context manager catching SIGTERM as a stop request (main thread only)."""

  reason = "SIGTERM"  # what the Preempted message names

  def __init__(self, enabled: bool = True, save: Optional[Callable[[], str]] = None):
    """Args:
      enabled: install the handler (False: SIGTERM keeps its current effect).
      save: saves a checkpoint at the current global step (`TrainState.save`).
    """
    self.enabled = enabled
    self.save = save
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.requested:  # a second SIGTERM: stop now
      signal.signal(signal.SIGTERM, signal.SIG_DFL)
      os.kill(os.getpid(), signal.SIGTERM)
      return
    self.requested = True

  def stop_at(self, step: int, saved: bool) -> bool:  # pylint: disable=unused-argument
    """At a chunk boundary: whether to stop; if so the checkpoint of `step` is saved.

    Args:
      step: the global step the chunk ended at.
      saved: whether the loop saved the checkpoint of `step` already.
    """
    if not self.requested:
      return False
    if not saved:
      self.save()
    return True

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
    return False


def _platform_notice() -> Optional[Callable[[], bool]]:
  """The platform's preemption-notice check TensorFlow's handler would poll, if any.

  Returns:
    None where the handler watches SIGTERM only; on GCE GPU VMs the metadata
    server's maintenance-event check; `False` (not None) on GCE CPU and Cloud TPU
    VMs, where the handler does nothing.
  """
  # pylint: disable=g-import-not-at-top
  from tensorflow.python.distribute.failure_handling import failure_handling_util as util
  # pylint: enable=g-import-not-at-top
  platform = util.detect_platform()
  if platform in (util.PlatformDevice.GCE_CPU, util.PlatformDevice.GCE_TPU):
    return False
  if platform is util.PlatformDevice.GCE_GPU:
    return util.termination_watcher_function_gce
  return None


class ClusterStop(StopSignal):
  """SIGTERM or a platform notice to any MultiWorkerMirroredStrategy worker stops every
  worker at the same chunk boundary, checkpoint saved (see the module docstring)."""

  reason = "SIGTERM or preemption notice to one of the workers"

  def __init__(self, strategy: tf.distribute.Strategy, save: Callable[[], str],
               model_dir: str, total_steps: int):
    """Args:
      strategy: the MultiWorkerMirroredStrategy.
      save: `TrainState.save` (a collective: every worker calls it).
      model_dir: the run's model_dir (names the handler's never-written directory).
      total_steps: the run's last global step.
    """
    super().__init__(enabled=True, save=save)
    self.strategy = strategy
    self.total_steps = total_steps
    # The handler's own bookkeeping checkpoint (its call counter): never saved, so it
    # never reads anything, and this directory is never created.
    self._directory = os.path.join(
        workdir.scratch_dir(model_dir, distribute.task_id(strategy)), "preemption")
    self._handler = None
    self._platform = None
    self._saved = False
    self._stopped = False

  def _notice(self) -> bool:
    if self.requested:
      return True
    try:
      return bool(self._platform and self._platform())
    except Exception:  # pylint: disable=broad-except
      return False  # the metadata server did not answer: no notice

  def _save(self) -> None:
    if not self._saved:  # (the loop saved this step already)
      self.save()

  def _exit(self) -> None:
    self._stopped = True  # stop_at returns True: the exit goes through Preempted

  def __enter__(self):
    self._platform = _platform_notice()
    if self._platform is False:  # TensorFlow's handler is a no-op there
      logging.warning("SIGTERM is not coordinated between workers on this platform "
                      "(TensorFlow's PreemptionCheckpointHandler does not support GCE "
                      "CPU VMs): it stops the process without a checkpoint")
      return self
    super().__enter__()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), self._directory,
                                         max_to_keep=1)
    self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        self.strategy.cluster_resolver, manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            termination_watcher_fn=self._notice, exit_fn=self._exit,
            grace_period=0, save_fn=self._save))
    return self

  def stop_at(self, step: int, saved: bool) -> bool:
    """Called by every worker at every chunk boundary (a collective when it saves)."""
    if self._handler is None or step >= self.total_steps:
      return False  # (the run's end: no later boundary to agree on)
    self._saved = saved
    # pylint: disable=g-import-not-at-top
    from tensorflow.python.util import deprecation
    # pylint: enable=g-import-not-at-top
    with deprecation.silence():  # (its save reads its own deprecated total_run_calls)
      self._handler.save_checkpoint_if_preempted()
    return self._stopped

  def __exit__(self, *exc):
    if self._handler is not None:
      # The handler's watcher threads are stopped by its __del__ only (or before its
      # exit_fn): stop them now, while every worker's coordination service is up.
      self._handler.__del__()
      self._handler = None
    return super().__exit__(*exc)


def stop_request(strategy: tf.distribute.Strategy, save: Callable[[], str],
                 model_dir: str, total_steps: int) -> StopSignal:
  """The stop request of a run under `strategy` (a context manager, see above).

  Args:
    strategy: the run's strategy.
    save: `TrainState.save`.
    model_dir: the run's model_dir.
    total_steps: the run's last global step.
  """
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return ClusterStop(strategy, save, model_dir, total_steps)
  return StopSignal(save=save)
