"""--mode=dry_run: every experiment file plans without data; ResNet-50's figures."""

import glob
import os

from absl import flags
import pytest
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import dry_run
from supcon_tf import flags as flags_lib
from tests import testing


_EXPERIMENTS = sorted(glob.glob(os.path.join(testing.REPO_ROOT, "experiments", "*.cfg")))


@pytest.mark.parametrize("path", _EXPERIMENTS, ids=os.path.basename)
def test_every_experiment_dry_runs(path, monkeypatch, tmp_path):
  monkeypatch.chdir(testing.REPO_ROOT)  # flagfiles include others by relative path
  fv = flags.FlagValues()
  flags_lib.define_flags(fv)
  extra = []
  if os.path.basename(path) == "image_folder.cfg":  # the user passes --image_dir
    testing.write_image_folder(str(tmp_path / "photos" / "train"), per_class=100)
    testing.write_image_folder(str(tmp_path / "photos" / "test"), per_class=5)
    extra = [f"--image_dir={tmp_path / 'photos'}"]
  fv(["prog", f"--flagfile={path}", "--mode=dry_run", f"--model_dir={tmp_path}/m",
      *extra])
  cfg = flags_lib.config_from_flags(fv)
  lines = []
  result = dry_run.dry_run(cfg, tf.distribute.get_strategy(), printer=lines.append)
  text = "\n".join(lines)
  assert "== model ==" in text and "learning rate:" in text
  assert result["trainable_parameters"] > 0 and result["flops_per_image"] > 0
  for stage in result["stages"]:
    assert stage["steps"] > 0 and stage["steps_per_epoch"] > 0
  assert not os.path.exists(tmp_path / "m")  # a dry run writes nothing


def test_dry_run_flops_of_resnet50_at_224():
  cfg = config_lib.Config(model=config_lib.ModelConfig(resnet_depth=50),
                          data=config_lib.DataConfig(dataset="imagenet2012", image_size=224,
                                                     eval_split="validation"),
                          runtime=config_lib.RuntimeConfig(model_dir="/unused"))
  lines = []
  result = dry_run.dry_run(cfg, tf.distribute.get_strategy(), printer=lines.append)
  # ResNet-50: 4.09 G multiply-adds per 224x224 image (torchvision's figure, which
  # counts MACs) = 8.2 GFLOPs; the heads add ~4 M MACs.
  assert 7.9e9 < result["flops_per_image"] < 8.5e9
  assert result["encoder_parameters"] == 23_508_032
  stage_1 = result["stages"][0]
  assert stage_1["steps_per_epoch"] == 1281167 // 2048
  assert stage_1["steps"] == 700 * (1281167 // 2048)
