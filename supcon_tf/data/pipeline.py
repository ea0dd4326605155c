"""tf.data pipelines that read a `Source` and a frozen view spec.

One training builder (`train_dataset`) and one evaluation builder (`eval_dataset`),
fed per replica through `distribute_datasets_from_function`; they dispatch on the
kind of records the source gives (`sources/records.py`).

Training input is *step-indexed* (`order.py`): a resumed run sees the batches an
uninterrupted run would have seen (in the same order with
`InputOptions.deterministic`).

* **indexed** records (`MemoryRecords`, `FileRecords`): every epoch is a stateless
  permutation of the example indices; input pipeline p of P takes positions p,
  p+P, ... of it, so across pipelines (hosts) every example is seen once per
  epoch. Each pipeline's epoch is truncated to whole global steps.
* **streamed** records (`StreamRecords`, e.g. imagenet2012): each pipeline reads
  its shard; every epoch shuffles the shard's files and, through a buffer, its
  examples, both seeded by the epoch, and takes the same number of examples on
  every pipeline (whole global steps); images are decoded only after that, and
  for JPEG only the crop (`decode_and_crop_jpeg`).
* evaluation: the split in a fixed order, sharded the same way, padded per
  pipeline to the same number of whole batches (`valid` False).

Files can be undecodable. Each such example is replaced by the next decodable file
in the split's order (so the batch keeps its size and the step indexing holds) and
flagged `corrupt`; the trainer counts the flags, reports them at the end of every
epoch and fails past `--max_corrupt_fraction`. In evaluation a corrupt image is
left out (`valid` False) and counted.
"""

import dataclasses
import sys
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from supcon_tf.config import DataConfig
from supcon_tf.data import order
from supcon_tf.data.augment import views
# Part of this module's API (defined with the step-indexed order).
from supcon_tf.data.order import TrainInputSpec, example_seed, steps_per_epoch
from supcon_tf.data.sources import Source
from supcon_tf.data.sources.records import FileRecords, MemoryRecords, StreamRecords

# Attempts per example before a file's example falls back to zeros.
_MAX_DECODE_ATTEMPTS = 16
_AUTOTUNE = tf.data.AUTOTUNE
_no_autograph = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class InputOptions:
  """How the pipelines run (not what they produce).

  Attributes:
    deterministic: keep the order of parallel map/interleave outputs.
    threads: private thread pool size (0: TensorFlow's shared pool).
    shuffle_buffer_size: streamed sources: the per-pipeline shuffle buffer.
    report_corrupt: print the paths of undecodable images (once per run).
  """
  deterministic: bool
  threads: int
  shuffle_buffer_size: int
  report_corrupt: bool

  @classmethod
  def from_config(cls, data_config: DataConfig) -> "InputOptions":
    """The run's options (--deterministic, --input_threads, --shuffle_buffer_size);
    undecodable images are reported."""
    return cls(deterministic=data_config.deterministic,
               threads=data_config.input_threads,
               shuffle_buffer_size=data_config.shuffle_buffer_size, report_corrupt=True)

  def tf_options(self) -> tf.data.Options:
    """These options as `tf.data.Options`."""
    options = tf.data.Options()
    options.deterministic = self.deterministic
    options.experimental_optimization.map_parallelization = True
    if self.threads:
      options.threading.private_threadpool_size = self.threads
      options.threading.max_intra_op_parallelism = 1
    return options


# `eval_examples`: evaluation reports the corrupt images, not the projector.
_QUIET = InputOptions(deterministic=True, threads=0, shuffle_buffer_size=0,
                      report_corrupt=False)


def _checked(source: Source, records):
  """`records` if the pipeline can read them for `source`."""
  if not isinstance(records, (MemoryRecords, FileRecords, StreamRecords)):
    raise TypeError(f"source {source.name!r} ({type(source).__name__}) gave records of "
                    f"an unknown kind, {type(records).__name__}: the pipeline reads "
                    "MemoryRecords, FileRecords or StreamRecords (sources/records.py)")
  if source.reports_corrupt != isinstance(records, FileRecords):
    raise ValueError(f"source {source.name!r}: reports_corrupt={source.reports_corrupt} "
                     f"but its records are {type(records).__name__}; only files "
                     "(FileRecords) can be corrupt")
  return records


