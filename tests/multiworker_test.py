"""Two MultiWorkerMirroredStrategy workers as local processes on 127.0.0.1 (ports
picked by the test, a hard timeout, processes always killed): one step on a fixed
batch against one process, and the embedded default end to end from the CLI."""

import json
import os
import sys

import numpy as np
import tensorflow as tf

from tests import testing

_TIMEOUT = 420  # seconds for all the workers of one run


def _check(results):
  for task, (code, out, err) in enumerate(results):
    assert code is not None, f"worker {task} timed out:\n{out[-2000:]}\n{err[-3000:]}"
    assert code == 0, f"worker {task} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"


def _step_json(text):
  return json.loads([l for l in text.splitlines() if l.startswith("{")][-1])


def test_fixed_batch_step_of_two_workers_equals_one_process():
  script = [sys.executable, "-m", "tests.multiworker_step"]  # from the repository root
  workers = testing.run_workers(script + ["multi_worker"], timeout=_TIMEOUT)
  _check(workers)
  single = testing.subprocess.run(script + ["single"], cwd=testing.REPO_ROOT,
                                  capture_output=True, text=True, timeout=_TIMEOUT)
  assert single.returncode == 0, single.stderr[-3000:]
  reference = _step_json(single.stdout)
  assert reference["replicas"] == 1
  for _, out, _ in workers:
    got = _step_json(out)
    assert got["replicas"] == 2
    for name in ("loss", "contrastive_loss", "weight_decay_loss"):
      np.testing.assert_allclose(got["metrics"][name], reference["metrics"][name],
                                 rtol=1e-5, err_msg=name)
    # The gradient's norm carries the fused-vs-unfused BatchNorm difference of the
    # update below (4.9e-5 relative on this session's CPU, before and after the
    # train/ split alike): the update's tolerance.
    np.testing.assert_allclose(got["metrics"]["gradient_norm"],
                               reference["metrics"]["gradient_norm"], rtol=1e-4)
    # Global BN + gathered loss + all-reduced gradients: the same update as one
    # device on the whole batch, up to the fused-vs-unfused BatchNorm difference
    # (synchronised BN is Keras' unfused BatchNorm, one device uses the fused
    # kernel; the training-mode BN gradients of this tiny ResNet are ill-conditioned:
    # 2e-5 relative on the machine this test was written on, 8.7e-4 on this
    # session's CPU with the pre-split code too). A per-shard loss or a missing
    # all-reduce moves the update by O(1) and the loss above beyond 1e-5.
    a, b = np.array(reference["update"]), np.array(got["update"])
    assert np.linalg.norm(a - b) < 2e-3 * np.linalg.norm(a)


def _tiny_args(model_dir, data_dir, *extra):
  return [f"--fashion_mnist_dir={data_dir}", f"--model_dir={model_dir}",
          "--resnet_depth=18", "--resnet_width=0.0625", "--first_conv_kernel_size=3",
          "--first_conv_stride=1", "--use_initial_max_pool=false", "--image_size=16",
          "--projection_head_layers=16,8", "--use_projection_batch_norm",
          "--batch_size=16", "--eval_batch_size=16", "--stage_1_steps=4",
          "--stage_2_steps=2", "--steps_per_loop=2", "--checkpoint_steps=2",
          "--projector_examples=20", "--summary_images=2", *extra]


def test_two_workers_run_the_embedded_default_end_to_end(tmp_path, fake_data):
  model_dir = tmp_path / "m"
  # Also the kNN monitor at steps 2 and 4 (the end of stage 1): both workers embed
  # and gather, only the chief votes and writes.
  # And the memory queue filled by a momentum encoder (sync-on-read copies per worker).
  args = _tiny_args(model_dir, fake_data, "--knn_every=2", "--knn_k=5", "--memory_size=48",
                    "--momentum_encoder=0.9")
  cli = [sys.executable, "-m", "supcon_tf.run", "--flagfile=experiments/fashion_mnist.cfg"]
  workers = testing.run_workers(cli + args + ["--strategy=multi_worker"], timeout=_TIMEOUT)
  _check(workers)
  chief_out, worker_out = workers[0][1], workers[1][1]
  assert "stage 1 | epoch" in chief_out and "stage 2 | epoch" in chief_out
  assert "with 2 replica(s)" in chief_out
  assert "test top-1" in chief_out and "exported" in chief_out
  assert worker_out.strip() == ""  # only the chief reports ...
  # ... and writes: the workers' scratch copies are gone, everything else is the chief's.
  assert not (model_dir / "tmp_worker").exists() or not any(
      files for _, _, files in os.walk(model_dir / "tmp_worker"))
  for path in ("config.json", "classes.json", "eval_results.json", "checkpoint",
               "projector/stage_1/metadata.tsv", "export/encoder/saved_model.pb",
               "export/classifier/saved_model.pb", "export/export_info.json"):
    assert (model_dir / path).exists(), path
  latest = tf.train.latest_checkpoint(str(model_dir))
  assert tf.train.load_variable(latest, "memory/count/.ATTRIBUTES/VARIABLE_VALUE") == 4 * 32
  labels = tf.train.load_variable(latest, "memory/labels/.ATTRIBUTES/VARIABLE_VALUE")
  assert labels.shape == (48,) and labels.min() >= 0 and labels.max() <= 9
  assert any(n.startswith("momentum_model/") for n, _ in tf.train.list_variables(latest))
  with open(model_dir / "results.json") as f:
    knn = json.load(f)["knn"]
  # Every training and test image once: the padding of each worker's shard dropped.
  assert [(e["global_step"], e["k"], e["bank_size"], e["num_examples"]) for e in knn] \
      == [(2, 5, 64, 40), (4, 5, 64, 40)]
  assert f"| knn top-1 {100 * knn[1]['top_1']:.2f}%" in chief_out
  with open(model_dir / "eval_results.json") as f:
    distributed = json.load(f)
  assert distributed["global_step"] == 6 and distributed["num_examples"] == 40
  with open(model_dir / "results.json") as f:
    run = json.load(f)["run"]
  assert run["top_1"] == distributed["top_1"] and run["hardware"]["replicas"] == 2
  assert run["hardware"]["strategy"] == "CollectiveAllReduceStrategy"  # TF's MWMS class
  # One process evaluating the same checkpoint finds the same numbers.
  single = testing.run_cli(cli[3:] + args + ["--mode=eval", "--projector_examples=0"],
                           timeout=_TIMEOUT)
  assert single.returncode == 0, single.stderr[-3000:]
  with open(model_dir / "eval_results.json") as f:
    alone = json.load(f)
  assert alone["top_1"] == distributed["top_1"] and alone["top_5"] == distributed["top_5"]
  assert alone["num_examples"] == 40
