"""The weather, photometric, colour and digital corruptions of `corruptions.py`.

Same contract as `corruptions_noise_blur.py`: float32 [N, H, W, C] in [0, 1],
the severity, one Generator per image and the spatial scale (shorter side / 32)
in; float32 of the same shape out, not yet clipped. Tables are CIFAR-10-C's
except where a comment says otherwise (saturate, pixelate and elastic_transform,
whose published tables do not change an image more at every step).
"""

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from supcon_tf.data import corruptions_noise_blur as noise_blur

# (fog strength, plasma roughness decay: smaller is rougher) (CIFAR-10-C).
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))
# Added to the HSV value (CIFAR-10-C).
BRIGHTNESS = (0.05, 0.10, 0.15, 0.20, 0.30)
# Factor on the distance to each image's per-channel mean (CIFAR-10-C).
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# HSV saturation s -> clip(a * s + b) as (a, b). CIFAR-10-C desaturates at
# severities 1-2 and saturates at 3-5, so severity 3 changes images less than 2;
# here every step saturates more: its severities 3-5 first, then ImageNet-C's
# factors 5 and 20 with its largest offset.
SATURATE = ((1.5, 0.0), (2.0, 0.1), (2.5, 0.2), (5.0, 0.2), (20.0, 0.2))
# JPEG quality (CIFAR-10-C).
JPEG_QUALITY = (80, 65, 58, 50, 40)
# Side of the reduced image, as a fraction of the side. CIFAR-10-C's are 0.95, 0.9,
# 0.85, 0.75, 0.65, but at 28-32 px box resampling's error is not monotone in the
# fraction (0.95 moves a 28 px image half a pixel and changes it more than 0.9;
# 0.5 aligns the blocks with the pixels): own steps, from CIFAR-10-C's severity 3
# towards ImageNet-C's (0.6 .. 0.25), avoiding 1/2.
PIXELATE = (0.85, 0.7, 0.55, 0.45, 0.35)
# (largest move of the affine's control points, RMS of the elastic displacement,
# its smoothing sigma), pixels at 32 px. Own table: CIFAR-10-C's shrinks the affine
# part (the larger) while it grows the elastic one, so its severity 1 moves pixels
# more than its 5; here both grow and the smoothing narrows, over the same ranges.
ELASTIC = ((0.5, 0.25, 3.2), (0.75, 0.5, 2.56), (1.0, 0.75, 1.92),
           (1.25, 1.0, 1.28), (1.5, 1.25, 0.96))


# ------------------------------------------------------------------ weather
def plasma(uniforms: np.ndarray, size: int, decay: float) -> np.ndarray:
  """Diamond-square fractal noise on a periodic size x size grid, per image.

  Starting from one corner value 0, each level sets the centres of the current
  squares to the mean of their 4 corners, then the edge midpoints to the mean of
  their 4 neighbours (2 corners, 2 centres), each plus noise whose amplitude is
  divided by decay^2 from one level to the next.

  Args:
    uniforms: float [N, size * size - 1] uniform in [-1, 1]: the noise, consumed
      level by level (3 * (size / step)^2 values at each).
    size: a power of two.
    decay: roughness (larger: smoother).

  Returns:
    float32 [N, size, size], each image scaled to [0, 1].
  """
  n = uniforms.shape[0]
  grid = np.zeros((n, size, size), np.float64)
  step, amplitude, used = size, 1.0, 0

  def noise(shape):
    nonlocal used
    count = int(np.prod(shape))
    values = uniforms[:, used:used + count].reshape((n,) + shape)
    used += count
    return amplitude * values

  while step >= 2:
    half = step // 2
    corners = grid[:, ::step, ::step]
    cells = corners.shape[1]
    centres = (corners + np.roll(corners, -1, 1) + np.roll(corners, -1, 2)
               + np.roll(np.roll(corners, -1, 1), -1, 2)) / 4
    grid[:, half::step, half::step] = centres + noise((cells, cells))
    centres = grid[:, half::step, half::step]
    # Midpoints of horizontal edges: corners left/right, centres above/below.
    top = (corners + np.roll(corners, -1, 2) + centres + np.roll(centres, 1, 1)) / 4
    grid[:, ::step, half::step] = top + noise((cells, cells))
    # Midpoints of vertical edges: corners above/below, centres left/right.
    left = (corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 2)) / 4
    grid[:, half::step, ::step] = left + noise((cells, cells))
    step, amplitude = half, amplitude / decay ** 2
  low = grid.min(axis=(1, 2), keepdims=True)
  high = grid.max(axis=(1, 2), keepdims=True)
  return ((grid - low) / np.maximum(high - low, 1e-12)).astype(np.float32)