def _with_views(item, spec: TrainInputSpec, view: views.ViewSpec, views_fn: Callable,
                payload):
  """{"views"(, "blur_seeds")} of one example from `payload`."""
  seed = example_seed(spec.seed, spec.stage, item["epoch"], item["position"])
  out = {"views": views_fn(payload, seed)}
  if view.defer_blur:
    out["blur_seeds"] = views.train_blur_seeds(seed, spec.num_views)
  return out


def _finish(ds, per_replica: int, options: InputOptions):
  ds = ds.batch(per_replica, drop_remainder=True)
  return ds.prefetch(_AUTOTUNE).with_options(options.tf_options())


# ------------------------------------------------------------------ training
def train_dataset(source: Source, spec: TrainInputSpec, view: views.ViewSpec,
                  options: InputOptions,
                  input_context: Optional[tf.distribute.InputContext] = None
                  ) -> tf.data.Dataset:
  """The infinite training input of one input pipeline, in per-replica batches.

  Args:
    source: the data.
    spec: which batches (stage, seed, global batch, views, first step).
    view: the training view; with `view.defer_blur` the views are not blurred and
      the batches carry each view's blur seed for `ops.batch_random_blur`.
    options: how the pipeline runs.
    input_context: this pipeline's (None: the only pipeline).

  Returns:
    Batches {"views": float32 [b, V, H, W, C], "labels": int32 [b]}, plus
    "blur_seeds" int64 [b, V, 2] with `view.defer_blur` and "corrupt" int32 [b]
    (1: an undecodable file replaced) when `source.reports_corrupt`.

  Raises:
    TypeError: the source gave records of an unknown kind.
    ValueError: fewer examples than one global batch (per pipeline for streams).
  """
  num_pipelines, _, per_replica, _ = order.layout(input_context, spec.global_batch_size)
  records = _checked(source, source.train_records(num_pipelines))
  if isinstance(records, MemoryRecords):
    ds = _memory_train(records, spec, view, options, input_context)
  elif isinstance(records, FileRecords):
    ds = _files_train(records, source.num_channels, spec, view, options, input_context)
  else:
    ds = _stream_train(records, source.num_channels, spec, view, options, input_context)
  return _finish(ds, per_replica, options)


def _memory_train(records: MemoryRecords, spec, view, options, input_context):
  ds = order.indexed_epochs(len(records.labels), spec, input_context, records.labels)
  images_t = tf.constant(records.images)
  labels_t = tf.constant(records.labels, tf.int32)

  def views_fn(index, seed):
    return views.train_views(tf.gather(images_t, index), seed, spec.num_views, view)

  def load(item):
    out = _with_views(item, spec, view, views_fn, item["index"])
    out["labels"] = tf.gather(labels_t, item["index"])
    return out

  return ds.map(load, num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)


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


def _files_train(records: FileRecords, channels: int, spec, view, options,
                 input_context):
  """Files are read and decoded (JPEG: only the crop) as they are needed. An
  undecodable file is replaced by the next decodable one (its label too) and its
  example flagged `corrupt` 1; the path is printed the first time."""
  num_files = len(records.labels)
  ds = order.indexed_epochs(num_files, spec, input_context, records.labels)
  first_epoch = spec.start_step // steps_per_epoch(num_files, spec.global_batch_size)
  files_t = tf.constant(records.files, tf.string)
  labels_t = tf.constant(records.labels, tf.int32)
  fallback = {"views": tf.zeros([spec.num_views, view.size, view.size, channels],
                                tf.float32),
              "labels": tf.constant(0, tf.int32), "corrupt": tf.constant(1, tf.int32)}

  def views_fn(encoded, seed):
    return views.train_views_encoded(encoded, seed, spec.num_views, view, channels)

  @_no_autograph
  def load(item):
    def attempt_fn(candidate):
      encoded = tf.io.read_file(tf.gather(files_t, candidate))
      out = _with_views(item, spec, view, views_fn, encoded)
      out["labels"] = tf.gather(labels_t, candidate)
      return out

    example_fallback = dict(fallback)
    if view.defer_blur:
      seed = example_seed(spec.seed, spec.stage, item["epoch"], item["position"])
      example_fallback["blur_seeds"] = views.train_blur_seeds(seed, spec.num_views)
    ds = _first_decodable(item["index"], num_files, attempt_fn, example_fallback)
    # Each bad path is printed once per run: in the run's first epoch.
    report = tf.logical_and(item["epoch"] == first_epoch, options.report_corrupt)
    path = tf.gather(files_t, item["index"])
    return ds.map(lambda out: _report_corrupt(out, path, report))

  return ds.interleave(load, cycle_length=_AUTOTUNE, block_length=1,
                       num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)


