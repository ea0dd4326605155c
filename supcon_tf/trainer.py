"""Training and evaluation: the replica step, the compiled inner loop, the outer loop.

Global steps [0, S1) are stage 1, [S1, S1 + S2) stage 2. The checkpoint holds the
model, both stage optimizers and the global step, so the step alone says which
stage to resume and where its input starts (the input is step-indexed, see
`data/pipeline.py`).
"""

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorboard.plugins.hparams import api as hp

from supcon_tf import config as config_lib
from supcon_tf import distribute
from supcon_tf import losses
from supcon_tf import optim
from supcon_tf import projector as projector_lib
from supcon_tf.data import augment
from supcon_tf.data import pipeline
from supcon_tf.models import build_model


class NonFiniteLossError(RuntimeError):
  pass


class CorruptDataError(RuntimeError):
  """More than --max_corrupt_fraction of the images did not decode."""


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """What one stage trains, resolved from its StageConfig."""
  index: int  # 1 or 2
  config: config_lib.StageConfig
  first_step: int  # global step at which the stage starts
  num_steps: int
  steps_per_epoch: int
  num_views: int

  @property
  def end_step(self):
    return self.first_step + self.num_steps

  @property
  def contrastive(self):
    return self.config.contrastive_loss_weight > 0

  @property
  def cross_entropy(self):
    return self.config.cross_entropy_loss_weight > 0


def plan_stages(cfg: config_lib.Config, num_train_examples: int,
                steps_per_epoch: Optional[int] = None) -> List[StagePlan]:
  """The stages' step ranges. `steps_per_epoch` defaults to whole global batches
  of `num_train_examples` (a streamed source can have fewer: its smallest shard)."""
  spe = (pipeline.steps_per_epoch(num_train_examples, cfg.runtime.batch_size)
         if steps_per_epoch is None else steps_per_epoch)
  plans, first = [], 0
  for index, stage in ((1, cfg.stage_1), (2, cfg.stage_2)):
    steps = stage.steps if stage.steps > 0 else int(round(stage.epochs * spe))
    if steps > 0 and spe < 1:
      raise config_lib.ConfigError(
          f"--batch_size={cfg.runtime.batch_size} is larger than the "
          f"{num_train_examples} training examples")
    views = cfg.data.num_views if stage.contrastive_loss_weight > 0 else 1
    plans.append(StagePlan(index, stage, first, steps, spe, views))
    first += steps
  return plans


def untrained_classifier_reason(stages: List[StagePlan], step: int) -> Optional[str]:
  """Why the classifier has not been trained by global step `step`, or None.

  A top-1 of an untrained classifier is chance at best (with a zero-initialised
  classifier every logit ties), so no number is reported for it.
  """
  trains = [p for p in stages if p.cross_entropy and p.num_steps > 0]
  if not trains:
    return ("no stage trains the classifier (no cross-entropy stage with steps: "
            "e.g. --stage_2_steps=0 --stage_2_epochs=0)")
  if not any(step > p.first_step for p in trains):
    return (f"the classifier is untrained at global step {step}: its training "
            f"starts at global step {trains[0].first_step} (stage {trains[0].index})")
  return None


def top_k_hits(logits, labels, k: int):
  """1.0 where the label's logit is among the k largest, 0.0 elsewhere; a tie never
  counts as a hit (unlike `tf.math.in_top_k`): every other class scoring at least as
  high as the label takes a rank above it. A non-finite label logit is a miss."""
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int32)
  true = tf.gather(logits, labels[:, None], batch_dims=1)  # [batch, 1]
  above = tf.reduce_sum(tf.cast(logits >= true, tf.int32), axis=1) - 1  # not itself
  hit = tf.logical_and(above < k, tf.math.is_finite(true[:, 0]))
  return tf.cast(hit, tf.float32)


