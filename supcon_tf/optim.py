"""Optimizers, learning-rate schedules and variable selection by layer type."""

from typing import Iterable, List

import tensorflow as tf
import tf_keras as keras
from official.modeling.optimization import lars

from supcon_tf.config import LearningRateDecay, Optimizer, StageConfig


def scaled_learning_rate(base_learning_rate: float, global_batch_size: int) -> float:
  """The authors' linear scaling rule.

  Args:
    base_learning_rate: the rate for a batch of 256.
    global_batch_size: the batch of all replicas.

  Returns:
    base_learning_rate * global_batch_size / 256.
  """
  return base_learning_rate * global_batch_size / 256.0


# ----------------------------------------------------------------- schedules
@keras.saving.register_keras_serializable(package="supcon_tf")
class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from 0 to `peak`, then another schedule (or a constant).

  For `step < warmup_steps` the rate is `peak * step / warmup_steps`; from
  `warmup_steps` on it is `decay(max(step - decay_step_offset, 0))`, or
  `decay` itself when it is a number.

  tf-models-official's `LinearWarmup` is not used: it passes the unshifted step
  to the wrapped schedule (we need the decay measured from the end of warmup
  for cosine and exponential decay, and from the stage start for piecewise
  decay), it warms up to `decay(warmup_steps)` computed eagerly in its
  constructor, and its `get_config` drops the wrapped schedule's class.

  Args:
    peak: the rate at the end of warmup.
    warmup_steps: steps of the linear warmup (<= 0: none).
    decay: a `LearningRateSchedule` or a number (constant after warmup).
    decay_step_offset: subtracted from the step given to `decay`.
    name: name scope of the schedule's ops.
  """

  def __init__(self, peak: float, warmup_steps: int, decay, decay_step_offset: int = 0,
               name: str = None):
    super().__init__()
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.decay = decay
    self.decay_step_offset = int(decay_step_offset)
    self.name = name

  def __call__(self, step):
    with tf.name_scope(self.name or "WarmupThenDecay"):
      # Legacy optimizers pass the iteration count as float32; the trainer may
      # pass int64. float32 is exact for steps below 2**24.
      step = tf.cast(step, tf.float32)
      if isinstance(self.decay, keras.optimizers.schedules.LearningRateSchedule):
        decay_step = tf.maximum(step - float(self.decay_step_offset), 0.0)
        after = tf.cast(self.decay(decay_step), tf.float32)
      else:
        after = tf.constant(float(self.decay), tf.float32)
      if self.warmup_steps <= 0:
        return after
      warmup = self.peak * step / float(self.warmup_steps)
      return tf.where(step < float(self.warmup_steps), warmup, after)

  def get_config(self):
    decay = self.decay
    if isinstance(decay, keras.optimizers.schedules.LearningRateSchedule):
      decay = keras.optimizers.schedules.serialize(decay)
    return {"peak": self.peak, "warmup_steps": self.warmup_steps, "decay": decay,
            "decay_step_offset": self.decay_step_offset, "name": self.name}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if isinstance(config["decay"], dict):
      config["decay"] = keras.optimizers.schedules.deserialize(config["decay"])
    return cls(**config)


def learning_rate_schedule(stage: StageConfig, global_batch_size: int,
                           steps_per_epoch: int, total_steps: int):
  """The stage's learning rate as a function of the stage's own optimizer step.

  peak = base_learning_rate * batch / 256, reached by a linear warmup from 0
  over round(warmup_epochs * steps_per_epoch) steps; after warmup:
    COSINE:      cosine from peak to 0 over the remaining steps of the stage;
    EXPONENTIAL: peak * decay_rate ** ((step - warmup) / (epochs_per_decay *
                 steps_per_epoch)), the exponent floored if `staircase`;
    PIECEWISE:   peak * decay_rate ** k, k the number of boundaries
                 round(decay_boundary_epochs * steps_per_epoch), counted from
                 the stage's step 0, with step >= boundary;
    CONSTANT:    peak.

  Differences from the authors' release (`supcon/utils.py`): there all decays
  see the step counted from the end of warmup (piecewise boundaries included),
  piecewise decay switches one step later (step > boundary, as
  `tf.train.piecewise_constant`), and exponential decay is always staircase.

  Args:
    stage: the stage's config.
    global_batch_size: the batch of all replicas (scales the peak rate).
    steps_per_epoch: optimizer steps per epoch.
    total_steps: optimizer steps of the stage (bounds the warmup; cosine length).

  Returns:
    A `WarmupThenDecay` schedule.

  Raises:
    ValueError: exponential decay with epochs_per_decay * steps_per_epoch <= 0,
      or an unknown decay.
  """
  peak = scaled_learning_rate(stage.base_learning_rate, global_batch_size)
  warmup = min(int(round(stage.warmup_epochs * steps_per_epoch)), total_steps)
  warmup = max(warmup, 0)
  decay_type = stage.learning_rate_decay
  offset = warmup
  if decay_type == LearningRateDecay.COSINE:
    decay = keras.optimizers.schedules.CosineDecay(peak, max(total_steps - warmup, 1))
  elif decay_type == LearningRateDecay.EXPONENTIAL:
    period = stage.epochs_per_decay * steps_per_epoch
    if period <= 0:
      raise ValueError(f"epochs_per_decay * steps_per_epoch must be > 0, got {period}")
    decay = keras.optimizers.schedules.ExponentialDecay(
        peak, period, stage.decay_rate, staircase=stage.staircase)
  elif decay_type == LearningRateDecay.PIECEWISE:
    offset = 0
    boundaries = sorted(int(round(e * steps_per_epoch)) for e in stage.decay_boundary_epochs)
    if boundaries:
      # PiecewiseConstantDecay keeps values[i] while step <= boundaries[i]; for
      # whole-number steps, `step <= b - 1` is `step < b`, so the rate drops at b.
      decay = keras.optimizers.schedules.PiecewiseConstantDecay(
          [b - 1 for b in boundaries],
          [peak * stage.decay_rate ** k for k in range(len(boundaries) + 1)])
    else:
      decay = peak
  elif decay_type == LearningRateDecay.CONSTANT:
    decay = peak
  else:
    raise ValueError(f"unknown learning_rate_decay: {decay_type!r}")
  return WarmupThenDecay(peak, warmup, decay, decay_step_offset=offset)


# ----------------------------------------------------------------- optimizers
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
  layer adaptation (conv and dense kernels), selected by layer type. Weight decay
  is not applied here (see `weight_decay_loss`).

  Args:
    adapted_variables: the variables (mirrored or not) that get layer adaptation.
    **kwargs: `lars.LARS` arguments (learning_rate, momentum, eeta, ...).
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


class TF1RMSProp(keras.optimizers.legacy.RMSprop):
  """tf_keras's legacy RMSprop made to follow TF1's `tf.train.RMSPropOptimizer`,
  the optimizer of the authors' release:

    ms  = rho * ms + (1 - rho) * g**2          (ms starts at 1)
    mom = momentum * mom + lr * g / sqrt(ms + epsilon)
    w  -= mom

  What differs in tf_keras's legacy `RMSprop` (checked against its source and
  TF1's `tensorflow/python/training/rmsprop.py`):
  * epsilon: with momentum > 0 it calls the same `ResourceApplyRMSProp` kernel
    as TF1, so epsilon is inside the square root, `sqrt(ms + epsilon)`; with
    momentum == 0 it computes `g / (sqrt(ms) + epsilon)`, epsilon outside.
    TF1 always uses the kernel (inside), whatever the momentum.
  * the mean square `ms` starts at 0 in tf_keras and at 1 in TF1. With the
    authors' epsilon 1.0 the first steps differ by up to ~sqrt(2).
  Here `ms` starts at 1 and the kernel is used for every momentum (a momentum
  slot always exists), which gives TF1's update. Slot names ("rms",
  "momentum") are tf_keras's. The centered variant is not supported.

  Args:
    *args, **kwargs: `keras.optimizers.legacy.RMSprop` arguments.

  Raises:
    ValueError: centered=True.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.centered:
      raise ValueError("TF1RMSProp does not support centered=True")
    self._momentum = True  # always take the ResourceApplyRMSProp branch

  def _create_slots(self, var_list):
    for var in var_list:
      self.add_slot(var, "rms", initializer="ones")
    for var in var_list:
      self.add_slot(var, "momentum")


