"""TensorBoard output: training scalars, augmented views, hparams, config text and
evaluation scalars."""

import os

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import train
from supcon_tf.data import pipeline
from tests.train import common


def test_train_scalars_images_hparams_text(trained):
  model_dir, _ = trained
  acc = common.events(os.path.join(model_dir, "train"))
  tags = acc.Tags()
  scalars = set(tags["tensors"]) | set(tags["scalars"])
  for tag in ("loss/total", "loss/contrastive", "loss/cross_entropy", "loss/weight_decay",
              "learning_rate", "images_per_second", "norms/gradient", "norms/weights",
              "train/accuracy"):
    assert tag in scalars, (tag, sorted(scalars))
  # One summary per loop of --steps_per_loop=2 steps, but loops also stop at the
  # profile boundaries 1 and 3: stage 1 ends loops at steps 1, 3, 4; stage 2 at 6.
  steps = [e.step for e in acc.Tensors("loss/total")]
  assert steps == [1, 3, 4, 6]
  assert all(np.isfinite(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("norms/gradient"))
  images = [t for t in tags["tensors"] if t.startswith("augmented_views/stage_1")]
  assert images, tags["tensors"]
  image_event = acc.Tensors(images[0])[0]
  # image summaries store [width, height, png...]: 3 samples x 2 views side by side
  values = tf.make_ndarray(image_event.tensor_proto)
  assert int(values[0]) == 24 and int(values[1]) == 12 and len(values) == 2 + 3
  assert "config" in tags["tensors"]
  text = tf.make_ndarray(acc.Tensors("config")[0].tensor_proto).item().decode()
  assert '"temperature": 0.1' in text
  plugins = acc.PluginTagToContent("hparams")
  assert "_hparams_/session_start_info" in plugins


def test_summary_images_read_only_the_images_shown(tmp_path, monkeypatch):
  source = common.source()
  sizes = []
  train_dataset = pipeline.train_dataset

  def spy(source, spec, view, options, input_context=None):
    sizes.append((spec.global_batch_size, input_context is None))
    return train_dataset(source, spec, view, options, input_context)

  monkeypatch.setattr(pipeline, "train_dataset", spy)
  cfg = common.tiny_config(str(tmp_path), summary_images=3)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), source, str(tmp_path),
                                verbose=False)
  trainer.write_start_summaries(trainer.stages[0], 0)
  assert sizes == [(3, True)]


def test_eval_scalars(trained):
  model_dir, result = trained
  acc = common.events(os.path.join(model_dir, "eval"))
  tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
  assert {"top_1", "top_5"} <= tags
  top1 = tf.make_ndarray(acc.Tensors("top_1")[-1].tensor_proto)
  assert float(top1) == pytest.approx(result["top_1"])
