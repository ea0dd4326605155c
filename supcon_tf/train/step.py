"""The replica step: forward pass, loss terms, gradients, all-reduce, update.

`StageStep(...).replica_fn(batch)` runs one training step of one stage on one
replica's batch {"views" [b, V, H, W, C], "labels" [b] (, "blur_seeds", "corrupt")}
inside `strategy.run`; `train_loop` wraps it in the compiled inner loop that the outer
loop (`loop.py`) calls for a chunk of steps. Only the metrics the step updates leave
it; summaries and checkpoints are the outer loop's business.

Loss scaling under replicas: every term is a per-replica sum divided by the global
batch (weight decay divided by the replica count), so the gradients summed over
replicas equal the single-device gradient of the global batch.
"""

from typing import Dict

import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf import distribute
from supcon_tf import losses
from supcon_tf import optim
from supcon_tf.data.augment import ops as augment_ops
from supcon_tf.train import plan as plan_lib
from supcon_tf.train import recovery

# Means over the steps of a chunk (per-replica values whose replica mean is global).
MEAN_METRICS = ("loss", "contrastive_loss", "cross_entropy_loss", "weight_decay_loss",
                "train_accuracy", "gradient_norm")


def create_metrics() -> Dict[str, keras.metrics.Metric]:
  """The step's metrics (create them in the strategy's scope)."""
  metrics = {name: keras.metrics.Mean(name) for name in MEAN_METRICS}
  # The images skipped (undecodable) in the chunk, summed over replicas.
  metrics["corrupt_images"] = keras.metrics.Sum("corrupt_images")
  return metrics


