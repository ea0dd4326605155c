"""Cross-replica SupCon: R replicas on virtual CPUs == one device on the global batch.

Each replica holds rows [r*B, (r+1)*B) of the global batch. Inside `strategy.run`
the loss all-gathers every replica's views, so (a) the per-sample losses of the
replicas, concatenated, are the single-device per-sample losses of the global
batch; (b) the gradient of `per_replica_mean(loss)` w.r.t. a replica's features
(the all-gather's gradient sums the upstream gradients of all replicas) is the
slice of the single-device gradient of mean(loss); (c) the replicas' reduced
losses sum to the single-device mean; and (d) a loss computed on each shard alone
differs, so these checks would catch a loss that ignores other replicas.
"""

from supcon_tf import distribute
from tests import testing

distribute.configure_virtual_cpus(4)  # before any TensorFlow op; idempotent

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from supcon_tf import losses  # pylint: disable=g-import-not-at-top,wrong-import-position

GLOBAL_BATCH = 16
VIEWS = 2
DIM = 8
# 5 classes over 16 samples, unsorted, so that every shard has classes shared with
# other shards and the cap's "first samples of the class in global order" crosses
# shard boundaries.
LABELS = np.array([3, 0, 1, 0, 2, 4, 1, 0, 3, 2, 0, 1, 4, 2, 0, 3], np.int32)

MODES = {
    "supcon": dict(),
    "simclr": dict(use_labels=False),
    "capped": dict(positives_cap=2),
    "capped_one_view_inside": dict(positives_cap=4, contrast_mode="one_view",
                                   summation="inside"),
    "one_view": dict(contrast_mode="one_view"),
    "inside": dict(summation="inside"),
    "only_negatives": dict(denominator="only_negatives"),
    "one_positive_unscaled": dict(denominator="one_positive",
                                  scale_by_temperature=False, temperature=0.5),
}


def _features(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(GLOBAL_BATCH, VIEWS, DIM))
  x /= np.linalg.norm(x, axis=-1, keepdims=True)
  return x.astype(np.float32)


def _split(mode):
  mode = dict(mode)
  use_labels = mode.pop("use_labels", True)
  return use_labels, mode


def _single_device(x, labels, kwargs):
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    per_sample = losses.supcon_loss(x, labels, **kwargs)
    mean = tf.reduce_mean(per_sample)
  return per_sample.numpy(), mean.numpy(), tape.gradient(mean, x).numpy()


_STRATEGIES = {}


def _strategy(num_replicas):
  """One strategy per replica count, shared by the tests (its tf.functions are
  traced per test anyway)."""
  if num_replicas not in _STRATEGIES:
    _STRATEGIES[num_replicas] = testing.mirrored_cpu_strategy(num_replicas)
  return _STRATEGIES[num_replicas]


def _distributed(strategy, x, labels, kwargs, sizes=None):
  """Per-replica (losses, reduced loss, gradients), as lists over replicas."""
  num_replicas = strategy.num_replicas_in_sync
  if sizes is None:
    sizes = [len(x) // num_replicas] * num_replicas
  bounds = np.cumsum([0] + list(sizes))
  global_batch = int(bounds[-1])

  def shard(ctx):
    r = ctx.replica_id_in_sync_group
    rows = slice(bounds[r], bounds[r + 1])
    feats = tf.constant(x[rows])
    labs = tf.constant(labels[rows]) if labels is not None else None
    return (feats, labs) if labels is not None else feats

  values = strategy.experimental_distribute_values_from_function(shard)

  def step(inputs):
    if labels is not None:
      feats, labs = inputs
    else:
      feats, labs = inputs, None
    with tf.GradientTape() as tape:
      tape.watch(feats)
      per_sample = losses.supcon_loss(feats, labs, **kwargs)
      # Explicit global batch: with unequal shards the default (local batch times
      # replicas) would be wrong.
      reduced = losses.per_replica_mean(per_sample, global_batch_size=global_batch)
    return per_sample, reduced, tape.gradient(reduced, feats)

  @tf.function
  def run(values):
    per_sample, reduced, grads = strategy.run(step, args=(values,))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, reduced, axis=None)
    return per_sample, reduced, grads, total

  per_sample, reduced, grads, total = run(values)
  unpack = strategy.experimental_local_results
  return ([t.numpy() for t in unpack(per_sample)],
          [t.numpy() for t in unpack(reduced)],
          [t.numpy() for t in unpack(grads)],
          total.numpy())


def _check_equivalence(num_replicas, mode, sizes=None, seed=0, strategy=None):
  use_labels, kwargs = _split(mode)
  x = _features(seed)
  labels = LABELS if use_labels else None
  want_losses, want_mean, want_grad = _single_device(x, labels, kwargs)

  per_sample, reduced, grads, total = _distributed(
      strategy or _strategy(num_replicas), x, labels, kwargs, sizes)
  if sizes is not None:
    assert [len(p) for p in per_sample] == list(sizes)

  # (a) per-sample losses.
  np.testing.assert_allclose(np.concatenate(per_sample), want_losses, rtol=1e-5,
                             atol=1e-6)
  # (b) gradients of the replica-reduced loss == single-device grad of the mean.
  np.testing.assert_allclose(np.concatenate(grads), want_grad, rtol=1e-5,
                             atol=1e-6)
  # (c) the reduced losses sum to the single-device mean.
  np.testing.assert_allclose(np.sum(reduced), want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, want_mean, rtol=1e-5, atol=1e-6)

  # (d) each shard on its own gives something else.
  bounds = np.cumsum([0] + list(sizes or [GLOBAL_BATCH // num_replicas] *
                                num_replicas))
  local = np.concatenate([
      losses.supcon_loss(x[a:b], None if labels is None else labels[a:b],
                         **kwargs).numpy()
      for a, b in zip(bounds[:-1], bounds[1:])
  ])
  assert not np.allclose(local, np.concatenate(per_sample), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("num_replicas", [2, 4])
def test_replicas_equal_single_device(num_replicas, mode):
  _check_equivalence(num_replicas, MODES[mode])


@pytest.mark.parametrize("mode", ["supcon", "simclr", "capped"])
def test_unequal_local_batches(mode):
  # Replicas 0..3 hold 5, 3, 6 and 2 samples.
  _check_equivalence(4, MODES[mode], sizes=[5, 3, 6, 2], seed=1)


def test_reduction_to_one_device_cross_device_ops():
  # Not the default on CPU (collectives are), but what mixed CPU/GPU setups get.
  strategy = testing.mirrored_cpu_strategy(
      2, cross_device_ops=tf.distribute.ReductionToOneDevice())
  _check_equivalence(2, MODES["capped"], strategy=strategy)


def test_default_per_replica_mean_divides_by_global_batch():
  strategy = _strategy(4)
  values = strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.fill([3], tf.cast(ctx.replica_id_in_sync_group, tf.float32)))

  @tf.function
  def run(values):
    reduced = strategy.run(losses.per_replica_mean, args=(values,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, reduced, axis=None)

  # Mean of [0,0,0,1,1,1,2,2,2,3,3,3] == 1.5.
  np.testing.assert_allclose(run(values).numpy(), 1.5, rtol=1e-6)


def test_replica_context_with_one_replica_is_single_device():
  strategy = testing.mirrored_cpu_strategy(1)
  x = _features(2)
  want = losses.supcon_loss(x, LABELS).numpy()
  got = strategy.run(tf.function(lambda: losses.supcon_loss(x, LABELS)))
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
