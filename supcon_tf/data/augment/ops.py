"""Pure image ops: crop, flip, colour jitter, grayscale, blur, decode and crop.

Every random choice uses TensorFlow's *stateless* random ops with an explicit
`seed` (an int32/int64 tensor of shape [2]), so the same (image, seed) gives the
same output eagerly, inside `Dataset.map`, in any process and after a resume.
Images are float32 in [0, 1], shape [H, W, C] (C = 1 or 3); uint8 inputs are
converted first (`to_float`). The ops take their parameters explicitly: the
run's values come from `config.DataConfig` through `views.ViewSpec`.

The functions below use tf.cond / tf.switch_case, never Python control flow on
tensors: AutoGraph (e.g. in Dataset.map) need not convert them, which would only
slow tracing down.
"""

from typing import Tuple

import tensorflow as tf

no_autograph = tf.autograph.experimental.do_not_convert


def split_seed(seed, num: int):
  """Independent seeds derived from one.

  Args:
    seed: int tensor [2].
    num: how many seeds.

  Returns:
    int64 tensor [num, 2].
  """
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def to_float(image):
  """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
  if image.dtype == tf.uint8:
    return tf.image.convert_image_dtype(image, tf.float32)
  return tf.cast(image, tf.float32)


def resize(image, size: int):
  """Bicubic resize of [H, W, C] to [size, size, C], clipped to [0, 1]."""
  resized = tf.image.resize(image[None], [size, size], method="bicubic")[0]
  return tf.clip_by_value(resized, 0.0, 1.0)


def maybe(seed, probability, fn, image):
  """`fn(image)` with `probability` (the coin drawn from `seed`), else `image`."""
  coin = tf.random.stateless_uniform([], seed=seed)
  return tf.cond(coin < probability, lambda: fn(image), lambda: image)


# ------------------------------------------------------------------ geometry
def crop_window(image_shape, seed, area_range: Tuple[float, float],
                aspect_range: Tuple[float, float]):
  """The window of an Inception-style random crop.

  Args:
    image_shape: int tensor [3], (H, W, C) of the image.
    seed: int tensor [2].
    area_range: (min, max) fraction of the image's area.
    aspect_range: (min, max) width / height.

  Returns:
    (begin [3], size [3]) for `tf.slice`: the same window for the same shape and seed.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape,
      bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
      seed=seed,
      min_object_covered=0.1,
      aspect_ratio_range=aspect_range,
      area_range=area_range,
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def random_resized_crop(image, seed, size: int, area_range: Tuple[float, float],
                        aspect_range: Tuple[float, float]):
  """Inception-style crop of random area and aspect ratio, resized.

  Args:
    image: float [H, W, C] in [0, 1].
    seed: int tensor [2].
    size: side of the output.
    area_range: (min, max) fraction of the image's area.
    aspect_range: (min, max) width / height.

  Returns:
    float32 [size, size, C] in [0, 1].
  """
  begin, crop_size = crop_window(tf.shape(image), seed, area_range, aspect_range)
  crop = tf.slice(image, begin, crop_size)
  # tf.slice loses the static channel count in graph mode; later ops branch on it.
  crop.set_shape([None, None, image.shape[-1]])
  return resize(crop, size)


def random_flip(image, seed):
  """Left-right flip with probability 1/2 (drawn from `seed`)."""
  return tf.image.stateless_random_flip_left_right(image, seed)


# ------------------------------------------------------------------ colour
def _uniform(seed, low: float, high: float):
  return tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high)


def _tf_jitter_ops(strength: float, multiplicative_brightness: bool):
  """TF-style ops (tf.image), each `fn(image, seed)`: SimCLR's release."""
  b, c, s, h = 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength

  def brightness(im, seed):
    if multiplicative_brightness:  # SimCLR v2 release
      return im * _uniform(seed, max(0.0, 1.0 - b), 1.0 + b)
    return tf.image.stateless_random_brightness(im, b, seed)  # additive delta

  def contrast(im, seed):
    return tf.image.stateless_random_contrast(im, max(0.0, 1.0 - c), 1.0 + c, seed)

  def saturation(im, seed):
    return tf.image.stateless_random_saturation(im, max(0.0, 1.0 - s), 1.0 + s, seed)

  def hue(im, seed):
    return tf.image.stateless_random_hue(im, h, seed)

  return brightness, contrast, saturation, hue


