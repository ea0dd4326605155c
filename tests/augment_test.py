"""Augmentations: every type eager == Dataset.map, seeding, ranges, semantics."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.data import augment

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SEED = tf.constant([3, 4], tf.int64)
_OTHER_SEED = tf.constant([3, 5], tf.int64)


def _image(channels, dtype, size=36, seed=1):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (size, size, channels)).astype(np.uint8)
  if dtype == tf.uint8:
    return tf.constant(image)
  return tf.constant(image / 255.0, tf.float32)


def _mapped(fn, *args):
  """`fn(*args)` run inside Dataset.map (a traced graph)."""
  dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  return next(iter(dataset))


def _check_range(x, low=0.0, high=1.0):
  assert x.dtype == tf.float32
  assert float(tf.reduce_min(x)) >= low and float(tf.reduce_max(x)) <= high



# ------------------------------------------------------------------ encoded images
def _smooth_image(height, width, seed=0):
  rng = np.random.default_rng(seed)
  coarse = rng.random((1, 4, 4, 3)).astype(np.float32) * 255.0
  return tf.cast(tf.image.resize(coarse, [height, width])[0], tf.uint8)


@pytest.mark.parametrize("kind", ["simclr", "autoaugment", "stacked_randaugment",
                                  "identity"])
def test_encoded_views_equal_the_views_of_the_decoded_image(kind):
  """PNG: exactly train_view of the decoded image (same crop window from the same
  seed); eager == Dataset.map; views differ from each other."""
  image = _smooth_image(30, 44)
  encoded = tf.io.encode_png(image)
  kw = dict(size=24, augmentation_type=kind, area_range=(0.2, 1.0), color_strength=1.0,
            blur_probability=0.5)
  eager = augment.train_views_encoded(encoded, _SEED, 3, channels=3, **kw)
  decoded = augment.train_views(augment.decode_image(encoded, 3), _SEED, 3, **kw)
  np.testing.assert_array_equal(eager.numpy(), decoded.numpy())
  mapped = _mapped(lambda e, s: augment.train_views_encoded(e, s, 3, channels=3, **kw),
                   encoded, _SEED)
  np.testing.assert_allclose(eager.numpy(), mapped.numpy(), atol=1e-6)
  assert eager.shape == (3, 24, 24, 3)
  _check_range(eager)
  if kind != "identity":
    assert not np.allclose(eager[0], eager[1])


def test_decode_and_random_crop_reads_only_the_window_of_a_jpeg():
  image = _smooth_image(60, 80)
  for encoded in (tf.io.encode_jpeg(image, quality=95), tf.io.encode_png(image)):
    crop = augment.decode_and_random_crop(encoded, _SEED, 3, (0.1, 0.3))
    full = augment.decode_image(encoded, 3)
    begin, size = augment._crop_window(tf.shape(full), _SEED, (0.1, 0.3),
                                       (0.75, 4 / 3))
    assert crop.dtype == tf.uint8 and tuple(crop.shape[:2]) == tuple(size.numpy()[:2])
    assert 0.1 * 4800 <= crop.shape[0] * crop.shape[1] <= 0.3 * 4800 + 100
    expected = tf.slice(full, begin, size)
    # JPEG chroma upsampling differs at the window's edges; PNG is exact.
    assert np.abs(crop.numpy().astype(int) - expected.numpy().astype(int)).mean() < 2


def test_encoded_grayscale_eval_and_bad_arguments():
  gray = tf.io.encode_png(_smooth_image(20, 20)[..., :1])
  view = augment.train_view_encoded(gray, _SEED, channels=1, size=16)
  assert view.shape == (16, 16, 1)
  evaluated = augment.eval_view_encoded(gray, channels=1, size=16,
                                        method="resize_then_crop", crop_padding=4)
  np.testing.assert_allclose(evaluated, augment.eval_view(
      augment.decode_image(gray, 1), size=16, method="resize_then_crop", crop_padding=4))
  with pytest.raises(TypeError, match="unexpected arguments"):
    augment.train_view_encoded(gray, _SEED, channels=1, size=16, sharpness=2)
  with pytest.raises(tf.errors.InvalidArgumentError):
    augment.train_view_encoded(tf.constant(b"not an image"), _SEED, channels=3, size=16)

# ------------------------------------------------------------------ train views
_TYPES = [
    ("simclr", {}),
    ("simclr", dict(pytorch_color_jitter=True, blur_probability=1.0, color_strength=1.0)),
    ("simclr", dict(multiplicative_brightness=True)),
    ("autoaugment", {}),
    ("randaugment", dict(randaugment_layers=2, randaugment_magnitude=9)),
    ("stacked_randaugment", dict(color_strength=1.0, blur_probability=0.5)),
    ("identity", {}),
]


@pytest.mark.parametrize("channels,dtype", [(3, tf.uint8), (1, tf.float32)])
@pytest.mark.parametrize("kind,extra", _TYPES)
def test_train_views_every_type(kind, extra, channels, dtype):
  image = _image(channels, dtype)
  kw = dict(size=24, augmentation_type=kind, area_range=(0.2, 1.0), **extra)
  eager = augment.train_views(image, _SEED, 2, **kw)
  mapped = _mapped(lambda im, s: augment.train_views(im, s, 2, **kw), image, _SEED)
  np.testing.assert_allclose(eager.numpy(), mapped.numpy(), atol=1e-6)
  assert eager.shape == (2, 24, 24, channels)
  _check_range(eager)
  np.testing.assert_array_equal(augment.train_views(image, _SEED, 2, **kw), eager)
  other = augment.train_views(image, _OTHER_SEED, 2, **kw)
  if kind == "identity":  # resize only: nothing random
    np.testing.assert_array_equal(eager[0], eager[1])
    np.testing.assert_array_equal(other, eager)
    expected = tf.image.resize(augment.to_float(image)[None], [24, 24], "bicubic")[0]
    np.testing.assert_allclose(eager[0], tf.clip_by_value(expected, 0, 1), atol=1e-6)
  else:
    assert not np.allclose(eager[0], eager[1])
    assert not np.allclose(other, eager)


def test_train_view_enum_type_and_unknown_type():
  class Kind:
    name = "RANDAUGMENT"

  image = _image(3, tf.uint8)
  np.testing.assert_array_equal(
      augment.train_view(image, _SEED, size=24, augmentation_type=Kind()),
      augment.train_view(image, _SEED, size=24, augmentation_type="randaugment"))
  with pytest.raises(ValueError, match="augmentation_type"):
    augment.train_view(image, _SEED, size=24, augmentation_type="mixup")


def test_grayscale_and_colour_ops():
  image = _image(3, tf.float32)
  gray = augment.train_view(image, _SEED, size=24, jitter_probability=0.0,
                            grayscale_probability=1.0)
  np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-6)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
  # colour_strength 0 switches jitter and grayscale off (the authors' magnitude 0).
  plain = augment.train_view(image, _SEED, size=24, color_strength=0.0,
                             grayscale_probability=1.0)
  crop_only = augment.random_flip(
      augment.random_resized_crop(image, augment.split_seed(_SEED, 8)[0], 24),
      augment.split_seed(_SEED, 8)[1])
  np.testing.assert_allclose(plain, crop_only, atol=1e-6)


# ------------------------------------------------------------------ colour jitter
@pytest.mark.parametrize("style", [dict(), dict(pytorch_style=True),
                                   dict(multiplicative_brightness=True),
                                   dict(random_order=False)])
def test_color_jitter_styles(style):
  image = _image(3, tf.float32)
  eager = augment.color_jitter(image, _SEED, 1.0, **style)
  mapped = _mapped(lambda im, s: augment.color_jitter(im, s, 1.0, **style), image, _SEED)
  np.testing.assert_allclose(eager.numpy(), mapped.numpy(), atol=1e-6)
  assert eager.shape == image.shape
  _check_range(eager)
  assert not np.allclose(eager, image)
  np.testing.assert_array_equal(augment.color_jitter(image, _SEED, 1.0, **style), eager)
  assert not np.allclose(augment.color_jitter(image, _OTHER_SEED, 1.0, **style), eager)


def _jitter_constant_gray(seeds, strength, **style):
  """On a constant gray image only brightness acts: returns the output values."""
  gray = tf.fill([4, 4, 3], 0.5)
  fn = tf.function(lambda s: augment.color_jitter(gray, s, strength, **style))
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
  image = _image(3, tf.float32, size=8)
  fn = tf.function(lambda s: augment.color_jitter(image, s, 0.5, pytorch_style=True))
  fixed = tf.function(lambda s: augment.color_jitter(image, s, 0.5, pytorch_style=True,
                                                     random_order=False))
  same = [np.allclose(fn(tf.constant([k, 2])), fixed(tf.constant([k, 2])), atol=1e-6)
          for k in range(12)]
  assert 0 < sum(same) < 12  # identity permutation sometimes (1/24), mostly not
  with pytest.raises(ValueError):
    augment.color_jitter(image, _SEED, 3.0)  # hue delta 0.6 > 0.5


# ------------------------------------------------------------------ blur
def test_random_blur_per_image_and_batched():
  images = tf.stack([_image(3, tf.float32, size=40, seed=k) for k in range(4)])
  seeds = augment.split_seed(_SEED, 4)
  single = augment.random_blur(images[0], seeds[0], 1.0)
  mapped = _mapped(lambda im, s: augment.random_blur(im, s, 1.0), images[0], seeds[0])
  np.testing.assert_allclose(single.numpy(), mapped.numpy(), atol=1e-6)
  assert single.shape == (40, 40, 3)
  _check_range(single)
  assert not np.allclose(single, images[0])
  assert float(tf.math.reduce_std(single)) < float(tf.math.reduce_std(images[0]))
  np.testing.assert_array_equal(augment.random_blur(images[0], seeds[0], 0.0), images[0])
  assert not np.allclose(augment.random_blur(images[0], seeds[1], 1.0), single)

  # Batched, one seed per image: equals the per-image blur; eager == map.
  batched = augment.batch_random_blur(images, seeds, 0.5)
  per_image = tf.stack([augment.random_blur(images[b], seeds[b], 0.5) for b in range(4)])
  np.testing.assert_allclose(batched, per_image, atol=1e-6)
  mapped = _mapped(lambda im, s: augment.batch_random_blur(im, s, 0.5), images, seeds)
  np.testing.assert_allclose(batched.numpy(), mapped.numpy(), atol=1e-6)
  # Batched, one seed for the batch: about `probability` of the images blurred.
  many = tf.tile(images, [16, 1, 1, 1])
  out = augment.batch_random_blur(many, _SEED, 0.5)
  mapped = _mapped(lambda im, s: augment.batch_random_blur(im, s, 0.5), many, _SEED)
  np.testing.assert_allclose(out.numpy(), mapped.numpy(), atol=1e-6)
  blurred = np.any(np.abs(out - many) > 1e-6, axis=(1, 2, 3))
  assert 16 <= blurred.sum() <= 48
  np.testing.assert_array_equal(augment.batch_random_blur(many, _SEED, 0.5), out)


def test_blur_keeps_a_constant_image_and_the_kernel_size():
  constant = tf.fill([2, 50, 50, 3], 0.37)
  out = augment.batch_random_blur(constant, _SEED, 1.0)
  np.testing.assert_allclose(out, constant, atol=1e-6)  # reflect padding, sum-1 kernel
  # Kernel: side // 10 taps made odd; an impulse spreads over radius (side // 10) // 2.
  impulse = np.zeros([1, 50, 50, 1], np.float32)
  impulse[0, 25, 25, 0] = 1.0
  out = augment.gaussian_blur(tf.constant(impulse), tf.constant([2.0]), 2)[0, :, :, 0]
  rows = np.nonzero(out.numpy().sum(axis=1) > 0)[0]
  np.testing.assert_array_equal(rows, np.arange(23, 28))
  np.testing.assert_allclose(out.numpy().sum(), 1.0, atol=1e-5)
  assert augment._blur_radius(224) == 11 and augment._blur_radius(32) == 1


def test_deferred_blur_equals_blur_in_the_view():
  image = _image(3, tf.uint8)
  kw = dict(size=24, color_strength=0.5)
  view_seeds = augment.split_seed(_SEED, 3)
  in_view = augment.train_views(image, _SEED, 3, blur_probability=0.7, **kw)
  views = augment.train_views(image, _SEED, 3, **kw)
  deferred = augment.batch_random_blur(views, augment.view_blur_seed(view_seeds), 0.7)
  np.testing.assert_allclose(deferred, in_view, atol=1e-6)


# ------------------------------------------------------------------ AutoAugment / RandAugment
def test_policy_ops_semantics():
  image = augment._to_uint8(_image(3, tf.float32, size=32))
  op = lambda name, level: augment._policy_op(name, level, _SEED, translate_const=100.0,
                                              cutout_const=40.0)
  # Level-10 translation by 100 pixels leaves only the gray fill (constant fill).
  np.testing.assert_array_equal(op("TranslateX", 10.0)(image), np.full([32, 32, 3], 128))
  # Solarize level 10 = threshold 256: nothing solarized.
  np.testing.assert_array_equal(op("Solarize", 10.0)(image), image)
  np.testing.assert_array_equal(op("Invert", 3.0)(image), 255 - image.numpy())
  # Enhance ops at level 5 have factor 1.0: identity (official's mapping).
  np.testing.assert_array_equal(op("Color", 5.0)(image), image)
  rotated = op("Rotate", 10.0)(image).numpy()
  assert (rotated == 128).all(axis=-1).any()  # corners filled with gray
  cut = op("Cutout", 2.5)(image).numpy()  # a 20 x 20 gray square, clipped to the image
  assert 100 <= (cut == 128).all(axis=-1).sum() <= 400


def test_randaugment_and_autoaugment_functions():
  image = _image(3, tf.float32, size=32)
  quantized = tf.cast(augment._to_uint8(image), tf.float32) / 255.0
  np.testing.assert_allclose(augment.randaugment(image, _SEED, num_layers=0), quantized,
                             atol=1e-7)
  outs = [augment.randaugment(image, tf.constant([k, 1]), 2, 9.0).numpy() for k in range(8)]
  assert len({o.tobytes() for o in outs}) >= 6
  outs = [augment.autoaugment(image, tf.constant([k, 1])).numpy() for k in range(8)]
  assert len({o.tobytes() for o in outs}) >= 4
  with pytest.raises(ValueError, match="magnitude"):
    augment.randaugment(image, _SEED, 2, 30.0)
  gray = _image(1, tf.float32, size=32)
  assert augment.autoaugment(gray, _SEED).shape == (32, 32, 1)


# ------------------------------------------------------------------ normalisation
def test_normalize():
  image = _image(3, tf.uint8)
  out = augment.normalize(augment.to_float(image), augment.IMAGENET_MEAN,
                          augment.IMAGENET_STD)
  expected = (image.numpy() / 255.0 - np.array(augment.IMAGENET_MEAN)) / np.array(
      augment.IMAGENET_STD)
  np.testing.assert_allclose(out, expected, atol=1e-5)
  kw = dict(size=24, mean=augment.CIFAR10_MEAN, std=augment.CIFAR10_STD)
  eager = augment.train_views(image, _SEED, 2, **kw)
  mapped = _mapped(lambda im, s: augment.train_views(im, s, 2, **kw), image, _SEED)
  np.testing.assert_allclose(eager.numpy(), mapped.numpy(), atol=1e-6)
  plain = augment.train_views(image, _SEED, 2, size=24)
  np.testing.assert_allclose(
      eager, augment.normalize(plain, augment.CIFAR10_MEAN, augment.CIFAR10_STD), atol=1e-6)
  assert float(tf.reduce_min(eager)) < 0.0
  # The authors' whitening of [-1, 1] images gives the same values.
  x = image.numpy() / 127.5 - 1.0
  authors = (x - np.array([-0.0172, -0.0356, -0.107])) / np.array([0.4046, 0.3988, 0.402])
  ours = augment.normalize(augment.to_float(image), augment.CIFAR10_MEAN,
                           augment.CIFAR10_STD)
  np.testing.assert_allclose(ours, authors, atol=2e-3)
  gray = augment.eval_view(_image(1, tf.uint8), size=36, mean=0.5, std=0.25)
  np.testing.assert_allclose(gray, (_image(1, tf.float32) - 0.5) / 0.25, atol=1e-5)


# ------------------------------------------------------------------ evaluation crops
@pytest.mark.parametrize("method", ["resize_then_crop", "crop_then_resize"])
@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_eval_central_crops(method, dtype):
  image = _image(3, dtype, size=256)
  out = augment.eval_view(image, size=224, method=method, crop_padding=32)
  mapped = _mapped(lambda im: augment.eval_view(im, size=224, method=method), image)
  np.testing.assert_allclose(out.numpy(), mapped.numpy(), atol=1e-6)
  assert out.shape == (224, 224, 3)
  _check_range(out)
  # The central 224/256 of a 256 x 256 image, untouched.
  np.testing.assert_allclose(out, augment.to_float(image)[16:240, 16:240], atol=1e-6)


@pytest.mark.parametrize("method", ["resize_then_crop", "crop_then_resize"])
def test_eval_crops_of_unknown_shape(method):
  # Rectangular images with shapes known only at run time (e.g. decoded JPEGs).
  fn = tf.function(lambda im: augment.eval_view(im, size=16, method=method, crop_padding=4),
                   input_signature=[tf.TensorSpec([None, None, 1], tf.uint8)])
  ramp = np.tile(np.arange(30, dtype=np.uint8)[None, :, None] * 8, [20, 1, 1])
  out = fn(tf.constant(ramp)).numpy()
  assert out.shape == (16, 16, 1)
  # Central crop of a horizontal ramp: symmetric around the middle value.
  row = out[8, :, 0]
  assert np.all(np.diff(row) > 0)
  np.testing.assert_allclose(row.mean(), ramp[0, :, 0].mean() / 255.0, atol=0.02)
  assert row[0] > 0.1 and row[-1] < 0.85  # the sides are cropped off


def test_eval_view_identity_default():
  image = _image(1, tf.uint8, size=28)
  np.testing.assert_allclose(augment.eval_view(image, size=28), image.numpy() / 255.0,
                             atol=1e-7)
  np.testing.assert_allclose(augment.eval_view(image, size=28, method="identity"),
                             augment.eval_view(image, size=28))
  with pytest.raises(ValueError, match="crop method"):
    augment.eval_view(image, size=28, method="center")


def test_view_and_eval_kwargs_from_config():
  from supcon_tf.config import AugmentationType, DataConfig, EvalCropMethod
  cfg = DataConfig(image_size=24, crop_area_range=(0.2, 1.0), augmentation_magnitude=1.0,
                   augmentation_type=AugmentationType.STACKED_RANDAUGMENT,
                   blur_probability=0.5, use_pytorch_color_jitter=True,
                   randaugment_layers=3, randaugment_magnitude=7.0,
                   eval_crop_method=EvalCropMethod.RESIZE_THEN_CROP, crop_padding=8)
  kw = augment.view_kwargs(cfg)
  assert kw["augmentation_type"] == "stacked_randaugment" and kw["color_strength"] == 1.0
  assert kw["blur_probability"] == 0.5 and kw["pytorch_color_jitter"]
  assert kw["randaugment_layers"] == 3 and kw["randaugment_magnitude"] == 7.0
  assert augment.train_view(_image(3, tf.uint8), _SEED, **kw).shape == (24, 24, 3)
  ekw = augment.eval_kwargs(cfg)
  assert ekw == dict(size=24, method="resize_then_crop", crop_padding=8)
  assert augment.eval_view(_image(3, tf.uint8), **ekw).shape == (24, 24, 3)


# ------------------------------------------------------------------ other processes
_CHILD = r"""
import sys
import numpy as np
import tensorflow as tf
from supcon_tf.data import augment
image = tf.constant(np.random.default_rng(1).integers(0, 256, (36, 36, 3)).astype(np.uint8))
seed = tf.constant([3, 4], tf.int64)
out = {kind: augment.train_views(image, seed, 2, size=24, augmentation_type=kind,
                                 blur_probability=0.5).numpy()
       for kind in ("simclr", "randaugment", "autoaugment", "stacked_randaugment")}
out["pytorch"] = augment.color_jitter(augment.to_float(image), seed, 1.0,
                                      pytorch_style=True).numpy()
out["blur"] = augment.batch_random_blur(augment.to_float(image)[None], seed, 1.0).numpy()
np.savez(sys.argv[1], **out)
"""


def test_reproducible_across_processes():
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "views.npz")
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path], env=env, cwd=_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    image = _image(3, tf.uint8)
    ours = {kind: augment.train_views(image, _SEED, 2, size=24, augmentation_type=kind,
                                      blur_probability=0.5).numpy()
            for kind in ("simclr", "randaugment", "autoaugment", "stacked_randaugment")}
    ours["pytorch"] = augment.color_jitter(augment.to_float(image), _SEED, 1.0,
                                           pytorch_style=True).numpy()
    ours["blur"] = augment.batch_random_blur(augment.to_float(image)[None], _SEED,
                                             1.0).numpy()
    output, _ = child.communicate(timeout=120)
    assert child.returncode == 0, output.decode()[-2000:]
    theirs = np.load(path)
    assert sorted(theirs.files) == sorted(ours)
    for key, value in ours.items():
      np.testing.assert_allclose(theirs[key], value, atol=1e-6, err_msg=key)
