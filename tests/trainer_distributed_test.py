"""The replica step on 2 and 4 virtual CPUs: XLA pieces around the gather, global
BatchNorm in the projection head, the frozen-BN modes."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import trainer as trainer_lib
from tests import testing

_BATCH = 16


def _config(model_dir, *, jit=False, global_bn=True, projection_bn=False,
            stage_1=None, stage_2_steps=0):
  # Base LR 16 at batch 16 is a learning rate of 1: one SGD step (no momentum
  # history yet) moves every variable by minus its gradient.
  stage_1 = stage_1 or config_lib.StageConfig(
      steps=1, base_learning_rate=256.0 / _BATCH, momentum=0.0, weight_decay=1e-3,
      contrastive_loss_weight=1.0)
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=16),
      model=config_lib.ModelConfig(
          resnet_depth=18, resnet_width=0.125, first_conv_kernel_size=3,
          first_conv_stride=1, use_initial_max_pool=False, projection_head_layers=(16, 8),
          use_projection_batch_norm=projection_bn, use_global_batch_norm=global_bn),
      stage_1=stage_1,
      stage_2=config_lib.StageConfig(steps=stage_2_steps, base_learning_rate=16.0,
                                     momentum=0.0, cross_entropy_loss_weight=1.0,
                                     update_encoder_batch_norm=False),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), batch_size=_BATCH,
                                       eval_batch_size=_BATCH, jit_compile=jit))


def _batch(strategy, seed=0, num_views=2):
  rng = np.random.default_rng(seed)
  views = rng.random((_BATCH, num_views, 16, 16, 3)).astype(np.float32)
  labels = (np.arange(_BATCH) * 3 % 4).astype(np.int32)
  per = _BATCH // strategy.num_replicas_in_sync

  def fn(ctx):
    lo = ctx.replica_id_in_sync_group * per
    return {"views": tf.constant(views[lo:lo + per]),
            "labels": tf.constant(labels[lo:lo + per])}
  return strategy.experimental_distribute_values_from_function(fn), views, labels


def _one_step(cfg, strategy, model_dir, stage=1):
  keras.utils.set_random_seed(11)
  trainer = trainer_lib.Trainer(cfg, strategy, testing.synthetic_source(64, 16),
                                str(model_dir), verbose=False)
  before = [v.numpy() for v in trainer.train_vars[stage]]
  plan = trainer.stages[stage - 1]
  metrics = trainer.train_step(stage, _batch(strategy, num_views=plan.num_views)[0])
  grads = [b - v.numpy() for b, v in zip(before, trainer.train_vars[stage])]  # lr = 1
  return trainer, metrics, grads


def _relative_error(a, b):
  """||a - b|| / ||a|| over lists of arrays (the gradients of all variables)."""
  num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b))
  return np.sqrt(num / sum(float(np.sum(x ** 2)) for x in a))


# XLA and TensorFlow's kernels agree to ~1e-6 except in BatchNorm's training-mode
# gradient, where they differ by ~1% on this tiny ResNet even on one device. The
# compiled forward pass is therefore compared with the encoder's BN in inference
# mode (the frozen-BN stage setting); with global BN (training mode) the forward
# pass on CPU replicas runs uncompiled and everything after the gather is compiled.
@pytest.mark.parametrize("replicas,global_bn", [(2, False), (4, False), (2, True),
                                                (4, True)])
def test_xla_step_equals_plain_step_on_replicas(tmp_path, replicas, global_bn):
  strategy = testing.mirrored_cpu_strategy(replicas)
  results = []
  for jit in (False, True):
    cfg = _config(tmp_path / str(jit), jit=jit, global_bn=global_bn,
                  projection_bn=global_bn)
    if not global_bn:
      cfg = dataclasses.replace(cfg, stage_1=dataclasses.replace(
          cfg.stage_1, update_encoder_batch_norm=False))
    trainer, metrics, grads = _one_step(cfg, strategy, tmp_path / str(jit))
    results.append((metrics, grads))
    if jit:
      _, forward, loss = trainer._step_fns[1]  # pylint: disable=protected-access
      compiled = tf.types.experimental.PolymorphicFunction
      assert isinstance(loss, compiled)  # the loss math is compiled in every case
      # With global BN on CPU replicas the forward pass holds collectives: uncompiled.
      assert isinstance(forward, compiled) == (not global_bn)
  (plain, plain_grads), (xla, xla_grads) = results
  assert plain["contrastive_loss"] > 0 and plain["weight_decay_loss"] > 0
  for name in ("loss", "contrastive_loss", "weight_decay_loss", "gradient_norm"):
    np.testing.assert_allclose(xla[name], plain[name], rtol=1e-5, err_msg=name)
  assert len(plain_grads) == len(xla_grads) > 0
  assert _relative_error(plain_grads, xla_grads) < 1e-5
