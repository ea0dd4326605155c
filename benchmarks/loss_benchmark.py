r"""Forward+backward time and peak memory of `supcon_loss` on one device.

Prints a table; never passes or fails. Each batch size runs in its own
subprocess (unless --no-isolate), so that peak memory figures do not carry over
from one size to the next.

  .venv/bin/python benchmarks/loss_benchmark.py
  .venv/bin/python benchmarks/loss_benchmark.py --batch_sizes=256,1024 --repeats=10
  .venv/bin/python benchmarks/loss_benchmark.py --compare --chunk_size=512 \
      --batch_sizes=512,2048,8192,16384,32768 --repeats=2 --warmup=1

--chunk_size=C times the chunked loss (`supcon_loss(..., chunk_size=C)`).
--compare prints plain (chunk_size 0) and chunked side by side for each size, each
run in its own subprocess; plain is skipped ("skipped: needs X GiB") where its
[n, n] float32 matrices (--plain_matrices of them: logits, exponentials and the
backward pass's) would need more than --plain_limit_gib. No floor in this mode.

Columns:
  time: median wall time of one loss + gradient step (a `tf.function` returning
    the mean loss and d loss / d features), over --repeats runs after --warmup
    untimed runs (the first one traces).
  tf_peak: peak bytes held by TensorFlow's CPU allocator during the timed runs
    (`tf.config.experimental.get_memory_info('CPU:0')['peak']` after
    `reset_memory_stats`), minus what was held before them (the inputs).
  rss_peak: peak resident set size of the subprocess (`getrusage` ru_maxrss)
    minus its RSS just before the first step (TensorFlow loaded, inputs
    created); includes TensorFlow's own workspaces and allocator caching. Only
    with isolation.
  floor: the analytic floor, the loss's two [n, d] x [d, n]-sized matrix
    products (forward logits, backward gradient; n = views x batch) timed alone
    as tf.matmul on this machine, with the rate they reach (GFLOP/s) and the
    loss's time as a multiple of it. --no-floor skips it.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch_sizes", default="256,1024,4096",
                      help="comma-separated local batch sizes (samples)")
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed runs per batch size (the median is reported)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed runs first (the first one traces)")
  parser.add_argument("--views", type=int, default=2)
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--num_classes", type=int, default=100,
                      help="labels drawn uniformly from this many classes")
  parser.add_argument("--no_labels", action="store_true", help="SimCLR (labels=None)")
  parser.add_argument("--temperature", type=float, default=0.1)
  parser.add_argument("--contrast_mode", default="all_views")
  parser.add_argument("--summation", default="outside")
  parser.add_argument("--denominator", default="all")
  parser.add_argument("--positives_cap", type=int, default=-1)
  parser.add_argument("--chunk_size", type=int, default=0,
                      help="anchor rows per chunk of the loss (0: plain)")
  parser.add_argument("--compare", action="store_true",
                      help="plain vs --chunk_size side by side (one subprocess each)")
  parser.add_argument("--plain_limit_gib", type=float, default=12.0,
                      help="--compare: skip plain above this estimated need")
  parser.add_argument("--plain_matrices", type=int, default=4,
                      help="--compare: [n, n] float32 matrices plain holds at its peak")
  parser.add_argument("--threads", type=int, default=0,
                      help="intra/inter-op threads (0: TensorFlow's default)")
  parser.add_argument("--isolate", action=argparse.BooleanOptionalAction,
                      default=True,
                      help="run each batch size in a fresh subprocess (default)")
  parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                      help="also time the loss's matrix products alone (the floor)")
  parser.add_argument("--_child_batch", type=int, default=0,
                      help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def _current_rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(args, batch):
  """Runs one batch size in this process; returns a dict of results."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import supcon_tf  # pylint: disable=import-outside-toplevel,unused-import  (before TF: oneDNN)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  from supcon_tf import losses  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, args.views, args.dim)).astype(np.float32)
  x /= np.linalg.norm(x, axis=-1, keepdims=True)
  features = tf.constant(x)
  labels = None if args.no_labels else tf.constant(
      rng.integers(0, args.num_classes, size=batch), tf.int32)
  kwargs = dict(temperature=args.temperature, contrast_mode=args.contrast_mode,
                summation=args.summation, denominator=args.denominator,
                positives_cap=args.positives_cap, chunk_size=args.chunk_size)

  @tf.function
  def step(features, labels):
    with tf.GradientTape() as tape:
      tape.watch(features)
      loss = tf.reduce_mean(losses.supcon_loss(features, labels, **kwargs))
    return loss, tape.gradient(loss, features)

  def run_once():
    loss, grad = step(features, labels)
    # Fetching both to the host waits for the whole step.
    return float(loss.numpy()), grad.numpy()

  rss_before = _current_rss_bytes()
  for _ in range(max(args.warmup, 1)):
    loss, _ = run_once()

  tf_peak = None
  try:
    tf.config.experimental.reset_memory_stats("CPU:0")
    held_before = tf.config.experimental.get_memory_info("CPU:0")["current"]
  except (ValueError, RuntimeError):  # not supported by this build/device
    held_before = None

  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    run_once()
    times.append(time.perf_counter() - start)
  floor = _matmul_floor(tf, args, batch, times) if args.floor else None

  if held_before is not None:
    tf_peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - held_before
  rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
  return dict(batch=batch, loss=loss, median_s=statistics.median(times),
              min_s=min(times), tf_peak=tf_peak, rss_peak=rss_peak, floor=floor)


