"""The exact, memory-bounded SupCon loss: anchor rows in chunks, recomputed backward.

The plain loss holds the [anchors, contrast columns] logits and masks (and, for the
gradient, as many more) at once: with a global batch of 32,768 samples x 2 views
that is 4 GiB per float32 matrix. `chunked_row_losses` computes the same per-row
losses (`losses_general.anchor_row_losses`) C rows at a time:

  * forward: a `tf.while_loop` over the chunks; each iteration builds its chunk's
    [C, columns] logits and masks, reduces them to C losses and drops them
    (`parallel_iterations=1`, so one chunk is alive at a time);
  * backward (`tf.custom_gradient`): a second loop recomputes each chunk's losses
    under a nested `GradientTape` and takes their vector-Jacobian product with the
    chunk's upstream gradient: the chunk's anchor gradient [C, d] is kept, the
    contrast gradient [columns, d] is summed over the chunks.

Nothing of size [anchors, columns] exists in either pass, and the gradient is the
exact gradient of the same function (recomputation, not approximation), in every
mode of the general path. The rows are padded to a whole number of chunks (so that
every chunk has the static shape [C, d], which XLA needs); padding rows belong to
no sample, and their upstream gradient is 0.

The paper's loss (L_out, denominator over all views, no cap, no memory) keeps the
fused path's shape (`losses_fused.py`): only its log-sum-exp touches [n, M], so only
that is chunked, with an analytic backward pass from the saved log-sum-exps
(`chunked_lse_of_products`; on one device `chunked_lse_of_self_products`, which
uses the symmetry of u u^T for one product per chunk instead of two). No flags,
no strategy.
"""

import functools

import tensorflow as tf

from supcon_tf import losses_general


def _chunk_rows(x, i, chunk: int):
  """Rows [i * chunk, (i + 1) * chunk) of the padded `x` ([C] or [C, d]), static shape."""
  begin = [i * chunk] + [0] * (x.shape.rank - 1)
  out = tf.slice(x, begin, [chunk] + [-1] * (x.shape.rank - 1))
  out.set_shape([chunk] + x.shape[1:].as_list())
  return out


def _chunk_loop(num_chunks, body, initial):
  """`body(i, *state)` for i in [0, num_chunks), one chunk alive at a time."""
  return tf.while_loop(lambda i, *_: i < num_chunks, body, (0,) + initial,
                       parallel_iterations=1)[1:]


def chunked_row_losses(anchors, anchor_sample, anchor_view, anchor_label, contrast,
                       chunk_size: int, **row_kwargs):
  """`losses_general.anchor_row_losses`, C anchor rows at a time.

  Args:
    anchors: float32 [n, d] anchor rows, divided by tau (differentiable).
    anchor_sample, anchor_view, anchor_label: the rows' int32 [n] metadata
      (anchor_label may be None), as in `anchor_row_losses`.
    contrast: float32 [V * G, d] contrast views (differentiable).
    chunk_size: C > 0, rows per chunk.
    **row_kwargs: the other arguments of `anchor_row_losses` (global labels,
      views, memory, modes); tensors among them are constants here.

  Returns:
    float32 [n]: the rows' losses, with the exact gradient w.r.t. anchors and
    contrast.
  """
  chunk = int(chunk_size)
  n = tf.shape(anchors)[0]
  num_chunks = (n + chunk - 1) // chunk
  pad = num_chunks * chunk - n
  sample = tf.pad(anchor_sample, [[0, pad]], constant_values=-1)
  view = tf.pad(anchor_view, [[0, pad]])
  label = None if anchor_label is None else tf.pad(anchor_label, [[0, pad]])

  rows = functools.partial(_chunk_rows, chunk=chunk)

  def chunk_losses(a, i, contrast):
    return losses_general.anchor_row_losses(
        a, rows(sample, i), rows(view, i), None if label is None else rows(label, i),
        contrast, **row_kwargs)

  loop = functools.partial(_chunk_loop, num_chunks)

  @tf.custom_gradient
  def row_losses(anchors, contrast):
    padded = tf.pad(anchors, [[0, pad], [0, 0]])

    def forward(i, out):
      return i + 1, out.write(i, chunk_losses(rows(padded, i), i, contrast))

    out, = loop(forward, (tf.TensorArray(tf.float32, size=num_chunks,
                                         element_shape=[chunk]),))
    losses = tf.reshape(out.stack(), [-1])[:n]

    def grad(upstream):
      upstream = tf.pad(upstream, [[0, pad]])

      def backward(i, d_anchors, d_contrast):
        a = rows(padded, i)
        with tf.GradientTape() as tape:
          tape.watch([a, contrast])
          chunk_out = chunk_losses(a, i, contrast)
        d_a, d_c = tape.gradient(chunk_out, [a, contrast],
                                 output_gradients=rows(upstream, i))
        return i + 1, d_anchors.write(i, d_a), d_contrast + d_c

      d_anchors, d_contrast = loop(backward, (
          tf.TensorArray(tf.float32, size=num_chunks,
                         element_shape=[chunk, anchors.shape[1]]),
          tf.zeros_like(contrast)))
      d_anchors = tf.reshape(d_anchors.stack(), [-1, tf.shape(anchors)[1]])[:n]
      return d_anchors, d_contrast

    return losses, grad

  return row_losses(anchors, contrast)


