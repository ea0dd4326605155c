"""The noise and blur corruptions of `corruptions.py`, and the helpers they share.

Every function here takes float32 images in [0, 1], shape [N, H, W, C], the
severity (1..5), one NumPy Generator per image (`corruptions.image_rngs`) and the
spatial scale (the shorter image side / 32), and returns float32 images of the
same shape, not yet clipped (`corruptions.corrupt` clips and rounds). Parameters
in pixels are CIFAR-10-C's (32 px images) times the scale; the others are used
as they are. The tables are module constants, one tuple of 5 per corruption.
"""

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

# Standard deviation of additive Gaussian noise (CIFAR-10-C).
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
# Photons per unit intensity of Poisson (shot) noise: fewer is noisier (CIFAR-10-C).
SHOT_NOISE = (500, 250, 100, 75, 50)
# Fraction of values replaced by 0 or 1, half each (CIFAR-10-C).
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)
# Standard deviation of multiplicative Gaussian noise x + x * n (CIFAR-10-C).
SPECKLE_NOISE = (0.06, 0.10, 0.12, 0.16, 0.20)
# Gaussian sigma in pixels at 32 px (CIFAR-10-C).
GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)
# (disk radius, Gaussian sigma) in pixels at 32 px. CIFAR-10-C's, except that its
# severities 4-5 blur the disk by 0.2 and 0.1 px, which leaves severity 4 about as
# blurred as 3 (sqrt((r/2)^2 + sigma^2) 0.54 against 0.65): here 0.5 px there, the
# sigma ImageNet-C gives its larger disks.
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.5), (1.5, 0.5))
# (blur sigma in pixels at 32 px, largest pixel move at 32 px, swaps per pixel).
# CIFAR-10-C's sigmas and moves; it shuffles 1 pass at severities 1-3 and 2 at 4-5,
# and its sigmas (<= 0.4 px) barely change an image, so its severities 1-3 (and
# 4-5) differ by chance alone: here the expected swaps per pixel grow at every
# step, through 1 and 2 at severities 3 and 5. Offsets are drawn from
# [-move, move] (CIFAR-10-C's code draws from [-move, move - 1]).
GLASS_BLUR = ((0.05, 1, 0.5), (0.25, 1, 0.75), (0.4, 1, 1.0), (0.25, 1, 1.5),
              (0.4, 1, 2.0))
# (kernel radius, Gaussian sigma along the stroke) in pixels at 32 px; the stroke's
# angle is drawn per image, uniform in [-45, 45] degrees. CIFAR-10-C's radii; its
# sigmas are 1, 1.5, 2, 2, 2.5 (the radius only cuts the kernel's tail, so its
# severities 3 and 4 differ by the angle alone): here sigma grows 0.5 px a step.
MOTION_BLUR = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.5), (9, 3.0))
MOTION_ANGLE_DEGREES = 45.0

Corruption = Callable[[np.ndarray, int, Sequence[np.random.Generator], float],
                      np.ndarray]


# ------------------------------------------------------------------ helpers
def per_image(rngs: Sequence[np.random.Generator],
              draw: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
  """`draw(rng)` for every image's generator, stacked on a new first axis.

  Args:
    rngs: one generator per image.
    draw: draws one image's random values from its generator.

  Returns:
    float32 [len(rngs), ...].
  """
  return np.stack([np.asarray(draw(r)) for r in rngs]).astype(np.float32)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
  """A Gaussian blur of every image and channel of [N, H, W, C] (reflected edges)."""
  if sigma <= 0:
    return x
  return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")


def pixels(base: float, scale: float) -> float:
  """A length of `base` pixels at 32 px, at this image size."""
  return base * scale


# ------------------------------------------------------------------ noise
def gaussian_noise(x, severity, rngs, scale):
  """x + n, n ~ N(0, GAUSSIAN_NOISE[severity]) per value."""
  del scale
  sd = GAUSSIAN_NOISE[severity - 1]
  return x + sd * per_image(rngs, lambda r: r.standard_normal(x.shape[1:]))


def shot_noise(x, severity, rngs, scale):
  """Poisson(x * k) / k per value, k = SHOT_NOISE[severity] photons."""
  del scale
  k = SHOT_NOISE[severity - 1]
  counts = np.stack([r.poisson(image * k) for r, image in zip(rngs, x)])
  return (counts / k).astype(np.float32)


def impulse_noise(x, severity, rngs, scale):
  """Salt and pepper: IMPULSE_NOISE[severity] of the values become 0 or 1."""
  del scale
  amount = IMPULSE_NOISE[severity - 1]
  u = per_image(rngs, lambda r: r.random(x.shape[1:]))
  out = x.copy()
  out[u < amount / 2] = 0.0
  out[(u >= amount / 2) & (u < amount)] = 1.0
  return out


def speckle_noise(x, severity, rngs, scale):
  """x + x * n, n ~ N(0, SPECKLE_NOISE[severity]) per value."""
  del scale
  sd = SPECKLE_NOISE[severity - 1]
  return x + x * sd * per_image(rngs, lambda r: r.standard_normal(x.shape[1:]))


# ------------------------------------------------------------------ blur
def gaussian_blur(x, severity, rngs, scale):
  """A Gaussian blur of sigma GAUSSIAN_BLUR[severity] (pixels at 32 px)."""
  del rngs
  return blur(x, pixels(GAUSSIAN_BLUR[severity - 1], scale))


def disk_kernel(radius: float, sigma: float, supersample: int = 8) -> np.ndarray:
  """A normalised disk of `radius` pixels (each pixel weighted by the part of it
  inside, measured on a supersample x supersample grid), then Gaussian-blurred by
  `sigma`: a lens out of focus. A disk smaller than a pixel is one pixel."""
  half = max(1, int(np.ceil(radius + 3 * sigma)))
  offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
  fine = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).ravel()
  inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius ** 2
  size = 2 * half + 1
  kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  if kernel.sum() == 0:
    kernel[half, half] = 1.0
  kernel = ndimage.gaussian_filter(kernel / kernel.sum(), sigma, mode="constant")
  return (kernel / kernel.sum()).astype(np.float32)