def _stream_train(records: StreamRecords, channels: int, spec, view, options,
                  input_context):
  """Every pipeline takes the whole-step share of each epoch of the smallest shard."""
  if spec.samples_per_class:
    raise ValueError("--samples_per_class needs a random-access split, not a stream")
  num_pipelines, pipeline_id, _, per_pipeline_step = order.layout(
      input_context, spec.global_batch_size)
  pipeline_examples = min(records.pipeline_sizes)
  spe = pipeline_examples // per_pipeline_step
  per_pipeline_epoch = spe * per_pipeline_step

  @_no_autograph
  def epoch_records(epoch):
    key = order.epoch_key(spec.seed, spec.stage, epoch)
    shard = records.read(input_context, order.scalar_seed(key, 0))
    shard = shard.shuffle(options.shuffle_buffer_size, seed=order.scalar_seed(key, 1))
    shard = shard.take(per_pipeline_epoch).enumerate()
    # Positions unique across pipelines within the epoch.
    return shard.map(lambda i, r: {
        "encoded": r["encoded"], "label": r["label"], "epoch": epoch,
        "position": i * num_pipelines + pipeline_id})

  ds = order.from_start_step(spec, spe, per_pipeline_step, epoch_records,
                        f"an input pipeline's {pipeline_examples} training examples are "
                        f"fewer than its {per_pipeline_step} per step")

  def views_fn(encoded, seed):
    return views.train_views_encoded(encoded, seed, spec.num_views, view, channels)

  def load(item):
    out = _with_views(item, spec, view, views_fn, item["encoded"])
    out["labels"] = tf.cast(item["label"], tf.int32)
    return out

  return ds.map(load, num_parallel_calls=_AUTOTUNE, deterministic=options.deterministic)


# ------------------------------------------------------------------ evaluation
def eval_dataset(source: Source, global_batch_size: int, view: views.EvalViewSpec,
                 options: InputOptions,
                 input_context: Optional[tf.distribute.InputContext] = None
                 ) -> tf.data.Dataset:
  """The evaluation split, once, in per-replica batches.

  The split is padded (`valid` False) so that every replica gets a full
  batch at every step and every pipeline the same number of steps; metrics count
  only valid examples.

  Args:
    source: the data.
    global_batch_size: examples per step over all replicas.
    view: the evaluation view.
    options: how the pipeline runs.
    input_context: this pipeline's (None: the only pipeline).

  Returns:
    Finite batches {"image": float32 [b, H, W, C], "labels": int32 [b], "valid":
    bool [b]}, plus "corrupt" int32 [b] (1: an undecodable file, not valid) when
    `source.reports_corrupt`.

  Raises:
    TypeError: the source gave records of an unknown kind.
  """
  num_pipelines, pipeline_id, per_replica, per_pipeline = order.layout(
      input_context, global_batch_size)
  records = _checked(source, source.eval_records(num_pipelines))
  if isinstance(records, StreamRecords):
    ds = _stream_eval(records, source.num_channels, per_pipeline, view, input_context)
  else:
    indices = _padded_indices(len(records.labels), global_batch_size)
    ds = tf.data.Dataset.from_tensor_slices(indices).shard(num_pipelines, pipeline_id)
    if isinstance(records, MemoryRecords):
      ds = _memory_eval(ds, records, view)
    else:
      ds = _files_eval(ds, records, source.num_channels, view, options)
  return _finish(ds, per_replica, options)


