"""The memory queue of the SupCon loss: projections of earlier steps as extra columns.

With a small batch, a queue of K projections from earlier steps (e.g. of a momentum
encoder; DESIGN.md: a memory of 8,192 with batch 256 gave 79.1% top-1 on ImageNet)
adds K contrast columns to every anchor. An entry is a positive of an anchor when
the loss uses labels and the entry's label is the anchor's, otherwise a negative;
entries are never anchors and never an anchor's "self"; entries not yet filled
(`valid` False) are neither positives nor negatives. The entries are constants: no
gradient flows into them.

This module owns the `Memory` type and its checks; the loss's general path
(`losses_general.anchor_row_losses`) does the math. No flags, no strategy.
"""

from typing import NamedTuple, Optional

import tensorflow as tf


class Memory(NamedTuple):
  """A queue of K earlier projections, extra contrast columns of the loss."""
  features: tf.Tensor  # [K, dim] float: treated as constants (stop_gradient)
  labels: Optional[tf.Tensor]  # int32 [K] class ids, or None (every entry a negative)
  valid: tf.Tensor  # bool [K]: entries filled so far


def prepare(memory: Optional[Memory], dim: int, use_labels: bool,
            positives_cap: int) -> Optional[Memory]:
  """Checks `memory` against the loss's inputs and makes its tensors ready.

  Args:
    memory: the queue, or None.
    dim: the features' last dimension (static).
    use_labels: the loss has labels (memory labels then decide the positives).
    positives_cap: the loss's cap (-1: none); a cap with a memory is refused.

  Returns:
    None when there is no memory or K is statically 0 (the loss is then exactly
    the loss without memory); else a `Memory` of float32 features wrapped in
    `tf.stop_gradient`, int32 labels (None without loss labels) and bool valid.

  Raises:
    ValueError: a memory with positives_cap >= 0, bad ranks/shapes/dtypes, or
      loss labels with a memory without labels.
  """
  if memory is None:
    return None
  if not isinstance(memory, Memory):
    raise ValueError(f"memory must be a losses.Memory, got {type(memory).__name__}")
  if positives_cap >= 0:
    raise ValueError("positives_cap >= 0 together with a memory is not supported "
                     "(the cap orders positives within the global batch only): "
                     "pass positives_cap=-1 or no memory")
  features = tf.convert_to_tensor(memory.features)
  valid = tf.convert_to_tensor(memory.valid)
  if features.shape.rank != 2 or features.shape[1] != dim:
    raise ValueError(f"memory.features must have shape [K, {dim}], got "
                     f"{features.shape}")
  if not features.dtype.is_floating:
    raise ValueError(f"memory.features must be float, got {features.dtype.name}")
  if valid.dtype != tf.bool or valid.shape.rank != 1:
    raise ValueError(f"memory.valid must be bool [K], got {valid.dtype.name} "
                     f"{valid.shape}")
  labels = None
  if use_labels:
    if memory.labels is None:
      raise ValueError("the loss has labels but memory.labels is None: give the "
                       "entries' class ids (or call the loss without labels)")
    labels = tf.convert_to_tensor(memory.labels)
    if labels.shape.rank != 1 or not labels.dtype.is_integer:
      raise ValueError(f"memory.labels must be integer class ids [K], got "
                       f"{labels.dtype.name} {labels.shape}")
    labels = tf.cast(labels, tf.int32)
  if features.shape[0] == 0:  # K statically 0: no memory at all
    return None
  features = tf.stop_gradient(tf.cast(features, tf.float32))
  return Memory(features, labels, valid)
