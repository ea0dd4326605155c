"""Tests for supcon_tf.losses_fused: the fused L_out path and its two gradients.

`losses_test.py` checks `supcon_loss` (which takes this path for L_out with the
denominator over all views and no cap) against the NumPy reference over the mode
grid; here the path's pieces are checked directly: the one-device (symmetric)
backward pass against the general one, a replica's slice of the global batch, the
temperature's gradient, and anchors without positives.
"""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import losses_fused
from tests.losses_test import reference_supcon

LABELS = np.array([2, 0, 1, 0, 2, 0, 3, 1, 0, 2, 1, 0], np.int32)  # class 3: one sample


def _features(batch, views, seed, dim=6):
  x = np.random.default_rng(seed).normal(size=(batch, views, dim))
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _same(labels_local, labels_global):
  return tf.constant(labels_local[:, None] == labels_global[None, :])


def _loss_and_grads(x, labels, symmetric, temperature, local=None):
  """Per-sample loss of samples `local` (a slice; all by default) against the
  whole batch, and d sum(loss) / d (features, temperature)."""
  local = local or slice(0, x.shape[0])
  features = tf.constant(x)
  tau = tf.Variable(temperature, dtype=tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(features)
    per_sample = losses_fused.supcon_outside_all(
        features[local], features, x.shape[1],
        _same(labels[local], labels), tf.constant(local.start or 0, tf.int32),
        tf.identity(tau), scale_by_temperature=True, symmetric=symmetric)
    total = tf.reduce_sum(per_sample)
  grad_x, grad_tau = tape.gradient(total, [features, tau])
  return per_sample.numpy(), grad_x.numpy(), float(grad_tau)


# (One view without labels has no positive anywhere: nothing to compare.)
@pytest.mark.parametrize("views,use_labels",
                         [(1, True), (2, True), (3, True), (2, False), (3, False)])
def test_symmetric_backward_equals_general(views, use_labels):
  x = _features(12, views, seed=views)
  labels = LABELS if use_labels else np.arange(12, dtype=np.int32)
  sym = _loss_and_grads(x, labels, True, 0.2)
  gen = _loss_and_grads(x, labels, False, 0.2)
  np.testing.assert_allclose(sym[0], reference_supcon(x, labels, temperature=0.2),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gen[0], sym[0], rtol=1e-6, atol=1e-7)
  scale = np.abs(sym[1]).max()
  assert scale > 0
  np.testing.assert_allclose(gen[1], sym[1], atol=1e-5 * scale)
  np.testing.assert_allclose(gen[2], sym[2], rtol=1e-5)


def test_replica_slice_equals_rows_of_the_global_loss():
  # A replica holding samples 4..8 of the global batch: its losses are those rows
  # of the one-device loss, and the gradient of their sum (through the anchors and
  # the gathered views alike) equals the one-device gradient of the same sum.
  x = _features(12, 2, seed=7)
  rows = slice(4, 9)
  got = _loss_and_grads(x, LABELS, False, 0.1, local=rows)
  np.testing.assert_allclose(got[0], reference_supcon(x, LABELS)[rows], rtol=1e-5)

  features = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(features)
    whole = losses_fused.supcon_outside_all(
        features, features, 2, _same(LABELS, LABELS), tf.constant(0), tf.constant(0.1),
        scale_by_temperature=True, symmetric=True)
    total = tf.reduce_sum(whole[rows])
  want = tape.gradient(total, features).numpy()
  np.testing.assert_allclose(got[1], want, atol=1e-5 * np.abs(want).max())
  # Samples outside the slice still get gradient: they are the slice's contrast.
  assert np.abs(got[1][:4]).max() > 0


@pytest.mark.parametrize("symmetric", [True, False])
def test_temperature_gradient_matches_finite_differences(symmetric):
  x = _features(12, 2, seed=3)
  _, _, grad_tau = _loss_and_grads(x, LABELS, symmetric, 0.3)
  eps = 1e-5
  want = (reference_supcon(x, LABELS, temperature=0.3 + eps).sum()
          - reference_supcon(x, LABELS, temperature=0.3 - eps).sum()) / (2 * eps)
  np.testing.assert_allclose(grad_tau, want, rtol=1e-4)


@pytest.mark.parametrize("symmetric", [True, False])
def test_anchor_without_positive_contributes_zero(symmetric):
  # One view: the singleton class-3 sample has no positive at all.
  x = _features(12, 1, seed=5)
  loss, grad, _ = _loss_and_grads(x, LABELS, symmetric, 0.1)
  assert loss[6] == 0.0
  assert np.isfinite(grad).all()
  np.testing.assert_allclose(loss, reference_supcon(x, LABELS), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("symmetric", [True, False])
def test_small_temperature_far_views_stay_finite(symmetric):
  # tau = 0.01 with every other view far from the anchor: exp(logit - self) would
  # underflow; the self entry is left out before the maximum is taken.
  x = _features(8, 2, seed=9)
  x[:, 1] = -x[:, 0]  # each sample's second view opposite its first
  loss, grad, _ = _loss_and_grads(x, np.arange(8, dtype=np.int32), symmetric, 0.01)
  assert np.isfinite(loss).all() and np.isfinite(grad).all()
  np.testing.assert_allclose(
      loss, reference_supcon(x, None, temperature=0.01), rtol=1e-4)
