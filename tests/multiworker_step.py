"""One SupCon train step on a fixed global batch, printed as JSON (a helper program
of multiworker_test.py, not a test).

    python -m tests.multiworker_step multi_worker   # under TF_CONFIG, one per worker
    python -m tests.multiworker_step single         # one process, one device

Each replica takes its slice of the same global batch; the printed metrics are the
global values, and `update` is the flattened change of every trained variable.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import distribute
from supcon_tf import train
from tests import testing

GLOBAL_BATCH = 8


def config(model_dir):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=16),
      model=config_lib.ModelConfig(
          resnet_depth=18, resnet_width=0.125, first_conv_kernel_size=3,
          first_conv_stride=1, use_initial_max_pool=False, projection_head_layers=(16, 8),
          use_projection_batch_norm=True, use_global_batch_norm=True),
      stage_1=config_lib.StageConfig(steps=1, base_learning_rate=32.0, momentum=0.0,
                                     weight_decay=1e-3, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=0),
      runtime=config_lib.RuntimeConfig(model_dir=model_dir, batch_size=GLOBAL_BATCH,
                                       eval_batch_size=GLOBAL_BATCH))


def main(mode):
  if mode == "multi_worker":
    strategy = distribute.create_strategy(config_lib.StrategyType.MULTI_WORKER)
  else:
    strategy = tf.distribute.get_strategy()
  rng = np.random.default_rng(0)
  views = rng.random((GLOBAL_BATCH, 2, 16, 16, 3)).astype(np.float32)
  labels = (np.arange(GLOBAL_BATCH) % 3).astype(np.int32)
  per = GLOBAL_BATCH // strategy.num_replicas_in_sync

  def slice_fn(replica):
    lo = replica * per
    return {"views": tf.constant(views[lo:lo + per]),
            "labels": tf.constant(labels[lo:lo + per])}

  batch = (strategy.experimental_distribute_values_from_function(
      lambda ctx: slice_fn(ctx.replica_id_in_sync_group))
           if strategy.num_replicas_in_sync > 1 else slice_fn(0))
  keras.utils.set_random_seed(5)
  model_dir = tempfile.mkdtemp()
  trainer = train.Trainer(config(model_dir), strategy, testing.synthetic_source(16, 16),
                                model_dir, is_chief=distribute.is_chief(strategy),
                                verbose=False)
  before = [v.numpy() for v in trainer.train_vars[1]]
  metrics = trainer.train_step(1, batch)
  update = np.concatenate([(v.numpy() - b).ravel()
                           for b, v in zip(before, trainer.train_vars[1])])
  print(json.dumps({"replicas": strategy.num_replicas_in_sync, "metrics": metrics,
                    "update": update.tolist()}), flush=True)


if __name__ == "__main__":
  main(sys.argv[1])
