"""The memory queue of projections (--memory_size) and the momentum encoder
(--momentum_encoder).

The paper's ImageNet result at small batch (79.1% top-1 for ResNet-50 with a memory
of 8,192 at batch 256, section 4 and its appendix) contrasts each anchor against the
current batch plus a queue of earlier projections, as MoCo (He et al. 2020) does.
The authors' release does not implement it; this module does, for every strategy:

- `ProjectionQueue`: a FIFO ring of the K most recent projections and their labels.
  Each step appends the projections of every view of the *global* batch (the
  all-gathered ones, in global-batch order, sample-major: sample 0's views, then
  sample 1's, ...). Its variables are sync-on-read: every replica keeps its own copy
  and updates it with the same gathered values, so the copies stay identical without
  a collective of their own; checkpoints hold one copy (the first replica's) and a
  restore sets every copy. The loss reads the queue as it was before the step
  (`losses.Memory`): the current batch is never in it twice.
- `MomentumEncoder`: an exponential moving average of the online encoder and
  projection head, weights and BatchNorm statistics alike,
  `key = m * key + (1 - m) * online` after each update, starting equal to the online
  model. With it the queue is filled with the momentum model's projections of the
  current batch (BatchNorm on the batch's statistics, as MoCo's key encoder, with
  its moving statistics left to the average) instead of the online ones.
"""

from typing import List, Optional

import tensorflow as tf
import tf_keras as keras

from supcon_tf import losses


def _sync_on_read(initial_value, name: str) -> tf.Variable:
  return tf.Variable(initial_value, name=name, trainable=False,
                     synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class ProjectionQueue(tf.Module):
  """A FIFO queue of the `size` most recent projections and their class ids.

  Create it in the strategy's scope. `count` is how many entries were ever
  appended; entry `i` of the ring holds the entry appended at position
  `count - size + ((i - count) mod size)` once the ring has wrapped.
  """

  def __init__(self, size: int, dim: int, name: str = "memory"):
    """Args:
      size: K, the number of entries.
      dim: the projection's size.
      name: the module's name.
    """
    super().__init__(name=name)
    if size <= 0 or dim <= 0:
      raise ValueError(f"a queue needs size > 0 and dim > 0, got {size}, {dim}")
    self.size, self.dim = size, dim
    self.features = _sync_on_read(tf.zeros([size, dim], tf.float32), "features")
    self.labels = _sync_on_read(tf.fill([size], -1), "labels")
    self.count = _sync_on_read(tf.constant(0, tf.int64), "count")

  def memory(self, use_labels: bool) -> "losses.Memory":
    """The queue as the loss takes it (the entries filled so far are valid).

    Args:
      use_labels: False for SimCLR: every entry is a negative (labels None).
    """
    valid = tf.range(self.size, dtype=tf.int64) < self.count
    return losses.Memory(features=tf.stop_gradient(self.features.read_value()),
                         labels=self.labels.read_value() if use_labels else None,
                         valid=valid)

  def enqueue(self, features, labels) -> None:
    """Appends entries (oldest first), dropping the oldest ones beyond `size`.

    Args:
      features: [n, dim] projections (any float dtype; stored as float32).
      labels: int [n] class ids.
    """
    features = tf.stop_gradient(tf.cast(features, tf.float32))
    labels = tf.cast(labels, tf.int32)
    n = features.shape[0]
    if n is None:
      raise ValueError("the entries appended per step must have a static count")
    count = self.count.read_value()
    if n > self.size:  # only the newest `size` survive
      features, labels = features[n - self.size:], labels[n - self.size:]
      first = count + (n - self.size)
    else:
      first = count
    k = features.shape[0]
    slots = tf.math.floormod(first + tf.range(k, dtype=tf.int64), self.size)[:, None]
    self.features.assign(tf.tensor_scatter_nd_update(self.features.read_value(), slots,
                                                     features))
    self.labels.assign(tf.tensor_scatter_nd_update(self.labels.read_value(), slots,
                                                   labels))
    self.count.assign_add(n)

  def ordered(self):
    """(features, labels) of the valid entries, oldest first (tests, inspection)."""
    count = int(self.count.numpy())
    features, labels = self.features.numpy(), self.labels.numpy()
    if count <= self.size:
      return features[:count], labels[:count]
    start = count % self.size
    order = [(start + i) % self.size for i in range(self.size)]
    return features[order], labels[order]


def _batch_norm_statistics(model) -> List[tf.Variable]:
  return [v for layer in model.submodules
          if isinstance(layer, keras.layers.BatchNormalization)
          for v in (layer.moving_mean, layer.moving_variance)]


class MomentumEncoder:
  """The exponential moving average of a SupConModel's encoder and projection head.

  `model` is a second SupConModel of the same configuration (its classifier is
  unused), created in the strategy's scope; it starts as a copy of the online one.
  """

  def __init__(self, model, online, momentum: float):
    """Args:
      model: the momentum SupConModel (built: its variables exist).
      online: the online SupConModel.
      momentum: m in [0, 1).
    """
    if not 0 <= momentum < 1:
      raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    self.model, self.momentum = model, momentum
    self.pairs = list(zip(self._averaged(model), self._averaged(online)))
    self._statistics = _batch_norm_statistics(model)
    for key, value in self.pairs:
      key.assign(value)

  @staticmethod
  def _averaged(model) -> List[tf.Variable]:
    """Every variable of the encoder and the projection head, in a fixed order."""
    return list(model.encoder.variables) + list(model.projection_head.variables)

  def project(self, flat_images):
    """The momentum model's projections [n, P] of images [n, H, W, C]: BatchNorm
    in training mode (the batch's statistics) without touching its moving
    statistics. Call it in the replica function."""
    kept = [v.read_value() for v in self._statistics]
    z = self.model.project(self.model.encode(flat_images, training=True), training=True)
    with tf.control_dependencies([z]):
      for var, value in zip(self._statistics, kept):
        var.assign(value)
    return tf.stop_gradient(tf.identity(z))

  def update(self) -> None:
    """key = m * key + (1 - m) * online for every pair (cross-replica context)."""
    m = self.momentum
    for key, value in self.pairs:
      key.assign(m * key + (1.0 - m) * tf.cast(value, key.dtype))


def create(cfg, model, factory) -> "tuple[Optional[ProjectionQueue], Optional[MomentumEncoder]]":
  """The run's queue and momentum encoder (None where off). Call in the strategy's scope.

  Args:
    cfg: the run's config (--memory_size, --momentum_encoder, projection size).
    model: the online SupConModel.
    factory: builds another SupConModel of the run's configuration (the momentum one).
  """
  size = cfg.loss.memory_size
  if size <= 0:
    return None, None
  queue = ProjectionQueue(size, cfg.model.projection_head_layers[-1])
  momentum = None
  if cfg.loss.momentum_encoder > 0:
    momentum = MomentumEncoder(factory(), model, cfg.loss.momentum_encoder)
  return queue, momentum
