"""Image augmentations as pure functions of (image, seed).

Every random choice uses TensorFlow's *stateless* random ops with an explicit
`seed` (an int32/int64 tensor of shape [2]), so the same (image, seed) gives the
same output eagerly, inside `Dataset.map`, in any process and after a resume.
Images are float32 in [0, 1], shape [H, W, C].
"""

from typing import Sequence, Tuple

import tensorflow as tf


def split_seed(seed, num: int):
  """`num` independent seeds [num, 2] derived from `seed`."""
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def to_float(image):
  """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
  if image.dtype == tf.uint8:
    return tf.image.convert_image_dtype(image, tf.float32)
  return tf.cast(image, tf.float32)


def random_resized_crop(image, seed, size: int,
                        area_range: Tuple[float, float] = (0.08, 1.0),
                        aspect_range: Tuple[float, float] = (0.75, 4.0 / 3.0)):
  """Inception-style crop of random area and aspect ratio, resized to `size`."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image),
      bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
      seed=seed,
      min_object_covered=0.1,
      aspect_ratio_range=aspect_range,
      area_range=area_range,
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  crop = tf.slice(image, begin, crop_size)
  # tf.slice loses the static channel count in graph mode; later ops branch on it.
  crop.set_shape([None, None, image.shape[-1]])
  resized = tf.image.resize(crop[None], [size, size], method="bicubic")[0]
  return tf.clip_by_value(resized, 0.0, 1.0)


def random_flip(image, seed):
  return tf.image.stateless_random_flip_left_right(image, seed)


def _maybe(seed, probability, fn, image):
  """Applies `fn` with `probability` (decided by `seed`)."""
  coin = tf.random.stateless_uniform([], seed=seed)
  return tf.cond(coin < probability, lambda: fn(image), lambda: image)


def color_jitter(image, seed, strength: float):
  """SimCLR colour jitter: brightness, contrast, saturation, hue (RGB only)."""
  s = split_seed(seed, 4)
  b, c, sat, h = 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength
  image = tf.image.stateless_random_brightness(image, b, s[0])
  image = tf.image.stateless_random_contrast(image, 1 - c, 1 + c, s[1])
  image = tf.image.stateless_random_saturation(image, 1 - sat, 1 + sat, s[2])
  image = tf.image.stateless_random_hue(image, h, s[3])
  return tf.clip_by_value(image, 0.0, 1.0)


def to_grayscale(image):
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def train_view(image, seed, *, size: int, area_range=(0.08, 1.0),
               aspect_range=(0.75, 4.0 / 3.0), flip: bool = True,
               color_strength: float = 0.5, jitter_probability: float = 0.8,
               grayscale_probability: float = 0.2):
  """One augmented training view: crop, flip, and for RGB colour jitter + gray."""
  image = to_float(image)
  channels = image.shape[-1]
  if channels is None:
    raise ValueError("train_view needs a static channel dimension, got shape "
                     f"{image.shape}")
  s = split_seed(seed, 4)
  image = random_resized_crop(image, s[0], size, area_range, aspect_range)
  if flip:
    image = random_flip(image, s[1])
  if channels == 3 and color_strength > 0:
    image = _maybe(s[2], jitter_probability,
                   lambda x: color_jitter(x, split_seed(s[2], 1)[0], color_strength),
                   image)
    image = _maybe(s[3], grayscale_probability, to_grayscale, image)
  return image


def train_views(image, seed, num_views: int, **kwargs):
  """`num_views` independently augmented views, stacked: [V, size, size, C]."""
  seeds = split_seed(seed, num_views)
  return tf.stack([train_view(image, seeds[v], **kwargs) for v in range(num_views)])


def eval_view(image, *, size: int):
  """The plain image in [0, 1], resized to `size` if it differs."""
  image = to_float(image)
  if image.shape[0] != size or image.shape[1] != size:
    image = tf.clip_by_value(
        tf.image.resize(image[None], [size, size], method="bicubic")[0], 0.0, 1.0)
  return image


def view_kwargs(data_config) -> dict:
  """Keyword arguments of `train_view` from a DataConfig."""
  return dict(size=data_config.image_size,
              area_range=tuple(data_config.crop_area_range),
              aspect_range=tuple(data_config.crop_aspect_range),
              flip=data_config.flip,
              color_strength=data_config.augmentation_magnitude,
              grayscale_probability=data_config.grayscale_probability)


__all__: Sequence[str] = ("split_seed", "to_float", "random_resized_crop", "random_flip",
                          "color_jitter", "to_grayscale", "train_view", "train_views",
                          "eval_view", "view_kwargs")
