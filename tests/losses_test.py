"""Tests for supcon_tf.losses against an independent NumPy reference.

The reference below is written from the paper's equations (Khosla et al. 2020,
Eq. 1-3, see DESIGN.md) and the issue's spec of the modes and the positives cap,
one anchor at a time in float64, with no masks or matrix tricks, so that it is easy
to check by reading.
"""

import itertools
import math
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config
from supcon_tf import losses


# ---------------------------------------------------------------------------
# NumPy reference.


def _logsumexp(values):
  """log(sum(exp(values))) in float64, stable for huge |values|; -inf if empty."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    return -np.inf
  m = np.max(values)
  return m + math.log(np.sum(np.exp(values - m)))


def reference_supcon(features, labels=None, *, temperature=0.1,
                     contrast_mode="all_views", summation="outside",
                     denominator="all", positives_cap=-1,
                     scale_by_temperature=True):
  """Per-sample SupCon loss, float64, straight from the definitions.

  For sample i and each of its anchor views a (all views, or only view 0):
    logit(j, w) = z[i, a] . z[j, w] / tau
    P = the other views of i, plus every view of the kept same-class samples
        (all other same-class samples, or with a cap the first cap/views of them
        in batch order);
    N = every view of every sample of another class;
    capped-out same-class samples are in neither set.
    Denominator for the positive p:
      all:            sum over P and N of exp(logit)
      one_positive:   exp(logit(p)) + sum over N of exp(logit)
      only_negatives: sum over N of exp(logit)
    Eq. 2 (outside): -1/|P| sum_p log(exp(logit(p)) / D_p)
    Eq. 3 (inside):  -log(1/|P| sum_p exp(logit(p)) / D_p)
  The anchor contributes 0 if P is empty (or if N is empty with only_negatives);
  the sample's loss is the mean over its anchor views, times tau if scaled.
  """
  z = np.asarray(features, np.float64)
  batch, views, _ = z.shape
  if labels is None:
    labels = np.arange(batch)  # SimCLR: every sample is its own class
  labels = np.asarray(labels)
  if labels.ndim == 2:
    labels = np.argmax(labels, axis=1)
  anchor_views = range(views) if contrast_mode == "all_views" else range(1)
  tau = float(temperature)

  out = np.zeros(batch)
  for i in range(batch):
    others_same = [j for j in range(batch) if j != i and labels[j] == labels[i]]
    if positives_cap >= 0:
      kept = others_same[:positives_cap // views]
    else:
      kept = others_same
    different = [j for j in range(batch) if labels[j] != labels[i]]
    anchor_losses = []
    for a in anchor_views:
      def logit(j, w, a=a):
        return float(np.dot(z[i, a], z[j, w])) / tau

      pos = [logit(i, w) for w in range(views) if w != a]
      pos += [logit(j, w) for j in kept for w in range(views)]
      neg = [logit(j, w) for j in different for w in range(views)]
      if not pos or (denominator == "only_negatives" and not neg):
        anchor_losses.append(0.0)
        continue
      if denominator == "all":
        log_denoms = [_logsumexp(pos + neg)] * len(pos)
      elif denominator == "one_positive":
        log_denoms = [_logsumexp([p] + neg) for p in pos]
      elif denominator == "only_negatives":
        log_denoms = [_logsumexp(neg)] * len(pos)
      else:
        raise ValueError(denominator)
      log_probs = [p - d for p, d in zip(pos, log_denoms)]
      if summation == "outside":
        loss = -np.mean(log_probs)
      elif summation == "inside":
        loss = -(_logsumexp(log_probs) - math.log(len(pos)))
      else:
        raise ValueError(summation)
      anchor_losses.append(loss)
    out[i] = np.mean(anchor_losses)
    if scale_by_temperature:
      out[i] *= tau
  return out


# ---------------------------------------------------------------------------
# Helpers.

# Classes with 5, 3, 3 members and a singleton (class 3), not sorted, so that the
# cap ("the first cap/views other samples in batch order") really bites.
LABELS_12 = np.array([2, 0, 1, 0, 2, 0, 3, 1, 0, 2, 1, 0], np.int32)


def _random_features(batch, views, dim=8, seed=0, normalise=True, scale=1.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, views, dim))
  if normalise:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
  return (scale * x).astype(np.float32)


def _loss_and_grad(features, labels=None, reduce=tf.reduce_mean, **kwargs):
  x = tf.convert_to_tensor(features)
  with tf.GradientTape() as tape:
    tape.watch(x)
    per_sample = losses.supcon_loss(x, labels, **kwargs)
    total = reduce(per_sample)
  return per_sample, tape.gradient(total, x)


# ---------------------------------------------------------------------------
# The full grid of modes against the reference.

_GRID = [
    dict(views=views, contrast_mode=cm, summation=s, denominator=d,
         positives_cap=cap, use_labels=ul, scale_by_temperature=sbt)
    for views in (2, 3)
    for cm, s, d, cap, ul, sbt in itertools.product(
        ("all_views", "one_view"), ("outside", "inside"),
        ("all", "one_positive", "only_negatives"),
        (-1, 0, views, 2 * views), (True, False), (True, False))
]


def _grid_id(case):
  return "-".join([
      f"v{case['views']}", case["contrast_mode"], case["summation"],
      case["denominator"], f"cap{case['positives_cap']}",
      "labels" if case["use_labels"] else "nolabels",
      "scaled" if case["scale_by_temperature"] else "unscaled"])


@pytest.mark.parametrize("case", _GRID, ids=[_grid_id(c) for c in _GRID])
def test_matches_reference_on_grid(case):
  case = dict(case)
  views = case.pop("views")
  use_labels = case.pop("use_labels")
  seed = zlib.crc32(
      _grid_id(dict(case, views=views, use_labels=use_labels)).encode()) % 1000
  x = _random_features(12, views, seed=seed)
  labels = LABELS_12 if use_labels else None
  got = losses.supcon_loss(x, labels, temperature=0.3, **case)
  want = reference_supcon(x, labels, temperature=0.3, **case)
  assert got.dtype == tf.float32
  assert got.shape == (12,)
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_reference_cap_bites():
  """Sanity check of the test data: the cap changes the loss of the grid's data."""
  x = _random_features(12, 2, seed=1)
  uncapped = reference_supcon(x, LABELS_12, positives_cap=-1)
  for cap in (0, 2, 4):
    capped = reference_supcon(x, LABELS_12, positives_cap=cap)
    assert not np.allclose(capped, uncapped)
  # A cap as large as the largest class is no cap.
  np.testing.assert_allclose(reference_supcon(x, LABELS_12, positives_cap=8),
                             uncapped)
  np.testing.assert_allclose(
      losses.supcon_loss(x, LABELS_12, positives_cap=8).numpy(), uncapped,
      rtol=1e-5)


