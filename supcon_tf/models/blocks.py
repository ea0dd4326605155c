"""Residual blocks of the ResNets: v1 (post-activation), v2 (pre-activation).

Both versions: basic blocks (two 3x3 convolutions) or bottleneck blocks (1x1,
3x3, 1x1 with expansion 4) whose stride sits on the 3x3 convolution ("ResNet
v1.5"); the shortcut is the identity unless the shape changes, then a 1x1
convolution with the block's stride ("projection shortcut", option B).

v1 ("Deep Residual Learning"): every convolution is followed by BN, the
projection shortcut too; the ReLU comes after the residual addition.

v2 ("Identity Mappings in Deep Residual Networks", TF-official's
`resnet_model.py` layout): a block computes `preact = relu(BN(x))`, runs its
`BN-ReLU-conv` units on `preact` (the first BN is this one) and adds the
shortcut with nothing after the addition. The identity shortcut is `x` itself;
the projection shortcut is a bare 1x1 convolution (no BN) of `preact`.

The blocks live apart from the `ResNet` builder so the builder only picks a
class from `BLOCK_CLASSES`; the stem and stage assembly are shared.
"""

import tensorflow as tf
import tf_keras as keras

from supcon_tf.models.layers import Conv2DFixedPadding
from supcon_tf.models.layers import make_batch_norm


class _ResidualBlock(keras.layers.Layer):
  """Shared constructor arguments and config of residual blocks."""

  expansion = 1

  def __init__(self,
               filters: int,
               strides: int = 1,
               use_projection: bool = False,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               synchronized_batch_norm: bool = False,
               zero_init_last_gamma: bool = False,
               **kwargs):
    """Stores the arguments; subclasses create the sublayers.

    Args:
      filters: channels of the block's 3x3 convolution (the output has
        `filters * expansion` channels).
      strides: stride of the block (on its 3x3 convolution and projection).
      use_projection: 1x1 projection shortcut instead of the identity (needed
        when the block strides or changes the channel count).
      batch_norm_momentum: Keras-convention BN momentum.
      batch_norm_epsilon: BN epsilon.
      synchronized_batch_norm: all-reduce BN batch statistics across replicas.
      zero_init_last_gamma: start the residual branch at zero (v1: the scale
        of its last BN; v2: the kernel of its last convolution).
      **kwargs: passed to `keras.layers.Layer` (e.g. `name`).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.strides = strides
    self.use_projection = use_projection
    self.batch_norm_momentum = batch_norm_momentum
    self.batch_norm_epsilon = batch_norm_epsilon
    self.synchronized_batch_norm = synchronized_batch_norm
    self.zero_init_last_gamma = zero_init_last_gamma

  @property
  def output_channels(self) -> int:
    """Channels of the block's output, `filters * expansion`."""
    return self.filters * self.expansion

  def _batch_norm(self, name, zero_gamma=False):
    return make_batch_norm(self.batch_norm_momentum, self.batch_norm_epsilon,
                           self.synchronized_batch_norm, zero_gamma, name=name)

  def _make_shortcut(self):
    if not self.use_projection:
      return None, None
    return (Conv2DFixedPadding(self.output_channels, 1, self.strides,
                               name="shortcut_conv"),
            self._batch_norm("shortcut_bn"))

  def get_config(self):
    config = super().get_config()
    config.update(
        filters=self.filters,
        strides=self.strides,
        use_projection=self.use_projection,
        batch_norm_momentum=self.batch_norm_momentum,
        batch_norm_epsilon=self.batch_norm_epsilon,
        synchronized_batch_norm=self.synchronized_batch_norm,
        zero_init_last_gamma=self.zero_init_last_gamma)
    return config


