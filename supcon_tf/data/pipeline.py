"""tf.data pipelines fed per replica through `distribute_datasets_from_function`.

Training input is *step-indexed*: the examples and augmentations of global step k
are a pure function of (seed, stage, k). Every epoch is ordered by a seed derived
from (seed, stage, epoch), each example's augmentation seed from (seed, stage,
epoch, position), and a pipeline that starts at step k skips the positions (not the
decoded images) of the steps before it. A resumed run therefore sees the batches
an uninterrupted run would have seen (in the same order with
`InputOptions.deterministic`).

Three kinds of input share that structure:

* **indexed** sources (images in memory, image folders): every epoch is a stateless
  permutation of the example indices; input pipeline p of P takes positions p,
  p+P, ... of it, so across pipelines (hosts) every example is seen once per
  epoch. Each pipeline's epoch is truncated to whole global steps.
* **streamed** TFDS sources (e.g. imagenet2012): each pipeline reads its shard of
  the record files (`tfds.ReadConfig(input_context=...)`: files p, p+P, ...; or
  every P-th example when there are fewer files than pipelines). Every epoch
  shuffles the shard's files and, through a buffer, its examples, both seeded by
  the epoch, and takes the same number of examples on every pipeline (whole
  global steps); images are decoded only after that, and for JPEG only the crop
  (`decode_and_crop_jpeg`).
* evaluation: the split in a fixed order, sharded the same way, padded per
  pipeline to the same number of whole batches (label -1, `valid` False).

Image folders can hold undecodable files. Each such example is replaced by the
next decodable image in the folder's order (so the batch keeps its size and the
step indexing holds) and flagged `corrupt`; the trainer counts the flags, reports
them at the end of every epoch and fails past `--max_corrupt_fraction`. In
evaluation a corrupt image is left out (`valid` False) and counted.
"""

import dataclasses
import sys
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from supcon_tf.data import augment

# Attempts per example before an image folder's example falls back to zeros.
_MAX_DECODE_ATTEMPTS = 16
_AUTOTUNE = tf.data.AUTOTUNE
_no_autograph = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class TrainInputSpec:
  global_batch_size: int
  num_views: int
  seed: int
  stage: int
  start_step: int = 0
  # Emit each view's blur seed ("blur_seeds" [b, V, 2]) for `batch_random_blur`
  # on the accelerator (--defer_blur); the views are then not blurred here.
  emit_blur_seeds: bool = False


@dataclasses.dataclass(frozen=True)
class InputOptions:
  """How the pipelines run (not what they produce)."""
  deterministic: bool = True  # keep the order of parallel map/interleave outputs
  threads: int = 0  # private thread pool size (0: TensorFlow's shared pool)
  shuffle_buffer_size: int = 10000  # streamed sources: per-pipeline buffer
  report_corrupt: bool = True  # print the paths of undecodable images (once per run)

  def tf_options(self) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = self.deterministic
    options.experimental_optimization.map_parallelization = True
    if self.threads:
      options.threading.private_threadpool_size = self.threads
      options.threading.max_intra_op_parallelism = 1
    return options


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  return num_examples // global_batch_size