def _matmul_floor(tf, args, batch, loss_times):
  """The loss's analytic floor on this machine: its matrix products alone.

  On one device with every view an anchor, the loss needs two products of
  [n, d] x [d, n] size (n = views x batch): the logits u u^T in the forward pass
  and (G + G^T) u in the backward pass. Both are timed here as plain `tf.matmul`s
  on the same shapes, right after the loss in the same process (as many runs),
  so that both see the same machine state. Returns (floor seconds, GFLOP/s of
  the products).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  n = args.views * batch
  rng = np.random.default_rng(1)
  u = tf.constant(rng.normal(size=(n, args.dim)).astype(np.float32))
  g = tf.constant(rng.normal(size=(n, n)).astype(np.float32))

  @tf.function
  def products():
    return tf.matmul(u, u, transpose_b=True)[0, 0] + tf.matmul(g, u)[0, 0]

  products()
  times = []
  for _ in range(len(loss_times)):
    start = time.perf_counter()
    products().numpy()
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  return seconds, 2 * 2 * n * n * args.dim / seconds / 1e9


def _run_child(args, batch, **overrides):
  cmd = [sys.executable, os.path.abspath(__file__), f"--_child_batch={batch}"]
  for name, value in dict(vars(args), **overrides).items():
    if name in ("batch_sizes", "isolate", "_child_batch", "compare"):
      continue
    if name == "floor":
      cmd.append("--floor" if value else "--no-floor")
    elif isinstance(value, bool):
      if value:
        cmd.append(f"--{name}")
    else:
      cmd.append(f"--{name}={value}")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  sys.stderr.write(proc.stderr[-4000:])
  return dict(batch=batch, error=f"subprocess exited with {proc.returncode}")


def _mib(num_bytes):
  return "n/a" if num_bytes is None else f"{num_bytes / 2**20:,.0f}"


def main(argv=None):
  args = _parse_args(argv)
  if args._child_batch:  # pylint: disable=protected-access
    print("RESULT " + json.dumps(_measure(args, args._child_batch)))  # pylint: disable=protected-access
    return

  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  if args.compare:
    _compare(args, batches, tf.__version__)
    return
  print(f"supcon_loss forward+backward, single device (CPU), TF {tf.__version__}, "
        f"{os.cpu_count()} CPU cores")
  print(f"views={args.views} dim={args.dim} "
        f"labels={'none (SimCLR)' if args.no_labels else f'{args.num_classes} classes'}"
        f" temperature={args.temperature} contrast_mode={args.contrast_mode} "
        f"summation={args.summation} denominator={args.denominator} "
        f"positives_cap={args.positives_cap}")
  print(f"time: median of {args.repeats} runs after {args.warmup} warm-up runs, "
        "inside tf.function")
  print("tf_peak: TF CPU allocator peak during the timed runs minus bytes held "
        "before (get_memory_info('CPU:0'))")
  print("rss_peak: process peak RSS minus RSS before the first step "
        + ("(one subprocess per batch size)" if args.isolate else
           "(no isolation: carries over from earlier sizes)"))
  print()
  header = (f"{'local batch':>11} {'views x batch':>13} {'logits':>13} "
            f"{'median ms':>10} {'min ms':>9} {'tf_peak MiB':>12} "
            f"{'rss_peak MiB':>13} {'loss':>8}"
            + (f" {'floor ms':>9} {'GFLOP/s':>8} {'loss/floor':>10}" if args.floor else ""))
  print(header)
  print("-" * len(header))
  for batch in batches:
    result = _run_child(args, batch) if args.isolate else _measure(args, batch)
    n = args.views * batch
    if "error" in result:
      print(f"{batch:>11} {n:>13} {f'{n}x{n}':>13} {result['error']}")
      continue
    rss = result["rss_peak"] if args.isolate else None
    print(f"{batch:>11} {n:>13} {f'{n}x{n}':>13} "
          f"{result['median_s'] * 1e3:>10.1f} {result['min_s'] * 1e3:>9.1f} "
          f"{_mib(result['tf_peak']):>12} {_mib(rss):>13} {result['loss']:>8.4f}"
          + _floor_columns(result), flush=True)


def _compare(args, batches, tf_version):
  """Plain vs chunked, each size and each variant in its own subprocess."""
  print(f"supcon_loss forward+backward, plain vs chunk_size={args.chunk_size}, single "
        f"device (CPU), TF {tf_version}, {os.cpu_count()} CPU cores")
  print(f"views={args.views} dim={args.dim} "
        f"labels={'none (SimCLR)' if args.no_labels else f'{args.num_classes} classes'}"
        f" contrast_mode={args.contrast_mode} summation={args.summation} "
        f"denominator={args.denominator} positives_cap={args.positives_cap}")
  print(f"time: median of {args.repeats} runs after {args.warmup} warm-up runs; "
        "memory: peak RSS of the subprocess minus RSS before the first step, and TF "
        "allocator peak (MiB)")
  print()
  header = (f"{'global views':>12} {'plain ms':>10} {'plain rss':>10} "
            f"{'plain tf':>9} {'chunk ms':>10} {'chunk rss':>10} {'chunk tf':>9} "
            f"{'time x':>7} {'|loss diff|':>11}")
  print(header)
  print("-" * len(header))
  for batch in batches:
    n = args.views * batch
    need_gib = args.plain_matrices * 4 * n * n / 2**30
    chunked = _run_child(args, batch, floor=False)
    if need_gib > args.plain_limit_gib:
      plain = dict(error=f"skipped: needs {need_gib:,.0f} GiB")
    else:
      plain = _run_child(args, batch, floor=False, chunk_size=0)

    def cols(r):
      if "error" in r:
        return f"{r['error']:>31}"
      return (f"{r['median_s'] * 1e3:>10.1f} {_mib(r['rss_peak']):>10} "
              f"{_mib(r['tf_peak']):>9}")

    ratio = diff = ""
    if "error" not in plain and "error" not in chunked:
      ratio = f"{chunked['median_s'] / plain['median_s']:.2f}"
      diff = f"{abs(chunked['loss'] - plain['loss']):.1e}"
    print(f"{n:>12} {cols(plain)} {cols(chunked)} {ratio:>7} {diff:>11}", flush=True)


def _floor_columns(result):
  if not result.get("floor"):
    return ""
  seconds, gflops = result["floor"]
  return f" {seconds * 1e3:>9.1f} {gflops:>8.1f} {result['median_s'] / seconds:>10.2f}"


if __name__ == "__main__":
  main()
