"""The vocabularies and constant tables of `supcon_tf/enums.py`."""

import enum
import inspect
import subprocess
import sys

import pytest

from supcon_tf import config as config_lib
from supcon_tf import enums

# Every enum of the module, found by type (a new enum is checked without listing it).
ENUMS = [obj for _, obj in inspect.getmembers(enums, inspect.isclass)
         if issubclass(obj, enum.Enum) and obj.__module__ == enums.__name__]

# The only aliases (names sharing another member's value), documented in enums.py:
# the authors' release names of two decays.
ALIASES = {enums.LearningRateDecay: {"PIECEWISE_LINEAR": "PIECEWISE", "NONE": "CONSTANT"}}


def test_enums_are_found():
  assert {enums.Mode, enums.AugmentationType, enums.StrategyType, enums.Optimizer,
          enums.LearningRateDecay, enums.InputNormalization,
          enums.FrozenBatchNorm}.issubset(ENUMS)
  assert len(ENUMS) == 13


@pytest.mark.parametrize("enum_cls", ENUMS, ids=lambda e: e.__name__)
def test_values_are_unique_except_the_documented_aliases(enum_cls):
  aliases = {name: member.name for name, member in enum_cls.__members__.items()
             if member.name != name}
  assert aliases == ALIASES.get(enum_cls, {})
  values = [m.value for m in enum_cls]  # canonical members only
  assert len(values) == len(set(values))


@pytest.mark.parametrize("enum_cls", ENUMS, ids=lambda e: e.__name__)
def test_values_are_the_lower_case_names(enum_cls):
  # The flags parse member names (case-insensitively) and config.json holds the
  # values: one spelling for both.
  for member in enum_cls:
    assert isinstance(member.value, str) and member.value == member.name.lower()


def test_learning_rate_decay_aliases():
  assert enums.LearningRateDecay.PIECEWISE_LINEAR is enums.LearningRateDecay.PIECEWISE
  assert enums.LearningRateDecay.NONE is enums.LearningRateDecay.CONSTANT
  assert enums.LearningRateDecay("piecewise") is enums.LearningRateDecay.PIECEWISE
  assert enums.LearningRateDecay["NONE"] is enums.LearningRateDecay.CONSTANT
  assert len(list(enums.LearningRateDecay)) == 4


@pytest.mark.parametrize("depth", sorted(enums.RESNET_LAYOUTS))
def test_resnet_layouts_give_their_depth(depth):
  block, blocks = enums.RESNET_LAYOUTS[depth]
  assert len(blocks) == 4 and all(b >= 1 for b in blocks)
  convs_per_block = {"basic": 2, "bottleneck": 3}[block]
  # The stem convolution and the final dense layer, plus every block's convolutions.
  assert convs_per_block * sum(blocks) + 2 == depth


def test_resnet_depths_are_the_sorted_layouts():
  assert enums.RESNET_DEPTHS == tuple(sorted(enums.RESNET_LAYOUTS))
  assert enums.RESNET_DEPTHS == (18, 34, 50, 101, 152, 200)
  assert config_lib.RESNET_DEPTHS is enums.RESNET_DEPTHS


def test_every_input_normalization_has_statistics():
  assert set(enums.INPUT_NORMALIZATIONS) == set(enums.InputNormalization)
  assert enums.INPUT_NORMALIZATIONS[enums.InputNormalization.NONE] == (None, None)
  for member, (mean, std) in enums.INPUT_NORMALIZATIONS.items():
    if member == enums.InputNormalization.NONE:
      continue
    assert len(mean) == 3 and len(std) == 3, member
    assert all(0 < v < 1 for v in mean + std), member


def test_cifar10_statistics_are_the_authors_whitening_on_the_unit_scale():
  # The authors whiten [-1, 1] images: x01 = (x + 1) / 2, so mean01 = (m + 1) / 2
  # and std01 = s / 2.
  authors_mean = (-0.0172, -0.0356, -0.107)
  authors_std = (0.4046, 0.3988, 0.402)
  assert enums.CIFAR10_MEAN == pytest.approx([(m + 1) / 2 for m in authors_mean])
  assert enums.CIFAR10_STD == pytest.approx([s / 2 for s in authors_std])


def test_blur_types_are_augmentation_types():
  assert enums.BLUR_TYPES
  assert all(isinstance(t, enums.AugmentationType) for t in enums.BLUR_TYPES)
  assert len(set(enums.BLUR_TYPES)) == len(enums.BLUR_TYPES)
  assert enums.AugmentationType.IDENTITY not in enums.BLUR_TYPES


def test_config_re_exports_the_same_enums():
  for name in ("Mode", "AugmentationType", "ContrastMode", "StrategyType", "Optimizer",
               "LearningRateDecay", "InputNormalization", "IMAGE_FOLDER"):
    assert getattr(config_lib, name) is getattr(enums, name), name


def test_enums_module_has_no_tensorflow():
  code = "import sys; import supcon_tf.enums; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
