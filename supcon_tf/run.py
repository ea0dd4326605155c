r"""The command line: `python -m supcon_tf.run --flagfile=experiments/fashion_mnist.cfg`.

Modes: train, eval, train_then_eval. The only module that reads flags. Bad flags or
values fail before anything expensive with one line on stderr and exit code 1.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from supcon_tf import config as config_lib
from supcon_tf import flags as flags_lib

FLAGS = flags.FLAGS
flags_lib.define_flags(FLAGS)

# Sections whose change makes an existing model_dir unusable for a resume.
_INCOMPATIBLE_ON_CHANGE = ("model",)
_INCOMPATIBLE_DATA_FIELDS = ("dataset", "image_size")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])


def check_model_dir(cfg: config_lib.Config) -> None:
  """Refuses to resume a model_dir written with an incompatible config."""
  path = os.path.join(cfg.runtime.model_dir, "config.json")
  if not os.path.exists(path):
    if cfg.runtime.mode in (config_lib.Mode.EVAL, config_lib.Mode.EXPORT):
      raise config_lib.ConfigError(f"--mode={cfg.runtime.mode.value} needs a trained "
                                   f"model_dir; {cfg.runtime.model_dir!r} has no "
                                   "config.json")
    return
  with open(path) as f:
    try:
      old = json.load(f)
    except ValueError:
      raise config_lib.ConfigError(f"{path} is not valid JSON") from None
  new = cfg.to_dict()
  for section in _INCOMPATIBLE_ON_CHANGE:
    for key, value in new[section].items():
      if old.get(section, {}).get(key, value) != value:
        raise config_lib.ConfigError(
            f"--{key}={value} differs from {old[section][key]} in {path}: use a new "
            "--model_dir (or the same flags) to keep the existing checkpoints intact")
  for key in _INCOMPATIBLE_DATA_FIELDS:
    if old.get("data", {}).get(key, new["data"][key]) != new["data"][key]:
      raise config_lib.ConfigError(
          f"--{key}={new['data'][key]} differs from {old['data'][key]} in {path}: use "
          "a new --model_dir")


def write_config(cfg: config_lib.Config) -> None:
  os.makedirs(cfg.runtime.model_dir, exist_ok=True)
  path = os.path.join(cfg.runtime.model_dir, "config.json")
  with open(path + ".tmp", "w") as f:
    f.write(cfg.to_json())
  os.replace(path + ".tmp", path)


def _refuse_untrained_classifier(cfg, strategy, source) -> None:
  """--mode=eval of a model_dir whose classifier no stage trained: one line, no number."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from supcon_tf import distribute  # pylint: disable=g-import-not-at-top
  from supcon_tf import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  rt = cfg.runtime
  latest = tf.train.latest_checkpoint(rt.model_dir)
  if latest is None:
    raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to evaluate")
  step = int(tf.train.load_variable(latest, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
  stages = trainer_lib.plan_stages(cfg, source.num_train, source.steps_per_epoch(
      rt.batch_size, distribute.num_input_pipelines(strategy)))
  reason = trainer_lib.untrained_classifier_reason(stages, step)
  if reason:
    raise config_lib.ConfigError(f"--mode=eval refused: {reason}; top-1/top-5 of an "
                                 "untrained classifier mean nothing")


def run(cfg: config_lib.Config, verbose: bool = True):
  """Runs the configured mode. Returns the eval results (or None)."""
  if cfg.runtime.mode != config_lib.Mode.DRY_RUN:
    check_model_dir(cfg)
  # TensorFlow is imported only now, after the cheap checks.
  from supcon_tf import distribute  # pylint: disable=g-import-not-at-top
  from supcon_tf import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  from supcon_tf.data import datasets  # pylint: disable=g-import-not-at-top

  rt = cfg.runtime
  try:
    strategy = distribute.create_strategy(rt.strategy, rt.tpu, rt.num_virtual_cpus)
  except config_lib.ConfigError as e:
    if rt.mode != config_lib.Mode.DRY_RUN:
      raise
    # A dry run happens on a laptop before the pod exists: plan on one device.
    print(f"dry run: {e}; planning with the default strategy (1 replica)", flush=True)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    strategy = tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  per_replica = distribute.check_batch_divisible(rt.batch_size, replicas, "batch_size")
  distribute.check_batch_divisible(rt.eval_batch_size, replicas, "eval_batch_size")
  logging.info("%s: %d replica(s), %d images per replica per step",
               type(strategy).__name__, replicas, per_replica)
  if rt.mode == config_lib.Mode.DRY_RUN:
    from supcon_tf import dry_run  # pylint: disable=g-import-not-at-top
    return dry_run.dry_run(cfg, strategy)
  source = datasets.load_source(cfg.data)
  is_chief = distribute.is_chief(strategy)
  training = rt.mode not in (config_lib.Mode.EVAL, config_lib.Mode.EXPORT)
  # The label ids must mean the same classes as in the existing checkpoints.
  datasets.check_and_write_classes(rt.model_dir, source, write=is_chief and training)
  if is_chief and training:
    write_config(cfg)
  if verbose and is_chief:
    print(f"{source.name} from {source.origin}: {source.num_train} train / "
          f"{source.num_eval} eval images, {source.num_classes} classes; "
          f"{type(strategy).__name__} with {replicas} replica(s), {per_replica} images "
          "per replica", flush=True)
  if rt.mode == config_lib.Mode.EVAL:
    _refuse_untrained_classifier(cfg, strategy, source)
  trainer = trainer_lib.Trainer(cfg, strategy, source, rt.model_dir, is_chief=is_chief,
                                verbose=verbose)
  try:
    result = None
    if rt.mode in (config_lib.Mode.TRAIN, config_lib.Mode.TRAIN_THEN_EVAL):
      trainer.train()
      if rt.export_at_end:
        from supcon_tf import export  # pylint: disable=g-import-not-at-top
        export.export_trainer(trainer)  # every worker takes part, the chief writes
    if rt.mode == config_lib.Mode.EXPORT:
      if trainer.latest_checkpoint() is None:
        raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to export")
      trainer.restore()
      from supcon_tf import export  # pylint: disable=g-import-not-at-top
      result = export.export_trainer(trainer)
    if rt.mode in (config_lib.Mode.EVAL, config_lib.Mode.TRAIN_THEN_EVAL):
      if trainer.latest_checkpoint() is None:
        raise config_lib.ConfigError(f"no checkpoint in {rt.model_dir!r} to evaluate")
      result = trainer.evaluate()
    return result
  finally:
    trainer.close()


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
  # absl turns the default verbosity into 0 (info) after parsing; --verbosity=-1
  # (warnings only) silences the progress lines too.
  verbose = FLAGS.verbosity >= 0
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress lines are printed instead
  try:
    cfg = flags_lib.config_from_flags(FLAGS)
    run(cfg, verbose=verbose)
  except config_lib.ConfigError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    from supcon_tf.trainer import CorruptDataError, NonFiniteLossError  # pylint: disable=g-import-not-at-top
    if isinstance(e, (NonFiniteLossError, CorruptDataError)):
      _fail(str(e))
    raise


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