def fog(x, severity, rngs, scale):
  """A plasma haze: x + strength * plasma, rescaled by max / (max + strength).

  The plasma is moved to mean 0.5 in each image: spread over [0, 1] as
  ImageNet-C's is, its mean varies enough from draw to draw that the 5 severities
  (drawn independently) would not always fog an image more at every step.
  """
  del scale
  strength, decay = FOG[severity - 1]
  n, h, w, _ = x.shape
  size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
  haze = plasma(noise_blur.per_image(rngs, lambda r: r.uniform(-1, 1, size * size - 1)),
                size, decay)[:, :h, :w, None]
  haze += 0.5 - haze.mean(axis=(1, 2, 3), keepdims=True)
  peak = x.max(axis=(1, 2, 3), keepdims=True)
  return (x + strength * haze) * peak / (peak + strength)


# ------------------------------------------------------------------ photometric
def brightness(x, severity, rngs, scale):
  """HSV value + BRIGHTNESS[severity] (clipped at 1), hue and saturation kept."""
  del rngs, scale
  value = x.max(axis=-1, keepdims=True)
  brighter = np.minimum(value + BRIGHTNESS[severity - 1], 1.0)
  ratio = brighter / np.maximum(value, 1e-12)
  # A black pixel has no hue: it becomes the grey of its new value.
  return np.where(value > 0, x * ratio, brighter)


def contrast(x, severity, rngs, scale):
  """Each image's per-channel mean + CONTRAST[severity] * (x - mean)."""
  del rngs, scale
  mean = x.mean(axis=(1, 2), keepdims=True)
  return mean + CONTRAST[severity - 1] * (x - mean)


def saturate(x, severity, rngs, scale):
  """HSV saturation s -> clip(a * s + b, 0, 1), hue and value kept (RGB only).

  In HSV a channel is value * (1 - s * k) with k in [0, 1] set by the hue, so the
  new channel is value - (value - channel) * s' / s. Grey pixels (s = 0) have no
  hue and stay grey.
  """
  del rngs, scale
  a, b = SATURATE[severity - 1]
  value = x.max(axis=-1, keepdims=True)
  spread = value - x.min(axis=-1, keepdims=True)
  grey = spread <= 0
  s = np.where(grey, 1.0, spread / np.maximum(value, 1e-12))
  new_s = np.clip(a * s + b, 0.0, 1.0)
  return np.where(grey, x, value - (value - x) * new_s / s)


# ------------------------------------------------------------------ digital
def jpeg_compression(x, severity, rngs, scale):
  """Each image encoded as JPEG at quality JPEG_QUALITY[severity] and decoded."""
  del rngs, scale
  quality = JPEG_QUALITY[severity - 1]
  images = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
  out = np.empty_like(images)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    pil.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    out[i] = np.asarray(Image.open(buffer)).reshape(image.shape)
  return out.astype(np.float32) / 255


