"""Tests of supcon_tf.models.layers: fixed padding, max-pool, kernel init, widths."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.models import layers
from tests.models import common


def test_width_rounding_and_minimum():
  assert layers.scale_channels(64, 0.125) == 8
  assert layers.scale_channels(64, 0.3) == 19  # 19.2
  assert layers.scale_channels(64, 0.001) == 1


def test_strided_conv_uses_symmetric_fixed_padding():
  conv = layers.Conv2DFixedPadding(2, 3, strides=2)
  x = common.images(batch=1, size=4, channels=1)
  y = conv(x)
  kernel = conv.kernel
  expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel,
                          strides=2, padding="VALID")
  tf_same = tf.nn.conv2d(x, kernel, strides=2, padding="SAME")
  assert y.shape == (1, 2, 2, 2)
  np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)
  # TF's 'SAME' pads (0, 1) on even sizes: different windows.
  assert not np.allclose(y.numpy(), tf_same.numpy(), atol=1e-3)
  assert conv.compute_output_shape([1, 4, 4, 1]).as_list() == [1, 2, 2, 2]
  assert conv.compute_output_shape([1, 7, 7, 1]).as_list() == [1, 4, 4, 2]


def test_stride1_conv_is_same_padding_and_1x1_stride2_is_unpadded():
  conv = layers.Conv2DFixedPadding(2, 3, strides=1)
  x = common.images(batch=1, size=5, channels=1)
  np.testing.assert_allclose(
      conv(x).numpy(),
      tf.nn.conv2d(x, conv.kernel, strides=1, padding="SAME").numpy(), atol=1e-6)
  pointwise = layers.Conv2DFixedPadding(2, 1, strides=2)
  np.testing.assert_allclose(
      pointwise(x).numpy(),
      tf.nn.conv2d(x, pointwise.kernel, strides=2, padding="VALID").numpy(),
      atol=1e-6)


def test_max_pool_pads_with_minus_infinity():
  pool = layers.MaxPool2DFixedPadding(3, 2)
  x = -1.0 - tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
  y = pool(x)[0, :, :, 0].numpy()
  # PyTorch MaxPool2d(3, 2, padding=1): windows rows/cols {0,1}, {1,2,3}.
  # x[i, j] = -1 - (4i + j) is largest at the smallest index of each window.
  np.testing.assert_array_equal(y, [[-1.0, -2.0], [-5.0, -6.0]])


def test_conv_round_trips_through_config():
  conv = layers.Conv2DFixedPadding(4, 3, strides=2)
  clone = layers.Conv2DFixedPadding.from_config(conv.get_config())
  assert clone.kernel_size == (3, 3) and clone.strides == (2, 2)
  assert clone.padding == "valid" and not clone.use_bias


def test_conv_kernels_are_he_normal_fan_out():
  conv = layers.Conv2DFixedPadding(256, 3)
  conv.build([None, 8, 8, 64])
  fan_out = 3 * 3 * 256
  std = float(np.std(conv.kernel.numpy()))
  assert std == pytest.approx(np.sqrt(2.0 / fan_out), rel=0.05)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