def _pytorch_jitter_ops(strength: float):
  """`torchvision.transforms.ColorJitter` semantics, each `fn(image, seed)`."""
  b, c, s, h = 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength

  def factor(seed, amount):
    return _uniform(seed, max(0.0, 1.0 - amount), 1.0 + amount)

  def brightness(im, seed):
    return im * factor(seed, b)

  def contrast(im, seed):
    v = factor(seed, c)
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(im))
    return v * im + (1.0 - v) * mean

  def saturation(im, seed):
    v = factor(seed, s)
    return v * im + (1.0 - v) * tf.image.rgb_to_grayscale(im)

  def hue(im, seed):
    shift = _uniform(seed, -h, h)
    hsv = tf.image.rgb_to_hsv(im)
    hue_channel = tf.math.floormod(hsv[..., :1] + shift, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue_channel, hsv[..., 1:]], -1))

  return brightness, contrast, saturation, hue


@no_autograph
def color_jitter(image, seed, strength: float, *, pytorch_style: bool = False,
                 random_order: bool = True, multiplicative_brightness: bool = False):
  """SimCLR colour jitter of an RGB image in [0, 1].

  Brightness, contrast, saturation and hue with maximum deltas 0.8 s, 0.8 s,
  0.8 s and 0.2 s (s = `strength`), in an order drawn from `seed` (a random
  permutation of the 4 ops, like the authors' and SimCLR's `random_order`), with
  a clip to [0, 1] after each op (as the authors do).

  TF style (default): the tf.image ops (additive brightness delta, as the
  authors' `tf.image.random_brightness`; `multiplicative_brightness=True` gives
  SimCLR v2's factor in [max(0, 1 - 0.8 s), 1 + 0.8 s]); contrast and saturation
  factors in [max(0, 1 - 0.8 s), 1 + 0.8 s]; contrast blends with each channel's
  mean. PyTorch style (`pytorch_style=True`, torchvision's ColorJitter):
  brightness multiplies by a factor in [max(0, 1 - 0.8 s), 1 + 0.8 s], contrast
  blends with the mean of the grayscale image, saturation with the grayscale
  image, hue shifts H in HSV by at most 0.2 s.

  Args:
    image: float32 [H, W, 3] in [0, 1].
    seed: int tensor [2].
    strength: s above, >= 0 (0: the image unchanged).
    pytorch_style: torchvision's semantics instead of tf.image's.
    random_order: the order of the 4 ops drawn from `seed` (else fixed).
    multiplicative_brightness: TF style with SimCLR v2's brightness factor.

  Returns:
    float32 [H, W, 3] in [0, 1].

  Raises:
    ValueError: `strength` < 0, or a hue delta 0.2 s above 0.5.
  """
  if strength < 0:
    raise ValueError(f"color jitter strength must be >= 0, got {strength}")
  if 0.2 * strength > 0.5:
    raise ValueError(f"hue delta 0.2 * strength must be <= 0.5, got strength {strength}")
  if strength == 0:
    return image
  ops = (_pytorch_jitter_ops(strength) if pytorch_style
         else _tf_jitter_ops(strength, multiplicative_brightness))
  s = split_seed(seed, 5)
  order = tf.argsort(tf.random.stateless_uniform([4], seed=s[4])) if random_order else None
  for position in range(4):
    branches = [lambda op=op, k=k, x=image: op(x, s[k]) for k, op in enumerate(ops)]
    if random_order:
      out = tf.switch_case(order[position], branches)
    else:
      out = branches[position]()
    out = tf.ensure_shape(tf.clip_by_value(out, 0.0, 1.0), image.shape)
    image = out
  return image


def to_grayscale(image):
  """RGB [H, W, 3] -> its luma tiled to 3 equal channels."""
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


# ------------------------------------------------------------------ blur
def blur_radius(side: int) -> int:
  """SimCLR's kernel: size = side // 10, made odd: 2 * (size // 2) + 1 taps."""
  return (side // 10) // 2


def _blur_params(seed):
  """(coin in [0, 1), sigma in [0.1, 2.0)) of one image's blur."""
  s = split_seed(seed, 2)
  return (tf.random.stateless_uniform([], seed=s[0]),
          tf.random.stateless_uniform([], seed=s[1], minval=0.1, maxval=2.0))


def gaussian_blur(images, sigma, radius: int):
  """Separable Gaussian blur with reflect padding, per-image `sigma`.

  The batch is folded into the channels so that one depthwise convolution per
  direction blurs every image with its own kernel.

  Args:
    images: float [B, H, W, C].
    sigma: float [B].
    radius: the kernel has 2 * radius + 1 taps (0: no blur).

  Returns:
    float [B, H, W, C].
  """
  if radius <= 0:
    return images
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]
  channels = images.shape[-1]
  taps = tf.range(-radius, radius + 1, dtype=tf.float32)
  sigma = tf.reshape(tf.cast(sigma, tf.float32), [-1, 1])
  kernel = tf.exp(-tf.square(taps)[None] / (2.0 * tf.square(sigma)))
  kernel /= tf.reduce_sum(kernel, axis=1, keepdims=True)  # [B, K]
  kernel = tf.transpose(tf.repeat(kernel, channels, axis=0))  # [K, B * C]
  # [B, H, W, C] -> [1, H, W, B * C]
  folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]),
                      [1, height, width, batch * channels])
  folded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                  mode="REFLECT")
  size = 2 * radius + 1
  folded = tf.nn.depthwise_conv2d(folded, tf.reshape(kernel, [1, size, -1, 1]),
                                  [1, 1, 1, 1], "VALID")
  folded = tf.nn.depthwise_conv2d(folded, tf.reshape(kernel, [size, 1, -1, 1]),
                                  [1, 1, 1, 1], "VALID")
  out = tf.transpose(tf.reshape(folded, [height, width, batch, channels]), [2, 0, 1, 3])
  return tf.ensure_shape(out, images.shape)


