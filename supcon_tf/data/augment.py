"""Image augmentations as pure functions of (image, seed).

Every random choice uses TensorFlow's *stateless* random ops with an explicit
`seed` (an int32/int64 tensor of shape [2]), so the same (image, seed) gives the
same output eagerly, inside `Dataset.map`, in any process and after a resume.
Images are float32 in [0, 1], shape [H, W, C] (C = 1 or 3); uint8 inputs are
converted first. Only `normalize` leaves [0, 1].

Augmentation types of the authors' release (google-research/supcon,
`preprocessing.py`), selected by `train_view(augmentation_type=...)`; every type
but "identity" starts with a random resized crop and a random flip:

* "simclr": colour jitter (p=`jitter_probability`, 0.8), random grayscale
  (p=0.2), Gaussian blur (p=`blur_probability`).
* "autoaugment": AutoAugment, ImageNet policy (official's "v0").
* "randaugment": RandAugment(`randaugment_layers`, `randaugment_magnitude`).
* "stacked_randaugment" (the authors' ResNet-200 recipe): colour jitter
  (p=0.8), then RandAugment, then random grayscale (p=0.2), then blur -- the
  order of the authors' `_stacked_simclr_randaugment`.
* "identity": resize to `size`, nothing random. (The authors' IDENTITY still
  crops and flips: that is "simclr" with `color_strength=0`, no blur.)

Not reproduced: the authors' optional elastic warp (`warp_probability`, 0 by
default and in all their scripts).

As in the authors' code, blur belongs to "simclr" and "stacked_randaugment" only
(`BLUR_TYPES`); it can be deferred to the accelerator with `batch_random_blur`.
Colour ops need RGB: on 1-channel images jitter and grayscale are skipped, and
AutoAugment/RandAugment run on the image tiled to 3 channels, and the first
channel is kept (all their ops keep equal channels equal).

AutoAugment / RandAugment and seeding. `official.vision.ops.augment`'s
`AutoAugment.distort` / `RandAugment.distort` take no seed: they draw the
sub-policy / op index, the apply-coins, the sign of rotations, shears and
translations and the cutout centre with stateful `tf.random.uniform`, which
is neither reproducible per (image, seed) nor allowed in a checkpointable
`Dataset.map`. So the *selection* is re-implemented here with stateless ops
(same distributions as official: RandAugment draws one of the 16 ops or the
identity uniformly per layer; AutoAugment draws one of the 25 sub-policies and
applies each of its ops with its probability; geometric magnitudes get a random
sign), while the policy table (`AutoAugment.policy_v0()`), the op list
(`RandAugment().available_ops`) and the pixel ops (`autocontrast`, `equalize`,
`invert`, `posterize`, `solarize`, `solarize_add`, `color`, `contrast`,
`brightness`, `sharpness`) and `transform` are official's, on uint8 [0, 255].
Level -> argument maps are official's formulas with `_MAX_LEVEL` = 10. Differences,
on purpose: geometric ops fill uncovered pixels with gray 128 (constant fill,
as the authors' 2020 `official/vision/image_classification/augment.py` did;
official 2.20's `transform` reflects), cutout has a stateless centre, and
Solarize with threshold 256 (level 10) is the identity (official 2.20 wraps
256 to 0 in uint8 and inverts the whole image).

Magnitude semantics of the authors' release: their `augmentation_magnitude` is
the colour-jitter strength for SIMCLR and STACKED_RANDAUGMENT (ImageNet scripts:
1.0), RandAugment's M for RANDAUGMENT (official's scale, 0..10, 10 = max), and
only an on/off gate (> 0) for AUTOAUGMENT. STACKED_RANDAUGMENT runs official's
default RandAugment, N=2 layers, M=10. Here they are separate keywords:
`color_strength`, `randaugment_layers`, `randaugment_magnitude` (0..10).
"""

import inspect
import math
from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

AUGMENTATION_TYPES = ("simclr", "autoaugment", "randaugment", "stacked_randaugment",
                      "identity")
