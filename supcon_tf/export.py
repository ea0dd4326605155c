r"""TF-Hub (TF2 reusable) SavedModels of a trained SupCon model.

`export_models` writes `encoder/` (images -> h), `projection/` (images -> z) and,
once a classifier is trained, `classifier/` (images -> logits), all float32, plus
`export_info.json` (input contract, output sizes and what the caller records). Inputs
are float32 images [batch, H, W, C] in [0, 1]. Each model has `__call__(images,
training=False)`, `variables`, `trainable_variables`, `regularization_losses` and a
`serving_default` signature, so it loads with `hub.load`, `hub.KerasLayer`,
`tf.saved_model.load` and Keras 3's `TFSMLayer` (README: "Using an exported encoder").
The directory is replaced atomically (`atomic.write_directory_atomic`). What is
exported is the caller's to say: a model and an `ExportMetadata` (the trainer's glue
is `train.Trainer.export`).
"""

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from supcon_tf import atomic
from supcon_tf import config as config_lib

ENCODER = "encoder"
PROJECTION = "projection"
CLASSIFIER = "classifier"
INFO_FILE = "export_info.json"

# Output key of each model's serving signature.
OUTPUT_KEYS = {ENCODER: "embedding", PROJECTION: "projection", CLASSIFIER: "logits"}


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
  """What the caller knows about the model that the export records."""
  image_shape: Tuple[int, int, int]  # (H, W, C) of the input images
  include_classifier: bool  # export the classifier (only once it is trained)
  # Recorded in export_info.json, e.g. checkpoint, global_step, classes, config.
  info: dict = dataclasses.field(default_factory=dict)


def config_summary(cfg: config_lib.Config) -> dict:
  """The part of a run's config that export_info.json records.

  Args:
    cfg: the run's config.

  Returns:
    {"data", "model", "loss", "stages", "precision"} (JSON values).
  """
  d = cfg.to_dict()
  return {"data": {k: d["data"][k] for k in ("dataset", "image_size")},
          "model": d["model"],
          "loss": {k: d["loss"][k] for k in ("use_labels", "temperature",
                                              "summation_location")},
          "stages": {s: {k: d[s][k] for k in ("epochs", "steps", "contrastive_loss_weight",
                                              "cross_entropy_loss_weight")}
                     for s in config_lib.STAGE_SECTIONS},
          "precision": d["runtime"]["precision"]}


# ------------------------------------------------------------------ the modules
def _saved_variable(v: tf.Variable) -> tf.Variable:
  """The variable an exported function captures for a layer's variable `v`.

  Under a mixed-precision policy tf_keras wraps each variable in an
  AutoCastVariable; the functions capture the float32 variable inside it, which
  tf_keras exposes through no public attribute (`_variable`). The functions'
  own capture lists are no substitute: under MirroredStrategy they hold every
  replica's component of a synchronised variable.
  """
  inner = vars(v).get("_variable")
  return inner if isinstance(inner, tf.Variable) else v


def _unique(variables: Sequence[tf.Variable]) -> List[tf.Variable]:
  seen, out = set(), []
  for v in variables:
    v = _saved_variable(v)
    if v.ref() not in seen:
      seen.add(v.ref())
      out.append(v)
  return out


def _output_functions(model):
  """name -> (f(images float32, training: bool) -> float32 output, its layers)."""

  def encode(images, training):
    return tf.cast(model.encode(images, training=training), tf.float32)

  def project(images, training):
    h = model.encode(images, training=training)
    return tf.cast(model.projection_head(model.head_input(h), training=training),
                   tf.float32)

  def classify(images, training):
    h = model.encode(images, training=training)
    x = model.head_input(h)
    # The linear-evaluation stop_gradient belongs to the training protocol: in the
    # export, gradients of the logits reach the encoder (fine-tuning trains both).
    # Same values: LinearClassifier is stop_gradient + its dense layer.
    return tf.cast(model.classifier.dense(x), tf.float32)

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
  empty.

  Args:
    fn: `fn(images, training: bool)` -> float32 output.
    layers: the Keras layers whose variables `fn` uses.
    image_shape: `(H, W, C)`.
    name: ENCODER, PROJECTION or CLASSIFIER (names the serving output).
    description: the input contract; becomes the functions' docstring.

  Returns:
    The object to `tf.saved_model.save` (with `signatures={"serving_default":
    obj.serve}`).
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
  """The last dimension of a module's output.

  Args:
    obj: a module from `build_hub_module`.
  """
  concrete = obj.serve.get_concrete_function()
  return int(tf.nest.flatten(concrete.structured_outputs)[0].shape[-1])


