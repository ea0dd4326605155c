"""The outer loop: the `Trainer` that drives a run's stages, chunk by chunk.

The compiled inner loop (`step.train_loop`) runs a chunk of steps; between chunks
this module checks the loss, writes summaries and progress lines, saves checkpoints
and starts/stops the profiler. A chunk ends at every boundary where one of those
must happen (`plan.chunk_length`): --steps_per_loop, --checkpoint_steps,
--log_steps, --profile_steps, --knn_every, the end of the stage, and (for sources
that report undecodable images) the end of each epoch. Evaluation, the kNN
monitor, the projector and the export are reached through the Trainer so that
every worker takes part in their collectives.
"""

import os
import time
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import distribute
from supcon_tf import export as export_lib
from supcon_tf import results
from supcon_tf import workdir
from supcon_tf.errors import Preempted
from supcon_tf.data import pipeline
from supcon_tf.data.augment import views
from supcon_tf.train import evaluate as evaluate_lib
from supcon_tf.train import knn as knn_lib
from supcon_tf.train import plan as plan_lib
from supcon_tf.train import preemption
from supcon_tf.train import projector
from supcon_tf.train import recovery
from supcon_tf.train import samples
from supcon_tf.train import state as state_lib
from supcon_tf.train import step as step_lib
from supcon_tf.train import summaries as summaries_lib
from supcon_tf.train.corrupt import CorruptCounter