def _static_side(images) -> int:
  side = images.shape[-3]
  if side is None or images.shape[-2] is None:
    raise ValueError(f"blur needs static spatial dimensions, got {images.shape}")
  return min(side, images.shape[-2])


@no_autograph
def random_blur(image, seed, probability: float):
  """SimCLR Gaussian blur of one image with `probability`.

  Kernel size 10% of the side (odd), sigma uniform in [0.1, 2.0), separable
  convolution with reflect padding (SimCLR and the authors pad with zeros,
  'SAME'; reflect keeps a constant image constant).

  Args:
    image: float [H, W, C] in [0, 1], static H and W.
    seed: int tensor [2].
    probability: of blurring.

  Returns:
    float [H, W, C] in [0, 1].
  """
  radius = blur_radius(_static_side(image))
  if probability <= 0 or radius <= 0:
    return image
  coin, sigma = _blur_params(seed)

  def blur(x):
    return tf.clip_by_value(gaussian_blur(x[None], sigma[None], radius)[0], 0.0, 1.0)

  return tf.cond(coin < probability, lambda: blur(image), lambda: image)


@no_autograph
def batch_random_blur(images, seed, probability: float):
  """`random_blur` of a batch, e.g. deferred to the accelerator (--defer_blur).

  Each image has its own sigma (the authors' deferred blur shares one sigma per
  batch).

  Args:
    images: float [B, H, W, C] in [0, 1], static H and W.
    seed: int [B, 2], one seed per image: the output equals `random_blur(images[b],
      seed[b], probability)` for every b (`views.view_blur_seed` gives the seeds a
      training view would have used). Or int [2]: the coins and sigmas of the
      batch drawn at once from it (no per-image loop).
    probability: of blurring each image.

  Returns:
    float [B, H, W, C] in [0, 1].
  """
  images = tf.convert_to_tensor(images)
  radius = blur_radius(_static_side(images))
  if probability <= 0 or radius <= 0:
    return images
  seed = tf.cast(seed, tf.int64)
  if seed.shape.rank == 2:
    coin, sigma = tf.map_fn(_blur_params, seed,
                            fn_output_signature=(tf.float32, tf.float32))
  else:
    s = split_seed(seed, 2)
    batch = tf.shape(images)[:1]
    coin = tf.random.stateless_uniform(batch, seed=s[0])
    sigma = tf.random.stateless_uniform(batch, seed=s[1], minval=0.1, maxval=2.0)
  blurred = tf.clip_by_value(gaussian_blur(images, sigma, radius), 0.0, 1.0)
  selected = tf.reshape(coin < probability, [-1, 1, 1, 1])
  return tf.where(selected, blurred, images)


# ------------------------------------------------------------------ encoded images
def decode_image(encoded, channels: int):
  """Decodes a JPEG/PNG/BMP/GIF (first frame) string into uint8 [H, W, channels]."""
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  image.set_shape([None, None, channels])
  return image


@no_autograph
def decode_and_random_crop(encoded, seed, channels: int, area_range: Tuple[float, float],
                           aspect_range: Tuple[float, float]):
  """The crop of `random_resized_crop`, decoded from an encoded image.

  For a JPEG only the window is decoded (`tf.image.decode_and_crop_jpeg`, the
  shape read from the header); other formats are decoded whole and sliced. The
  window is the one `random_resized_crop` takes for the same seed and shape.

  Args:
    encoded: string tensor, an encoded image.
    seed: int tensor [2].
    channels: channels to decode to.
    area_range: (min, max) fraction of the image's area.
    aspect_range: (min, max) width / height.

  Returns:
    uint8 [h, w, channels], not resized.
  """
  encoded = tf.convert_to_tensor(encoded, tf.string)

  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    begin, size = crop_window(tf.stack([shape[0], shape[1], channels]), seed,
                              area_range, aspect_range)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

  def other():
    image = decode_image(encoded, channels)
    begin, size = crop_window(tf.shape(image), seed, area_range, aspect_range)
    return tf.slice(image, begin, size)

  crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  crop.set_shape([None, None, channels])
  return crop