def _pipeline(input_context: Optional[tf.distribute.InputContext], global_batch: int):
  """(num_pipelines, pipeline_id, per-replica batch, per-pipeline batch)."""
  if input_context is None:
    return 1, 0, global_batch, global_batch
  num = input_context.num_input_pipelines
  return (num, input_context.input_pipeline_id,
          input_context.get_per_replica_batch_size(global_batch), global_batch // num)


def _epoch_key(seed, stage, epoch):
  base = tf.constant([seed, stage], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def _scalar_seed(key, salt: int):
  """A scalar int64 seed (tf.data shuffles take one) derived from a [2] key."""
  key = tf.random.experimental.stateless_fold_in(key, salt)
  return tf.random.stateless_uniform([], seed=key, minval=None, maxval=None,
                                     dtype=tf.int64)


def example_seed(seed: int, stage: int, epoch, position):
  """The augmentation seed [2] of the example at `position` of `epoch`."""
  return tf.random.experimental.stateless_fold_in(
      _epoch_key(seed, stage, epoch), tf.cast(position, tf.int64))


def _with_views(item, spec: TrainInputSpec, views_fn: Callable, payload):
  """{"views", "labels"(, "blur_seeds")} of one example from `payload`."""
  seed = example_seed(spec.seed, spec.stage, item["epoch"], item["position"])
  out = {"views": views_fn(payload, seed)}
  if spec.emit_blur_seeds:
    out["blur_seeds"] = augment.view_blur_seed(augment.split_seed(seed, spec.num_views))
  return out


def _finish(ds, per_replica: int, options: InputOptions):
  ds = ds.batch(per_replica, drop_remainder=True)
  return ds.prefetch(_AUTOTUNE).with_options(options.tf_options())


def _from_start_step(spec: TrainInputSpec, spe: int, per_pipeline_step: int,
                     epoch_fn: Callable, too_small: str):
  """`epoch_fn(epoch)` (a dataset of `spe * per_pipeline_step` elements) for the
  epochs from the one holding `spec.start_step` on, without the steps before it."""
  if spe < 1:
    raise ValueError(too_small)
  start_epoch, start_in_epoch = divmod(spec.start_step, spe)
  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_fn)
  return ds.skip(start_in_epoch * per_pipeline_step)


# ------------------------------------------------------------------ indexed sources
def _indexed_epochs(num_examples: int, spec: TrainInputSpec, input_context):
  """Infinite {"index", "position", "epoch"} of this pipeline from `spec.start_step`."""
  num_pipelines, pipeline_id, _, per_pipeline_step = _pipeline(
      input_context, spec.global_batch_size)
  spe = steps_per_epoch(num_examples, spec.global_batch_size)
  per_pipeline_epoch = spe * per_pipeline_step

  @_no_autograph
  def epoch_positions(epoch):
    # Positions of this pipeline's examples in the epoch, truncated to whole steps.
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64),
        seed=_epoch_key(spec.seed, spec.stage, epoch))
    positions = tf.range(pipeline_id, num_examples, num_pipelines, dtype=tf.int64)
    positions = positions[:per_pipeline_epoch]
    return tf.data.Dataset.from_tensor_slices({
        "index": tf.gather(perm, positions),
        "position": positions,
        "epoch": tf.fill(tf.shape(positions), epoch),
    })

  return _from_start_step(spec, spe, per_pipeline_step, epoch_positions,
                          f"{num_examples} training examples are fewer than one global "
                          f"batch of {spec.global_batch_size}")


