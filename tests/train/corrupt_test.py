"""Undecodable images in training: per-epoch counts, reports and the bound."""

import pytest

from supcon_tf import config as config_lib
from supcon_tf import errors
from supcon_tf.train import corrupt
from supcon_tf.train import plan as plan_lib


class _Scalars:
  def __init__(self):
    self.written = []

  def scalars(self, writer, values, step):
    self.written.append((writer, dict(values), step))


def _counter(limit=0.1):
  plan = plan_lib.StagePlan(index=2, config=config_lib.StageConfig(), first_step=10,
                            num_steps=20, steps_per_epoch=4, num_views=1)
  lines, scalars = [], _Scalars()
  return corrupt.CorruptCounter(plan, 10, limit, scalars, lines.append), lines, scalars


def test_epoch_ends_are_relative_to_the_stage():
  counter, _, _ = _counter()
  assert counter.next_epoch_end(10) == 14
  assert counter.next_epoch_end(13) == 14
  assert counter.next_epoch_end(14) == 18


def test_counts_are_reported_and_reset_at_each_epoch_end():
  counter, lines, scalars = _counter()
  counter.add(12, 2, 1.0)  # mid-epoch: nothing reported yet
  assert not lines and not scalars.written
  counter.add(14, 2, 2.0)  # end of epoch 1 (40 images, 3 bad)
  assert lines == ["stage 2 epoch 1: skipped 3 undecodable image(s) of 40 read (7.50%)"]
  assert scalars.written == [("train", {"data/corrupt_images_per_epoch": 3.0}, 14)]
  counter.add(18, 4, 0.0)  # a clean epoch: a summary, no line for the user
  assert len(lines) == 1 and scalars.written[-1][1] == {
      "data/corrupt_images_per_epoch": 0.0}


def test_more_than_the_bound_fails_as_soon_as_it_is_known():
  counter, _, _ = _counter(limit=0.1)  # at most 4 of an epoch's 40 images
  counter.add(11, 1, 4.0)
  with pytest.raises(errors.CorruptDataError, match="stage 2 epoch 1: 5 of the images"):
    counter.add(12, 1, 1.0)
