"""The memory queue (--memory_size) and the momentum encoder (--momentum_encoder):
queue contents in order with wrap-around, identical copies on 2 replicas, saved and
restored, the EMA of the weights against NumPy, and the first step's loss with an
empty queue equal to plain SupCon."""

import dataclasses
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import train
from supcon_tf import validation
from supcon_tf.train import memory
from supcon_tf.train import preemption
from supcon_tf.train.state import checkpoint_digest
from tests import cli
from tests import testing

_BATCH = 8
_VIEWS = 2


def test_queue_keeps_the_last_entries_in_order_across_wrap_around():
  queue = memory.ProjectionQueue(size=5, dim=2)
  appended_f, appended_l = [], []
  rng = np.random.default_rng(0)
  for n in (3, 3, 1, 7, 2):  # 7 > size: only its newest 5 survive
    f = rng.random((n, 2)).astype(np.float32)
    l = rng.integers(0, 9, n).astype(np.int32)
    queue.enqueue(tf.constant(f), tf.constant(l))
    appended_f.append(f)
    appended_l.append(l)
    all_f, all_l = np.concatenate(appended_f), np.concatenate(appended_l)
    got_f, got_l = queue.ordered()
    np.testing.assert_array_equal(got_f, all_f[-5:])
    np.testing.assert_array_equal(got_l, all_l[-5:])
    assert int(queue.count.numpy()) == len(all_l)
    valid = queue.memory(use_labels=True).valid.numpy()
    assert valid.sum() == min(5, len(all_l))
  assert queue.memory(use_labels=False).labels is None


def test_a_bad_queue_is_refused():
  with pytest.raises(ValueError, match="size > 0"):
    memory.ProjectionQueue(size=0, dim=4)
  with pytest.raises(ValueError, match="momentum must be in"):
    memory.MomentumEncoder(None, None, 1.0)


def _config(model_dir, memory_size, momentum=0.0, learning_rate=0.0, use_labels=True):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=8, num_views=_VIEWS),
      model=config_lib.ModelConfig(
          resnet_depth=18, resnet_width=0.0625, first_conv_kernel_size=3,
          first_conv_stride=1, use_initial_max_pool=False, projection_head_layers=(8, 4),
          use_projection_batch_norm=True),
      loss=config_lib.LossConfig(memory_size=memory_size, momentum_encoder=momentum,
                                 use_labels=use_labels),
      stage_1=config_lib.StageConfig(steps=4, base_learning_rate=learning_rate,
                                     weight_decay=0.0, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=0),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), batch_size=_BATCH,
                                       eval_batch_size=_BATCH, projector_examples=0))


def _batch(strategy, seed):
  rng = np.random.default_rng(seed)
  views = rng.random((_BATCH, _VIEWS, 8, 8, 3)).astype(np.float32)
  labels = rng.integers(0, 3, _BATCH).astype(np.int32)
  per = _BATCH // strategy.num_replicas_in_sync

  def fn(ctx):
    lo = ctx.replica_id_in_sync_group * per
    return {"views": tf.constant(views[lo:lo + per]),
            "labels": tf.constant(labels[lo:lo + per])}
  return strategy.experimental_distribute_values_from_function(fn), views, labels


def _trainer(cfg, strategy):
  keras.utils.set_random_seed(3)
  return train.Trainer(cfg, strategy, testing.synthetic_source(32, 8), cfg.runtime.model_dir,
                       verbose=False)


def _projections(model, views):
  """One device, the whole global batch: z [B * V, P] sample-major (BN in training
  mode: the batch's statistics, which global BN gives on replicas too)."""
  flat = tf.reshape(views, [-1] + list(views.shape[2:]))
  return model.project(model.encode(flat, training=True), training=True).numpy()


def _copies(strategy, variable):
  return [v.numpy() for v in strategy.experimental_local_results(variable)]


