"""Tests for the memory queue of supcon_tf.losses (`memory=losses.Memory(...)`).

The reference below is written afresh from the definition of the extended loss,
one anchor at a time in float64: the contrast set of an anchor is every other view
of the global batch plus the valid memory entries; a memory entry is a positive
when labels are used and its label is the anchor's, else a negative.
"""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import losses
from tests import testing

LABELS = np.array([2, 0, 1, 0, 2, 0, 3, 1, 0, 2], np.int32)  # class 3: one sample
MEMORY_LABELS = np.array([0, 4, 2, 1, 4, 0, 3, 2, 5], np.int32)  # 4, 5: no anchor
MEMORY_VALID = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0], bool)


def _lse(values):
  if not values:
    return -np.inf
  m = max(values)
  return m + math.log(sum(math.exp(v - m) for v in values))


def reference_with_memory(z, labels, mem, mem_labels, mem_valid, *, temperature,
                          contrast_mode="all_views", summation="outside",
                          denominator="all", scale_by_temperature=True):
  """Per-sample loss in float64; labels None: SimCLR (memory all negatives)."""
  z = np.asarray(z, np.float64)
  mem = np.asarray(mem, np.float64)
  batch, views, _ = z.shape
  tau = float(temperature)
  out = np.zeros(batch)
  for i in range(batch):
    per_anchor = []
    for a in (range(views) if contrast_mode == "all_views" else [0]):
      pos, neg = [], []
      for j in range(batch):
        for w in range(views):
          if (j, w) == (i, a):
            continue  # self
          logit = z[i, a] @ z[j, w] / tau
          same = j == i if labels is None else labels[j] == labels[i]
          (pos if same else neg).append(logit)
      for k in range(len(mem)):
        if not mem_valid[k]:
          continue
        logit = z[i, a] @ mem[k] / tau
        if labels is not None and mem_labels[k] == labels[i]:
          pos.append(logit)
        else:
          neg.append(logit)
      if not pos or (denominator == "only_negatives" and not neg):
        per_anchor.append(0.0)
        continue
      if denominator == "all":
        log_probs = [p - _lse(pos + neg) for p in pos]
      elif denominator == "one_positive":
        log_probs = [p - _lse([p] + neg) for p in pos]
      else:
        log_probs = [p - _lse(neg) for p in pos]
      if summation == "outside":
        per_anchor.append(-np.mean(log_probs))
      else:
        per_anchor.append(-(_lse(log_probs) - math.log(len(pos))))
    out[i] = np.mean(per_anchor) * (tau if scale_by_temperature else 1.0)
  return out


def _unit(shape, seed):
  x = np.random.default_rng(seed).normal(size=shape)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _memory(k=9, dim=6, seed=1, labels=MEMORY_LABELS, valid=MEMORY_VALID):
  return losses.Memory(tf.constant(_unit((k, dim), seed)),
                       None if labels is None else tf.constant(labels[:k]),
                       tf.constant(valid[:k]))


_GRID = list(itertools.product(("all_views", "one_view"), ("outside", "inside"),
                               ("all", "one_positive", "only_negatives"),
                               (True, False), (True, False)))


@pytest.mark.parametrize("contrast_mode,summation,denominator,use_labels,scaled",
                         _GRID)
