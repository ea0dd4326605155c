"""The outer loop: progress lines at --log_steps, the profiler trace (one device and
MirroredStrategy), the quiet CLI."""

import glob
import os

import tensorflow as tf

from supcon_tf import train
from tests import testing
from tests.train import common


def test_log_steps_sets_the_progress_lines(tmp_path, capsys):
  cfg = common.tiny_config(str(tmp_path), steps_per_loop=4, log_steps=2, summary_images=0)
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), str(tmp_path))
  trainer.train()
  lines = [l for l in capsys.readouterr().out.splitlines() if " | step " in l]
  assert [l.split(" | step ")[1].split(" ")[0] for l in lines] == ["2/5", "4/5", "5/5",
                                                                    "1/1"]


def test_profile_trace_written(trained):
  model_dir, _ = trained
  traces = glob.glob(os.path.join(model_dir, "plugins", "profile", "*", "*.xplane.pb"))
  assert traces, os.listdir(model_dir)
  assert os.path.getsize(traces[0]) > 0


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