@pytest.mark.parametrize("replicas,use_labels", [(1, True), (2, True), (2, False)])
def test_queue_holds_the_last_gathered_projections_and_survives_a_restore(
    tmp_path, replicas, use_labels):
  # Learning rate 0: the weights stay put, so each step's projections can be
  # recomputed on one device from the global batch afterwards.
  strategy = testing.mirrored_cpu_strategy(replicas)
  cfg = _config(tmp_path, memory_size=20, use_labels=use_labels)  # 16 per step: wraps
  trainer = _trainer(cfg, strategy)
  queue = trainer.state.queue
  batches = []
  for seed in range(3):
    distributed, views, labels = _batch(strategy, seed)
    trainer.train_step(1, distributed)
    batches.append((views, labels))
  want_f = np.concatenate([_projections(trainer.model, v) for v, _ in batches])[-20:]
  want_l = np.concatenate([np.repeat(l, _VIEWS) for _, l in batches])[-20:]
  got_f, got_l = queue.ordered()
  # Global BN on replicas sums its statistics in another order: ~1e-5 apart.
  np.testing.assert_allclose(got_f, want_f, atol=5e-5)
  np.testing.assert_array_equal(got_l, want_l)
  for name in ("features", "labels", "count"):  # the replicas' copies are identical
    copies = _copies(strategy, getattr(queue, name))
    for copy in copies[1:]:
      np.testing.assert_array_equal(copy, copies[0])

  trainer.save()
  restored = _trainer(cfg, strategy)
  restored.restore()
  for name in ("features", "labels", "count"):
    for copy in _copies(strategy, getattr(restored.state.queue, name)):
      np.testing.assert_array_equal(copy, getattr(queue, name).numpy())


@pytest.mark.parametrize("replicas", [1, 2])
def test_an_empty_queue_gives_the_plain_loss(tmp_path, replicas):
  strategy = testing.mirrored_cpu_strategy(replicas)
  losses_seen = []
  for size in (0, 64):
    trainer = _trainer(_config(tmp_path / str(size), memory_size=size,
                               learning_rate=1.0), strategy)
    distributed, _, _ = _batch(strategy, 0)
    losses_seen.append(trainer.train_step(1, distributed)["contrastive_loss"])
  assert losses_seen[1] == pytest.approx(losses_seen[0], rel=1e-6)
  # The second step contrasts against the 16 entries of the first: it differs.
  distributed, _, _ = _batch(strategy, 1)
  trainer.reset_metrics()
  with_queue = trainer.train_step(1, distributed)["contrastive_loss"]
  assert np.isfinite(with_queue)


@pytest.mark.parametrize("replicas", [1, 2])
def test_momentum_encoder_is_the_numpy_ema_of_the_online_model(tmp_path, replicas):
  strategy = testing.mirrored_cpu_strategy(replicas)
  m = 0.75
  trainer = _trainer(_config(tmp_path, memory_size=16, momentum=m, learning_rate=2.0),
                     strategy)
  momentum = trainer.state.momentum
  online = [v for _, v in momentum.pairs]
  assert any("moving_mean" in v.name for v in online)  # BN statistics averaged too
  ema = [v.numpy().astype(np.float64) for v in online]
  for key, value in momentum.pairs:  # starts as a copy
    np.testing.assert_array_equal(key.numpy(), value.numpy())
  for seed in range(3):
    distributed, views, _ = _batch(strategy, seed)
    # The keys of this step: the momentum model (as it is before the step) on the batch.
    keys = momentum.project(tf.reshape(views, [-1, 8, 8, 3])).numpy()
    trainer.train_step(1, distributed)
    ema = [m * e + (1 - m) * v.numpy() for e, v in zip(ema, online)]
    for (key, _), want in zip(momentum.pairs, ema):
      np.testing.assert_allclose(key.numpy(), want, rtol=1e-5, atol=1e-6)
      for copy in _copies(strategy, key):
        np.testing.assert_array_equal(copy, key.numpy())
  newest, _ = trainer.state.queue.ordered()
  np.testing.assert_allclose(newest, keys, atol=5e-5)  # the last keys (global BN: ~1e-5)
  # The online model moved: the momentum model is not it.
  assert any(not np.allclose(k.numpy(), v.numpy()) for k, v in momentum.pairs)


def test_momentum_encoder_projections_keep_its_moving_statistics(tmp_path):
  strategy = tf.distribute.get_strategy()
  trainer = _trainer(_config(tmp_path, memory_size=8, momentum=0.5), strategy)
  momentum = trainer.state.momentum
  before = [v.numpy() for v in momentum._statistics]  # pylint: disable=protected-access
  momentum.project(tf.random.uniform((4, 8, 8, 3)))
  for v, b in zip(momentum._statistics, before):  # pylint: disable=protected-access
    np.testing.assert_array_equal(v.numpy(), b)