def create_optimizer(stage: StageConfig, learning_rate, adapted_variables=()):
  """The stage's optimizer: a tf_keras legacy (OptimizerV2) optimizer.

  MOMENTUM / NESTEROV: `keras.optimizers.legacy.SGD` (nesterov for NESTEROV).
    Its velocity holds lr * g (`v = m v - lr g; w += v`), while TF1's
    `MomentumOptimizer` of the authors' release accumulates g and multiplies by
    the current lr (`a = m a + g; w -= lr a`); the two agree while the rate
    is constant and differ slightly while it changes.
  LARS: `LARS` above (classic momentum, adaptation on `adapted_variables`).
  RMSPROP: `TF1RMSProp` (rho=rmsprop_decay, momentum, epsilon=rmsprop_epsilon).
  ADAM: `keras.optimizers.legacy.Adam`; its epsilon is "epsilon hat" as in TF1's
    `AdamOptimizer` (`w -= lr_t m / (sqrt(v) + eps)`, lr_t bias-corrected).

  Args:
    stage: the stage's config (optimizer and its hyper-parameters).
    learning_rate: a number or a schedule (e.g. `learning_rate_schedule`).
    adapted_variables: LARS only: the variables that get layer adaptation (e.g.
      `kernel_variables(model)`).

  Returns:
    The optimizer. None of them applies weight decay (see `weight_decay_loss`).

  Raises:
    ValueError: an unknown optimizer.
  """
  opt = stage.optimizer
  if opt == Optimizer.LARS:
    return LARS(adapted_variables=adapted_variables, learning_rate=learning_rate,
                momentum=stage.momentum, eeta=stage.lars_eta, weight_decay_rate=0.0)
  if opt in (Optimizer.MOMENTUM, Optimizer.NESTEROV):
    return keras.optimizers.legacy.SGD(learning_rate=learning_rate, momentum=stage.momentum,
                                       nesterov=opt == Optimizer.NESTEROV)
  if opt == Optimizer.RMSPROP:
    return TF1RMSProp(learning_rate=learning_rate, rho=stage.rmsprop_decay,
                      momentum=stage.momentum, epsilon=stage.rmsprop_epsilon)
  if opt == Optimizer.ADAM:
    return keras.optimizers.legacy.Adam(learning_rate=learning_rate,
                                        beta_1=stage.adam_beta_1, beta_2=stage.adam_beta_2,
                                        epsilon=stage.adam_epsilon)
  raise ValueError(f"unknown optimizer: {opt!r}")


