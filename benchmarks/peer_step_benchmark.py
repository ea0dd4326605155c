r"""Our SupCon train step (and loss) against a PyTorch SupContrast-style one.

Both frameworks run the same arithmetic on the same machine: a CIFAR-stem ResNet-18
(3x3 stride-1 stem, no max-pool), a 512-512-128 projection head with L2-normalised
output, the SupCon loss over all views (L_out, tau 0.1), SGD with momentum 0.9 and
weight decay 1e-4, float32, a fixed synthetic batch of `--batch` samples x 2 views.
Ours is the trainer's own step (`Trainer.train_step`, the package's default BN
and kernels); PyTorch's is `peer_torch.Step` (eager, the way SupContrast runs).

Each framework runs in its own worker process (one process tree), limited to the
same `--threads` intra-op threads; the workers build and warm up once, then take
turns: each round times `--steps` steps of one, then of the other (the order swaps
every round), so drifts of the machine hit both alike. Reported: median step time
over all rounds, images/s (samples x views per second) and the ratio
ours/PyTorch of images/s (> 1: ours is faster). `--what=loss` times forward +
backward of the loss alone on random normalised features at `--loss_batches`.

PyTorch is a benchmark-only dependency (`pip install -r requirements-bench.txt`,
the CPU wheel); the package and its tests never import it.

  .venv/bin/python benchmarks/peer_step_benchmark.py
  .venv/bin/python benchmarks/peer_step_benchmark.py --what=loss --loss_batches=256,1024,2048
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--what", default="step", choices=["step", "loss"])
  p.add_argument("--batch", type=int, default=32, help="samples per step (x 2 views)")
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--width", type=int, default=64, help="channels of the first stage")
  p.add_argument("--loss_batches", default="256,1024,2048")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=4, help="timed steps per turn")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--xla", action="store_true", help="ours with --jit_compile")
  p.add_argument("--_worker", default="", help=argparse.SUPPRESS)
  p.add_argument("--_loss_batch", type=int, default=0, help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ------------------------------------------------------------------ workers
def _tf_step(args):
  import supcon_tf  # pylint: disable=import-outside-toplevel,unused-import  (before TF: oneDNN)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  if args.what == "loss":
    import numpy as np  # pylint: disable=import-outside-toplevel
    from supcon_tf import losses  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args._loss_batch, 2, 128)).astype(np.float32)
    features = tf.constant(x / np.linalg.norm(x, axis=-1, keepdims=True))
    labels = tf.constant(rng.integers(0, 100, args._loss_batch), tf.int32)

    @tf.function
    def loss_step():
      with tf.GradientTape() as tape:
        tape.watch(features)
        loss = tf.reduce_mean(losses.supcon_loss(features, labels, temperature=0.1))
      return loss, tape.gradient(loss, features)
    return lambda: [t.numpy() for t in loss_step()], args._loss_batch * 2
  import train_step_benchmark as tsb  # pylint: disable=import-outside-toplevel
  from supcon_tf import config as config_lib  # pylint: disable=import-outside-toplevel
  width = args.width / 64
  cfg = tsb._config(18, args.image_size, args.batch, True, args.xla, "float32",  # pylint: disable=protected-access
                    width, optimizer=config_lib.Optimizer.MOMENTUM,
                    head=(round(512 * width), 128), normalize_embedding=False)
  return tsb.make_step(cfg, supcon=True)


def _torch_step(args):
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads)
  import peer_torch  # pylint: disable=import-outside-toplevel
  if args.what == "loss":
    return peer_torch.LossStep(args._loss_batch, 2), args._loss_batch * 2
  head = (8 * args.width, 128)
  return (peer_torch.Step(args.batch, 2, args.image_size, width=args.width, head=head),
          args.batch * 2)


def _worker(args):
  """Builds one framework's step, warms up, then times steps on request."""
  step, images = (_tf_step if args._worker == "tf" else _torch_step)(args)
  for _ in range(args.warmup):
    step()
  print(json.dumps({"ready": images}), flush=True)
  for line in sys.stdin:
    n = int(line)
    if n <= 0:
      return
    times = []
    for _ in range(n):
      t0 = time.perf_counter()
      step()
      times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times}), flush=True)


# ------------------------------------------------------------------ parent
class _Worker:

  def __init__(self, name, args, extra):
    cmd = [sys.executable, os.path.abspath(__file__), f"--_worker={name}",
           f"--what={args.what}", f"--batch={args.batch}", f"--width={args.width}",
           f"--image_size={args.image_size}", f"--threads={args.threads}",
           f"--warmup={args.warmup}"] + (["--xla"] if args.xla else []) + extra
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(args.threads))
    self.name = name
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env)
    self.images = self._read()["ready"]

  def _read(self):
    line = self.proc.stdout.readline()
    if not line:
      raise SystemExit(f"error: the {self.name} worker exited "
                       f"({self.proc.wait()}); is its framework installed?")
    return json.loads(line)

  def run(self, steps):
    self.proc.stdin.write(f"{steps}\n")
    self.proc.stdin.flush()
    return self._read()["times"]

  def close(self):
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write("0\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
      except (OSError, subprocess.TimeoutExpired):
        self.proc.kill()


def _compare(args, extra):
  """{framework: (median seconds, images/s)} from alternating turns."""
  workers = []
  try:
    # Built one after the other, so neither's warm-up is timed against the other's.
    workers = [_Worker("tf", args, extra), _Worker("torch", args, extra)]
    times = {w.name: [] for w in workers}
    for r in range(args.rounds):
      for w in (workers if r % 2 == 0 else workers[::-1]):
        times[w.name] += w.run(args.steps)
    return {w.name: (statistics.median(times[w.name]),
                     w.images / statistics.median(times[w.name])) for w in workers}
  finally:
    for w in workers:
      w.close()


def main(argv=None):
  args = _parse(argv)
  if args._worker:
    _worker(args)
    return
  print(f"peer benchmark ({args.what}): this package (TensorFlow) vs PyTorch, "
        f"{os.cpu_count()} CPU cores, {args.threads} threads each, median of "
        f"{args.rounds} x {args.steps} alternating steps after {args.warmup} warm-up")
  if args.what == "step":
    print(f"ResNet-18 (CIFAR stem, width {args.width}), head {8 * args.width}-128, "
          f"{args.image_size}px, {args.batch} samples x 2 views, SGD momentum, float32"
          + (", ours with XLA" if args.xla else ""))
    r = _compare(args, [])
    print(f"{'':>10} {'ms/step':>9} {'images/s':>9}")
    for name, label in (("tf", "supcon_tf"), ("torch", "PyTorch")):
      print(f"{label:>10} {r[name][0] * 1e3:>9.1f} {r[name][1]:>9.1f}")
    print(f"ratio supcon_tf/PyTorch images/s: {r['tf'][1] / r['torch'][1]:.2f}")
    return
  print("SupCon loss forward + backward, 2 views x 128-d, 100 classes, tau 0.1")
  print(f"{'batch':>6} {'views':>6} {'ours ms':>8} {'torch ms':>9} {'ours/torch time':>16}")
  for b in [int(x) for x in args.loss_batches.split(",")]:
    r = _compare(args, [f"--_loss_batch={b}"])
    print(f"{b:>6} {2 * b:>6} {r['tf'][0] * 1e3:>8.1f} {r['torch'][0] * 1e3:>9.1f} "
          f"{r['tf'][0] / r['torch'][0]:>16.2f}", flush=True)


if __name__ == "__main__":
  main()
