"""What a run trains and checkpoints: the model, the global step, one optimizer and
one variable list per stage, and the checkpoint that holds them.

The checkpoint holds the model, both stage optimizers and the global step; under
MultiWorkerMirroredStrategy every worker saves (saving is a collective), only the
chief into model_dir, the others into a scratch directory deleted after each save.
"""

import contextlib
import sys
from typing import Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf.errors import RunError
from supcon_tf import optim
from supcon_tf import workdir
from supcon_tf.models import build_model
from supcon_tf.train import compat
from supcon_tf.train import memory
from supcon_tf.train import plan as plan_lib

_POLICIES = {config_lib.Precision.FLOAT32: "float32",
             config_lib.Precision.BFLOAT16: "mixed_bfloat16",
             config_lib.Precision.FLOAT16: "mixed_float16"}


@contextlib.contextmanager
def dtype_policy(precision: config_lib.Precision):
  """Keras global dtype policy while a model is built (its layers keep it).

  Args:
    precision: the run's --precision.
  """
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(_POLICIES[precision])
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def create_model(cfg: config_lib.Config, num_classes: int, image_shape: Sequence[int],
                 synchronized_batch_norm: bool = False):
  """The run's SupConModel under its dtype policy, with its variables created.

  Call it inside the strategy's scope.

  Args:
    cfg: the run's config (model section and precision).
    num_classes: classifier outputs.
    image_shape: `(H, W, C)` of the input images.
    synchronized_batch_norm: BatchNorm statistics over all replicas.
  """
  if cfg.data.deterministic:  # seeded initial weights, the same in every process
    tf.random.set_seed(cfg.data.seed)
  try:
    with dtype_policy(cfg.runtime.precision):
      model = build_model(cfg.model, num_classes,
                          synchronized_batch_norm=synchronized_batch_norm)
      model(tf.zeros((1,) + tuple(image_shape)), training=False)
  finally:
    if cfg.data.deterministic:
      tf.random.set_seed(None)  # (left set, it breaks tensor-seeded tf.data shuffles)
  return model


def stage_variables(model, plan: plan_lib.StagePlan,
                    stop_gradient_before_classifier: bool) -> List[tf.Variable]:
  """The variables a stage trains.

  Args:
    model: the SupConModel.
    plan: the stage.
    stop_gradient_before_classifier: the model's
      `stop_gradient_before_classification_head`.

  Returns:
    The encoder's (if the stage's gradients reach it), the projection head's
    (contrastive stages) and the classifier's (cross-entropy stages) variables.
  """
  variables = []
  if plan.trains_encoder(stop_gradient_before_classifier):
    variables += model.encoder.trainable_variables
  if plan.contrastive:
    variables += model.projection_head.trainable_variables
  if plan.cross_entropy:
    variables += model.classifier.trainable_variables
  return variables


def _checkpoint_number(path: str) -> int:
  suffix = path.rsplit("-", 1)[-1]
  return int(suffix) if suffix.isdigit() else -1


# Checkpoint entries that are bookkeeping, not model or optimizer state.
_NOT_STATE = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/")