# ----------------------------------------------------------------- weight decay
_WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)


def _weight_layers(part: keras.layers.Layer):
  """Conv2D and Dense layers inside `part` (itself included), each once."""
  seen = set()
  for layer in part._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    if isinstance(layer, _WEIGHT_LAYERS) and id(layer) not in seen:
      seen.add(id(layer))
      yield layer


def _unique(variables):
  out, seen = [], set()
  for v in variables:
    if v.ref() not in seen:
      seen.add(v.ref())
      out.append(v)
  return out


def kernel_variables(model: keras.layers.Layer) -> List[tf.Variable]:
  """Kernels of the convolution and dense layers, each once.

  The ones that get weight decay and LARS adaptation. BatchNorm parameters and
  biases are left out by type.

  Args:
    model: a layer or model (itself and every nested layer are searched).

  Returns:
    The Conv2D and Dense kernels.
  """
  return _unique(layer.kernel for layer in _weight_layers(model))


def bias_variables(model: keras.layers.Layer) -> List[tf.Variable]:
  """Biases of the convolution and dense layers that have one.

  Args:
    model: a layer or model (itself and every nested layer are searched).

  Returns:
    The Conv2D and Dense biases, each once.
  """
  return _unique(layer.bias for layer in _weight_layers(model)
                 if getattr(layer, "bias", None) is not None)


def decay_variables(model, stage: StageConfig,
                    use_bias_weight_decay: bool = False) -> List[tf.Variable]:
  """The variables that get L2 weight decay in `stage`, chosen by layer type.

  `model` is a `SupConModel`. For each part (encoder, projection head,
  classifier) whose `use_*_weight_decay` flag is set: the kernels of its Conv2D
  and Dense layers, and their biases if `use_bias_weight_decay`. BatchNorm
  parameters never. Empty if `stage.weight_decay` is 0. The list may hold
  variables the stage does not train (a frozen encoder): intersect it with the
  trained variables.

  Args:
    model: a `SupConModel` (encoder, projection_head, classifier).
    stage: the stage's config (weight_decay, use_*_weight_decay).
    use_bias_weight_decay: also the biases of the selected layers.

  Returns:
    The variables, each once.
  """
  if not stage.weight_decay:
    return []
  parts = ((stage.use_encoder_weight_decay, model.encoder),
           (stage.use_projection_head_weight_decay, model.projection_head),
           (stage.use_classification_head_weight_decay, model.classifier))
  selected = []
  for use, part in parts:
    if use:
      selected += kernel_variables(part)
      if use_bias_weight_decay:
        selected += bias_variables(part)
  return _unique(selected)


def weight_decay_loss(variables: Iterable[tf.Variable], weight_decay: float):
  """The L2 penalty added to the loss.

  Args:
    variables: the decayed variables (e.g. from `decay_variables`).
    weight_decay: the coefficient.

  Returns:
    float32 scalar: weight_decay * sum ||w||^2 / 2 (as tf.nn.l2_loss); 0 when
    `weight_decay` is 0 or there are no variables.
  """
  variables = list(variables)
  if not weight_decay or not variables:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32))
                                  for v in variables])
