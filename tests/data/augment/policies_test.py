"""AutoAugment / RandAugment: official's ops at their levels, the stateless
selection."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.data.augment import policies
from tests.data.helpers import SEED, image


def test_policy_ops_semantics():
  picture = policies.to_uint8(image(3, tf.float32, size=32))
  op = lambda name, level: policies.policy_op(name, level, SEED, translate_const=100.0,
                                              cutout_const=40.0)
  # Level-10 translation by 100 pixels leaves only the gray fill (constant fill).
  np.testing.assert_array_equal(op("TranslateX", 10.0)(picture), np.full([32, 32, 3], 128))
  # Solarize level 10 = threshold 256: nothing solarized.
  np.testing.assert_array_equal(op("Solarize", 10.0)(picture), picture)
  np.testing.assert_array_equal(op("Invert", 3.0)(picture), 255 - picture.numpy())
  # Enhance ops at level 5 have factor 1.0: identity (official's mapping).
  np.testing.assert_array_equal(op("Color", 5.0)(picture), picture)
  rotated = op("Rotate", 10.0)(picture).numpy()
  assert (rotated == 128).all(axis=-1).any()  # corners filled with gray
  cut = op("Cutout", 2.5)(picture).numpy()  # a 20 x 20 gray square, clipped to the image
  assert 100 <= (cut == 128).all(axis=-1).sum() <= 400


def test_randaugment_and_autoaugment_functions():
  rgb = image(3, tf.float32, size=32)
  quantized = tf.cast(policies.to_uint8(rgb), tf.float32) / 255.0
  np.testing.assert_allclose(policies.randaugment(rgb, SEED, 0, 10.0), quantized,
                             atol=1e-7)
  outs = [policies.randaugment(rgb, tf.constant([k, 1]), 2, 9.0).numpy() for k in range(8)]
  assert len({o.tobytes() for o in outs}) >= 6
  outs = [policies.autoaugment(rgb, tf.constant([k, 1])).numpy() for k in range(8)]
  assert len({o.tobytes() for o in outs}) >= 4
  with pytest.raises(ValueError, match="magnitude"):
    policies.randaugment(rgb, SEED, 2, 30.0)
  gray = image(1, tf.float32, size=32)
  assert policies.autoaugment(gray, SEED).shape == (32, 32, 1)