def checkpoint_digest(path: str) -> str:
  """sha256 over the names, dtypes, shapes and bytes of a checkpoint's variables.

  Model, BatchNorm statistics, optimizer slots and iterations, the global step —
  everything but the object graph and the save counter (how many saves a process
  made). Two runs with equal digests hold bit-identical state.

  Args:
    path: a checkpoint prefix (e.g. `tf.train.latest_checkpoint(model_dir)`).
  """
  import hashlib  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(path)
  digest = hashlib.sha256()
  for name in sorted(reader.get_variable_to_shape_map()):
    if name.startswith(_NOT_STATE):
      continue
    value = np.asarray(reader.get_tensor(name))
    digest.update(f"{name}|{value.dtype}|{value.shape}|".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


class TrainState:
  """Model, global step, per-stage optimizers and variables, and the checkpoint.

  Built in the strategy's scope. `optimizers`/`train_vars` are keyed by stage index
  and hold only stages with steps.
  """

  def __init__(self, cfg: config_lib.Config, strategy: tf.distribute.Strategy,
               stages: List[plan_lib.StagePlan], num_classes: int,
               image_shape: Sequence[int], model_dir: str, is_chief: bool = True,
               task_id: int = 0, synchronized_batch_norm: bool = False):
    """Args:
      cfg: the run's config.
      strategy: the strategy the variables are created under.
      stages: the run's plan.
      num_classes: classifier outputs.
      image_shape: `(H, W, C)` of the input images.
      model_dir: where the chief's checkpoints go.
      is_chief: whether this worker writes model_dir.
      task_id: this worker's task id (names its scratch directory).
      synchronized_batch_norm: BatchNorm statistics over all replicas.
    """
    self.model_dir = model_dir
    self.is_chief = is_chief
    stop_gradient = cfg.model.stop_gradient_before_classification_head
    with strategy.scope():
      self.model = create_model(cfg, num_classes, image_shape, synchronized_batch_norm)
      self.global_step = tf.Variable(
          0, dtype=tf.int64, trainable=False, name="global_step",
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      # --memory_size / --momentum_encoder (None where off).
      self.queue, self.momentum = memory.create(cfg, self.model, lambda: create_model(
          cfg, num_classes, image_shape, synchronized_batch_norm))
      kernels = optim.kernel_variables(self.model)
      self.optimizers: Dict[int, keras.optimizers.Optimizer] = {}
      self.train_vars: Dict[int, List[tf.Variable]] = {}
      for plan in stages:
        if plan.num_steps == 0:
          continue
        variables = stage_variables(self.model, plan, stop_gradient)
        schedule = optim.learning_rate_schedule(
            plan.config, cfg.runtime.batch_size, plan.steps_per_epoch, plan.num_steps)
        opt = optim.create_optimizer(plan.config, schedule, adapted_variables=kernels)
        # Build the slots now so a checkpoint restores them eagerly.
        opt._create_all_weights(variables)  # pylint: disable=protected-access
        if cfg.runtime.precision == config_lib.Precision.FLOAT16:
          opt = keras.mixed_precision.LossScaleOptimizer(opt)  # dynamic loss scale
        self.optimizers[plan.index] = opt
        self.train_vars[plan.index] = variables
    objects = {f"stage_{i}_optimizer": opt for i, opt in self.optimizers.items()}
    if self.queue is not None:
      objects["memory"] = self.queue
    if self.momentum is not None:
      objects["momentum_model"] = self.momentum.model
    self.checkpoint = tf.train.Checkpoint(model=self.model, global_step=self.global_step,
                                          **objects)
    save_dir = model_dir if is_chief else workdir.scratch_dir(model_dir, task_id)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=save_dir, max_to_keep=cfg.runtime.keep_checkpoint_max,
        step_counter=self.global_step)

  @property
  def step(self) -> int:
    return int(self.global_step.numpy())

  def latest_checkpoint(self) -> Optional[str]:
    """The newest checkpoint in model_dir (every worker restores the chief's)."""
    return tf.train.latest_checkpoint(self.model_dir)

  def checkpoints(self) -> List[str]:
    """The chief's checkpoints in model_dir, newest first (from its `checkpoint` file)."""
    state = tf.train.get_checkpoint_state(self.model_dir)
    if state is None:
      return []
    # (get_checkpoint_state has put model_dir in front of relative paths already.)
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    if state.model_checkpoint_path not in paths:
      paths.append(state.model_checkpoint_path)
    return sorted(set(paths), key=_checkpoint_number, reverse=True)

  def restore(self) -> Optional[str]:
    """Restores the newest readable checkpoint; returns its path (None: none).

    A newest checkpoint that cannot be read (truncated or partly missing files: a
    crash or a full disk while saving) is skipped with a warning, and the previous
    one restored instead. Every object of the run must match the checkpoint.

    Raises:
      IncompatibleCheckpoint: the newest readable checkpoint holds another model
        (`compat.difference`), before any variable is assigned.
      RunError: there are checkpoints but none of them can be read.
    """
    candidates = self.checkpoints()
    for path in candidates:
      self._check_own(path)
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      # A torn file fails in many ways (OpError, IndexError "Read less bytes than
      # requested", ValueError, a failed match): whichever, the checkpoint is unusable.
      except Exception as e:  # pylint: disable=broad-except
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        warning = f"warning: checkpoint {path} is unreadable ({reason}); trying the previous one"
        logging.warning(warning)
        print(warning, file=sys.stderr, flush=True)
        continue
      return path
    if candidates:
      raise RunError(f"none of the {len(candidates)} checkpoint(s) in {self.model_dir} "
                     "can be read (see the warnings); use a new --model_dir, or "
                     "--overwrite to start over")
    return None

  def _check_own(self, path: str) -> bool:
    """Refuses a checkpoint of model_dir that holds another model; False: unreadable."""
    try:
      reason = compat.difference(path, self.checkpoint)  # reads the index only
    except Exception:  # pylint: disable=broad-except
      return False  # (restore() says how, and falls back)
    if reason:  # another model: an older checkpoint of this model_dir is no better
      raise compat.IncompatibleCheckpoint(
          f"checkpoint {path} holds another model: {reason} (use a new --model_dir, "
          "or --overwrite to start over)")
    return True

  def check_checkpoints(self, encoder_checkpoint: str = "") -> None:
    """The refusals of `restore` and `load_encoder`, reading checkpoint indexes only.

    Args:
      encoder_checkpoint: --encoder_checkpoint (checked when model_dir has no checkpoint).

    Raises:
      IncompatibleCheckpoint, RunError: as `restore` and `load_encoder` would.
    """
    candidates = self.checkpoints()
    for path in candidates:
      if self._check_own(path):
        return
    if candidates:
      return  # none readable: restore() refuses, after its warnings
    if encoder_checkpoint:
      self._check_encoder(self._encoder_prefix(encoder_checkpoint))

  @staticmethod
  def _encoder_prefix(path: str) -> str:
    prefix = tf.train.latest_checkpoint(path) if tf.io.gfile.isdir(path) else path
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
      raise RunError(f"--encoder_checkpoint={path!r} is no checkpoint (give a model_dir "
                     "with checkpoints, or a checkpoint prefix such as runs/x/ckpt-1000)")
    return prefix

  def _check_encoder(self, prefix: str) -> None:
    compat.check(prefix, self.model.encoder, "--encoder_checkpoint", prefix="model/encoder",
                 advice="the model flags of its run must be this run's")

  def load_encoder(self, path: str) -> str:
    """Initialises the encoder (weights and BatchNorm statistics) from another run.

    Args:
      path: --encoder_checkpoint: a checkpoint prefix, or a model_dir (its newest
        checkpoint).

    Returns:
      The checkpoint read.

    Raises:
      RunError: no checkpoint at `path`.
      IncompatibleCheckpoint: its encoder is another one (a variable and both
        shapes named), before any variable is assigned.
    """
    prefix = self._encoder_prefix(path)
    self._check_encoder(prefix)
    root = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=self.model.encoder))
    root.restore(prefix).expect_partial().assert_existing_objects_matched()
    return prefix

  def save(self) -> str:
    """Saves a checkpoint numbered by the global step; returns its path."""
    path = self.manager.save(checkpoint_number=self.global_step)
    logging.info("saved checkpoint %s", path)
    if not self.is_chief:  # a scratch copy, never read
      tf.io.gfile.rmtree(self.manager.directory)
    return path

  def export_model(self, momentum_encoder: bool = False):
    """The model to export: the online one, or (--export_momentum_encoder) the
    momentum model with the online classifier's weights copied into it."""
    if not momentum_encoder:
      return self.model
    if self.momentum is None:
      raise RunError("--export_momentum_encoder: this run has no --momentum_encoder")
    momentum_model = self.momentum.model
    for target, value in zip(momentum_model.classifier.variables,
                             self.model.classifier.variables):
      target.assign(value)
    return momentum_model

  def reinitialize_classifier(self, seed: int, stage_index: int) -> None:
    """Draws the classifier's kernels afresh and zeroes its biases.

    Seeded by `seed` and the stage: the same values on every worker (each worker
    assigns its own copies) and in every rerun.

    Args:
      seed: the run's --seed.
      stage_index: the stage that starts.
    """
    # Index 0 is the classifier itself: its Dense layers count from 1.
    for index, layer in enumerate(self.model.classifier.submodules, start=1):
      if isinstance(layer, keras.layers.Dense):
        init = layer.kernel_initializer
        init_config = init.get_config()
        if "seed" in init_config:
          init_config["seed"] = seed * 1000 + stage_index * 100 + index
        seeded = type(init).from_config(init_config)
        layer.kernel.assign(seeded(layer.kernel.shape, layer.kernel.dtype))
        layer.bias.assign(tf.zeros_like(layer.bias))
