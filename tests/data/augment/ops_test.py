"""Image ops: crops (and the crop decoded from a JPEG), colour jitter, blur; eager
== Dataset.map, seeding, ranges, semantics."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.data.augment import ops
from tests.data.helpers import OTHER_SEED, SEED, check_range, image, mapped, smooth_image

_ASPECT = (0.75, 4 / 3)


def test_random_resized_crop_is_a_crop():
  # A horizontal ramp: any crop resized keeps the ramp monotone and inside [0, 1].
  ramp = tf.tile(tf.linspace(0.0, 1.0, 32)[None, :, None], [32, 1, 1])
  out = ops.random_resized_crop(ramp, tf.constant([1, 2]), 16, (0.3, 0.5), _ASPECT)
  row = out[8, :, 0].numpy()
  assert np.all(np.diff(row) >= -1e-4)
  assert row[-1] - row[0] < 0.95  # an actual crop, not the full image


def test_decode_and_random_crop_reads_only_the_window_of_a_jpeg():
  picture = smooth_image(60, 80)
  for encoded in (tf.io.encode_jpeg(picture, quality=95), tf.io.encode_png(picture)):
    crop = ops.decode_and_random_crop(encoded, SEED, 3, (0.1, 0.3), _ASPECT)
    full = ops.decode_image(encoded, 3)
    begin, size = ops.crop_window(tf.shape(full), SEED, (0.1, 0.3), _ASPECT)
    assert crop.dtype == tf.uint8 and tuple(crop.shape[:2]) == tuple(size.numpy()[:2])
    assert 0.1 * 4800 <= crop.shape[0] * crop.shape[1] <= 0.3 * 4800 + 100
    expected = tf.slice(full, begin, size)
    # JPEG chroma upsampling differs at the window's edges; PNG is exact.
    assert np.abs(crop.numpy().astype(int) - expected.numpy().astype(int)).mean() < 2


# ------------------------------------------------------------------ colour jitter
@pytest.mark.parametrize("style", [dict(), dict(pytorch_style=True),
                                   dict(multiplicative_brightness=True),
                                   dict(random_order=False)])
def test_color_jitter_styles(style):
  rgb = image(3, tf.float32)
  eager = ops.color_jitter(rgb, SEED, 1.0, **style)
  in_map = mapped(lambda im, s: ops.color_jitter(im, s, 1.0, **style), rgb, SEED)
  np.testing.assert_allclose(eager.numpy(), in_map.numpy(), atol=1e-6)
  assert eager.shape == rgb.shape
  check_range(eager)
  assert not np.allclose(eager, rgb)
  np.testing.assert_array_equal(ops.color_jitter(rgb, SEED, 1.0, **style), eager)
  assert not np.allclose(ops.color_jitter(rgb, OTHER_SEED, 1.0, **style), eager)


def _jitter_constant_gray(seeds, strength, **style):
  """On a constant gray image only brightness acts: returns the output values."""
  gray = tf.fill([4, 4, 3], 0.5)
  fn = tf.function(lambda s: ops.color_jitter(gray, s, strength, **style))
  out = np.stack([fn(tf.constant([k, 11], tf.int64)).numpy() for k in range(seeds)])
  assert np.allclose(out, out[:, :1, :1, :1], atol=1e-5)  # still constant and gray
  return out[:, 0, 0, 0]


def test_jitter_brightness_ranges():
  # PyTorch: 0.5 * factor, factor uniform in [max(0, 1 - 0.8 s), 1 + 0.8 s].
  values = _jitter_constant_gray(150, 1.0, pytorch_style=True)
  assert values.min() >= 0.5 * 0.2 - 1e-5 and values.max() <= 0.5 * 1.8 + 1e-5
  assert values.min() < 0.5 * 0.3 and values.max() > 0.5 * 1.7
  values = _jitter_constant_gray(150, 2.0, pytorch_style=True)  # factor in [0, 2.6]
  assert values.min() < 0.1 and values.max() == 1.0
  # TF style, additive: 0.5 + delta, |delta| <= 0.8 s.
  values = _jitter_constant_gray(150, 0.25, pytorch_style=False)
  assert values.min() >= 0.3 - 1e-5 and values.max() <= 0.7 + 1e-5
  assert values.min() < 0.32 and values.max() > 0.68


def test_color_jitter_random_order():
  # Brightness then contrast differs from contrast then brightness (PyTorch style,
  # contrast pulls toward the mean): the order varies with the seed.
  rgb = image(3, tf.float32, size=8)
  fn = tf.function(lambda s: ops.color_jitter(rgb, s, 0.5, pytorch_style=True))
  fixed = tf.function(lambda s: ops.color_jitter(rgb, s, 0.5, pytorch_style=True,
                                                 random_order=False))
  same = [np.allclose(fn(tf.constant([k, 2])), fixed(tf.constant([k, 2])), atol=1e-6)
          for k in range(12)]
  assert 0 < sum(same) < 12  # identity permutation sometimes (1/24), mostly not
  with pytest.raises(ValueError):
    ops.color_jitter(rgb, SEED, 3.0)  # hue delta 0.6 > 0.5


# ------------------------------------------------------------------ blur
def test_random_blur_per_image_and_batched():
  images = tf.stack([image(3, tf.float32, size=40, seed=k) for k in range(4)])
  seeds = ops.split_seed(SEED, 4)
  single = ops.random_blur(images[0], seeds[0], 1.0)
  in_map = mapped(lambda im, s: ops.random_blur(im, s, 1.0), images[0], seeds[0])
  np.testing.assert_allclose(single.numpy(), in_map.numpy(), atol=1e-6)
  assert single.shape == (40, 40, 3)
  check_range(single)
  assert not np.allclose(single, images[0])
  assert float(tf.math.reduce_std(single)) < float(tf.math.reduce_std(images[0]))
  np.testing.assert_array_equal(ops.random_blur(images[0], seeds[0], 0.0), images[0])
  assert not np.allclose(ops.random_blur(images[0], seeds[1], 1.0), single)

  # Batched, one seed per image: equals the per-image blur; eager == map.
  batched = ops.batch_random_blur(images, seeds, 0.5)
  per_image = tf.stack([ops.random_blur(images[b], seeds[b], 0.5) for b in range(4)])
  np.testing.assert_allclose(batched, per_image, atol=1e-6)
  in_map = mapped(lambda im, s: ops.batch_random_blur(im, s, 0.5), images, seeds)
  np.testing.assert_allclose(batched.numpy(), in_map.numpy(), atol=1e-6)
  # Batched, one seed for the batch: about `probability` of the images blurred.
  many = tf.tile(images, [16, 1, 1, 1])
  out = ops.batch_random_blur(many, SEED, 0.5)
  in_map = mapped(lambda im, s: ops.batch_random_blur(im, s, 0.5), many, SEED)
  np.testing.assert_allclose(out.numpy(), in_map.numpy(), atol=1e-6)
  blurred = np.any(np.abs(out - many) > 1e-6, axis=(1, 2, 3))
  assert 16 <= blurred.sum() <= 48
  np.testing.assert_array_equal(ops.batch_random_blur(many, SEED, 0.5), out)


def test_blur_keeps_a_constant_image_and_the_kernel_size():
  constant = tf.fill([2, 50, 50, 3], 0.37)
  out = ops.batch_random_blur(constant, SEED, 1.0)
  np.testing.assert_allclose(out, constant, atol=1e-6)  # reflect padding, sum-1 kernel
  # Kernel: side // 10 taps made odd; an impulse spreads over radius (side // 10) // 2.
  impulse = np.zeros([1, 50, 50, 1], np.float32)
  impulse[0, 25, 25, 0] = 1.0
  out = ops.gaussian_blur(tf.constant(impulse), tf.constant([2.0]), 2)[0, :, :, 0]
  rows = np.nonzero(out.numpy().sum(axis=1) > 0)[0]
  np.testing.assert_array_equal(rows, np.arange(23, 28))
  np.testing.assert_allclose(out.numpy().sum(), 1.0, atol=1e-5)
  assert ops.blur_radius(224) == 11 and ops.blur_radius(32) == 1
