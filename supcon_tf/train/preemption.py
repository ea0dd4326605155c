"""Stopping a run cleanly: SIGTERM (a preemption notice) and the fault-injection hook.

`StopSignal` turns SIGTERM into a request that the outer loop honours at the next
chunk boundary: it saves a checkpoint there and raises `errors.Preempted`, which the
CLI turns into exit code `Preempted.EXIT_CODE` (75); rerunning the same command
continues the run. The wait is bounded by one chunk (at most --steps_per_loop steps;
--log_steps and --checkpoint_steps end chunks earlier). A second SIGTERM while the
first is pending kills the process as the default handler would. Single-process
runs only: under MultiWorkerMirroredStrategy saving is a collective, so one worker
cannot save alone; there SIGTERM keeps its default effect (the run resumes from its
newest checkpoint). Coordinating workers (`tf.distribute.experimental.
PreemptionCheckpointHandler`) is still to come.

`kill_hook` is the fault injector's: with `SUPCON_TEST_KILL_AT_STEP=N` in the
environment, the process SIGKILLs itself when a chunk ends at global step N, before
that step's checkpoint is written — the worst moment of a real kill -9.
"""

import os
import signal
import threading

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

  def __init__(self, enabled: bool = True):
    """Args:
      enabled: install the handler (False: SIGTERM keeps its current effect).
    """
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.requested:  # a second SIGTERM: stop now
      signal.signal(signal.SIGTERM, signal.SIG_DFL)
      os.kill(os.getpid(), signal.SIGTERM)
      return
    self.requested = True

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
    return False
