"""The ResNet encoder: v1 (torchvision style "v1.5") and v2 (pre-activation).

The encoder maps images `[batch, height, width, channels]` (channels last) to
the globally average-pooled representation `h` of shape `[batch, output_dim]`.
Layout shared by both versions (He et al. 2016, as in torchvision and
TF-official):

- stem: KxK stride-S convolution, then optionally a 3x3 stride-2 max-pool
  (ImageNet stem: K=7, S=2, max-pool; small-image stem: K=3, S=1, no
  max-pool);
- four stages of residual blocks (`blocks.py`) with 64, 128, 256, 512 (times
  the width multiplier) channels; stages 2-4 halve the resolution in their
  first block; basic blocks for depths 18/34, bottleneck blocks for 50 and
  more (`enums.RESNET_LAYOUTS`);
- convolutions have no bias.

The versions differ in the block classes (`blocks.BLOCK_CLASSES`) and in the
BN + ReLU around the stages: v1 follows the stem convolution with BN + ReLU
(before the max-pool); v2 leaves the stem bare, since the first block
pre-activates its input, and adds a final BN + ReLU after the last stage,
before the global pooling.

One deliberate difference to TF-official v2: TF-official gives the first block
of *every* stage a projection shortcut, also where the shape does not change
(stage 1 of ResNet-18/34, 64 -> 64 channels); here, as in our v1 and
torchvision, a projection is used only where the shape changes, so the v2
ResNet-18/34 have one 1x1 convolution fewer than TF-official's (the bottleneck
depths have the same convolutions).
"""

import dataclasses
from typing import Dict, Tuple

import tensorflow as tf
import tf_keras as keras

from supcon_tf import enums
from supcon_tf.models.blocks import BLOCK_CLASSES
from supcon_tf.models.layers import Conv2DFixedPadding
from supcon_tf.models.layers import make_batch_norm
from supcon_tf.models.layers import MaxPool2DFixedPadding
from supcon_tf.models.layers import scale_channels


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  """The block type and the number of blocks of each of the four stages.

  Attributes:
    block_type: "basic" or "bottleneck".
    blocks_per_stage: number of residual blocks of stages 1-4.
  """
  block_type: str  # "basic" or "bottleneck".
  blocks_per_stage: Tuple[int, int, int, int]


# The layouts are defined once, in `enums.RESNET_LAYOUTS` (TF-free, read by the
# config validation too).
_RESNET_SPECS = {
    depth: ResNetSpec(block_type, tuple(blocks_per_stage))
    for depth, (block_type, blocks_per_stage) in enums.RESNET_LAYOUTS.items()
}

SUPPORTED_DEPTHS = enums.RESNET_DEPTHS

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

  Returns:
    The depth's `ResNetSpec`.

  Raises:
    ValueError: the depth is not supported.
  """
  try:
    return _RESNET_SPECS[depth]
  except (KeyError, TypeError):
    raise ValueError(
        f"Unsupported ResNet depth {depth!r}; allowed depths: "
        f"{', '.join(str(d) for d in SUPPORTED_DEPTHS)}.") from None


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
      depth: one of `SUPPORTED_DEPTHS` (18, 34, 50, 101, 152, 200).
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
        convolution (see `blocks._PreActivationBlock`).
      version: 1 for ResNet v1 (post-activation), 2 for ResNet v2
        (pre-activation, TF-official layout; see the module docstrings
        here and in `blocks.py`).
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

    block_class = BLOCK_CLASSES[self.version][spec.block_type]
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
