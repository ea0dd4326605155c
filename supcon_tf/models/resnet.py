"""ResNet encoders, v1 (torchvision style "v1.5") and v2 (pre-activation).

The encoder maps images `[batch, height, width, channels]` (channels last) to
the globally average-pooled representation `h` of shape `[batch, output_dim]`.

Layout shared by both versions (He et al. 2016, as in torchvision and
TF-official):

- stem: KxK stride-S convolution, then optionally a 3x3 stride-2 max-pool
  (ImageNet stem: K=7, S=2, max-pool; small-image stem: K=3, S=1, no
  max-pool);
- four stages of residual blocks with 64, 128, 256, 512 (times the width
  multiplier) channels; stages 2-4 halve the resolution in their first block;
- basic blocks (two 3x3 convolutions) for depths 18/34, bottleneck blocks
  (1x1, 3x3, 1x1 with expansion 4) for depths 50 and more. The stride of a
  bottleneck sits on its 3x3 convolution ("ResNet v1.5"), in both versions;
- the shortcut is the identity unless the shape changes, then a 1x1 convolution
  with the block's stride ("projection shortcut", option B);
- convolutions have no bias.

Version 1 ("Deep Residual Learning", post-activation): the stem convolution is
followed by BN + ReLU (before the max-pool); every convolution is followed by
BN, the projection shortcut too; the ReLU comes after the residual addition.

Version 2 ("Identity Mappings in Deep Residual Networks", pre-activation). The
layout is that of TF-official's `resnet_model.py` (`resnet_version=2`):

- the stem is the bare convolution (+ max-pool): no BN/ReLU, since the first
  block pre-activates its input;
- a block computes `preact = relu(BN(x))`, runs its residual branch
  `BN-ReLU-conv` units on `preact` (the first BN is this one), and adds the
  shortcut with nothing after the addition. The identity shortcut is `x`
  itself; the projection shortcut is a bare 1x1 convolution (no BN) of
  `preact`;
- a final BN + ReLU follows the last stage, before the global pooling.

One deliberate difference to TF-official v2: TF-official gives the first block
of *every* stage a projection shortcut, also where the shape does not change
(stage 1 of ResNet-18/34, 64 -> 64 channels); here, as in our v1 and
torchvision, a projection is used only where the shape changes, so the v2
ResNet-18/34 have one 1x1 convolution fewer than TF-official's (the bottleneck
depths have the same convolutions).

Strided convolutions pad explicitly and symmetrically ("fixed padding"), so a
given input gives the same windows as PyTorch and TF-official ResNets regardless
of whether the input size is even or odd; stride-1 convolutions use 'same'.

The stem and stage assembly in `ResNet` is shared; the versions differ in the
block classes (`_BLOCK_CLASSES[version][block_type]`) and in the BN + ReLU
around the stages (after the stem for v1, after the last stage for v2).
"""

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  """The block type and the number of blocks of each of the four stages."""
  block_type: str  # "basic" or "bottleneck".
  blocks_per_stage: Tuple[int, int, int, int]


_RESNET_SPECS = {
    18: ResNetSpec("basic", (2, 2, 2, 2)),
    34: ResNetSpec("basic", (3, 4, 6, 3)),
    50: ResNetSpec("bottleneck", (3, 4, 6, 3)),
    101: ResNetSpec("bottleneck", (3, 4, 23, 3)),
    152: ResNetSpec("bottleneck", (3, 8, 36, 3)),
    200: ResNetSpec("bottleneck", (3, 24, 36, 3)),
}

SUPPORTED_DEPTHS = tuple(sorted(_RESNET_SPECS))

# 1: post-activation ResNet (v1.5); 2: pre-activation ResNet.
SUPPORTED_VERSIONS = (1, 2)

# Base channel widths of the stem and of the four stages (before the width
# multiplier and the bottleneck expansion).
_STEM_CHANNELS = 64
_STAGE_CHANNELS = (64, 128, 256, 512)


