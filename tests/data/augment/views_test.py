"""Training and evaluation views: every type eager == Dataset.map, seeding,
ranges, semantics, encoded images, the specs read from the config."""

import dataclasses
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import enums
from supcon_tf.config import AugmentationType, DataConfig, EvalCropMethod
from supcon_tf.data.augment import ops, views
from tests import testing
from tests.data.helpers import (OTHER_SEED, SEED, check_range, eval_spec, image, mapped,
                                smooth_image, view_spec)


# ------------------------------------------------------------------ encoded images
@pytest.mark.parametrize("kind", ["simclr", "autoaugment", "stacked_randaugment",
                                  "identity"])
def test_encoded_views_equal_the_views_of_the_decoded_image(kind):
  """PNG: exactly train_view of the decoded image (same crop window from the same
  seed); eager == Dataset.map; views differ from each other."""
  picture = smooth_image(30, 44)
  encoded = tf.io.encode_png(picture)
  spec = view_spec(size=24, augmentation_type=AugmentationType(kind),
                   area_range=(0.2, 1.0), color_strength=1.0, blur_probability=0.5)
  eager = views.train_views_encoded(encoded, SEED, 3, spec, 3)
  decoded = views.train_views(ops.decode_image(encoded, 3), SEED, 3, spec)
  np.testing.assert_array_equal(eager.numpy(), decoded.numpy())
  in_map = mapped(lambda e, s: views.train_views_encoded(e, s, 3, spec, 3), encoded, SEED)
  np.testing.assert_allclose(eager.numpy(), in_map.numpy(), atol=1e-6)
  assert eager.shape == (3, 24, 24, 3)
  check_range(eager)
  if kind != "identity":
    assert not np.allclose(eager[0], eager[1])


def test_encoded_grayscale_eval_and_bad_arguments():
  gray = tf.io.encode_png(smooth_image(20, 20)[..., :1])
  view = views.train_view_encoded(gray, SEED, view_spec(size=16), 1)
  assert view.shape == (16, 16, 1)
  espec = eval_spec(size=16, method=EvalCropMethod.RESIZE_THEN_CROP, crop_padding=4)
  evaluated = views.eval_view_encoded(gray, espec, 1)
  np.testing.assert_allclose(evaluated, views.eval_view(ops.decode_image(gray, 1), espec))
  with pytest.raises(TypeError, match="unexpected keyword argument"):
    view_spec(size=16, sharpness=2)
  with pytest.raises(tf.errors.InvalidArgumentError):
    views.train_view_encoded(tf.constant(b"not an image"), SEED, view_spec(size=16), 3)


# ------------------------------------------------------------------ train views
_KW = dict(size=24, area_range=(0.2, 1.0), aspect_range=(0.75, 4 / 3), flip=True,
           color_strength=0.5, grayscale_probability=0.2)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_train_view_eager_equals_dataset_map(channels, dtype):
  rng = np.random.default_rng(1)
  picture = rng.integers(0, 256, (28, 28, channels)).astype(np.uint8)
  picture = (tf.constant(picture) if dtype == tf.uint8
             else tf.constant(picture / 255.0, tf.float32))
  seed = tf.constant([3, 4], tf.int64)
  spec = view_spec(**_KW)
  eager = views.train_views(picture, seed, 3, spec)
  in_map = next(iter(tf.data.Dataset.from_tensors((picture, seed)).map(
      lambda im, s: views.train_views(im, s, 3, spec))))
  np.testing.assert_allclose(eager.numpy(), in_map.numpy(), atol=1e-6)
  assert eager.shape == (3, 24, 24, channels) and eager.dtype == tf.float32
  assert float(tf.reduce_min(eager)) >= 0.0 and float(tf.reduce_max(eager)) <= 1.0
  # Views differ from each other; the same seed reproduces, another seed differs.
  assert not np.allclose(eager[0], eager[1])
  np.testing.assert_array_equal(views.train_views(picture, seed, 3, spec), eager)
  other = views.train_views(picture, tf.constant([3, 5], tf.int64), 3, spec)
  assert not np.allclose(other, eager)


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
  picture = image(channels, dtype)
  spec = view_spec(size=24, augmentation_type=AugmentationType(kind),
                   area_range=(0.2, 1.0), **extra)
  eager = views.train_views(picture, SEED, 2, spec)
  in_map = mapped(lambda im, s: views.train_views(im, s, 2, spec), picture, SEED)
  np.testing.assert_allclose(eager.numpy(), in_map.numpy(), atol=1e-6)
  assert eager.shape == (2, 24, 24, channels)
  check_range(eager)
  np.testing.assert_array_equal(views.train_views(picture, SEED, 2, spec), eager)
  other = views.train_views(picture, OTHER_SEED, 2, spec)
  if kind == "identity":  # resize only: nothing random
    np.testing.assert_array_equal(eager[0], eager[1])
    np.testing.assert_array_equal(other, eager)
    expected = tf.image.resize(ops.to_float(picture)[None], [24, 24], "bicubic")[0]
    np.testing.assert_allclose(eager[0], tf.clip_by_value(expected, 0, 1), atol=1e-6)
  else:
    assert not np.allclose(eager[0], eager[1])
    assert not np.allclose(other, eager)