# Types whose recipe ends with a Gaussian blur (the authors' SIMCLR, STACKED).
BLUR_TYPES = ("simclr", "stacked_randaugment")
EVAL_CROP_METHODS = ("identity", "resize_then_crop", "crop_then_resize")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The authors' CIFAR-10 whitening (mean -0.0172, -0.0356, -0.107, std 0.4046,
# 0.3988, 0.402 on [-1, 1] images) on the [0, 1] scale: the same whitened values.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# The functions below use tf.cond / tf.switch_case, never Python control flow on
# tensors: AutoGraph (e.g. in Dataset.map) need not convert them, which would
# only slow tracing (official's ops included) down.
_no_autograph = tf.autograph.experimental.do_not_convert

# Roles of the per-view seeds split from a view's seed (see `train_view`).
_CROP, _FLIP, _JITTER_COIN, _GRAY_COIN, _JITTER, _POLICY, _BLUR = range(7)
_NUM_VIEW_SEEDS = 8
_GRAY_FILL = 128  # uint8 fill of pixels uncovered by geometric ops


def split_seed(seed, num: int):
  """`num` independent seeds [num, 2] derived from `seed`."""
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def to_float(image):
  """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
  if image.dtype == tf.uint8:
    return tf.image.convert_image_dtype(image, tf.float32)
  return tf.cast(image, tf.float32)


def _resize(image, size: int):
  """Bicubic resize of [H, W, C] to [size, size, C], clipped to [0, 1]."""
  resized = tf.image.resize(image[None], [size, size], method="bicubic")[0]
  return tf.clip_by_value(resized, 0.0, 1.0)


def random_resized_crop(image, seed, size: int,
                        area_range: Tuple[float, float] = (0.08, 1.0),
                        aspect_range: Tuple[float, float] = (0.75, 4.0 / 3.0)):
  """Inception-style crop of random area and aspect ratio, resized to `size`."""
  begin, crop_size = _crop_window(tf.shape(image), seed, area_range, aspect_range)
  crop = tf.slice(image, begin, crop_size)
  # tf.slice loses the static channel count in graph mode; later ops branch on it.
  crop.set_shape([None, None, image.shape[-1]])
  return _resize(crop, size)


def random_flip(image, seed):
  return tf.image.stateless_random_flip_left_right(image, seed)


def _maybe(seed, probability, fn, image):
  """Applies `fn` with `probability` (decided by `seed`)."""
  coin = tf.random.stateless_uniform([], seed=seed)
  return tf.cond(coin < probability, lambda: fn(image), lambda: image)


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


@_no_autograph
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
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


# ------------------------------------------------------------------ blur
def _blur_radius(side: int) -> int:
  """SimCLR's kernel: size = side // 10, made odd: 2 * (size // 2) + 1."""
  return (side // 10) // 2


def _blur_params(seed):
  """(coin in [0, 1), sigma in [0.1, 2.0)) of one image's blur."""
  s = split_seed(seed, 2)
  return (tf.random.stateless_uniform([], seed=s[0]),
          tf.random.stateless_uniform([], seed=s[1], minval=0.1, maxval=2.0))


def gaussian_blur(images, sigma, radius: int):
  """Separable Gaussian blur with reflect padding, per-image `sigma`.

  `images` [B, H, W, C] float, `sigma` [B]; the kernel has 2 * radius + 1 taps.
  The batch is folded into the channels so that one depthwise convolution per
  direction blurs every image with its own kernel.
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


@_no_autograph
def random_blur(image, seed, probability: float = 0.5):
  """SimCLR Gaussian blur of [H, W, C] with `probability`.

  Kernel size 10% of the side (odd), sigma uniform in [0.1, 2.0), separable
  convolution with reflect padding (SimCLR and the authors pad with zeros,
  'SAME'; reflect keeps a constant image constant).
  """
  radius = _blur_radius(_static_side(image))
  if probability <= 0 or radius <= 0:
    return image
  coin, sigma = _blur_params(seed)

  def blur(x):
    return tf.clip_by_value(gaussian_blur(x[None], sigma[None], radius)[0], 0.0, 1.0)

  return tf.cond(coin < probability, lambda: blur(image), lambda: image)


@_no_autograph
def batch_random_blur(images, seed, probability: float = 0.5):
  """`random_blur` of a batch [B, H, W, C], e.g. deferred to the accelerator.

  `seed` [B, 2]: one seed per image, the output equals `random_blur(images[b],
  seed[b])` for every b. `seed` [2]: the coins and sigmas of the batch are drawn
  at once from it (no per-image loop). Each image has its own sigma (the
  authors' deferred blur shares one sigma per batch).
  """
  images = tf.convert_to_tensor(images)
  radius = _blur_radius(_static_side(images))
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


# ------------------------------------------------------------------ AutoAugment / RandAugment
_MAX_LEVEL = 10.0  # official.vision.ops.augment._MAX_LEVEL
_SIGNED_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


def _official():
  from official.vision.ops import augment as tfm_augment  # pylint: disable=g-import-not-at-top
  return tfm_augment


def _to_uint8(image):
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def _geometric(image, transform):
  """Projective transform of uint8 [H, W, 3], nearest, uncovered pixels gray."""
  out = _official().transform(image, transforms=transform, interpolation="nearest",
                              fill_mode="constant", fill_value=float(_GRAY_FILL))
  return tf.ensure_shape(out, image.shape)


def _rotation(image, degrees):
  radians = degrees * (math.pi / 180.0)
  h = tf.cast(tf.shape(image)[0], tf.float32) - 1.0
  w = tf.cast(tf.shape(image)[1], tf.float32) - 1.0
  cos, sin = tf.cos(radians), tf.sin(radians)
  x_offset = (w - (cos * w - sin * h)) / 2.0
  y_offset = (h - (sin * w + cos * h)) / 2.0
  return _geometric(image, tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]))


def _cutout(image, seed, half_size: int):
  """Gray square of side 2 * half_size (clipped to the image), stateless centre."""
  if half_size <= 0:
    return image
  shape = tf.shape(image)
  s = split_seed(seed, 2)
  cy = tf.random.stateless_uniform([], seed=s[0], maxval=shape[0], dtype=tf.int32)
  cx = tf.random.stateless_uniform([], seed=s[1], maxval=shape[1], dtype=tf.int32)
  rows = tf.range(shape[0])[:, None, None]
  cols = tf.range(shape[1])[None, :, None]
  inside = ((rows >= cy - half_size) & (rows < cy + half_size) &
            (cols >= cx - half_size) & (cols < cx + half_size))
  return tf.where(inside, tf.constant(_GRAY_FILL, tf.uint8), image)


def _solarize(image, threshold: int):
  # Threshold 256 solarizes nothing (official's uint8 comparison wraps it to 0).
  return image if threshold >= 256 else _official().solarize(image, threshold)


def _policy_op(name: str, level: float, seed, *, translate_const: float,
               cutout_const: float):
  """`fn(uint8 image) -> uint8 image` for op `name` at `level` (0..10).

  Level -> argument as official's `level_to_arg`; rotation, shear and
  translation get a sign drawn from `seed`.
  """
  tfm = _official()
  frac = level / _MAX_LEVEL
  if name in _SIGNED_OPS:
    sign = tf.where(tf.random.stateless_uniform([], seed=seed) < 0.5, -1.0, 1.0)
  if name == "Rotate":
    return lambda im: _rotation(im, sign * (frac * 30.0))
  if name in ("ShearX", "ShearY"):
    shear = sign * (frac * 0.3)
    if name == "ShearX":
      return lambda im: _geometric(im, tf.stack([1.0, shear, 0., 0., 1., 0., 0., 0.]))
    return lambda im: _geometric(im, tf.stack([1.0, 0., 0., shear, 1., 0., 0., 0.]))
  if name in ("TranslateX", "TranslateY"):
    pixels = sign * (frac * float(translate_const))
    if name == "TranslateX":
      return lambda im: _geometric(im, tf.stack([1.0, 0., pixels, 0., 1., 0., 0., 0.]))
    return lambda im: _geometric(im, tf.stack([1.0, 0., 0., 0., 1., pixels, 0., 0.]))
  if name == "Cutout":
    return lambda im: _cutout(im, seed, int(frac * cutout_const))
  if name == "Posterize":
    return lambda im: tfm.posterize(im, int(frac * 4))
  if name == "Solarize":
    return lambda im: _solarize(im, int(frac * 256))
  if name == "SolarizeAdd":
    return lambda im: tfm.solarize_add(im, int(frac * 110))
  if name in ("Color", "Contrast", "Brightness", "Sharpness"):
    fn = {"Color": tfm.color, "Contrast": tfm.contrast, "Brightness": tfm.brightness,
          "Sharpness": tfm.sharpness}[name]
    return lambda im: fn(im, frac * 1.8 + 0.1)
  if name in ("AutoContrast", "Equalize", "Invert"):
    return {"AutoContrast": tfm.autocontrast, "Equalize": tfm.equalize,
            "Invert": tfm.invert}[name]
  raise ValueError(f"unknown augmentation op {name!r}")


def _on_uint8_rgb(image, fn):
  """Runs `fn` (uint8 RGB -> uint8 RGB) on a float [0, 1] image with 1 or 3 channels."""
  channels = image.shape[-1]
  if channels not in (1, 3):
    raise ValueError(f"AutoAugment/RandAugment need 1 or 3 channels, got {image.shape}")
  rgb = tf.tile(image, [1, 1, 3]) if channels == 1 else image
  out = tf.cast(fn(_to_uint8(rgb)), tf.float32) / 255.0
  if channels == 1:
    out = out[..., :1]  # every op keeps equal channels equal
  out.set_shape(image.shape)
  return tf.clip_by_value(out, 0.0, 1.0)


@_no_autograph
def randaugment(image, seed, num_layers: int = 2, magnitude: float = 10.0, *,
                translate_const: float = 100.0, cutout_const: float = 40.0):
  """RandAugment (official's op list and defaults), stateless.

  Each of `num_layers` layers applies one of official's 16 ops or the identity,
  uniformly, at `magnitude` M on official's scale 0..10. `translate_const` /
  `cutout_const` are official's (pixels at M = 10, for 224-pixel images).
  """
  if not 0 <= magnitude <= _MAX_LEVEL:
    raise ValueError(f"RandAugment magnitude must be in [0, {_MAX_LEVEL}], got {magnitude}")
  ops = _official().RandAugment().available_ops
  layer_seeds = split_seed(seed, max(num_layers, 1))

  def distort(im):
    for layer in range(num_layers):
      s = split_seed(layer_seeds[layer], 2)
      index = tf.random.stateless_uniform([], seed=s[0], maxval=len(ops) + 1,
                                          dtype=tf.int32)
      fns = [_policy_op(name, magnitude, s[1], translate_const=translate_const,
                        cutout_const=cutout_const) for name in ops]
      branches = [lambda fn=fn, x=im: fn(x) for fn in fns] + [lambda x=im: tf.identity(x)]
      im = tf.ensure_shape(tf.switch_case(index, branches), im.shape)
    return im

  return _on_uint8_rgb(image, distort)


@_no_autograph
def autoaugment(image, seed, *, translate_const: float = 250.0,
                cutout_const: float = 100.0):
  """AutoAugment with the ImageNet policy (official's "v0"), stateless.

  One of the 25 sub-policies is drawn uniformly; each of its ops is applied with
  its probability at its level. Constants are official AutoAugment's defaults.
  """
  policies = _official().AutoAugment.policy_v0()
  s = split_seed(seed, 2)
  index = tf.random.stateless_uniform([], seed=s[0], maxval=len(policies),
                                      dtype=tf.int32)
  op_seeds = split_seed(s[1], 2 * max(len(p) for p in policies))

  def sub_policy(policy, im):
    for k, (name, probability, level) in enumerate(policy):
      coin_seed, op_seed = op_seeds[2 * k], op_seeds[2 * k + 1]
      fn = _policy_op(name, float(level), op_seed, translate_const=translate_const,
                      cutout_const=cutout_const)
      im = _maybe(coin_seed, probability, fn, im)
      im = tf.ensure_shape(im, [None, None, 3])
    return im

  def distort(im):
    branches = [lambda p=p: sub_policy(p, im) for p in policies]
    return tf.ensure_shape(tf.switch_case(index, branches), im.shape)

  return _on_uint8_rgb(image, distort)


# ------------------------------------------------------------------ normalisation
def normalize(image, mean: Union[float, Sequence[float]] = IMAGENET_MEAN,
              std: Union[float, Sequence[float]] = IMAGENET_STD):
  """Per-channel whitening (image - mean) / std (scalars or one value per channel)."""
  mean = tf.constant(mean, tf.float32)
  std = tf.constant(std, tf.float32)
  return (tf.cast(image, tf.float32) - mean) / std


def _maybe_normalize(image, mean, std):
  if mean is None and std is None:
    return image
  return normalize(image, 0.0 if mean is None else mean, 1.0 if std is None else std)


# ------------------------------------------------------------------ views
def _type_name(augmentation_type) -> str:
  name = str(getattr(augmentation_type, "name", augmentation_type)).lower()
  if name not in AUGMENTATION_TYPES:
    raise ValueError(f"augmentation_type must be one of {AUGMENTATION_TYPES}, got "
                     f"{augmentation_type!r}")
  return name


_NO_CROP_KINDS = ("identity",)


def _augment_cropped(image, s, kind: str, *, flip: bool, color_strength: float,
                     jitter_probability: float, grayscale_probability: float,
                     pytorch_color_jitter: bool, multiplicative_brightness: bool,
                     blur_probability: float, randaugment_layers: int,
                     randaugment_magnitude: float, mean, std):
  """Everything `train_view` does after the random resized crop (`s`: view seeds)."""
  channels = image.shape[-1]
  if flip:
    image = random_flip(image, s[_FLIP])
  colour = channels == 3 and color_strength > 0
  if kind in ("simclr", "stacked_randaugment"):
    if colour:
      image = _maybe(s[_JITTER_COIN], jitter_probability,
                     lambda x: color_jitter(x, s[_JITTER], color_strength,
                                            pytorch_style=pytorch_color_jitter,
                                            multiplicative_brightness=multiplicative_brightness),
                     image)
    if kind == "stacked_randaugment":
      image = randaugment(image, s[_POLICY], randaugment_layers, randaugment_magnitude)
    if colour:
      image = _maybe(s[_GRAY_COIN], grayscale_probability, to_grayscale, image)
    if blur_probability > 0:
      image = random_blur(image, s[_BLUR], blur_probability)
  elif kind == "randaugment":
    image = randaugment(image, s[_POLICY], randaugment_layers, randaugment_magnitude)
  elif kind == "autoaugment":
    image = autoaugment(image, s[_POLICY])
  return _maybe_normalize(image, mean, std)


@_no_autograph
def train_view(image, seed, *, size: int, augmentation_type: str = "simclr",
               area_range=(0.08, 1.0), aspect_range=(0.75, 4.0 / 3.0),
               flip: bool = True, color_strength: float = 0.5,
               jitter_probability: float = 0.8, grayscale_probability: float = 0.2,
               pytorch_color_jitter: bool = False,
               multiplicative_brightness: bool = False,
               blur_probability: float = 0.0, randaugment_layers: int = 2,
               randaugment_magnitude: float = 10.0,
               mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None):
  """One augmented training view [size, size, C] (see the module docstring).

  Colour jitter and grayscale run on RGB images with `color_strength` > 0 only.
  `blur_probability` applies to "simclr" and "stacked_randaugment" (`BLUR_TYPES`;
  keep it 0 when the blur is deferred to `batch_random_blur`). `mean`/`std`
  (either may be None) whiten the result, which then leaves [0, 1].
  """
  image = to_float(image)
  channels = image.shape[-1]
  if channels is None:
    raise ValueError("train_view needs a static channel dimension, got shape "
                     f"{image.shape}")
  kind = _type_name(augmentation_type)
  if kind in _NO_CROP_KINDS:
    if image.shape[0] != size or image.shape[1] != size:
      image = _resize(image, size)
    return _maybe_normalize(image, mean, std)

  s = split_seed(seed, _NUM_VIEW_SEEDS)
  image = random_resized_crop(image, s[_CROP], size, area_range, aspect_range)
  return _augment_cropped(
      image, s, kind, flip=flip, color_strength=color_strength,
      jitter_probability=jitter_probability, grayscale_probability=grayscale_probability,
      pytorch_color_jitter=pytorch_color_jitter,
      multiplicative_brightness=multiplicative_brightness,
      blur_probability=blur_probability, randaugment_layers=randaugment_layers,
      randaugment_magnitude=randaugment_magnitude, mean=mean, std=std)


# ------------------------------------------------------------------ encoded images
# `train_view`'s defaults of the options applied after the crop.
_POST_CROP_DEFAULTS = {
    name: p.default for name, p in inspect.signature(train_view).parameters.items()
    if p.kind == p.KEYWORD_ONLY and name not in ("size", "augmentation_type",
                                                 "area_range", "aspect_range")}


def decode_image(encoded, channels: int):
  """Decodes a JPEG/PNG/BMP/GIF (first frame) string into uint8 [H, W, channels]."""
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  image.set_shape([None, None, channels])
  return image


def _crop_window(image_shape, seed, area_range, aspect_range):
  """(begin [3], size [3]) of `random_resized_crop`'s crop of an image of
  `image_shape` [H, W, C]: the same window for the same shape and seed."""
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


@_no_autograph
def decode_and_random_crop(encoded, seed, channels: int,
                           area_range: Tuple[float, float] = (0.08, 1.0),
                           aspect_range: Tuple[float, float] = (0.75, 4.0 / 3.0)):
  """The crop of `random_resized_crop` (same window for the same seed), decoded
  from an encoded image: for a JPEG only the window is decoded
  (`tf.image.decode_and_crop_jpeg`, the shape read from the header); other formats
  are decoded whole and sliced. Returns uint8 [h, w, channels]."""
  encoded = tf.convert_to_tensor(encoded, tf.string)

  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    begin, size = _crop_window(tf.stack([shape[0], shape[1], channels]), seed,
                               area_range, aspect_range)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

  def other():
    image = decode_image(encoded, channels)
    begin, size = _crop_window(tf.shape(image), seed, area_range, aspect_range)
    return tf.slice(image, begin, size)

  crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  crop.set_shape([None, None, channels])
  return crop


@_no_autograph
def train_view_encoded(encoded, seed, *, channels: int, size: int,
                       augmentation_type: str = "simclr", area_range=(0.08, 1.0),
                       aspect_range=(0.75, 4.0 / 3.0), **kwargs):
  """`train_view` of an encoded image (string tensor), decoding only the crop.

  Equals `train_view(decode_image(encoded, channels), seed, ...)` up to the JPEG
  decoder's chroma upsampling at the crop's edges (`decode_and_crop_jpeg` vs decode
  then crop: a few pixels off by up to ~16/255 on small 4:2:0 JPEGs; PNG exact):
  the crop window is drawn from the same seed and image shape.
  """
  kind = _type_name(augmentation_type)
  unknown = set(kwargs) - set(_POST_CROP_DEFAULTS)
  if unknown:
    raise TypeError(f"train_view_encoded: unexpected arguments {sorted(unknown)}")
  if kind in _NO_CROP_KINDS:
    return train_view(decode_image(encoded, channels), seed, size=size,
                      augmentation_type=kind, **kwargs)
  s = split_seed(seed, _NUM_VIEW_SEEDS)
  crop = decode_and_random_crop(encoded, s[_CROP], channels, area_range, aspect_range)
  image = _resize(to_float(crop), size)
  return _augment_cropped(image, s, kind, **{**_POST_CROP_DEFAULTS, **kwargs})


@_no_autograph
def train_views_encoded(encoded, seed, num_views: int, **kwargs):
  """`num_views` views of an encoded image: [V, size, size, C] (`train_views`)."""
  seeds = split_seed(seed, num_views)
  if tf.executing_eagerly():
    return tf.stack([train_view_encoded(encoded, seeds[v], **kwargs)
                     for v in range(num_views)])
  return tf.map_fn(lambda view_seed: train_view_encoded(encoded, view_seed, **kwargs),
                   seeds, fn_output_signature=tf.float32)


def view_blur_seed(view_seed):
  """The seed `train_view` gives its blur, for a deferred `batch_random_blur`.

  `view_seed` [2] or [B, 2] (the views' seeds, e.g. `split_seed(seed,
  num_views)[v]` in `train_views`); `batch_random_blur(views, view_blur_seed(
  view_seeds), p)` then equals blurring inside `train_view`.
  """
  view_seed = tf.cast(view_seed, tf.int64)
  if view_seed.shape.rank == 2:
    return tf.map_fn(view_blur_seed, view_seed)
  return split_seed(view_seed, _NUM_VIEW_SEEDS)[_BLUR]


@_no_autograph
def train_views(image, seed, num_views: int, **kwargs):
  """`num_views` independently augmented views, stacked: [V, size, size, C]."""
  seeds = split_seed(seed, num_views)
  if tf.executing_eagerly():
    return tf.stack([train_view(image, seeds[v], **kwargs) for v in range(num_views)])
  # In a graph (Dataset.map), one traced view looped over the seeds: the same
  # values, a fraction of the tracing time of AutoAugment/RandAugment graphs.
  return tf.map_fn(lambda view_seed: train_view(image, view_seed, **kwargs), seeds,
                   fn_output_signature=tf.float32)


@_no_autograph
def eval_view(image, *, size: int, method: str = "identity", crop_padding: int = 32,
              mean: Optional[Sequence[float]] = None,
              std: Optional[Sequence[float]] = None):
  """Deterministic evaluation view [size, size, C] in [0, 1] (the authors' crops).

  "identity": the plain image, resized to `size` if it differs.
  "resize_then_crop" (the authors' default on ImageNet): resize the shorter side
  to size + crop_padding, then take the central size x size square.
  "crop_then_resize" (TF ResNet / SimCLR `center_crop`): take the central square
  of side size / (size + crop_padding) of the shorter side, resize it to size.
  Both central crops take the central 224/256 of a 224-crop at padding 32.
  Resizing is bicubic, as for training crops (the authors resize bilinearly).
  """
  image = to_float(image)
  if method not in EVAL_CROP_METHODS:
    raise ValueError(f"eval crop method must be one of {EVAL_CROP_METHODS}, got {method!r}")
  channels = image.shape[-1]
  if method == "identity":
    if image.shape[0] != size or image.shape[1] != size:
      image = _resize(image, size)
    return _maybe_normalize(image, mean, std)

  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  shorter = tf.minimum(height, width)
  if method == "resize_then_crop":
    target = size + crop_padding
    scale = target / tf.cast(shorter, tf.float64)
    new_h = tf.where(height == shorter, target,
                     tf.cast(scale * tf.cast(height, tf.float64), tf.int32))
    new_w = tf.where(width == shorter, target,
                     tf.cast(scale * tf.cast(width, tf.float64), tf.int32))
    resized = tf.cond(
        (new_h == height) & (new_w == width), lambda: image,
        lambda: tf.clip_by_value(
            tf.image.resize(image[None], tf.stack([new_h, new_w]), method="bicubic")[0],
            0.0, 1.0))
    top, left = (new_h - size + 1) // 2, (new_w - size + 1) // 2
    image = tf.slice(resized, tf.stack([top, left, 0]), [size, size, -1])
  else:
    crop = tf.cast(size / (size + crop_padding) * tf.cast(shorter, tf.float64), tf.int32)
    top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
    image = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, -1]))
    image.set_shape([None, None, channels])
    image = tf.cond(crop == size, lambda: image, lambda: _resize(image, size))
  image.set_shape([size, size, channels])
  return _maybe_normalize(image, mean, std)


def eval_view_encoded(encoded, *, channels: int, **kwargs):
  """`eval_view` of an encoded image (decoded whole: the evaluation crops are
  central and need the full image's shape)."""
  return eval_view(decode_image(encoded, channels), **kwargs)


def view_kwargs(data_config) -> dict:
  """Keyword arguments of `train_view` from a `DataConfig`."""
  return dict(size=data_config.image_size,
              augmentation_type=data_config.augmentation_type.value,
              area_range=tuple(data_config.crop_area_range),
              aspect_range=tuple(data_config.crop_aspect_range),
              flip=data_config.flip,
              color_strength=data_config.augmentation_magnitude,
              pytorch_color_jitter=data_config.use_pytorch_color_jitter,
              grayscale_probability=data_config.grayscale_probability,
              blur_probability=data_config.blur_probability,
              randaugment_layers=data_config.randaugment_layers,
              randaugment_magnitude=data_config.randaugment_magnitude)


def eval_kwargs(data_config) -> dict:
  """Keyword arguments of `eval_view` from a `DataConfig`."""
  return dict(size=data_config.image_size, method=data_config.eval_crop_method.value,
              crop_padding=data_config.crop_padding)


__all__: Sequence[str] = (
    "AUGMENTATION_TYPES", "BLUR_TYPES", "EVAL_CROP_METHODS", "IMAGENET_MEAN",
    "IMAGENET_STD", "CIFAR10_MEAN", "CIFAR10_STD", "split_seed", "to_float",
    "random_resized_crop", "random_flip", "color_jitter", "to_grayscale",
    "gaussian_blur", "random_blur", "batch_random_blur", "randaugment",
    "autoaugment", "normalize", "train_view", "view_blur_seed", "train_views",
    "decode_image", "decode_and_random_crop", "train_view_encoded",
    "train_views_encoded", "eval_view", "eval_view_encoded", "view_kwargs",
    "eval_kwargs")
