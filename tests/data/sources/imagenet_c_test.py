"""ImageNet-C from TFDS: the builder's corruptions, the loader under
tfds.testing.mock_data, and its refusals."""

import pytest
import tensorflow as tf

from supcon_tf.config import ConfigError
from supcon_tf.data.sources import imagenet_c
from supcon_tf.data.sources import tfds_stream


def test_corruptions_are_the_tfds_builders():
  from tensorflow_datasets.datasets.imagenet2012_corrupted import (  # pylint: disable=g-import-not-at-top
      imagenet2012_corrupted_dataset_builder as builder)
  assert imagenet_c.IMAGENET_C_CORRUPTIONS == tuple(
      builder.BENCHMARK_CORRUPTIONS + builder.EXTRA_CORRUPTIONS)
  assert imagenet_c.IMAGENET_C_BENCHMARK == tuple(builder.BENCHMARK_CORRUPTIONS)
  assert imagenet_c.tfds_config("fog", 3) == "imagenet2012_corrupted/fog_3"


def test_load_corrupted_under_mock_data(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # No network here: mock_data serves generated examples through the real TFDS
  # API; `is_prepared` looks at files, so it is patched to say "prepared".
  asked = []
  monkeypatch.setattr(tfds_stream, "tfds_prepared",
                      lambda name, data_dir: asked.append((name, data_dir)) or True)
  with tfds.testing.mock_data(num_examples=5, data_dir=str(tmp_path)):
    dataset = imagenet_c.load_corrupted(str(tmp_path), "gaussian_noise", 3)
    examples = list(dataset.as_numpy_iterator())
  assert asked == [("imagenet2012_corrupted/gaussian_noise_3", str(tmp_path))]
  assert dataset.element_spec == (tf.TensorSpec([224, 224, 3], tf.uint8),
                                  tf.TensorSpec([], tf.int32))
  assert len(examples) == 5
  assert all(image.shape == (224, 224, 3) and 0 <= label < 1000
             for image, label in examples)


def test_refusals(tmp_path):
  with pytest.raises(ConfigError, match="ImageNet-C fog severity 2: TFDS "
                                        "imagenet2012_corrupted/fog_2 is not prepared "
                                        "under --data_dir="):
    imagenet_c.load_corrupted(str(tmp_path), "fog", 2)
  with pytest.raises(ConfigError, match="not prepared under --data_dir=''"):
    imagenet_c.load_corrupted("", "fog", 2)
  with pytest.raises(ValueError, match="unknown ImageNet-C corruption 'rain'"):
    imagenet_c.load_corrupted(str(tmp_path), "rain", 2)
  for severity in (0, 6, True):
    with pytest.raises(ValueError, match="severity must be one of 1..5"):
      imagenet_c.load_corrupted(str(tmp_path), "fog", severity)
