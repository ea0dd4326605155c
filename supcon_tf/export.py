r"""TF-Hub (TF2 format) SavedModels of a trained SupCon model.

`export_all` writes up to three reusable SavedModels
(https://www.tensorflow.org/hub/reusable_saved_models) into one export directory:

- `encoder/`: images -> representation `h`, float32 `[batch, D]` (the ResNet's
  pooled output, not normalised);
- `projection/`: images -> `z`, the L2-normalised projection head output, float32
  `[batch, P]`;
- `classifier/`: images -> logits, float32 `[batch, num_classes]` (only if the run
  trained a classifier: a stage with a cross-entropy weight > 0 and > 0 steps);

plus `export_info.json` (input contract, output sizes, checkpoint, global step and a
config summary).

Input contract of every model: float32 images `[batch, H, W, C]` with values in
[0, 1] (H = W = --image_size, C the dataset's channels), i.e. what the evaluation
pipeline feeds the encoder: no mean/std normalisation, no resizing inside.

Each SavedModel has
- `__call__(images, training=False)`, a `tf.function` traced for both values of the
  Python bool `training` (True: BatchNorm uses batch statistics and updates its
  moving averages, as the Keras layers do when trained);
- `variables`, `trainable_variables` (the model's own variables, float32 even if
  the run used a mixed-precision policy) and `regularization_losses` (empty: weight
  decay is an optimizer choice of the fine-tuning run);
- a `serving_default` signature `images -> {name: output}` (inference mode).

so it serves as `hub.load(path)(images)`, `hub.KerasLayer(path, trainable=True)` and
`tf.saved_model.load(path).signatures["serving_default"](images=images)`.

Writes are atomic at the level of the export directory: everything is written to a
sibling `<export_dir>.tmp-<pid>`, then the previous export (if any) is renamed to
`<export_dir>.old-<pid>`, the new one renamed into place and the old one deleted. A
crash leaves the previous complete export, the new complete export, or (between
the two renames) no directory at the target path, never a partial one. Leftover
`.tmp-*`/`.old-*` siblings of dead processes are removed by the next export.
"""

import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from supcon_tf import config as config_lib

ENCODER = "encoder"
PROJECTION = "projection"
CLASSIFIER = "classifier"
INFO_FILE = "export_info.json"

# Output key of each model's serving signature.
OUTPUT_KEYS = {ENCODER: "embedding", PROJECTION: "projection", CLASSIFIER: "logits"}

# Test hooks. PAUSE_ENV="PHASE:SECONDS[,PHASE:SECONDS...]" makes the export print
# "supcon-export-pause PHASE" on stderr and sleep at that point, for SECONDS or until
# a file named PHASE appears in the directory named by RESUME_ENV. Phases: "partial"
# (the first SavedModel is written into the temporary directory, the others are not),
# "written" (the temporary directory is complete, nothing renamed yet), "swapped"
# (the previous export is renamed aside, the new one is not in place yet).
PAUSE_ENV = "SUPCON_EXPORT_TEST_PAUSE"
RESUME_ENV = "SUPCON_EXPORT_TEST_RESUME"

_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


def trains_classifier(cfg: config_lib.Config) -> bool:
  """Whether some stage of the run trains the classifier (stage 2 or joint CE)."""
  for stage in (cfg.stage_1, cfg.stage_2):
    if stage.cross_entropy_loss_weight > 0 and (stage.steps > 0 or stage.epochs > 0):
      return True
  return False


def default_export_dir(cfg: config_lib.Config) -> str:
  return cfg.runtime.export_dir or os.path.join(cfg.runtime.model_dir, "export")


# ------------------------------------------------------------------ the modules
def _plain_variable(v):
  """The float32 variable under a mixed-precision AutoCastVariable (else `v`).

  tf_keras wraps variables created under a mixed policy in an AutoCastVariable
  (private class) that holds the real variable in `_variable`; the exported
  functions capture that variable, so it is the one to list.
  """
  inner = getattr(v, "_variable", None)
  return inner if isinstance(inner, tf.Variable) else v


def _unique(variables: Sequence[tf.Variable]) -> List[tf.Variable]:
  seen, out = set(), []
  for v in variables:
    v = _plain_variable(v)
    if v.ref() not in seen:
      seen.add(v.ref())
      out.append(v)
  return out