class StageStep:
  """The replica step of one stage (see the module docstring).

  The step is compiled in pieces around its synchronisation points (with
  --jit_compile): the gather of the projections and the gradient all-reduce go
  through `merge_call`, which cannot run inside a nested compiled function. A piece
  with BatchNorm collectives (global BN) is compiled only where TensorFlow lowers
  collectives into XLA without `merge_call` (all replicas on GPUs); on CPU replicas
  it runs uncompiled. TPUStrategy compiles the whole step by itself.
  """

  def __init__(self, cfg: config_lib.Config, plan: plan_lib.StagePlan, model,
               variables, optimizer, metrics: Dict[str, keras.metrics.Metric],
               strategy: tf.distribute.Strategy, num_classes: int,
               blur_probability: float, synchronized_batch_norm: bool,
               global_step: tf.Variable = None, queue=None, momentum=None):
    """Args:
      cfg: the run's config.
      plan: the stage.
      model: the SupConModel.
      variables: what the stage trains (`state.stage_variables`).
      optimizer: the stage's optimizer (possibly a LossScaleOptimizer).
      metrics: `create_metrics()`, updated by every step.
      strategy: the strategy the step runs under.
      num_classes: classifier outputs.
      blur_probability: of the deferred blur, applied when a batch has "blur_seeds".
      synchronized_batch_norm: whether BatchNorm layers all-reduce their statistics.
      global_step: the run's (read only by the fault injection of recovery.py).
      queue: the run's `memory.ProjectionQueue` (--memory_size), or None.
      momentum: the run's `memory.MomentumEncoder` (--momentum_encoder), or None.
    """
    self.cfg, self.plan, self.model = cfg, plan, model
    self.variables, self.optimizer, self.metrics = variables, optimizer, metrics
    self.strategy = strategy
    self.num_replicas = strategy.num_replicas_in_sync
    self.num_classes = num_classes
    self.blur_probability = blur_probability
    self.loss_scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
    self.encoder_training, self.kept_statistics = self._encoder_batch_norm()
    self.encode, self.heads, self.loss = self._pieces(synchronized_batch_norm)
    self.global_step = global_step
    self.nan_steps = recovery.injected_nan_steps()  # fault injection (tests)
    # The queue takes part in contrastive stages only (the momentum encoder with it).
    self.queue = queue if plan.contrastive else None
    self.momentum = momentum if self.queue is not None else None
    # Run in cross-replica context after each step (train_loop), or None.
    self.after_step = self.momentum.update if self.momentum is not None else None

  # ---------------------------------------------------------------- pieces
  def _xla(self, fn, has_collectives: bool):
    """`fn` XLA-compiled with --jit_compile (see the class docstring), or `fn`."""
    if (not self.cfg.runtime.jit_compile or
        isinstance(self.strategy, tf.distribute.TPUStrategy) or
        (has_collectives and not distribute.xla_holds_collectives(self.strategy))):
      return fn
    return tf.function(fn, jit_compile=True)

  def _encoder_batch_norm(self):
    """(training flag of the encoder, moving statistics to keep unchanged)."""
    stage = self.plan.config
    if stage.update_encoder_batch_norm:
      return True, []
    if stage.frozen_batch_norm == config_lib.FrozenBatchNorm.INFERENCE:
      return False, []
    return True, [v for layer in self.model.encoder.submodules
                  if isinstance(layer, keras.layers.BatchNormalization)
                  for v in (layer.moving_mean, layer.moving_variance)]

  def _pieces(self, synchronized_batch_norm: bool):
    """(encode or None, heads, loss): the step's pieces free of synchronisation
    points; encode is None when the encoder trains (it runs with the heads)."""
    m, plan, cfg = self.model, self.plan, self.cfg
    encoder_training = self.encoder_training
    first_view_only = plan.num_views > 1

    def encode(flat):
      return m.encode(flat, training=encoder_training)

    def heads(h):
      """h [b * V, D] (sample-major) -> (z [b, V, P] or None, logits [b, C] or None)."""
      head_in = m.head_input(h)
      z = None
      if plan.contrastive:
        z = m.projection_head(head_in, training=True)
        z = tf.reshape(z, [-1, plan.num_views, z.shape[-1]])
      logits = None
      if plan.cross_entropy:
        if first_view_only:  # the authors' classifier sees the first view only
          head_in = tf.reshape(head_in, [-1, plan.num_views, head_in.shape[-1]])[:, 0]
        logits = m.classifier(head_in)  # float32: the classifier's dtype
      return z, logits

    def encode_and_heads(flat):
      return heads(encode(flat))

    trained = {v.ref() for v in self.variables}
    decay_vars = [v for v in optim.decay_variables(m, plan.config,
                                                   cfg.loss.use_bias_weight_decay)
                  if v.ref() in trained]  # a frozen encoder is not shrunk
    encoder_sync = synchronized_batch_norm and encoder_training
    heads_sync = (synchronized_batch_norm and plan.contrastive and
                  cfg.model.use_projection_batch_norm)
    loss = self._xla(lambda z, logits, labels, gathered, memory: self._loss_terms(
        z, logits, labels, gathered, memory, decay_vars), False)
    if plan.trains_encoder(cfg.model.stop_gradient_before_classification_head):
      return None, self._xla(encode_and_heads, encoder_sync or heads_sync), loss
    return self._xla(encode, encoder_sync), self._xla(heads, heads_sync), loss

  def _loss_terms(self, z, logits, labels, gathered, memory, decay_vars):
    """The weighted loss terms of a replica, each scaled for the global batch."""
    plan, lc = self.plan, self.cfg.loss
    global_batch = self.cfg.runtime.batch_size
    total = contrastive = cross_entropy = accuracy = tf.constant(0.0)
    if plan.contrastive:
      per_sample = losses.supcon_loss(
          z, labels if lc.use_labels else None, temperature=lc.temperature,
          contrast_mode=lc.contrast_mode, summation=lc.summation_location,
          denominator=lc.denominator_mode, positives_cap=lc.positives_cap,
          scale_by_temperature=lc.scale_by_temperature, gathered=gathered,
          memory=memory, chunk_size=lc.loss_chunk_size)
      # sum / global batch on each replica: summed gradients == global mean.
      contrastive = losses.per_replica_mean(per_sample, global_batch)
      total += plan.config.contrastive_loss_weight * contrastive
    if plan.cross_entropy:
      onehot = tf.one_hot(labels, self.num_classes)
      per_sample = keras.losses.categorical_crossentropy(
          onehot, logits, from_logits=True, label_smoothing=lc.label_smoothing)
      cross_entropy = tf.reduce_sum(per_sample) / global_batch
      total += plan.config.cross_entropy_loss_weight * cross_entropy
      accuracy = tf.reduce_mean(tf.cast(tf.equal(
          tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
    # Each replica adds 1/R of the decay so that the summed gradient is one decay.
    decay = optim.weight_decay_loss(decay_vars, plan.config.weight_decay) / (
        self.num_replicas)
    total += decay
    return {"loss": total, "contrastive_loss": contrastive,
            "cross_entropy_loss": cross_entropy, "weight_decay_loss": decay,
            "train_accuracy": accuracy}

  # ---------------------------------------------------------------- the step
  def replica_fn(self, batch) -> None:
    """One step on this replica's batch; updates the variables and the metrics.

    Args:
      batch: {"views" [b, V, H, W, C], "labels" [b]} (+ "blur_seeds" [b, V, 2] with
        --defer_blur, "corrupt" [b] for sources that report undecodable images).
    """
    views, labels = batch["views"], batch["labels"]
    flat = tf.reshape(views, tf.concat([[-1], tf.shape(views)[2:]], 0))
    flat = tf.ensure_shape(flat, [None] + views.shape[2:].as_list())
    if "blur_seeds" in batch:  # --defer_blur: each view keeps its own seed
      flat = augment_ops.batch_random_blur(flat, tf.reshape(batch["blur_seeds"], [-1, 2]),
                                           self.blur_probability)
    kept_values = [v.read_value() for v in self.kept_statistics]
    opt = self.optimizer
    if self.encode is not None:
      # Frozen encoder (linear evaluation): forward pass only, outside the tape.
      h = tf.stop_gradient(self.encode(flat))
    with tf.GradientTape() as tape:
      z, logits = self.heads(flat if self.encode is None else h)
      # The gather is a synchronisation point: here, outside any compiled piece.
      use_labels = self.cfg.loss.use_labels
      # The queue keeps labels even for SimCLR: gather them with the projections once.
      gathered = (losses.gather_global_batch(
          z, labels if use_labels or self.queue is not None else None)
                  if self.plan.contrastive else None)
      # The queue as it was before this step (it never holds the current batch).
      memory = (self.queue.memory(self.cfg.loss.use_labels)
                if self.queue is not None else None)
      terms = self.loss(z, logits, labels, gathered if use_labels or gathered is None
                        else gathered._replace(labels=None), memory)
      if self.nan_steps and self.global_step is not None:  # fault injection (tests)
        terms = recovery.poison(terms, self.global_step + 1, self.nan_steps,
                                "contrastive_loss" if self.plan.contrastive
                                else "cross_entropy_loss")
      objective = opt.get_scaled_loss(terms["loss"]) if self.loss_scaled else terms["loss"]
    for var, value in zip(self.kept_statistics, kept_values):  # authors' frozen BN
      var.assign(value)
    grads = tape.gradient(objective, self.variables)
    if self.loss_scaled:
      grads = opt.get_unscaled_gradients(grads)
    # Sum the gradients over replicas here (instead of inside the optimizer) so that
    # the norm of the gradient actually applied can be reported at no extra cost.
    if self.num_replicas > 1:
      grads = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads)
    gradient_norm = tf.linalg.global_norm(grads)
    opt.apply_gradients(zip(grads, self.variables), experimental_aggregate_gradients=False)
    if self.queue is not None:
      self._enqueue(flat, z, labels, gathered)
    r = float(self.num_replicas)
    for name in ("loss", "contrastive_loss", "cross_entropy_loss", "weight_decay_loss"):
      self.metrics[name].update_state(terms[name] * r)
    self.metrics["train_accuracy"].update_state(terms["train_accuracy"])
    self.metrics["gradient_norm"].update_state(gradient_norm)
    if "corrupt" in batch:  # summed over replicas: the images skipped in the step
      self.metrics["corrupt_images"].update_state(
          tf.reduce_sum(tf.cast(batch["corrupt"], tf.float32)))

  def _enqueue(self, flat, z, labels, gathered) -> None:
    """Appends every view of the global batch to the queue, sample-major: the
    momentum model's projections of `flat`, else the online ones (`gathered`)."""
    num_views = self.plan.num_views
    if self.momentum is not None:
      keys = tf.reshape(self.momentum.project(flat), [-1, num_views, z.shape[-1]])
      gathered = losses.gather_global_batch(keys, labels)
    entries = self.cfg.runtime.batch_size * num_views  # static: the ring's slots
    self.queue.enqueue(tf.reshape(gathered.features, [entries, z.shape[-1]]),
                       tf.reshape(tf.repeat(gathered.labels, num_views), [entries]))


def train_loop(strategy: tf.distribute.Strategy, stage_step: StageStep,
               global_step: tf.Variable):
  """The compiled inner loop.

  Args:
    strategy: the strategy the steps run under.
    stage_step: its `replica_fn` runs on every replica, then its `after_step` (if
      any) in cross-replica context.
    global_step: advanced by one per step.

  Returns:
    `loop(iterator, num_steps)`, a `tf.function` running `num_steps` steps (a
    tensor, so chunks of any length share one trace).
  """

  @tf.function
  def loop(iterator, num_steps):
    for _ in tf.range(num_steps):
      strategy.run(stage_step.replica_fn, args=(next(iterator),))
      if stage_step.after_step is not None:
        stage_step.after_step()
      global_step.assign_add(1)
  return loop


def single_step(strategy: tf.distribute.Strategy, stage_step: StageStep):
  """One compiled step without a global step (tests and benchmarks).

  Args:
    strategy: the strategy the step runs under.
    stage_step: as in `train_loop`.

  Returns:
    `step(distributed_batch)`, a `tf.function`.
  """

  @tf.function
  def step(batch):
    strategy.run(stage_step.replica_fn, args=(batch,))
    if stage_step.after_step is not None:
      stage_step.after_step()
  return step
