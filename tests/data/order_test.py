"""The step-indexed order of the training input, without images: every example once
per epoch across pipelines, each epoch ordered anew, a start step skipping exactly
the steps before it, seeds as pure functions of (seed, stage, epoch, position)."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.data import order


def _take(ds, n):
  return [{k: int(v) for k, v in item.items()} for item in ds.take(n).as_numpy_iterator()]


def _context(num_pipelines, pipeline_id):
  return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                    input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=num_pipelines)


def test_steps_per_epoch_counts_whole_global_steps():
  assert order.steps_per_epoch(100, 8) == 12
  assert order.steps_per_epoch(7, 8) == 0


def test_two_pipelines_see_every_kept_example_once_per_epoch():
  spec = order.TrainInputSpec(global_batch_size=4, num_views=2, seed=3, stage=1)
  # 10 examples, batch 4: 2 steps per epoch, 8 examples kept per epoch, 4 per pipeline.
  epochs = [_take(order.indexed_epochs(10, spec, _context(2, p)), 12) for p in (0, 1)]
  for epoch in range(3):
    items = [it for p in (0, 1) for it in epochs[p][4 * epoch:4 * epoch + 4]]
    assert {it["epoch"] for it in items} == {epoch}
    indices = [it["index"] for it in items]
    assert len(set(indices)) == 8  # no example twice in an epoch
    assert sorted(it["position"] for it in items) == list(range(8))
  first = [it["index"] for it in epochs[0][:4]]
  second = [it["index"] for it in epochs[0][4:8]]
  assert first != second  # every epoch is ordered anew


def test_a_start_step_skips_exactly_the_steps_before_it():
  spec = order.TrainInputSpec(global_batch_size=4, num_views=1, seed=0, stage=2)
  whole = _take(order.indexed_epochs(20, spec, None), 40)  # 5 steps per epoch
  for start in (1, 5, 7):
    resumed = order.TrainInputSpec(global_batch_size=4, num_views=1, seed=0, stage=2,
                                   start_step=start)
    assert _take(order.indexed_epochs(20, resumed, None), 40 - 4 * start) == \
        whole[4 * start:]


def test_orders_and_seeds_are_pure_functions_of_seed_stage_epoch_position():
  a = order.example_seed(1, 1, 0, 5).numpy()
  np.testing.assert_array_equal(a, order.example_seed(1, 1, 0, 5).numpy())
  for other in (order.example_seed(2, 1, 0, 5), order.example_seed(1, 2, 0, 5),
                order.example_seed(1, 1, 1, 5), order.example_seed(1, 1, 0, 6)):
    assert not np.array_equal(a, other.numpy())
  spec = order.TrainInputSpec(global_batch_size=4, num_views=1, seed=9, stage=1)
  other_seed = order.TrainInputSpec(global_batch_size=4, num_views=1, seed=10, stage=1)
  assert _take(order.indexed_epochs(16, spec, None), 16) == _take(
      order.indexed_epochs(16, spec, None), 16)
  assert _take(order.indexed_epochs(16, spec, None), 16) != _take(
      order.indexed_epochs(16, other_seed, None), 16)


def test_fewer_examples_than_a_global_batch_are_refused():
  spec = order.TrainInputSpec(global_batch_size=8, num_views=1, seed=0, stage=1)
  with pytest.raises(ValueError, match="5 training examples are fewer than one global "
                                       "batch of 8"):
    order.indexed_epochs(5, spec, None)
