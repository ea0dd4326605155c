"""The `trained` fixture: one tiny run (4 + 2 steps, profiled, projector, evaluated)
shared by the tests of the loop, summaries, projector and evaluation."""

import pytest
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import train
from tests.train import common


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("tb"))
  cfg = config_lib.Config(
      data=config_lib.DataConfig(image_size=12, crop_area_range=(0.5, 1.0)),
      model=config_lib.ModelConfig(resnet_depth=18, resnet_width=0.0625,
                                   first_conv_kernel_size=3, first_conv_stride=1,
                                   use_initial_max_pool=False, projection_head_layers=(8, 4)),
      stage_1=config_lib.StageConfig(steps=4, contrastive_loss_weight=1.0,
                                     weight_decay=1e-4),
      stage_2=config_lib.StageConfig(steps=2, cross_entropy_loss_weight=1.0,
                                     update_encoder_batch_norm=False),
      runtime=config_lib.RuntimeConfig(model_dir=model_dir, batch_size=8, eval_batch_size=8,
                                       steps_per_loop=2, checkpoint_steps=100,
                                       profile_steps=(1, 3), summary_images=3,
                                       projector_examples=10))
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), model_dir,
                                verbose=False)
  trainer.train()
  result = trainer.evaluate()
  trainer.close()
  return model_dir, result
