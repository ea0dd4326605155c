"""tf.data pipelines fed per replica through `distribute_datasets_from_function`.

Training input is *step-indexed*: the examples and augmentations of global step k
are a pure function of (seed, stage, k). Every epoch is a stateless permutation
seeded by (seed, stage, epoch), each example's augmentation seed is derived from
(seed, stage, epoch, position), and a pipeline that starts at step k skips the
indices (not the images) of the steps before it. A resumed run therefore sees
exactly the batches an uninterrupted run would have seen.

Sharding: input pipeline p of P takes positions p, p+P, ... of each epoch's
permutation, so across pipelines every example is seen once per epoch.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from supcon_tf.data import augment


@dataclasses.dataclass(frozen=True)
class TrainInputSpec:
  global_batch_size: int
  num_views: int
  seed: int
  stage: int
  start_step: int = 0


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  return num_examples // global_batch_size


def _epoch_seed(seed, stage, epoch):
  base = tf.constant([seed, stage], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, epoch)


def train_dataset(images, labels, spec: TrainInputSpec, view_kwargs: dict,
                  input_context: tf.distribute.InputContext = None) -> tf.data.Dataset:
  """Infinite dataset of per-replica batches {"views": [b,V,H,W,C], "labels": [b]}.

  `images` uint8 [N, H, W, C] and `labels` int [N] are held in memory.
  """
  num_examples = len(labels)
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  per_replica = (input_context.get_per_replica_batch_size(spec.global_batch_size)
                 if input_context else spec.global_batch_size)
  per_pipeline_step = spec.global_batch_size // num_pipelines
  spe = steps_per_epoch(num_examples, spec.global_batch_size)
  if spe < 1:
    raise ValueError(f"{num_examples} training examples are fewer than one global "
                     f"batch of {spec.global_batch_size}")
  start_epoch, start_in_epoch = divmod(spec.start_step, spe)
  per_pipeline_epoch = spe * per_pipeline_step

  images_t = tf.constant(images)
  labels_t = tf.constant(labels, tf.int32)

  def epoch_positions(epoch):
    # Positions of this pipeline's examples in the epoch, truncated to whole steps.
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=_epoch_seed(spec.seed, spec.stage, epoch))
    positions = tf.range(pipeline_id, num_examples, num_pipelines, dtype=tf.int64)
    positions = positions[:per_pipeline_epoch]
    return tf.data.Dataset.from_tensor_slices({
        "index": tf.gather(perm, positions),
        "position": positions,
        "epoch": tf.fill(tf.shape(positions), epoch),
    })

  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_positions)
  ds = ds.skip(start_in_epoch * per_pipeline_step)

  def load(item):
    seed = tf.random.experimental.stateless_fold_in(
        _epoch_seed(spec.seed, spec.stage, item["epoch"]), item["position"])
    image = tf.gather(images_t, item["index"])
    views = augment.train_views(image, seed, spec.num_views, **view_kwargs)
    return {"views": views, "labels": tf.gather(labels_t, item["index"])}

  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(per_replica, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def eval_dataset(images, labels, global_batch_size: int, eval_kwargs: dict,
                 input_context: tf.distribute.InputContext = None) -> tf.data.Dataset:
  """Finite dataset of per-replica batches {"image", "labels", "valid"}.

  The split is padded (label -1, valid False) to whole global batches so that every
  replica gets a full batch at every step; metrics count only valid examples.
  """
  num = len(labels)
  padded = -(-num // global_batch_size) * global_batch_size
  pad = padded - num
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels.astype(np.int32), np.full([pad], -1, np.int32)])
  ds = tf.data.Dataset.from_tensor_slices({"image": images, "labels": labels})
  per_replica = global_batch_size
  if input_context:
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)

  def prep(item):
    return {"image": augment.eval_view(item["image"], **eval_kwargs),
            "labels": tf.maximum(item["labels"], 0),
            "valid": item["labels"] >= 0}

  ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
