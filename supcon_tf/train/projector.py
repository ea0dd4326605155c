"""Embeddings for TensorBoard's projector: a checkpointed tensor, labels, a sprite.

Written at the end of every contrastive stage and in eval mode, from the first
--projector_examples test images.
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from supcon_tf.data import pipeline

_MAX_SPRITE_SIDE = 8192  # TensorBoard's limit for a sprite image
_MAX_THUMBNAIL = 64  # only small images get a sprite


def sprite(images: np.ndarray) -> Optional[np.ndarray]:
  """The projector's sprite of `images`.

  Args:
    images: float [N, H, W, C] in [0, 1].

  Returns:
    A square uint8 RGB mosaic, or None when the images are too large for one.
  """
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
  """Writes embeddings with their labels (and a sprite) for the projector.

  Args:
    logdir: the projector's directory (created).
    embeddings: float [N, D].
    labels: int [N].
    images: float [N, H, W, C] in [0, 1] for the sprite (small images only).

  Returns:
    `logdir`.
  """
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


def write_test_embeddings(model, source, eval_view, num: int, logdir: str,
                          is_chief: bool) -> Optional[str]:
  """The encoder's `h` of the first `num` test images, written into `logdir`.

  Every worker computes them: under MultiWorkerMirroredStrategy reading the BN
  moving statistics outside a replica context is a collective that all workers
  must join. Only the chief writes.

  Args:
    model: the SupConModel.
    source: the data source.
    eval_view: the evaluation view spec.
    num: how many test images.
    logdir: the projector's directory.
    is_chief: whether this worker writes.

  Returns:
    `logdir` on the chief when something was written, else None.
  """
  images, labels = pipeline.eval_examples(source, num, eval_view)
  n = len(labels)
  if n == 0:
    return None
  embeddings = np.concatenate([
      tf.cast(model.encode(images[i:i + 256], training=False), tf.float32).numpy()
      for i in range(0, n, 256)])
  if not is_chief:
    return None
  return write_projector(logdir, embeddings, labels, images)