def test_train_view_enum_type_and_unknown_type():
  picture = image(3, tf.uint8)
  by_name = view_spec(size=24, augmentation_type=AugmentationType["RANDAUGMENT"])
  from_config = views.ViewSpec.from_config(DataConfig(
      image_size=24, augmentation_type=AugmentationType("randaugment")))
  assert from_config == by_name
  np.testing.assert_array_equal(views.train_view(picture, SEED, by_name),
                                views.train_view(picture, SEED, from_config))
  with pytest.raises(ValueError, match="augmentation_type"):
    view_spec(size=24, augmentation_type="mixup")
  with pytest.raises(ValueError, match="augmentation_type"):
    view_spec(size=24, augmentation_type="randaugment")  # names are not enums


def test_grayscale_and_colour_ops():
  rgb = image(3, tf.float32)
  gray = views.train_view(rgb, SEED, view_spec(size=24, jitter_probability=0.0,
                                               grayscale_probability=1.0))
  np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-6)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
  # colour_strength 0 switches jitter and grayscale off (the authors' magnitude 0).
  plain = views.train_view(rgb, SEED, view_spec(size=24, color_strength=0.0,
                                                grayscale_probability=1.0))
  crop_only = ops.random_flip(
      ops.random_resized_crop(rgb, ops.split_seed(SEED, 8)[0], 24, (0.08, 1.0),
                              (0.75, 4 / 3)),
      ops.split_seed(SEED, 8)[1])
  np.testing.assert_allclose(plain, crop_only, atol=1e-6)


def test_color_jitter_and_grayscale_rgb_only():
  rng = np.random.default_rng(2)
  rgb = tf.constant(rng.random((16, 16, 3)), tf.float32)
  gray = ops.to_grayscale(rgb).numpy()
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])
  jittered = ops.color_jitter(rgb, tf.constant([0, 1]), 1.0)
  assert jittered.shape == rgb.shape and not np.allclose(jittered, rgb)
  # Grayscale inputs get no colour ops: with no crop/flip effect, output == input.
  one = tf.constant(rng.random((16, 16, 1)), tf.float32)
  out = views.train_view(one, tf.constant([0, 9]), view_spec(
      size=16, area_range=(1.0, 1.0), aspect_range=(1.0, 1.0), flip=False,
      color_strength=1.0, grayscale_probability=1.0))
  np.testing.assert_allclose(out, one, atol=1e-5)


