"""The replica step under MirroredStrategy (float32 / bfloat16, synchronised BN),
float16 loss scaling, and XLA on one device."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import train
from tests import testing


def _source(n=16, size=16, channels=3, classes=4, seed=0):
  return testing.synthetic_source(n, size, channels, classes, seed=seed)


def _r50_config(precision, model_dir, global_bn=True):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=16),
      model=config_lib.ModelConfig(
          resnet_depth=50, resnet_width=0.25, first_conv_kernel_size=3,
          first_conv_stride=1, use_initial_max_pool=False, projection_head_layers=(32, 16),
          use_global_batch_norm=global_bn),
      stage_1=config_lib.StageConfig(steps=1, base_learning_rate=0.1,
                                     optimizer=config_lib.Optimizer.LARS,
                                     weight_decay=1e-4, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=0),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), batch_size=8,
                                       eval_batch_size=8, precision=precision))


@pytest.mark.parametrize("precision", [config_lib.Precision.FLOAT32,
                                       config_lib.Precision.BFLOAT16])
def test_resnet50_step_mirrored_sync_bn(tmp_path, precision):
  strategy = testing.mirrored_cpu_strategy(2)
  cfg = _r50_config(precision, tmp_path)
  trainer = train.Trainer(cfg, strategy, _source(), str(tmp_path), verbose=False)
  rng = np.random.default_rng(1)
  views = rng.random((8, 2, 16, 16, 3)).astype(np.float32)
  labels = np.array([0, 1, 0, 1, 2, 3, 2, 3], np.int32)

  def per_replica(ctx):
    lo = ctx.replica_id_in_sync_group * 4
    return {"views": tf.constant(views[lo:lo + 4]), "labels": tf.constant(labels[lo:lo + 4])}

  batch = strategy.experimental_distribute_values_from_function(per_replica)
  encoder = trainer.model.encoder
  # The statistics the first BN must see: the stem conv over the *global* batch of
  # views, each replica's views flattened sample-major as the step does.
  flat = np.concatenate([views[:4].reshape(-1, 16, 16, 3), views[4:].reshape(-1, 16, 16, 3)])
  stem = tf.cast(encoder.stem_conv(tf.constant(flat)), tf.float32).numpy()
  expected_mean = stem.mean(axis=(0, 1, 2))
  expected_var = stem.var(axis=(0, 1, 2))

  metrics = trainer.train_step(1, batch)
  assert np.isfinite(metrics["loss"]) and metrics["contrastive_loss"] > 0
  assert all(v.dtype == tf.float32 for v in trainer.model.variables)
  if precision == config_lib.Precision.BFLOAT16:
    assert encoder.stem_conv.compute_dtype == "bfloat16"
    head = trainer.model.projection_head
    assert head.dense_layers[0].compute_dtype == "bfloat16"
    # The heads' last layers compute in float32: the projection and the logits.
    assert head.dense_layers[-1].compute_dtype == "float32"
    assert trainer.model.classifier.dense.compute_dtype == "float32"
  bn = encoder.stem_bn
  assert bn.synchronized
  means = [v.numpy() for v in bn.moving_mean.values]
  variances = [v.numpy() for v in bn.moving_variance.values]
  assert len(means) == 2
  np.testing.assert_allclose(means[0], means[1], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(variances[0], variances[1], rtol=1e-6, atol=1e-7)
  tol = dict(rtol=1e-4, atol=1e-5) if precision == config_lib.Precision.FLOAT32 else dict(
      rtol=3e-2, atol=3e-3)
  # momentum 0.9: moving = 0.9 * initial + 0.1 * batch statistic
  np.testing.assert_allclose(means[0], 0.1 * expected_mean, **tol)
  np.testing.assert_allclose(variances[0], 0.9 + 0.1 * expected_var, **tol)


def test_local_batch_norm_statistics_differ_per_replica(tmp_path):
  strategy = testing.mirrored_cpu_strategy(2)
  cfg = _r50_config(config_lib.Precision.FLOAT32, tmp_path, global_bn=False)
  cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resnet_depth=18))
  trainer = train.Trainer(cfg, strategy, _source(), str(tmp_path), verbose=False)
  rng = np.random.default_rng(2)
  views = rng.random((8, 2, 16, 16, 3)).astype(np.float32)
  views[4:] *= 0.2  # replica 1 sees darker images
  labels = np.array([0, 1, 0, 1, 2, 3, 2, 3], np.int32)
  batch = strategy.experimental_distribute_values_from_function(
      lambda ctx: {"views": tf.constant(views[4 * ctx.replica_id_in_sync_group:][:4]),
                   "labels": tf.constant(labels[4 * ctx.replica_id_in_sync_group:][:4])})
  trainer.train_step(1, batch)
  bn = trainer.model.encoder.stem_bn
  assert not bn.synchronized
  means = [v.numpy() for v in bn.moving_mean.values]
  assert not np.allclose(means[0], means[1])


def test_float16_uses_dynamic_loss_scaling(tmp_path):
  cfg = _r50_config(config_lib.Precision.FLOAT16, tmp_path)
  cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resnet_depth=18))
  strategy = tf.distribute.get_strategy()
  trainer = train.Trainer(cfg, strategy, _source(), str(tmp_path), verbose=False)
  assert isinstance(trainer.optimizers[1], keras.mixed_precision.LossScaleOptimizer)
  rng = np.random.default_rng(3)
  batch = {"views": tf.constant(rng.random((8, 2, 16, 16, 3)), tf.float32),
           "labels": tf.constant(np.arange(8) % 4, tf.int32)}
  metrics = trainer.train_step(1, batch)
  assert np.isfinite(metrics["loss"])
  assert all(v.dtype == tf.float32 for v in trainer.model.variables)


def test_jit_compile_step_matches_plain_step(tmp_path):
  rng = np.random.default_rng(4)
  batch = {"views": tf.constant(rng.random((8, 2, 16, 16, 3)), tf.float32),
           "labels": tf.constant(np.arange(8) % 4, tf.int32)}
  losses = []
  for jit in (False, True):
    cfg = _r50_config(config_lib.Precision.FLOAT32, tmp_path / str(jit))
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, resnet_depth=18),
        runtime=dataclasses.replace(cfg.runtime, jit_compile=jit))
    keras.utils.set_random_seed(7)
    trainer = train.Trainer(cfg, tf.distribute.get_strategy(), _source(),
                                  str(tmp_path / str(jit)), verbose=False)
    losses.append(trainer.train_step(1, batch)["loss"])
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_loss_chunk_size_step_matches_plain_step(tmp_path):
  """--loss_chunk_size: the same step (loss and updated weights) as the plain loss."""
  rng = np.random.default_rng(5)
  batch = {"views": tf.constant(rng.random((8, 2, 16, 16, 3)), tf.float32),
           "labels": tf.constant(np.arange(8) % 4, tf.int32)}
  results = []
  for chunk in (0, 5):  # 16 anchor rows: chunks of 5, 5, 5 and 1
    cfg = _r50_config(config_lib.Precision.FLOAT32, tmp_path / str(chunk))
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, resnet_depth=18),
        loss=dataclasses.replace(cfg.loss, loss_chunk_size=chunk))
    keras.utils.set_random_seed(7)
    trainer = train.Trainer(cfg, tf.distribute.get_strategy(), _source(),
                            str(tmp_path / str(chunk)), verbose=False)
    metrics = trainer.train_step(1, batch)
    results.append((metrics["contrastive_loss"],
                    [v.numpy() for v in trainer.model.trainable_variables]))
  assert results[0][0] > 0
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
  for chunked, plain in zip(results[1][1], results[0][1]):
    np.testing.assert_allclose(chunked, plain, rtol=1e-4, atol=1e-5)
