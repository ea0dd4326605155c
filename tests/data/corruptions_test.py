"""Corruptions: determinism, batch-split invariance, severity ladders, refusals and
the semantics of the individual corruptions (corruptions.py and its two
implementation modules)."""

import numpy as np
import pytest

from supcon_tf.data import corruptions
from supcon_tf.data import corruptions_digital as digital
from supcon_tf.data import corruptions_noise_blur as noise_blur

# Corruptions that draw nothing: their seed must not matter.
DETERMINISTIC = {"defocus_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate"}
SHAPES = [(28, 28, 1), (32, 32, 3)]


def natural_images(num, size, channels, seed=0):
  """Smooth shaded ellipses and flat bars with sharp edges on a gradient: what
  blurs, noise and resampling act on in photos, without reading any data."""
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[0:size, 0:size] / size
  out = []
  for _ in range(num):
    cy, cx = rng.uniform(0.35, 0.65, 2)
    ry, rx = rng.uniform(0.2, 0.35, 2)
    ellipse = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    shade = 0.55 + 0.35 * np.cos(3 * rows + rng.uniform(0, 3)) * np.sin(2 * cols)
    top, left = rng.integers(size // 8, size // 2, 2)
    bar = np.zeros((size, size), bool)
    bar[top:top + size // 5, left:left + size // 3] = True
    layers = []
    for c in range(channels):
      tint = rng.uniform(0.6, 1.0)
      background = 0.1 + 0.15 * (rows if c % 2 else cols)
      layers.append(np.where(bar, 0.9 * tint, np.where(ellipse, shade * tint, background)))
    out.append(np.stack(layers, -1))
  return np.rint(np.clip(np.stack(out), 0, 1) * 255).astype(np.uint8)


def distance(a, b):
  return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def cases():
  return [(shape, name) for shape in SHAPES
          for name in corruptions.corruptions_for(shape[-1])]


# ------------------------------------------------------------------ names
def test_names():
  assert len(set(corruptions.CORRUPTIONS)) == len(corruptions.CORRUPTIONS) == 15
  assert corruptions.COLOUR_ONLY == {"saturate"}
  assert corruptions.SEVERITIES == (1, 2, 3, 4, 5)
  assert corruptions.corruptions_for(3) == corruptions.CORRUPTIONS
  grey = corruptions.corruptions_for(1)
  assert grey == tuple(c for c in corruptions.CORRUPTIONS if c != "saturate")
  with pytest.raises(ValueError, match="1 or 3 channels, not 2"):
    corruptions.corruptions_for(2)


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("shape, name", cases())
def test_deterministic_split_invariant_shape_kept(shape, name):
  images = natural_images(6, shape[0], shape[-1], seed=1)
  for severity in (1, 3, 5):
    out = corruptions.corrupt(images, name, severity, seed=7)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out, corruptions.corrupt(images, name, severity, seed=7))
    split = np.concatenate([
        corruptions.corrupt(images[:2], name, severity, seed=7),
        corruptions.corrupt(images[2:], name, severity, seed=7, first_index=2)])
    assert np.array_equal(out, split)
    other_seed = corruptions.corrupt(images, name, severity, seed=8)
    assert np.array_equal(out, other_seed) == (name in DETERMINISTIC)
    # Image i's draws depend on first_index + i: the same image elsewhere in a
    # set is corrupted differently.
    moved = corruptions.corrupt(images, name, severity, seed=7, first_index=1)
    assert np.array_equal(out, moved) == (name in DETERMINISTIC)


@pytest.mark.parametrize("name", corruptions.CORRUPTIONS)
def test_chunks_do_not_change_results(name, monkeypatch):
  images = natural_images(7, 32, 3, seed=2)
  whole = corruptions.corrupt(images, name, 4, seed=3)
  # Chunks of 3 images (the last one shorter).
  monkeypatch.setattr(corruptions, "_CHUNK_VALUES", 3 * images[0].size)
  assert np.array_equal(corruptions.corrupt(images, name, 4, seed=3), whole)


def test_seeded_by_seed_index_severity_and_position():
  """Image i's generator is default_rng([seed, index in CORRUPTIONS, severity,
  first_index + i]): gaussian_noise recomputed from it."""
  images = natural_images(3, 28, 1)
  out = corruptions.corrupt(images, "gaussian_noise", 3, seed=11, first_index=5)
  for i, image in enumerate(images):
    rng = np.random.default_rng([11, 0, 3, 5 + i])
    noise = rng.standard_normal(image.shape).astype(np.float32)
    expected = np.rint(np.clip(image / np.float32(255) + np.float32(0.08) * noise, 0, 1)
                       * 255)
    assert np.abs(out[i].astype(np.float64) - expected).max() <= 1


def test_other_sizes_and_an_empty_batch():
  for shape in [(2, 8, 8, 1), (2, 9, 13, 3), (1, 64, 48, 3)]:
    images = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    for name in corruptions.corruptions_for(shape[-1]):
      assert corruptions.corrupt(images, name, 5, seed=0).shape == shape
  empty = np.zeros((0, 28, 28, 1), np.uint8)
  assert corruptions.corrupt(empty, "fog", 2, seed=0).shape == (0, 28, 28, 1)


# ------------------------------------------------------------------ severities
@pytest.mark.parametrize("shape", SHAPES, ids=["28x28x1", "32x32x3"])
def test_severity_ladders(shape):
  """Each step changes the images at least as much as the one before (mean
  absolute difference to the clean images), and 5 clearly more than 1. For the
  random corruptions this holds on average: with 16 images it held for every
  corruption on 12 fixtures x 2 shapes, each with its own seed."""
  images = natural_images(16, shape[0], shape[-1], seed=0)
  for name in corruptions.corruptions_for(shape[-1]):
    d = [distance(corruptions.corrupt(images, name, s, seed=0), images)
         for s in corruptions.SEVERITIES]
    assert d[0] > 0, name
    assert all(b >= a for a, b in zip(d, d[1:])), (name, d)
    assert d[4] > 1.2 * d[0], (name, d)


# ------------------------------------------------------------------ refusals
def test_refusals():
  grey = natural_images(2, 28, 1)
  with pytest.raises(ValueError, match="unknown corruption 'snow'"):
    corruptions.corrupt(grey, "snow", 1, seed=0)
  for severity in (0, 6, True, 2.5, "3"):
    with pytest.raises(ValueError, match="severity must be one of 1..5"):
      corruptions.corrupt(grey, "fog", severity, seed=0)
  with pytest.raises(ValueError, match="'saturate' needs 3 colour channels; these "
                                       "images have 1"):
    corruptions.corrupt(grey, "saturate", 1, seed=0)
  with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
    corruptions.corrupt(grey, "fog", 1, seed=-1)
  with pytest.raises(ValueError, match="first_index must be an int >= 0"):
    corruptions.corrupt(grey, "fog", 1, seed=0, first_index=1.0)
  with pytest.raises(ValueError, match=r"uint8 images \[N, H, W, C\], got float32"):
    corruptions.corrupt(grey.astype(np.float32), "fog", 1, seed=0)
  with pytest.raises(ValueError, match=r"got uint8 \[28, 28, 1\]"):
    corruptions.corrupt(grey[0], "fog", 1, seed=0)
  with pytest.raises(ValueError, match="1 or 3 channels, not 2"):
    corruptions.corrupt(np.zeros((1, 28, 28, 2), np.uint8), "contrast", 1, seed=0)
  with pytest.raises(ValueError, match="at least 8x8 pixels, got 7x28"):
    corruptions.corrupt(np.zeros((1, 7, 28, 1), np.uint8), "contrast", 1, seed=0)


# ------------------------------------------------------------------ semantics
def test_noise_levels_follow_the_tables():
  grey = np.full((8, 32, 32, 3), 128, np.uint8)  # mid-grey: nothing clips
  for severity in (1, 5):
    out = corruptions.corrupt(grey, "gaussian_noise", severity, seed=0)
    sd = (out.astype(np.float64) - 128).std() / 255
    assert sd == pytest.approx(noise_blur.GAUSSIAN_NOISE[severity - 1], rel=0.05)
    out = corruptions.corrupt(grey, "impulse_noise", severity, seed=0)
    changed = np.isin(out, (0, 255)).mean()
    assert changed == pytest.approx(noise_blur.IMPULSE_NOISE[severity - 1], rel=0.15)
    out = corruptions.corrupt(grey, "shot_noise", severity, seed=0)
    photons = noise_blur.SHOT_NOISE[severity - 1]
    # Poisson(x k) / k has variance x / k.
    sd = (out.astype(np.float64) - 128).std() / 255
    assert sd == pytest.approx(np.sqrt(128 / 255 / photons), rel=0.05)


def test_flat_images_survive_blurs_resampling_and_jpeg():
  flat = np.full((2, 28, 28, 1), 90, np.uint8)
  for name in ("defocus_blur", "gaussian_blur", "glass_blur", "motion_blur",
               "pixelate", "elastic_transform", "contrast"):
    assert np.array_equal(corruptions.corrupt(flat, name, 5, seed=0), flat), name
  jpeg = corruptions.corrupt(flat, "jpeg_compression", 5, seed=0)
  assert distance(jpeg, flat) <= 1  # the DC coefficient is quantised too


def test_photometric_corruptions():
  images = natural_images(4, 32, 3, seed=3)
  out = corruptions.corrupt(images, "contrast", 5, seed=0).astype(np.float64)
  mean = images.mean(axis=(1, 2))
  assert np.abs(out.mean(axis=(1, 2)) - mean).max() < 1
  assert out.std(axis=(1, 2)).mean() < 0.2 * images.std(axis=(1, 2)).mean()
  # brightness: hue and saturation kept (channel ratios), value + 0.2 (51 / 255).
  pixel = np.array([[[[40, 80, 120]]]], np.uint8).repeat(8, 1).repeat(8, 2)
  brighter = corruptions.corrupt(pixel, "brightness", 4, seed=0)[0, 0, 0]
  assert list(brighter) == [57, 114, 171]  # 171 / 120 times each
  black = np.zeros((1, 8, 8, 3), np.uint8)
  assert (corruptions.corrupt(black, "brightness", 1, seed=0) == 13).all()
  # saturate: value kept, saturation up, grey pixels stay grey.
  saturated = corruptions.corrupt(pixel, "saturate", 2, seed=0)[0, 0, 0]
  # s = (120 - 40) / 120 = 2/3 -> clip(2 * 2/3 + 0.1) = 1: the minimum goes to 0.
  assert list(saturated) == [0, 60, 120]
  grey = np.full((1, 8, 8, 3), 77, np.uint8)
  assert np.array_equal(corruptions.corrupt(grey, "saturate", 5, seed=0), grey)


def test_plasma_and_area_matrix():
  rng = np.random.default_rng(0)
  field = digital.plasma(rng.uniform(-1, 1, (3, 32 * 32 - 1)), 32, 2.0)
  assert field.shape == (3, 32, 32)
  assert field.min() == 0 and field.max() == 1
  smooth = digital.plasma(rng.uniform(-1, 1, (3, 32 * 32 - 1)), 32, 4.0)
  # A larger decay is smoother: smaller differences between neighbours.
  assert (np.abs(np.diff(smooth, axis=2)).mean()
          < np.abs(np.diff(field, axis=2)).mean())
  down = digital.area_matrix(5, 2)  # footprints [0, 2.5) and [2.5, 5)
  np.testing.assert_allclose(down, [[0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]])
  np.testing.assert_allclose(digital.area_matrix(7, 7), np.eye(7))


def test_disk_kernel():
  tiny = noise_blur.disk_kernel(0.2, 0.0)
  assert tiny[tiny.shape[0] // 2, tiny.shape[1] // 2] == 1
  disk = noise_blur.disk_kernel(2.0, 0.0)
  assert disk.sum() == pytest.approx(1)
  np.testing.assert_allclose(disk, disk.T)
  np.testing.assert_allclose(disk, disk[::-1])
  half = disk.shape[0] // 2
  assert disk[half, half] > 0 and disk[half, half + 2] > 0 and disk[0, 0] == 0


def test_translate():
  x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5, 1)
  moved = noise_blur.translate(x, np.array([1.0, 0.0]), np.array([0.0, 0.5]))
  np.testing.assert_allclose(moved[0, :3], x[0, 1:])  # one row up
  np.testing.assert_allclose(moved[0, 3], x[0, 3])    # edge repeated
  np.testing.assert_allclose(moved[1, :, :4], (x[1, :, :4] + x[1, :, 1:]) / 2)