class BasicBlockV1(_ResidualBlock):
  """conv3x3(stride) - BN - ReLU - conv3x3 - BN, + shortcut, ReLU."""

  expansion = 1

  def __init__(self, filters: int, **kwargs):
    """Creates the convolutions, BNs and the shortcut.

    Args:
      filters: channels of both 3x3 convolutions and of the output.
      **kwargs: the other `_ResidualBlock` arguments (`strides`,
        `use_projection`, BN settings, `zero_init_last_gamma`) and
        `keras.layers.Layer`'s.
    """
    super().__init__(filters, **kwargs)
    self.conv1 = Conv2DFixedPadding(filters, 3, self.strides, name="conv1")
    self.bn1 = self._batch_norm("bn1")
    self.conv2 = Conv2DFixedPadding(filters, 3, 1, name="conv2")
    self.bn2 = self._batch_norm("bn2", zero_gamma=self.zero_init_last_gamma)
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
    """Runs the block.

    Args:
      inputs: `[batch, height, width, channels]`.
      training: BN in training mode.

    Returns:
      `relu(branch(inputs) + shortcut(inputs))`.
    """
    shortcut = inputs
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
    x = tf.nn.relu(self.bn1(self.conv1(inputs), training=training))
    x = self.bn2(self.conv2(x), training=training)
    return tf.nn.relu(x + shortcut)


class BottleneckBlockV1(_ResidualBlock):
  """1x1 - BN - ReLU - 3x3(stride) - BN - ReLU - 1x1(4x) - BN, + shortcut, ReLU.

  The stride is on the 3x3 convolution (torchvision, "ResNet v1.5").
  """

  expansion = 4

  def __init__(self, filters: int, **kwargs):
    """Creates the convolutions, BNs and the shortcut.

    Args:
      filters: channels of the 1x1 and 3x3 convolutions; the output has
        `4 * filters`.
      **kwargs: the other `_ResidualBlock` arguments (`strides`,
        `use_projection`, BN settings, `zero_init_last_gamma`) and
        `keras.layers.Layer`'s.
    """
    super().__init__(filters, **kwargs)
    self.conv1 = Conv2DFixedPadding(filters, 1, 1, name="conv1")
    self.bn1 = self._batch_norm("bn1")
    self.conv2 = Conv2DFixedPadding(filters, 3, self.strides, name="conv2")
    self.bn2 = self._batch_norm("bn2")
    self.conv3 = Conv2DFixedPadding(self.output_channels, 1, 1, name="conv3")
    self.bn3 = self._batch_norm("bn3", zero_gamma=self.zero_init_last_gamma)
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
    """Runs the block.

    Args:
      inputs: `[batch, height, width, channels]`.
      training: BN in training mode.

    Returns:
      `relu(branch(inputs) + shortcut(inputs))`.
    """
    shortcut = inputs
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
    x = tf.nn.relu(self.bn1(self.conv1(inputs), training=training))
    x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
    x = self.bn3(self.conv3(x), training=training)
    return tf.nn.relu(x + shortcut)


class _PreActivationBlock(_ResidualBlock):
  """Shared parts of the pre-activation (v2) blocks.

  Naming: `bn<i>` is the BN (followed by a ReLU) that precedes `conv<i>`;
  `bn1` is the block's pre-activation, shared by the residual branch and the
  projection shortcut.

  `zero_init_last_gamma`: the residual branch of a v2 block ends in a
  convolution, not in a BN, so the option zero-initialises the kernel of that
  last convolution instead (as timm's `zero_init_last` for pre-activation
  blocks). The branch then outputs exactly zero and the block starts as its
  shortcut, which is what the option is for (identity blocks at
  initialisation, Goyal et al. 2017). The last convolution gets a non-zero
  gradient from the first step (its input, the activated branch, is non-zero),
  so the branch learns. Zeroing the gamma of the BN before the last
  convolution instead would not do: with beta also zero the following ReLU
  sees exactly 0, where its gradient is 0, so that BN and everything before it
  in the branch would never receive a gradient.
  """

  def _make_last_conv(self, filters, kernel_size, name):
    kwargs = {}
    if self.zero_init_last_gamma:
      kwargs["kernel_initializer"] = "zeros"
    return Conv2DFixedPadding(filters, kernel_size, 1, name=name, **kwargs)

  def _make_shortcut(self):
    """A bare 1x1 projection convolution (no BN), or None for the identity."""
    if not self.use_projection:
      return None, None
    return (Conv2DFixedPadding(self.output_channels, 1, self.strides,
                               name="shortcut_conv"),
            None)

  def _preactivate(self, inputs, training):
    """Returns `(relu(bn1(inputs)), shortcut)`."""
    preact = tf.nn.relu(self.bn1(inputs, training=training))
    shortcut = inputs
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_conv(preact)
    return preact, shortcut


