"""Training and evaluation views, configured by one frozen spec each.

`ViewSpec.from_config(data_config)` / `EvalViewSpec.from_config(data_config)` read
the `DataConfig` once; the view functions take the spec. A view is a pure function
of (image, seed, spec): the seed of a view is split into one seed per role
(crop, flip, jitter coin, ...), always in the same way.

Augmentation types of the authors' release (google-research/supcon,
`preprocessing.py`), `ViewSpec.augmentation_type`; every type but IDENTITY starts
with a random resized crop and a random flip:

* SIMCLR: colour jitter (p=`jitter_probability`, 0.8), random grayscale
  (p=`grayscale_probability`), Gaussian blur (p=`blur_probability`).
* AUTOAUGMENT: AutoAugment, ImageNet policy (official's "v0").
* RANDAUGMENT: RandAugment(`randaugment_layers`, `randaugment_magnitude`).
* STACKED_RANDAUGMENT (the authors' ResNet-200 recipe): colour jitter (p=0.8),
  then RandAugment, then random grayscale, then blur -- the order of the
  authors' `_stacked_simclr_randaugment`.
* IDENTITY: resize to `size`, nothing random. (The authors' IDENTITY still crops
  and flips: that is SIMCLR with `color_strength=0`, no blur.)

Not reproduced: the authors' optional elastic warp (`warp_probability`, 0 by
default and in all their scripts).

Magnitude semantics of the authors' release: their `augmentation_magnitude` is
the colour-jitter strength for SIMCLR and STACKED_RANDAUGMENT (ImageNet scripts:
1.0), RandAugment's M for RANDAUGMENT (official's scale, 0..10, 10 = max), and only
an on/off gate (> 0) for AUTOAUGMENT. STACKED_RANDAUGMENT runs official's default
RandAugment, N=2 layers, M=10. Here they are separate fields: `color_strength`,
`randaugment_layers`, `randaugment_magnitude` (0..10).

As in the authors' code, blur belongs to SIMCLR and STACKED_RANDAUGMENT only
(`enums.BLUR_TYPES`). With `ViewSpec.defer_blur` the views are not blurred here:
the pipeline emits each view's blur seed (`train_blur_seeds`) and the replica
step blurs the batch with `ops.batch_random_blur` -- the same pixels. Colour ops
need RGB: on 1-channel images jitter and grayscale are skipped.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from supcon_tf import enums
from supcon_tf.config import DataConfig
from supcon_tf.data.augment import ops
from supcon_tf.data.augment import policies
from supcon_tf.enums import AugmentationType, EvalCropMethod

# Roles of the seeds split from a view's seed (`_NUM_VIEW_SEEDS`: one spare).
_CROP, _FLIP, _JITTER_COIN, _GRAY_COIN, _JITTER, _POLICY, _BLUR = range(7)
_NUM_VIEW_SEEDS = 8
# The authors' (and SimCLR's) probability of the colour jitter; not a flag.
_JITTER_PROBABILITY = 0.8
_COLOUR_TYPES = (AugmentationType.SIMCLR, AugmentationType.STACKED_RANDAUGMENT)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """Everything a training view depends on besides the image and the seed.

  Attributes:
    size: side of the views.
    augmentation_type: the recipe (see the module docstring).
    area_range: random resized crop: (min, max) fraction of the area.
    aspect_range: random resized crop: (min, max) width / height.
    flip: random left-right flip.
    color_strength: colour-jitter strength s (SIMCLR, STACKED_RANDAUGMENT).
    jitter_probability: probability of the colour jitter.
    grayscale_probability: probability of the random grayscale.
    pytorch_color_jitter: torchvision's ColorJitter semantics.
    multiplicative_brightness: SimCLR v2's brightness factor (TF-style jitter).
    blur_probability: probability of the Gaussian blur (`enums.BLUR_TYPES` only).
    randaugment_layers: RandAugment's N.
    randaugment_magnitude: RandAugment's M (0..10).
    defer_blur: the blur is left to `ops.batch_random_blur` on the batch: the
      views are not blurred, the pipeline emits "blur_seeds".
  """
  size: int
  augmentation_type: AugmentationType
  area_range: Tuple[float, float]
  aspect_range: Tuple[float, float]
  flip: bool
  color_strength: float
  jitter_probability: float
  grayscale_probability: float
  pytorch_color_jitter: bool
  multiplicative_brightness: bool
  blur_probability: float
  randaugment_layers: int
  randaugment_magnitude: float
  defer_blur: bool

  def __post_init__(self):
    if not isinstance(self.augmentation_type, AugmentationType):
      raise ValueError("augmentation_type must be an AugmentationType (one of "
                       f"{', '.join(t.value for t in AugmentationType)}), got "
                       f"{self.augmentation_type!r}")
    if self.defer_blur and not (self.blur_probability > 0 and
                                self.augmentation_type in enums.BLUR_TYPES):
      raise ValueError("defer_blur needs blur_probability > 0 and an augmentation "
                       f"with a blur ({', '.join(t.value for t in enums.BLUR_TYPES)})")

  @classmethod
  def from_config(cls, data_config: DataConfig) -> "ViewSpec":
    """The training view of a run.

    `defer_blur` is resolved here, once: True iff --defer_blur is set, the blur
    probability is positive and the augmentation has a blur.

    Args:
      data_config: the run's data configuration.

    Returns:
      The spec.
    """
    d = data_config
    return cls(
        size=d.image_size, augmentation_type=d.augmentation_type,
        area_range=tuple(d.crop_area_range), aspect_range=tuple(d.crop_aspect_range),
        flip=d.flip, color_strength=d.augmentation_magnitude,
        jitter_probability=_JITTER_PROBABILITY,
        grayscale_probability=d.grayscale_probability,
        pytorch_color_jitter=d.use_pytorch_color_jitter,
        multiplicative_brightness=False,  # the authors' additive brightness delta
        blur_probability=d.blur_probability,
        randaugment_layers=d.randaugment_layers,
        randaugment_magnitude=d.randaugment_magnitude,
        defer_blur=(d.defer_blur and d.blur_probability > 0 and
                    d.augmentation_type in enums.BLUR_TYPES))


@dataclasses.dataclass(frozen=True)
class EvalViewSpec:
  """The deterministic evaluation view.

  Attributes:
    size: side of the views.
    method: IDENTITY (small images) or one of the ImageNet centre crops.
    crop_padding: the centre crops take size / (size + crop_padding).
  """
  size: int
  method: EvalCropMethod
  crop_padding: int

  def __post_init__(self):
    if not isinstance(self.method, EvalCropMethod):
      raise ValueError("eval crop method must be an EvalCropMethod (one of "
                       f"{', '.join(m.value for m in EvalCropMethod)}), got "
                       f"{self.method!r}")

  @classmethod
  def from_config(cls, data_config: DataConfig) -> "EvalViewSpec":
    """The evaluation view of a run.

    Args:
      data_config: the run's data configuration.

    Returns:
      The spec.
    """
    return cls(size=data_config.image_size, method=data_config.eval_crop_method,
               crop_padding=data_config.crop_padding)


# ------------------------------------------------------------------ training views
def _resized(image, size: int):
  if image.shape[0] != size or image.shape[1] != size:
    return ops.resize(image, size)
  return image


def _augment_cropped(image, s, spec: ViewSpec):
  """Everything `train_view` does after the random resized crop (`s`: view seeds)."""
  kind = spec.augmentation_type
  if spec.flip:
    image = ops.random_flip(image, s[_FLIP])
  colour = image.shape[-1] == 3 and spec.color_strength > 0
  if kind in _COLOUR_TYPES:
    if colour:
      image = ops.maybe(
          s[_JITTER_COIN], spec.jitter_probability,
          lambda x: ops.color_jitter(x, s[_JITTER], spec.color_strength,
                                     pytorch_style=spec.pytorch_color_jitter,
                                     multiplicative_brightness=spec.multiplicative_brightness),
          image)
    if kind == AugmentationType.STACKED_RANDAUGMENT:
      image = policies.randaugment(image, s[_POLICY], spec.randaugment_layers,
                                   spec.randaugment_magnitude)
    if colour:
      image = ops.maybe(s[_GRAY_COIN], spec.grayscale_probability, ops.to_grayscale,
                        image)
    if spec.blur_probability > 0 and not spec.defer_blur:
      image = ops.random_blur(image, s[_BLUR], spec.blur_probability)
  elif kind == AugmentationType.RANDAUGMENT:
    image = policies.randaugment(image, s[_POLICY], spec.randaugment_layers,
                                 spec.randaugment_magnitude)
  elif kind == AugmentationType.AUTOAUGMENT:
    image = policies.autoaugment(image, s[_POLICY])
  return image


@ops.no_autograph
def train_view(image, seed, spec: ViewSpec):
  """One augmented training view (see the module docstring).

  Args:
    image: uint8 or float [H, W, C] in [0, 1], static C.
    seed: int tensor [2].
    spec: the view.

  Returns:
    float32 [size, size, C] in [0, 1].

  Raises:
    ValueError: the channel dimension is not static.
  """
  image = ops.to_float(image)
  if image.shape[-1] is None:
    raise ValueError("train_view needs a static channel dimension, got shape "
                     f"{image.shape}")
  if spec.augmentation_type == AugmentationType.IDENTITY:
    return _resized(image, spec.size)
  s = ops.split_seed(seed, _NUM_VIEW_SEEDS)
  image = ops.random_resized_crop(image, s[_CROP], spec.size, spec.area_range,
                                  spec.aspect_range)
  return _augment_cropped(image, s, spec)


@ops.no_autograph
def train_view_encoded(encoded, seed, spec: ViewSpec, channels: int):
  """`train_view` of an encoded image, decoding only the crop.

  Equals `train_view(ops.decode_image(encoded, channels), seed, spec)` up to the
  JPEG decoder's chroma upsampling at the crop's edges (`decode_and_crop_jpeg` vs
  decode then crop: a few pixels off by up to ~16/255 on small 4:2:0 JPEGs; PNG
  exact): the crop window is drawn from the same seed and image shape.

  Args:
    encoded: string tensor, a JPEG/PNG/BMP/GIF.
    seed: int tensor [2].
    spec: the view.
    channels: channels to decode to.

  Returns:
    float32 [size, size, channels] in [0, 1].
  """
  if spec.augmentation_type == AugmentationType.IDENTITY:
    return train_view(ops.decode_image(encoded, channels), seed, spec)
  s = ops.split_seed(seed, _NUM_VIEW_SEEDS)
  crop = ops.decode_and_random_crop(encoded, s[_CROP], channels, spec.area_range,
                                    spec.aspect_range)
  image = ops.resize(ops.to_float(crop), spec.size)
  return _augment_cropped(image, s, spec)


def _stack_views(view_fn, seed, num_views: int):
  seeds = ops.split_seed(seed, num_views)
  if tf.executing_eagerly():
    return tf.stack([view_fn(seeds[v]) for v in range(num_views)])
  # In a graph (Dataset.map), one traced view looped over the seeds: the same
  # values, a fraction of the tracing time of AutoAugment/RandAugment graphs.
  return tf.map_fn(view_fn, seeds, fn_output_signature=tf.float32)


@ops.no_autograph
def train_views(image, seed, num_views: int, spec: ViewSpec):
  """Independently augmented views of one image, stacked.

  Args:
    image: uint8 or float [H, W, C] in [0, 1].
    seed: int tensor [2]; view v gets `ops.split_seed(seed, num_views)[v]`.
    num_views: V.
    spec: the view.

  Returns:
    float32 [V, size, size, C] in [0, 1].
  """
  return _stack_views(lambda view_seed: train_view(image, view_seed, spec), seed,
                      num_views)


@ops.no_autograph
def train_views_encoded(encoded, seed, num_views: int, spec: ViewSpec, channels: int):
  """`train_views` of an encoded image (`train_view_encoded` per view).

  Args:
    encoded: string tensor, a JPEG/PNG/BMP/GIF.
    seed: int tensor [2].
    num_views: V.
    spec: the view.
    channels: channels to decode to.

  Returns:
    float32 [V, size, size, channels] in [0, 1].
  """
  return _stack_views(
      lambda view_seed: train_view_encoded(encoded, view_seed, spec, channels), seed,
      num_views)


def view_blur_seed(view_seed):
  """The seed `train_view` gives its blur, for a deferred `ops.batch_random_blur`.

  Args:
    view_seed: int [2] or [B, 2], the views' seeds (e.g. `ops.split_seed(seed,
      num_views)[v]` in `train_views`).

  Returns:
    int64 [2] or [B, 2]: `ops.batch_random_blur(views, view_blur_seed(view_seeds),
    p)` equals blurring inside `train_view`.
  """
  view_seed = tf.cast(view_seed, tf.int64)
  if view_seed.shape.rank == 2:
    return tf.map_fn(view_blur_seed, view_seed)
  return ops.split_seed(view_seed, _NUM_VIEW_SEEDS)[_BLUR]


def train_blur_seeds(seed, num_views: int):
  """The blur seeds of the views `train_views(image, seed, num_views, spec)` draws.

  Args:
    seed: int tensor [2], the example's seed.
    num_views: V.

  Returns:
    int64 [V, 2].
  """
  return view_blur_seed(ops.split_seed(seed, num_views))


# ------------------------------------------------------------------ evaluation views
@ops.no_autograph
def eval_view(image, spec: EvalViewSpec):
  """Deterministic evaluation view (the authors' crops).

  IDENTITY: the plain image, resized to `size` if it differs.
  RESIZE_THEN_CROP (the authors' default on ImageNet): resize the shorter side to
  size + crop_padding, then take the central size x size square.
  CROP_THEN_RESIZE (TF ResNet / SimCLR `center_crop`): take the central square of
  side size / (size + crop_padding) of the shorter side, resize it to size.
  Both central crops take the central 224/256 of a 224-crop at padding 32.
  Resizing is bicubic, as for training crops (the authors resize bilinearly).

  Args:
    image: uint8 or float [H, W, C] in [0, 1] (H, W may be unknown).
    spec: the view.

  Returns:
    float32 [size, size, C] in [0, 1].
  """
  image = ops.to_float(image)
  size, crop_padding = spec.size, spec.crop_padding
  channels = image.shape[-1]
  if spec.method == EvalCropMethod.IDENTITY:
    return _resized(image, size)

  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  shorter = tf.minimum(height, width)
  if spec.method == EvalCropMethod.RESIZE_THEN_CROP:
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
    image = tf.cond(crop == size, lambda: image, lambda: ops.resize(image, size))
  image.set_shape([size, size, channels])
  return image


def eval_view_encoded(encoded, spec: EvalViewSpec, channels: int):
  """`eval_view` of an encoded image, decoded whole (the evaluation crops are
  central and need the full image's shape).

  Args:
    encoded: string tensor, a JPEG/PNG/BMP/GIF.
    spec: the view.
    channels: channels to decode to.

  Returns:
    float32 [size, size, channels] in [0, 1].
  """
  return eval_view(ops.decode_image(encoded, channels), spec)
