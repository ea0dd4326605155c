"""The absl flags generated from the config dataclasses (`supcon_tf/flags.py`)."""

import dataclasses
import json

from absl import flags
import pytest

from supcon_tf import config as config_lib
from supcon_tf import flags as flags_lib


def _parse(argv):
  fv = flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["prog"] + argv)
  return fv


def test_every_leaf_has_one_flag_with_the_field_default():
  fv = _parse([])
  defaults = config_lib.Config()
  for section in config_lib.SECTIONS:
    value = getattr(defaults, section)
    for f in dataclasses.fields(value):
      name = config_lib.flag_name(section, f.name)
      flag_default = fv[name].default
      field_default = getattr(value, f.name)
      if isinstance(field_default, tuple):
        assert [type(field_default[0])(v) for v in flag_default] == list(field_default)
      else:
        assert flag_default == field_default, name
      assert fv[name].help  # every flag documents itself


def test_authors_flag_names_exist():
  fv = _parse([])
  for name in ("batch_size", "stage_1_epochs", "stage_2_epochs", "temperature",
               "use_labels", "resnet_depth", "resnet_width", "num_views",
               "stage_1_base_learning_rate", "stage_2_optimizer", "positives_cap",
               "contrast_mode", "summation_location", "denominator_mode",
               "projection_head_layers", "mode", "model_dir", "data_dir", "strategy",
               "num_virtual_cpus", "stage_1_steps", "stage_2_steps", "tpu",
               "stage_1_warmup_epochs", "stage_2_update_encoder_batch_norm"):
    assert name in fv, name


def test_flags_to_config_and_json_round_trip(tmp_path):
  fv = _parse(["--model_dir", str(tmp_path), "--resnet_depth=18",
               "--projection_head_layers=64,32", "--crop_area_range=0.2,1",
               "--contrast_mode=ONE_VIEW", "--summation_location=inside",
               "--stage_2_optimizer=lars", "--stage_1_steps=7", "--use_labels=false"])
  cfg = flags_lib.config_from_flags(fv)
  assert cfg.model.resnet_depth == 18
  assert cfg.model.projection_head_layers == (64, 32)
  assert cfg.data.crop_area_range == (0.2, 1.0)
  assert cfg.loss.contrast_mode == config_lib.ContrastMode.ONE_VIEW
  assert cfg.loss.summation_location == config_lib.SummationLocation.INSIDE
  assert cfg.stage_2.optimizer == config_lib.Optimizer.LARS
  assert cfg.stage_1.steps == 7 and not cfg.loss.use_labels
  d = json.loads(cfg.to_json())
  assert d["loss"]["contrast_mode"] == "one_view"
  assert config_lib.Config.from_dict(d) == cfg


def test_flagfiles_include_flagfiles(tmp_path):
  inner = tmp_path / "inner.cfg"
  inner.write_text("# a comment\n--resnet_depth=18\n--temperature=0.5\n")
  outer = tmp_path / "outer.cfg"
  outer.write_text(f"--flagfile={inner}\n--temperature=0.2\n--model_dir={tmp_path}\n")
  cfg = flags_lib.config_from_flags(_parse([f"--flagfile={outer}"]))
  assert cfg.model.resnet_depth == 18 and cfg.loss.temperature == 0.2


def test_tpu_flag_implies_tpu_strategy(tmp_path):
  cfg = flags_lib.config_from_flags(_parse(["--tpu=my-tpu", f"--model_dir={tmp_path}"]))
  assert cfg.runtime.strategy == config_lib.StrategyType.TPU


@pytest.mark.parametrize("argv, message", [
    (["--temperature=0"], "temperature"),
    (["--resnet_depth=19"], "resnet_depth"),
    (["--positives_cap=3"], "positives_cap"),
    (["--loss_chunk_size=-2"], "loss_chunk_size"),
    (["--crop_area_range=0.5"], "exactly 2"),
    (["--crop_area_range=a,b"], "crop_area_range"),
    (["--projection_head_layers=128,0"], "projection_head_layers"),
    (["--batch_size=0"], "batch_size"),
    (["--stage_1_contrastive_loss_weight=0"], "stage_1"),
    (["--stage_1_epochs=0", "--stage_2_epochs=0"], "nothing to train"),
    (["--model_dir="], "model_dir"),
])
def test_bad_values_raise_config_error(tmp_path, argv, message):
  argv = [f"--model_dir={tmp_path}"] + argv
  with pytest.raises(config_lib.ConfigError, match=message):
    flags_lib.config_from_flags(_parse(argv))


def test_unknown_flag_and_bad_enum_are_flag_errors():
  with pytest.raises(flags.Error):
    _parse(["--no_such_flag=1"])
  with pytest.raises(flags.Error):
    _parse(["--contrast_mode=every_view"])
  with pytest.raises(flags.Error):
    _parse(["--batch_size=lots"])


def test_image_dir_names_the_source():
  cfg = flags_lib.config_from_flags(_parse(["--model_dir=m", "--image_dir=/photos"]))
  assert cfg.data.dataset == config_lib.IMAGE_FOLDER and cfg.data.image_dir == "/photos"
  with pytest.raises(config_lib.ConfigError, match="name two sources"):
    flags_lib.config_from_flags(_parse(["--model_dir=m", "--image_dir=/p",
                                        "--dataset=cifar10"]))
  with pytest.raises(config_lib.ConfigError, match="needs --image_dir"):
    flags_lib.config_from_flags(_parse(["--model_dir=m", "--dataset=image_folder"]))


def test_given_fields_are_those_of_the_command_line_and_flagfiles(tmp_path):
  flagfile = tmp_path / "run.cfg"
  flagfile.write_text("--resnet_depth=18\n--stage_2_optimizer=lars\n")
  fv = _parse([f"--flagfile={flagfile}", "--model_dir=m", "--stage_1_steps=3",
               "--overwrite"])
  assert flags_lib.given_fields(fv) == {"model.resnet_depth", "stage_2.optimizer",
                                        "runtime.model_dir", "stage_1.steps",
                                        "runtime.overwrite"}
  assert flags_lib.config_from_flags(fv).runtime.overwrite
  # --image_dir sets the dataset: both count as given.
  fv = _parse(["--model_dir=m", "--image_dir=/photos"])
  assert flags_lib.given_fields(fv) == {"runtime.model_dir", "data.image_dir",
                                        "data.dataset"}
  assert flags_lib.given_fields(_parse([])) == frozenset()


@pytest.mark.parametrize("flag, fragment", [
    ("--max_corrupt_fraction=1.5", "max_corrupt_fraction"),
    ("--shuffle_buffer_size=0", "shuffle_buffer_size"),
    ("--input_threads=-1", "input_threads"),
    ("--max_in_memory_gb=-1", "max_in_memory_gb"),
])
def test_input_flags_are_validated(flag, fragment):
  with pytest.raises(config_lib.ConfigError, match=fragment):
    flags_lib.config_from_flags(_parse(["--model_dir=m", flag]))


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