def _output_functions(model):
  """name -> f(images float32, training: bool) -> float32 output, and their layers."""

  def encode(images, training):
    return tf.cast(model.encode(images, training=training), tf.float32)

  def project(images, training):
    h = model.encode(images, training=training)
    return tf.cast(model.projection_head(model.head_input(h), training=training),
                   tf.float32)

  def classify(images, training):
    h = model.encode(images, training=training)
    x = model.head_input(h)
    classifier = model.classifier
    # The linear-evaluation stop_gradient belongs to the training protocol: in the
    # export, gradients of the logits reach the encoder (fine-tuning trains both).
    # Same values: LinearClassifier is stop_gradient + its dense layer.
    dense = getattr(classifier, "dense", None)
    if getattr(classifier, "stop_gradient", False) and dense is not None:
      logits = dense(x)
    else:
      logits = classifier(x)
    return tf.cast(logits, tf.float32)

  return {ENCODER: (encode, [model.encoder]),
          PROJECTION: (project, [model.encoder, model.projection_head]),
          CLASSIFIER: (classify, [model.encoder, model.classifier])}


def build_hub_module(fn: Callable, layers, image_shape: Sequence[int], name: str,
                     description: str) -> tf.train.Checkpoint:
  """A reusable-SavedModel object for `fn(images, training) -> float32 tensor`.

  Its `__call__` is traced for `[None, H, W, C]` float32 images and both values of
  the Python bool `training`; `serve` (the `serving_default` signature) reuses the
  inference trace. `variables`/`trainable_variables` are the layers' own variables
  (the float32 ones under a mixed-precision policy), `regularization_losses` is
  empty. `description` (the input contract) becomes the functions' docstring.
  """
  spec = tf.TensorSpec([None] + list(image_shape), tf.float32, name="images")
  key = OUTPUT_KEYS[name]

  def call(images, training=False):
    return fn(images, bool(training))
  call.__doc__ = description
  call_fn = tf.function(call)
  for training in (False, True):  # hub.KerasLayer calls both (trainable or not)
    call_fn.get_concrete_function(spec, training=training)

  def serve(images):
    return {key: call_fn(images, training=False)}
  serve.__doc__ = description
  serve_fn = tf.function(serve, input_signature=[spec])

  variables = _unique([v for layer in layers for v in layer.variables])
  trainable = _unique([v for layer in layers for v in layer.trainable_variables])
  obj = tf.train.Checkpoint()
  obj.__call__ = call_fn
  obj.serve = serve_fn
  obj.variables = variables
  obj.trainable_variables = trainable
  obj.regularization_losses = []
  return obj


def output_dim(obj: tf.train.Checkpoint) -> int:
  """The last dimension of the output of a module from `build_hub_module`."""
  concrete = obj.serve.get_concrete_function()
  return int(tf.nest.flatten(concrete.structured_outputs)[0].shape[-1])


# ------------------------------------------------------------------ atomic writes
def _pause(phase: str) -> None:
  """The test hook (see PAUSE_ENV); does nothing unless the variable is set."""
  spec = os.environ.get(PAUSE_ENV, "")
  for item in filter(None, spec.split(",")):
    name, _, seconds = item.partition(":")
    if name != phase:
      continue
    print(f"supcon-export-pause {phase}", file=sys.stderr, flush=True)
    resume = os.path.join(os.environ.get(RESUME_ENV, ""), phase)
    deadline = time.time() + float(seconds or 60)
    while time.time() < deadline and not (os.environ.get(RESUME_ENV) and
                                          os.path.exists(resume)):
      time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale(target: str) -> None:
  """Deletes `<target>.tmp-<pid>`/`.old-<pid>` left by processes that are gone."""
  parent = os.path.dirname(target) or "."
  base = os.path.basename(target)
  if not tf.io.gfile.isdir(parent):
    return
  for entry in tf.io.gfile.listdir(parent):
    entry = entry.rstrip("/")
    for mark in (_TMP_MARK, _OLD_MARK):
      if entry.startswith(base + mark):
        pid = entry[len(base + mark):]
        local = "://" not in target
        if pid.isdigit() and local and _pid_alive(int(pid)):
          continue  # another live export (or ours)
        tf.io.gfile.rmtree(os.path.join(parent, entry))