# ------------------------------------------------------------------ export
def export_models(model, metadata: ExportMetadata, export_dir: str,
                  strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, str]:
  """Exports the encoder, projection and (if asked) classifier SavedModels.

  Works under any strategy: the modules are traced and saved in the cross-replica
  context of the strategy the model was built under, so distributed variables are
  saved once (BatchNorm moving statistics: their cross-replica mean), and the
  saved graphs hold no collective ops (synchronised BatchNorm falls back to local
  batch statistics outside a replica context).

  Args:
    model: a built `SupConModel`.
    metadata: the input shape, whether to include the classifier, and what
      export_info.json records besides the models and the input contract.
    export_dir: the target directory, replaced atomically.
    strategy: the strategy the model was built under (default: the current one).

  Returns:
    `{name: path}` of the SavedModels written (at their final location).
  """
  strategy = strategy or tf.distribute.get_strategy()
  export_dir = export_dir.rstrip("/")
  image_shape = tuple(int(s) for s in metadata.image_shape)
  names = [ENCODER, PROJECTION] + ([CLASSIFIER] if metadata.include_classifier else [])
  functions = _output_functions(model)
  h, w, c = image_shape
  input_doc = (f"Input: images, float32 [batch, {h}, {w}, {c}] with values in [0, 1] "
               "(no resizing inside; any --input_normalization whitening is inside). Call: "
               "__call__(images, training=False); training=True puts BatchNorm in "
               "training mode (batch statistics, moving averages updated).")
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
                               _DESCRIPTIONS[name] + " " + input_doc)
        dims[name] = output_dim(obj)
        tf.saved_model.save(obj, os.path.join(tmp_dir, name),
                            signatures={"serving_default": obj.serve},
                            options=save_options)
        if i == 0:
          atomic.test_pause("partial")
    info = {
        "format": "TF-Hub reusable SavedModel (TF2 format)",
        "models": {name: {"path": name,
                          "description": _DESCRIPTIONS[name],
                          "output_shape": [None, dims[name]],
                          "output_dtype": "float32",
                          "serving_output_key": OUTPUT_KEYS[name]}
                   for name in names},
        "input": {"shape": [None, h, w, c], "dtype": "float32", "range": [0.0, 1.0],
                  "description": input_doc},
        "usage": {
            "hub": "hub.load(path)(images, training=False) or "
                   "hub.KerasLayer(path, trainable=True)",
            "keras3": "keras.layers.TFSMLayer(path, call_endpoint='serving_default')",
            "signature": "tf.saved_model.load(path).signatures['serving_default']"
                         "(images=images)[serving_output_key]"},
        **metadata.info,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tf.io.gfile.GFile(os.path.join(tmp_dir, INFO_FILE), "w") as f:
      f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")

  atomic.write_directory_atomic(export_dir, write)
  return {name: os.path.join(export_dir, name) for name in names}


_DESCRIPTIONS = {
    ENCODER: "SupCon encoder: images -> representation h (the ResNet's pooled "
             "output, not normalised), float32 [batch, D].",
    PROJECTION: "SupCon projection: images -> L2-normalised embedding z "
                "(encoder + projection head), float32 [batch, P].",
    CLASSIFIER: "SupCon classifier: images -> logits (encoder + linear "
                "classifier), float32 [batch, num_classes].",
}
