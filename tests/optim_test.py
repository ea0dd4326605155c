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


# ----------------------------------------------------------------- schedules
# Common setting: base 0.1 at batch 512 -> peak 0.2; 10 steps per epoch;
# 1.5 warmup epochs -> 15 warmup steps; 200 steps in the stage.
PEAK = 0.2


def _schedule(**kwargs):
  stage = StageConfig(base_learning_rate=0.1, warmup_epochs=1.5, **kwargs)
  return optim.learning_rate_schedule(stage, 512, 10, 200)


def _values(sched, steps):
  return [float(sched(s)) for s in steps]


def test_warmup_is_linear_from_zero():
  for decay in LearningRateDecay:
    sched = _schedule(learning_rate_decay=decay, decay_boundary_epochs=(3.0,))
    assert _values(sched, (0, 3, 14)) == pytest.approx(
        [0.0, PEAK * 3 / 15, PEAK * 14 / 15], rel=1e-6), decay
    assert float(sched(15)) == pytest.approx(PEAK, rel=1e-6), decay


def test_exponential_decay_from_end_of_warmup():
  # 2 epochs per decay -> a period of 20 steps, counted from step 15.
  sched = _schedule(learning_rate_decay=LearningRateDecay.EXPONENTIAL, decay_rate=0.5,
                    epochs_per_decay=2.0, staircase=False)
  expected = {15: 0.2, 20: 0.2 * 0.5 ** 0.25, 25: 0.2 / math.sqrt(2), 35: 0.1,
              55: 0.05, 195: 0.2 * 0.5 ** 9}
  assert _values(sched, expected) == pytest.approx(list(expected.values()), rel=1e-5)


def test_exponential_decay_staircase():
  sched = _schedule(learning_rate_decay=LearningRateDecay.EXPONENTIAL, decay_rate=0.5,
                    epochs_per_decay=2.0, staircase=True)
  expected = {14: 0.2 * 14 / 15, 15: 0.2, 25: 0.2, 34: 0.2, 35: 0.1, 54: 0.1,
              55: 0.05, 75: 0.025}
  assert _values(sched, expected) == pytest.approx(list(expected.values()), rel=1e-5)


def test_piecewise_decay_at_boundaries_from_stage_start():
  # Boundaries at epochs 5 and 3 (given unsorted) -> steps 50 and 30 of the stage.
  sched = _schedule(learning_rate_decay=LearningRateDecay.PIECEWISE, decay_rate=0.1,
                    decay_boundary_epochs=(5.0, 3.0))
  expected = {15: 0.2, 29: 0.2, 30: 0.02, 31: 0.02, 49: 0.02, 50: 0.002, 51: 0.002,
              199: 0.002, 10_000: 0.002}
  assert _values(sched, expected) == pytest.approx(list(expected.values()), rel=1e-5)
  # A boundary inside warmup (epoch 1 = step 10) applies right after warmup;
  # boundaries are rounded to steps (2.54 epochs -> step 25).
  sched = _schedule(learning_rate_decay=LearningRateDecay.PIECEWISE, decay_rate=0.5,
                    decay_boundary_epochs=(1.0, 2.54))
  expected = {10: 0.2 * 10 / 15, 15: 0.1, 24: 0.1, 25: 0.05}
  assert _values(sched, expected) == pytest.approx(list(expected.values()), rel=1e-5)


def test_piecewise_without_warmup_and_without_boundaries():
  stage = StageConfig(base_learning_rate=0.1, learning_rate_decay=LearningRateDecay.PIECEWISE,
                      decay_rate=0.1, decay_boundary_epochs=(1.0,))
  sched = optim.learning_rate_schedule(stage, 256, 10, 100)
  assert _values(sched, (0, 9, 10)) == pytest.approx([0.1, 0.1, 0.01], rel=1e-5)
  none = _schedule(learning_rate_decay=LearningRateDecay.PIECEWISE, decay_boundary_epochs=())
  assert _values(none, (15, 100)) == pytest.approx([PEAK, PEAK], rel=1e-6)


def test_constant_after_warmup():
  sched = _schedule(learning_rate_decay=LearningRateDecay.CONSTANT)
  assert _values(sched, (0, 7, 15, 100, 199, 500)) == pytest.approx(
      [0.0, PEAK * 7 / 15, PEAK, PEAK, PEAK, PEAK], rel=1e-6)


def test_authors_decay_names_are_aliases():
  assert LearningRateDecay("piecewise") is LearningRateDecay.PIECEWISE_LINEAR
  assert LearningRateDecay.NONE is LearningRateDecay.CONSTANT
  steps = (0, 10, 15, 29, 30, 100)
  piecewise = _schedule(learning_rate_decay=LearningRateDecay.PIECEWISE_LINEAR,
                        decay_rate=0.1, decay_boundary_epochs=(3.0,))
  assert _values(piecewise, steps) == pytest.approx(
      [0.0, PEAK * 10 / 15, PEAK, PEAK, 0.02, 0.02], rel=1e-5)
  none = _schedule(learning_rate_decay=LearningRateDecay.NONE)
  assert _values(none, steps) == pytest.approx(
      [0.0, PEAK * 10 / 15, PEAK, PEAK, PEAK, PEAK], rel=1e-6)


