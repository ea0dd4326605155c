"""TensorBoard output: scalars, images, hparams, config text, profiler trace,
projector files; and the quiet mode of the CLI."""

import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from supcon_tf import config as config_lib
from supcon_tf import trainer as trainer_lib
from tests import testing


def _source(n=32, size=12, classes=4):
  return testing.synthetic_source(n, size, 1, classes, num_test=16)


def _events(logdir):
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0})
  acc.Reload()
  return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("tb"))
  cfg = config_lib.Config(
      data=config_lib.DataConfig(image_size=12, crop_area_range=(0.5, 1.0)),
      model=config_lib.ModelConfig(resnet_depth=18, resnet_width=0.0625,
                                   first_conv_kernel_size=3, first_conv_stride=1,
                                   use_initial_max_pool=False, projection_head_layers=(8, 4)),
      stage_1=config_lib.StageConfig(steps=4, contrastive_loss_weight=1.0,
                                     weight_decay=1e-4),
      stage_2=config_lib.StageConfig(steps=2, cross_entropy_loss_weight=1.0,
                                     update_encoder_batch_norm=False),
      runtime=config_lib.RuntimeConfig(model_dir=model_dir, batch_size=8, eval_batch_size=8,
                                       steps_per_loop=2, checkpoint_steps=100,
                                       profile_steps=(1, 3), summary_images=3,
                                       projector_examples=10))
  trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), _source(), model_dir,
                                verbose=False)
  trainer.train()
  result = trainer.evaluate()
  trainer.close()
  return model_dir, result


def test_train_scalars_images_hparams_text(trained):
  model_dir, _ = trained
  acc = _events(os.path.join(model_dir, "train"))
  tags = acc.Tags()
  scalars = set(tags["tensors"]) | set(tags["scalars"])
  for tag in ("loss/total", "loss/contrastive", "loss/cross_entropy", "loss/weight_decay",
              "learning_rate", "images_per_second", "norms/gradient", "norms/weights",
              "train/accuracy"):
    assert tag in scalars, (tag, sorted(scalars))
  # One summary per loop of --steps_per_loop=2 steps, but loops also stop at the
  # profile boundaries 1 and 3: stage 1 ends loops at steps 1, 3, 4; stage 2 at 6.
  steps = [e.step for e in acc.Tensors("loss/total")]
  assert steps == [1, 3, 4, 6]
  assert all(np.isfinite(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("norms/gradient"))
  images = [t for t in tags["tensors"] if t.startswith("augmented_views/stage_1")]
  assert images, tags["tensors"]
  image_event = acc.Tensors(images[0])[0]
  # image summaries store [width, height, png...]: 3 samples x 2 views side by side
  values = tf.make_ndarray(image_event.tensor_proto)
  assert int(values[0]) == 24 and int(values[1]) == 12 and len(values) == 2 + 3
  assert "config" in tags["tensors"]
  text = tf.make_ndarray(acc.Tensors("config")[0].tensor_proto).item().decode()
  assert '"temperature": 0.1' in text
  plugins = acc.PluginTagToContent("hparams")
  assert "_hparams_/session_start_info" in plugins


def _tiny_config(model_dir, **runtime):
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=12),
      model=config_lib.ModelConfig(resnet_depth=18, resnet_width=0.0625,
                                   first_conv_kernel_size=3, first_conv_stride=1,
                                   use_initial_max_pool=False, projection_head_layers=(8, 4)),
      stage_1=config_lib.StageConfig(steps=5, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=1, cross_entropy_loss_weight=1.0,
                                     reinitialize_classifier=True),
      runtime=config_lib.RuntimeConfig(model_dir=model_dir, batch_size=8, eval_batch_size=8,
                                       projector_examples=0, **runtime))


def test_summary_images_read_only_the_images_shown(tmp_path):
  source = _source()
  sizes = []
  train_dataset = source.train_dataset

  def spy(spec, view_kwargs, input_context=None, options=None):
    sizes.append((spec.global_batch_size, input_context is None))
    return train_dataset(spec, view_kwargs, input_context, options)

  object.__setattr__(source, "train_dataset", spy)  # a frozen dataclass
  cfg = _tiny_config(str(tmp_path), summary_images=3)
  trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), source, str(tmp_path),
                                verbose=False)
  trainer._write_start_summaries(trainer.stages[0], 0)  # pylint: disable=protected-access
  assert sizes == [(3, True)]


