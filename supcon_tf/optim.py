"""Optimizers, learning-rate schedules and variable selection by layer type."""

from typing import Iterable, List

import tensorflow as tf
import tf_keras as keras
from official.modeling.optimization import lars

from supcon_tf.config import LearningRateDecay, Optimizer, StageConfig


def scaled_learning_rate(base_learning_rate: float, global_batch_size: int) -> float:
  """The authors' linear scaling rule: base * batch / 256."""
  return base_learning_rate * global_batch_size / 256.0


def learning_rate_schedule(stage: StageConfig, global_batch_size: int,
                           steps_per_epoch: int, total_steps: int):
  """Linear warmup from 0, then cosine decay to 0 (or constant with `none`).

  The step the schedule sees is the stage's own optimizer step.
  """
  peak = scaled_learning_rate(stage.base_learning_rate, global_batch_size)
  warmup = min(int(round(stage.warmup_epochs * steps_per_epoch)), total_steps)
  # alpha=1 makes CosineDecay constant after warmup.
  alpha = 1.0 if stage.learning_rate_decay == LearningRateDecay.NONE else 0.0
  decay_steps = max(total_steps - warmup, 1)
  if warmup > 0:
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, alpha=alpha, warmup_target=peak, warmup_steps=warmup)
  return keras.optimizers.schedules.CosineDecay(peak, decay_steps, alpha=alpha)


def _all_refs(variables: Iterable[tf.Variable]):
  """References of variables and of their per-replica components."""
  refs = set()
  for v in variables:
    refs.add(v.ref())
    for component in getattr(v, "values", ()) or ():
      refs.add(component.ref())
  return refs


class LARS(lars.LARS):
  """tf-models-official's LARS, with layer adaptation chosen by variable identity.

  The parent decides by regexes on variable names; we pass the variables that get
  layer adaptation (conv and dense kernels), selected by layer type.
  """

  def __init__(self, adapted_variables: Iterable[tf.Variable] = (), **kwargs):
    super().__init__(**kwargs)
    self._adapted_refs = _all_refs(adapted_variables)
    self._current_param = None

  def _resource_apply_dense(self, grad, param, apply_state=None):
    self._current_param = param
    try:
      return super()._resource_apply_dense(grad, param, apply_state)
    finally:
      self._current_param = None

  def _do_layer_adaptation(self, param_name):
    return self._current_param.ref() in self._adapted_refs

  def _use_weight_decay(self, param_name):
    # Weight decay is added to the loss (see `weight_decay_loss`), not here.
    return False


def kernel_variables(model: keras.layers.Layer) -> List[tf.Variable]:
  """Kernels of the convolution and dense layers: the ones that get weight decay
  and LARS adaptation. BatchNorm parameters and biases are left out by type."""
  kernels = []
  seen = set()
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      if layer.kernel.ref() not in seen:
        seen.add(layer.kernel.ref())
        kernels.append(layer.kernel)
  return kernels


def weight_decay_loss(variables: Iterable[tf.Variable], weight_decay: float):
  """weight_decay * sum ||w||^2 / 2 (as tf.nn.l2_loss), in float32."""
  variables = list(variables)
  if not weight_decay or not variables:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32))
                                  for v in variables])


def create_optimizer(stage: StageConfig, learning_rate, adapted_variables=()):
  if stage.optimizer == Optimizer.LARS:
    return LARS(adapted_variables=adapted_variables, learning_rate=learning_rate,
                momentum=stage.momentum, eeta=stage.lars_eta, weight_decay_rate=0.0)
  return keras.optimizers.legacy.SGD(learning_rate=learning_rate,
                                     momentum=stage.momentum)