def area_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in]: output pixel j is the area-weighted mean of the input
  over its footprint [j, j + 1) * size_in / size_out (box resampling, both ways)."""
  edges = np.arange(size_out + 1) * size_in / size_out
  start, stop = edges[:-1, None], edges[1:, None]
  cells = np.arange(size_in)[None, :]
  overlap = np.clip(np.minimum(stop, cells + 1) - np.maximum(start, cells), 0, None)
  return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def pixelate(x, severity, rngs, scale):
  """Box-downsampled to PIXELATE[severity] of each side, box-upsampled back."""
  del rngs, scale
  _, h, w, _ = x.shape
  small_h = max(1, int(h * PIXELATE[severity - 1]))
  small_w = max(1, int(w * PIXELATE[severity - 1]))
  rows = area_matrix(small_h, h) @ area_matrix(h, small_h)  # [h, h]
  cols = area_matrix(small_w, w) @ area_matrix(w, small_w)  # [w, w]
  # One product per image and channel (never one over the batch, whose summation
  # order could depend on the batch's size and flip a rounding).
  planes = np.moveaxis(x, 3, 1)  # [N, C, H, W]
  return np.moveaxis(rows @ planes @ cols.T, 1, 3)


def _mirror(coords: np.ndarray, size: int) -> np.ndarray:
  """Coordinates mirrored into [0, size - 1] about the first and last pixel centres."""
  if size == 1:
    return np.zeros_like(coords)
  period = 2 * (size - 1)
  folded = np.mod(coords, period)
  return np.where(folded > size - 1, period - folded, folded)


def sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """Bilinear samples of each image at its own (row, col) positions, mirrored
  outside the image.

  Args:
    x: float32 [N, H, W, C].
    rows: float [N, H', W'], row of each sample in its image (0 = first centre).
    cols: float [N, H', W'].

  Returns:
    float32 [N, H', W', C].
  """
  n, h, w, c = x.shape
  rows = _mirror(np.asarray(rows, np.float32), h)
  cols = _mirror(np.asarray(cols, np.float32), w)
  r0 = np.minimum(rows.astype(np.int64), h - 1)  # rows >= 0: truncation is floor
  c0 = np.minimum(cols.astype(np.int64), w - 1)
  fr = (rows - r0).astype(np.float32)[..., None]
  fc = (cols - c0).astype(np.float32)[..., None]
  # Flat indices into x as [N * H * W, C]: one gather per corner.
  base = (np.arange(n) * (h * w)).reshape(n, 1, 1) + r0 * w
  down = np.where(r0 + 1 < h, w, 0)
  right = np.where(c0 + 1 < w, 1, 0)
  flat = x.reshape(n * h * w, c)
  top_left = base + c0
  top = flat[top_left] * (1 - fc) + flat[top_left + right] * fc
  bottom = flat[top_left + down] * (1 - fc) + flat[top_left + down + right] * fc
  return top * (1 - fr) + bottom * fr


def _affine_inverses(moves: np.ndarray, h: int, w: int) -> np.ndarray:
  """[N, 2, 3]: per image, the affine that maps an output (row, col, 1) to where it
  is read in the input, when three control points around the centre are moved by
  `moves` [N, 3, 2] (pixels)."""
  centre = np.array([h // 2, w // 2], np.float64)
  reach = max(1, min(h, w) // 3)
  source = centre + reach * np.array([[1, 1], [1, -1], [-1, -1]], np.float64)
  moved = source[None] + moves
  # Solve [moved, 1] @ m = source for m [3, 2]: output position -> input position.
  lhs = np.concatenate([moved, np.ones(moved.shape[:2] + (1,))], axis=2)
  rhs = np.broadcast_to(source, moved.shape)
  return np.swapaxes(np.linalg.solve(lhs, rhs), 1, 2)


def elastic_transform(x, severity, rngs, scale):
  """A small random affine and a smooth random displacement field, sampled once
  (bilinear, mirrored edges).

  The field is Gaussian noise smoothed by `sigma`, scaled to the table's RMS
  displacement per image; each output pixel p reads the input at A(p + d(p)).
  """
  jitter, rms, sigma = (noise_blur.pixels(v, scale) for v in ELASTIC[severity - 1])
  n, h, w, _ = x.shape
  moves = np.stack([r.uniform(-jitter, jitter, size=(3, 2)) for r in rngs])
  inverse = _affine_inverses(moves, h, w)
  field = noise_blur.per_image(rngs, lambda r: r.standard_normal((2, h, w)))
  field = ndimage.gaussian_filter(field, sigma=(0, 0, sigma, sigma), mode="reflect")
  norm = np.sqrt(np.mean(np.sum(field ** 2, axis=1), axis=(1, 2)))
  field *= (rms / np.maximum(norm, 1e-12)).reshape(n, 1, 1, 1)
  grid_rows, grid_cols = np.meshgrid(np.arange(h, dtype=np.float32),
                                     np.arange(w, dtype=np.float32), indexing="ij")
  rows, cols = grid_rows + field[:, 0], grid_cols + field[:, 1]
  a = inverse.astype(np.float32)[:, :, :, None, None]
  return sample(x, a[:, 0, 0] * rows + a[:, 0, 1] * cols + a[:, 0, 2],
                a[:, 1, 0] * rows + a[:, 1, 1] * cols + a[:, 1, 2])
