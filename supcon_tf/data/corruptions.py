"""ImageNet-C-style corruptions of uint8 image batches, seeded per image.

In the spirit of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR 2019): noise, blur, weather,
photometric and digital corruptions at 5 severities, for robustness evaluation
(`mce.py` turns the errors into corruption errors). The parameters follow the
CIFAR-10-C tables (32 px images); lengths in pixels are scaled by the shorter
image side / 32, so 28 px Fashion-MNIST and 32 px CIFAR images get about
CIFAR-10-C's corruptions (ImageNet-C itself is read from TFDS:
`data/sources/imagenet_c.py`). The tables and the implementations are in
`corruptions_noise_blur.py` and `corruptions_digital.py`; this module is the
entry point. Not to be confused with `train/corrupt.py` (files that do not decode).

Deterministic: image i of a call is corrupted with its own NumPy Generator, seeded
by (seed, the corruption's index in CORRUPTIONS, severity, first_index + i), so
its result does not depend on how a set is cut into batches. Only NumPy, SciPy
and Pillow; no TensorFlow.
"""

from typing import Dict, FrozenSet, List, Tuple

import numpy as np

from supcon_tf.data import corruptions_digital as digital
from supcon_tf.data import corruptions_noise_blur as noise_blur

# Report order: noise, blur, weather, photometric, digital (ImageNet-C's), then the
# extra ones. New corruptions go at the end: the index seeds the generators.
CORRUPTIONS: Tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur",
    "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "saturate",
)
# Corruptions that need 3 colour channels.
COLOUR_ONLY: FrozenSet[str] = frozenset({"saturate"})
SEVERITIES = (1, 2, 3, 4, 5)
# The image side the tables' lengths in pixels are for (CIFAR-10-C's).
REFERENCE_SIDE = 32
MIN_SIDE = 8
# Images are corrupted in chunks of about this many values (small temporaries;
# every corruption treats each image on its own, so chunks do not change results).
_CHUNK_VALUES = 1 << 20

_FUNCTIONS: Dict[str, noise_blur.Corruption] = {
    "gaussian_noise": noise_blur.gaussian_noise,
    "shot_noise": noise_blur.shot_noise,
    "impulse_noise": noise_blur.impulse_noise,
    "defocus_blur": noise_blur.defocus_blur,
    "glass_blur": noise_blur.glass_blur,
    "motion_blur": noise_blur.motion_blur,
    "fog": digital.fog,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    "speckle_noise": noise_blur.speckle_noise,
    "gaussian_blur": noise_blur.gaussian_blur,
    "saturate": digital.saturate,
}
assert tuple(_FUNCTIONS) == CORRUPTIONS
# Corruptions that draw nothing (no generators are made for them).
_DETERMINISTIC = frozenset({"defocus_blur", "brightness", "contrast", "pixelate",
                            "jpeg_compression", "gaussian_blur", "saturate"})


def corruptions_for(channels: int) -> Tuple[str, ...]:
  """The corruptions of images with `channels` channels, in CORRUPTIONS' order.

  Args:
    channels: 1 (grayscale) or 3 (RGB).

  Returns:
    Every name for 3 channels; those outside COLOUR_ONLY for 1.

  Raises:
    ValueError: another number of channels.
  """
  if channels == 3:
    return CORRUPTIONS
  if channels == 1:
    return tuple(c for c in CORRUPTIONS if c not in COLOUR_ONLY)
  raise ValueError(f"corruptions are defined for 1 or 3 channels, not {channels}")


def image_rngs(seed: int, name: str, severity: int, first_index: int,
               num: int) -> List[np.random.Generator]:
  """One Generator per image: image i's is seeded by (seed, index of `name`,
  severity, first_index + i)."""
  index = CORRUPTIONS.index(name)
  return [np.random.default_rng([seed, index, severity, first_index + i])
          for i in range(num)]


def _check(images: np.ndarray, name: str, severity: int, seed: int,
           first_index: int) -> None:
  if name not in _FUNCTIONS:
    raise ValueError(f"unknown corruption {name!r} (known: {', '.join(CORRUPTIONS)})")
  if isinstance(severity, bool) or severity not in SEVERITIES:
    raise ValueError(f"corruption severity must be one of 1..5, got {severity!r}")
  for label, value in (("seed", seed), ("first_index", first_index)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
      raise ValueError(f"corruption {label} must be an int >= 0, got {value!r}")
  if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
    got = (f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray)
           else type(images).__name__)
    raise ValueError(f"corrupt takes uint8 images [N, H, W, C], got {got}")
  _, h, w, c = images.shape
  if name not in corruptions_for(c):  # also refuses C not in (1, 3)
    raise ValueError(f"corruption {name!r} needs 3 colour channels; these images "
                     f"have {c}")
  if min(h, w) < MIN_SIDE:
    raise ValueError(f"corruptions need images of at least {MIN_SIDE}x{MIN_SIDE} "
                     f"pixels, got {h}x{w}")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int,
            first_index: int = 0) -> np.ndarray:
  """`images` corrupted by `name` at `severity`.

  Args:
    images: uint8 [N, H, W, C], C = 1 or 3, H and W >= 8.
    name: one of `corruptions_for(C)`.
    severity: 1 (mild) .. 5 (strong).
    seed: int >= 0.
    first_index: the index of images[0] in the whole set (>= 0): image i is
      corrupted the same way whether it comes in one call or in batches.

  Returns:
    uint8 of the same shape (values rounded from the corrupted [0, 1] floats).

  Raises:
    ValueError: an unknown name, a severity outside 1..5, a colour-only name on
      1-channel images, a negative seed or first_index, or images that are not
      uint8 [N, H, W, 1 or 3] of at least 8x8.
  """
  _check(images, name, severity, seed, first_index)
  if not len(images):
    return images.copy()
  scale = min(images.shape[1:3]) / REFERENCE_SIDE
  chunk = max(1, _CHUNK_VALUES // int(np.prod(images.shape[1:])))
  out = np.empty_like(images)
  for start in range(0, len(images), chunk):
    part = images[start:start + chunk]
    rngs = ([] if name in _DETERMINISTIC else
            image_rngs(int(seed), name, severity, int(first_index) + start, len(part)))
    corrupted = _FUNCTIONS[name](part.astype(np.float32) / 255, severity, rngs, scale)
    out[start:start + chunk] = np.rint(np.clip(corrupted, 0.0, 1.0) * 255)
  return out