def test_deferred_blur_equals_blur_in_the_view():
  picture = image(3, tf.uint8)
  view_seeds = ops.split_seed(SEED, 3)
  blurred_spec = view_spec(size=24, color_strength=0.5, blur_probability=0.7)
  in_view = views.train_views(picture, SEED, 3, blurred_spec)
  deferred_spec = dataclasses.replace(blurred_spec, defer_blur=True)
  unblurred = views.train_views(picture, SEED, 3, deferred_spec)
  np.testing.assert_array_equal(
      unblurred, views.train_views(picture, SEED, 3, view_spec(size=24, color_strength=0.5)))
  deferred = ops.batch_random_blur(unblurred, views.view_blur_seed(view_seeds),
                                   deferred_spec.blur_probability)
  np.testing.assert_allclose(deferred, in_view, atol=1e-6)
  np.testing.assert_array_equal(views.train_blur_seeds(SEED, 3),
                                views.view_blur_seed(view_seeds))


# ------------------------------------------------------------------ specs from the config
def test_view_and_eval_specs_from_config():
  cfg = DataConfig(image_size=24, crop_area_range=(0.2, 1.0), augmentation_magnitude=1.0,
                   augmentation_type=AugmentationType.STACKED_RANDAUGMENT,
                   blur_probability=0.5, use_pytorch_color_jitter=True,
                   randaugment_layers=3, randaugment_magnitude=7.0, flip=False,
                   grayscale_probability=0.3, crop_aspect_range=(0.5, 2.0),
                   eval_crop_method=EvalCropMethod.RESIZE_THEN_CROP, crop_padding=8)
  spec = views.ViewSpec.from_config(cfg)
  assert spec.augmentation_type is AugmentationType.STACKED_RANDAUGMENT
  assert spec.size == 24 and spec.color_strength == 1.0
  assert spec.area_range == (0.2, 1.0) and spec.aspect_range == (0.5, 2.0)
  assert spec.blur_probability == 0.5 and spec.pytorch_color_jitter and not spec.flip
  assert spec.randaugment_layers == 3 and spec.randaugment_magnitude == 7.0
  assert spec.grayscale_probability == 0.3 and not spec.defer_blur
  assert spec.jitter_probability == 0.8 and not spec.multiplicative_brightness
  assert views.train_view(image(3, tf.uint8), SEED, spec).shape == (24, 24, 3)
  espec = views.EvalViewSpec.from_config(cfg)
  assert espec == views.EvalViewSpec(size=24, method=EvalCropMethod.RESIZE_THEN_CROP,
                                     crop_padding=8)
  assert views.eval_view(image(3, tf.uint8), espec).shape == (24, 24, 3)
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.size = 32


@pytest.mark.parametrize("defer, probability, kind, deferred", [
    (True, 0.5, AugmentationType.SIMCLR, True),
    (True, 0.5, AugmentationType.STACKED_RANDAUGMENT, True),
    (True, 0.0, AugmentationType.SIMCLR, False),  # nothing to blur
    (True, 0.5, AugmentationType.RANDAUGMENT, False),  # no blur in the recipe
    (True, 0.5, AugmentationType.AUTOAUGMENT, False),
    (False, 0.5, AugmentationType.SIMCLR, False),
])
def test_view_spec_resolves_defer_blur_once(defer, probability, kind, deferred):
  spec = views.ViewSpec.from_config(DataConfig(defer_blur=defer,
                                               blur_probability=probability,
                                               augmentation_type=kind))
  assert spec.defer_blur is deferred
  assert spec.blur_probability == probability
  assert deferred == (defer and probability > 0 and kind in enums.BLUR_TYPES)


def test_view_spec_refuses_a_deferred_blur_with_nothing_to_blur():
  with pytest.raises(ValueError, match="defer_blur needs"):
    view_spec(defer_blur=True, blur_probability=0.0)
  with pytest.raises(ValueError, match="defer_blur needs"):
    view_spec(defer_blur=True, blur_probability=0.5,
              augmentation_type=AugmentationType.AUTOAUGMENT)


