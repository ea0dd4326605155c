"""Helpers shared by the tests of supcon_tf.models (not a *_test.py file)."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

# Tiny encoder settings used wherever the size of the model does not matter.
TINY = dict(width_multiplier=0.125, first_conv_kernel_size=3,
            first_conv_stride=1, use_initial_max_pool=False)


def layers_of_type(layer, layer_type):
  # The walk other modules (weight decay, LARS exclusion) rely on.
  sublayers = layer._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  return [l for l in sublayers if isinstance(l, layer_type)]


def images(batch=2, size=16, channels=3, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return tf.constant(scale * rng.normal(size=(batch, size, size, channels)),
                     tf.float32)


def randomize_batch_norms(layer, seed=0):
  """Non-trivial gamma, beta and moving statistics for every BN of `layer`."""
  rng = np.random.default_rng(seed)
  for bn in layers_of_type(layer, keras.layers.BatchNormalization):
    c = int(bn.gamma.shape[0])
    bn.gamma.assign(rng.uniform(0.5, 1.5, c))
    bn.beta.assign(rng.normal(0.0, 0.5, c))
    bn.moving_mean.assign(rng.normal(0.0, 0.5, c))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def bn_inference(x, bn):
  return ((x - bn.moving_mean) / tf.sqrt(bn.moving_variance + bn.epsilon)
          * bn.gamma + bn.beta)
