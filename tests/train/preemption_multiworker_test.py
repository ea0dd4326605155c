"""Preemption under MultiWorkerMirroredStrategy: SIGTERM to one of two local workers
(127.0.0.1, ports picked by the test) makes both save a checkpoint at the same step
and exit with code 75 and the same one line; rerunning both continues with the exact
step count. Every process is killed on any failure (`testing.Workers`)."""

import os
import signal
import sys
import time

import pytest
import tensorflow as tf

from supcon_tf.errors import Preempted
from tests import testing

_STEPS = 24
_CLI = [sys.executable, "-m", "supcon_tf.run", "--flagfile=experiments/fashion_mnist.cfg"]


def _args(model_dir, data_dir):
  return [f"--fashion_mnist_dir={data_dir}", f"--model_dir={model_dir}",
          "--strategy=multi_worker", "--resnet_depth=18", "--resnet_width=0.0625",
          "--first_conv_kernel_size=3", "--first_conv_stride=1",
          "--use_initial_max_pool=false", "--image_size=16",
          "--projection_head_layers=16,8", "--batch_size=16", "--eval_batch_size=16",
          f"--stage_1_steps={_STEPS}", "--stage_2_steps=0", "--stage_2_epochs=0",
          "--steps_per_loop=1", "--checkpoint_steps=100", "--mode=train",
          "--export_at_end=false", "--projector_examples=0", "--summary_images=0"]


def _global_step(path):
  return int(tf.train.load_variable(path, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _progress_steps(stdout):
  return [int(l.split("| step ")[1].split("/")[0]) for l in stdout.splitlines()
          if l.startswith("stage 1 |")]


def _wait_for_step(workers, step, timeout):
  """Polls the chief's progress lines until one reports `step` (bounded)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    out, _ = workers.output(0)
    if any(s >= step for s in _progress_steps(out)):
      return max(_progress_steps(out))
    codes = [p.poll() for p in workers.procs]
    assert codes == [None, None], f"a worker exited early: {codes}\n" + "\n".join(
        workers.output(t)[1][-2000:] for t in range(2))
    time.sleep(0.5)
  raise AssertionError(f"no progress line for step {step} within {timeout} s:\n"
                       + "\n".join(workers.output(t)[1][-2000:] for t in range(2)))


@pytest.mark.parametrize("signalled", [1, 0], ids=["worker", "chief"])
def test_sigterm_to_one_worker_stops_both_at_one_step_and_the_rerun_continues(
    tmp_path, fake_data, signalled):
  model_dir = tmp_path / "run"
  args = _CLI + _args(model_dir, fake_data)
  with testing.Workers(args) as workers:
    seen = _wait_for_step(workers, 3, timeout=360)
    sent = time.time()
    os.kill(workers.procs[signalled].pid, signal.SIGTERM)
    codes = workers.wait(timeout=180, until_one_fails=False)  # both should stop
    stopped = time.time() - sent
    results = workers.results()
  logs = "\n".join(f"worker {t} exited {c}:\n{o[-1500:]}\n{e[-2500:]}"
                   for t, (c, o, e) in enumerate(results))
  assert codes == [Preempted.EXIT_CODE] * 2, logs
  assert stopped < 120, stopped
  lines = []
  for _, _, err in results:
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, logs
    lines.append(errors[0])
  assert lines[0] == lines[1], lines  # the same step, the same line on both workers
  assert "preemption notice" in lines[0] and str(model_dir) in lines[0], lines[0]
  assert lines[0].endswith("rerun the same command to continue"), lines[0]
  stopped_at = int(lines[0].split("global step ")[1].split(":")[0])
  assert seen <= stopped_at < _STEPS, (seen, lines[0])
  # The chief's checkpoint of that step, a normal ckpt-<global step> in model_dir
  # (--checkpoint_steps=100: the preemption saved it); no scratch copy left behind.
  latest = tf.train.latest_checkpoint(str(model_dir))
  assert latest == str(model_dir / f"ckpt-{stopped_at}"), latest
  assert _global_step(latest) == stopped_at
  leftovers = [os.path.join(d, f) for d, _, files in os.walk(model_dir) for f in files
               if "tmp_worker" in d or "workertemp" in d]
  assert not leftovers, leftovers
  dirs = [d for d, _, _ in os.walk(model_dir)]
  # Neither TensorFlow's scratch (workertemp_<task>) nor the handler's own never-saved
  # bookkeeping directory exists.
  assert not [d for d in dirs if "workertemp" in d or d.endswith("preemption")], dirs

  rerun = testing.run_workers(args, timeout=420)
  logs = "\n".join(f"worker {t} exited {c}:\n{o[-1500:]}\n{e[-2500:]}"
                   for t, (c, o, e) in enumerate(rerun))
  assert [code for code, _, _ in rerun] == [0, 0], logs
  chief_out = rerun[0][1]
  assert f"resuming at stage step {stopped_at}" in chief_out, chief_out
  steps = _progress_steps(chief_out)
  assert steps[0] == stopped_at + 1 and steps[-1] == _STEPS, steps  # none lost or repeated
  latest = tf.train.latest_checkpoint(str(model_dir))
  assert latest == str(model_dir / f"ckpt-{_STEPS}") and _global_step(latest) == _STEPS