@pytest.mark.parametrize("decay", list(LearningRateDecay))
def test_schedule_in_tf_function_with_int64_step(decay):
  sched = _schedule(learning_rate_decay=decay, decay_rate=0.5, epochs_per_decay=2.0,
                    decay_boundary_epochs=(3.0,))
  fn = tf.function(sched)
  xla = tf.function(sched, jit_compile=True)
  for step in (0, 5, 15, 29, 30, 35, 199):
    expected = float(sched(step))
    assert float(fn(tf.constant(step, tf.int64))) == pytest.approx(expected, rel=1e-6)
    assert float(xla(tf.constant(step, tf.int64))) == pytest.approx(expected, rel=1e-6)
  # What a legacy optimizer passes: its iteration count as float32.
  opt = keras.optimizers.legacy.SGD(learning_rate=sched)
  opt.iterations.assign(35)
  assert float(opt._decayed_lr(tf.float32)) == pytest.approx(float(sched(35)), rel=1e-6)


@pytest.mark.parametrize("decay", list(LearningRateDecay))
def test_schedule_config_round_trip(decay):
  sched = _schedule(learning_rate_decay=decay, decay_rate=0.5, epochs_per_decay=2.0,
                    decay_boundary_epochs=(3.0, 5.0))
  steps = (0, 10, 15, 30, 55, 150)
  again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(sched))
  assert type(again) is type(sched)
  assert _values(again, steps) == pytest.approx(_values(sched, steps), rel=1e-6)
  opt = optim.create_optimizer(StageConfig(), sched)
  restored = type(opt).from_config(opt.get_config())
  assert _values(restored.learning_rate, steps) == pytest.approx(_values(sched, steps),
                                                                 rel=1e-6)


def test_unknown_decay_and_optimizer_raise():
  import dataclasses
  with pytest.raises(ValueError):
    optim.learning_rate_schedule(
        dataclasses.replace(StageConfig(), learning_rate_decay="linear"), 256, 10, 100)
  with pytest.raises(ValueError):
    optim.create_optimizer(dataclasses.replace(StageConfig(), optimizer="sgd"), 0.1)


# ----------------------------------------------------------------- optimizers
def test_optimizers_have_the_configured_hyperparameters():
  stage = StageConfig(momentum=0.8, lars_eta=0.002, rmsprop_decay=0.95, rmsprop_epsilon=0.5,
                      adam_beta_1=0.85, adam_beta_2=0.99, adam_epsilon=1e-3)
  expected = {
      Optimizer.MOMENTUM: {"momentum": 0.8, "nesterov": False},
      Optimizer.NESTEROV: {"momentum": 0.8, "nesterov": True},
      Optimizer.LARS: {"momentum": 0.8, "eeta": 0.002, "weight_decay_rate": 0.0},
      Optimizer.RMSPROP: {"rho": 0.95, "momentum": 0.8, "epsilon": 0.5, "centered": False},
      Optimizer.ADAM: {"beta_1": 0.85, "beta_2": 0.99, "epsilon": 1e-3, "amsgrad": False},
  }
  import dataclasses
  for kind, hypers in expected.items():
    opt = optim.create_optimizer(dataclasses.replace(stage, optimizer=kind), 0.25)
    assert isinstance(opt, keras.optimizers.legacy.Optimizer), kind
    config = opt.get_config()
    assert config["learning_rate"] == pytest.approx(0.25), kind
    for key, value in hypers.items():
      assert config[key] == pytest.approx(value), (kind, key)
    # Mixed float16 wraps it in the legacy loss-scale optimizer.
    wrapped = keras.mixed_precision.LossScaleOptimizer(opt)
    assert isinstance(wrapped, keras.optimizers.legacy.Optimizer), kind
  assert isinstance(optim.create_optimizer(
      dataclasses.replace(stage, optimizer=Optimizer.LARS), 0.1), optim.LARS)


def _two_steps(kind, grads, w0, lr, **stage_kwargs):
  w = tf.Variable(w0)
  opt = optim.create_optimizer(StageConfig(optimizer=kind, **stage_kwargs), lr)
  values = []
  for g in grads:
    opt.apply_gradients([(tf.constant(g), w)])
    values.append(w.numpy().copy())
  return values


W0 = np.array([1.0, -2.0, 0.5], np.float32)
G1 = np.array([0.5, 2.0, -3.0], np.float32)
G2 = np.array([-1.0, 0.25, 4.0], np.float32)


def test_nesterov_step_against_hand_computation():
  lr, m = 0.1, 0.9
  got = _two_steps(Optimizer.NESTEROV, [G1, G2], W0, lr, momentum=m)
  # tf_keras SGD(nesterov=True): v = m v - lr g; w = w + m v - lr g.
  w, v = W0.astype(np.float64), np.zeros(3)
  for g, w_got in zip([G1, G2], got):
    v = m * v - lr * g
    w = w + m * v - lr * g
    np.testing.assert_allclose(w_got, w, rtol=1e-6)
  # First step: w0 - lr (1 + m) g.
  np.testing.assert_allclose(got[0], W0 - 0.19 * G1, rtol=1e-6)


