r"""Where the train step's time goes, from a `--profile_steps` trace.

Reads the newest TF profiler trace (`*.xplane.pb`) under `<model_dir>/plugins/profile`
— the one a run with `--profile_steps=START,END` writes — and prints, per step:

  * the trace window (first to last op of the traced steps) and the time the TF
    executors were busy running ops (the union over executor threads); the rest is
    per-step Python, dispatch and waiting (`idle / dispatch`);
  * the op time by category (convolutions forward and backward, BatchNorm, layout
    and padding, projection head, loss, gradient/weight norms and weight decay,
    optimizer update, elementwise rest), summed over executor threads, so the shares
    add up to 100% even when two ops ran side by side;
  * the top op types.

  .venv/bin/python -m supcon_tf.run --flagfile=experiments/fashion_mnist.cfg \
      --model_dir=/tmp/prof --resnet_width=1 --image_size=32 --batch_size=32 \
      --projection_head_layers=512,128 --stage_1_steps=14 --stage_2_epochs=0 \
      --profile_steps=6,12 --mode=train --steps_per_loop=14 --export_at_end=false \
      --overwrite
  .venv/bin/python benchmarks/profile_summary.py /tmp/prof --steps=6

The same trace opens in TensorBoard's Profile tab (`tensorboard --logdir=/tmp/prof`).
"""

import argparse
import collections
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import

# (category, test on (op type, full op name)), first match wins: name scopes first.
CATEGORIES = (
    ("projection head", lambda t, n: "projection_head" in n),
    ("loss", lambda t, n: "supcon" in n or "contrastive" in n or "cross_entropy" in n),
    ("norms + weight decay", lambda t, n: "global_norm" in n or t == "L2Loss"),
    ("optimizer update", lambda t, n: t.startswith("ResourceApply") or "/SGD/" in n
     or "/LARS/" in n or "/Adam" in n or "update_" in n),
    ("conv backward (filter)", lambda t, n: "Conv2DBackpropFilter" in t),
    ("conv backward (input)", lambda t, n: "Conv2DBackpropInput" in t),
    ("conv forward", lambda t, n: "Conv2D" in t),
    ("BatchNorm backward", lambda t, n: "FusedBatchNormGrad" in t),
    ("BatchNorm forward", lambda t, n: "FusedBatchNorm" in t),
    ("layout + padding", lambda t, n: t in ("Transpose", "_MklTranspose", "Pad", "Slice",
                                            "ConcatV2", "_MklToTf", "Reshape")),
    ("gradient sums", lambda t, n: t == "AddN"),
    ("elementwise + other", lambda t, n: True),
)


def newest_trace(path: str) -> str:
  """The newest `.xplane.pb` at `path` (a file, a model_dir or a profile dir)."""
  if os.path.isfile(path):
    return path
  found = sorted(glob.glob(os.path.join(path, "**", "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
  if not found:
    raise SystemExit(f"error: no *.xplane.pb under {path} (run with --profile_steps)")
  return found[-1]


def op_events(trace: str):
  """[(op type, op name, start ps, duration ps, thread)] of the executors' ops."""
  space = xplane_pb2.XSpace()
  with open(trace, "rb") as f:
    space.ParseFromString(f.read())
  events = []
  for plane in space.planes:
    meta = plane.event_metadata
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for e in line.events:
        m = meta[e.metadata_id]
        if ":" in m.name and m.display_name:  # "scope/op:OpType" events are ops
          events.append((m.display_name, m.name, line.timestamp_ns * 1000 + e.offset_ps,
                         e.duration_ps, line.id))
  return events


def busy_ps(events) -> int:
  """Length of the union of the events' intervals."""
  total, end = 0, 0
  for start, stop in sorted((s, s + d) for _, _, s, d, _ in events):
    start = max(start, end)  # the part before `end` is counted already
    if stop > start:
      total += stop - start
      end = stop
  return total


def categorize(op_type: str, name: str) -> str:
  return next(c for c, test in CATEGORIES if test(op_type, name))


def summarize(events, steps: int, top: int = 12):
  """Printable lines of the summary."""
  if not events:
    return ["no op events in the trace"]
  window = max(s + d for _, _, s, d, _ in events) - min(s for _, _, s, _, _ in events)
  busy = busy_ps(events)
  total = sum(e[3] for e in events)
  by_cat, by_type, count = collections.Counter(), collections.Counter(), collections.Counter()
  for op_type, name, _, dur, _ in events:
    by_cat[categorize(op_type, name)] += dur
    by_type[op_type] += dur
    count[op_type] += 1
  ms = lambda ps: ps / 1e9 / steps  # per step
  lines = [f"trace window {ms(window):.1f} ms/step over {steps} steps; executors busy "
           f"{ms(busy):.1f} ms/step; idle / dispatch {ms(window - busy):.1f} ms/step "
           f"({100 * (window - busy) / window:.1f}%)",
           f"op time (summed over executor threads) {ms(total):.1f} ms/step", "",
           f"{'category':<24} {'ms/step':>9} {'share':>7}"]
  for cat, _ in CATEGORIES:
    if by_cat[cat]:
      lines.append(f"{cat:<24} {ms(by_cat[cat]):>9.1f} {100 * by_cat[cat] / total:>6.1f}%")
  lines += ["", f"{'op type':<34} {'ms/step':>9} {'share':>7} {'ops/step':>9}"]
  for op_type, dur in by_type.most_common(top):
    lines.append(f"{op_type:<34} {ms(dur):>9.1f} {100 * dur / total:>6.1f}% "
                 f"{count[op_type] / steps:>9.0f}")
  return lines


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("path", help="model_dir, profile directory or .xplane.pb file")
  p.add_argument("--steps", type=int, required=True,
                 help="steps in the trace (END - START of --profile_steps)")
  p.add_argument("--top", type=int, default=12)
  args = p.parse_args(argv)
  trace = newest_trace(args.path)
  print(f"profile {trace}")
  print("\n".join(summarize(op_events(trace), args.steps, args.top)))


if __name__ == "__main__":
  sys.exit(main())
