"""The step-indexed order of the training input: which example, with which seed,
at every position of every step.

The examples and augmentations of global step k are a pure function of (seed,
stage, k). Every epoch is ordered by a seed derived from (seed, stage, epoch),
each example's augmentation seed from (seed, stage, epoch, position), and a
pipeline that starts at step k skips the positions (not the decoded images) of the
steps before it. A resumed run therefore sees the batches an uninterrupted run
would have seen. `pipeline.py` reads the records in this order; the functions
here touch no image.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from supcon_tf.data import balanced

_no_autograph = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class TrainInputSpec:
  """Which batches a stage's training input gives (`pipeline.TrainInputSpec`).

  Attributes:
    global_batch_size: examples per step over all replicas.
    num_views: V, augmented views per example.
    seed: the run's data seed.
    stage: the stage's index (stages see different orders and augmentations).
    start_step: the first step (within the stage) the input gives.
    samples_per_class: n > 0: class-balanced batches (`balanced.py`), which need
      the labels of a random-access split.
  """
  global_batch_size: int
  num_views: int
  seed: int
  stage: int
  start_step: int = 0
  samples_per_class: int = 0


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Whole global steps in `num_examples`."""
  return num_examples // global_batch_size


def layout(input_context: Optional[tf.distribute.InputContext], global_batch: int):
  """(num_pipelines, pipeline_id, per-replica batch, per-pipeline batch)."""
  if input_context is None:
    return 1, 0, global_batch, global_batch
  num = input_context.num_input_pipelines
  return (num, input_context.input_pipeline_id,
          input_context.get_per_replica_batch_size(global_batch), global_batch // num)


def epoch_key(seed, stage, epoch):
  """The [2] key of an epoch: its order and its examples' seeds derive from it."""
  base = tf.constant([seed, stage], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def scalar_seed(key, salt: int):
  """A scalar int64 seed (tf.data shuffles take one) derived from a [2] key."""
  key = tf.random.experimental.stateless_fold_in(key, salt)
  return tf.random.stateless_uniform([], seed=key, minval=None, maxval=None,
                                     dtype=tf.int64)


def example_seed(seed: int, stage: int, epoch, position):
  """The augmentation seed of one example.

  Args:
    seed: the run's data seed.
    stage: the stage's index.
    epoch: int (may be a tensor).
    position: the example's position in the epoch (unique across pipelines).

  Returns:
    int64 [2].
  """
  return tf.random.experimental.stateless_fold_in(
      epoch_key(seed, stage, epoch), tf.cast(position, tf.int64))


def from_start_step(spec: TrainInputSpec, spe: int, per_pipeline_step: int,
                    epoch_fn: Callable, too_small: str) -> tf.data.Dataset:
  """`epoch_fn(epoch)` (a dataset of `spe * per_pipeline_step` elements) for the
  epochs from the one holding `spec.start_step` on, without the steps before it.

  Raises:
    ValueError(too_small): `spe` < 1.
  """
  if spe < 1:
    raise ValueError(too_small)
  start_epoch, start_in_epoch = divmod(spec.start_step, spe)
  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_fn)
  return ds.skip(start_in_epoch * per_pipeline_step)


def indexed_epochs(num_examples: int, spec: TrainInputSpec,
                   input_context: Optional[tf.distribute.InputContext],
                   labels=None) -> tf.data.Dataset:
  """The order of random-access records: this pipeline's positions, from
  `spec.start_step` on.

  Every epoch is a stateless permutation of the example indices; input pipeline p
  of P takes positions p, p+P, ... of it (so across pipelines every example is seen
  once per epoch), truncated to whole global steps.

  Args:
    num_examples: examples of the split.
    spec: the stage's input.
    input_context: this pipeline's (None: the only pipeline).
    labels: the split's labels (needed with `spec.samples_per_class`).

  Returns:
    Infinite {"index", "position", "epoch"} (int64 scalars).

  Raises:
    ValueError: fewer examples than one global batch.
  """
  num_pipelines, pipeline_id, _, per_pipeline_step = layout(
      input_context, spec.global_batch_size)
  spe = steps_per_epoch(num_examples, spec.global_batch_size)
  per_pipeline_epoch = spe * per_pipeline_step

  @_no_autograph
  def epoch_positions(epoch):
    # Positions of this pipeline's examples in the epoch, truncated to whole steps.
    if spec.samples_per_class:  # batch s is positions [s*B, (s+1)*B) of the epoch
      perm = balanced.epoch_order(labels, spec.samples_per_class,
                                  spec.global_batch_size, spe, spec.seed, spec.stage,
                                  epoch)
    else:
      perm = tf.random.experimental.stateless_shuffle(
          tf.range(num_examples, dtype=tf.int64),
          seed=epoch_key(spec.seed, spec.stage, epoch))
    positions = tf.range(pipeline_id, num_examples, num_pipelines, dtype=tf.int64)
    positions = positions[:per_pipeline_epoch]
    return tf.data.Dataset.from_tensor_slices({
        "index": tf.gather(perm, positions),
        "position": positions,
        "epoch": tf.fill(tf.shape(positions), epoch),
    })

  return from_start_step(spec, spe, per_pipeline_step, epoch_positions,
                         f"{num_examples} training examples are fewer than one global "
                         f"batch of {spec.global_batch_size}")
