"""Tests of supcon_tf.models.model: SupConModel and build_model."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf.models import blocks as blocks_lib
from supcon_tf.models import heads
from supcon_tf.models import model as model_lib
from supcon_tf.models import resnet
from tests.models import common


def _tiny_model(num_classes=5, normalize_embedding=True, stop_gradient=True,
                zero_initialize=False, projection_batch_norm=False):
  return model_lib.SupConModel(
      encoder=resnet.ResNet(18, **common.TINY),
      projection_head=heads.ProjectionHead(
          (16, 8), use_batch_norm=projection_batch_norm),
      classifier=heads.LinearClassifier(
          num_classes, zero_initialize=zero_initialize,
          stop_gradient=stop_gradient),
      normalize_embedding=normalize_embedding)


# ---------------------------------------------------------------------------
# SupConModel.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_embedding", [True, False])
def test_supcon_model_outputs(normalize_embedding):
  model = _tiny_model(num_classes=7, normalize_embedding=normalize_embedding)
  images = common.images(batch=3, size=8, scale=100.0)
  outputs = model(images, training=False)
  assert set(outputs) == {"embedding", "projection", "logits"}
  assert outputs["embedding"].shape == (3, 64)
  assert outputs["projection"].shape == (3, 8)
  assert outputs["logits"].shape == (3, 7)
  assert outputs["projection"].dtype == tf.float32
  assert outputs["logits"].dtype == tf.float32
  np.testing.assert_allclose(
      tf.norm(outputs["projection"], axis=-1).numpy(), 1.0, atol=1e-5)
  h = outputs["embedding"]
  # h is returned un-normalised (inputs are large).
  assert not np.allclose(tf.norm(h, axis=-1).numpy(), 1.0, atol=1e-2)
  head_input = tf.math.l2_normalize(h, axis=-1) if normalize_embedding else h
  np.testing.assert_allclose(model.head_input(h).numpy(), head_input.numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      outputs["logits"].numpy(), model.classifier(head_input).numpy(),
      rtol=1e-4, atol=1e-5)
  # The separate entry points compose to call().
  np.testing.assert_allclose(model.encode(images).numpy(), h.numpy(), atol=1e-5)
  np.testing.assert_allclose(model.project(h).numpy(),
                             outputs["projection"].numpy(), atol=1e-5)
  np.testing.assert_allclose(model.classify(h).numpy(),
                             outputs["logits"].numpy(), atol=1e-5)


def test_zero_initialized_classifier_gives_zero_logits():
  model = _tiny_model(zero_initialize=True)
  logits = model(common.images(batch=2, size=8))["logits"]
  np.testing.assert_array_equal(logits.numpy(), np.zeros((2, 5)))


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_classifier_stop_gradient(stop_gradient):
  model = _tiny_model(stop_gradient=stop_gradient)
  images = common.images(batch=4, size=8)
  labels = tf.constant([0, 1, 2, 3])
  with tf.GradientTape() as tape:
    logits = model(images, training=True)["logits"]
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
  encoder_vars = model.encoder.trainable_variables
  classifier_vars = model.classifier.trainable_variables
  grads = tape.gradient(loss, encoder_vars + classifier_vars)
  encoder_grads = grads[:len(encoder_vars)]
  classifier_grads = grads[len(encoder_vars):]
  assert all(g is not None and np.any(g.numpy() != 0) for g in classifier_grads)
  encoder_norm = sum(float(tf.reduce_sum(tf.abs(g)))
                     for g in encoder_grads if g is not None)
  if stop_gradient:
    assert encoder_norm == 0.0
  else:
    assert encoder_norm > 0.0


def test_projection_gradient_reaches_encoder():
  model = _tiny_model()
  images = common.images(batch=4, size=8)
  with tf.GradientTape() as tape:
    z = model(images, training=True)["projection"]
    loss = tf.reduce_sum(z[:, 0])
  grads = tape.gradient(loss, model.encoder.trainable_variables)
  assert all(g is not None for g in grads)
  assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_calling_twice_creates_no_new_variables():
  model = _tiny_model(projection_batch_norm=True)
  images = common.images(batch=2, size=8)
  model(images, training=True)
  variables = [v.ref() for v in model.variables]
  model(images, training=False)
  model(images, training=True)
  model.project(model.encode(images), training=True)
  assert [v.ref() for v in model.variables] == variables
  names = [v.name for v in model.variables]
  assert len(set(names)) == len(names)


@pytest.mark.parametrize("build_before_restore", [True, False])
def test_checkpoint_round_trip(tmp_path, build_before_restore):
  images = common.images(batch=2, size=8)
  model = _tiny_model(projection_batch_norm=True)
  model(images, training=True)  # Moves BN statistics away from init.
  expected = model(images, training=False)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  restored = _tiny_model(projection_batch_norm=True)
  if build_before_restore:
    restored(images, training=False)
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
  else:
    # Deferred restoration: values are assigned when the variables are created.
    status = tf.train.Checkpoint(model=restored).restore(path)
    restored(images, training=False)
    status.assert_consumed()
  actual = restored(images, training=False)
  for key in expected:
    np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(),
                               atol=1e-6)


def test_mixed_bfloat16_policy():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = _tiny_model()
    outputs = model(common.images(batch=2, size=8), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert outputs["embedding"].dtype == tf.bfloat16
  assert outputs["projection"].dtype == tf.float32
  assert outputs["logits"].dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in model.variables)
  np.testing.assert_allclose(
      tf.norm(outputs["projection"], axis=-1).numpy(), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------
# build_model.
# ---------------------------------------------------------------------------
def test_build_model_from_config():
  model_config = config_lib.ModelConfig(
      resnet_depth=34, resnet_width=0.125, first_conv_kernel_size=3,
      first_conv_stride=1, use_initial_max_pool=False,
      projection_head_layers=(32, 16), use_projection_batch_norm=True,
      normalize_embedding=False, stop_gradient_before_classification_head=False,
      zero_initialize_classifier=True, batch_norm_momentum=0.8,
      batch_norm_epsilon=1e-3, zero_init_last_block_gamma=True)
  model = model_lib.build_model(model_config, num_classes=10)
  outputs = model(common.images(batch=2, size=8), training=False)
  assert outputs["embedding"].shape == (2, 64)
  assert outputs["projection"].shape == (2, 16)
  assert outputs["logits"].shape == (2, 10)
  np.testing.assert_array_equal(outputs["logits"].numpy(), 0.0)
  encoder = model.encoder
  assert isinstance(encoder, resnet.ResNet)
  assert encoder.depth == 34 and encoder.stem_pool is None
  assert encoder.version == 1 and encoder.final_bn is None
  assert encoder.stem_conv.kernel_size == (3, 3)
  assert encoder.stem_conv.strides == (1, 1)
  assert [len(s) for s in encoder.stages] == [3, 4, 6, 3]
  assert encoder.zero_init_last_block_gamma
  assert model.projection_head.layer_sizes == (32, 16)
  assert model.projection_head.use_batch_norm
  assert not model.normalize_embedding
  assert not model.classifier.stop_gradient
  batch_norms = common.layers_of_type(model, keras.layers.BatchNormalization)
  assert batch_norms and all(
      bn.momentum == 0.8 and bn.epsilon == 1e-3 and not bn.synchronized
      for bn in batch_norms)


@pytest.mark.parametrize("normalization, channels", [
    (config_lib.InputNormalization.CIFAR10, 3), (config_lib.InputNormalization.IMAGENET, 1)])
def test_input_normalization_whitens_before_the_encoder(normalization, channels):
  model_config = config_lib.ModelConfig(
      resnet_depth=18, resnet_width=0.125, first_conv_kernel_size=3, first_conv_stride=1,
      use_initial_max_pool=False, projection_head_layers=(8,),
      input_normalization=normalization)
  model = model_lib.build_model(model_config, num_classes=3)
  images = tf.random.uniform((2, 8, 8, channels), seed=1)
  h = model(images)["embedding"]
  mean, std = model_lib.INPUT_NORMALIZATIONS[normalization]
  if channels == 1:  # RGB constants on a gray image: their averages
    mean, std = [np.mean(mean)], [np.mean(std)]
  whitened = (images - np.array(mean, np.float32)) / np.array(std, np.float32)
  np.testing.assert_allclose(h, model.encoder(whitened), rtol=1e-5, atol=1e-5)
  assert not np.allclose(h, model.encoder(images), atol=1e-3)
  plain = model_lib.build_model(dataclasses.replace(
      model_config, input_normalization=config_lib.InputNormalization.NONE), 3)
  assert plain.whiten(images) is images
  plain(images)
  # Constants, not variables: checkpoints of both models have the same variables.
  assert [v.shape for v in plain.variables] == [v.shape for v in model.variables]


def test_build_model_resnet_v2():
  model_config = config_lib.ModelConfig(
      resnet_architecture=config_lib.ResNetArchitecture.RESNET_V2,
      resnet_depth=50, resnet_width=0.125, first_conv_kernel_size=3,
      first_conv_stride=1, use_initial_max_pool=False,
      projection_head_layers=(32, 16), zero_init_last_block_gamma=True,
      batch_norm_momentum=0.8)
  model = model_lib.build_model(model_config, num_classes=4,
                                synchronized_batch_norm=True)
  outputs = model(common.images(batch=2, size=8), training=True)
  assert outputs["embedding"].shape == (2, 256)
  assert outputs["projection"].shape == (2, 16)
  assert outputs["logits"].shape == (2, 4)
  encoder = model.encoder
  assert encoder.version == 2 and encoder.depth == 50
  assert encoder.stem_bn is None and encoder.final_bn is not None
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(isinstance(b, blocks_lib.BottleneckBlockV2) for b in blocks)
  assert all(np.all(b.conv3.kernel.numpy() == 0) for b in blocks)
  batch_norms = common.layers_of_type(encoder, keras.layers.BatchNormalization)
  assert encoder.final_bn in batch_norms
  assert all(bn.synchronized and bn.momentum == 0.8 for bn in batch_norms)


def test_build_model_defaults_and_invalid_depth():
  model = model_lib.build_model(config_lib.ModelConfig(), num_classes=3)
  assert model.encoder.depth == 50
  assert model.encoder.output_dim == 2048
  assert model.encoder.stem_conv.kernel_size == (7, 7)
  assert model.projection_head.layer_sizes == (2048, 128)
  assert model.classifier.stop_gradient and model.normalize_embedding
  with pytest.raises(ValueError, match="depth"):
    model_lib.build_model(config_lib.ModelConfig(resnet_depth=42), num_classes=3)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
