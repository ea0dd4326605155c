"""Evaluation: top-k where ties never count; accuracy on the padded test split on
one device and on 2 replicas against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import train
from supcon_tf.train import evaluate
from tests import testing
from tests.train import common


def test_top_k_hits_never_count_a_tie():
  logits = tf.constant([[0.0, 0.0, 0.0],      # every class ties: no hit at any k < 3
                        [1.0, 3.0, 2.0],      # label 2 is second
                        [2.0, 2.0, -1.0],     # tie with the label at the top
                        [float("nan"), 0.0, 0.0],
                        [5.0, 1.0, 1.0]])
  labels = tf.constant([1, 2, 0, 0, 0])
  np.testing.assert_array_equal(evaluate.top_k_hits(logits, labels, 1), [0, 0, 0, 0, 1])
  np.testing.assert_array_equal(evaluate.top_k_hits(logits, labels, 2), [0, 1, 1, 0, 1])
  np.testing.assert_array_equal(evaluate.top_k_hits(logits, labels, 3), [1, 1, 1, 0, 1])
  # in_top_k, for contrast, calls the all-tie row a hit.
  assert bool(tf.math.in_top_k(labels[:1], logits[:1], 1)[0])


def _trainer(tmp_path, strategy, num_test):
  source = testing.synthetic_source(32, 12, 1, 4, num_test=num_test)
  cfg = common.tiny_config(str(tmp_path))
  return train.Trainer(cfg, strategy, source, str(tmp_path), verbose=False), source


@pytest.mark.parametrize("replicas", [1, 2])
def test_classifier_accuracy_equals_numpy_on_the_padded_split(tmp_path, replicas):
  # 13 test images with an eval batch of 8: the last global batch is padded and the
  # padding must not count, on one device and on 2 replicas alike.
  strategy = (tf.distribute.get_strategy() if replicas == 1
              else testing.mirrored_cpu_strategy(replicas))
  trainer, source = _trainer(tmp_path, strategy, num_test=13)
  dense = trainer.model.classifier.dense
  rng = np.random.default_rng(5)
  dense.kernel.assign(rng.normal(size=dense.kernel.shape).astype(np.float32))
  dense.bias.assign(rng.normal(size=dense.bias.shape).astype(np.float32))
  result = evaluate.classifier_accuracy(
      trainer.model, strategy, source, trainer.eval_view, trainer.cfg,
      trainer.input_options, log=lambda _: None)
  images = source.test_images.astype(np.float32) / 255.0
  logits = trainer.model(tf.constant(images), training=False)["logits"].numpy()
  ranks = (logits >= logits[np.arange(13), source.test_labels][:, None]).sum(1) - 1
  assert result["num_examples"] == 13
  assert result["top_1"] == pytest.approx(np.mean(ranks < 1))
  assert result["top_5"] == pytest.approx(np.mean(ranks < 4))  # k = min(5, 4 classes)
  assert 0 < result["top_1"] < 1  # a check that can fail either way