@pytest.mark.parametrize("momentum,epsilon", [(0.9, 1.0), (0.0, 0.5)])
def test_rmsprop_step_against_hand_computation(momentum, epsilon):
  lr, rho = 0.1, 0.9
  got = _two_steps(Optimizer.RMSPROP, [G1, G2], W0, lr, momentum=momentum,
                   rmsprop_decay=rho, rmsprop_epsilon=epsilon)
  # TF1 RMSPropOptimizer: ms starts at 1, epsilon inside the square root.
  w, ms, mom = W0.astype(np.float64), np.ones(3), np.zeros(3)
  for g, w_got in zip([G1, G2], got):
    ms = rho * ms + (1 - rho) * g ** 2
    mom = momentum * mom + lr * g / np.sqrt(ms + epsilon)
    w = w - mom
    np.testing.assert_allclose(w_got, w, rtol=1e-6)
  # First step written out for the first coordinate: ms = 0.9 + 0.1 * 0.25.
  np.testing.assert_allclose(got[0][0], 1.0 - 0.1 * 0.5 / math.sqrt(0.925 + epsilon),
                             rtol=1e-6)


def test_adam_step_against_hand_computation():
  lr, b1, b2, eps = 0.01, 0.8, 0.9, 0.1
  got = _two_steps(Optimizer.ADAM, [G1, G2], W0, lr, adam_beta_1=b1, adam_beta_2=b2,
                   adam_epsilon=eps)
  # lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); w -= lr_t m / (sqrt(v) + eps) ("epsilon hat").
  w, m, v = W0.astype(np.float64), np.zeros(3), np.zeros(3)
  for t, (g, w_got) in enumerate(zip([G1, G2], got), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    w = w - lr_t * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(w_got, w, rtol=1e-6)


# ----------------------------------------------------------------- weight decay
def _refs(variables):
  return {v.ref() for v in variables}


def _bn_refs(model):
  return _refs(v for layer in model._flatten_layers()
               if isinstance(layer, keras.layers.BatchNormalization)
               for v in layer.weights)


def _parts_by_shape(model):
  """(kernels, biases) of each part, found by rank and BN membership, not by type."""
  bn = _bn_refs(model)
  parts = {}
  for name in ("encoder", "projection_head", "classifier"):
    variables = getattr(model, name).trainable_variables
    kernels = [v for v in variables if len(v.shape) in (2, 4)]
    biases = [v for v in variables if len(v.shape) == 1 and v.ref() not in bn]
    parts[name] = (kernels, biases)
  return parts


def test_decay_variables_for_every_flag_combination(tiny_model):
  import itertools
  parts = _parts_by_shape(tiny_model)
  assert [len(parts["encoder"][0]), len(parts["encoder"][1])] == [20, 0]
  # Hidden layer with a bias, last layer without (the authors' projection).
  assert [len(parts["projection_head"][0]), len(parts["projection_head"][1])] == [2, 1]
  assert [len(parts["classifier"][0]), len(parts["classifier"][1])] == [1, 1]
  bn = _bn_refs(tiny_model)
  assert bn
  for enc, head, cls, bias in itertools.product((False, True), repeat=4):
    stage = StageConfig(weight_decay=1e-4, use_encoder_weight_decay=enc,
                        use_projection_head_weight_decay=head,
                        use_classification_head_weight_decay=cls)
    selected = optim.decay_variables(tiny_model, stage, use_bias_weight_decay=bias)
    expected = []
    for name, use in (("encoder", enc), ("projection_head", head), ("classifier", cls)):
      if use:
        expected += parts[name][0] + (parts[name][1] if bias else [])
    assert len(selected) == len(expected), (enc, head, cls, bias)
    assert _refs(selected) == _refs(expected), (enc, head, cls, bias)
    assert not _refs(selected) & bn
  # No weight decay: nothing is selected.
  assert optim.decay_variables(tiny_model, StageConfig(weight_decay=0.0), True) == []


def test_decay_variables_skip_projection_batch_norm():
  cfg = ModelConfig(resnet_depth=18, resnet_width=0.0625, first_conv_kernel_size=3,
                    first_conv_stride=1, use_initial_max_pool=False,
                    projection_head_layers=(8, 4), use_projection_batch_norm=True)
  model = build_model(cfg, num_classes=3)
  model(tf.zeros([1, 8, 8, 1]))
  head_kernels, head_biases = _parts_by_shape(model)["projection_head"]
  # No biases: hidden dense layers are followed by BN, the last has none.
  assert len(head_kernels) == 2 and not head_biases
  head_bn = _bn_refs(model.projection_head)
  assert len(head_bn) >= 2
  stage = StageConfig(weight_decay=1e-4, use_encoder_weight_decay=False,
                      use_projection_head_weight_decay=True,
                      use_classification_head_weight_decay=False)
  selected = optim.decay_variables(model, stage, use_bias_weight_decay=True)
  assert _refs(selected) == _refs(head_kernels + head_biases)
  assert not _refs(selected) & _bn_refs(model)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