def test_the_queue_needs_a_contrastive_stage_and_no_cap(tmp_path):
  cfg = _config(tmp_path, memory_size=8)
  for change, message in (
      (dict(loss=dataclasses.replace(cfg.loss, memory_size=-1)), "--memory_size must be >= 0"),
      (dict(loss=dataclasses.replace(cfg.loss, momentum_encoder=1.0)), r"in \[0, 1\)"),
      (dict(loss=dataclasses.replace(cfg.loss, memory_size=0, momentum_encoder=0.9)),
       "needs --memory_size"),
      (dict(loss=dataclasses.replace(cfg.loss, positives_cap=2)), "--positives_cap is not"),
      (dict(stage_1=dataclasses.replace(cfg.stage_1, contrastive_loss_weight=0.0,
                                        cross_entropy_loss_weight=1.0)),
       "no stage trains with the contrastive loss")):
    with pytest.raises(config_lib.ConfigError, match=message):
      validation.validate(dataclasses.replace(cfg, **change))


def test_killed_run_with_queue_and_momentum_resumes_bit_identically(tmp_path, fake_data):
  """The CLI on 2 virtual CPUs with --deterministic: SIGKILL after the checkpoint of
  step 2, rerun: queue, momentum model and all ends bit-identical to a straight run."""
  plan = ("--deterministic", "--stage_1_steps=5", "--stage_2_steps=0", "--stage_2_epochs=0",
          "--steps_per_loop=1", "--checkpoint_steps=2", "--mode=train",
          "--export_at_end=false", "--summary_images=0", "--projector_examples=0",
          "--memory_size=40", "--momentum_encoder=0.9")

  def run(model_dir, kill_at=None):
    env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
    if kill_at:
      env[preemption.KILL_AT_STEP_ENV] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "supcon_tf.run"] +
                          cli.tiny_args(model_dir, fake_data, *plan), cwd=testing.REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)

  straight = run(tmp_path / "straight")
  assert straight.returncode == 0, straight.stderr[-3000:]
  latest = tf.train.latest_checkpoint(str(tmp_path / "straight"))
  names = [n for n, _ in tf.train.list_variables(latest)]
  assert any(n.startswith("memory/") for n in names)
  assert any(n.startswith("momentum_model/") for n in names)
  assert tf.train.load_variable(latest, "memory/count/.ATTRIBUTES/VARIABLE_VALUE") == 5 * 32
  killed = run(tmp_path / "killed", kill_at=3)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  resumed = run(tmp_path / "killed")
  assert resumed.returncode == 0 and "resuming at stage step 2" in resumed.stdout, (
      resumed.stderr[-3000:])
  assert checkpoint_digest(tf.train.latest_checkpoint(str(tmp_path / "killed"))) == (
      checkpoint_digest(latest))


def test_export_momentum_encoder_exports_the_momentum_model(tmp_path):
  strategy = testing.mirrored_cpu_strategy(2)
  cfg = _config(tmp_path, memory_size=16, momentum=0.5, learning_rate=2.0)
  cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(
      cfg.runtime, export_momentum_encoder=True))
  trainer = _trainer(cfg, strategy)
  for seed in range(2):
    trainer.train_step(1, _batch(strategy, seed)[0])
  paths = trainer.export(str(tmp_path / "export"))
  images = tf.random.stateless_uniform((4, 8, 8, 3), (1, 2))
  loaded = tf.saved_model.load(paths["encoder"])
  got = loaded(images, training=False).numpy()
  momentum_model = trainer.state.momentum.model
  np.testing.assert_allclose(got, momentum_model.encode(images).numpy(), atol=1e-5)
  assert not np.allclose(got, trainer.model.encode(images).numpy(), atol=1e-3)
  with pytest.raises(config_lib.ConfigError, match="needs --momentum_encoder"):
    validation.validate(dataclasses.replace(
        cfg, loss=dataclasses.replace(cfg.loss, momentum_encoder=0.0)))
