"""The fused path of the SupCon loss: L_out (Eq. 2) over every non-self view.

`losses.supcon_loss` takes this path for the paper's loss — summation outside the
log, the denominator over every view but the anchor, no positives cap (the
defaults; SimCLR's NT-Xent is the same with each sample its own class) — and its
general, mask-based path for every other mode. Both compute the same numbers (the
test suite checks them against one NumPy reference); this one touches the
[anchors, global views] logits far fewer times, which is what the loss's time is
made of once the matrix product is fast:

  * 1/tau scales the anchors ([N, d]), not the logits ([N, M]).
  * The self-similarities are pushed out of the log-sum-exp by scattering N
    entries, not by building, tiling and applying [N, M] masks.
  * The log-sum-exp has its own gradient: softmax = exp(x - lse), kept from the
    forward pass, times the upstream gradient — one pass over [N, M] instead of the
    chain of max/sub/exp/sum/log/where gradients.
  * The positives' sum never touches [N, M]: for anchor view r of sample i,
    sum_{p in P(r)} z_r.z_p = z_r . (S_i - z_self(r)), where S_i is the sum of the
    views of every global sample of i's class — a [local, global] sample-level
    product with [global, d] view sums — and z_self(r) the anchor's own column.
    |P(r)| = V * (same-class samples, i included) - 1.

So the work on [N, M] is the forward product, one scatter, max, exp, sum, and in
the backward pass one scaled copy and the gradient's products: two across replicas
(anchors and gathered views are different tensors), one on a single device, where
the logits are symmetric (`_lse_of_self_products`). The products are the floor
`benchmarks/loss_benchmark.py` reports. No flags, no strategy: the caller passes
the gathered global batch. With `chunk_size`, the log-sum-exp runs in chunks of
anchor rows (`losses_chunked.py`) and the class sums come from segment sums.
"""

import tensorflow as tf

from supcon_tf import losses_chunked

# Finite stand-in for log(0) (as in losses.py): exp(_LOG_ZERO - max) is exactly 0.
_LOG_ZERO = -1e30


def _masked_exps(logits):
  """(exps, row sums, row maxima) of logits whose left-out entries hold _LOG_ZERO."""
  row_max = tf.reduce_max(logits, axis=1, keepdims=True)
  exps = tf.exp(logits - row_max)
  return exps, tf.reduce_sum(exps, axis=1), row_max


@tf.custom_gradient
def _lse_of_products(anchors, contrast, self_index):
  """Row-wise log-sum-exp of anchors @ contrast^T [N, M], leaving out the entry
  (r, self_index[r]) of each row.

  Gradient: with G = upstream * softmax over each row (0 at the left-out entry),
  d anchors = G @ contrast and d contrast = G^T @ anchors; the backward pass
  keeps only the exponentials of the forward pass.
  """
  logits = tf.matmul(anchors, contrast, transpose_b=True)
  indices = tf.stack([tf.range(tf.shape(logits)[0]), self_index], axis=1)
  logits = tf.tensor_scatter_nd_update(
      logits, indices, tf.fill(tf.shape(self_index), tf.constant(_LOG_ZERO)))
  exps, sums, row_max = _masked_exps(logits)

  def grad(upstream):
    g = exps * (upstream / sums)[:, None]
    return (tf.matmul(g, contrast),
            tf.matmul(g, anchors, transpose_a=True), None)

  return tf.math.log(sums) + row_max[:, 0], grad


@tf.custom_gradient
def _lse_of_self_products(u):
  """Row-wise log-sum-exp of u @ u^T [N, N] leaving out the diagonal.

  The one-device case, where the anchors are the contrast views themselves:
  L = u u^T is symmetric, so the gradient (G + G^T) @ u needs one product
  instead of two, and G^T comes from L without a transpose:
  G^T[i, j] = upstream[j] * exp(L[i, j] - max_j) / sum_j (each factor <= 1).
  """
  logits = tf.matmul(u, u, transpose_b=True)
  logits = tf.linalg.set_diag(logits, tf.fill(tf.shape(u)[:1], tf.constant(_LOG_ZERO)))
  exps, sums, row_max = _masked_exps(logits)

  def grad(upstream):
    scale = upstream / sums
    g_sym = (exps * scale[:, None]
             + tf.exp(logits - tf.transpose(row_max)) * scale[None, :])
    return tf.matmul(g_sym, u)

  return tf.math.log(sums) + row_max[:, 0], grad


