"""Another model's checkpoint is refused in one line before any variable changes;
--encoder_checkpoint starts a run's encoder from another run's."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import train
from supcon_tf.errors import RunError
from supcon_tf.train import compat
from tests import testing
from tests.train import common


def _trainer(model_dir, strategy=None, precision="float32", **model):
  cfg = common.tiny_config(str(model_dir))
  cfg = dataclasses.replace(
      cfg, model=dataclasses.replace(cfg.model, **model),
      runtime=dataclasses.replace(cfg.runtime,
                                  precision=config_lib.Precision(precision)))
  return train.Trainer(cfg, strategy or tf.distribute.get_strategy(), common.source(),
                       str(model_dir), verbose=False)


def _stored(path):
  return {k for k in tf.train.load_checkpoint(path).get_variable_to_shape_map()
          if ".OPTIMIZER_SLOT" not in k and not k.startswith("_CHECKPOINTABLE")}


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_expected_keys_are_the_checkpoint_keys(tmp_path, precision):
  strategy = testing.mirrored_cpu_strategy(2)  # mirrored variables name alike
  trainer = _trainer(tmp_path, strategy, precision)
  path = trainer.save()
  expected = compat.expected_variables(trainer.state.checkpoint)
  assert set(expected) == _stored(path)
  for key, (shape, _) in expected.items():
    assert tuple(tf.train.load_checkpoint(path).get_variable_to_shape_map()[key]) == shape
  assert compat.difference(path, trainer.state.checkpoint) is None
  assert any("loss_scale" in k for k in expected) == (precision == "float16")


def test_another_width_is_refused_naming_a_variable_and_both_shapes(tmp_path):
  narrow = _trainer(tmp_path / "a")
  path = narrow.save()
  wide = _trainer(tmp_path / "a", resnet_width=0.125)
  before = [v.numpy() for v in wide.model.variables]
  with pytest.raises(compat.IncompatibleCheckpoint) as e:
    wide.restore()
  line = str(e.value)
  assert "\n" not in line
  assert line.startswith(f"checkpoint {path} holds another model: model/encoder/")
  # A width-1/16 stem has 4 filters, width 1/8 has 8: both shapes are named.
  assert " is [" in line and "] there and [" in line and "] in this run (and " in line
  there = line.split(" is ")[1].split(" there")[0]
  here = line.split(" there and ")[1].split(" in this run")[0]
  assert there != here
  for a, b in zip(before, wide.model.variables):  # nothing was assigned
    np.testing.assert_array_equal(a, b.numpy())


def test_other_head_sizes_are_refused(tmp_path):
  _trainer(tmp_path, projection_head_layers=(8, 4)).save()
  with pytest.raises(compat.IncompatibleCheckpoint,
                     match=r"model/projection_head/.* is \[8, 4\] there and \[8, 6\]"):
    _trainer(tmp_path, projection_head_layers=(8, 6)).restore()


@pytest.mark.parametrize("saved, restoring, message", [
    ("float32", "float16", "this run's optimizers have a float16 loss scale"),
    ("float16", "float32", "it holds a float16 loss scale"),
])
def test_a_precision_switch_is_refused(tmp_path, saved, restoring, message):
  _trainer(tmp_path, precision=saved).save()
  with pytest.raises(compat.IncompatibleCheckpoint, match=message + ".*another --precision"):
    _trainer(tmp_path, precision=restoring).restore()


def test_check_checkpoints_reads_only_the_index(tmp_path):
  _trainer(tmp_path).save()
  _trainer(tmp_path).check_checkpoints()  # the same model: nothing to say
  with pytest.raises(compat.IncompatibleCheckpoint):
    _trainer(tmp_path, resnet_depth=34).check_checkpoints()


def test_encoder_checkpoint_loads_the_encoder_only(tmp_path):
  source = _trainer(tmp_path / "pretrained", projection_head_layers=(16, 8))
  for v in source.model.encoder.variables:  # values no initialiser draws
    v.assign(tf.random.stateless_uniform(v.shape, (1, len(v.name)), dtype=v.dtype))
  source.save()
  target = _trainer(tmp_path / "linear", encoder_checkpoint=str(tmp_path / "pretrained"))
  classifier = [v.numpy() for v in target.model.classifier.variables]
  assert target.restore() == 0
  for a, b in zip(source.model.encoder.variables, target.model.encoder.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  for a, b in zip(classifier, target.model.classifier.variables):
    np.testing.assert_array_equal(a, b.numpy())


def test_encoder_checkpoint_of_another_encoder_is_refused(tmp_path):
  _trainer(tmp_path / "pretrained", resnet_width=0.125).save()
  target = _trainer(tmp_path / "linear", encoder_checkpoint=str(tmp_path / "pretrained"))
  with pytest.raises(compat.IncompatibleCheckpoint,
                     match=r"^--encoder_checkpoint .*ckpt-0 holds another model: "
                           r"model/encoder/.* there and .* in this run"):
    target.check_checkpoints()
  with pytest.raises(RunError, match="is no checkpoint"):
    _trainer(tmp_path / "other", encoder_checkpoint=str(tmp_path / "nothing")).restore()
