"""Errors a run reports to the user as one line (no traceback). No TensorFlow."""

from supcon_tf.config import ConfigError  # pylint: disable=unused-import


class RunError(RuntimeError):
  """A run stopped for a reason the user can act on (the message says which)."""


class NonFiniteLossError(RunError):
  """The loss of a chunk of steps is NaN or infinite."""


class CorruptDataError(RunError):
  """More than --max_corrupt_fraction of the images did not decode."""


class Preempted(RunError):
  """SIGTERM (or a preemption notice) arrived: a checkpoint was saved, rerun to go on."""

  # EX_TEMPFAIL: a temporary failure, the same command continues the run.
  EXIT_CODE = 75