def defocus_blur(x, severity, rngs, scale):
  """Convolution with `disk_kernel` of DEFOCUS_BLUR[severity] (pixels at 32 px)."""
  del rngs
  radius, sigma = DEFOCUS_BLUR[severity - 1]
  kernel = disk_kernel(pixels(radius, scale), pixels(sigma, scale))
  return ndimage.convolve(x, kernel[None, :, :, None], mode="reflect")


def glass_blur(x, severity, rngs, scale):
  """Blur, shuffle pixels locally, blur again: frosted glass.

  The shuffle visits the pixels at least `move` from the border from the last to
  the first (row-major) and swaps each, with probability swaps / passes, with the
  pixel at a random offset in [-move, move]^2 (per image), in ceil(swaps) passes:
  a pixel swapped forward may be visited again, so some travel further than `move`.
  """
  sigma, move, swaps = GLASS_BLUR[severity - 1]
  sigma = pixels(sigma, scale)
  move = max(1, int(round(pixels(move, scale))))
  passes = int(np.ceil(swaps))
  n, h, w, c = x.shape
  out = blur(x, sigma)
  rows = np.arange(h - 1 - move, move - 1, -1)
  cols = np.arange(w - 1 - move, move - 1, -1)
  if not len(rows) or not len(cols):
    return blur(out, sigma)
  shape = (passes, len(rows), len(cols))

  def draw(rng):
    offsets = rng.integers(-move, move + 1, size=shape + (2,))
    return offsets * (rng.random(shape) < swaps / passes)[..., None]

  shifts = np.stack([draw(r) for r in rngs])
  flat = out.reshape(n, h * w, c).copy()
  idx = np.arange(n)
  for p in range(passes):
    for a, row in enumerate(rows):
      for b, col in enumerate(cols):
        here = row * w + col
        there = (row + shifts[:, p, a, b, 0]) * w + col + shifts[:, p, a, b, 1]
        mine = flat[:, here].copy()
        flat[:, here] = flat[idx, there]
        flat[idx, there] = mine
  return blur(flat.reshape(n, h, w, c), sigma)


def translate(x: np.ndarray, d_row: np.ndarray, d_col: np.ndarray) -> np.ndarray:
  """Each image moved by its own (fractional) offset, bilinear, edges repeated.

  Args:
    x: float32 [N, H, W, C].
    d_row: float [N]: output pixel (r, c) of image i reads (r + d_row[i], ...).
    d_col: float [N].

  Returns:
    float32 [N, H, W, C].
  """
  n, h, w, _ = x.shape
  idx = np.arange(n)[:, None]

  def taps(offsets, size):
    # Per image, the two source indices of each output index and the weight of
    # the second, [N, size] each.
    coords = np.clip(np.arange(size)[None, :] + offsets[:, None], 0, size - 1)
    first = np.floor(coords).astype(np.int64)
    return first, np.minimum(first + 1, size - 1), (coords - first).astype(np.float32)

  r0, r1, fr = taps(np.asarray(d_row, np.float64), h)
  moved = (x[idx, r0] * (1 - fr)[:, :, None, None] + x[idx, r1] * fr[:, :, None, None])
  c0, c1, fc = taps(np.asarray(d_col, np.float64), w)
  moved = np.swapaxes(moved, 1, 2)  # [N, W, H, C]: the columns first
  moved = moved[idx, c0] * (1 - fc)[:, :, None, None] + moved[idx, c1] * fc[:, :, None, None]
  return np.swapaxes(moved, 1, 2)


def motion_blur(x, severity, rngs, scale):
  """A one-sided Gaussian stroke at a random angle per image: the image averaged
  with copies of itself moved 0, 1, 2, ... pixels along the stroke, weighted
  exp(-t^2 / 2 sigma^2), up to the kernel radius or 3 sigma (edges repeated)."""
  radius, sigma = MOTION_BLUR[severity - 1]
  radius, sigma = pixels(radius, scale), pixels(sigma, scale)
  angles = np.deg2rad(per_image(rngs, lambda r: r.uniform(
      -MOTION_ANGLE_DEGREES, MOTION_ANGLE_DEGREES)).astype(np.float64))
  steps = np.arange(int(np.floor(min(radius, 3 * sigma))) + 1)
  weights = np.exp(-steps ** 2 / (2 * sigma ** 2))
  weights /= weights.sum()
  out = weights[0] * x
  for t, weight in zip(steps[1:], weights[1:]):
    out += weight * translate(x, -t * np.sin(angles), t * np.cos(angles))
  return out.astype(np.float32)