class BasicBlockV2(_PreActivationBlock):
  """BN - ReLU - conv3x3(stride) - BN - ReLU - conv3x3, + shortcut.

  No activation after the addition. The projection shortcut (when the shape
  changes) is a 1x1 convolution of the pre-activated input `relu(bn1(x))`.
  """

  expansion = 1

  def __init__(self, filters: int, **kwargs):
    """Creates the BNs, convolutions and the shortcut.

    Args:
      filters: channels of both 3x3 convolutions and of the output.
      **kwargs: the other `_ResidualBlock` arguments (`strides`,
        `use_projection`, BN settings, `zero_init_last_gamma`) and
        `keras.layers.Layer`'s.
    """
    super().__init__(filters, **kwargs)
    self.bn1 = self._batch_norm("bn1")
    self.conv1 = Conv2DFixedPadding(filters, 3, self.strides, name="conv1")
    self.bn2 = self._batch_norm("bn2")
    self.conv2 = self._make_last_conv(filters, 3, name="conv2")
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
    """Runs the block.

    Args:
      inputs: `[batch, height, width, channels]`.
      training: BN in training mode.

    Returns:
      `branch(preact) + shortcut`, not activated.
    """
    x, shortcut = self._preactivate(inputs, training)
    x = self.conv1(x)
    x = self.conv2(tf.nn.relu(self.bn2(x, training=training)))
    return x + shortcut


class BottleneckBlockV2(_PreActivationBlock):
  """BN-ReLU-1x1, BN-ReLU-3x3(stride), BN-ReLU-1x1(4x), + shortcut.

  No activation after the addition. The stride is on the 3x3 convolution (as
  our v1.5 and TF-official v2). The projection shortcut (when the shape
  changes) is a 1x1 convolution of the pre-activated input `relu(bn1(x))`.
  """

  expansion = 4

  def __init__(self, filters: int, **kwargs):
    """Creates the BNs, convolutions and the shortcut.

    Args:
      filters: channels of the 1x1 and 3x3 convolutions; the output has
        `4 * filters`.
      **kwargs: the other `_ResidualBlock` arguments (`strides`,
        `use_projection`, BN settings, `zero_init_last_gamma`) and
        `keras.layers.Layer`'s.
    """
    super().__init__(filters, **kwargs)
    self.bn1 = self._batch_norm("bn1")
    self.conv1 = Conv2DFixedPadding(filters, 1, 1, name="conv1")
    self.bn2 = self._batch_norm("bn2")
    self.conv2 = Conv2DFixedPadding(filters, 3, self.strides, name="conv2")
    self.bn3 = self._batch_norm("bn3")
    self.conv3 = self._make_last_conv(self.output_channels, 1, name="conv3")
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
    """Runs the block.

    Args:
      inputs: `[batch, height, width, channels]`.
      training: BN in training mode.

    Returns:
      `branch(preact) + shortcut`, not activated.
    """
    x, shortcut = self._preactivate(inputs, training)
    x = self.conv1(x)
    x = self.conv2(tf.nn.relu(self.bn2(x, training=training)))
    x = self.conv3(tf.nn.relu(self.bn3(x, training=training)))
    return x + shortcut


# Block classes by ResNet version and block type ("basic" or "bottleneck", as
# in `enums.RESNET_LAYOUTS`). The stem and stage assembly in `ResNet` is shared
# by the versions.
BLOCK_CLASSES = {
    1: {
        "basic": BasicBlockV1,
        "bottleneck": BottleneckBlockV1,
    },
    2: {
        "basic": BasicBlockV2,
        "bottleneck": BottleneckBlockV2,
    },
}
