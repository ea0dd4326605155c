"""Undecodable images met in training: counted per epoch, reported, bounded.

Sources that report corrupt images (image folders) flag each replaced example; the
step sums the flags (`corrupt_images` metric) and the outer loop hands each chunk's
count to a `CorruptCounter`, whose chunks end at epoch ends.
"""

from typing import Callable

from absl import logging

from supcon_tf.errors import CorruptDataError
from supcon_tf.train import plan as plan_lib


class CorruptCounter:
  """Counts a stage's skipped (undecodable) images per epoch: a line and a summary
  at the end of every epoch; CorruptDataError as soon as an epoch has more than
  --max_corrupt_fraction of its images bad (already known mid-epoch)."""

  def __init__(self, plan: plan_lib.StagePlan, global_batch_size: int,
               max_corrupt_fraction: float, summaries, log: Callable[[str], None]):
    """Args:
      plan: the stage.
      global_batch_size: images per step.
      max_corrupt_fraction: the bound (of an epoch's images).
      summaries: a `summaries.Summaries` (the per-epoch scalar).
      log: prints a line for the user.
    """
    self.plan = plan
    self.global_batch_size = global_batch_size
    self.limit = max_corrupt_fraction
    self.summaries = summaries
    self.log = log
    self.epoch_images = plan.steps_per_epoch * global_batch_size
    self.count = 0.0
    self.seen = 0

  def next_epoch_end(self, step: int) -> int:
    """The global step at which the epoch holding global step `step` ends."""
    spe = self.plan.steps_per_epoch
    local = step - self.plan.first_step
    return self.plan.first_step + (local // spe + 1) * spe

  def add(self, step: int, steps: int, corrupt: float) -> None:
    """Adds a chunk's count; reports it at an epoch end.

    Args:
      step: the global step the chunk ended at.
      steps: the chunk's steps.
      corrupt: undecodable images in the chunk.

    Raises:
      CorruptDataError: the epoch's count passed the bound.
    """
    self.count += corrupt
    self.seen += steps * self.global_batch_size
    local = step - self.plan.first_step
    epoch = -(-local // self.plan.steps_per_epoch)  # 1-based, the epoch just run
    if self.count > self.limit * self.epoch_images:
      raise CorruptDataError(
          f"stage {self.plan.index} epoch {epoch}: {int(self.count)} of the images read "
          f"so far ({self.seen}) do not decode, more than --max_corrupt_fraction="
          f"{self.limit:g} of the epoch's {self.epoch_images}; the files are printed "
          "above")
    if local % self.plan.steps_per_epoch == 0:
      message = (f"stage {self.plan.index} epoch {epoch}: skipped {int(self.count)} "
                 f"undecodable image(s) of {self.seen} read "
                 f"({100.0 * self.count / max(self.seen, 1):.2f}%)")
      if self.count:
        self.log(message)
      else:
        logging.info(message)
      self.summaries.scalars("train", {"data/corrupt_images_per_epoch": self.count}, step)
      self.count, self.seen = 0.0, 0
