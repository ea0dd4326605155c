"""The SupCon model: encoder + projection head + linear classifier.

`build_model` is the one place that turns a `ModelConfig` into these layers,
so every caller (training, dry run) gets the same model from the same config.
"""

from typing import Dict

import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import enums
from supcon_tf.models import heads
from supcon_tf.models import resnet

# (mean, std) per channel of each `InputNormalization`, on [0, 1] images; the
# statistics are defined once, in `enums`.
INPUT_NORMALIZATIONS = enums.INPUT_NORMALIZATIONS

# `ResNet(version=...)` of each `ResNetArchitecture`.
_RESNET_VERSIONS = {
    enums.ResNetArchitecture.RESNET_V1: 1,  # post-activation (v1.5)
    enums.ResNetArchitecture.RESNET_V2: 2,  # pre-activation
}


class SupConModel(keras.Model):
  """Encoder `h = f(x)`, projection `z = g(h)` and logits `c(h)`.

  The heads see `l2_normalize(h)` when `normalize_embedding` is true (as the
  authors' release), `h` otherwise; `h` itself is returned un-normalised.

  Besides `call`, the parts are exposed separately (`encode`, `project`,
  `classify`, all taking `h`) so that a training step can run the encoder once
  in one BN mode (e.g. frozen statistics in the linear stage) and the heads in
  another.
  """

  def __init__(self,
               encoder: keras.layers.Layer,
               projection_head: keras.layers.Layer,
               classifier: keras.layers.Layer,
               normalize_embedding: bool = True,
               input_mean=None,
               input_std=None,
               name: str = "supcon_model",
               **kwargs):
    """Wraps the three parts.

    Args:
      encoder: maps images to `h`; called as `encoder(images, training=...)`.
      projection_head: maps the head input to `z`; called with `training`.
      classifier: maps the head input to logits.
      normalize_embedding: L2-normalise `h` before the heads.
      input_mean, input_std: per-channel whitening `(x - mean) / std` of the
        [0, 1] input images before the encoder (None: none). Constants, not
        variables: checkpoints do not change.
      name: model name.
      **kwargs: passed to `keras.Model`.

    Raises:
      ValueError: only one of `input_mean` and `input_std` is given.
    """
    super().__init__(name=name, **kwargs)
    self.encoder = encoder
    self.projection_head = projection_head
    self.classifier = classifier
    self.normalize_embedding = normalize_embedding
    if (input_mean is None) != (input_std is None):
      raise ValueError("input_mean and input_std go together")
    self.input_mean = None if input_mean is None else tuple(float(m) for m in input_mean)
    self.input_std = None if input_std is None else tuple(float(s) for s in input_std)

  def whiten(self, images):
    """The encoder's input: `images` whitened per channel (if configured).

    Args:
      images: [0, 1] images `[batch, height, width, channels]`.

    Returns:
      `(images - mean) / std`, or `images` itself without whitening. Constants
      of another channel count than the image's (e.g. RGB constants on a gray
      image) are replaced by their averages.
    """
    if self.input_mean is None:
      return images
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    mean, std = self.input_mean, self.input_std
    if channels is not None and len(mean) != channels:  # e.g. RGB constants, gray image
      mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return (images - tf.constant(mean, images.dtype)) / tf.constant(std, images.dtype)

  def encode(self, images, training=False):
    """Runs the encoder on whitened images.

    Args:
      images: [0, 1] images `[batch, height, width, channels]`.
      training: encoder BN in training mode.

    Returns:
      The un-normalised representation `h`, `[batch, encoder output_dim]`.
    """
    return self.encoder(self.whiten(images), training=training)

  def head_input(self, h):
    """What the heads receive.

    Args:
      h: the encoder representation.

    Returns:
      `l2_normalize(h)` (float32 math, cast back to `h`'s dtype) when
      `normalize_embedding`, else `h`.
    """
    if not self.normalize_embedding:
      return h
    # Normalise in float32 for accuracy, then go back to h's dtype so the
    # heads keep running in the compute dtype under mixed precision.
    normalized = tf.math.l2_normalize(tf.cast(h, tf.float32), axis=-1)
    return tf.cast(normalized, h.dtype)

  def project(self, h, training=False):
    """Runs the projection head.

    Args:
      h: the encoder representation.
      training: projection-head BN in training mode.

    Returns:
      The L2-normalised projection `z` (float32) of `h`.
    """
    return self.projection_head(self.head_input(h), training=training)

  def classify(self, h, training=False):
    """Runs the linear classifier.

    Args:
      h: the encoder representation.
      training: accepted for symmetry with `project`; the linear classifier
        has no training-dependent behaviour.

    Returns:
      The float32 logits of `h`.
    """
    del training  # Unused.
    return self.classifier(self.head_input(h))

  def call(self, images, training=False) -> Dict[str, tf.Tensor]:
    """Runs the encoder once and both heads on its output.

    Args:
      images: [0, 1] images `[batch, height, width, channels]`.
      training: BN in training mode (encoder and projection head).

    Returns:
      `{"embedding": h, "projection": z, "logits": logits}`.
    """
    h = self.encode(images, training=training)
    return {
        "embedding": h,
        "projection": self.project(h, training=training),
        "logits": self.classify(h),
    }