def chunked_lse_of_products(anchors, contrast, self_index, chunk_size: int):
  """Row-wise log-sum-exp of anchors @ contrast^T leaving out (r, self_index[r]),
  C rows at a time: `losses_fused._lse_of_products` without the [n, M] logits.

  The backward pass recomputes each chunk's logits and uses the saved
  log-sum-exps: the softmax is exp(logits - lse), so G = upstream * softmax needs
  no second reduction; d anchors = G @ contrast, d contrast += G^T @ anchors.

  Args:
    anchors: float32 [n, d], divided by tau.
    contrast: float32 [M, d].
    self_index: int32 [n]: the column left out of each row.
    chunk_size: C > 0.

  Returns:
    float32 [n].
  """
  chunk = int(chunk_size)
  n = tf.shape(anchors)[0]
  num_chunks = (n + chunk - 1) // chunk
  pad = num_chunks * chunk - n
  # Padding rows leave out column 0 like any row; their upstream gradient is 0.
  self_index = tf.pad(self_index, [[0, pad]])
  ones = tf.ones([chunk], tf.int32)

  rows = functools.partial(_chunk_rows, chunk=chunk)

  def chunk_logits(a, i, contrast):
    logits = tf.matmul(a, contrast, transpose_b=True)
    indices = tf.stack([tf.range(chunk), rows(self_index, i)], axis=1)
    return tf.tensor_scatter_nd_update(
        logits, indices, tf.cast(ones, tf.float32) * losses_general._LOG_ZERO)  # pylint: disable=protected-access

  loop = functools.partial(_chunk_loop, num_chunks)

  @tf.custom_gradient
  def lse(anchors, contrast):
    padded = tf.pad(anchors, [[0, pad], [0, 0]])

    def forward(i, out):
      return i + 1, out.write(i, tf.reduce_logsumexp(
          chunk_logits(rows(padded, i), i, contrast), axis=1))

    out, = loop(forward, (tf.TensorArray(tf.float32, size=num_chunks,
                                         element_shape=[chunk]),))
    padded_lse = tf.reshape(out.stack(), [-1])

    def grad(upstream):
      upstream = tf.pad(upstream, [[0, pad]])

      def backward(i, d_anchors, d_contrast):
        a = rows(padded, i)
        g = tf.exp(chunk_logits(a, i, contrast) - rows(padded_lse, i)[:, None]) * (
            rows(upstream, i)[:, None])
        return (i + 1, d_anchors.write(i, tf.matmul(g, contrast)),
                d_contrast + tf.matmul(g, a, transpose_a=True))

      d_anchors, d_contrast = loop(backward, (
          tf.TensorArray(tf.float32, size=num_chunks,
                         element_shape=[chunk, anchors.shape[1]]),
          tf.zeros_like(contrast)))
      d_anchors = tf.reshape(d_anchors.stack(), [-1, tf.shape(anchors)[1]])[:n]
      return d_anchors, d_contrast

    return padded_lse[:n], grad

  return lse(anchors, contrast)


def chunked_lse_of_self_products(u, chunk_size: int):
  """Row-wise log-sum-exp of u @ u^T leaving out the diagonal, C rows at a time:
  `losses_fused._lse_of_self_products` (one device, every view an anchor)
  without the [n, n] logits.

  L is symmetric, so rows i of G^T are exp(L[i, :] - lse[None, :]) * upstream[None, :]
  (every row's lse is saved, each factor <= 1): the backward pass recomputes a
  chunk's logits once and gets d u_i = (G_i + G^T_i) @ u from one product.

  Args:
    u: float32 [n, d]: the views divided by sqrt(tau).
    chunk_size: C > 0.

  Returns:
    float32 [n].
  """
  chunk = int(chunk_size)
  n = tf.shape(u)[0]
  num_chunks = (n + chunk - 1) // chunk
  pad = num_chunks * chunk - n

  rows = functools.partial(_chunk_rows, chunk=chunk)

  def chunk_logits(u_rows, i, u):
    # Padding rows (zeros, past the end) leave out column n - 1: any column will do.
    self_index = tf.minimum(i * chunk + tf.range(chunk), n - 1)
    logits = tf.matmul(u_rows, u, transpose_b=True)
    return tf.tensor_scatter_nd_update(
        logits, tf.stack([tf.range(chunk), self_index], axis=1),
        tf.fill([chunk], tf.constant(losses_general._LOG_ZERO)))  # pylint: disable=protected-access

  loop = functools.partial(_chunk_loop, num_chunks)

  @tf.custom_gradient
  def lse(u):
    padded = tf.pad(u, [[0, pad], [0, 0]])

    def forward(i, out):
      return i + 1, out.write(i, tf.reduce_logsumexp(
          chunk_logits(rows(padded, i), i, u), axis=1))

    out, = loop(forward, (tf.TensorArray(tf.float32, size=num_chunks,
                                         element_shape=[chunk]),))
    padded_lse = tf.reshape(out.stack(), [-1])
    row_lse = padded_lse[:n]

    def grad(upstream):
      padded_up = tf.pad(upstream, [[0, pad]])

      def backward(i, d_u):
        logits = chunk_logits(rows(padded, i), i, u)
        g_sym = (tf.exp(logits - rows(padded_lse, i)[:, None]) * rows(padded_up, i)[:, None]
                 + tf.exp(logits - row_lse[None, :]) * upstream[None, :])
        return i + 1, d_u.write(i, tf.matmul(g_sym, u))

      d_u, = loop(backward, (tf.TensorArray(
          tf.float32, size=num_chunks, element_shape=[chunk, u.shape[1]]),))
      return tf.reshape(d_u.stack(), [-1, tf.shape(u)[1]])[:n]

    return row_lse, grad

  return lse(u)
