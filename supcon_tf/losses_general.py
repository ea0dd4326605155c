"""The general (mask-based) path of the SupCon loss, on a block of anchor rows.

`losses.supcon_loss` takes this path for every mode but the fused one (L_out with
the denominator over all views and no cap, `losses_fused.py`), and for every mode
when a memory queue is given. `anchor_row_losses` computes the loss of any block
of anchor rows against every contrast column: the views of the global batch,
view-major, then the K memory entries. The block is every anchor row in the plain
computation, one chunk of rows in the chunked one (`losses_chunked.py`), so both
share one definition of the modes; each row only needs its own sample index, view
and class id, and no tensor bigger than [rows, columns] is built.

Column roles for an anchor (view a of global sample i):
  * self: view a of sample i (never a positive nor a negative);
  * positives: the other views of i, every view of the kept same-class samples
    (all, or the first cap // views of them in global order), and the valid memory
    entries of i's class (with labels);
  * negatives: every view of the samples of other classes, and the other valid
    memory entries (all of them without labels);
  * capped-out same-class samples and invalid memory entries: neither.

No flags, no strategy: the caller passes the gathered global batch.
"""

from typing import Optional

import tensorflow as tf

from supcon_tf.enums import DenominatorMode, SummationLocation

# Finite stand-in for log(0) (as in losses.py): no inf - inf or 0 * inf anywhere.
_LOG_ZERO = -1e30


def _masked_logsumexp(x, mask, axis):
  return tf.reduce_logsumexp(tf.where(mask, x, _LOG_ZERO), axis=axis)


def anchor_row_losses(anchors, anchor_sample, anchor_view, anchor_label,
                      contrast, global_labels, num_views: int,
                      memory_features: Optional[tf.Tensor] = None,
                      memory_labels: Optional[tf.Tensor] = None,
                      memory_valid: Optional[tf.Tensor] = None, *,
                      summation: SummationLocation,
                      denominator: DenominatorMode,
                      positives_cap: int):
  """Per-anchor-row losses (before any temperature scaling of the loss).

  Args:
    anchors: float32 [n, d]: the anchor rows, already divided by tau.
    anchor_sample: int32 [n]: each row's sample index in the global batch (a
      value matching no sample, e.g. -1, for padding rows).
    anchor_view: int32 [n]: each row's view.
    anchor_label: int32 [n] class ids, or None (SimCLR: each sample its class).
    contrast: float32 [V * G, d]: every view of the global batch, view-major
      (column w * G + j is view w of sample j).
    global_labels: int32 [G] class ids, or None (together with anchor_label).
    num_views: V (static).
    memory_features: None or float32 [K, d]: extra contrast columns (constants).
    memory_labels: None or int32 [K] (used only with labels).
    memory_valid: bool [K] with memory_features.
    summation: outside (Eq. 2) or inside (Eq. 3).
    denominator: all, one_positive or only_negatives.
    positives_cap: -1, or the cap (a multiple of V; no memory with a cap).

  Returns:
    float32 [n]: the loss of each row; 0 for a row without positives (or, with
    only_negatives, without negatives).
  """
  global_batch = tf.shape(contrast)[0] // num_views
  logits = tf.matmul(anchors, contrast, transpose_b=True)

  # Sample-level masks [n, G].
  is_self_sample = anchor_sample[:, None] == tf.range(global_batch)[None, :]
  if anchor_label is None:
    same_class = is_self_sample
  else:
    same_class = anchor_label[:, None] == global_labels[None, :]
  kept_same = same_class
  if positives_cap >= 0:
    # Keep the first cap // views other samples of the class in global order.
    other_same = tf.logical_and(same_class, tf.logical_not(is_self_sample))
    rank = tf.cumsum(tf.cast(other_same, tf.int32), axis=1)
    kept_other = tf.logical_and(other_same, rank <= positives_cap // num_views)
    kept_same = tf.logical_or(kept_other, is_self_sample)

  # View-level masks [n, V * G].
  tile = [1, num_views]
  contrast_view = tf.repeat(tf.range(num_views), global_batch)
  same_view = anchor_view[:, None] == contrast_view[None, :]
  is_self = tf.logical_and(tf.tile(is_self_sample, tile), same_view)
  positives = tf.logical_and(tf.tile(kept_same, tile), tf.logical_not(is_self))
  negatives = tf.logical_not(tf.tile(same_class, tile))

  if memory_features is not None:
    # The K memory entries as extra columns [n, K].
    valid = tf.broadcast_to(memory_valid[None, :],
                            [tf.shape(anchors)[0], tf.shape(memory_valid)[0]])
    if anchor_label is None:
      memory_positive = tf.zeros_like(valid)
    else:
      memory_positive = tf.logical_and(
          valid, anchor_label[:, None] == memory_labels[None, :])
    memory_negative = tf.logical_and(valid, tf.logical_not(memory_positive))
    logits = tf.concat(
        [logits, tf.matmul(anchors, memory_features, transpose_b=True)], axis=1)
    positives = tf.concat([positives, memory_positive], axis=1)
    negatives = tf.concat([negatives, memory_negative], axis=1)

  num_positives = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)

  # log of the softmax denominator for each (anchor, positive) pair.
  if denominator == DenominatorMode.ALL:
    log_denom = _masked_logsumexp(logits, tf.logical_or(positives, negatives), 1)[:, None]
    has_denom = tf.ones_like(num_positives, tf.bool)
  else:
    log_neg = _masked_logsumexp(logits, negatives, 1)[:, None]
    if denominator == DenominatorMode.ONE_POSITIVE:
      # log(exp(l_ip) + sum_n exp(l_in)), stably.
      log_denom = tf.reduce_logsumexp(
          tf.stack([logits, tf.broadcast_to(log_neg, tf.shape(logits))]), axis=0)
      has_denom = tf.ones_like(num_positives, tf.bool)
    else:
      log_denom = log_neg
      has_denom = tf.reduce_any(negatives, axis=1)
  log_prob = logits - log_denom  # log p_ip for every column; used only on positives

  safe_num_positives = tf.maximum(num_positives, 1.0)
  if summation == SummationLocation.OUTSIDE:
    anchor_loss = -tf.reduce_sum(tf.where(positives, log_prob, 0.0), axis=1) / (
        safe_num_positives)
  else:
    anchor_loss = -(_masked_logsumexp(log_prob, positives, 1) -
                    tf.math.log(safe_num_positives))
  valid_row = tf.logical_and(num_positives > 0, has_denom)
  return tf.where(valid_row, anchor_loss, 0.0)
