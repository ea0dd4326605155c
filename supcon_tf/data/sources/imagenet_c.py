"""ImageNet-C read from TFDS: the corrupted ImageNet validation images.

For ImageNet the corrupted images are not generated here (`data/corruptions.py`
does that for small images) but read from TFDS `imagenet2012_corrupted`, which
applies Hendrycks & Dietterich's corruptions (ICLR 2019) to the 50,000
imagenet2012 validation images, centre-cropped to 224x224. It has one config per
corruption and severity, `imagenet2012_corrupted/<corruption>_<severity>`, each
with the split `validation` and the features image (224x224x3, JPEG), label
(1,000 classes) and file_name. Preparing a config needs the ImageNet manual
download (like imagenet2012) and TFDS's corruption code's own packages (OpenCV,
scikit-image, ImageMagick); this module only reads configs already prepared
under a data_dir.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig
from supcon_tf.data.sources import tfds_stream

TFDS_NAME = "imagenet2012_corrupted"
SPLIT = "validation"
SEVERITIES = (1, 2, 3, 4, 5)
# The TFDS builder's corruptions (4.9.9: BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS),
# in its order.
IMAGENET_C_CORRUPTIONS: Tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "gaussian_blur", "saturate", "spatter", "speckle_noise",
)
# The 15 of the benchmark, the paper's mCE (the other 4 are its extra corruptions).
IMAGENET_C_BENCHMARK: Tuple[str, ...] = IMAGENET_C_CORRUPTIONS[:15]


def tfds_config(name: str, severity: int) -> str:
  """The TFDS name of one corruption at one severity.

  Raises:
    ValueError: a corruption the builder does not have, or a severity outside 1..5.
  """
  if name not in IMAGENET_C_CORRUPTIONS:
    raise ValueError(f"unknown ImageNet-C corruption {name!r} (known: "
                     f"{', '.join(IMAGENET_C_CORRUPTIONS)})")
  if isinstance(severity, bool) or severity not in SEVERITIES:
    raise ValueError(f"ImageNet-C severity must be one of 1..5, got {severity!r}")
  return f"{TFDS_NAME}/{name}_{severity}"


def load_corrupted(data_dir: str, name: str, severity: int) -> tf.data.Dataset:
  """The corrupted validation images of one corruption and severity, in file order.

  Args:
    data_dir: where the TFDS config is prepared (local or gs://).
    name: one of IMAGENET_C_CORRUPTIONS.
    severity: 1..5.

  Returns:
    A dataset of (image uint8 [224, 224, 3], label int32) pairs.

  Raises:
    ValueError: an unknown corruption or a severity outside 1..5.
    ConfigError: the config is not prepared under `data_dir`, or has no image
      and label features.
  """
  config = tfds_config(name, severity)
  if not tfds_stream.tfds_prepared(config, data_dir):
    raise ConfigError(
        f"ImageNet-C {name} severity {severity}: TFDS {config} is not prepared "
        f"under --data_dir={data_dir!r} (prepare it with `tfds build {config} "
        "--data_dir=... --manual_dir=<the ImageNet tars>`)")
  builder = tfds_stream.tfds_builder(config, data_dir)
  dataset = builder.as_dataset(split=SPLIT, shuffle_files=False)
  return dataset.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def corrupted_source(data_config: DataConfig, name: str,
                     severity: int) -> tfds_stream.TfdsStreamSource:
  """The streamed source whose evaluation split is one corruption and severity.

  Args:
    data_config: the run's data configuration (data_dir, example limits).
    name: one of IMAGENET_C_CORRUPTIONS.
    severity: 1..5.

  Returns:
    A `TfdsStreamSource` of `imagenet2012_corrupted/<name>_<severity>`, both of
    whose splits are `validation` (only its evaluation split is read).

  Raises:
    ValueError, ConfigError: see `load_corrupted`.
  """
  config = tfds_config(name, severity)
  if not tfds_stream.tfds_prepared(config, data_config.data_dir):
    load_corrupted(data_config.data_dir, name, severity)  # raises its refusal
  d = dataclasses.replace(data_config, dataset=config, train_split=SPLIT,
                          eval_split=SPLIT, num_train_examples=0)
  return tfds_stream.TfdsStreamSource.create(d)