def test_log_steps_sets_the_progress_lines(tmp_path, capsys):
  cfg = _tiny_config(str(tmp_path), steps_per_loop=4, log_steps=2, summary_images=0)
  trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), _source(), str(tmp_path))
  trainer.train()
  lines = [l for l in capsys.readouterr().out.splitlines() if " | step " in l]
  assert [l.split(" | step ")[1].split(" ")[0] for l in lines] == ["2/5", "4/5", "5/5",
                                                                    "1/1"]


def test_classifier_reinitialisation_is_seeded(tmp_path):
  kernels = []
  for seed in (3, 3, 4):
    cfg = _tiny_config(str(tmp_path / str(len(kernels))))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=seed))
    trainer = trainer_lib.Trainer(cfg, tf.distribute.get_strategy(), _source(),
                                  str(tmp_path / str(len(kernels))), verbose=False)
    trainer._maybe_reinitialize_classifier(trainer.stages[1], 0)  # pylint: disable=protected-access
    kernels.append(trainer.model.classifier.dense.kernel.numpy())
  np.testing.assert_array_equal(kernels[0], kernels[1])
  assert not np.allclose(kernels[0], kernels[2])


def test_eval_scalars(trained):
  model_dir, result = trained
  acc = _events(os.path.join(model_dir, "eval"))
  tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
  assert {"top_1", "top_5"} <= tags
  top1 = tf.make_ndarray(acc.Tensors("top_1")[-1].tensor_proto)
  assert float(top1) == pytest.approx(result["top_1"])


def test_profile_trace_written(trained):
  model_dir, _ = trained
  traces = glob.glob(os.path.join(model_dir, "plugins", "profile", "*", "*.xplane.pb"))
  assert traces, os.listdir(model_dir)
  assert os.path.getsize(traces[0]) > 0


def test_projector_files(trained):
  model_dir, _ = trained
  logdir = os.path.join(model_dir, "projector", "stage_1")
  config = open(os.path.join(logdir, "projector_config.pbtxt")).read()
  assert "metadata.tsv" in config and "sprite.png" in config
  labels = open(os.path.join(logdir, "metadata.tsv")).read().split()
  assert len(labels) == 10
  embeddings = tf.train.load_variable(tf.train.latest_checkpoint(logdir),
                                      "embedding/.ATTRIBUTES/VARIABLE_VALUE")
  assert embeddings.shape == (10, 32)  # ResNet-18 x 1/16: 512 / 16 channels
  png = tf.io.decode_png(tf.io.read_file(os.path.join(logdir, "sprite.png")))
  assert png.shape == (48, 48, 3)  # ceil(sqrt(10)) = 4 thumbnails of 12 px a side


def test_quiet_cli_and_profiling_under_mirrored(tmp_path):
  data = tmp_path / "data"
  testing.write_fake_fashion_mnist(str(data), num_train=32, num_test=16)
  args = [f"--fashion_mnist_dir={data}", f"--model_dir={tmp_path / 'm'}",
          "--resnet_depth=18", "--resnet_width=0.0625", "--first_conv_kernel_size=3",
          "--first_conv_stride=1", "--use_initial_max_pool=false", "--image_size=12",
          "--projection_head_layers=8,4", "--batch_size=8", "--eval_batch_size=8",
          "--stage_1_steps=2", "--stage_2_steps=1", "--export_at_end=false"]
  # Also: profiling works under MirroredStrategy (2 virtual CPUs).
  quiet = testing.run_cli(args + ["--verbosity=-1", "--strategy=mirrored",
                                  "--num_virtual_cpus=2", "--profile_steps=0,2"])
  assert quiet.returncode == 0, quiet.stderr
  assert "stage 1 |" not in quiet.stdout and "top-1" not in quiet.stdout
  assert glob.glob(str(tmp_path / "m" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  loud = testing.run_cli(args + ["--mode=eval"])
  assert loud.returncode == 0 and "test top-1" in loud.stdout


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
