"""TF-Hub SavedModel export (`supcon_tf/export.py`).

- a fresh Python process loads every export with `hub.load`, `hub.KerasLayer` and
  the `serving_default` signature and gets the in-memory model's outputs;
- `hub.KerasLayer(encoder, trainable=True)` in a tf_keras model fine-tunes (weights
  and BN statistics change, the loss falls);
- the export under MirroredStrategy (2 virtual CPUs) equals the single-device one;
  mixed_bfloat16 models export float32 in, float32 out, float32 variables;
- SIGKILL while exporting never leaves a partial directory at the target;
- the CLI exports at the end of training and with --mode=export.
"""

import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import atomic
from supcon_tf import config as config_lib
from supcon_tf import export
from supcon_tf import train
from supcon_tf.train import state as state_lib
from tests import cli
from tests import testing

_SIZE, _CHANNELS, _CLASSES = 16, 3, 4
_NAMES = (export.ENCODER, export.PROJECTION, export.CLASSIFIER)
_EXPECTED_KEY = {export.ENCODER: "embedding", export.PROJECTION: "projection",
                 export.CLASSIFIER: "logits"}


def _source(n=16):
  return testing.synthetic_source(n, _SIZE, _CHANNELS, _CLASSES)


def _config(model_dir, precision=config_lib.Precision.FLOAT32, stage_2_steps=1):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=_SIZE),
      model=config_lib.ModelConfig(
          resnet_depth=18, resnet_width=0.0625, first_conv_kernel_size=3,
          first_conv_stride=1, use_initial_max_pool=False, projection_head_layers=(16, 8)),
      stage_1=config_lib.StageConfig(steps=1, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=stage_2_steps, cross_entropy_loss_weight=1.0),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), batch_size=8,
                                       eval_batch_size=8, precision=precision))


def _perturb(model, seed):
  """Non-trivial weights and BN statistics, as after training."""
  rng = np.random.default_rng(seed)
  for layer in model.submodules:
    if isinstance(layer, keras.layers.BatchNormalization):
      shape = layer.moving_mean.shape
      layer.moving_mean.assign(rng.normal(0.0, 0.3, shape))
      layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape))
      layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
      layer.beta.assign(rng.normal(0.0, 0.2, shape))
    elif isinstance(layer, keras.layers.Dense) and layer.use_bias:
      layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape))


