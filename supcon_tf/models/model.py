"""The SupCon model: encoder + projection head + linear classifier."""

from typing import Dict

import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf.models import heads
from supcon_tf.models import resnet

# `ResNet(version=...)` of each `ResNetArchitecture`.
_RESNET_VERSIONS = {
    config_lib.ResNetArchitecture.RESNET_V1: 1,  # post-activation (v1.5)
    config_lib.ResNetArchitecture.RESNET_V2: 2,  # pre-activation
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
               name: str = "supcon_model",
               **kwargs):
    """Wraps the three parts.

    Args:
      encoder: maps images to `h`; called as `encoder(images, training=...)`.
      projection_head: maps the head input to `z`; called with `training`.
      classifier: maps the head input to logits.
      normalize_embedding: L2-normalise `h` before the heads.
      name: model name.
      **kwargs: passed to `keras.Model`.
    """
    super().__init__(name=name, **kwargs)
    self.encoder = encoder
    self.projection_head = projection_head
    self.classifier = classifier
    self.normalize_embedding = normalize_embedding

  def encode(self, images, training=False):
    """Returns the un-normalised representation `h`."""
    return self.encoder(images, training=training)

  def head_input(self, h):
    """What the heads receive: `l2_normalize(h)` (float32 math) or `h`."""
    if not self.normalize_embedding:
      return h
    # Normalise in float32 for accuracy, then go back to h's dtype so the
    # heads keep running in the compute dtype under mixed precision.
    normalized = tf.math.l2_normalize(tf.cast(h, tf.float32), axis=-1)
    return tf.cast(normalized, h.dtype)

  def project(self, h, training=False):
    """Returns the L2-normalised projection `z` (float32) of `h`."""
    return self.projection_head(self.head_input(h), training=training)

  def classify(self, h, training=False):
    """Returns the float32 logits of `h`.

    `training` is accepted for symmetry with `project`; the linear classifier
    has no training-dependent behaviour.
    """
    del training  # Unused.
    return self.classifier(self.head_input(h))

  def call(self, images, training=False) -> Dict[str, tf.Tensor]:
    """Returns `{"embedding": h, "projection": z, "logits": logits}`."""
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

  Args:
    model_config: the `ModelConfig`.
    num_classes: number of classes of the linear classifier.
    synchronized_batch_norm: all-reduce the encoder's BN batch statistics
      across replicas (a property of the run's strategy, hence not read from
      `model_config`).

  `model_config.resnet_architecture` picks the encoder: `RESNET_V1` is
  `ResNet(version=1)` (post-activation, v1.5), `RESNET_V2` is
  `ResNet(version=2)` (pre-activation).

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
      name="projection_head")
  classifier = heads.LinearClassifier(
      num_classes=num_classes,
      zero_initialize=model_config.zero_initialize_classifier,
      stop_gradient=model_config.stop_gradient_before_classification_head,
      name="classifier")
  return SupConModel(
      encoder=encoder,
      projection_head=projection_head,
      classifier=classifier,
      normalize_embedding=model_config.normalize_embedding)