def train_dataset(images, labels, spec: TrainInputSpec, view_kwargs: dict,
                  input_context: tf.distribute.InputContext = None,
                  options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """Infinite dataset of per-replica batches {"views": [b,V,H,W,C], "labels": [b]}.

  `images` uint8 [N, H, W, C] and `labels` int [N] are held in memory.
  """
  _, _, per_replica, _ = _pipeline(input_context, spec.global_batch_size)
  ds = _indexed_epochs(len(labels), spec, input_context)
  images_t = tf.constant(images)
  labels_t = tf.constant(labels, tf.int32)

  def views_fn(index, seed):
    return augment.train_views(tf.gather(images_t, index), seed, spec.num_views,
                               **view_kwargs)

  def load(item):
    out = _with_views(item, spec, views_fn, item["index"])
    out["labels"] = tf.gather(labels_t, item["index"])
    return out

  ds = ds.map(load, num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)
  return _finish(ds, per_replica, options)


def _first_decodable(index, num_files: int, attempt_fn: Callable, fallback):
  """A one-element dataset: `attempt_fn(i)` for the first i of index, index+1, ...
  (mod num_files) whose image decodes, with {"corrupt": 1} unless i == index;
  `fallback` if none of `_MAX_DECODE_ATTEMPTS` files decodes."""
  attempts = min(_MAX_DECODE_ATTEMPTS, num_files)
  candidates = (index + tf.range(attempts, dtype=tf.int64)) % num_files

  def attempt(candidate):
    out = attempt_fn(candidate)
    out["corrupt"] = tf.cast(candidate != index, tf.int32)
    return out

  tries = tf.data.Dataset.from_tensor_slices(candidates).map(attempt).ignore_errors()
  return tries.concatenate(tf.data.Dataset.from_tensors(fallback)).take(1)


def _report_corrupt(out, path, report):
  """Prints `path` (stderr) when `report` and the example is flagged corrupt."""
  def show():
    with tf.control_dependencies([tf.print("skipped an undecodable image:", path,
                                           output_stream=sys.stderr)]):
      return tf.identity(out["corrupt"])

  corrupt = tf.cond(tf.logical_and(report, out["corrupt"] > 0), show,
                    lambda: tf.identity(out["corrupt"]))
  return dict(out, corrupt=corrupt)


def files_train_dataset(files, labels, spec: TrainInputSpec, view_kwargs: dict,
                        channels: int,
                        input_context: tf.distribute.InputContext = None,
                        options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """`train_dataset` over image files {"views", "labels", "corrupt"}.

  Files are read and decoded (JPEG: only the crop) as they are needed. An
  undecodable file is replaced by the next decodable one in `files` (its label
  too) and its example flagged `corrupt` 1; the path is printed the first time.
  """
  _, _, per_replica, _ = _pipeline(input_context, spec.global_batch_size)
  num_files = len(labels)
  ds = _indexed_epochs(num_files, spec, input_context)
  first_epoch = spec.start_step // steps_per_epoch(num_files, spec.global_batch_size)
  files_t = tf.constant(files, tf.string)
  labels_t = tf.constant(labels, tf.int32)
  size = view_kwargs["size"]
  fallback = {"views": tf.zeros([spec.num_views, size, size, channels], tf.float32),
              "labels": tf.constant(0, tf.int32), "corrupt": tf.constant(1, tf.int32)}

  def views_fn(encoded, seed):
    return augment.train_views_encoded(encoded, seed, spec.num_views, channels=channels,
                                       **view_kwargs)

  @_no_autograph
  def load(item):
    def attempt_fn(candidate):
      encoded = tf.io.read_file(tf.gather(files_t, candidate))
      out = _with_views(item, spec, views_fn, encoded)
      out["labels"] = tf.gather(labels_t, candidate)
      return out

    example_fallback = dict(fallback)
    if spec.emit_blur_seeds:
      seed = example_seed(spec.seed, spec.stage, item["epoch"], item["position"])
      example_fallback["blur_seeds"] = augment.view_blur_seed(
          augment.split_seed(seed, spec.num_views))
    ds = _first_decodable(item["index"], num_files, attempt_fn, example_fallback)
    # Each bad path is printed once per run: in the run's first epoch.
    report = tf.logical_and(item["epoch"] == first_epoch, options.report_corrupt)
    path = tf.gather(files_t, item["index"])
    return ds.map(lambda out: _report_corrupt(out, path, report))

  ds = ds.interleave(load, cycle_length=_AUTOTUNE, block_length=1,
                     num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)
  return _finish(ds, per_replica, options)


# ------------------------------------------------------------------ streamed sources
def stream_train_dataset(records_fn: Callable, pipeline_examples: int, channels: int,
                         spec: TrainInputSpec, view_kwargs: dict,
                         input_context: tf.distribute.InputContext = None,
                         options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """`train_dataset` over a stream of encoded records {"encoded", "label"}.

  `records_fn(input_context, shuffle_seed)` gives this pipeline's shard of the
  split, its files shuffled by the scalar `shuffle_seed` (a tensor);
  `pipeline_examples` is the smallest shard size over all pipelines, so that every
  pipeline can give its whole-step share of each epoch.
  """
  num_pipelines, pipeline_id, per_replica, per_pipeline_step = _pipeline(
      input_context, spec.global_batch_size)
  spe = pipeline_examples // per_pipeline_step
  per_pipeline_epoch = spe * per_pipeline_step

  @_no_autograph
  def epoch_records(epoch):
    key = _epoch_key(spec.seed, spec.stage, epoch)
    records = records_fn(input_context, _scalar_seed(key, 0))
    records = records.shuffle(options.shuffle_buffer_size, seed=_scalar_seed(key, 1))
    records = records.take(per_pipeline_epoch).enumerate()
    # Positions unique across pipelines within the epoch.
    return records.map(lambda i, r: {
        "encoded": r["encoded"], "label": r["label"], "epoch": epoch,
        "position": i * num_pipelines + pipeline_id})

  ds = _from_start_step(spec, spe, per_pipeline_step, epoch_records,
                        f"an input pipeline's {pipeline_examples} training examples are "
                        f"fewer than its {per_pipeline_step} per step")

  def views_fn(encoded, seed):
    return augment.train_views_encoded(encoded, seed, spec.num_views, channels=channels,
                                       **view_kwargs)

  def load(item):
    out = _with_views(item, spec, views_fn, item["encoded"])
    out["labels"] = tf.cast(item["label"], tf.int32)
    return out

  ds = ds.map(load, num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)
  return _finish(ds, per_replica, options)


# ------------------------------------------------------------------ evaluation
def _padded_indices(num: int, global_batch_size: int):
  """0..num-1 padded with -1 to whole global batches."""
  padded = -(-num // global_batch_size) * global_batch_size
  return np.concatenate([np.arange(num, dtype=np.int64),
                         np.full([padded - num], -1, np.int64)])


def eval_dataset(images, labels, global_batch_size: int, eval_kwargs: dict,
                 input_context: tf.distribute.InputContext = None,
                 options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """Finite dataset of per-replica batches {"image", "labels", "valid"}.

  The split is padded (label -1, valid False) to whole global batches so that every
  replica gets a full batch at every step; metrics count only valid examples.
  """
  indices = _padded_indices(len(labels), global_batch_size)
  num_pipelines, pipeline_id, per_replica, _ = _pipeline(input_context, global_batch_size)
  images_t = tf.constant(images)
  labels_t = tf.constant(labels, tf.int32)

  def prep(index):
    valid = index >= 0
    i = tf.maximum(index, 0)
    image = augment.eval_view(tf.gather(images_t, i), **eval_kwargs)
    return {"image": tf.where(valid, image, tf.zeros_like(image)),
            "labels": tf.where(valid, tf.gather(labels_t, i), 0), "valid": valid}

  ds = tf.data.Dataset.from_tensor_slices(indices).shard(num_pipelines, pipeline_id)
  ds = ds.map(prep, num_parallel_calls=_AUTOTUNE, deterministic=True)
  return _finish(ds, per_replica, options)


def files_eval_dataset(files, labels, channels: int, global_batch_size: int,
                       eval_kwargs: dict,
                       input_context: tf.distribute.InputContext = None,
                       options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """`eval_dataset` over image files, with "corrupt": an undecodable image is
  `valid` False and `corrupt` 1."""
  indices = _padded_indices(len(labels), global_batch_size)
  num_pipelines, pipeline_id, per_replica, _ = _pipeline(input_context, global_batch_size)
  files_t = tf.constant(files, tf.string)
  labels_t = tf.constant(labels, tf.int32)
  size = eval_kwargs["size"]
  invalid = {"image": tf.zeros([size, size, channels], tf.float32),
             "labels": tf.constant(0, tf.int32), "valid": tf.constant(False),
             "corrupt": tf.constant(0, tf.int32)}

  @_no_autograph
  def load(index):
    def decode(i):
      image = augment.eval_view_encoded(tf.io.read_file(tf.gather(files_t, i)),
                                        channels=channels, **eval_kwargs)
      return {"image": image, "labels": tf.gather(labels_t, i),
              "valid": tf.constant(True), "corrupt": tf.constant(0, tf.int32)}

    real = tf.data.Dataset.from_tensors(index).filter(lambda i: i >= 0)
    real = real.map(decode).ignore_errors()
    # Padding (index -1) is invalid; a real index that did not decode is corrupt.
    fallback = dict(invalid, corrupt=tf.cast(index >= 0, tf.int32))
    ds = real.concatenate(tf.data.Dataset.from_tensors(fallback)).take(1)
    path = tf.gather(files_t, tf.maximum(index, 0))
    return ds.map(lambda out: _report_corrupt(out, path, options.report_corrupt))

  ds = tf.data.Dataset.from_tensor_slices(indices).shard(num_pipelines, pipeline_id)
  ds = ds.interleave(load, cycle_length=_AUTOTUNE, block_length=1,
                     num_parallel_calls=_AUTOTUNE, deterministic=True)
  return _finish(ds, per_replica, options)


def stream_eval_dataset(records, pipeline_batches: int, channels: int,
                        global_batch_size: int, eval_kwargs: dict,
                        input_context: tf.distribute.InputContext = None,
                        options: InputOptions = InputOptions()) -> tf.data.Dataset:
  """`eval_dataset` over this pipeline's shard of encoded `records`
  {"encoded", "label"}, padded to `pipeline_batches` per-pipeline batches (the
  same number on every pipeline)."""
  _, _, per_replica, per_pipeline = _pipeline(input_context, global_batch_size)
  size = eval_kwargs["size"]

  def prep(record):
    return {"image": augment.eval_view_encoded(record["encoded"], channels=channels,
                                               **eval_kwargs),
            "labels": tf.cast(record["label"], tf.int32), "valid": tf.constant(True)}

  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros([size, size, channels], tf.float32),
      "labels": tf.constant(0, tf.int32), "valid": tf.constant(False)}).repeat()
  ds = records.map(prep, num_parallel_calls=_AUTOTUNE, deterministic=True)
  ds = ds.concatenate(padding).take(pipeline_batches * per_pipeline)
  return _finish(ds, per_replica, options)
