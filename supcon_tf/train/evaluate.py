"""Evaluation: top-1/top-5 of the classifier on the test split, on every strategy.

The split is padded to whole global batches (see `data/pipeline.py`); only valid
examples count. A classifier no cross-entropy stage has trained gets no number, and
undecodable images are left out, counted and bounded by --max_corrupt_fraction.
"""

import time
from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf.data import pipeline
from supcon_tf.errors import CorruptDataError


def top_k_hits(logits, labels, k: int):
  """1.0 where the label's logit is among the k largest, 0.0 elsewhere.

  A tie never counts as a hit (unlike `tf.math.in_top_k`): every other class
  scoring at least as high as the label takes a rank above it. A non-finite label
  logit is a miss.

  Args:
    logits: [batch, classes].
    labels: int [batch].
    k: how many of the largest logits count.

  Returns:
    float32 [batch].
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int32)
  true = tf.gather(logits, labels[:, None], batch_dims=1)  # [batch, 1]
  above = tf.reduce_sum(tf.cast(logits >= true, tf.int32), axis=1) - 1  # not itself
  hit = tf.logical_and(above < k, tf.math.is_finite(true[:, 0]))
  return tf.cast(hit, tf.float32)


def classifier_accuracy(model, strategy: tf.distribute.Strategy, source, eval_view,
                        cfg: config_lib.Config, options: pipeline.InputOptions,
                        log: Callable[[str], None]) -> Dict[str, float]:
  """Top-1/top-k (k = min(5, classes)) of `model`'s logits on the test split.

  Args:
    model: the SupConModel (its current variables).
    strategy: the strategy it was built under.
    source: the data source.
    eval_view: the evaluation view spec.
    cfg: the run's config (eval batch, --max_corrupt_fraction).
    options: how the input pipeline runs.
    log: prints a line for the user.

  Returns:
    {"top_1", "top_5", "num_examples", "seconds"} (+ "corrupt_images" for sources
    that report undecodable images).

  Raises:
    CorruptDataError: too many undecodable images.
    ValueError: the test split is empty.
  """

  def dataset_fn(input_context):
    return pipeline.eval_dataset(source, cfg.runtime.eval_batch_size, eval_view,
                                 options, input_context)

  dist = strategy.distribute_datasets_from_function(dataset_fn)
  k = min(5, source.num_classes)

  def replica_fn(batch):
    logits = tf.cast(model(batch["image"], training=False)["logits"], tf.float32)
    y, valid = batch["labels"], tf.cast(batch["valid"], tf.float32)
    top1 = tf.reduce_sum(top_k_hits(logits, y, 1) * valid)
    topk = tf.reduce_sum(top_k_hits(logits, y, k) * valid)
    corrupt = (tf.reduce_sum(tf.cast(batch["corrupt"], tf.float32))
               if "corrupt" in batch else tf.constant(0.0))
    return tf.stack([top1, topk, tf.reduce_sum(valid), corrupt])

  @tf.function
  def eval_step(batch):
    out = strategy.run(replica_fn, args=(batch,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

  totals = np.zeros(4)
  t0 = time.time()
  for batch in dist:
    totals += eval_step(batch).numpy()
  corrupt = int(totals[3])
  if corrupt:
    seen = int(totals[2]) + corrupt
    log(f"evaluation: skipped {corrupt} undecodable image(s) of {seen} "
        f"({100.0 * corrupt / seen:.2f}%)")
    if corrupt > cfg.data.max_corrupt_fraction * seen:
      raise CorruptDataError(
          f"{corrupt} of {seen} evaluation images do not decode, more than "
          f"--max_corrupt_fraction={cfg.data.max_corrupt_fraction:g}")
  if totals[2] == 0:
    raise ValueError("the test split is empty")
  result = {"top_1": totals[0] / totals[2], "top_5": totals[1] / totals[2],
            "num_examples": int(totals[2]), "seconds": time.time() - t0}
  if source.reports_corrupt:
    result["corrupt_images"] = corrupt
  return result
