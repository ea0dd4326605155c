"""Embeddings for TensorBoard's projector: a checkpointed tensor, labels, a sprite."""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

_MAX_SPRITE_SIDE = 8192  # TensorBoard's limit for a sprite image
_MAX_THUMBNAIL = 64  # only small images get a sprite


def sprite(images: np.ndarray) -> Optional[np.ndarray]:
  """Square uint8 RGB mosaic of `images` ([N, H, W, C] float in [0, 1]), or None when
  the images are too large for one sprite."""
  n, h, w, c = images.shape
  if max(h, w) > _MAX_THUMBNAIL:
    return None
  side = int(np.ceil(np.sqrt(n)))
  if side * max(h, w) > _MAX_SPRITE_SIDE:
    return None
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  padded = np.zeros((side * side, h, w, 3), np.float32)
  padded[:n] = images[..., :3]
  grid = padded.reshape(side, side, h, w, 3).transpose(0, 2, 1, 3, 4)
  return (np.clip(grid.reshape(side * h, side * w, 3), 0, 1) * 255).astype(np.uint8)


def write_projector(logdir: str, embeddings: np.ndarray, labels: np.ndarray,
                    images: Optional[np.ndarray] = None) -> str:
  """Writes embeddings [N, D] with labels [N] (and a sprite) into `logdir`."""
  tf.io.gfile.makedirs(logdir)
  with tf.io.gfile.GFile(os.path.join(logdir, "metadata.tsv"), "w") as f:
    for label in labels:
      f.write(f"{int(label)}\n")
  variable = tf.Variable(np.asarray(embeddings, np.float32), name="embedding")
  tf.train.Checkpoint(embedding=variable).save(os.path.join(logdir, "embedding.ckpt"))
  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
  embedding.metadata_path = "metadata.tsv"
  mosaic = sprite(images) if images is not None else None
  if mosaic is not None:
    tf.io.write_file(os.path.join(logdir, "sprite.png"), tf.io.encode_png(mosaic))
    embedding.sprite.image_path = "sprite.png"
    embedding.sprite.single_image_dim.extend([images.shape[2], images.shape[1]])
  projector.visualize_embeddings(logdir, config)
  return logdir