def test_matches_reference_on_grid(contrast_mode, summation, denominator, use_labels,
                                   scaled):
  x = _unit((10, 2, 6), seed=0)
  memory = _memory()
  labels = LABELS if use_labels else None
  kwargs = dict(temperature=0.3, contrast_mode=contrast_mode, summation=summation,
                denominator=denominator, scale_by_temperature=scaled)
  got = losses.supcon_loss(x, labels, memory=memory, **kwargs).numpy()
  want = reference_with_memory(x, labels, memory.features.numpy(), MEMORY_LABELS,
                               MEMORY_VALID, **kwargs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The memory changes the loss: the check above would catch it being ignored.
  assert not np.allclose(got, losses.supcon_loss(x, labels, **kwargs).numpy(),
                         rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("views", [1, 3])
def test_memory_positives_only_from_memory(views):
  # One view and a singleton class: the anchor's only positives are in memory.
  x = _unit((10, views, 6), seed=2)
  labels = LABELS.copy()
  mem_labels = np.array([3, 3, 7, 7, 0], np.int32)  # two of class 3, one invalid
  valid = np.array([1, 0, 1, 1, 1], bool)
  memory = losses.Memory(tf.constant(_unit((5, 6), 3)), tf.constant(mem_labels),
                         tf.constant(valid))
  got = losses.supcon_loss(x, labels, temperature=0.2, memory=memory).numpy()
  want = reference_with_memory(x, labels, memory.features.numpy(), mem_labels, valid,
                               temperature=0.2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  if views == 1:
    assert got[6] != 0.0  # without memory the singleton has no positive
    assert losses.supcon_loss(x, labels, temperature=0.2).numpy()[6] == 0.0


def test_no_matching_labels_all_negatives_and_all_invalid_is_no_memory():
  x = _unit((10, 2, 6), seed=4)
  feats = _unit((4, 6), 5)
  unmatched = losses.Memory(tf.constant(feats), tf.constant([9, 9, 8, 8]),
                            tf.constant([True] * 4))
  got = losses.supcon_loss(x, LABELS, memory=unmatched).numpy()
  want = reference_with_memory(x, LABELS, feats, [9, 9, 8, 8], [True] * 4,
                               temperature=0.1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Without labels, memory labels do not matter: every entry is a negative.
  simclr = losses.supcon_loss(x, None, memory=losses.Memory(
      tf.constant(feats), tf.constant([0, 2, 1, 0]), tf.constant([True] * 4)))
  simclr_no_labels = losses.supcon_loss(x, None, memory=losses.Memory(
      tf.constant(feats), None, tf.constant([True] * 4)))
  np.testing.assert_array_equal(simclr.numpy(), simclr_no_labels.numpy())
  # Nothing valid: the loss without memory (to rounding).
  invalid = losses.Memory(tf.constant(feats), tf.constant([0, 2, 1, 0]),
                          tf.constant([False] * 4))
  np.testing.assert_allclose(
      losses.supcon_loss(x, LABELS, memory=invalid).numpy(),
      losses.supcon_loss(x, LABELS).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("denominator", ["all", "only_negatives"])
def test_empty_memory_is_exactly_no_memory(denominator):
  x = _unit((10, 2, 6), seed=6)
  empty = losses.Memory(tf.zeros([0, 6]), tf.zeros([0], tf.int32),
                        tf.zeros([0], tf.bool))
  for labels in (LABELS, None):
    xt = tf.constant(x)
    results = []
    for memory in (None, empty):
      with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = losses.supcon_loss(xt, labels, denominator=denominator, memory=memory)
        total = tf.reduce_sum(loss)
      results.append((loss.numpy(), tape.gradient(total, xt).numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_no_gradient_into_memory_and_features_gradient_matches_differences():
  x = tf.constant(_unit((10, 2, 6), seed=7))
  memory = _memory()
  mem_var = tf.Variable(memory.features)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    loss = tf.reduce_sum(losses.supcon_loss(
        x, LABELS, memory=memory._replace(features=mem_var * 1.0)))
  grad_mem = tape.gradient(loss, mem_var)
  assert grad_mem is None or not np.any(grad_mem.numpy())
  # The features' gradient against central differences of the reference.
  grad_x = tape.gradient(loss, x).numpy()
  eps, xn = 1e-4, x.numpy().astype(np.float64)
  mem = memory.features.numpy()
  for idx in [(0, 0, 0), (3, 1, 2), (6, 0, 5)]:
    plus, minus = xn.copy(), xn.copy()
    plus[idx] += eps
    minus[idx] -= eps
    want = (reference_with_memory(plus, LABELS, mem, MEMORY_LABELS, MEMORY_VALID,
                                  temperature=0.1).sum()
            - reference_with_memory(minus, LABELS, mem, MEMORY_LABELS, MEMORY_VALID,
                                    temperature=0.1).sum()) / (2 * eps)
    np.testing.assert_allclose(grad_x[idx], want, rtol=1e-3, atol=1e-4)


def test_invalid_memory_arguments_raise():
  x = _unit((10, 2, 6), seed=8)
  memory = _memory()
  with pytest.raises(ValueError, match="positives_cap >= 0 together with a memory"):
    losses.supcon_loss(x, LABELS, positives_cap=2, memory=memory)
  with pytest.raises(ValueError, match=r"shape \[K, 6\]"):
    losses.supcon_loss(x, LABELS, memory=memory._replace(features=tf.zeros([9, 5])))
  with pytest.raises(ValueError, match="memory.labels is None"):
    losses.supcon_loss(x, LABELS, memory=memory._replace(labels=None))
  with pytest.raises(ValueError, match="memory.valid must be bool"):
    losses.supcon_loss(x, LABELS, memory=memory._replace(valid=tf.ones([9])))
  with pytest.raises(ValueError, match="must be a losses.Memory"):
    losses.supcon_loss(x, LABELS, memory=(memory.features, None, memory.valid))


# ---------------------------------------------------------------------------
# Two replicas: each replica's anchors against the gathered batch and the memory.

_MODES = [dict(), dict(use_labels=False), dict(summation="inside"),
          dict(contrast_mode="one_view", denominator="only_negatives"),
          dict(chunk_size=3)]


def _replicated_loss_and_grads(strategy, x, labels, memory, kwargs):
  """(per-sample losses, gradients) concatenated over the replicas."""
  n = strategy.num_replicas_in_sync
  local = len(x) // n

  def shard(ctx):
    rows = slice(ctx.replica_id_in_sync_group * local,
                 (ctx.replica_id_in_sync_group + 1) * local)
    return tf.constant(x[rows]), tf.constant(
        labels[rows] if labels is not None else np.zeros(local, np.int32))

  values = strategy.experimental_distribute_values_from_function(shard)

  def step(feats, labs):
    with tf.GradientTape() as tape:
      tape.watch(feats)
      per_sample = losses.supcon_loss(feats, labs if labels is not None else None,
                                      memory=memory, **kwargs)
      reduced = losses.per_replica_mean(per_sample, global_batch_size=len(x))
    return per_sample, tape.gradient(reduced, feats)

  per_sample, grads = tf.function(lambda v: strategy.run(step, args=v))(values)
  unpack = strategy.experimental_local_results
  return (np.concatenate([t.numpy() for t in unpack(per_sample)]),
          np.concatenate([t.numpy() for t in unpack(grads)]))


@pytest.mark.parametrize("mode", _MODES, ids=str)
def test_two_replicas_equal_single_device(mode):
  kwargs = dict(mode, temperature=0.2)
  use_labels = kwargs.pop("use_labels", True)
  x = _unit((10, 2, 6), seed=9)
  labels = LABELS if use_labels else None
  memory = _memory()
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    want = losses.supcon_loss(xt, labels, memory=memory, **kwargs)
    mean = tf.reduce_mean(want)
  want_grad = tape.gradient(mean, xt).numpy()
  got, got_grad = _replicated_loss_and_grads(testing.mirrored_cpu_strategy(2), x,
                                             labels, memory, kwargs)
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
  ref_kwargs = {k: v for k, v in kwargs.items() if k != "chunk_size"}
  np.testing.assert_allclose(
      got, reference_with_memory(x, labels, memory.features.numpy(), MEMORY_LABELS,
                                 MEMORY_VALID, **ref_kwargs), rtol=1e-5, atol=1e-6)
