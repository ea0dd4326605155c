"""A few augmented views of a stage's first images, as TensorBoard shows them.

The sample comes from its own small pipeline (the stage's spec with a batch of just
the images shown), so no worker ever builds a global batch for it; blur deferred to
the step (--defer_blur) is applied here, so the images are what the encoder sees.
"""

import dataclasses

import tensorflow as tf

from supcon_tf.data import pipeline
from supcon_tf.data.augment import ops as augment_ops
from supcon_tf.data.augment import views


def augmented_views(source, spec: pipeline.TrainInputSpec, view: views.ViewSpec,
                    input_options: pipeline.InputOptions, count: int) -> tf.Tensor:
  """The views of the first `count` images of a stage's input.

  Args:
    source: the run's data source.
    spec: the stage's training input spec (its batch size is replaced by `count`).
    view: the stage's augmentation.
    input_options: the run's input options (corrupt-image reports are switched off).
    count: images sampled.

  Returns:
    `[count, V, H, W, C]` float views, blurred where the step would blur them.
  """
  # (the plain order: a class-balanced batch needs a whole global batch)
  spec = dataclasses.replace(spec, global_batch_size=count, samples_per_class=0)
  quiet = dataclasses.replace(input_options, report_corrupt=False)
  batch = next(iter(pipeline.train_dataset(source, spec, view, quiet)))
  views_ = batch["views"]  # [k, V, H, W, C]
  if not view.defer_blur:
    return views_
  shape = tf.shape(views_)
  flat = tf.reshape(views_, [-1, *views_.shape[2:]])
  blurred = augment_ops.batch_random_blur(
      flat, tf.reshape(batch["blur_seeds"], [-1, 2]), view.blur_probability)
  return tf.reshape(blurred, shape)
