"""Tests of supcon_tf.models.blocks: v1 and v2 blocks against manual math."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.models import blocks
from tests.models import common


def _bn_eval(x, epsilon=1e-5):
  # A freshly built BN in inference mode: mean 0, variance 1, gamma 1, beta 0.
  return x / np.sqrt(1.0 + epsilon)


def test_bottleneck_block_matches_manual_computation():
  block = blocks.BottleneckBlockV1(4, strides=2, use_projection=True)
  x = common.images(batch=2, size=6, channels=8)
  y = block(x, training=False)

  def conv(inputs, layer, stride, pad):
    if pad:
      inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.nn.conv2d(inputs, layer.kernel, strides=stride, padding="VALID")

  # v1.5: the stride sits on the 3x3 conv; the 1x1 convs are stride 1.
  r = tf.nn.relu(_bn_eval(conv(x, block.conv1, 1, 0)))
  r = tf.nn.relu(_bn_eval(conv(r, block.conv2, 2, 1)))
  r = _bn_eval(conv(r, block.conv3, 1, 0))
  shortcut = _bn_eval(conv(x, block.shortcut_conv, 2, 0))
  expected = tf.nn.relu(r + shortcut)
  assert y.shape == (2, 3, 3, 16)
  np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
  assert block.conv1.strides == (1, 1) and block.conv2.strides == (2, 2)


def test_basic_block_identity_shortcut():
  block = blocks.BasicBlockV1(8, strides=1, use_projection=False)
  x = tf.nn.relu(common.images(batch=1, size=5, channels=8))
  y = block(x, training=False)
  assert block.shortcut_conv is None
  r = tf.nn.relu(_bn_eval(tf.nn.conv2d(x, block.conv1.kernel, 1, "SAME")))
  r = _bn_eval(tf.nn.conv2d(r, block.conv2.kernel, 1, "SAME"))
  np.testing.assert_allclose(y.numpy(), tf.nn.relu(r + x).numpy(),
                             rtol=1e-5, atol=1e-5)


def _reference_conv(inputs, layer, stride, pad):
  if pad:
    inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  return tf.nn.conv2d(inputs, layer.kernel, strides=stride, padding="VALID")


def test_bottleneck_block_v2_matches_manual_pre_activation():
  block = blocks.BottleneckBlockV2(4, strides=2, use_projection=True)
  x = common.images(batch=2, size=6, channels=8)
  block(x)
  common.randomize_batch_norms(block)
  y = block(x, training=False)
  # bn<i> + ReLU precede conv<i>; the projection takes the pre-activation;
  # nothing after the addition; the stride is on the 3x3 conv.
  preact = tf.nn.relu(common.bn_inference(x, block.bn1))
  shortcut = _reference_conv(preact, block.shortcut_conv, 2, 0)
  act = lambda t, bn: tf.nn.relu(common.bn_inference(t, bn))
  r = _reference_conv(preact, block.conv1, 1, 0)
  r = _reference_conv(act(r, block.bn2), block.conv2, 2, 1)
  r = _reference_conv(act(r, block.bn3), block.conv3, 1, 0)
  assert y.shape == (2, 3, 3, 16)
  np.testing.assert_allclose(y.numpy(), (r + shortcut).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert np.any(y.numpy() < 0)  # No ReLU after the addition.
  # A shortcut from the raw input would differ (x has negative entries).
  raw_shortcut = _reference_conv(x, block.shortcut_conv, 2, 0)
  assert not np.allclose(y.numpy(), (r + raw_shortcut).numpy(), atol=1e-3)
  assert block.shortcut_bn is None
  bn_channels = [int(bn.gamma.shape[0])
                 for bn in (block.bn1, block.bn2, block.bn3)]
  assert bn_channels == [8, 4, 4]
  assert block.conv1.strides == (1, 1) and block.conv2.strides == (2, 2)
  assert block.conv3.strides == (1, 1) and block.shortcut_conv.strides == (2, 2)


@pytest.mark.parametrize("strides,use_projection", [(1, False), (2, True)])
def test_basic_block_v2_matches_manual_pre_activation(strides, use_projection):
  in_channels = 4 if use_projection else 8
  block = blocks.BasicBlockV2(8, strides=strides, use_projection=use_projection)
  x = common.images(batch=2, size=5, channels=in_channels)
  block(x)
  common.randomize_batch_norms(block, seed=1)
  y = block(x, training=False)
  preact = tf.nn.relu(common.bn_inference(x, block.bn1))
  if use_projection:
    shortcut = _reference_conv(preact, block.shortcut_conv, strides, 0)
  else:
    assert block.shortcut_conv is None
    shortcut = x  # The identity shortcut is the raw, not pre-activated, input.
  r = _reference_conv(preact, block.conv1, strides, 1)
  r = _reference_conv(tf.nn.relu(common.bn_inference(r, block.bn2)), block.conv2,
                      1, 1)
  np.testing.assert_allclose(y.numpy(), (r + shortcut).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert np.any(y.numpy() < 0)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