def _outputs(model, x, training=False):
  out = model(tf.constant(x), training=training)
  return {name: np.asarray(tf.cast(out[key], tf.float32)) for name, key in
          _EXPECTED_KEY.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A 'trained' single-device model: checkpoint + export + expected outputs."""
  root = tmp_path_factory.mktemp("export")
  model_dir = root / "model"
  cfg = _config(model_dir)
  keras.utils.set_random_seed(3)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), _source(),
                                str(model_dir), verbose=False)
  _perturb(trainer.model, seed=5)
  trainer.global_step.assign(trainer.total_steps)
  trainer.save()
  x = np.random.default_rng(7).random((6, _SIZE, _SIZE, _CHANNELS)).astype(np.float32)
  expected = _outputs(trainer.model, x)
  # Training mode (batch statistics); it updates the moving averages, so the
  # checkpoint is restored afterwards.
  expected_train = np.asarray(trainer.model.encoder(tf.constant(x), training=True))
  trainer.restore()
  np.testing.assert_allclose(_outputs(trainer.model, x)[export.ENCODER],
                             expected[export.ENCODER])
  paths = trainer.export()
  np.save(root / "x.npy", x)
  np.save(root / "train_encoder.npy", expected_train)
  for name, value in expected.items():
    np.save(root / f"{name}.npy", value)
  return types.SimpleNamespace(cfg=cfg, trainer=trainer, paths=paths, x=x, root=root,
                               model_dir=model_dir, expected=expected,
                               expected_train=expected_train)


def test_export_layout_and_info(exported):
  export_dir = exported.model_dir / "export"
  assert exported.paths == {name: str(export_dir / name) for name in _NAMES}
  assert sorted(os.listdir(export_dir)) == sorted(list(_NAMES) + [export.INFO_FILE])
  for name in _NAMES:
    assert os.path.exists(export_dir / name / "saved_model.pb")
  info = json.loads((export_dir / export.INFO_FILE).read_text())
  assert info["input"]["shape"] == [None, _SIZE, _SIZE, _CHANNELS]
  assert info["input"]["dtype"] == "float32" and info["input"]["range"] == [0.0, 1.0]
  assert info["models"]["encoder"]["output_shape"] == [None, 32]  # 512 * 0.0625
  assert info["models"]["projection"]["output_shape"] == [None, 8]
  assert info["models"]["classifier"]["output_shape"] == [None, _CLASSES]
  assert info["global_step"] == exported.trainer.total_steps == 2
  assert info["checkpoint"].endswith("ckpt-2")
  assert info["config"]["model"]["resnet_depth"] == 18
  # No temporary or old sibling is left behind.
  assert not [e for e in os.listdir(exported.model_dir) if e.startswith("export.")]


def test_classifier_export_fine_tunes_the_encoder_too(exported):
  """The model's linear-evaluation stop_gradient is not baked into the export."""
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  layer = hub.KerasLayer(exported.paths["classifier"], trainable=True)
  with tf.GradientTape() as tape:
    logits = layer(tf.constant(exported.x), training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        np.arange(len(exported.x)) % _CLASSES, logits))
  grads = tape.gradient(loss, layer.trainable_variables)
  model = exported.trainer.model
  assert len(grads) == len(model.encoder.trainable_variables) + len(
      model.classifier.trainable_variables)
  assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_classifier_only_when_trained(tmp_path):
  # A run stopped in stage 1 of a two-stage plan has no trained classifier yet.
  trainer = train.Trainer(_config(tmp_path / "m"), tf.distribute.get_strategy(), _source(),
                          str(tmp_path / "m"), verbose=False)
  trainer.global_step.assign(1)
  assert sorted(trainer.export(str(tmp_path / "at_1"))) == [export.ENCODER,
                                                            export.PROJECTION]
  trainer.global_step.assign(2)
  assert sorted(trainer.export(str(tmp_path / "at_2"))) == sorted(_NAMES)
  info = json.loads((tmp_path / "at_2" / export.INFO_FILE).read_text())
  assert info["global_step"] == 2 and info["classes"] == []


def test_export_models_takes_explicit_metadata(tmp_path):
  cfg = _config(tmp_path / "m")
  with tf.distribute.get_strategy().scope():
    model = state_lib.create_model(cfg, _CLASSES, (_SIZE, _SIZE, _CHANNELS))
  metadata = export.ExportMetadata(image_shape=(_SIZE, _SIZE, _CHANNELS),
                                   include_classifier=True,
                                   info={"classes": ["a", "b", "c", "d"], "note": "x"})
  paths = export.export_models(model, metadata, str(tmp_path / "out"))
  assert sorted(paths) == sorted(_NAMES)
  info = json.loads((tmp_path / "out" / export.INFO_FILE).read_text())
  assert info["classes"] == ["a", "b", "c", "d"] and info["note"] == "x"
  assert info["input"]["shape"] == [None, _SIZE, _SIZE, _CHANNELS]
  assert info["models"]["classifier"]["output_shape"] == [None, _CLASSES]


# A consumer with nothing but TensorFlow, TF-Hub and tf_keras (no supcon_tf).
_CONSUMER = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_hub.keras_layer
import tf_keras as keras

root, paths, keys = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
x = np.load(os.path.join(root, "x.npy"))
result = {"hub_keras": tensorflow_hub.keras_layer.keras.__name__, "diffs": {}}

def diff(name, got, want):
  got = np.asarray(got)
  assert got.dtype == np.float32 and got.shape == want.shape, (name, got.dtype, got.shape)
  result["diffs"][name] = float(np.max(np.abs(got - want)))