def atomic_directory_write(target: str, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_dir)`, then puts `tmp_dir` at `target` (see module doc)."""
  target = target.rstrip("/")
  parent = os.path.dirname(target)
  if parent:
    tf.io.gfile.makedirs(parent)
  _remove_stale(target)
  tmp = f"{target}{_TMP_MARK}{os.getpid()}"
  old = f"{target}{_OLD_MARK}{os.getpid()}"
  for path in (tmp, old):
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  try:
    write(tmp)
    _pause("written")
    if tf.io.gfile.exists(target):
      tf.io.gfile.rename(target, old)
      _pause("swapped")
    tf.io.gfile.rename(tmp, target)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
    if tf.io.gfile.exists(old) and not tf.io.gfile.exists(target):
      tf.io.gfile.rename(old, target)  # put the previous export back
    raise
  if tf.io.gfile.exists(old):
    tf.io.gfile.rmtree(old)


# ------------------------------------------------------------------ export_all
def _summary(cfg: config_lib.Config) -> dict:
  d = cfg.to_dict()
  return {"data": {k: d["data"][k] for k in ("dataset", "image_size")},
          "model": d["model"],
          "loss": {k: d["loss"][k] for k in ("use_labels", "temperature",
                                              "summation_location")},
          "stages": {s: {k: d[s][k] for k in ("epochs", "steps", "contrastive_loss_weight",
                                              "cross_entropy_loss_weight")}
                     for s in config_lib.STAGE_SECTIONS},
          "precision": d["runtime"]["precision"]}


def classifier_trained(trainer_or_model, cfg: config_lib.Config,
                       global_step: Optional[int]) -> bool:
  """Whether the classifier has been trained: from the trainer's stage plan and the
  global step when available (a run stopped in stage 1 has no trained classifier),
  else from the config (`trains_classifier`)."""
  stages = getattr(trainer_or_model, "stages", None)
  if stages is None or global_step is None:
    return trains_classifier(cfg)
  from supcon_tf import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  return trainer_lib.untrained_classifier_reason(stages, global_step) is None


def export_all(trainer_or_model, cfg: config_lib.Config, export_dir: Optional[str] = None,
               *, strategy: Optional[tf.distribute.Strategy] = None,
               image_shape: Optional[Sequence[int]] = None,
               global_step: Optional[int] = None,
               checkpoint: Optional[str] = None,
               include_classifier: Optional[bool] = None) -> Dict[str, str]:
  """Exports the encoder, projection and (if trained) classifier SavedModels.

  Works under any strategy: the modules are traced and saved in the cross-replica
  context of the strategy the model was built under, so distributed variables are
  saved once (BatchNorm moving statistics: their cross-replica mean), and the
  saved graphs hold no collective ops (synchronised BatchNorm falls back to local
  batch statistics outside a replica context).

  Args:
    trainer_or_model: a `trainer.Trainer` (its model, strategy, image shape, stage
      plan, global step and latest checkpoint are used) or a built `SupConModel`.
    cfg: the run's config (which models to export, `export_info.json`).
    export_dir: target directory; default `cfg.runtime.export_dir` or
      `<model_dir>/export`. Replaced atomically (see the module docstring).
    strategy: the strategy the model was built under (default: the trainer's, or
      the current one).
    image_shape: `(H, W, C)`; default the trainer's, or `image_size` from `cfg`
      and the input channels of the encoder's stem convolution.
    global_step, checkpoint: recorded in `export_info.json` (default: the
      trainer's).
    include_classifier: export the classifier; default `classifier_trained`.

  Returns:
    `{name: path}` of the SavedModels written (at their final location).
  """
  model = getattr(trainer_or_model, "model", trainer_or_model)
  if strategy is None:
    strategy = getattr(trainer_or_model, "strategy", None) or tf.distribute.get_strategy()
  if image_shape is None:
    image_shape = getattr(trainer_or_model, "image_shape", None)
  if image_shape is None:
    channels = int(model.encoder.stem_conv.kernel.shape[2])
    image_shape = (cfg.data.image_size, cfg.data.image_size, channels)
  image_shape = tuple(int(s) for s in image_shape)
  if global_step is None and hasattr(trainer_or_model, "global_step"):
    global_step = int(trainer_or_model.global_step.numpy())
  if checkpoint is None and hasattr(trainer_or_model, "latest_checkpoint"):
    checkpoint = trainer_or_model.latest_checkpoint()
  if include_classifier is None:
    include_classifier = classifier_trained(trainer_or_model, cfg, global_step)
  export_dir = (export_dir or default_export_dir(cfg)).rstrip("/")

  names = [ENCODER, PROJECTION] + ([CLASSIFIER] if include_classifier else [])
  functions = _output_functions(model)
  h, w, c = image_shape
  input_doc = (f"Input: images, float32 [batch, {h}, {w}, {c}] with values in [0, 1] "
               "(no resizing inside; any --input_normalization whitening is inside). Call: "
               "__call__(images, training=False); training=True puts BatchNorm in "
               "training mode (batch statistics, moving averages updated).")
  descriptions = {
      ENCODER: "SupCon encoder: images -> representation h (the ResNet's pooled "
               "output, not normalised), float32 [batch, D].",
      PROJECTION: "SupCon projection: images -> L2-normalised embedding z "
                  "(encoder + projection head), float32 [batch, P].",
      CLASSIFIER: "SupCon classifier: images -> logits (encoder + linear "
                  "classifier), float32 [batch, num_classes].",
  }
  save_options = None
  if isinstance(strategy, tf.distribute.TPUStrategy):
    # Variables live on the TPU workers: write them through the local host.
    save_options = tf.saved_model.SaveOptions(experimental_io_device="/job:localhost")
  dims = {}

  def write(tmp_dir):
    tf.io.gfile.makedirs(tmp_dir)
    with strategy.scope():
      for i, name in enumerate(names):
        fn, layers = functions[name]
        obj = build_hub_module(fn, layers, image_shape, name,
                               descriptions[name] + " " + input_doc)
        dims[name] = output_dim(obj)
        tf.saved_model.save(obj, os.path.join(tmp_dir, name),
                            signatures={"serving_default": obj.serve},
                            options=save_options)
        if i == 0:
          _pause("partial")
    info = {
        "format": "TF-Hub reusable SavedModel (TF2 format)",
        "models": {name: {"path": name,
                          "description": descriptions[name],
                          "output_shape": [None, dims[name]],
                          "output_dtype": "float32",
                          "serving_output_key": OUTPUT_KEYS[name]}
                   for name in names},
        "input": {"shape": [None, h, w, c], "dtype": "float32", "range": [0.0, 1.0],
                  "description": input_doc},
        "usage": {
            "hub": "hub.load(path)(images, training=False) or "
                   "hub.KerasLayer(path, trainable=True)",
            "signature": "tf.saved_model.load(path).signatures['serving_default']"
                         "(images=images)[serving_output_key]"},
        "checkpoint": checkpoint,
        "global_step": global_step,
        "classes": list(getattr(getattr(trainer_or_model, "source", None),
                                "class_names", ()) or ()),
        "config": _summary(cfg),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tf.io.gfile.GFile(os.path.join(tmp_dir, INFO_FILE), "w") as f:
      f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")

  atomic_directory_write(export_dir, write)
  return {name: os.path.join(export_dir, name) for name in names}


def export_trainer(trainer, export_dir: Optional[str] = None) -> Dict[str, str]:
  """`export_all` of a (restored or trained) `Trainer`, on every worker.

  Under MultiWorkerMirroredStrategy reading the distributed variables is a
  collective operation, so every worker must export; only the chief writes to
  `export_dir`, the others into a scratch directory under the model_dir that is
  deleted afterwards (as `Trainer` does with checkpoints). Returns the chief's
  `{name: path}` (on other workers: the paths of their deleted scratch export).
  """
  cfg = trainer.cfg
  target = export_dir or default_export_dir(cfg)
  if not trainer.is_chief:
    task = getattr(trainer.strategy.cluster_resolver, "task_id", 0)
    target = os.path.join(trainer.model_dir, "tmp_worker", str(task), "export")
  t0 = time.time()
  paths = export_all(trainer, cfg, target)
  if not trainer.is_chief:
    tf.io.gfile.rmtree(target)
    return paths
  message = (f"exported {', '.join(paths)} SavedModels to {target} "
             f"({time.time() - t0:.1f}s)")
  logging.info(message)
  if trainer.verbose:
    print(message, flush=True)
  return paths
