"""Contrastive losses: SupCon (Khosla et al. 2020, Eq. 2 and 3) and SimCLR (Eq. 1).

`supcon_loss` is pure math plus one thing a distributed loss cannot avoid: when it
runs inside a `tf.distribute` replica context with more than one replica, it gathers
the projections (and integer labels) of every replica with
`ReplicaContext.all_gather`, so that each replica's views are anchors against the
views of the *global* batch. `all_gather` is differentiable: the gradient reaching a
replica's features is the sum over replicas of the upstream gradients for its slice.
The gather is also a function of its own, `gather_global_batch`, so that a caller can
run it in the replica function and compile only the math (`gathered=`).

Loss scaling under replicas: if every replica reduces its per-sample losses as
`sum(per_sample) / global_batch`, the implicit all-reduce-sum of the gradients
(done by the optimizer) yields exactly the gradient of the mean loss over the
global batch on one device. `per_replica_mean` below does that reduction.

The function takes no strategy object and reads no flags.
"""

from typing import NamedTuple, Optional, Union

import tensorflow as tf
import tf_keras as keras

from supcon_tf import losses_chunked
from supcon_tf import losses_fused
from supcon_tf import losses_general
from supcon_tf import losses_memory
from supcon_tf.losses_memory import Memory
from supcon_tf.config import ContrastMode, DenominatorMode, SummationLocation

__all__ = [
    "ContrastMode",
    "Summation",
    "Denominator",
    "GlobalBatch",
    "Memory",
    "gather_global_batch",
    "supcon_loss",
    "per_replica_mean",
    "SupConLoss",
]


# The mode enums live in enums.py (no TensorFlow there; re-exported by config.py) so
# that flags, configs and the loss share one definition.
Summation = SummationLocation
Denominator = DenominatorMode


def _as_enum(value, enum_cls, arg_name):
  if isinstance(value, enum_cls):
    return value
  if isinstance(value, str):
    try:
      return enum_cls(value.lower())
    except ValueError:
      pass
  choices = "|".join(m.value for m in enum_cls)
  raise ValueError(f"{arg_name} must be one of {choices} (or a {enum_cls.__name__}),"
                   f" got {value!r}")