def build_model(model_config: config_lib.ModelConfig,
                num_classes: int,
                *,
                synchronized_batch_norm: bool = False) -> SupConModel:
  """Builds a `SupConModel` from the model section of the config.

  Variables are created on the first call (build it inside the strategy scope
  and call it once, e.g. on a dummy batch, before restoring a checkpoint or
  creating optimizer slots).

  `model_config.resnet_architecture` picks the encoder: `RESNET_V1` is
  `ResNet(version=1)` (post-activation, v1.5), `RESNET_V2` is
  `ResNet(version=2)` (pre-activation).

  Args:
    model_config: the `ModelConfig`.
    num_classes: number of classes of the linear classifier.
    synchronized_batch_norm: all-reduce the BN batch statistics of the encoder
      and of the projection head across replicas (a property of the run's
      strategy, hence not read from `model_config`).

  Returns:
    The unbuilt `SupConModel` (encoder "resnet", heads "projection_head" and
    "classifier").

  Raises:
    ValueError: unknown architecture or depth.
  """
  version = _RESNET_VERSIONS.get(model_config.resnet_architecture)
  if version is None:
    raise ValueError(
        f"Unsupported resnet_architecture {model_config.resnet_architecture}; "
        "supported: " + ", ".join(a.value for a in _RESNET_VERSIONS))
  encoder = resnet.ResNet(
      depth=model_config.resnet_depth,
      width_multiplier=model_config.resnet_width,
      first_conv_kernel_size=model_config.first_conv_kernel_size,
      first_conv_stride=model_config.first_conv_stride,
      use_initial_max_pool=model_config.use_initial_max_pool,
      batch_norm_momentum=model_config.batch_norm_momentum,
      batch_norm_epsilon=model_config.batch_norm_epsilon,
      synchronized_batch_norm=synchronized_batch_norm,
      zero_init_last_block_gamma=model_config.zero_init_last_block_gamma,
      version=version,
      name="resnet")
  projection_head = heads.ProjectionHead(
      layer_sizes=model_config.projection_head_layers,
      use_batch_norm=model_config.use_projection_batch_norm,
      batch_norm_momentum=model_config.batch_norm_momentum,
      batch_norm_epsilon=model_config.batch_norm_epsilon,
      synchronized_batch_norm=synchronized_batch_norm,
      name="projection_head")
  classifier = heads.LinearClassifier(
      num_classes=num_classes,
      zero_initialize=model_config.zero_initialize_classifier,
      stop_gradient=model_config.stop_gradient_before_classification_head,
      name="classifier")
  mean, std = INPUT_NORMALIZATIONS[model_config.input_normalization]
  return SupConModel(
      encoder=encoder,
      projection_head=projection_head,
      classifier=classifier,
      normalize_embedding=model_config.normalize_embedding,
      input_mean=mean,
      input_std=std)
