"""The package's vocabularies: every enum, and the constant tables that go with
them (ResNet layouts, normalisation statistics). No TensorFlow; `config.py` and
everything below it read them from here.
"""

import enum

# The dataset name of a --image_dir source.
IMAGE_FOLDER = "image_folder"


class Mode(enum.Enum):
  TRAIN = "train"
  EVAL = "eval"
  TRAIN_THEN_EVAL = "train_then_eval"
  EXPORT = "export"
  DRY_RUN = "dry_run"
  EVAL_ROBUSTNESS = "eval_robustness"  # top-1 on corrupted copies of the test split


# Modes that read a trained run in --model_dir (its config.json) and train nothing.
READER_MODES = frozenset({Mode.EVAL, Mode.EXPORT, Mode.EVAL_ROBUSTNESS})


class AugmentationType(enum.Enum):
  SIMCLR = "simclr"  # crop, flip, colour jitter, grayscale (+ blur)
  AUTOAUGMENT = "autoaugment"  # crop, flip, AutoAugment (ImageNet policy)
  RANDAUGMENT = "randaugment"  # crop, flip, RandAugment
  STACKED_RANDAUGMENT = "stacked_randaugment"  # SimCLR ops and RandAugment (R200)
  IDENTITY = "identity"  # resize only


class EvalCropMethod(enum.Enum):
  IDENTITY = "identity"
  RESIZE_THEN_CROP = "resize_then_crop"
  CROP_THEN_RESIZE = "crop_then_resize"


class InputNormalization(enum.Enum):
  """Per-channel whitening applied inside the model (so exports keep [0, 1] inputs)."""
  NONE = "none"
  IMAGENET = "imagenet"  # IMAGENET_MEAN, IMAGENET_STD below
  CIFAR10 = "cifar10"  # the authors' apply_whitening for CIFAR


class Precision(enum.Enum):
  FLOAT32 = "float32"
  BFLOAT16 = "bfloat16"  # mixed_bfloat16: bfloat16 compute, float32 variables
  FLOAT16 = "float16"  # mixed_float16 with dynamic loss scaling


class StrategyType(enum.Enum):
  DEFAULT = "default"
  MIRRORED = "mirrored"
  TPU = "tpu"
  MULTI_WORKER = "multi_worker"


class Optimizer(enum.Enum):
  MOMENTUM = "momentum"
  NESTEROV = "nesterov"
  LARS = "lars"
  RMSPROP = "rmsprop"
  ADAM = "adam"


class LearningRateDecay(enum.Enum):
  COSINE = "cosine"
  EXPONENTIAL = "exponential"
  PIECEWISE = "piecewise"  # step decay at boundary epochs
  CONSTANT = "constant"
  # The authors' release names (aliases: same members).
  PIECEWISE_LINEAR = "piecewise"
  NONE = "constant"


class ResNetArchitecture(enum.Enum):
  RESNET_V1 = "resnet_v1"
  RESNET_V2 = "resnet_v2"  # pre-activation


class ContrastMode(enum.Enum):
  ALL_VIEWS = "all_views"
  ONE_VIEW = "one_view"


class SummationLocation(enum.Enum):
  OUTSIDE = "outside"
  INSIDE = "inside"


class FrozenBatchNorm(enum.Enum):
  """What the encoder's BatchNorm does in a stage with update_encoder_batch_norm=false."""
  INFERENCE = "inference"  # normalise with the moving statistics (inference mode)
  BATCH_STATISTICS = "batch_statistics"  # the authors': batch statistics, moving
  # averages left untouched


class DenominatorMode(enum.Enum):
  ALL = "all"
  ONE_POSITIVE = "one_positive"
  ONLY_NEGATIVES = "only_negatives"


# Augmentations whose colour part may include the Gaussian blur (--blur_probability).
BLUR_TYPES = (AugmentationType.SIMCLR, AugmentationType.STACKED_RANDAUGMENT)

# Block type ("basic" or "bottleneck") and blocks per stage of each ResNet depth.
RESNET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
RESNET_DEPTHS = tuple(sorted(RESNET_LAYOUTS))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The authors' CIFAR-10 whitening (mean -0.0172, -0.0356, -0.107 and std 0.4046,
# 0.3988, 0.402 of [-1, 1] images) on the [0, 1] scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# (mean, std) per channel of each `InputNormalization`, on [0, 1] images.
INPUT_NORMALIZATIONS = {
    InputNormalization.NONE: (None, None),
    InputNormalization.IMAGENET: (IMAGENET_MEAN, IMAGENET_STD),
    InputNormalization.CIFAR10: (CIFAR10_MEAN, CIFAR10_STD),
}