class Trainer:
  """Owns the model, optimizers, checkpoint and the compiled steps."""

  def __init__(self, cfg: config_lib.Config, strategy: tf.distribute.Strategy,
               source, model_dir: str, is_chief: bool = True, verbose: bool = True):
    """`source`: a data source of `data/datasets.py` (in memory, streamed TFDS or
    image folder)."""
    self.cfg = cfg
    self.strategy = strategy
    self.source = source
    self.model_dir = model_dir
    self.is_chief = is_chief
    self.verbose = verbose
    self.num_replicas = strategy.num_replicas_in_sync
    self.num_input_pipelines = distribute.num_input_pipelines(strategy)
    self.stages = plan_stages(
        cfg, source.num_train,
        source.steps_per_epoch(cfg.runtime.batch_size, self.num_input_pipelines))
    self.input_options = pipeline.InputOptions(
        deterministic=cfg.data.deterministic, threads=cfg.data.input_threads,
        shuffle_buffer_size=cfg.data.shuffle_buffer_size)
    # Image folders flag undecodable images; they are counted per epoch.
    self.counts_corrupt = bool(getattr(source, "reports_corrupt", False))
    # --defer_blur: the pipeline emits blur seeds, the replica step blurs.
    self.defer_blur = (cfg.data.defer_blur and cfg.data.blur_probability > 0 and
                       cfg.data.augmentation_type.value in augment.BLUR_TYPES)
    self.total_steps = self.stages[-1].end_step
    image_shape = (cfg.data.image_size, cfg.data.image_size, source.num_channels)
    self.image_shape = image_shape

    # BatchNorm statistics over the global batch when there are several replicas,
    # as in the authors' TPU runs (switch: --use_global_batch_norm).
    self.synchronized_batch_norm = cfg.model.use_global_batch_norm and self.num_replicas > 1
    # Whether XLA can hold collectives (BN all-reduces): only on GPU replicas.
    self._xla_collectives = distribute.xla_holds_collectives(strategy)
    with strategy.scope(), _dtype_policy(cfg.runtime.precision):
      self.model = build_model(cfg.model, source.num_classes,
                               synchronized_batch_norm=self.synchronized_batch_norm)
      self.model(tf.zeros((1,) + image_shape), training=False)  # create variables
      self.global_step = tf.Variable(
          0, dtype=tf.int64, trainable=False, name="global_step",
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.kernels = optim.kernel_variables(self.model)
      self.optimizers = {}
      self.train_vars = {}
      for plan in self.stages:
        if plan.num_steps == 0:
          continue
        variables = self._stage_variables(plan)
        schedule = optim.learning_rate_schedule(
            plan.config, cfg.runtime.batch_size, plan.steps_per_epoch, plan.num_steps)
        opt = optim.create_optimizer(plan.config, schedule,
                                     adapted_variables=self.kernels)
        # Build the slots now so a checkpoint restores them eagerly.
        opt._create_all_weights(variables)  # pylint: disable=protected-access
        if cfg.runtime.precision == config_lib.Precision.FLOAT16:
          opt = keras.mixed_precision.LossScaleOptimizer(opt)  # dynamic loss scale
        self.optimizers[plan.index] = opt
        self.train_vars[plan.index] = variables
      self.metrics = {
          name: keras.metrics.Mean(name)
          for name in ("loss", "contrastive_loss", "cross_entropy_loss",
                       "weight_decay_loss", "train_accuracy", "gradient_norm")}
      self.metrics["corrupt_images"] = keras.metrics.Sum("corrupt_images")

    ckpt_objects = {f"stage_{i}_optimizer": opt for i, opt in self.optimizers.items()}
    self.checkpoint = tf.train.Checkpoint(model=self.model, global_step=self.global_step,
                                          **ckpt_objects)
    # Under MultiWorkerMirroredStrategy every worker must take part in saving;
    # only the chief writes into model_dir, the others into a scratch directory.
    save_dir = model_dir if is_chief else os.path.join(
        model_dir, "tmp_worker", str(getattr(strategy.cluster_resolver, "task_id", 0)))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=save_dir, max_to_keep=cfg.runtime.keep_checkpoint_max,
        step_counter=self.global_step)
    self._train_loops = {}
    self._train_steps = {}
    self._step_fns = {}
    self._writers = {}
    self._profiling = False
    self._wrote_config = False

  # ---------------------------------------------------------------- variables
  def _encoder_trains(self, plan: StagePlan) -> bool:
    return plan.contrastive or (
        plan.cross_entropy and not self.cfg.model.stop_gradient_before_classification_head)

  def _stage_variables(self, plan: StagePlan) -> List[tf.Variable]:
    m = self.model
    variables = []
    if self._encoder_trains(plan):
      variables += m.encoder.trainable_variables
    if plan.contrastive:
      variables += m.projection_head.trainable_variables
    if plan.cross_entropy:
      variables += m.classifier.trainable_variables
    return variables

  # ---------------------------------------------------------------- checkpoint
  def latest_checkpoint(self) -> Optional[str]:
    return tf.train.latest_checkpoint(self.model_dir)

  def restore(self) -> int:
    """Restores the latest checkpoint if any; returns the global step."""
    latest = self.latest_checkpoint()
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      self._log(f"restored {latest} (global step {int(self.global_step.numpy())})")
    return int(self.global_step.numpy())

  def save(self):
    path = self.manager.save(checkpoint_number=self.global_step)
    logging.info("saved checkpoint %s", path)
    if not self.is_chief:  # a scratch copy, never read: every worker restores the chief's
      tf.io.gfile.rmtree(self.manager.directory)
    return path

  # ---------------------------------------------------------------- input
  def _input_spec(self, plan: StagePlan, start_step: int):
    """(TrainInputSpec, view kwargs) of a stage's input from its step `start_step`."""
    spec = pipeline.TrainInputSpec(
        global_batch_size=self.cfg.runtime.batch_size, num_views=plan.num_views,
        seed=self.cfg.data.seed, stage=plan.index, start_step=start_step,
        emit_blur_seeds=self.defer_blur)
    view_kwargs = augment.view_kwargs(self.cfg.data)
    if self.defer_blur:
      view_kwargs["blur_probability"] = 0.0  # blurred in the replica step
    return spec, view_kwargs

  def _train_iterator(self, plan: StagePlan, start_step: int):
    spec, view_kwargs = self._input_spec(plan, start_step)

    def dataset_fn(input_context):
      return self.source.train_dataset(spec, view_kwargs, input_context,
                                       self.input_options)

    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def _blur(self, flat_views, blur_seeds):
    """The deferred Gaussian blur of [b * V, H, W, C] views, each with its seed."""
    return augment.batch_random_blur(flat_views, tf.reshape(blur_seeds, [-1, 2]),
                                     self.cfg.data.blur_probability)

  # ---------------------------------------------------------------- train step
  def _xla(self, fn, has_collectives: bool):
    """`fn` XLA-compiled with --jit_compile, or `fn` itself.

    The replica step is compiled in pieces around its synchronisation points: the
    gather of the projections and the gradient all-reduce go through `merge_call`,
    which cannot run inside a nested compiled function. A piece with BatchNorm
    collectives (global BN) is compiled only where TensorFlow lowers collectives
    into XLA without `merge_call` (all replicas on GPUs); on CPU replicas it runs
    uncompiled. TPUStrategy compiles the whole step by itself.
    """
    if (not self.cfg.runtime.jit_compile or
        isinstance(self.strategy, tf.distribute.TPUStrategy) or
        (has_collectives and not self._xla_collectives)):
      return fn
    return tf.function(fn, jit_compile=True)

  def _encoder_batch_norm(self, plan: StagePlan):
    """(training flag of the encoder, moving statistics to keep unchanged)."""
    cfg = plan.config
    if cfg.update_encoder_batch_norm:
      return True, []
    if cfg.frozen_batch_norm == config_lib.FrozenBatchNorm.INFERENCE:
      return False, []
    return True, [v for layer in self.model.encoder._flatten_layers()  # pylint: disable=protected-access
                  if isinstance(layer, keras.layers.BatchNormalization)
                  for v in (layer.moving_mean, layer.moving_variance)]

  def _step_functions(self, plan: StagePlan):
    """(encode, heads, loss) of a stage: the replica step's pieces free of
    synchronisation points, each compiled with --jit_compile."""
    m, cfg = self.model, self.cfg
    encoder_training, _ = self._encoder_batch_norm(plan)
    sync_bn = self.synchronized_batch_norm
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

    trained = {v.ref() for v in self.train_vars[plan.index]}
    decay_vars = [v for v in optim.decay_variables(m, plan.config,
                                                   cfg.loss.use_bias_weight_decay)
                  if v.ref() in trained]  # a frozen encoder is not shrunk
    global_batch = cfg.runtime.batch_size

    def loss(z, logits, labels, gathered):
      stage_cfg, lc = plan.config, cfg.loss
      total = contrastive = cross_entropy = accuracy = tf.constant(0.0)
      if plan.contrastive:
        per_sample = losses.supcon_loss(
            z, labels if lc.use_labels else None, temperature=lc.temperature,
            contrast_mode=lc.contrast_mode, summation=lc.summation_location,
            denominator=lc.denominator_mode, positives_cap=lc.positives_cap,
            scale_by_temperature=lc.scale_by_temperature, gathered=gathered)
        # sum / global batch on each replica: summed gradients == global mean.
        contrastive = losses.per_replica_mean(per_sample, global_batch)
        total += stage_cfg.contrastive_loss_weight * contrastive
      if plan.cross_entropy:
        onehot = tf.one_hot(labels, self.source.num_classes)
        per_sample = keras.losses.categorical_crossentropy(
            onehot, logits, from_logits=True, label_smoothing=lc.label_smoothing)
        cross_entropy = tf.reduce_sum(per_sample) / global_batch
        total += stage_cfg.cross_entropy_loss_weight * cross_entropy
        accuracy = tf.reduce_mean(tf.cast(tf.equal(
            tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
      # Each replica adds 1/R of the decay so that the summed gradient is one decay.
      decay = optim.weight_decay_loss(decay_vars, plan.config.weight_decay) / (
          self.num_replicas)
      total += decay
      return {"loss": total, "contrastive_loss": contrastive,
              "cross_entropy_loss": cross_entropy, "weight_decay_loss": decay,
              "train_accuracy": accuracy}

    encoder_sync = sync_bn and encoder_training
    heads_sync = sync_bn and plan.contrastive and cfg.model.use_projection_batch_norm
    if self._encoder_trains(plan):
      return None, self._xla(encode_and_heads, encoder_sync or heads_sync), \
          self._xla(loss, False)
    return (self._xla(encode, encoder_sync), self._xla(heads, heads_sync),
            self._xla(loss, False))

  def _replica_step(self, plan: StagePlan, batch):
    views, labels = batch["views"], batch["labels"]
    flat = tf.reshape(views, tf.concat([[-1], tf.shape(views)[2:]], 0))
    flat = tf.ensure_shape(flat, [None] + views.shape[2:].as_list())
    if "blur_seeds" in batch:
      flat = self._blur(flat, batch["blur_seeds"])
    if plan.index not in self._step_fns:
      self._step_fns[plan.index] = self._step_functions(plan)
    encode, heads, loss = self._step_fns[plan.index]
    _, kept_statistics = self._encoder_batch_norm(plan)
    kept_values = [v.read_value() for v in kept_statistics]
    variables = self.train_vars[plan.index]
    opt = self.optimizers[plan.index]
    loss_scaled = isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
    if encode is not None:
      # Frozen encoder (linear evaluation): forward pass only, outside the tape.
      h = tf.stop_gradient(encode(flat))
    with tf.GradientTape() as tape:
      z, logits = heads(flat if encode is None else h)
      # The gather is a synchronisation point: here, outside any compiled piece.
      gathered = (losses.gather_global_batch(
          z, labels if self.cfg.loss.use_labels else None) if plan.contrastive else None)
      terms = loss(z, logits, labels, gathered)
      objective = opt.get_scaled_loss(terms["loss"]) if loss_scaled else terms["loss"]
    for var, value in zip(kept_statistics, kept_values):  # authors' frozen BN
      var.assign(value)
    grads = tape.gradient(objective, variables)
    if loss_scaled:
      grads = opt.get_unscaled_gradients(grads)
    # Sum the gradients over replicas here (instead of inside the optimizer) so that
    # the norm of the gradient actually applied can be reported at no extra cost.
    ctx = tf.distribute.get_replica_context()
    if self.num_replicas > 1:
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    gradient_norm = tf.linalg.global_norm(grads)
    opt.apply_gradients(zip(grads, variables), experimental_aggregate_gradients=False)
    # Metrics: per-replica values whose mean over replicas is the global value.
    r = float(self.num_replicas)
    for name in ("loss", "contrastive_loss", "cross_entropy_loss", "weight_decay_loss"):
      self.metrics[name].update_state(terms[name] * r)
    self.metrics["train_accuracy"].update_state(terms["train_accuracy"])
    self.metrics["gradient_norm"].update_state(gradient_norm)
    if "corrupt" in batch:  # summed over replicas: the images skipped in the step
      self.metrics["corrupt_images"].update_state(
          tf.reduce_sum(tf.cast(batch["corrupt"], tf.float32)))

  def _replica_fn(self, plan: StagePlan):
    def train_replica_fn(batch):
      self._replica_step(plan, batch)
    return train_replica_fn

  def _train_loop_fn(self, plan: StagePlan):
    if plan.index not in self._train_loops:
      replica_fn = self._replica_fn(plan)

      @tf.function
      def loop(iterator, num_steps):
        for _ in tf.range(num_steps):
          self.strategy.run(replica_fn, args=(next(iterator),))
          self.global_step.assign_add(1)
      self._train_loops[plan.index] = loop
    return self._train_loops[plan.index]

  def train_step(self, stage_index: int, distributed_batch):
    """One step of stage `stage_index` on a distributed batch (tests, benchmarks).

    Does not advance the global step or touch checkpoints.
    """
    plan = self.stages[stage_index - 1]
    if stage_index not in self._train_steps:
      replica_fn = self._replica_fn(plan)

      @tf.function
      def step(batch):
        self.strategy.run(replica_fn, args=(batch,))
      self._train_steps[stage_index] = step
    self._train_steps[stage_index](distributed_batch)
    return {k: float(v.result()) for k, v in self.metrics.items()}

  def reset_metrics(self):
    for metric in self.metrics.values():
      metric.reset_state()

  def _maybe_reinitialize_classifier(self, plan: StagePlan, local_start: int):
    """Seeded by --seed and the stage: the same values on every worker (each worker
    assigns its own copies) and in every rerun."""
    if plan.config.reinitialize_classifier and local_start == 0:
      for index, layer in enumerate(self.model.classifier._flatten_layers()):  # pylint: disable=protected-access
        if isinstance(layer, keras.layers.Dense):
          init = layer.kernel_initializer
          config = init.get_config()
          if "seed" in config:
            config["seed"] = self.cfg.data.seed * 1000 + plan.index * 100 + index
          seeded = type(init).from_config(config)
          layer.kernel.assign(seeded(layer.kernel.shape, layer.kernel.dtype))
          layer.bias.assign(tf.zeros_like(layer.bias))
      self._log(f"stage {plan.index}: classifier re-initialised")

  # ---------------------------------------------------------------- summaries
  def _writer(self, name):
    if name not in self._writers:
      logdir = os.path.join(self.model_dir, name)
      self._writers[name] = (tf.summary.create_file_writer(logdir) if self.is_chief
                             else tf.summary.create_noop_writer())
    return self._writers[name]

  # ---------------------------------------------------------------- outer loop
  def train(self) -> Dict[str, float]:
    step = self.restore()
    rt = self.cfg.runtime
    last = {}
    if step >= self.total_steps:
      self._log(f"training already finished at global step {step} (latest checkpoint "
                f"in {self.model_dir}); nothing to train")
      return last
    for plan in self.stages:
      if plan.num_steps == 0 or step >= plan.end_step:
        continue
      local_start = step - plan.first_step
      self._maybe_reinitialize_classifier(plan, local_start)
      iterator = self._train_iterator(plan, local_start)
      loop = self._train_loop_fn(plan)
      opt = self.optimizers[plan.index]
      self._log(f"stage {plan.index}: {plan.num_steps} steps "
                f"({plan.num_steps / max(plan.steps_per_epoch, 1):.2f} epochs of "
                f"{plan.steps_per_epoch} steps), {plan.num_views} view(s), global batch "
                f"{rt.batch_size} on {self.num_replicas} replica(s)"
                + (f", resuming at stage step {local_start}" if local_start else ""))
      self._write_start_summaries(plan, step)
      stage_start_time = time.time()
      stage_start_step = step
      corrupt = _CorruptCounter(self, plan)
      while step < plan.end_step:
        next_ckpt = (step // rt.checkpoint_steps + 1) * rt.checkpoint_steps
        chunk = min(rt.steps_per_loop, plan.end_step - step, next_ckpt - step)
        if self.counts_corrupt:  # loops stop at epoch ends, where counts are reported
          chunk = min(chunk, corrupt.next_epoch_end(step) - step)
        for boundary in rt.profile_steps:  # chunks stop where the trace starts/ends
          if boundary > step:
            chunk = min(chunk, boundary - step)
        if rt.log_steps:  # ... and at progress lines
          chunk = min(chunk, (step // rt.log_steps + 1) * rt.log_steps - step)
        self._profiler_control(step)
        self.reset_metrics()
        t0 = time.time()
        loop(iterator, tf.constant(chunk, tf.int32))
        values = {k: float(v.result()) for k, v in self.metrics.items()}
        step = int(self.global_step.numpy())
        elapsed = time.time() - t0
        if not math.isfinite(values["loss"]):
          raise NonFiniteLossError(
              f"non-finite loss {values['loss']} in stage {plan.index} at global step "
              f"{step} (steps {step - chunk + 1}..{step})")
        lr = float(opt.learning_rate(opt.iterations))
        images_per_sec = chunk * rt.batch_size / max(elapsed, 1e-9)
        self._write_train_summaries(plan, values, lr, images_per_sec, step)
        if self.counts_corrupt:
          corrupt.add(step, chunk, values["corrupt_images"])
        done = step - stage_start_step
        rate = done / max(time.time() - stage_start_time, 1e-9)
        eta = (plan.end_step - step) / max(rate, 1e-9)  # this stage's remaining time
        if step % rt.checkpoint_steps == 0 or step == plan.end_step:
          self.save()
        local = step - plan.first_step
        if rt.log_steps and step % rt.log_steps and step != plan.end_step:
          last = values
          continue
        self._log(
            f"stage {plan.index} | epoch {local / max(plan.steps_per_epoch, 1):.2f} | "
            f"step {local}/{plan.num_steps} | loss {values['loss']:.4f} | lr {lr:.4g} | "
            f"{images_per_sec:.0f} images/s | stage ETA {_format_seconds(eta)}")
        last = values
      if plan.contrastive and step == plan.end_step and self.cfg.runtime.projector_examples:
        self.write_projector(f"stage_{plan.index}")
    self._profiler_control(step, final=True)
    return last

  def _profiler_control(self, step: int, final: bool = False):
    """Starts/stops the tf.profiler trace at --profile_steps boundaries."""
    if not self.cfg.runtime.profile_steps or not self.is_chief:
      return
    start, end = self.cfg.runtime.profile_steps
    if not self._profiling and start <= step < end and not final:
      tf.profiler.experimental.start(self.model_dir)
      self._profiling = True
      self._log(f"profiling global steps {step + 1}..{end} into {self.model_dir}/plugins/profile")
    elif self._profiling and (step >= end or final):
      tf.profiler.experimental.stop()
      self._profiling = False

  def _write_start_summaries(self, plan: StagePlan, step: int):
    """Config text, hparams and a few augmented views of the stage's first images."""
    rt = self.cfg.runtime
    with self._writer("train").as_default(step=step):
      if not self._wrote_config:
        tf.summary.text("config", "```\n" + self.cfg.to_json() + "\n```")
        hp.hparams(_flat_hparams(self.cfg.to_dict()), trial_id=self.model_dir)
        self._wrote_config = True
      if rt.summary_images and self.is_chief:
        # A pipeline of just the images shown (never a global batch on each host).
        spec, view_kwargs = self._input_spec(plan, 0)
        spec = dataclasses.replace(spec, global_batch_size=min(rt.summary_images,
                                                               rt.batch_size))
        quiet = dataclasses.replace(self.input_options, report_corrupt=False)
        batch = next(iter(self.source.train_dataset(spec, view_kwargs, None, quiet)))
        views = batch["views"]  # [k, V, H, W, C]
        if self.defer_blur:
          shape = tf.shape(views)
          views = tf.reshape(self._blur(tf.reshape(views, [-1, *views.shape[2:]]),
                                        batch["blur_seeds"]), shape)
        # One image per sample: its views side by side.
        rows = tf.concat(tf.unstack(views, axis=1), axis=2)
        tf.summary.image(f"augmented_views/stage_{plan.index}", rows,
                         max_outputs=rt.summary_images)

  def write_projector(self, name: str) -> Optional[str]:
    """Test-set embeddings h (with labels, and a sprite for small images) for
    TensorBoard's projector, in model_dir/projector/<name>.

    Every worker computes them: under MultiWorkerMirroredStrategy reading the BN
    moving statistics outside a replica context is a collective that all workers
    must join. Only the chief writes.
    """
    images, labels = self.source.eval_examples(self.cfg.runtime.projector_examples,
                                               augment.eval_kwargs(self.cfg.data))
    n = len(labels)
    if n == 0:
      return None
    embeddings = np.concatenate([
        tf.cast(self.model.encode(images[i:i + 256], training=False), tf.float32).numpy()
        for i in range(0, n, 256)])
    if not self.is_chief:
      return None
    return projector_lib.write_projector(
        os.path.join(self.model_dir, "projector", name), embeddings, labels, images)

  def _write_train_summaries(self, plan, values, lr, images_per_sec, step):
    with self._writer("train").as_default(step=step):
      tf.summary.scalar("loss/total", values["loss"])
      if plan.contrastive:
        tf.summary.scalar("loss/contrastive", values["contrastive_loss"])
      if plan.cross_entropy:
        tf.summary.scalar("loss/cross_entropy", values["cross_entropy_loss"])
        tf.summary.scalar("train/accuracy", values["train_accuracy"])
      tf.summary.scalar("loss/weight_decay", values["weight_decay_loss"])
      tf.summary.scalar("learning_rate", lr)
      tf.summary.scalar("norms/gradient", values["gradient_norm"])
      tf.summary.scalar("norms/weights", float(tf.linalg.global_norm(
          self.model.trainable_variables)))
      tf.summary.scalar("images_per_second", images_per_sec)
      tf.summary.scalar("stage", plan.index)

  # ---------------------------------------------------------------- evaluation
  def evaluate(self) -> Dict[str, float]:
    """Top-1/top-5 of the classifier on the test split (latest checkpoint).

    A classifier no cross-entropy stage has trained gets no number: the result
    (and eval_results.json) is {"skipped": reason, "global_step": step}.
    """
    step = self.restore()
    rt = self.cfg.runtime
    reason = untrained_classifier_reason(self.stages, step)
    if reason:
      result = {"skipped": reason, "global_step": step}
      if self.is_chief:
        _atomic_write(os.path.join(self.model_dir, "eval_results.json"),
                      json.dumps(result, indent=2))
      self._log(f"evaluation skipped: {reason}")
      return result

    def dataset_fn(input_context):
      return self.source.eval_dataset(rt.eval_batch_size,
                                      augment.eval_kwargs(self.cfg.data), input_context,
                                      self.input_options)

    dist = self.strategy.distribute_datasets_from_function(dataset_fn)
    k = min(5, self.source.num_classes)

    def eval_replica_fn(batch):
      logits = tf.cast(self.model(batch["image"], training=False)["logits"], tf.float32)
      y, valid = batch["labels"], tf.cast(batch["valid"], tf.float32)
      top1 = tf.reduce_sum(top_k_hits(logits, y, 1) * valid)
      topk = tf.reduce_sum(top_k_hits(logits, y, k) * valid)
      corrupt = (tf.reduce_sum(tf.cast(batch["corrupt"], tf.float32))
                 if "corrupt" in batch else tf.constant(0.0))
      return tf.stack([top1, topk, tf.reduce_sum(valid), corrupt])

    @tf.function
    def eval_step(batch):
      out = self.strategy.run(eval_replica_fn, args=(batch,))
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

    totals = np.zeros(4)
    t0 = time.time()
    for batch in dist:
      totals += eval_step(batch).numpy()
    corrupt = int(totals[3])
    if corrupt:
      seen = int(totals[2]) + corrupt
      self._log(f"evaluation: skipped {corrupt} undecodable image(s) of {seen} "
                f"({100.0 * corrupt / seen:.2f}%)")
      if corrupt > self.cfg.data.max_corrupt_fraction * seen:
        raise CorruptDataError(
            f"{corrupt} of {seen} evaluation images do not decode, more than "
            f"--max_corrupt_fraction={self.cfg.data.max_corrupt_fraction:g}")
    if totals[2] == 0:
      raise ValueError("the test split is empty")
    result = {"top_1": totals[0] / totals[2], "top_5": totals[1] / totals[2],
              "num_examples": int(totals[2]), "global_step": step,
              "seconds": time.time() - t0}
    if self.counts_corrupt:
      result["corrupt_images"] = corrupt
    with self._writer("eval").as_default(step=step):
      tf.summary.scalar("top_1", result["top_1"])
      tf.summary.scalar("top_5", result["top_5"])
    if self.is_chief:
      _atomic_write(os.path.join(self.model_dir, "eval_results.json"),
                    json.dumps(result, indent=2))
    if rt.mode == config_lib.Mode.EVAL and rt.projector_examples:
      self.write_projector("eval")
    self._log(f"test top-1: {100 * result['top_1']:.2f}%  top-{k}: "
              f"{100 * result['top_5']:.2f}%  ({result['num_examples']} images, "
              f"global step {step})")
    return result

  def _log(self, message):
    logging.info(message)
    if self.verbose and self.is_chief:
      print(message, flush=True)

  def close(self):
    for w in self._writers.values():
      w.flush()


class _CorruptCounter:
  """Counts a stage's skipped (undecodable) images per epoch: a line and a summary
  at the end of every epoch; CorruptDataError as soon as an epoch has more than
  --max_corrupt_fraction of its images bad (already known mid-epoch)."""

  def __init__(self, trainer: "Trainer", plan: StagePlan):
    self.trainer, self.plan = trainer, plan
    self.epoch_images = plan.steps_per_epoch * trainer.cfg.runtime.batch_size
    self.count = 0.0
    self.seen = 0

  def next_epoch_end(self, step: int) -> int:
    spe = self.plan.steps_per_epoch
    local = step - self.plan.first_step
    return self.plan.first_step + (local // spe + 1) * spe

  def add(self, step: int, steps: int, corrupt: float):
    self.count += corrupt
    self.seen += steps * self.trainer.cfg.runtime.batch_size
    limit = self.trainer.cfg.data.max_corrupt_fraction
    local = step - self.plan.first_step
    epoch = -(-local // self.plan.steps_per_epoch)  # 1-based, the epoch just run
    if self.count > limit * self.epoch_images:
      raise CorruptDataError(
          f"stage {self.plan.index} epoch {epoch}: {int(self.count)} of the images read "
          f"so far ({self.seen}) do not decode, more than --max_corrupt_fraction="
          f"{limit:g} of the epoch's {self.epoch_images}; the files are printed above")
    if local % self.plan.steps_per_epoch == 0:
      message = (f"stage {self.plan.index} epoch {epoch}: skipped {int(self.count)} "
                 f"undecodable image(s) of {self.seen} read "
                 f"({100.0 * self.count / max(self.seen, 1):.2f}%)")
      if self.count:
        self.trainer._log(message)  # pylint: disable=protected-access
      else:
        logging.info(message)
      with self.trainer._writer("train").as_default(step=step):  # pylint: disable=protected-access
        tf.summary.scalar("data/corrupt_images_per_epoch", self.count)
      self.count, self.seen = 0.0, 0


@contextlib.contextmanager
def _dtype_policy(precision: config_lib.Precision):
  """Keras global dtype policy while the model is built (layers keep it)."""
  name = {config_lib.Precision.FLOAT32: "float32",
          config_lib.Precision.BFLOAT16: "mixed_bfloat16",
          config_lib.Precision.FLOAT16: "mixed_float16"}[precision]
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _flat_hparams(d, prefix=""):
  """Config dict -> {"section.field": bool|int|float|str} for the hparams plugin."""
  out = {}
  for key, value in d.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flat_hparams(value, name + "."))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = str(value)
  return out


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _atomic_write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)
