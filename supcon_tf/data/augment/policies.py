"""AutoAugment and RandAugment with a stateless selection of the ops.

`official.vision.ops.augment`'s `AutoAugment.distort` / `RandAugment.distort`
take no seed: they draw the sub-policy / op index, the apply-coins, the sign of
rotations, shears and translations and the cutout centre with stateful
`tf.random.uniform`, which is neither reproducible per (image, seed) nor allowed
in a checkpointable `Dataset.map`. So the *selection* is re-implemented here with
stateless ops (same distributions as official: RandAugment draws one of the 16 ops
or the identity uniformly per layer; AutoAugment draws one of the 25 sub-policies
and applies each of its ops with its probability; geometric magnitudes get a
random sign), while the policy table (`AutoAugment.policy_v0()`), the op list
(`RandAugment().available_ops`) and the pixel ops (`autocontrast`, `equalize`,
`invert`, `posterize`, `solarize`, `solarize_add`, `color`, `contrast`,
`brightness`, `sharpness`) and `transform` are official's, on uint8 [0, 255].
Level -> argument maps are official's formulas with `_MAX_LEVEL` = 10. Differences,
on purpose: geometric ops fill uncovered pixels with gray 128 (constant fill, as
the authors' 2020 `official/vision/image_classification/augment.py` did; official
2.20's `transform` reflects), cutout has a stateless centre, and Solarize with
threshold 256 (level 10) is the identity (official 2.20 wraps 256 to 0 in uint8
and inverts the whole image).

Both run on 1- or 3-channel images: a 1-channel image is tiled to 3 channels and
its first channel kept (all the ops keep equal channels equal).
"""

import math

import tensorflow as tf

from supcon_tf.data.augment import ops

_MAX_LEVEL = 10.0  # official.vision.ops.augment._MAX_LEVEL
_SIGNED_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
_GRAY_FILL = 128  # uint8 fill of pixels uncovered by geometric ops


def _official():
  # Imported on first use: tf-models-official takes ~1.6 s to import on top of
  # TensorFlow, and runs with the SimCLR augmentation (the default) never need it.
  from official.vision.ops import augment as tfm_augment  # pylint: disable=g-import-not-at-top
  return tfm_augment


def to_uint8(image):
  """float [0, 1] -> uint8 [0, 255] (rounded)."""
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
  s = ops.split_seed(seed, 2)
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


def policy_op(name: str, level: float, seed, *, translate_const: float,
              cutout_const: float):
  """One of official's ops at a level, as a function of a uint8 image.

  Level -> argument as official's `level_to_arg`; rotation, shear and
  translation get a sign drawn from `seed`.

  Args:
    name: official's op name ("Rotate", "Solarize", ...).
    level: 0..10.
    seed: int tensor [2] (signs, cutout centre).
    translate_const: pixels of a translation at level 10.
    cutout_const: half side of the cutout square at level 10.

  Returns:
    `fn(uint8 [H, W, 3]) -> uint8 [H, W, 3]`.

  Raises:
    ValueError: an unknown op name.
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
  out = tf.cast(fn(to_uint8(rgb)), tf.float32) / 255.0
  if channels == 1:
    out = out[..., :1]  # every op keeps equal channels equal
  out.set_shape(image.shape)
  return tf.clip_by_value(out, 0.0, 1.0)


@ops.no_autograph
def randaugment(image, seed, num_layers: int, magnitude: float, *,
                translate_const: float = 100.0, cutout_const: float = 40.0):
  """RandAugment (official's op list), stateless.

  Each of `num_layers` layers applies one of official's 16 ops or the identity,
  uniformly, at `magnitude` M on official's scale 0..10.

  Args:
    image: float [H, W, C] in [0, 1], C 1 or 3.
    seed: int tensor [2].
    num_layers: N, ops per image.
    magnitude: M in [0, 10].
    translate_const: official's pixels at M = 10 (for 224-pixel images).
    cutout_const: official's cutout half side at M = 10.

  Returns:
    float32 [H, W, C] in [0, 1] (quantised to 1/255).

  Raises:
    ValueError: `magnitude` outside [0, 10], or C not 1 or 3.
  """
  if not 0 <= magnitude <= _MAX_LEVEL:
    raise ValueError(f"RandAugment magnitude must be in [0, {_MAX_LEVEL}], got {magnitude}")
  op_names = _official().RandAugment().available_ops
  layer_seeds = ops.split_seed(seed, max(num_layers, 1))

  def distort(im):
    for layer in range(num_layers):
      s = ops.split_seed(layer_seeds[layer], 2)
      index = tf.random.stateless_uniform([], seed=s[0], maxval=len(op_names) + 1,
                                          dtype=tf.int32)
      fns = [policy_op(name, magnitude, s[1], translate_const=translate_const,
                       cutout_const=cutout_const) for name in op_names]
      branches = [lambda fn=fn, x=im: fn(x) for fn in fns] + [lambda x=im: tf.identity(x)]
      im = tf.ensure_shape(tf.switch_case(index, branches), im.shape)
    return im

  return _on_uint8_rgb(image, distort)


@ops.no_autograph
def autoaugment(image, seed, *, translate_const: float = 250.0,
                cutout_const: float = 100.0):
  """AutoAugment with the ImageNet policy (official's "v0"), stateless.

  One of the 25 sub-policies is drawn uniformly; each of its ops is applied with
  its probability at its level.

  Args:
    image: float [H, W, C] in [0, 1], C 1 or 3.
    seed: int tensor [2].
    translate_const: official AutoAugment's translation at level 10.
    cutout_const: official AutoAugment's cutout half side at level 10.

  Returns:
    float32 [H, W, C] in [0, 1] (quantised to 1/255).
  """
  policies = _official().AutoAugment.policy_v0()
  s = ops.split_seed(seed, 2)
  index = tf.random.stateless_uniform([], seed=s[0], maxval=len(policies),
                                      dtype=tf.int32)
  op_seeds = ops.split_seed(s[1], 2 * max(len(p) for p in policies))

  def sub_policy(policy, im):
    for k, (name, probability, level) in enumerate(policy):
      coin_seed, op_seed = op_seeds[2 * k], op_seeds[2 * k + 1]
      fn = policy_op(name, float(level), op_seed, translate_const=translate_const,
                     cutout_const=cutout_const)
      im = ops.maybe(coin_seed, probability, fn, im)
      im = tf.ensure_shape(im, [None, None, 3])
    return im

  def distort(im):
    branches = [lambda p=p: sub_policy(p, im) for p in policies]
    return tf.ensure_shape(tf.switch_case(index, branches), im.shape)

  return _on_uint8_rgb(image, distort)
