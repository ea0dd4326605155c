"""Learning-rate schedules, LARS with type-based exclusion, weight-decay selection."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import optim
from supcon_tf.config import LearningRateDecay, ModelConfig, Optimizer, StageConfig
from supcon_tf.models import build_model


def test_learning_rate_scaling():
  assert optim.scaled_learning_rate(0.3, 4096) == pytest.approx(4.8)
  assert optim.scaled_learning_rate(0.5, 256) == pytest.approx(0.5)


def test_warmup_then_cosine_closed_form():
  stage = StageConfig(base_learning_rate=0.4, warmup_epochs=2)
  # batch 512 -> peak 0.8; 10 steps/epoch -> 20 warmup steps; 100 total steps.
  sched = optim.learning_rate_schedule(stage, 512, 10, 100)
  peak = 0.8
  for step in (0, 5, 10, 20):
    assert float(sched(step)) == pytest.approx(peak * step / 20, rel=1e-6)
  for step in (20, 40, 60, 99, 100):
    expected = peak * 0.5 * (1 + math.cos(math.pi * (step - 20) / 80))
    assert float(sched(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_no_warmup_and_constant_decay():
  cosine = optim.learning_rate_schedule(StageConfig(base_learning_rate=0.1), 256, 10, 50)
  assert float(cosine(0)) == pytest.approx(0.1)
  assert float(cosine(25)) == pytest.approx(0.05, rel=1e-5)
  const = optim.learning_rate_schedule(
      StageConfig(base_learning_rate=0.1, warmup_epochs=1,
                  learning_rate_decay=LearningRateDecay.NONE), 256, 10, 50)
  assert float(const(5)) == pytest.approx(0.05)
  assert [float(const(s)) for s in (10, 30, 50)] == pytest.approx([0.1] * 3)


@pytest.fixture(scope="module")
def tiny_model():
  cfg = ModelConfig(resnet_depth=18, resnet_width=0.0625, first_conv_kernel_size=3,
                    first_conv_stride=1, use_initial_max_pool=False,
                    projection_head_layers=(8, 4))
  model = build_model(cfg, num_classes=3)
  model(tf.zeros([1, 8, 8, 1]))
  return model


def test_kernel_variables_selected_by_layer_type(tiny_model):
  kernels = optim.kernel_variables(tiny_model)
  kernel_refs = {k.ref() for k in kernels}
  bn_vars, biases = [], []
  for layer in tiny_model._flatten_layers():
    if isinstance(layer, keras.layers.BatchNormalization):
      bn_vars += layer.trainable_variables
    if isinstance(layer, keras.layers.Dense) and layer.bias is not None:
      biases.append(layer.bias)
  assert bn_vars and biases
  assert not any(v.ref() in kernel_refs for v in bn_vars + biases)
  # 20 convolutions in ResNet-18 + 2 projection dense layers + 1 classifier.
  assert len(kernels) == 23
  assert all(len(k.shape) in (2, 4) for k in kernels)
  # Everything trainable is a kernel, a BN parameter or a bias.
  assert len(tiny_model.trainable_variables) == len(kernels) + len(bn_vars) + len(biases)


def test_weight_decay_loss():
  a, b = tf.Variable([3.0, 4.0]), tf.Variable([[1.0]])
  assert float(optim.weight_decay_loss([a, b], 0.1)) == pytest.approx(0.1 * (25 + 1) / 2)
  assert float(optim.weight_decay_loss([a], 0.0)) == 0.0


def test_lars_step_against_hand_computation():
  kernel = tf.Variable([[3.0, 4.0]])  # ||w|| = 5
  gamma = tf.Variable([1.0, 2.0])  # not adapted (a BN-like parameter)
  grad_k = tf.constant([[0.6, 0.8]])  # ||g|| = 1
  grad_g = tf.constant([0.5, -0.5])
  opt = optim.create_optimizer(
      StageConfig(optimizer=Optimizer.LARS, momentum=0.9, lars_eta=0.001), 0.1,
      adapted_variables=[kernel])
  opt.apply_gradients([(grad_k, kernel), (grad_g, gamma)])
  # Adapted: trust = eta * ||w|| / ||g|| = 0.005; v = lr * trust * g; w -= v.
  np.testing.assert_allclose(kernel.numpy(), [[3.0, 4.0]] - 0.1 * 0.005 * grad_k.numpy(),
                             rtol=1e-6)
  # Not adapted: plain momentum SGD first step, w -= lr * g.
  np.testing.assert_allclose(gamma.numpy(), [1.0, 2.0] - 0.1 * grad_g.numpy(), rtol=1e-6)
  # Second step: momentum carries over (v = 0.9 v + lr * trust * g).
  v1 = 0.1 * 0.005 * grad_k.numpy()
  w1 = kernel.numpy()
  opt.apply_gradients([(grad_k, kernel), (grad_g, gamma)])
  trust = 0.001 * np.linalg.norm(w1) / 1.0
  np.testing.assert_allclose(kernel.numpy(), w1 - (0.9 * v1 + 0.1 * trust * grad_k.numpy()),
                             rtol=1e-5)


def test_momentum_optimizer_is_sgd():
  v = tf.Variable([1.0])
  opt = optim.create_optimizer(StageConfig(optimizer=Optimizer.MOMENTUM, momentum=0.9), 0.5)
  opt.apply_gradients([(tf.constant([2.0]), v)])
  opt.apply_gradients([(tf.constant([2.0]), v)])
  # v1 = -1, w = 0; v2 = 0.9 * -1 - 1 = -1.9, w = -1.9
  np.testing.assert_allclose(v.numpy(), [-1.9], rtol=1e-6)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