def _padded_indices(num: int, global_batch_size: int):
  """0..num-1 padded with -1 to whole global batches."""
  padded = -(-num // global_batch_size) * global_batch_size
  return np.concatenate([np.arange(num, dtype=np.int64),
                         np.full([padded - num], -1, np.int64)])


def _memory_eval(indices, records: MemoryRecords, view):
  images_t = tf.constant(records.images)
  labels_t = tf.constant(records.labels, tf.int32)

  def prep(index):
    valid = index >= 0
    i = tf.maximum(index, 0)
    image = views.eval_view(tf.gather(images_t, i), view)
    return {"image": tf.where(valid, image, tf.zeros_like(image)),
            "labels": tf.where(valid, tf.gather(labels_t, i), 0), "valid": valid}

  return indices.map(prep, num_parallel_calls=_AUTOTUNE, deterministic=True)


def _files_eval(indices, records: FileRecords, channels: int, view, options):
  """An undecodable image is `valid` False and `corrupt` 1."""
  files_t = tf.constant(records.files, tf.string)
  labels_t = tf.constant(records.labels, tf.int32)
  invalid = {"image": tf.zeros([view.size, view.size, channels], tf.float32),
             "labels": tf.constant(0, tf.int32), "valid": tf.constant(False),
             "corrupt": tf.constant(0, tf.int32)}

  @_no_autograph
  def load(index):
    def decode(i):
      image = views.eval_view_encoded(tf.io.read_file(tf.gather(files_t, i)), view,
                                      channels)
      return {"image": image, "labels": tf.gather(labels_t, i),
              "valid": tf.constant(True), "corrupt": tf.constant(0, tf.int32)}

    real = tf.data.Dataset.from_tensors(index).filter(lambda i: i >= 0)
    real = real.map(decode).ignore_errors()
    # Padding (index -1) is invalid; a real index that did not decode is corrupt.
    fallback = dict(invalid, corrupt=tf.cast(index >= 0, tf.int32))
    ds = real.concatenate(tf.data.Dataset.from_tensors(fallback)).take(1)
    path = tf.gather(files_t, tf.maximum(index, 0))
    return ds.map(lambda out: _report_corrupt(out, path, options.report_corrupt))

  return indices.interleave(load, cycle_length=_AUTOTUNE, block_length=1,
                            num_parallel_calls=_AUTOTUNE, deterministic=True)


def _stream_eval(records: StreamRecords, channels: int, per_pipeline: int, view,
                 input_context):
  """This pipeline's shard, padded to as many batches as the largest shard needs."""
  pipeline_batches = -(-max(records.pipeline_sizes) // per_pipeline)

  def prep(record):
    return {"image": views.eval_view_encoded(record["encoded"], view, channels),
            "labels": tf.cast(record["label"], tf.int32), "valid": tf.constant(True)}

  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros([view.size, view.size, channels], tf.float32),
      "labels": tf.constant(0, tf.int32), "valid": tf.constant(False)}).repeat()
  ds = records.read(input_context, None).map(prep, num_parallel_calls=_AUTOTUNE,
                                             deterministic=True)
  return ds.concatenate(padding).take(pipeline_batches * per_pipeline)


def eval_examples(source: Source, num: int, view: views.EvalViewSpec
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """The first evaluation examples (e.g. for the projector), quiet about corrupt
  images (evaluation reports them).

  Args:
    source: the data.
    num: how many (at most the split's size).
    view: the evaluation view.

  Returns:
    (images float32 [n, H, W, C], labels int32 [n]).
  """
  num = min(num, source.num_eval)
  if num <= 0:
    return (np.zeros((0, view.size, view.size, source.num_channels), np.float32),
            np.zeros((0,), np.int32))
  images, labels = [], []
  for batch in eval_dataset(source, min(num, 256), view, _QUIET):
    valid = batch["valid"].numpy()
    images.append(batch["image"].numpy()[valid])
    labels.append(batch["labels"].numpy()[valid])
    if sum(len(l) for l in labels) >= num:
      break
  return np.concatenate(images)[:num], np.concatenate(labels)[:num]
