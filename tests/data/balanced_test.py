"""Class-balanced batches (--samples_per_class): B/n distinct classes of n images in
every batch, each example once per pass of its class, step-indexed like the plain
order (resume, two pipelines), refused where a source cannot give them."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf.data import balanced
from supcon_tf.data import order
from supcon_tf.data import sources
from tests import testing


def _labels(sizes):
  return np.concatenate([np.full(s, c) for c, s in enumerate(sizes)]).astype(np.int32)


def _batches(indices, b):
  return [indices[i:i + b] for i in range(0, len(indices), b)]


@pytest.mark.parametrize("sizes, n, b", [
    ([12] * 10, 4, 16),           # equal classes: passes and batches align
    ([5, 9, 13, 20, 7, 11], 2, 8),  # unequal classes, passes cut across batches
    ([6] * 4, 3, 12),             # every class in every batch
])
def test_every_batch_is_distinct_classes_of_n(sizes, n, b):
  labels = _labels(sizes)
  steps = len(labels) // b
  indices = balanced.balanced_epoch(labels, n, b, steps, (0, 1, 0))
  assert indices.shape == (steps * b,)
  for batch in _batches(indices, b):
    runs = labels[batch].reshape(b // n, n)
    assert (runs == runs[:, :1]).all()  # each run of n is one class
    assert len(set(runs[:, 0])) == b // n  # distinct classes
    assert len(set(batch.tolist())) == b  # no example twice in a batch


def test_each_example_once_per_pass_of_its_class():
  sizes = [5, 9, 13, 20, 7, 11] * 4  # 24 classes, 4 per batch
  labels = _labels(sizes)
  n, b = 2, 8
  steps = 8 * len(labels) // b  # eight epochs' worth of draws
  indices = balanced.balanced_epoch(labels, n, b, steps, (3, 1, 0))
  for c in range(len(sizes)):
    drawn = [i for i in indices if labels[i] == c]
    members = np.flatnonzero(labels == c)
    passes = len(drawn) // len(members)
    for p in range(passes):  # whole passes are permutations of the class
      assert sorted(drawn[p * len(members):(p + 1) * len(members)]) == members.tolist()
  # Each class's runs are its share of the draws, to one run.
  counts = collections.Counter(labels[indices].tolist())
  runs = np.array([counts[c] for c in range(len(sizes))]) / n
  np.testing.assert_allclose(runs, steps * (b // n) * np.array(sizes) / len(labels),
                             atol=1)


def test_a_class_too_large_for_one_run_per_batch_hands_on_its_surplus():
  labels = _labels([40, 4, 4, 4])  # half the data, but at most one run per batch
  indices = balanced.balanced_epoch(labels, 2, 4, 13, (0, 1, 0))
  counts = collections.Counter(labels[indices].tolist())
  assert counts[0] == 26  # in every batch
  assert sorted(counts[c] for c in (1, 2, 3)) == [8, 8, 10]


def test_equal_classes_are_seen_exactly_once_per_epoch():
  labels = _labels([8] * 8)
  indices = balanced.balanced_epoch(labels, 4, 16, 4, (0, 1, 5))
  assert sorted(indices.tolist()) == list(range(64))


def test_a_pure_function_of_seed_stage_epoch():
  labels = _labels([12] * 10)
  a = balanced.balanced_epoch(labels, 4, 16, 7, (0, 1, 2))
  np.testing.assert_array_equal(a, balanced.balanced_epoch(labels, 4, 16, 7, (0, 1, 2)))
  for other in ((1, 1, 2), (0, 2, 2), (0, 1, 3)):
    assert not np.array_equal(a, balanced.balanced_epoch(labels, 4, 16, 7, other))


def test_impossible_batches_are_refused():
  labels = _labels([12] * 3)
  with pytest.raises(ValueError, match="at most 3 classes"):
    balanced.balanced_epoch(labels, 2, 8, 2, (0, 1, 0))
  with pytest.raises(ValueError, match="multiple of 4"):
    balanced.balanced_epoch(labels, 4, 6, 2, (0, 1, 0))
  with pytest.raises(ValueError, match="fewer than 4 examples"):
    balanced.balanced_epoch(_labels([12, 3]), 4, 8, 2, (0, 1, 0))


def _indices(ds, n):
  return [int(x["index"]) for x in ds.take(n).as_numpy_iterator()]


def _context(num_pipelines, pipeline_id):
  return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                    input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=num_pipelines)


def test_step_indexed_resume_and_two_pipelines():
  labels = _labels([10] * 6)  # 60 examples, batch 12: 5 steps per epoch
  spec = order.TrainInputSpec(global_batch_size=12, num_views=2, seed=4, stage=1,
                              samples_per_class=3)
  whole = _indices(order.indexed_epochs(60, spec, None, labels), 12 * 12)  # 2.4 epochs
  for batch in _batches(np.array(whole), 12):
    assert sorted(collections.Counter(labels[batch].tolist()).values()) == [3] * 4
  for start in (1, 5, 7):  # mid-epoch, an epoch boundary, the second epoch
    resumed = order.TrainInputSpec(global_batch_size=12, num_views=2, seed=4, stage=1,
                                   samples_per_class=3, start_step=start)
    assert _indices(order.indexed_epochs(60, resumed, None, labels), 12 * (12 - start)) \
        == whole[12 * start:]
  # Two pipelines of 6 per step: together, each global batch is the one-pipeline batch.
  halves = [_indices(order.indexed_epochs(60, spec, _context(2, p), labels), 6 * 12)
            for p in (0, 1)]
  for step in range(12):
    joined = halves[0][6 * step:6 * step + 6] + halves[1][6 * step:6 * step + 6]
    assert sorted(joined) == sorted(whole[12 * step:12 * step + 12])


def test_sources_that_cannot_give_them_are_refused():
  source = testing.synthetic_source(n=16, classes=4)
  sources.check_balanced_batches(source, 0, 16)
  sources.check_balanced_batches(source, 4, 16)
  with pytest.raises(config_lib.ConfigError, match="needs 8 classes; synthetic has 4"):
    sources.check_balanced_batches(source, 2, 16)


def test_the_cli_trains_on_balanced_batches_and_refuses_impossible_ones(tmp_path, fake_data):
  from tests import cli  # pylint: disable=import-outside-toplevel
  args = ("--stage_1_steps=2", "--stage_2_steps=0", "--stage_2_epochs=0", "--mode=train",
          "--export_at_end=false", "--projector_examples=0", "--summary_images=2")
  run = testing.run_cli(cli.tiny_args(tmp_path / "m", fake_data, *args,
                                      "--samples_per_class=4"))
  assert run.returncode == 0, run.stderr[-2000:]
  assert "step 2/2" in run.stdout
  indivisible = cli.run_without_tensorflow(tmp_path, cli.tiny_args(
      tmp_path / "a", fake_data, *args, "--samples_per_class=3"))
  assert cli.one_error_line(indivisible) == (
      "error: --samples_per_class must be 0 or divide --batch_size=16, got 3")
  too_many = testing.run_cli(cli.tiny_args(tmp_path / "b", fake_data, *args,
                                           "--samples_per_class=1"))
  assert cli.one_error_line(too_many) == (
      "error: --samples_per_class=1: a batch of 16 needs 16 classes; fashion_mnist has 10")
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
