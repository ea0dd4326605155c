"""Helpers of the train tests: a small synthetic source, an event-file reader and a
tiny two-stage config."""

from tensorboard.backend.event_processing import event_accumulator

from supcon_tf import config as config_lib
from tests import testing


def source(n=32, size=12, classes=4):
  return testing.synthetic_source(n, size, 1, classes, num_test=16)


def events(logdir):
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0})
  acc.Reload()
  return acc


def tiny_config(model_dir, **runtime):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=12),
      model=config_lib.ModelConfig(resnet_depth=18, resnet_width=0.0625,
                                   first_conv_kernel_size=3, first_conv_stride=1,
                                   use_initial_max_pool=False, projection_head_layers=(8, 4)),
      stage_1=config_lib.StageConfig(steps=5, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=1, cross_entropy_loss_weight=1.0,
                                     reinitialize_classifier=True),
      runtime=config_lib.RuntimeConfig(model_dir=model_dir, batch_size=8, eval_batch_size=8,
                                       projector_examples=0, **runtime))