def resnet_spec(depth: int) -> ResNetSpec:
  """Returns the block layout of a ResNet of the given depth.

  Args:
    depth: one of `SUPPORTED_DEPTHS`.

  Raises:
    ValueError: the depth is not supported.
  """
  try:
    return _RESNET_SPECS[depth]
  except (KeyError, TypeError):
    raise ValueError(
        f"Unsupported ResNet depth {depth!r}; allowed depths: "
        f"{', '.join(str(d) for d in SUPPORTED_DEPTHS)}.") from None


def scale_channels(channels: int, width_multiplier: float) -> int:
  """Channel count times the width multiplier, rounded, at least 1."""
  return max(1, int(round(channels * width_multiplier)))


def conv_kernel_initializer() -> keras.initializers.Initializer:
  """He-normal initialiser for convolution kernels, as torchvision.

  Variance scaling with scale 2 over **fan_out** (kernel_h * kernel_w *
  out_channels), untruncated normal: torchvision's
  `kaiming_normal_(mode="fan_out", nonlinearity="relu")`. A fresh instance per
  layer, because tf_keras warns when one unseeded initializer instance is reused
  (and would return identical values for same-shaped kernels).
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
    super().__init__(**kwargs)
    self.pool_size = pool_size
    self.strides = strides

  def call(self, inputs):
    begin, end = _fixed_padding(self.pool_size)
    padded = tf.pad(inputs, [[0, 0], [begin, end], [begin, end], [0, 0]],
                    constant_values=inputs.dtype.min)
    return tf.nn.max_pool2d(padded, ksize=self.pool_size, strides=self.strides,
                            padding="VALID")

  def get_config(self):
    config = super().get_config()
    config.update(pool_size=self.pool_size, strides=self.strides)
    return config


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
    super().__init__(filters, **kwargs)
    self.conv1 = Conv2DFixedPadding(filters, 3, self.strides, name="conv1")
    self.bn1 = self._batch_norm("bn1")
    self.conv2 = Conv2DFixedPadding(filters, 3, 1, name="conv2")
    self.bn2 = self._batch_norm("bn2", zero_gamma=self.zero_init_last_gamma)
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
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
    super().__init__(filters, **kwargs)
    self.conv1 = Conv2DFixedPadding(filters, 1, 1, name="conv1")
    self.bn1 = self._batch_norm("bn1")
    self.conv2 = Conv2DFixedPadding(filters, 3, self.strides, name="conv2")
    self.bn2 = self._batch_norm("bn2")
    self.conv3 = Conv2DFixedPadding(self.output_channels, 1, 1, name="conv3")
    self.bn3 = self._batch_norm("bn3", zero_gamma=self.zero_init_last_gamma)
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
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
    super().__init__(filters, **kwargs)
    self.bn1 = self._batch_norm("bn1")
    self.conv1 = Conv2DFixedPadding(filters, 3, self.strides, name="conv1")
    self.bn2 = self._batch_norm("bn2")
    self.conv2 = self._make_last_conv(filters, 3, name="conv2")
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
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
    super().__init__(filters, **kwargs)
    self.bn1 = self._batch_norm("bn1")
    self.conv1 = Conv2DFixedPadding(filters, 1, 1, name="conv1")
    self.bn2 = self._batch_norm("bn2")
    self.conv2 = Conv2DFixedPadding(filters, 3, self.strides, name="conv2")
    self.bn3 = self._batch_norm("bn3")
    self.conv3 = self._make_last_conv(self.output_channels, 1, name="conv3")
    self.shortcut_conv, self.shortcut_bn = self._make_shortcut()

  def call(self, inputs, training=False):
    x, shortcut = self._preactivate(inputs, training)
    x = self.conv1(x)
    x = self.conv2(tf.nn.relu(self.bn2(x, training=training)))
    x = self.conv3(tf.nn.relu(self.bn3(x, training=training)))
    return x + shortcut


# Block classes by ResNet version and block type. The stem and stage assembly
# in `ResNet` is shared by the versions.
_BLOCK_CLASSES = {
    1: {
        "basic": BasicBlockV1,
        "bottleneck": BottleneckBlockV1,
    },
    2: {
        "basic": BasicBlockV2,
        "bottleneck": BottleneckBlockV2,
    },
}


class ResNet(keras.layers.Layer):
  """ResNet v1 or v2 encoder returning the globally average-pooled features `h`.

  Mixed precision: the layer follows the global Keras dtype policy (inputs are
  auto-cast to the compute dtype, BN keeps float32 variables); `h` comes out in
  the compute dtype (e.g. bfloat16 under `mixed_bfloat16`).

  Sublayers (`Conv2DFixedPadding`, a `keras.layers.Conv2D`, and
  `keras.layers.BatchNormalization`) are ordinary tracked attributes, so they
  are found by `_flatten_layers()` / `submodules` and checkpointed by name.
  """

  def __init__(self,
               depth: int,
               width_multiplier: float = 1.0,
               first_conv_kernel_size: int = 7,
               first_conv_stride: int = 2,
               use_initial_max_pool: bool = True,
               batch_norm_momentum: float = 0.9,
               batch_norm_epsilon: float = 1e-5,
               synchronized_batch_norm: bool = False,
               zero_init_last_block_gamma: bool = False,
               version: int = 1,
               name: str = "resnet",
               **kwargs):
    """Builds all sublayers (their variables are created on the first call).

    Args:
      depth: one of 18, 34, 50, 101, 152, 200.
      width_multiplier: multiplies every channel count; fractional values are
        rounded (`max(1, round(c * w))`).
      first_conv_kernel_size: kernel of the stem convolution (7 ImageNet, 3
        small images).
      first_conv_stride: stride of the stem convolution (2 ImageNet, 1 small).
      use_initial_max_pool: 3x3 stride-2 max-pool after the stem.
      batch_norm_momentum: Keras-convention BN momentum.
      batch_norm_epsilon: BN epsilon.
      synchronized_batch_norm: all-reduce BN batch statistics across replicas.
      zero_init_last_block_gamma: start every residual branch at zero, so that
        blocks start as their shortcut (Goyal et al. 2017). v1: zero-initialise
        the scale of the last BN of every residual branch. v2, whose branches
        end in a convolution: zero-initialise the kernel of that last
        convolution (see `_PreActivationBlock`).
      version: 1 for ResNet v1 (post-activation), 2 for ResNet v2
        (pre-activation, TF-official layout; see the module docstring).
      name: layer name.
      **kwargs: passed to `keras.layers.Layer` (e.g. `dtype`).

    Raises:
      ValueError: unsupported depth or version, or non-positive width.
    """
    super().__init__(name=name, **kwargs)
    spec = resnet_spec(depth)
    if not width_multiplier > 0:
      raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
      raise ValueError(
          f"Unsupported ResNet version {version!r}; allowed versions: "
          f"{', '.join(str(v) for v in SUPPORTED_VERSIONS)}.")
    self.version = int(version)
    self.depth = depth
    self.width_multiplier = width_multiplier
    self.first_conv_kernel_size = first_conv_kernel_size
    self.first_conv_stride = first_conv_stride
    self.use_initial_max_pool = use_initial_max_pool
    self.batch_norm_momentum = batch_norm_momentum
    self.batch_norm_epsilon = batch_norm_epsilon
    self.synchronized_batch_norm = synchronized_batch_norm
    self.zero_init_last_block_gamma = zero_init_last_block_gamma
    self.spec = spec

    bn_kwargs = dict(batch_norm_momentum=batch_norm_momentum,
                     batch_norm_epsilon=batch_norm_epsilon,
                     synchronized_batch_norm=synchronized_batch_norm)

    stem_channels = scale_channels(_STEM_CHANNELS, width_multiplier)
    self.stem_conv = Conv2DFixedPadding(
        stem_channels, first_conv_kernel_size, first_conv_stride,
        name="stem_conv")
    # v1 activates the stem; v2 leaves that to the first block's
    # pre-activation.
    self.stem_bn = (make_batch_norm(batch_norm_momentum, batch_norm_epsilon,
                                    synchronized_batch_norm, name="stem_bn")
                    if self.version == 1 else None)
    self.stem_pool = (MaxPool2DFixedPadding(3, 2, name="stem_pool")
                      if use_initial_max_pool else None)

    block_class = _BLOCK_CLASSES[self.version][spec.block_type]
    in_channels = stem_channels
    stages = []
    for stage_index, (base_channels, num_blocks) in enumerate(
        zip(_STAGE_CHANNELS, spec.blocks_per_stage)):
      filters = scale_channels(base_channels, width_multiplier)
      blocks = []
      for block_index in range(num_blocks):
        strides = 2 if (stage_index > 0 and block_index == 0) else 1
        out_channels = filters * block_class.expansion
        blocks.append(block_class(
            filters,
            strides=strides,
            use_projection=strides != 1 or in_channels != out_channels,
            zero_init_last_gamma=zero_init_last_block_gamma,
            name=f"stage{stage_index + 1}_block{block_index + 1}",
            **bn_kwargs))
        in_channels = out_channels
      stages.append(blocks)
    # One list of blocks per stage; tf_keras tracks nested lists of layers.
    self.stages = stages
    self._output_dim = in_channels
    # v2 blocks end with the bare residual sum: activate it before pooling.
    self.final_bn = (make_batch_norm(batch_norm_momentum, batch_norm_epsilon,
                                     synchronized_batch_norm, name="final_bn")
                     if self.version == 2 else None)
    self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")

  @property
  def output_dim(self) -> int:
    """Number of channels of `h` (512*w for depths 18/34, 2048*w above)."""
    return self._output_dim

  def call(self, images, training=False, return_feature_maps=False):
    """Encodes images.

    Args:
      images: float tensor `[batch, height, width, channels]`.
      training: BN in training mode (batch statistics, moving-average update).
      return_feature_maps: also return the intermediate feature maps.

    Returns:
      `h`, `[batch, output_dim]`; with `return_feature_maps`, the tuple
      `(h, feature_maps)` where `feature_maps` maps "stem" (after the optional
      max-pool), "stage1".."stage4" to their outputs and "final" to the map
      that is pooled into `h` (v1: the stage-4 output; v2: the stage-4 output
      after the final BN + ReLU).
    """
    feature_maps: Dict[str, tf.Tensor] = {}
    x = self.stem_conv(images)
    if self.stem_bn is not None:
      x = tf.nn.relu(self.stem_bn(x, training=training))
    if self.stem_pool is not None:
      x = self.stem_pool(x)
    feature_maps["stem"] = x
    for stage_index, blocks in enumerate(self.stages):
      for block in blocks:
        x = block(x, training=training)
      feature_maps[f"stage{stage_index + 1}"] = x
    if self.final_bn is not None:
      x = tf.nn.relu(self.final_bn(x, training=training))
    feature_maps["final"] = x
    h = self.global_pool(x)
    if return_feature_maps:
      return h, feature_maps
    return h

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([tf.TensorShape(input_shape)[0], self._output_dim])

  def get_config(self):
    config = super().get_config()
    config.update(
        depth=self.depth,
        width_multiplier=self.width_multiplier,
        first_conv_kernel_size=self.first_conv_kernel_size,
        first_conv_stride=self.first_conv_stride,
        use_initial_max_pool=self.use_initial_max_pool,
        batch_norm_momentum=self.batch_norm_momentum,
        batch_norm_epsilon=self.batch_norm_epsilon,
        synchronized_batch_norm=self.synchronized_batch_norm,
        zero_init_last_block_gamma=self.zero_init_last_block_gamma,
        version=self.version)
    return config
