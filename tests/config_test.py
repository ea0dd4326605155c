"""The config dataclasses, `validate` and the dict/JSON round trip (`supcon_tf/config.py`)."""

import dataclasses
import enum
import json
import typing

import pytest

from supcon_tf import config as config_lib
from supcon_tf import validation


def test_config_module_has_no_tensorflow():
  import subprocess
  import sys
  code = ("import sys, supcon_tf.config, supcon_tf.flags; "
          "assert 'tensorflow' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


def _other_value(f, value):
  """A value of field `f`'s type that differs from `value`."""
  if isinstance(value, enum.Enum):
    return next(m for m in type(value) if m is not value)
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 3
  if isinstance(value, str):
    return value + "_x"
  elem_type = typing.get_args(f.type)[0]
  return tuple(elem_type(v) for v in (value or (1, 2))[::-1]) + (elem_type(7),)


def _every_leaf_changed():
  """A Config in which every leaf of every section differs from its default."""
  defaults = config_lib.Config()
  sections = {}
  for section in config_lib.SECTIONS:
    value = getattr(defaults, section)
    sections[section] = dataclasses.replace(value, **{
        f.name: _other_value(f, getattr(value, f.name))
        for f in dataclasses.fields(value)})
  return config_lib.Config(**sections)


def test_dict_round_trip_of_a_config_changing_every_leaf():
  defaults = config_lib.Config()
  assert config_lib.Config.from_dict(defaults.to_dict()) == defaults
  cfg = _every_leaf_changed()
  for section in config_lib.SECTIONS:
    changed, default = getattr(cfg, section), getattr(defaults, section)
    for f in dataclasses.fields(changed):
      assert getattr(changed, f.name) != getattr(default, f.name), (section, f.name)
  assert config_lib.Config.from_dict(cfg.to_dict()) == cfg
  # config.json: the JSON text reads back to the same config.
  assert config_lib.Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_to_dict_holds_only_json_values():
  d = _every_leaf_changed().to_dict()
  assert set(d) == set(config_lib.SECTIONS)
  assert d["loss"]["contrast_mode"] == config_lib.ContrastMode.ONE_VIEW.value
  assert d["model"]["projection_head_layers"] == [128, 2048, 7]
  def check(value):
    if isinstance(value, dict):
      for v in value.values():
        check(v)
    elif isinstance(value, list):
      for v in value:
        check(v)
    else:
      assert isinstance(value, (bool, int, float, str)), value
  check(d)


def test_from_dict_keeps_the_defaults_of_missing_sections_and_keys():
  # Missing sections and keys take their defaults in Config().
  cfg = config_lib.Config.from_dict({"loss": {"temperature": 0.5}})
  defaults = config_lib.Config()
  assert cfg == dataclasses.replace(
      defaults, loss=dataclasses.replace(defaults.loss, temperature=0.5))
  assert config_lib.Config.from_dict({}) == defaults
  # A stage's missing keys take that stage's own defaults, not StageConfig's
  # (stage 1: LARS, 12 warmup epochs, contrastive; StageConfig: momentum, 0, none).
  cfg = config_lib.Config.from_dict({"stage_1": {"epochs": 5.0},
                                     "stage_2": {"steps": 3}})
  assert cfg.stage_1 == dataclasses.replace(defaults.stage_1, epochs=5.0)
  assert cfg.stage_2 == dataclasses.replace(defaults.stage_2, steps=3)
  assert cfg.stage_1.optimizer == config_lib.Optimizer.LARS


def test_stage_defaults_are_the_two_stages_of_the_paper():
  cfg = config_lib.Config()
  assert cfg.stage_1.contrastive_loss_weight == 1.0
  assert cfg.stage_1.cross_entropy_loss_weight == 0.0
  assert cfg.stage_2.cross_entropy_loss_weight == 1.0
  assert not cfg.stage_2.update_encoder_batch_norm
  # default_factory: each Config gets its own (equal) stage values.
  assert config_lib.Config().stage_1 == cfg.stage_1


def test_config_is_frozen():
  cfg = config_lib.Config()
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.loss.temperature = 1.0


def test_field_rejects_mutable_defaults_and_keeps_the_help():
  with pytest.raises(TypeError, match="tuples"):
    config_lib.field([1, 2], "a list")
  with pytest.raises(TypeError, match="tuples"):
    config_lib.field({}, "a dict")
  f = config_lib.field((1, 2), "two numbers")
  assert f.default == (1, 2) and f.metadata["help"] == "two numbers"


def test_flag_name_prefixes_only_the_stages():
  assert config_lib.flag_name("stage_1", "epochs") == "stage_1_epochs"
  assert config_lib.flag_name("stage_2", "optimizer") == "stage_2_optimizer"
  assert config_lib.flag_name("loss", "temperature") == "temperature"
  assert config_lib.flag_name("runtime", "model_dir") == "model_dir"


def _valid(**sections):
  """The default Config with a model_dir (so that it validates), `sections` replaced."""
  cfg = config_lib.Config()
  cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, model_dir="m"))
  return dataclasses.replace(cfg, **sections)


