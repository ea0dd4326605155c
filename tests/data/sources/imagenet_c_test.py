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


def test_corrupted_source_streams_the_validation_split_under_mock_data(tmp_path,
                                                                       monkeypatch):
  """--mode=eval_robustness on ImageNet: each corruption and severity is a streamed
  source of imagenet2012_corrupted/<name>_<severity>, evaluated through the same
  pipeline as the clean split."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from supcon_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from supcon_tf.data.augment import views  # pylint: disable=g-import-not-at-top
  from supcon_tf.train import robustness  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds_stream, "tfds_prepared", lambda name, data_dir: True)
  cfg = config_lib.Config()
  cfg = config_lib.Config(
      data=config_lib.DataConfig(dataset="imagenet2012", data_dir=str(tmp_path),
                                 image_size=32),
      runtime=config_lib.RuntimeConfig(corruptions="fog,contrast", model_dir="/x"))
  assert robustness.uses_imagenet_c(cfg)
  assert robustness.chosen_corruptions(cfg, 3, True) == ("fog", "contrast")
  default = robustness.chosen_corruptions(
      config_lib.Config(data=cfg.data), 3, True)
  assert default == imagenet_c.IMAGENET_C_BENCHMARK
  with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
    found = list(robustness.corrupted_sources(cfg, None, ("fog",)))
    assert [(n, s) for n, s, _ in found] == [("fog", s) for s in range(1, 6)]
    source = found[2][2]
    assert source.name == "imagenet2012_corrupted/fog_3" and source.num_eval == 6
    view = views.EvalViewSpec.from_config(cfg.data)
    batches = list(pipeline.eval_dataset(source, 4, view,
                                         pipeline.InputOptions.from_config(cfg.data),
                                         None))
  images = [b["image"].shape for b in batches]
  assert images[0][1:] == (32, 32, 3) and sum(int(b["valid"].numpy().sum())
                                              for b in batches) == 6


def test_generated_corruptions_default_to_the_benchmark_families():
  from supcon_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from supcon_tf.train import robustness  # pylint: disable=g-import-not-at-top
  cfg = config_lib.Config()
  gray = robustness.chosen_corruptions(cfg, 1, False)
  assert len(gray) == 12 and "saturate" not in gray and "speckle_noise" not in gray
  assert set(gray) <= set(imagenet_c.IMAGENET_C_BENCHMARK)
  assert robustness.chosen_corruptions(cfg, 3, False) == gray