# ------------------------------------------------------------------ evaluation views
@pytest.mark.parametrize("method", ["resize_then_crop", "crop_then_resize"])
@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_eval_central_crops(method, dtype):
  picture = image(3, dtype, size=256)
  out = views.eval_view(picture, eval_spec(size=224, method=EvalCropMethod(method),
                                           crop_padding=32))
  default_padding = eval_spec(size=224, method=EvalCropMethod(method))
  in_map = mapped(lambda im: views.eval_view(im, default_padding), picture)
  np.testing.assert_allclose(out.numpy(), in_map.numpy(), atol=1e-6)
  assert out.shape == (224, 224, 3)
  check_range(out)
  # The central 224/256 of a 256 x 256 image, untouched.
  np.testing.assert_allclose(out, ops.to_float(picture)[16:240, 16:240], atol=1e-6)


@pytest.mark.parametrize("method", ["resize_then_crop", "crop_then_resize"])
def test_eval_crops_of_unknown_shape(method):
  # Rectangular images with shapes known only at run time (e.g. decoded JPEGs).
  spec = eval_spec(size=16, method=EvalCropMethod(method), crop_padding=4)
  fn = tf.function(lambda im: views.eval_view(im, spec),
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
  picture = image(1, tf.uint8, size=28)
  np.testing.assert_allclose(views.eval_view(picture, eval_spec(size=28)),
                             picture.numpy() / 255.0, atol=1e-7)
  np.testing.assert_allclose(
      views.eval_view(picture, eval_spec(size=28, method=EvalCropMethod.IDENTITY)),
      views.eval_view(picture, eval_spec(size=28)))
  with pytest.raises(ValueError, match="crop method"):
    eval_spec(size=28, method="center")


def test_eval_view_identity_and_resize():
  picture = tf.constant(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1) % 251)
  np.testing.assert_allclose(views.eval_view(picture, eval_spec(size=28)),
                             picture.numpy() / 255.0, atol=1e-7)
  assert views.eval_view(picture, eval_spec(size=32)).shape == (32, 32, 1)


# ------------------------------------------------------------------ other processes
_CHILD = r"""
import sys
import numpy as np
import tensorflow as tf
from supcon_tf.config import AugmentationType, DataConfig
from supcon_tf.data.augment import ops, views
image = tf.constant(np.random.default_rng(1).integers(0, 256, (36, 36, 3)).astype(np.uint8))
seed = tf.constant([3, 4], tf.int64)
def spec(kind):
  return views.ViewSpec.from_config(DataConfig(
      image_size=24, augmentation_type=AugmentationType(kind), blur_probability=0.5))
out = {kind: views.train_views(image, seed, 2, spec(kind)).numpy()
       for kind in ("simclr", "randaugment", "autoaugment", "stacked_randaugment")}
out["pytorch"] = ops.color_jitter(ops.to_float(image), seed, 1.0,
                                  pytorch_style=True).numpy()
out["blur"] = ops.batch_random_blur(ops.to_float(image)[None], seed, 1.0).numpy()
np.savez(sys.argv[1], **out)
"""


def test_reproducible_across_processes():
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "views.npz")
    env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path], env=env,
                             cwd=testing.REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    picture = image(3, tf.uint8)
    ours = {kind: views.train_views(picture, SEED, 2, view_spec(
                size=24, augmentation_type=AugmentationType(kind),
                blur_probability=0.5)).numpy()
            for kind in ("simclr", "randaugment", "autoaugment", "stacked_randaugment")}
    ours["pytorch"] = ops.color_jitter(ops.to_float(picture), SEED, 1.0,
                                       pytorch_style=True).numpy()
    ours["blur"] = ops.batch_random_blur(ops.to_float(picture)[None], SEED, 1.0).numpy()
    output, _ = child.communicate(timeout=120)
    assert child.returncode == 0, output.decode()[-2000:]
    theirs = np.load(path)
    assert sorted(theirs.files) == sorted(ours)
    for key, value in ours.items():
      np.testing.assert_allclose(theirs[key], value, atol=1e-6, err_msg=key)