class Trainer:
  """A run's model, stages and loops: `train()`, `evaluate()`, `export()`."""

  def __init__(self, cfg: config_lib.Config, strategy: tf.distribute.Strategy,
               source, model_dir: str, is_chief: bool = True, verbose: bool = True):
    """Args:
      cfg: the run's config.
      strategy: the strategy to train under.
      source: a data source (`data.sources.Source`).
      model_dir: checkpoints, summaries and results.
      is_chief: whether this worker writes model_dir.
      verbose: print progress lines (on the chief).
    """
    self.cfg = cfg
    self.strategy = strategy
    self.source = source
    self.model_dir = model_dir
    self.is_chief = is_chief
    self.verbose = verbose
    self.num_replicas = strategy.num_replicas_in_sync
    self.stages = plan_lib.plan_stages(
        cfg, source.num_train, source.steps_per_epoch(
            cfg.runtime.batch_size, distribute.num_input_pipelines(strategy)))
    self.total_steps = self.stages[-1].end_step
    self.image_shape = (cfg.data.image_size, cfg.data.image_size, source.num_channels)
    self.view = views.ViewSpec.from_config(cfg.data)
    self.eval_view = views.EvalViewSpec.from_config(cfg.data)
    self.input_options = pipeline.InputOptions.from_config(cfg.data)
    # BatchNorm statistics over the global batch when there are several replicas,
    # as in the authors' TPU runs (switch: --use_global_batch_norm).
    self.synchronized_batch_norm = cfg.model.use_global_batch_norm and self.num_replicas > 1
    self.state = state_lib.TrainState(
        cfg, strategy, self.stages, source.num_classes, self.image_shape, model_dir,
        is_chief=is_chief, task_id=distribute.task_id(strategy),
        synchronized_batch_norm=self.synchronized_batch_norm)
    with strategy.scope():
      self.metrics = step_lib.create_metrics()
    self.summaries = summaries_lib.Summaries(model_dir, is_chief)
    self._steps: Dict[int, step_lib.StageStep] = {}
    self._loops = {}
    self._single_steps = {}
    self._profiling = False
    self._stop = preemption.StopSignal(enabled=False)  # train() installs one
    self._nan = recovery.NanRecovery(self)  # the non-finite loss check
    self._clock = None  # results.TrainingClock while training
    self.knn = knn_lib.KnnMonitor(cfg, self.model, strategy, source, self.eval_view,
                                  self.input_options, self.summaries, model_dir,
                                  is_chief, self.log)

  # ---------------------------------------------------------------- state
  @property
  def model(self):
    return self.state.model

  @property
  def global_step(self) -> tf.Variable:
    return self.state.global_step

  @property
  def optimizers(self):
    return self.state.optimizers

  @property
  def train_vars(self):
    return self.state.train_vars

  def latest_checkpoint(self) -> Optional[str]:
    return self.state.latest_checkpoint()

  def restore(self) -> int:
    """Restores the latest checkpoint, or on a fresh start --encoder_checkpoint's
    encoder if given; returns the global step."""
    latest = self.state.restore()
    if latest:
      self.log(f"restored {latest} (global step {self.state.step})")
    elif self.cfg.model.encoder_checkpoint:
      read = self.state.load_encoder(self.cfg.model.encoder_checkpoint)
      self.log(f"encoder initialised from {read}")
    return self.state.step

  def check_checkpoints(self) -> None:
    """Refuses another model's checkpoints (model_dir's newest readable one, else
    --encoder_checkpoint) before anything is written or read."""
    self.state.check_checkpoints(self.cfg.model.encoder_checkpoint)

  def save(self) -> str:
    saved = self.state.save()
    if self._clock:  # results.json's training time, up to this checkpoint
      self._clock.saved(self.state.step)
    return saved

  # ---------------------------------------------------------------- steps
  def stage_step(self, stage_index: int) -> step_lib.StageStep:
    """The replica step of a stage, built once.

    Args:
      stage_index: 1 or 2 (a stage with steps).

    Returns:
      The stage's `step.StageStep`.
    """
    if stage_index not in self._steps:
      plan = self.stages[stage_index - 1]
      self._steps[stage_index] = step_lib.StageStep(
          self.cfg, plan, self.model, self.train_vars[stage_index],
          self.optimizers[stage_index], self.metrics, self.strategy,
          self.source.num_classes, self.view.blur_probability,
          self.synchronized_batch_norm, self.global_step, self.state.queue,
          self.state.momentum)
    return self._steps[stage_index]

  def train_step(self, stage_index: int, distributed_batch) -> Dict[str, float]:
    """One step of a stage on a distributed batch (tests, benchmarks).

    Does not advance the global step or touch checkpoints.

    Args:
      stage_index: 1 or 2.
      distributed_batch: {"views", "labels"} as `strategy.run` takes it.

    Returns:
      The metrics' values (means since the last `reset_metrics`).
    """
    if stage_index not in self._single_steps:
      self._single_steps[stage_index] = step_lib.single_step(
          self.strategy, self.stage_step(stage_index))
    self._single_steps[stage_index](distributed_batch)
    return {k: float(v.result()) for k, v in self.metrics.items()}

  def reset_metrics(self) -> None:
    for metric in self.metrics.values():
      metric.reset_state()

  def compiled_loop(self, plan: plan_lib.StagePlan):
    if plan.index not in self._loops:
      self._loops[plan.index] = step_lib.train_loop(
          self.strategy, self.stage_step(plan.index), self.global_step)
    return self._loops[plan.index]

  def _train_spec(self, plan: plan_lib.StagePlan, start_step: int):
    return pipeline.TrainInputSpec(
        global_batch_size=self.cfg.runtime.batch_size, num_views=plan.num_views,
        seed=self.cfg.data.seed, stage=plan.index, start_step=start_step,
        samples_per_class=self.cfg.data.samples_per_class)

  def train_iterator(self, plan: plan_lib.StagePlan, start_step: int):
    spec = self._train_spec(plan, start_step)

    def dataset_fn(input_context):
      return pipeline.train_dataset(self.source, spec, self.view, self.input_options,
                                    input_context)

    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  # ---------------------------------------------------------------- outer loop
  def train(self) -> Dict[str, float]:
    """Trains every stage from the latest checkpoint on; returns the last metrics."""
    step = self.restore()
    last = {}
    if step >= self.total_steps:
      self.log(f"training already finished at global step {step} (latest checkpoint "
                f"in {self.model_dir}); nothing to train")
      return last
    self._nan.save_initial_state()
    self._clock = results.TrainingClock(self.model_dir, self.is_chief)
    # SIGTERM (any worker's, under MultiWorkerMirroredStrategy): see preemption.py.
    with preemption.stop_request(self.strategy, self.save, self.model_dir,
                                 self.total_steps) as self._stop:
      for plan in self.stages:
        if plan.num_steps == 0 or step >= plan.end_step:
          continue
        step, last = self._train_stage(plan, step)
    self._profiler_control(step, final=True)
    return last

  def _train_stage(self, plan: plan_lib.StagePlan, step: int):
    rt = self.cfg.runtime
    local_start = step - plan.first_step
    if plan.config.reinitialize_classifier and local_start == 0:
      self.state.reinitialize_classifier(self.cfg.data.seed, plan.index)
      self.log(f"stage {plan.index}: classifier re-initialised")
    iterator = self.train_iterator(plan, local_start)
    loop = self.compiled_loop(plan)
    opt = self.optimizers[plan.index]
    self.log(f"stage {plan.index}: {plan.num_steps} steps "
              f"({plan.num_steps / max(plan.steps_per_epoch, 1):.2f} epochs of "
              f"{plan.steps_per_epoch} steps), {plan.num_views} view(s), global batch "
              f"{rt.batch_size} on {self.num_replicas} replica(s)"
              + (f", resuming at stage step {local_start}" if local_start else ""))
    self.write_start_summaries(plan, step)
    stage_start_time, stage_start_step = time.time(), step
    corrupt = CorruptCounter(plan, rt.batch_size, self.cfg.data.max_corrupt_fraction,
                             self.summaries, self.log)
    last = {}
    while step < plan.end_step:
      chunk = plan_lib.chunk_length(plan, step, rt, corrupt.next_epoch_end(step)
                                    if self.source.reports_corrupt else None)
      self._profiler_control(step)
      self.reset_metrics()
      t0 = time.time()
      loop(iterator, tf.constant(chunk, tf.int32))
      values = {k: float(v.result()) for k, v in self.metrics.items()}
      step = self.state.step
      elapsed = time.time() - t0
      recovered = self._nan.check(plan, values, step - chunk + 1, step)
      if recovered is not None:  # a batch skipped, or a transient failure: go on
        iterator, step = recovered, self.state.step
        continue
      lr = float(opt.learning_rate(opt.iterations))
      images_per_sec = chunk * rt.batch_size / max(elapsed, 1e-9)
      self.summaries.train(plan, values, lr, images_per_sec,
                           float(tf.linalg.global_norm(self.model.trainable_variables)),
                           step)
      if self.source.reports_corrupt:
        corrupt.add(step, chunk, values["corrupt_images"])
      seconds_per_step = (time.time() - stage_start_time) / max(
          step - stage_start_step, 1)
      eta = (plan.end_step - step) * seconds_per_step  # this stage's remaining time
      # The rest of training: later stages extrapolated by their relative cost.
      run_eta = plan_lib.remaining_seconds(
          self.stages, plan, step, seconds_per_step,
          self.cfg.model.stop_gradient_before_classification_head)
      preemption.kill_hook(step)  # fault injection (tests): SIGKILL before the save
      saved = step % rt.checkpoint_steps == 0 or step == plan.end_step
      if saved:
        self.save()
      if self._stop.stop_at(step, saved):  # SIGTERM: this chunk's work is saved, stop
        self._profiler_control(step, final=True)
        raise Preempted(f"{self._stop.reason} at global step {step}: checkpoint saved "
                        f"in {self.model_dir}; rerun the same command to continue")
      last = values
      knn = (self.knn.measure(step) if self.knn.due(plan.encoder_trained, step,
                                                    plan.end_step)
             else None)
      if rt.log_steps and step % rt.log_steps and step != plan.end_step and not knn:
        continue
      local = step - plan.first_step
      etas = f"stage ETA {plan_lib.format_seconds(eta)}" + (
          f" | training ETA {plan_lib.format_seconds(run_eta)}" if run_eta > eta else "")
      self.log(
          f"stage {plan.index} | epoch {local / max(plan.steps_per_epoch, 1):.2f} | "
          f"step {local}/{plan.num_steps} | loss {values['loss']:.4f} | lr {lr:.4g} | "
          f"{images_per_sec:.0f} images/s | {etas}"
          + (f" | knn top-1 {100 * knn['top_1']:.2f}%" if knn and self.is_chief else ""))
    if plan.contrastive and step == plan.end_step and rt.projector_examples:
      self.write_projector(f"stage_{plan.index}")
    return step, last

  def _profiler_control(self, step: int, final: bool = False) -> None:
    """Starts/stops the tf.profiler trace at --profile_steps boundaries."""
    if not self.cfg.runtime.profile_steps or not self.is_chief:
      return
    start, end = self.cfg.runtime.profile_steps
    if not self._profiling and start <= step < end and not final:
      tf.profiler.experimental.start(self.model_dir)
      self._profiling = True
      self.log(f"profiling global steps {step + 1}..{end} into {self.model_dir}/plugins/profile")
    elif self._profiling and (step >= end or final):
      tf.profiler.experimental.stop()
      self._profiling = False

  # ---------------------------------------------------------------- summaries
  def write_start_summaries(self, plan: plan_lib.StagePlan, step: int) -> None:
    """Config text, hparams and a few augmented views of the stage's first images.

    Args:
      plan: the stage.
      step: the global step the summaries are written at.
    """
    rt = self.cfg.runtime
    self.summaries.config(self.cfg, step)
    if rt.summary_images and self.is_chief:
      sample = samples.augmented_views(
          self.source, self._train_spec(plan, 0), self.view, self.input_options,
          min(rt.summary_images, rt.batch_size))
      self.summaries.augmented_views(plan.index, sample, step)

  def write_projector(self, name: str) -> Optional[str]:
    """Test-set embeddings for TensorBoard's projector.

    Args:
      name: the sub-directory of model_dir/projector (e.g. "stage_1", "eval").

    Returns:
      The directory written (on the chief), else None.
    """
    return projector.write_test_embeddings(
        self.model, self.source, self.eval_view, self.cfg.runtime.projector_examples,
        os.path.join(self.model_dir, "projector", name), self.is_chief)

  # ---------------------------------------------------------------- evaluation
  def evaluate(self) -> Dict[str, float]:
    """Top-1/top-5 of the classifier on the test split (latest checkpoint).

    A classifier no cross-entropy stage has trained gets no number: the result
    (and eval_results.json) is {"skipped": reason, "global_step": step}.
    """
    step = self.restore()
    reason = plan_lib.untrained_classifier_reason(self.stages, step)
    if reason:
      result = {"skipped": reason, "global_step": step}
      if self.is_chief:
        workdir.write_eval_results(self.model_dir, result)
      self.log(f"evaluation skipped: {reason}")
      return result
    result = evaluate_lib.classifier_accuracy(
        self.model, self.strategy, self.source, self.eval_view, self.cfg,
        self.input_options, self.log)
    result["global_step"] = step
    self.summaries.scalars("eval", {"top_1": result["top_1"],
                                    "top_5": result["top_5"]}, step)
    if self.is_chief:
      workdir.write_eval_results(self.model_dir, result)
      results.put(self.model_dir, "run", results.run_summary(
          self.cfg, self.source.name, result, results.hardware(
              type(self.strategy).__name__, self.num_replicas,
              distribute.worker_devices(self.strategy))))
    if self.cfg.runtime.mode == config_lib.Mode.EVAL and self.cfg.runtime.projector_examples:
      self.write_projector("eval")
    k = min(5, self.source.num_classes)
    self.log(f"test top-1: {100 * result['top_1']:.2f}%  top-{k}: "
              f"{100 * result['top_5']:.2f}%  ({result['num_examples']} images, "
              f"global step {step})")
    return result

  # ---------------------------------------------------------------- export
  def export(self, export_dir: Optional[str] = None) -> Dict[str, str]:
    """The TF-Hub SavedModels of the current variables, on every worker.

    Reading distributed variables is a collective under MultiWorkerMirroredStrategy,
    so every worker exports; only the chief writes `export_dir`, the others a
    scratch copy deleted after.

    Args:
      export_dir: the target; default --export_dir, else <model_dir>/export.

    Returns:
      `{name: path}` of the SavedModels (on other workers: the deleted scratch).
    """
    target = export_dir or workdir.default_export_dir(self.cfg)
    if not self.is_chief:
      target = os.path.join(workdir.scratch_dir(self.model_dir,
                                                distribute.task_id(self.strategy)),
                            "export")
    step = self.state.step
    metadata = export_lib.ExportMetadata(
        image_shape=self.image_shape,
        include_classifier=plan_lib.untrained_classifier_reason(self.stages, step) is None,
        info={"checkpoint": self.latest_checkpoint(), "global_step": step,
              "classes": list(self.source.class_names),
              "config": export_lib.config_summary(self.cfg)})
    t0 = time.time()
    paths = export_lib.export_models(
        self.state.export_model(self.cfg.runtime.export_momentum_encoder), metadata, target,
        self.strategy)
    if not self.is_chief:
      tf.io.gfile.rmtree(target)
      return paths
    self.log(f"exported {', '.join(paths)} SavedModels to {target} "
              f"({time.time() - t0:.1f}s)")
    return paths

  # ---------------------------------------------------------------- misc
  def log(self, message: str) -> None:
    logging.info(message)
    if self.verbose and self.is_chief:
      print(message, flush=True)

  def close(self) -> None:
    self.summaries.flush()
