"""Heads on top of the encoder representation `h`.

- `ProjectionHead`: the MLP mapping `h` to the contrastive embedding `z`,
  L2-normalised (the SupCon loss takes dot products of unit vectors).
- `LinearClassifier`: one dense layer giving class logits; by default it does
  not send gradients into its input (linear evaluation of a frozen encoder).

Both end in a float32 dense layer whatever the Keras dtype policy (the hidden
layers follow the policy, e.g. bfloat16): the projection and the logits are
computed, not just returned, in float32, as are the losses under mixed precision.
"""

from typing import Sequence

import tensorflow as tf
import tf_keras as keras


class ProjectionHead(keras.layers.Layer):
  """Dense layers with ReLU (and optional BN) between them; L2-normalised output.

  With `layer_sizes=(2048, 128)`: Dense(2048) - [BN] - ReLU - Dense(128) -
  l2_normalize. Nothing follows the last dense layer but the normalisation.
  Hidden dense layers have a bias only without BN (BN's beta replaces it). The
  last one is the authors': no bias (the output is L2-normalised; under LARS a
  bias would move at the raw peak rate) and a N(0, 0.01) kernel initialisation.
  """

  def __init__(self,
               layer_sizes: Sequence[int] = (2048, 128),
               use_batch_norm: bool = False,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               synchronized_batch_norm: bool = False,
               name: str = "projection_head",
               **kwargs):
    """Creates the dense (and BN) layers.

    Args:
      layer_sizes: units of each dense layer; the last is the size of `z`.
      use_batch_norm: BN after every hidden dense layer (before its ReLU).
      batch_norm_momentum: Keras-convention BN momentum.
      batch_norm_epsilon: BN epsilon.
      synchronized_batch_norm: BN statistics over the global batch (all-reduced
        across the replicas in sync), as the encoder's.
      name: layer name.
      **kwargs: passed to `keras.layers.Layer`.

    Raises:
      ValueError: empty `layer_sizes` or a non-positive size.
    """
    super().__init__(name=name, **kwargs)
    layer_sizes = tuple(int(units) for units in layer_sizes)
    if not layer_sizes or any(units <= 0 for units in layer_sizes):
      raise ValueError(
          f"layer_sizes must be non-empty positive sizes, got {layer_sizes}")
    self.layer_sizes = layer_sizes
    self.use_batch_norm = use_batch_norm
    self.batch_norm_momentum = batch_norm_momentum
    self.batch_norm_epsilon = batch_norm_epsilon
    self.synchronized_batch_norm = synchronized_batch_norm
    num_layers = len(layer_sizes)
    dense_layers = []
    batch_norms = []
    for index, units in enumerate(layer_sizes):
      is_last = index == num_layers - 1
      if is_last:
        dense = keras.layers.Dense(
            units, use_bias=False, dtype="float32",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name=f"dense{index + 1}")
      else:
        dense = keras.layers.Dense(units, use_bias=not use_batch_norm,
                                   name=f"dense{index + 1}")
      dense_layers.append(dense)
      if use_batch_norm and not is_last:
        batch_norms.append(keras.layers.BatchNormalization(
            momentum=batch_norm_momentum, epsilon=batch_norm_epsilon,
            synchronized=synchronized_batch_norm, name=f"bn{index + 1}"))
    self.dense_layers = dense_layers
    self.batch_norms = batch_norms

  @property
  def output_dim(self) -> int:
    """Size of the projection `z`, `layer_sizes[-1]`."""
    return self.layer_sizes[-1]

  def call(self, inputs, training=False):
    """Projects the head input.

    Args:
      inputs: `[batch, features]`, the (normalised) representation.
      training: BN in training mode.

    Returns:
      The L2-normalised projection `[batch, layer_sizes[-1]]`, float32.
    """
    x = inputs
    last = len(self.dense_layers) - 1
    for index, dense in enumerate(self.dense_layers):
      x = dense(x)
      if index < last:
        if self.use_batch_norm:
          x = self.batch_norms[index](x, training=training)
        x = tf.nn.relu(x)
    return tf.math.l2_normalize(x, axis=-1)  # float32: the last layer's dtype

  def get_config(self):
    config = super().get_config()
    config.update(layer_sizes=self.layer_sizes,
                  use_batch_norm=self.use_batch_norm,
                  batch_norm_momentum=self.batch_norm_momentum,
                  batch_norm_epsilon=self.batch_norm_epsilon,
                  synchronized_batch_norm=self.synchronized_batch_norm)
    return config


class LinearClassifier(keras.layers.Layer):
  """One dense layer (with bias) giving float32 logits.

  With `stop_gradient=True` the input is wrapped in `tf.stop_gradient`, so a
  loss on the logits trains only this layer (linear evaluation protocol) even
  when the encoder is trained jointly by another loss.
  """

  def __init__(self,
               num_classes: int,
               zero_initialize: bool = False,
               stop_gradient: bool = True,
               name: str = "classifier",
               **kwargs):
    """Creates the dense layer.

    Args:
      num_classes: number of logits.
      zero_initialize: zero kernel (and bias) at initialisation; otherwise
        Keras' default Glorot-uniform kernel and zero bias.
      stop_gradient: no gradient flows back into the input.
      name: layer name.
      **kwargs: passed to `keras.layers.Layer`.

    Raises:
      ValueError: `num_classes` < 1.
    """
    super().__init__(name=name, **kwargs)
    if int(num_classes) < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.num_classes = int(num_classes)
    self.zero_initialize = zero_initialize
    self.stop_gradient = stop_gradient
    self.dense = keras.layers.Dense(
        self.num_classes,
        use_bias=True,
        kernel_initializer="zeros" if zero_initialize else "glorot_uniform",
        bias_initializer="zeros",
        dtype="float32",  # logits in float32 under mixed precision
        name="dense")

  def call(self, inputs):
    """Classifies the head input.

    Args:
      inputs: `[batch, features]`, the (normalised) representation.

    Returns:
      Logits `[batch, num_classes]` in float32.
    """
    if self.stop_gradient:
      inputs = tf.stop_gradient(inputs)
    return self.dense(inputs)  # float32: the layer's dtype

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes,
                  zero_initialize=self.zero_initialize,
                  stop_gradient=self.stop_gradient)
    return config
