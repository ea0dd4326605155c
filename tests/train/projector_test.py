"""TensorBoard projector files of the test embeddings."""

import os

import tensorflow as tf


def test_projector_files(trained):
  model_dir, _ = trained
  logdir = os.path.join(model_dir, "projector", "stage_1")
  config = open(os.path.join(logdir, "projector_config.pbtxt")).read()
  assert "metadata.tsv" in config and "sprite.png" in config
  labels = open(os.path.join(logdir, "metadata.tsv")).read().split()
  assert len(labels) == 10
  embeddings = tf.train.load_variable(tf.train.latest_checkpoint(logdir),
                                      "embedding/.ATTRIBUTES/VARIABLE_VALUE")
  assert embeddings.shape == (10, 32)  # ResNet-18 x 1/16: 512 / 16 channels
  png = tf.io.decode_png(tf.io.read_file(os.path.join(logdir, "sprite.png")))
  assert png.shape == (48, 48, 3)  # ceil(sqrt(10)) = 4 thumbnails of 12 px a side
