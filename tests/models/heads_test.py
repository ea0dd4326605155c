"""Tests of supcon_tf.models.heads: projection head, linear classifier."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf.models import heads
from tests.models import common


def test_projection_head_structure_and_normalisation():
  # Seeded: about 1 initialisation in 100 leaves every ReLU of a sample at 0, so
  # z = 0 (norm 0). In the single models_test.py an earlier test's seed hid that.
  keras.utils.set_random_seed(0)
  head = heads.ProjectionHead((16, 8, 4), use_batch_norm=True)
  z = head(common.images(batch=3, size=1, channels=10, scale=50.0)[:, 0, 0, :],
           training=True)
  assert z.dtype == tf.float32 and z.shape == (3, 4)
  np.testing.assert_allclose(tf.norm(z, axis=-1).numpy(), 1.0, atol=1e-5)
  assert [d.units for d in head.dense_layers] == [16, 8, 4]
  # Hidden layers: no bias (BN follows); the last: no bias either (the authors').
  assert [d.use_bias for d in head.dense_layers] == [False, False, False]
  assert head.dense_layers[-1].dtype == "float32"
  assert len(head.batch_norms) == 2
  with pytest.raises(ValueError):
    heads.ProjectionHead(())


def test_projection_head_has_no_activation_after_last_layer():
  head = heads.ProjectionHead((6, 3))
  x = tf.ones([2, 5])
  z = head(x)
  hidden = tf.nn.relu(head.dense_layers[0](x))
  expected = tf.math.l2_normalize(head.dense_layers[1](hidden), axis=-1)
  np.testing.assert_allclose(z.numpy(), expected.numpy(), atol=1e-6)
  # Generic random kernels give some negative outputs: no ReLU on the last.
  big = heads.ProjectionHead((32, 64))
  assert np.any(big(common.images(batch=4, size=1, channels=8)[:, 0, 0, :]) < 0)


def test_heads_round_trip_through_config():
  head = heads.ProjectionHead((8, 4), use_batch_norm=True)
  assert heads.ProjectionHead.from_config(head.get_config()).layer_sizes == (8, 4)
  classifier = heads.LinearClassifier(3, stop_gradient=False)
  assert not heads.LinearClassifier.from_config(
      classifier.get_config()).stop_gradient


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