def test_validate_accepts_the_defaults_with_a_model_dir():
  validation.validate(_valid())
  with pytest.raises(config_lib.ConfigError, match="--model_dir is required"):
    validation.validate(config_lib.Config())


def test_validate_allows_no_training_in_eval_and_export_modes():
  base = _valid()
  no_training = dict(
      stage_1=dataclasses.replace(base.stage_1, epochs=0, steps=0),
      stage_2=dataclasses.replace(base.stage_2, epochs=0, steps=0))
  with pytest.raises(config_lib.ConfigError, match="nothing to train"):
    validation.validate(_valid(**no_training))
  for mode in (config_lib.Mode.EVAL, config_lib.Mode.EXPORT):
    validation.validate(_valid(runtime=dataclasses.replace(base.runtime, mode=mode),
                               **no_training))


@pytest.mark.parametrize("section, changes, message", [
    ("data", {"image_size": 4}, "--image_size must be >= 8, got 4"),
    ("data", {"crop_area_range": (0.5, 0.2)}, "--crop_area_range must be two numbers"),
    ("data", {"crop_area_range": (0.5, 1.5)}, "upper bound must be <= 1"),
    ("data", {"crop_aspect_range": (0.0, 1.0)}, "--crop_aspect_range"),
    ("data", {"blur_probability": 1.5}, "--blur_probability"),
    ("data", {"randaugment_magnitude": 11.0}, "--randaugment_magnitude"),
    ("data", {"num_train_examples": -1}, "--num_train_examples"),
    ("model", {"resnet_depth": 20}, "one of 18, 34, 50, 101, 152, 200, got 20"),
    ("model", {"first_conv_stride": 3}, "--first_conv_stride"),
    ("model", {"projection_head_layers": ()}, "--projection_head_layers"),
    ("model", {"batch_norm_momentum": 1.0}, "--batch_norm_momentum"),
    ("loss", {"positives_cap": 3}, r"multiple of --num_views \(2\), got 3"),
    ("loss", {"label_smoothing": 1.0}, "--label_smoothing"),
    ("loss", {"loss_chunk_size": -1}, "--loss_chunk_size must be >= 0, got -1"),
    ("stage_2", {"weight_decay": -1.0}, "--stage_2_weight_decay"),
    ("stage_2", {"cross_entropy_loss_weight": 0.0}, "stage_2 trains but both"),
    ("runtime", {"profile_steps": (5, 5)}, "START,END with 0 <= START < END, got 5,5"),
    ("runtime", {"num_virtual_cpus": -1}, "--num_virtual_cpus"),
    ("runtime", {"summary_images": -1}, "--summary_images"),
    ("runtime", {"knn_every": -1}, "--knn_every must be >= 0, got -1"),
    ("runtime", {"knn_k": 0}, "--knn_k must be >= 1, got 0"),
    ("runtime", {"knn_temperature": 0.0}, "--knn_temperature must be > 0, got 0.0"),
    ("runtime", {"knn_bank_size": -5}, "--knn_bank_size must be >= 0, got -5"),
    ("runtime", {"overwrite": True, "mode": config_lib.Mode.EVAL},
     "--overwrite starts a training run over; --mode=eval reads the run"),
    ("runtime", {"overwrite": True, "mode": config_lib.Mode.EXPORT}, "--mode=export"),
])
def test_validate_names_the_bad_value(section, changes, message):
  base = _valid()
  cfg = _valid(**{section: dataclasses.replace(getattr(base, section), **changes)})
  with pytest.raises(config_lib.ConfigError, match=message) as info:
    validation.validate(cfg)
  assert "\n" not in str(info.value)  # one line for the user


def test_image_folder_needs_an_image_dir_and_nothing_else():
  base = _valid()
  folder = dataclasses.replace(base.data, dataset=config_lib.IMAGE_FOLDER, image_dir="/p")
  validation.validate(_valid(data=folder))
  with pytest.raises(config_lib.ConfigError, match="needs --image_dir"):
    validation.validate(_valid(data=dataclasses.replace(folder, image_dir="")))
  with pytest.raises(config_lib.ConfigError, match="name two sources"):
    validation.validate(_valid(data=dataclasses.replace(folder, dataset="cifar10")))


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
