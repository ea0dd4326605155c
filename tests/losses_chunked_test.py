"""Tests for the chunked loss (`supcon_loss(..., chunk_size=C)`, losses_chunked.py).

The chunked loss must give the plain loss's per-sample values and gradients in
every mode (with the memory queue too, single device and on 2 replicas), and must
never build a tensor of the size of the [anchor rows, contrast columns] logits:
checked on the op output shapes of the traced graph, loops included.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import losses
from tests import testing
from tests.losses_memory_test import reference_with_memory
from tests.losses_test import reference_supcon

LABELS = np.array([2, 0, 1, 0, 2, 0, 3, 1, 0, 2], np.int32)  # class 3: one sample


def _unit(shape, seed):
  x = np.random.default_rng(seed).normal(size=shape)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _memory(k=9, dim=6):
  return losses.Memory(tf.constant(_unit((k, dim), 11)),
                       tf.constant(np.arange(k, dtype=np.int32) % 5),
                       tf.constant(np.arange(k) % 4 != 1))


def _loss_and_grad(x, labels, **kwargs):
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    per_sample = losses.supcon_loss(x, labels, **kwargs)
    # Unequal weights, so that every row's upstream gradient differs.
    total = tf.reduce_sum(per_sample * tf.range(1.0, 1.0 + x.shape[0]))
  return per_sample.numpy(), tape.gradient(total, x).numpy()


_GRID = [
    c for c in itertools.product(
        ("all_views", "one_view"), ("outside", "inside"),
        ("all", "one_positive", "only_negatives"), (-1, 2), (True, False),
        (False, True))
    if not (c[3] >= 0 and c[5])  # no cap with a memory
]


@pytest.mark.parametrize("contrast_mode,summation,denominator,cap,use_labels,memory",
                         _GRID)
def test_chunked_equals_plain_on_grid(contrast_mode, summation, denominator, cap,
                                      use_labels, memory):
  x = _unit((10, 2, 6), seed=len(contrast_mode) + len(denominator) + cap)
  labels = LABELS if use_labels else None
  kwargs = dict(temperature=0.25, contrast_mode=contrast_mode, summation=summation,
                denominator=denominator, positives_cap=cap,
                memory=_memory() if memory else None)
  want, want_grad = _loss_and_grad(x, labels, **kwargs)
  # 7 divides neither 20 (all views) nor 10 (one view) anchor rows; 1: one row each.
  for chunk in (7, 1):
    got, got_grad = _loss_and_grad(x, labels, chunk_size=chunk, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
  # And both against the NumPy references.
  if memory:
    mem = kwargs.pop("memory")
    ref = reference_with_memory(x, labels, mem.features.numpy(), mem.labels.numpy(),
                                mem.valid.numpy(), **{k: v for k, v in kwargs.items()
                                                      if k != "positives_cap"})
  else:
    kwargs.pop("memory")
    ref = reference_supcon(x, labels, **kwargs)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_memory", [False, True])  # fused / general path
def test_chunked_in_tf_function_with_variable_temperature(with_memory):
  # Inside tf.function, with a temperature variable: its gradient matches too.
  x = tf.constant(_unit((10, 3, 6), seed=3))
  tau = tf.Variable(0.3)
  memory = _memory() if with_memory else None

  @tf.function
  def loss_and_grads(chunk_size):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_mean(losses.supcon_loss(
          x, LABELS, temperature=tau, chunk_size=chunk_size, memory=memory))
    return (loss,) + tuple(tape.gradient(loss, [x, tau]))

  plain = [t.numpy() for t in loss_and_grads(0)]
  chunked = [t.numpy() for t in loss_and_grads(4)]
  for p, c in zip(plain, chunked):
    np.testing.assert_allclose(c, p, rtol=1e-5, atol=1e-6)


def test_chunk_at_least_the_rows_is_plain_and_bad_chunk_sizes_raise():
  x = _unit((10, 2, 6), seed=5)
  plain = losses.supcon_loss(x, LABELS).numpy()
  np.testing.assert_array_equal(losses.supcon_loss(x, LABELS, chunk_size=20).numpy(),
                                plain)
  for bad in (-1, 2.5, True):
    with pytest.raises(ValueError, match="chunk_size must be an int >= 0"):
      losses.supcon_loss(x, LABELS, chunk_size=bad)


def _graph_shapes(concrete):
  """Static shapes of every op output of a concrete function, nested graphs too."""
  shapes, stack, seen = [], [concrete.graph], set()
  while stack:
    graph = stack.pop()
    for op in graph.get_operations():
      shapes += [o.shape for o in op.outputs]
    for name, fn in graph._functions.items():  # pylint: disable=protected-access
      if name not in seen and getattr(fn, "graph", None) is not None:
        seen.add(name)
        stack.append(fn.graph)
  return shapes


@pytest.mark.parametrize("contrast_mode,denominator,with_memory", [
    ("all_views", "one_positive", True), ("one_view", "one_positive", True),
    ("all_views", "all", False),  # the fused path's chunked log-sum-exp
    ("one_view", "all", False)])
def test_no_full_logits_tensor_in_chunked_graph(contrast_mode, denominator,
                                                with_memory):
  x = tf.constant(_unit((10, 2, 6), seed=6))
  memory = _memory() if with_memory else None
  rows = 20 if contrast_mode == "all_views" else 10
  columns = 20 + (9 if with_memory else 0)  # views of the batch + memory entries

  def traced(chunk_size):
    @tf.function
    def loss_and_grad(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(losses.supcon_loss(
            x, LABELS, contrast_mode=contrast_mode, denominator=denominator,
            memory=memory, chunk_size=chunk_size))
      return loss, tape.gradient(loss, x)
    return _graph_shapes(loss_and_grad.get_concrete_function(x))

  # The check can fail: the plain graph has the [rows, columns] logits.
  assert [rows, columns] in [s.as_list() for s in traced(0) if s.rank == 2]
  # Nor anything [local, global] (e.g. a sample-level class mask), here [10, 10].
  # The largest chunk tensor: one_positive's stack of two [C, columns] matrices.
  bound = 2 * 4 * columns
  assert bound < rows * columns
  for shape in traced(4):
    if shape.rank is None:
      continue
    dims = shape.as_list()
    if None in dims:  # the loops' stacked chunks: [chunks, 4, ...]; no columns dim
      assert columns not in dims and 20 not in dims, dims
    else:
      assert shape.num_elements() <= bound, dims
      assert dims[-2:] != [10, 10], dims


_STRATEGY = []


@pytest.mark.parametrize("kwargs", [
    dict(), dict(positives_cap=2, summation="inside"),
    dict(contrast_mode="one_view", denominator="one_positive", memory=True),
    dict(use_labels=False, memory=True)], ids=str)
def test_two_replicas_chunked_equal_single_device_plain(kwargs):
  kwargs = dict(kwargs)
  labels = LABELS if kwargs.pop("use_labels", True) else None
  if kwargs.pop("memory", False):
    kwargs["memory"] = _memory()
  x = _unit((10, 2, 6), seed=8)
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    want = losses.supcon_loss(xt, labels, **kwargs)
    mean = tf.reduce_mean(want)
  want_grad = tape.gradient(mean, xt).numpy()

  if not _STRATEGY:
    _STRATEGY.append(testing.mirrored_cpu_strategy(2))
  strategy = _STRATEGY[0]
  lab = labels if labels is not None else np.zeros(10, np.int32)
  values = strategy.experimental_distribute_values_from_function(
      lambda ctx: (tf.constant(x[5 * ctx.replica_id_in_sync_group:][:5]),
                   tf.constant(lab[5 * ctx.replica_id_in_sync_group:][:5])))

  def step(feats, labs):
    labs = labs if labels is not None else None
    with tf.GradientTape() as tape:
      tape.watch(feats)
      # The gather outside the loss (as train/step.py does), inside the tape.
      gathered = losses.gather_global_batch(feats, labs)
      per_sample = losses.supcon_loss(feats, labs, gathered=gathered, chunk_size=3,
                                      **kwargs)
      reduced = losses.per_replica_mean(per_sample, global_batch_size=10)
    return per_sample, tape.gradient(reduced, feats)

  per_sample, grads = tf.function(lambda v: strategy.run(step, args=v))(values)
  unpack = strategy.experimental_local_results
  got = np.concatenate([t.numpy() for t in unpack(per_sample)])
  got_grad = np.concatenate([t.numpy() for t in unpack(grads)])
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("denominator", ["all", "one_positive"])  # fused / general
def test_chunked_under_xla_equals_plain(denominator):
  # Static chunk shapes: the loops compile with jit_compile (--jit_compile steps).
  x = tf.constant(_unit((10, 2, 6), seed=12))

  def loss_and_grad(chunk_size, jit):
    @tf.function(jit_compile=jit)
    def run(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(losses.supcon_loss(
            x, LABELS, denominator=denominator, chunk_size=chunk_size))
      return loss, tape.gradient(loss, x)
    return [t.numpy() for t in run(x)]

  plain = loss_and_grad(0, False)
  for got, want in zip(loss_and_grad(7, True), plain):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