def _replica_info():
  """(replica context or None, number of replicas in sync)."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:  # cross-replica context: nothing to gather, treat as one device
    return None, 1
  return ctx, ctx.num_replicas_in_sync


def _static_value(x):
  """`x` as a Python float when known before running (number, NumPy scalar, eager
  or constant tensor), else None (e.g. a variable or a placeholder)."""
  if isinstance(x, tf.Variable):
    return None
  if tf.is_tensor(x):
    x = tf.get_static_value(x)
    if x is None:
      return None
  try:
    return float(x)
  except (TypeError, ValueError):
    return None


def _validate(features, labels, temperature, num_views, positives_cap):
  if features.shape.rank != 3:
    raise ValueError("features must have rank 3 [batch, views, dim], got shape "
                     f"{features.shape}")
  if num_views is None or features.shape[2] is None:
    raise ValueError("features must have static views and dim dimensions, got "
                     f"shape {features.shape}")
  if num_views < 1:
    raise ValueError(f"features must have at least 1 view, got shape {features.shape}")
  if not features.dtype.is_floating:
    raise ValueError(f"features must be a float tensor, got {features.dtype.name}")
  static_temperature = _static_value(temperature)
  if static_temperature is not None and not static_temperature > 0:
    raise ValueError(f"temperature must be > 0, got {static_temperature}")
  if not isinstance(positives_cap, int) or isinstance(positives_cap, bool):
    raise ValueError(f"positives_cap must be an int, got {positives_cap!r}")
  if positives_cap < -1:
    raise ValueError(f"positives_cap must be -1 (no cap) or >= 0, got {positives_cap}")
  if positives_cap > 0 and positives_cap % num_views:
    raise ValueError(f"positives_cap ({positives_cap}) must be a multiple of the "
                     f"number of views ({num_views})")
  if labels is not None:
    if labels.shape.rank not in (1, 2):
      raise ValueError("labels must be integer class ids [batch] or one-hot "
                       f"[batch, classes], got shape {labels.shape}")
    if labels.shape.rank == 1 and not labels.dtype.is_integer:
      raise ValueError("rank-1 labels must be integer class ids, got dtype "
                       f"{labels.dtype.name}")
    b_feat, b_lab = features.shape[0], labels.shape[0]
    if b_feat is not None and b_lab is not None and b_feat != b_lab:
      raise ValueError(f"labels batch ({b_lab}) != features batch ({b_feat})")


class GlobalBatch(NamedTuple):
  """The features (and class ids) of every replica, and where this replica's
  samples start among them."""
  features: tf.Tensor  # [global_batch, views, dim]
  labels: Optional[tf.Tensor]  # int32 [global_batch] or None
  offset: tf.Tensor  # int32 scalar


def _class_ids(labels):
  """int32 class ids [batch] of integer or one-hot/multi-hot labels (or None)."""
  if labels is None:
    return None
  labels = tf.convert_to_tensor(labels)
  if labels.shape.rank == 2:
    return tf.argmax(labels, axis=-1, output_type=tf.int32)
  return tf.cast(labels, tf.int32)


def gather_global_batch(features, labels=None) -> GlobalBatch:
  """All-gathers `features` [batch, ...] (and integer class ids) across the replicas
  in sync; the identity on one replica or in a cross-replica context.

  Kept apart from the loss math because the gather is a synchronisation point
  (`ReplicaContext.all_gather` goes through `merge_call`): it must run in the
  replica function itself, never inside a nested (e.g. XLA-compiled) tf.function.

  Args:
    features: [batch, ...] tensor of this replica.
    labels: None, integer class ids [batch] or one-hot / multi-hot [batch,
      classes] (argmax is used).

  Returns:
    A `GlobalBatch`: the features and int32 class ids (None without labels) of
    every replica in replica order, and the offset of this replica's samples.
  """
  features = tf.convert_to_tensor(features)
  labels = _class_ids(labels)
  ctx, num_replicas = _replica_info()
  if num_replicas == 1:
    return GlobalBatch(features, labels, tf.constant(0, tf.int32))
  # MultiWorkerMirroredStrategy takes the gather's destination from the tensor's
  # device, which a tf.function argument (e.g. the input batch's labels) does not
  # have ("destinations can not be empty"): gather placed copies.
  features = tf.identity(features)
  labels = None if labels is None else tf.identity(labels)
  global_features = ctx.all_gather(features, axis=0)
  # Offset of this replica's samples in the global batch. Local batches may
  # differ in size (the last eval batch), so gather the sizes.
  local_batch = tf.shape(features)[0]
  sizes = ctx.all_gather(tf.reshape(local_batch, [1]), axis=0)
  replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
  offset = tf.reduce_sum(tf.where(tf.range(num_replicas) < replica_id, sizes, 0))
  global_labels = None if labels is None else ctx.all_gather(labels, axis=0)
  return GlobalBatch(global_features, global_labels, offset)


def supcon_loss(features,
                labels=None,
                *,
                temperature: Union[float, tf.Tensor] = 0.1,
                contrast_mode: Union[str, ContrastMode] = "all_views",
                summation: Union[str, Summation] = "outside",
                denominator: Union[str, Denominator] = "all",
                positives_cap: int = -1,
                scale_by_temperature: bool = True,
                gathered: Optional[GlobalBatch] = None,
                memory: Optional[Memory] = None,
                chunk_size: int = 0) -> tf.Tensor:
  """Supervised contrastive loss; SimCLR's NT-Xent when `labels` is None.

  Args:
    features: [batch, views, dim] float tensor (any float dtype; math in float32).
      Usually L2-normalised projections; unnormalised inputs are handled stably.
    labels: None (each sample of the global batch is its own class), integer class
      ids [batch], or one-hot / multi-hot [batch, classes] (argmax is used).
    temperature: tau > 0.
    contrast_mode: "all_views" (every view is an anchor) or "one_view" (view 0).
    summation: "outside" (Eq. 2, L_out) or "inside" (Eq. 3, L_in).
    denominator: "all", "one_positive" or "only_negatives".
    positives_cap: -1 for no cap; otherwise at most this many positives other than
      the anchor's own views: each anchor keeps the first `cap // views` other
      samples of its class in global batch order, with all their views. Capped-out
      positives are neither positives nor negatives. Must divide by `views`.
    scale_by_temperature: multiply the loss by tau (as the authors' release does),
      which keeps gradient magnitudes independent of tau.
    gathered: the global batch from `gather_global_batch(features, labels)`, when
      the caller gathered it already (e.g. outside an XLA-compiled loss, which
      must not contain the gather). None: gathered here.
    memory: a `Memory` queue of K earlier projections: K extra contrast columns
      for every anchor (positives when labels are used and equal, else
      negatives; never anchors, never self; invalid entries ignored; no
      gradient into them). Takes the general path (`losses_general.py`). Not
      with positives_cap >= 0 (ValueError). None or static K = 0: no memory,
      exactly the loss without one.
    chunk_size: 0: plain computation. C > 0: the same losses and gradients with
      the anchor rows processed C at a time, recomputed in the backward pass
      (`losses_chunked.py`): memory O(C x columns) instead of O(anchors x
      columns). C >= the anchor rows (if known statically): plain.

  Returns:
    float32 [batch]: per-sample loss, the mean over that sample's anchor views. An
    anchor with no positive (or, with `only_negatives`, no negative) contributes 0.

  Raises:
    ValueError: bad ranks/shapes/dtypes, unknown modes, tau <= 0, bad cap, bad
      chunk_size, bad memory or a memory with a cap.
  """
  features = tf.convert_to_tensor(features)
  labels = None if labels is None else tf.convert_to_tensor(labels)
  contrast_mode = _as_enum(contrast_mode, ContrastMode, "contrast_mode")
  summation = _as_enum(summation, Summation, "summation")
  denominator = _as_enum(denominator, Denominator, "denominator")
  num_views = features.shape[1] if features.shape.rank == 3 else None
  _validate(features, labels, temperature, num_views, positives_cap)
  if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 0:
    raise ValueError(f"chunk_size must be an int >= 0, got {chunk_size!r}")
  memory = losses_memory.prepare(memory, features.shape[2], labels is not None,
                                 positives_cap)

  if gathered is None:
    gathered = gather_global_batch(features, labels)
  # One scope for the math (forward and, as gradient_tape/supcon_loss/..., backward):
  # profiles and graphs show the loss as one block.
  with tf.name_scope("supcon_loss"):
    return _loss_math(features, labels, gathered, temperature, contrast_mode,
                      summation, denominator, positives_cap, scale_by_temperature,
                      num_views, memory, chunk_size)


def _loss_math(features, labels, gathered, temperature, contrast_mode, summation,
               denominator, positives_cap, scale_by_temperature, num_views, memory,
               chunk_size):
  """`supcon_loss` after validation and the gather (same arguments)."""
  features = tf.cast(features, tf.float32)
  labels = _class_ids(labels)
  global_features = tf.cast(gathered.features, tf.float32)
  global_labels, offset = gathered.labels, gathered.offset
  if (labels is None) != (global_labels is None):
    raise ValueError("labels and the gathered labels go together")
  temperature = tf.cast(temperature, tf.float32)
  local_batch = tf.shape(features)[0]
  all_views = contrast_mode == ContrastMode.ALL_VIEWS
  num_anchor_views = num_views if all_views else 1
  num_rows = None if features.shape[0] is None else num_anchor_views * features.shape[0]
  chunked = chunk_size > 0 and (num_rows is None or num_rows > chunk_size)

  if (summation == Summation.OUTSIDE and denominator == Denominator.ALL
      and positives_cap < 0 and memory is None):
    # The paper's loss (and SimCLR's): the fused path, same numbers, far fewer
    # passes over the [anchors, global views] logits (chunked: its log-sum-exp).
    same_class = None
    if not chunked:
      same_class = (offset + tf.range(local_batch))[:, None] == tf.range(
          tf.shape(global_features)[0])[None, :]
      if labels is not None:
        same_class = labels[:, None] == global_labels[None, :]
    return losses_fused.supcon_outside_all(
        features[:, :num_anchor_views], global_features, num_views,
        same_class, offset, temperature, scale_by_temperature,
        # One replica (the gather was the identity): anchors == contrast views.
        symmetric=all_views and global_features is features,
        chunk_size=chunk_size if chunked else 0, labels=labels,
        global_labels=global_labels)

  # The general path (losses_general.py). Rows are anchors, view-major
  # ([v0 of every local sample, v1 of every local sample, ...]); columns are the
  # global views, view-major likewise, then the memory entries.
  contrast = tf.reshape(tf.transpose(global_features, [1, 0, 2]),
                        [num_views * tf.shape(global_features)[0], features.shape[2]])
  # 1/tau on the anchors [N, d], not on the logits [N, M].
  anchors = tf.reshape(tf.transpose(features[:, :num_anchor_views], [1, 0, 2]),
                       [num_anchor_views * local_batch, -1]) / temperature
  anchor_view = tf.repeat(tf.range(num_anchor_views), local_batch)
  anchor_sample = offset + tf.tile(tf.range(local_batch), [num_anchor_views])
  anchor_label = None if labels is None else tf.tile(labels, [num_anchor_views])
  row_kwargs = dict(
      global_labels=global_labels, num_views=num_views,
      memory_features=None if memory is None else memory.features,
      memory_labels=None if memory is None else memory.labels,
      memory_valid=None if memory is None else memory.valid,
      summation=summation, denominator=denominator, positives_cap=positives_cap)
  if chunked:
    anchor_loss = losses_chunked.chunked_row_losses(
        anchors, anchor_sample, anchor_view, anchor_label, contrast, chunk_size,
        **row_kwargs)
  else:
    anchor_loss = losses_general.anchor_row_losses(
        anchors, anchor_sample, anchor_view, anchor_label, contrast, **row_kwargs)
  if scale_by_temperature:
    anchor_loss *= temperature
  return tf.reduce_mean(tf.reshape(anchor_loss, [num_anchor_views, local_batch]), axis=0)


def per_replica_mean(per_sample_loss, global_batch_size: Optional[int] = None):
  """Reduces per-sample losses so that summing over replicas gives the global mean.

  Each replica returns sum(local losses) / global_batch: the all-reduce-sum of the
  gradients that optimizers do under `tf.distribute` then equals the gradient of
  the global-batch mean on one device.

  Args:
    per_sample_loss: [batch] losses of this replica.
    global_batch_size: the global batch; None: the local batch times the number
      of replicas in sync.

  Returns:
    float32 scalar: sum(per_sample_loss) / global_batch_size.
  """
  per_sample_loss = tf.cast(per_sample_loss, tf.float32)
  if global_batch_size is None:
    _, num_replicas = _replica_info()
    global_batch_size = tf.cast(tf.shape(per_sample_loss)[0] * num_replicas, tf.float32)
  return tf.reduce_sum(per_sample_loss) / tf.cast(global_batch_size, tf.float32)


class SupConLoss(keras.losses.Loss):
  """Keras `Loss` wrapper around `supcon_loss` for `model.compile` users.

  `y_true` are the labels (integer ids [batch] or one-hot; pass `use_labels=False`
  for SimCLR), `y_pred` the [batch, views, dim] projections. The per-sample losses
  are reduced by Keras according to `reduction`.

  Args:
    temperature, contrast_mode, summation, denominator, positives_cap,
      scale_by_temperature: as in `supcon_loss`.
    use_labels: pass `y_true` to the loss as labels (SupCon); False: SimCLR.
    reduction: Keras reduction of the per-sample losses.
    name: the loss's name.

  Raises:
    ValueError: an unknown mode or temperature <= 0 (at construction).
  """

  def __init__(self,
               temperature=0.1,
               contrast_mode="all_views",
               summation="outside",
               denominator="all",
               positives_cap=-1,
               scale_by_temperature=True,
               use_labels=True,
               reduction=keras.losses.Reduction.AUTO,
               name="supcon_loss"):
    super().__init__(reduction=reduction, name=name)
    # Validate the modes now rather than at the first call.
    self._kwargs = dict(
        temperature=temperature,
        contrast_mode=_as_enum(contrast_mode, ContrastMode, "contrast_mode").value,
        summation=_as_enum(summation, Summation, "summation").value,
        denominator=_as_enum(denominator, Denominator, "denominator").value,
        positives_cap=positives_cap,
        scale_by_temperature=scale_by_temperature)
    if not temperature > 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    self.use_labels = use_labels

  def call(self, y_true, y_pred):
    """Per-sample losses.

    Args:
      y_true: labels: integer ids [batch] (or Keras' [batch, 1]), float ids or
        one-hot [batch, classes]; ignored unless `use_labels`.
      y_pred: [batch, views, dim] projections.

    Returns:
      float32 [batch]: `supcon_loss` of each sample.
    """
    labels = y_true if self.use_labels else None
    if labels is not None:
      labels = tf.convert_to_tensor(labels)
      if labels.shape.rank == 2 and labels.shape[-1] == 1:  # Keras' [batch, 1] ids
        labels = tf.squeeze(labels, -1)
      if labels.shape.rank == 1 and not labels.dtype.is_integer:
        labels = tf.cast(labels, tf.int32)
    return supcon_loss(y_pred, labels, **self._kwargs)

  def get_config(self):
    """Returns the constructor arguments (Keras serialisation)."""
    config = super().get_config()
    config.update(self._kwargs)
    config["use_labels"] = self.use_labels
    return config