def supcon_outside_all(anchors, global_features, num_views: int, same_class, offset,
                       temperature, scale_by_temperature: bool,
                       symmetric: bool = False, chunk_size: int = 0,
                       labels=None, global_labels=None):
  """Per-sample L_out with the denominator over every non-self view.

  Args:
    anchors: float32 [local, Va, d]: the anchor views of this replica's samples
      (all views, or view 0 only).
    global_features: float32 [global, V, d]: every view of every global sample,
      this replica's at rows offset..offset+local-1.
    num_views: V (static; a gather may leave the global shape unknown).
    same_class: bool [local, global]: sample i and global sample j share a class
      (for SimCLR: j is i itself). None with chunk_size > 0.
    offset: int32 scalar, the position of this replica's samples in the global batch.
    temperature: float32 scalar tau > 0.
    scale_by_temperature: multiply the loss by tau.
    symmetric: the anchors are every view of the global batch itself (one
      replica, all views as anchors): one product in the backward pass.
    chunk_size: C > 0: the log-sum-exp C anchor rows at a time
      (`losses_chunked.chunked_lse_of_products`) and the class sums by segment
      sums over `global_labels`, so that nothing is [local, global] or bigger.
    labels, global_labels: int32 [local] / [global] class ids or None (SimCLR);
      used only with chunk_size > 0.

  Returns:
    float32 [local]: the mean over each sample's anchor views; an anchor without
    positives contributes 0.
  """
  local = tf.shape(anchors)[0]
  num_anchor_views = anchors.shape[1]
  global_batch = tf.shape(global_features)[0]
  dim = tf.shape(anchors)[2]

  # View-major rows and columns: row v * local + i, column w * global + j.
  scaled = tf.reshape(tf.transpose(anchors, [1, 0, 2]),
                      [num_anchor_views * local, dim]) / temperature
  contrast = tf.reshape(tf.transpose(global_features, [1, 0, 2]),
                        [num_views * global_batch, dim])

  # The anchor's own column: view v of global sample offset + i.
  anchor_view = tf.repeat(tf.range(num_anchor_views), local)
  anchor_sample = tf.tile(tf.range(local), [num_anchor_views])
  self_index = anchor_view * global_batch + offset + anchor_sample
  if chunk_size > 0 and symmetric:
    lse = losses_chunked.chunked_lse_of_self_products(
        contrast * tf.math.rsqrt(temperature), chunk_size)
  elif chunk_size > 0:
    lse = losses_chunked.chunked_lse_of_products(scaled, contrast, self_index,
                                                 chunk_size)
  elif symmetric:
    # logits = u u^T with u = contrast / sqrt(tau): autodiff carries tau's part.
    lse = _lse_of_self_products(contrast * tf.math.rsqrt(temperature))
  else:
    lse = _lse_of_products(scaled, contrast, self_index)

  # Sum of the positives' logits through class sums (see the module docstring).
  if chunk_size > 0:
    class_sums, class_sizes = _class_sums_by_segments(
        global_features, labels, global_labels, offset, local)
  else:
    same = tf.cast(same_class, tf.float32)
    class_sums = tf.matmul(same, tf.reduce_sum(global_features, axis=1))  # [local, d]
    class_sizes = tf.reduce_sum(same, axis=1)
  positives_sum = tf.tile(class_sums, [num_anchor_views, 1]) - tf.gather(contrast,
                                                                           self_index)
  positive_logits = tf.reduce_sum(scaled * positives_sum, axis=1)
  num_positives = num_views * class_sizes - 1.0
  num_positives = tf.tile(num_positives, [num_anchor_views])

  has_positive = num_positives > 0
  anchor_loss = lse - positive_logits / tf.maximum(num_positives, 1.0)
  anchor_loss = tf.where(has_positive, anchor_loss, 0.0)
  if scale_by_temperature:
    anchor_loss *= temperature
  return tf.reduce_mean(tf.reshape(anchor_loss, [num_anchor_views, local]), axis=0)


def _class_sums_by_segments(global_features, labels, global_labels, offset, local):
  """([local, d] sums of the views of each anchor sample's class in the global
  batch, [local] sizes of those classes), in O(global x d): segment sums over the
  classes present, looked up by each local sample's own row of the global batch."""
  view_sums = tf.reduce_sum(global_features, axis=1)  # [global, d]
  if labels is None:  # SimCLR: each sample its own class
    return tf.slice(view_sums, [offset, 0], [local, -1]), tf.ones([local])
  classes, class_index = tf.unique(global_labels)
  num_classes = tf.size(classes)
  sums = tf.math.unsorted_segment_sum(view_sums, class_index, num_classes)
  sizes = tf.math.unsorted_segment_sum(tf.ones_like(class_index, tf.float32),
                                       class_index, num_classes)
  own = tf.slice(class_index, [offset], [local])
  return tf.gather(sums, own), tf.gather(sizes, own)
