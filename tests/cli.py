"""Helpers of the command-line tests: a tiny run's flags on 2 virtual CPUs, the check
that a failure printed exactly one error line, a digest of a directory's files, and
the CLI run where TensorFlow cannot load."""

import hashlib
import os
import subprocess
import sys

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_args(model_dir, data_dir, *extra):
  return [
      f"--fashion_mnist_dir={data_dir}", f"--model_dir={model_dir}",
      "--resnet_depth=18", "--resnet_width=0.0625", "--first_conv_kernel_size=3",
      "--first_conv_stride=1", "--use_initial_max_pool=false", "--image_size=16",
      "--projection_head_layers=16,8", "--batch_size=16", "--eval_batch_size=16",
      "--strategy=mirrored", "--num_virtual_cpus=2", "--stage_1_warmup_epochs=0",
      "--stage_1_optimizer=lars", "--stage_1_base_learning_rate=0.2",
      "--stage_2_base_learning_rate=0.5", *extra]


def one_error_line(result):
  assert result.returncode == 1, result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1, result.stderr
  assert result.stderr.strip().splitlines()[-1] == lines[0]
  return lines[0]


def tree_digest(path):
  """sha256 over the relative paths and bytes of every file under `path` (a refusal
  must leave a model_dir byte-for-byte as it was)."""
  digest = hashlib.sha256()
  for directory, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    digest.update(os.path.relpath(directory, path).encode() + b"/")
    for name in sorted(files):
      full = os.path.join(directory, name)
      digest.update(os.path.relpath(full, path).encode())
      with open(full, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def run_without_tensorflow(tmp_path, args):
  """The CLI with a `tensorflow` that fails on import: a refusal made before
  TensorFlow loads still prints its own line."""
  fake = tmp_path / "no_tf" / "tensorflow"
  fake.mkdir(parents=True, exist_ok=True)
  (fake / "__init__.py").write_text("raise ImportError('tensorflow was imported')\n")
  env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{_REPO_ROOT}")
  return subprocess.run([sys.executable, "-m", "supcon_tf.run"] + list(args),
                        cwd=_REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=120)