for name, path in paths.items():
  want = np.load(os.path.join(root, name + ".npy"))
  obj = hub.load(path)
  diff(name + "/hub.load", obj(x), want)
  diff(name + "/hub.load(training=False)", obj(tf.constant(x), training=False), want)
  diff(name + "/KerasLayer", hub.KerasLayer(path)(x), want)
  sig = tf.saved_model.load(path).signatures["serving_default"]
  spec = sig.structured_input_signature[1]["images"]
  assert spec.shape.as_list() == [None] + list(x.shape[1:]) and spec.dtype == tf.float32
  out = sig(images=tf.constant(x))
  assert list(out) == [keys[name]], list(out)
  diff(name + "/serving_default", out[keys[name]], want)
  if name == "encoder":
    diff("encoder/hub.load(training=True)", obj(x, training=True),
         np.load(os.path.join(root, "train_encoder.npy")))

# Fine-tuning the encoder inside a tf_keras model.
layer = hub.KerasLayer(paths["encoder"], trainable=True)
model = keras.Sequential([layer, keras.layers.Dense(4)])
model.build((None,) + x.shape[1:])
result["trainable"] = len(layer.trainable_variables)
result["non_trainable"] = len(layer.non_trainable_variables)
result["layer_losses"] = [float(l) for l in layer.losses]
model.compile(optimizer=keras.optimizers.SGD(0.05),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
y = np.arange(len(x)) % 4
kernels = [v for v in layer.trainable_variables if len(v.shape) == 4]
moving = [v for v in layer.non_trainable_variables if "moving_mean" in v.name]
before = [v.numpy().copy() for v in kernels]
moving_before = [v.numpy().copy() for v in moving]
losses = [float(model.train_on_batch(x, y))]
result["kernels_changed"] = sum(not np.array_equal(b, v.numpy())
                                for b, v in zip(before, kernels))
result["kernels"] = len(kernels)
result["moving_changed"] = sum(not np.array_equal(b, v.numpy())
                               for b, v in zip(moving_before, moving))
result["moving"] = len(moving)
for _ in range(3):
  losses.append(float(model.train_on_batch(x, y)))
result["losses"] = losses
print("RESULT " + json.dumps(result))
"""


def test_fresh_process_hub_load_keras_layer_signature_and_fine_tuning(exported):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONPATH", None)
  proc = subprocess.run(
      [sys.executable, "-c", _CONSUMER, str(exported.root), json.dumps(exported.paths),
       json.dumps(export.OUTPUT_KEYS)],
      cwd=str(exported.root), env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  result = json.loads(line[len("RESULT "):])
  assert result["hub_keras"].startswith("tf_keras"), result["hub_keras"]
  assert len(result["diffs"]) == 3 * 4 + 1
  for name, value in result["diffs"].items():
    assert value <= 1e-5, (name, value)
  assert result["trainable"] == len(exported.trainer.model.encoder.trainable_variables)
  assert result["non_trainable"] > 0 and result["layer_losses"] == []
  assert result["kernels"] > 0 and result["kernels_changed"] == result["kernels"]
  assert result["moving"] > 0 and result["moving_changed"] == result["moving"]
  losses = result["losses"]
  assert losses[-1] < losses[0], losses


# A Keras 3 consumer: no tf_keras, no TF_USE_LEGACY_KERAS.
_KERAS3_CONSUMER = r"""
import json, os, sys
import numpy as np
import keras
assert keras.__version__.startswith("3."), keras.__version__
root, paths, keys = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
x = np.load(os.path.join(root, "x.npy"))
diffs = {}
for name, path in paths.items():
  want = np.load(os.path.join(root, name + ".npy"))
  layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
  inputs = keras.Input(shape=x.shape[1:])
  model = keras.Model(inputs, layer(inputs)[keys[name]])
  got = np.asarray(model.predict(x, verbose=0))
  assert got.shape == want.shape and got.dtype == np.float32, (got.shape, got.dtype)
  diffs[name] = float(np.max(np.abs(got - want)))
print("RESULT " + json.dumps(diffs))
"""


def test_exports_load_in_keras_3_with_tfsm_layer(exported):
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  proc = subprocess.run(
      [sys.executable, "-c", _KERAS3_CONSUMER, str(exported.root),
       json.dumps(exported.paths), json.dumps(export.OUTPUT_KEYS)],
      cwd=str(exported.root), env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  diffs = json.loads(line[len("RESULT "):])
  assert sorted(diffs) == sorted(_NAMES)
  assert max(diffs.values()) < 1e-5, diffs


def _loaded_outputs(paths, x, training=False):
  return {name: tf.saved_model.load(path)(tf.constant(x), training=training).numpy()
          for name, path in paths.items()}


def test_export_under_mirrored_strategy_equals_single_device(exported, tmp_path):
  strategy = testing.mirrored_cpu_strategy(2)
  trainer = train.Trainer(exported.cfg, strategy, _source(),
                                str(exported.model_dir), verbose=False)
  assert trainer.restore() == 2
  assert trainer.model.encoder.stem_bn.synchronized  # global BN across 2 replicas
  paths = trainer.export(str(tmp_path / "mirrored"))
  assert sorted(paths) == sorted(_NAMES)
  for name in _NAMES:
    loaded = tf.saved_model.load(paths[name])
    single = tf.saved_model.load(exported.paths[name])
    got = loaded(tf.constant(exported.x)).numpy()
    np.testing.assert_allclose(got, exported.expected[name], atol=1e-5)
    np.testing.assert_allclose(got, single(tf.constant(exported.x)).numpy(), atol=1e-5)
    assert len(loaded.variables) == len(single.variables)
    assert not any(isinstance(v, tf.distribute.DistributedValues)
                   for v in loaded.variables)
    graph = (tmp_path / "mirrored" / name / "saved_model.pb").read_bytes()
    assert b"Collective" not in graph and b"NcclAllReduce" not in graph
    if name == export.ENCODER:
      # Training mode (batch statistics, local in the export) is the same graph too.
      np.testing.assert_allclose(loaded(exported.x, training=True).numpy(),
                                 exported.expected_train, atol=1e-5)


def test_mixed_bfloat16_exports_float32_interface(tmp_path):
  cfg = _config(tmp_path / "m", precision=config_lib.Precision.BFLOAT16, stage_2_steps=0)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), _source(),
                                str(tmp_path / "m"), verbose=False)
  assert trainer.model.encoder.stem_conv.compute_dtype == "bfloat16"
  _perturb(trainer.model, seed=9)
  x = np.random.default_rng(8).random((4, _SIZE, _SIZE, _CHANNELS)).astype(np.float32)
  expected = _outputs(trainer.model, x)
  paths = trainer.export(str(tmp_path / "export"))
  assert sorted(paths) == ["encoder", "projection"]  # no classifier trained
  for name, path in paths.items():
    loaded = tf.saved_model.load(path)
    assert loaded.variables and all(v.dtype == tf.float32 for v in loaded.variables)
    sig = loaded.signatures["serving_default"]
    assert sig.structured_input_signature[1]["images"].dtype == tf.float32
    out = loaded(tf.constant(x))
    assert out.dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: graph and eager kernels differ by a few ulps.
    np.testing.assert_allclose(out.numpy(), expected[name], rtol=5e-2, atol=2e-2)
  # One gradient step through the reloaded encoder reaches every trainable weight.
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  layer = hub.KerasLayer(paths["encoder"], trainable=True)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(layer(tf.constant(x), training=True)))
  grads = tape.gradient(loss, layer.trainable_variables)
  assert layer.trainable_variables and all(g is not None for g in grads)
  assert all(g.dtype == tf.float32 for g in grads)


# ------------------------------------------------------------------ CLI
def _cli_args(model_dir, data_dir, *extra):
  return [f"--fashion_mnist_dir={data_dir}", f"--model_dir={model_dir}",
          "--resnet_depth=18", "--resnet_width=0.0625", "--first_conv_kernel_size=3",
          "--first_conv_stride=1", "--use_initial_max_pool=false", "--image_size=16",
          "--projection_head_layers=16,8", "--batch_size=16", "--eval_batch_size=16",
          "--stage_1_warmup_epochs=0",
          "--stage_1_steps=2", "--stage_2_steps=2", "--steps_per_loop=2", *extra]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  """A two-stage CLI training run that exports at the end (default strategy: the
  export under MirroredStrategy is tested in-process above, at a third of the cost)."""
  root = tmp_path_factory.mktemp("cli")
  data_dir = root / "fashion"
  testing.write_fake_fashion_mnist(str(data_dir), num_train=32, num_test=16)
  model_dir = root / "run"
  args = _cli_args(model_dir, data_dir)
  result = testing.run_cli(args + ["--mode=train"])
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  x = np.random.default_rng(11).random((4, 16, 16, 1)).astype(np.float32)
  return types.SimpleNamespace(root=root, args=args, model_dir=model_dir, x=x,
                               stdout=result.stdout)


def test_cli_training_exports_at_end(cli_run):
  export_dir = cli_run.model_dir / "export"
  assert "SavedModels to" in cli_run.stdout, cli_run.stdout
  assert sorted(os.listdir(export_dir)) == sorted(list(_NAMES) + [export.INFO_FILE])
  info = json.loads((export_dir / export.INFO_FILE).read_text())
  assert info["global_step"] == 4 and info["checkpoint"].endswith("ckpt-4")
  assert info["input"]["shape"] == [None, 16, 16, 1]
  out = tf.saved_model.load(str(export_dir / "classifier"))(cli_run.x)
  assert out.shape == (4, 10) and np.all(np.isfinite(out.numpy()))


def test_cli_export_mode_needs_a_trained_model_dir(tmp_path):
  result = testing.run_cli(_cli_args(tmp_path / "none", tmp_path, "--mode=export"))
  assert result.returncode == 1
  assert "--mode=export needs a trained model_dir" in result.stderr.strip().splitlines()[-1]


def test_export_mode_without_checkpoint_is_a_config_error(cli_run, tmp_path):
  from supcon_tf import modes  # pylint: disable=g-import-not-at-top
  config = json.loads((cli_run.model_dir / "config.json").read_text())
  config["runtime"].update(model_dir=str(tmp_path), mode="export")
  cfg = config_lib.Config.from_dict(config)
  (tmp_path / "config.json").write_text(cfg.to_json())  # a model_dir, no checkpoint
  with pytest.raises(config_lib.ConfigError, match="no checkpoint in .* to export"):
    modes.run(cfg, verbose=False)
  assert sorted(os.listdir(tmp_path)) == ["config.json"]


def _wait_for(path, text, proc, timeout=240):
  deadline = time.time() + timeout
  while True:
    if os.path.exists(path) and text in open(path).read():
      return
    assert proc.poll() is None, open(path).read()[-3000:]
    assert time.time() < deadline, f"no {text!r} within {timeout}s"
    time.sleep(0.05)


def _siblings(target):
  """Names of `<target>.tmp-*` / `<target>.old-*` next to `target`, by kind."""
  names = sorted(e for e in os.listdir(target.parent) if e.startswith(target.name + "."))
  return {name.split("-")[0][len(target.name) + 1:]: target.parent / name
          for name in names}


def _complete_export(path):
  assert sorted(os.listdir(path)) == sorted(list(_NAMES) + [export.INFO_FILE])
  for name in _NAMES:
    assert os.path.exists(os.path.join(path, name, "saved_model.pb"))


def test_cli_export_is_atomic_under_sigkill(cli_run):
  """`--mode=export` killed (SIGKILL) at the phases of an export leaves at the target
  either the previous complete export (byte-identical, loads, same outputs) or, between
  the two renames, nothing; never a partial directory. Process A is killed while it
  writes the temporary directory (one SavedModel of three written); process B pauses
  once the temporary directory is complete (checked, then resumed) and is killed
  between the renames; process C, a plain --mode=export over A's debris, replaces the
  previous export and removes A's stale temporary directory."""
  previous = cli_run.model_dir / "export"
  previous_digest = cli.tree_digest(previous)
  previous_out = _loaded_outputs({n: str(previous / n) for n in _NAMES}, cli_run.x)
  config_before = (cli_run.model_dir / "config.json").read_bytes()
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT)
  resume_dir = cli_run.root / "resume"
  resume_dir.mkdir()
  procs = []

  def start(name, target, pause=""):
    log = cli_run.root / f"{name}.log"
    with open(log, "w") as f:
      proc = subprocess.Popen(
          [sys.executable, "-m", "supcon_tf.run", "--mode=export",
           f"--export_dir={target}"] + cli_run.args, cwd=testing.REPO_ROOT,
          env=dict(env, **{atomic.PAUSE_ENV: pause, atomic.RESUME_ENV: str(resume_dir)}),
          stdout=f, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc, log

  def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

  target_a, target_b = cli_run.root / "target_a", cli_run.root / "target_b"
  for target in (target_a, target_b):
    subprocess.run(["cp", "-r", str(previous), str(target)], check=True)
  try:
    proc_a, log_a = start("a", target_a, "partial:300")
    proc_b, log_b = start("b", target_b, "written:300,swapped:300")

    _wait_for(log_a, "supcon-export-pause partial", proc_a)
    kill(proc_a)
    assert cli.tree_digest(target_a) == previous_digest  # the previous export, untouched
    assert list(_siblings(target_a)) == ["tmp"]
    assert sorted(os.listdir(_siblings(target_a)["tmp"])) == ["encoder"]  # partial
    got = _loaded_outputs({"encoder": str(target_a / "encoder")}, cli_run.x)
    np.testing.assert_array_equal(got["encoder"], previous_out["encoder"])
    proc_c, log_c = start("c", target_a)

    _wait_for(log_b, "supcon-export-pause written", proc_b)
    assert cli.tree_digest(target_b) == previous_digest
    assert list(_siblings(target_b)) == ["tmp"]
    _complete_export(_siblings(target_b)["tmp"])
    (resume_dir / "written").touch()
    _wait_for(log_b, "supcon-export-pause swapped", proc_b)
    kill(proc_b)
    assert not os.path.exists(target_b)  # between the renames: nothing, not partial
    assert list(_siblings(target_b)) == ["old", "tmp"]
    assert cli.tree_digest(_siblings(target_b)["old"]) == previous_digest
    _complete_export(_siblings(target_b)["tmp"])

    assert proc_c.wait(timeout=300) == 0, open(log_c).read()[-3000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()

  # C: the CLI export replaced the previous export and cleaned A's debris.
  assert f"SavedModels to {target_a}" in open(log_c).read()
  _complete_export(target_a)
  assert _siblings(target_a) == {}
  got = _loaded_outputs({n: str(target_a / n) for n in _NAMES}, cli_run.x)
  for name in _NAMES:
    np.testing.assert_allclose(got[name], previous_out[name], atol=1e-5)
  info = json.loads((target_a / export.INFO_FILE).read_text())
  assert info["global_step"] == 4 and info["models"]["classifier"]["output_shape"] == [
      None, 10]
  # The next write over B's debris removes it too (the write itself is a stub here).
  atomic.write_directory_atomic(str(target_b), lambda d: os.makedirs(d))
  assert os.path.isdir(target_b) and _siblings(target_b) == {}
  # --mode=export wrote neither a config nor results into the model_dir.
  assert (cli_run.model_dir / "config.json").read_bytes() == config_before
  assert not os.path.exists(cli_run.model_dir / "eval_results.json")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