@pytest.mark.parametrize("views", [1, 4])
@pytest.mark.parametrize("contrast_mode", ["all_views", "one_view"])
@pytest.mark.parametrize("summation", ["outside", "inside"])
def test_matches_reference_other_view_counts(views, contrast_mode, summation):
  x = _random_features(10, views, seed=views)
  labels = LABELS_12[:10]
  for denominator in ("all", "one_positive", "only_negatives"):
    for cap in (-1, 0, views):
      kwargs = dict(temperature=0.2, contrast_mode=contrast_mode,
                    summation=summation, denominator=denominator,
                    positives_cap=cap)
      got = losses.supcon_loss(x, labels, **kwargs).numpy()
      want = reference_supcon(x, labels, **kwargs)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                 err_msg=str(kwargs))


def test_unnormalised_features_match_reference():
  x = _random_features(12, 2, seed=3, normalise=False, scale=2.0)
  for summation, denominator in itertools.product(
      ("outside", "inside"), ("all", "one_positive", "only_negatives")):
    kwargs = dict(temperature=0.5, summation=summation, denominator=denominator)
    np.testing.assert_allclose(
        losses.supcon_loss(x, LABELS_12, **kwargs).numpy(),
        reference_supcon(x, LABELS_12, **kwargs), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Closed form.


def test_closed_form_two_samples_two_views():
  # Sample 0 has both views e1; sample 1 has views e2 and -e2 (unit vectors).
  # Dot products: z00.z01 = 1, z10.z11 = -1, every cross-sample product is 0.
  #
  # SimCLR (labels None), denominator "all": A(i) = the 3 other views.
  #  - anchor z00: positive z01 (logit 1/t), negatives z10, z11 (logit 0):
  #      L = -log(e^{1/t} / (e^{1/t} + 2)) = log(1 + 2 e^{-1/t});
  #    z01 is symmetric, so sample 0's loss is that value.
  #  - anchor z10: positive z11 (logit -1/t), negatives logit 0:
  #      L = log(1 + 2 e^{1/t}); same for z11.
  #  With a single positive, Eq. 2 == Eq. 3 and "one_positive" == "all";
  #  "only_negatives" drops the positive from the denominator:
  #      sample 0: -log(e^{1/t} / 2) = log 2 - 1/t;  sample 1: log 2 + 1/t.
  #
  # Same class (labels [0, 0]): no negatives. Anchor z00 has positives z01
  # (logit 1/t), z10 and z11 (logit 0); D = e^{1/t} + 2 for every positive.
  #  - Eq. 2: -1/3 [(1/t - log D) + 2 (0 - log D)] = log D - 1/(3t).
  #  - Eq. 3: -log(1/3 (e^{1/t} + 1 + 1) / D) = log 3, whatever t.
  #  Anchor z10: positives z11 (-1/t), z00, z01 (0); D' = e^{-1/t} + 2:
  #  - Eq. 2: log D' + 1/(3t);  Eq. 3: log 3.
  #  Per sample: sample 0 averages z00 and z01 (the same by symmetry).
  t = 0.5
  x = np.array([[[1., 0.], [1., 0.]],
                [[0., 1.], [0., -1.]]], np.float32)
  e = math.exp(1 / t)
  simclr = [math.log(1 + 2 / e), math.log(1 + 2 * e)]
  for denominator in ("all", "one_positive"):
    for summation in ("outside", "inside"):
      got = losses.supcon_loss(x, None, temperature=t, summation=summation,
                               denominator=denominator,
                               scale_by_temperature=False)
      np.testing.assert_allclose(got.numpy(), simclr, rtol=1e-6)
  got = losses.supcon_loss(x, None, temperature=t, denominator="only_negatives",
                           scale_by_temperature=False)
  np.testing.assert_allclose(got.numpy(), [math.log(2) - 1 / t,
                                           math.log(2) + 1 / t], rtol=1e-6)
  # scale_by_temperature multiplies by t.
  got = losses.supcon_loss(x, None, temperature=t)
  np.testing.assert_allclose(got.numpy(), t * np.array(simclr), rtol=1e-6)

  same = np.array([0, 0], np.int32)
  got = losses.supcon_loss(x, same, temperature=t, scale_by_temperature=False)
  np.testing.assert_allclose(
      got.numpy(), [math.log(e + 2) - 1 / (3 * t), math.log(1 / e + 2) + 1 / (3 * t)],
      rtol=1e-6)
  got = losses.supcon_loss(x, same, temperature=t, summation="inside",
                           scale_by_temperature=False)
  np.testing.assert_allclose(got.numpy(), [math.log(3), math.log(3)], rtol=1e-6)
  # With only_negatives and no negative at all, every anchor contributes 0.
  got = losses.supcon_loss(x, same, temperature=t, denominator="only_negatives")
  np.testing.assert_array_equal(got.numpy(), [0., 0.])
  # Cap 0: only the anchor's own other view is a positive, the other sample is
  # neither positive nor negative: A(i) = {own view}, so L = -log(1) = 0.
  got = losses.supcon_loss(x, same, temperature=t, positives_cap=0)
  np.testing.assert_allclose(got.numpy(), [0., 0.], atol=1e-7)


# ---------------------------------------------------------------------------
# Invariants.


@pytest.mark.parametrize("summation", ["outside", "inside"])
@pytest.mark.parametrize("denominator", ["all", "one_positive", "only_negatives"])
def test_no_labels_equals_identity_labels(summation, denominator):
  x = _random_features(9, 2, seed=4)
  kwargs = dict(summation=summation, denominator=denominator)
  np.testing.assert_allclose(
      losses.supcon_loss(x, None, **kwargs).numpy(),
      losses.supcon_loss(x, tf.range(9), **kwargs).numpy(), rtol=1e-6)


def test_one_hot_labels_equal_integer_labels():
  x = _random_features(12, 2, seed=5)
  one_hot = tf.one_hot(LABELS_12, 4)
  for kwargs in (dict(), dict(summation="inside"), dict(positives_cap=2),
                 dict(denominator="only_negatives", contrast_mode="one_view")):
    np.testing.assert_allclose(
        losses.supcon_loss(x, one_hot, **kwargs).numpy(),
        losses.supcon_loss(x, LABELS_12, **kwargs).numpy(), rtol=1e-6)
  # int64 ids and integer one-hot work too.
  np.testing.assert_allclose(
      losses.supcon_loss(x, LABELS_12.astype(np.int64)).numpy(),
      losses.supcon_loss(x, tf.cast(one_hot, tf.int32)).numpy(), rtol=1e-6)


def test_keras_wrapper_equals_function():
  x = _random_features(12, 2, seed=6)
  kwargs = dict(temperature=0.2, contrast_mode="one_view", summation="inside",
                denominator="one_positive", positives_cap=2,
                scale_by_temperature=False)
  want = losses.supcon_loss(x, LABELS_12, **kwargs).numpy()
  none = losses.SupConLoss(reduction=keras.losses.Reduction.NONE, **kwargs)
  np.testing.assert_allclose(none(LABELS_12, x).numpy(), want, rtol=1e-6)
  # Keras-style [batch, 1] ids are accepted.
  np.testing.assert_allclose(none(LABELS_12[:, None], x).numpy(), want, rtol=1e-6)
  # Default reduction: the mean over the batch.
  mean = losses.SupConLoss(**kwargs)
  np.testing.assert_allclose(mean(LABELS_12, x).numpy(), want.mean(), rtol=1e-6)
  # use_labels=False is SimCLR; y_true is ignored.
  simclr = losses.SupConLoss(use_labels=False,
                             reduction=keras.losses.Reduction.NONE)
  np.testing.assert_allclose(simclr(LABELS_12, x).numpy(),
                             losses.supcon_loss(x).numpy(), rtol=1e-6)
  # Config round trip.
  clone = losses.SupConLoss.from_config(none.get_config())
  np.testing.assert_allclose(clone(LABELS_12, x).numpy(), want, rtol=1e-6)


def test_keras_wrapper_in_compiled_model():
  # A model whose output is [batch, views, dim]; fit for one step.
  inputs = keras.Input([2, 4])
  outputs = keras.layers.Dense(3)(inputs)
  model = keras.Model(inputs, outputs)
  model.compile(optimizer="sgd", loss=losses.SupConLoss())
  x = np.random.default_rng(0).normal(size=(12, 2, 4)).astype(np.float32)
  want = losses.supcon_loss(model(x), LABELS_12).numpy().mean()
  got = model.evaluate(x, LABELS_12, batch_size=12, verbose=0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  history = model.fit(x, LABELS_12, batch_size=12, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


def test_enum_members_equal_strings():
  x = _random_features(12, 2, seed=7)
  for cm, s, d in itertools.product(config.ContrastMode,
                                    config.SummationLocation,
                                    config.DenominatorMode):
    by_enum = losses.supcon_loss(x, LABELS_12, contrast_mode=cm, summation=s,
                                 denominator=d)
    by_str = losses.supcon_loss(x, LABELS_12, contrast_mode=cm.value,
                                summation=s.value, denominator=d.value)
    np.testing.assert_array_equal(by_enum.numpy(), by_str.numpy())
  # The aliases exported by losses are the config enums.
  assert losses.ContrastMode is config.ContrastMode
  assert losses.Summation is config.SummationLocation
  assert losses.Denominator is config.DenominatorMode


@pytest.mark.parametrize("dtype,rtol", [(tf.float16, 2e-2), (tf.bfloat16, 1e-1),
                                        (tf.float64, 1e-6)])
def test_other_float_dtypes(dtype, rtol):
  x = _random_features(12, 2, seed=8)
  x_low = tf.cast(x, dtype)
  per_sample, grad = _loss_and_grad(x_low, LABELS_12)
  assert per_sample.dtype == tf.float32
  assert grad.dtype == dtype
  assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))
  # Exactly the float32 computation on the rounded inputs ...
  np.testing.assert_allclose(
      per_sample.numpy(),
      losses.supcon_loss(tf.cast(x_low, tf.float32), LABELS_12).numpy(),
      rtol=1e-6)
  # ... and close to the float32 inputs' result.
  np.testing.assert_allclose(per_sample.numpy(),
                             losses.supcon_loss(x, LABELS_12).numpy(), rtol=rtol)


def test_single_view():
  x = _random_features(12, 1, seed=9)
  # SimCLR with one view: no anchor has a positive, so the loss is exactly 0.
  for summation, denominator in itertools.product(
      ("outside", "inside"), ("all", "one_positive", "only_negatives")):
    per_sample, grad = _loss_and_grad(x, None, summation=summation,
                                      denominator=denominator)
    np.testing.assert_array_equal(per_sample.numpy(), np.zeros(12))
    assert np.all(np.isfinite(grad.numpy()))
  # With labels only the singleton class (sample 6) has no positive.
  per_sample, grad = _loss_and_grad(x, LABELS_12)
  np.testing.assert_allclose(per_sample.numpy(), reference_supcon(x, LABELS_12),
                             rtol=1e-5)
  assert per_sample.numpy()[6] == 0.0
  assert np.all(per_sample.numpy()[LABELS_12 != 3] > 0)
  assert np.all(np.isfinite(grad.numpy()))
  # Cap 0 with one view: nobody has a positive.
  per_sample, grad = _loss_and_grad(x, LABELS_12, positives_cap=0)
  np.testing.assert_array_equal(per_sample.numpy(), np.zeros(12))
  assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("summation", ["outside", "inside"])
def test_no_negative_with_only_negatives_is_zero(summation):
  x = _random_features(6, 2, seed=10)
  labels = np.zeros(6, np.int32)
  per_sample, grad = _loss_and_grad(x, labels, summation=summation,
                                    denominator="only_negatives")
  np.testing.assert_array_equal(per_sample.numpy(), np.zeros(6))
  assert np.all(np.isfinite(grad.numpy()))
  np.testing.assert_array_equal(grad.numpy(), np.zeros_like(x))
  # One sample of another class: everyone has a negative again.
  labels = np.array([0, 0, 0, 0, 0, 1], np.int32)
  per_sample, grad = _loss_and_grad(x, labels, summation=summation,
                                    denominator="only_negatives")
  np.testing.assert_allclose(
      per_sample.numpy(),
      reference_supcon(x, labels, summation=summation,
                       denominator="only_negatives"), rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("summation", ["outside", "inside"])
@pytest.mark.parametrize("denominator", ["all", "one_positive", "only_negatives"])
@pytest.mark.parametrize("use_labels", [True, False])
def test_small_temperature_unnormalised_is_stable(summation, denominator,
                                                  use_labels):
  # Norms 10..100 and tau = 0.01: logits up to ~1e6, far beyond exp's range.
  rng = np.random.default_rng(11)
  x = _random_features(12, 2, seed=11)
  x *= rng.uniform(10, 100, size=(12, 2, 1)).astype(np.float32)
  labels = LABELS_12 if use_labels else None
  kwargs = dict(temperature=0.01, summation=summation, denominator=denominator)
  per_sample, grad = _loss_and_grad(x, labels, **kwargs)
  assert np.all(np.isfinite(per_sample.numpy()))
  assert np.all(np.isfinite(grad.numpy()))
  want = reference_supcon(x, labels, **kwargs)
  finite = np.isfinite(want)
  assert finite.all()
  # float32 logits of size ~|x|^2/tau carry an absolute error of ~1e-7 * that;
  # the scaled loss (times tau) then has an error of ~1e-7 * |x|^2.
  atol = 1e-6 * np.max(np.sum(x.astype(np.float64)**2, -1))
  np.testing.assert_allclose(per_sample.numpy()[finite], want[finite], rtol=1e-4,
                             atol=atol)


def _numerical_grad_of_reference(x, labels, kwargs, eps=1e-6):
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  for idx in np.ndindex(*x.shape):
    plus, minus = x.copy(), x.copy()
    plus[idx] += eps
    minus[idx] -= eps
    grad[idx] = (reference_supcon(plus, labels, **kwargs).mean() -
                 reference_supcon(minus, labels, **kwargs).mean()) / (2 * eps)
  return grad


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(summation="inside"),
    dict(denominator="one_positive"),
    dict(denominator="only_negatives", summation="inside"),
    dict(contrast_mode="one_view", positives_cap=2),
    dict(contrast_mode="one_view"),  # the fused path's two-product backward
    dict(positives_cap=0, scale_by_temperature=False),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_gradient_matches_finite_differences(kwargs):
  # Unnormalised, so that the gradient is not orthogonal to anything special.
  x = _random_features(5, 2, dim=3, seed=12, normalise=False)
  labels = np.array([0, 1, 0, 0, 1], np.int32)
  kwargs = dict(kwargs, temperature=0.5)
  _, grad = _loss_and_grad(x, labels, **kwargs)
  want = _numerical_grad_of_reference(x, labels, kwargs)
  np.testing.assert_allclose(grad.numpy(), want, rtol=1e-4, atol=1e-5)


def test_gradient_check_with_tf_compute_gradient():
  x = _random_features(4, 2, dim=3, seed=13, normalise=False).astype(np.float64)
  labels = tf.constant([0, 1, 0, 1])

  def f(features):
    return tf.cast(losses.supcon_loss(features, labels, temperature=0.5),
                   tf.float64)

  theoretical, numerical = tf.test.compute_gradient(f, [tf.constant(x)], delta=1e-3)
  # The loss computes in float32, so the numerical Jacobian is only ~1e-4 exact.
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


def test_runs_in_tf_function_with_unknown_batch():
  x = _random_features(12, 2, seed=14)

  @tf.function(input_signature=[tf.TensorSpec([None, 2, 8]),
                                tf.TensorSpec([None], tf.int32)])
  def f(features, labels):
    return losses.supcon_loss(features, labels, positives_cap=2)

  np.testing.assert_allclose(f(x, LABELS_12).numpy(),
                             reference_supcon(x, LABELS_12, positives_cap=2),
                             rtol=1e-5)
  np.testing.assert_allclose(f(x[:7], LABELS_12[:7]).numpy(),
                             reference_supcon(x[:7], LABELS_12[:7], positives_cap=2),
                             rtol=1e-5)


def test_tensor_temperature():
  x = _random_features(12, 2, seed=15)
  np.testing.assert_allclose(
      losses.supcon_loss(x, LABELS_12, temperature=tf.constant(0.3)).numpy(),
      reference_supcon(x, LABELS_12, temperature=0.3), rtol=1e-5)


def test_per_replica_mean_on_one_device():
  per_sample = tf.constant([1., 2., 3., 6.])
  assert float(losses.per_replica_mean(per_sample)) == 3.0
  assert float(losses.per_replica_mean(per_sample, global_batch_size=8)) == 1.5


# ---------------------------------------------------------------------------
# Invalid inputs.

_X = _random_features(4, 2, seed=16)
_L = np.array([0, 1, 0, 1], np.int32)

_INVALID = {
    "features_rank2": (lambda: losses.supcon_loss(_X[:, 0], _L), "rank 3"),
    "features_rank4": (lambda: losses.supcon_loss(_X[None], _L), "rank 3"),
    "features_zero_views": (lambda: losses.supcon_loss(_X[:, :0], _L), "view"),
    "features_int": (lambda: losses.supcon_loss(_X.astype(np.int32), _L), "float"),
    "labels_batch_mismatch": (lambda: losses.supcon_loss(_X, _L[:3]), "batch"),
    "labels_rank3": (lambda: losses.supcon_loss(_X, _L[:, None, None]), "labels"),
    "labels_float_rank1": (lambda: losses.supcon_loss(_X, _L.astype(np.float32)),
                           "integer"),
    "contrast_mode_unknown": (
        lambda: losses.supcon_loss(_X, _L, contrast_mode="both"), "contrast_mode"),
    "summation_unknown": (
        lambda: losses.supcon_loss(_X, _L, summation="middle"), "summation"),
    "denominator_unknown": (
        lambda: losses.supcon_loss(_X, _L, denominator="some"), "denominator"),
    "mode_wrong_enum": (
        lambda: losses.supcon_loss(_X, _L, summation=config.DenominatorMode.ALL),
        "summation"),
    "temperature_zero": (lambda: losses.supcon_loss(_X, _L, temperature=0.0),
                         "temperature"),
    "temperature_negative": (lambda: losses.supcon_loss(_X, _L, temperature=-0.1),
                             "temperature"),
    "temperature_nan": (lambda: losses.supcon_loss(_X, _L, temperature=math.nan),
                        "temperature"),
    "temperature_int_zero": (lambda: losses.supcon_loss(_X, _L, temperature=0),
                             "temperature"),
    "temperature_numpy_float32_zero": (
        lambda: losses.supcon_loss(_X, _L, temperature=np.float32(0.0)),
        "temperature"),
    "temperature_eager_tensor_negative": (
        lambda: losses.supcon_loss(_X, _L, temperature=tf.constant(-0.1)),
        "temperature"),
    "cap_not_multiple_of_views": (
        lambda: losses.supcon_loss(_X, _L, positives_cap=3), "multiple"),
    "cap_minus_two": (lambda: losses.supcon_loss(_X, _L, positives_cap=-2), "-1"),
    "keras_temperature_zero": (lambda: losses.SupConLoss(temperature=0.0),
                               "temperature"),
    "keras_unknown_mode": (lambda: losses.SupConLoss(denominator="most"),
                           "denominator"),
}


@pytest.mark.parametrize("name", sorted(_INVALID))
def test_invalid_input_raises(name):
  fn, message = _INVALID[name]
  with pytest.raises(ValueError, match=message):
    fn()


def test_invalid_modes_raise_inside_tf_function():
  @tf.function
  def f(features):
    return losses.supcon_loss(features, None, denominator="bogus")

  with pytest.raises(ValueError, match="denominator"):
    f(_X)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
