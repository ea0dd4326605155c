"""The ResNet's basic layers: fixed-padding convolution and max-pool, BN.

Strided convolutions and the stem max-pool pad explicitly and symmetrically
("fixed padding"), so a given input gives the same windows as PyTorch and
TF-official ResNets whether the input size is even or odd (TF's 'SAME' pads
(0, 1) on even sizes); stride-1 convolutions use 'same'. Kept apart from the
blocks so every block and the stem share one definition of these choices.
"""

from typing import Optional, Tuple

import tensorflow as tf
import tf_keras as keras


def scale_channels(channels: int, width_multiplier: float) -> int:
  """Channel count times the width multiplier, rounded, at least 1.

  Args:
    channels: base channel count.
    width_multiplier: the ResNet's width multiplier (> 0).

  Returns:
    `max(1, round(channels * width_multiplier))`.
  """
  return max(1, int(round(channels * width_multiplier)))


def conv_kernel_initializer() -> keras.initializers.Initializer:
  """He-normal initialiser for convolution kernels, as torchvision.

  Variance scaling with scale 2 over **fan_out** (kernel_h * kernel_w *
  out_channels), untruncated normal: torchvision's
  `kaiming_normal_(mode="fan_out", nonlinearity="relu")`. A fresh instance per
  layer, because tf_keras warns when one unseeded initializer instance is reused
  (and would return identical values for same-shaped kernels).

  Returns:
    A new `keras.initializers.VarianceScaling`.
  """
  return keras.initializers.VarianceScaling(
      scale=2.0, mode="fan_out", distribution="untruncated_normal")


def make_batch_norm(momentum: float,
                    epsilon: float,
                    synchronized: bool,
                    zero_gamma: bool = False,
                    name: Optional[str] = None) -> keras.layers.BatchNormalization:
  """A channels-last BatchNormalization layer.

  Args:
    momentum: moving-average momentum (Keras convention: new = momentum * old +
      (1 - momentum) * batch; PyTorch's 0.1 is Keras' 0.9).
    epsilon: variance epsilon.
    synchronized: if true, batch statistics are all-reduced across the replicas
      of the current `tf.distribute` strategy (`synchronized=True` exists in
      tf_keras 2.20 and replaces `experimental.SyncBatchNormalization`).
    zero_gamma: initialise the scale to zero (last BN of a residual branch).
    name: layer name.

  Returns:
    The (unbuilt) `keras.layers.BatchNormalization`.
  """
  return keras.layers.BatchNormalization(
      axis=-1,
      momentum=momentum,
      epsilon=epsilon,
      gamma_initializer="zeros" if zero_gamma else "ones",
      synchronized=synchronized,
      name=name)


def _fixed_padding(kernel_size: int) -> Tuple[int, int]:
  """Symmetric (begin, end) padding for a strided KxK window, as TF-official."""
  total = kernel_size - 1
  begin = total // 2
  return begin, total - begin


def _square(value, what: str) -> int:
  """An int, or a pair of equal ints (as `get_config` writes them), as an int."""
  if isinstance(value, (tuple, list)):
    if len(value) != 2 or value[0] != value[1]:
      raise ValueError(f"{what} must be square, got {value}")
    value = value[0]
  return int(value)


class Conv2DFixedPadding(keras.layers.Conv2D):
  """A bias-free Conv2D with "fixed" (input-size independent) padding.

  Stride 1 uses 'same' padding. A stride > 1 pads the input explicitly by
  `(k - 1) // 2` before and `k - 1 - (k - 1) // 2` after each spatial dimension
  and then runs a 'valid' convolution, which matches PyTorch's
  `Conv2d(padding=k // 2)` for odd k. It is a `keras.layers.Conv2D`, so code
  that selects kernels by layer type (weight decay, LARS) finds it.
  """

  def __init__(self, filters: int, kernel_size: int, strides: int = 1, **kwargs):
    """Creates the layer (the kernel is created on the first call).

    Args:
      filters: number of output channels.
      kernel_size: side of the square kernel (or an equal pair, as in a config).
      strides: stride of both spatial dimensions (or an equal pair).
      **kwargs: passed to `keras.layers.Conv2D`; `use_bias` defaults to False
        and `kernel_initializer` to `conv_kernel_initializer()`; `padding` is
        ignored (it follows from the stride).

    Raises:
      ValueError: a non-square `kernel_size` or `strides` pair.
    """
    kernel_size = _square(kernel_size, "kernel_size")
    strides = _square(strides, "strides")
    kwargs.setdefault("use_bias", False)
    kwargs.setdefault("kernel_initializer", conv_kernel_initializer())
    kwargs.pop("padding", None)
    super().__init__(
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        **kwargs)
    self._explicit_padding = (
        _fixed_padding(kernel_size) if strides > 1 else (0, 0))

  def _pad(self, inputs):
    begin, end = self._explicit_padding
    if begin == 0 and end == 0:
      return inputs
    return tf.pad(inputs, [[0, 0], [begin, end], [begin, end], [0, 0]])

  def convolution_op(self, inputs, kernel):
    return super().convolution_op(self._pad(inputs), kernel)

  def compute_output_shape(self, input_shape):
    input_shape = tf.TensorShape(input_shape).as_list()
    extra = sum(self._explicit_padding)
    for axis in (1, 2):
      if input_shape[axis] is not None:
        input_shape[axis] += extra
    return super().compute_output_shape(tf.TensorShape(input_shape))

  def get_config(self):
    config = super().get_config()
    config.pop("padding", None)
    return config


class MaxPool2DFixedPadding(keras.layers.Layer):
  """Max-pooling with symmetric explicit padding by -inf (PyTorch semantics).

  `MaxPool2DFixedPadding(3, 2)` equals PyTorch's `MaxPool2d(3, 2, padding=1)`:
  padding never wins the max, whatever the sign of the inputs.
  """

  def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs):
    """Creates the layer.

    Args:
      pool_size: side of the square pooling window.
      strides: stride of both spatial dimensions.
      **kwargs: passed to `keras.layers.Layer` (e.g. `name`).
    """
    super().__init__(**kwargs)
    self.pool_size = pool_size
    self.strides = strides

  def call(self, inputs):
    """Max-pools `inputs` `[batch, height, width, channels]`.

    Args:
      inputs: channels-last feature map.

    Returns:
      The pooled map, `(size - 1) // strides + 1` per spatial side (PyTorch's
      with `padding=(pool_size - 1) // 2`, for odd windows).
    """
    begin, end = _fixed_padding(self.pool_size)
    padded = tf.pad(inputs, [[0, 0], [begin, end], [begin, end], [0, 0]],
                    constant_values=inputs.dtype.min)
    return tf.nn.max_pool2d(padded, ksize=self.pool_size, strides=self.strides,
                            padding="VALID")

  def get_config(self):
    config = super().get_config()
    config.update(pool_size=self.pool_size, strides=self.strides)
    return config
