"""The modes of a run: train, eval, train_then_eval, export, dry_run, eval_robustness.

`run(cfg)` checks the model_dir against the config, creates the strategy and the
source, and once nothing is left to refuse, the chief of a training run starts the
model_dir over (--overwrite) and writes classes.json and config.json (once); then it
drives the `Trainer`. Everything that can be refused is refused before anything is
written.
"""

import os
import random

from absl import logging
import numpy as np
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import distribute
from supcon_tf import dry_run
from supcon_tf import train
from supcon_tf import warm_start
from supcon_tf import workdir
from supcon_tf.data import sources


def _refuse_untrained_classifier(cfg, strategy, source) -> None:
  """--mode=eval of a model_dir whose classifier no stage trained: one line, no number."""
  rt = cfg.runtime
  latest = tf.train.latest_checkpoint(rt.model_dir)
  if latest is None:
    raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to evaluate")
  step = int(tf.train.load_variable(latest, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
  stages = train.plan_stages(cfg, source.num_train, source.steps_per_epoch(
      rt.batch_size, distribute.num_input_pipelines(strategy)))
  reason = train.untrained_classifier_reason(stages, step)
  if reason:
    raise config_lib.ConfigError(f"--mode=eval refused: {reason}; top-1/top-5 of an "
                                 "untrained classifier mean nothing")


def make_deterministic(seed: int) -> None:
  """--deterministic: seeded initial weights and deterministic TensorFlow ops.

  With the input's seeded order and augmentations, a run's variables are then a
  function of its configuration: a run killed and resumed (from any checkpoint, or
  from scratch before the first one) ends bit-identical to an uninterrupted one.

  Args:
    seed: --seed (Python, NumPy and TensorFlow's global seed).
  """
  # The initial weights are seeded where they are drawn (`state.create_model`); a
  # global TensorFlow seed left set would break tf.data's tensor-seeded shuffles
  # (TFDS's per-epoch file order).
  random.seed(seed)
  np.random.seed(seed)
  tf.config.experimental.enable_op_determinism()
  if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
    logging.warning("--deterministic: TensorFlow runs oneDNN kernels, which are not "
                    "bit-reproducible; start with TF_ENABLE_ONEDNN_OPTS=0 (the CLI "
                    "does) for bit-identical runs")


def run(cfg: config_lib.Config, verbose: bool = True):
  """Runs the configured mode.

  Args:
    cfg: the validated config (`flags.config_from_flags`).
    verbose: print progress lines (on the chief).

  Returns:
    The evaluation results (eval, train_then_eval), the exported paths (export),
    the plan's figures (dry_run), else None.

  Raises:
    ConfigError: a refusal (model_dir, data, strategy, batch), one line.
    RunError: a run that stopped (non-finite loss, too many undecodable images).
  """
  workdir.check_config(cfg)
  warm_start.check_encoder_checkpoint(cfg)
  rt = cfg.runtime
  if cfg.data.deterministic:
    make_deterministic(cfg.data.seed)
  try:
    strategy = distribute.create_strategy(rt.strategy, rt.tpu, rt.num_virtual_cpus)
  except config_lib.ConfigError as e:
    if rt.mode != config_lib.Mode.DRY_RUN:
      raise
    # A dry run happens on a laptop before the pod exists: plan on one device.
    print(f"dry run: {e}; planning with the default strategy (1 replica)", flush=True)
    strategy = tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  per_replica = distribute.check_batch_divisible(rt.batch_size, replicas, "batch_size")
  distribute.check_batch_divisible(rt.eval_batch_size, replicas, "eval_batch_size")
  logging.info("%s: %d replica(s), %d images per replica per step",
               type(strategy).__name__, replicas, per_replica)
  if rt.mode == config_lib.Mode.DRY_RUN:
    return dry_run.dry_run(cfg, strategy)
  source = sources.load_source(cfg.data)
  is_chief = distribute.is_chief(strategy)
  training = rt.mode not in config_lib.READER_MODES
  if training:  # refused here rather than by the Trainer, before anything is written
    train.plan_stages(cfg, source.num_train, source.steps_per_epoch(
        rt.batch_size, distribute.num_input_pipelines(strategy)))
    sources.check_balanced_batches(source, cfg.data.samples_per_class, rt.batch_size)
  if training and rt.overwrite and is_chief:
    # Before the Trainer: under MultiWorkerMirroredStrategy the variables' initial
    # values come from the chief, so no worker restores before this is done.
    line = workdir.start_over(rt.model_dir)
    if verbose:
      print(line, flush=True)
    else:
      logging.warning(line)
  if not (rt.overwrite and not is_chief):  # (a worker could still see the old file)
    # The label ids must mean the same classes as in the existing checkpoints.
    workdir.check_and_write_classes(rt.model_dir, source.name, source.class_names,
                                    write=False)
  if rt.mode in (config_lib.Mode.EVAL, config_lib.Mode.EVAL_ROBUSTNESS):
    _refuse_untrained_classifier(cfg, strategy, source)
  if rt.mode == config_lib.Mode.EVAL_ROBUSTNESS:
    from supcon_tf.train import robustness  # pylint: disable=g-import-not-at-top
    robustness.check(cfg, source)  # before the model is built
  trainer = train.Trainer(cfg, strategy, source, rt.model_dir, is_chief=is_chief,
                          verbose=verbose)
  # Another model's checkpoints (in model_dir, or --encoder_checkpoint): refused now,
  # with the model built but before anything is read or written.
  trainer.check_checkpoints()
  if is_chief and training:
    workdir.check_and_write_classes(rt.model_dir, source.name, source.class_names,
                                    write=True)
    workdir.write_config_once(cfg)
  if verbose and is_chief:
    print(f"{source.name} from {source.origin}: {source.num_train} train / "
          f"{source.num_eval} eval images, {source.num_classes} classes; "
          f"{type(strategy).__name__} with {replicas} replica(s), {per_replica} images "
          "per replica", flush=True)
  try:
    result = None
    if rt.mode in (config_lib.Mode.TRAIN, config_lib.Mode.TRAIN_THEN_EVAL):
      trainer.train()
      if rt.export_at_end:
        trainer.export()  # every worker takes part, the chief writes
    if rt.mode == config_lib.Mode.EXPORT:
      if trainer.latest_checkpoint() is None:
        raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to export")
      trainer.restore()
      result = trainer.export()
    if rt.mode in (config_lib.Mode.EVAL, config_lib.Mode.TRAIN_THEN_EVAL,
                   config_lib.Mode.EVAL_ROBUSTNESS):
      if trainer.latest_checkpoint() is None:
        raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to evaluate")
      result = (robustness.evaluate_robustness(trainer, cfg, source)
                if rt.mode == config_lib.Mode.EVAL_ROBUSTNESS else trainer.evaluate())
    return result
  finally:
    trainer.close()
