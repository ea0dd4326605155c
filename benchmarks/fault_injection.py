r"""Kill, preempt and tear runs, resume them, and count how many end differently.

A tiny deterministic run (`--deterministic`, ResNet-18 at width 1/16, 16 px, two
stages of 8 + 6 steps, a checkpoint every 2 steps, Fashion-MNIST's first 256
images) is trained once uninterrupted; its final checkpoint's digest (every model
and optimizer variable, `train.state.checkpoint_digest`) is the reference. Then,
`--runs` times per fault:

  kill     SIGKILL from outside when a random step's progress line appears (plus a
           random 0-0.5 s, so the kill lands anywhere in the next step or save),
           once or twice per run at random steps, then rerun to the end;
  sigterm  SIGTERM at a random step: the run must save and exit with code 75 within
           one chunk; the rerun must go on from exactly that step;
  torn     SIGKILL at a random step, then the newest checkpoint's data file cut to a
           random fraction (a save interrupted by a crash or a full disk): the rerun
           must warn, fall back to the previous checkpoint and finish.

Each run's final digest is compared with the reference; the tool prints one line
per run and `N runs, M mismatches` per fault. Never passes or fails.

  .venv/bin/python benchmarks/fault_injection.py                  # 5 runs of each
  .venv/bin/python benchmarks/fault_injection.py --runs=20 --faults=kill
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import supcon_tf  # pylint: disable=g-import-not-at-top,unused-import  (before TF: oneDNN)
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from supcon_tf.errors import Preempted  # pylint: disable=g-import-not-at-top
from supcon_tf.train.state import checkpoint_digest  # pylint: disable=g-import-not-at-top

STAGE_1, STAGE_2 = 8, 6
TOTAL = STAGE_1 + STAGE_2


def _args(model_dir, data_dir, extra=()):
  return [
      f"--fashion_mnist_dir={data_dir}", f"--model_dir={model_dir}", "--deterministic",
      "--num_train_examples=256", "--num_eval_examples=64",
      "--resnet_depth=18", "--resnet_width=0.0625", "--first_conv_kernel_size=3",
      "--first_conv_stride=1", "--use_initial_max_pool=false", "--image_size=16",
      "--projection_head_layers=16,8", "--batch_size=16", "--eval_batch_size=16",
      f"--stage_1_steps={STAGE_1}", f"--stage_2_steps={STAGE_2}",
      "--stage_1_contrastive_loss_weight=1", "--stage_2_cross_entropy_loss_weight=1",
      "--steps_per_loop=1", "--checkpoint_steps=2", "--mode=train",
      "--export_at_end=false", "--projector_examples=0", "--summary_images=0", *extra]


def _launch(args):
  # stderr into the same pipe: read as it comes, it can never fill up and block.
  return subprocess.Popen([sys.executable, "-m", "supcon_tf.run"] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _global_step_of_line(line):
  if line.startswith("stage ") and "| step " in line:
    local, _ = line.split("| step ")[1].split("/", 1)
    return int(local) + (STAGE_1 if line.startswith("stage 2") else 0)
  return None


def _run_until(args, step, sig, rng):
  """Runs until the progress line of global step `step`, then sends `sig` after a
  random delay. Returns (return code, output)."""
  proc = _launch(args)
  lines = []
  try:
    for line in proc.stdout:
      lines.append(line)
      if _global_step_of_line(line) == step:
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(sig)
        break
    out, _ = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  return proc.returncode, "".join(lines) + out


def _finish(args):
  result = subprocess.run([sys.executable, "-m", "supcon_tf.run"] + args,
                          capture_output=True, text=True, timeout=600, check=False)
  if result.returncode != 0:
    raise SystemExit(f"rerun failed ({result.returncode}): {result.stderr[-2000:]}")
  return result


def _digest(model_dir):
  return checkpoint_digest(tf.train.latest_checkpoint(model_dir))


def _tear(model_dir, rng):
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None:
    return "no checkpoint to tear"
  data = [f for f in os.listdir(model_dir)
          if f.startswith(os.path.basename(latest) + ".data")]
  path = os.path.join(model_dir, data[0])
  fraction = rng.uniform(0.0, 0.9)
  with open(path, "r+b") as f:
    f.truncate(int(os.path.getsize(path) * fraction))
  return f"{os.path.basename(latest)} cut to {fraction:.0%}"


def _one_run(fault, index, work, data_dir, reference, rng):
  model_dir = os.path.join(work, f"{fault}_{index}")
  args = _args(model_dir, data_dir)
  notes = []
  if fault == "kill":
    for step in sorted(rng.sample(range(1, TOTAL), rng.choice((1, 2)))):
      code, _ = _run_until(args, step, signal.SIGKILL, rng)
      notes.append(f"SIGKILL after step {step} ({code})")
  elif fault == "sigterm":
    step = rng.randrange(1, TOTAL)
    code, _ = _run_until(args, step, signal.SIGTERM, rng)
    saved = (int(tf.train.load_variable(tf.train.latest_checkpoint(model_dir),
                                        "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
             if tf.train.latest_checkpoint(model_dir) else None)
    ok = code == Preempted.EXIT_CODE or (code == 0 and saved == TOTAL)
    notes.append(f"SIGTERM after step {step}: exit {code}, saved at {saved}"
                 + ("" if ok else " UNEXPECTED"))
    if not ok:
      return False, notes
  else:
    step = rng.randrange(5, TOTAL)  # two checkpoints kept by then: one to fall back to
    _run_until(args, step, signal.SIGKILL, rng)
    notes.append(f"SIGKILL after step {step}; " + _tear(model_dir, rng))
  result = _finish(args)
  if fault == "torn" and "unreadable" not in result.stderr:
    notes.append("no fall-back warning")
  same = _digest(model_dir) == reference
  shutil.rmtree(model_dir, ignore_errors=True)
  return same, notes


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs", type=int, default=5, help="runs per fault")
  p.add_argument("--faults", default="kill,sigterm,torn")
  p.add_argument("--seed", type=int, default=0, help="of the fault schedule")
  p.add_argument("--fashion_mnist_dir", default="/usr/share/datasets/fashion-mnist")
  args = p.parse_args(argv)
  rng = random.Random(args.seed)
  work = tempfile.mkdtemp(prefix="supcon_faults_")
  try:
    start = time.time()
    reference_dir = os.path.join(work, "reference")
    _finish(_args(reference_dir, args.fashion_mnist_dir))
    reference = _digest(reference_dir)
    print(f"reference: uninterrupted run of {TOTAL} steps ({STAGE_1} + {STAGE_2}), "
          f"digest {reference[:16]} ({time.time() - start:.0f} s)", flush=True)
    for fault in args.faults.split(","):
      mismatches = 0
      for i in range(args.runs):
        t0 = time.time()
        same, notes = _one_run(fault, i, work, args.fashion_mnist_dir, reference, rng)
        mismatches += not same
        print(f"  {fault} {i + 1}: {'; '.join(notes)} -> "
              f"{'identical' if same else 'MISMATCH'} ({time.time() - t0:.0f} s)",
              flush=True)
      print(f"{fault}: {args.runs} runs, {mismatches} mismatches", flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
