r"""Images/s of one SupCon train step vs one cross-entropy train step.

Both steps push the same number of images through the same encoder: SupCon gets
`--batch` samples with 2 views each, cross-entropy `2 * --batch` samples with one
view. The ratio SupCon/CE time therefore isolates the cost of the contrastive
machinery (projection head, all-gather, the [2B, 2B] similarity matrix and its
masks). Synthetic data, no input pipeline; the steps are the trainer's own
(`Trainer.train_step`). Prints a table, never passes or fails.

  .venv/bin/python benchmarks/train_step_benchmark.py                 # CPU defaults
  .venv/bin/python benchmarks/train_step_benchmark.py --depths=50 --image_size=224 \
      --batch=128 --precision=bfloat16 --xla=on                        # a GPU
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
# The package before TensorFlow: it turns TensorFlow's oneDNN kernels on.
from supcon_tf import config as config_lib  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from supcon_tf import train  # pylint: disable=g-import-not-at-top
from supcon_tf.data.sources.memory import InMemorySource  # pylint: disable=g-import-not-at-top


def _config(depth, image_size, batch, supcon, xla, precision, width,
            optimizer=config_lib.Optimizer.LARS, head=(2048, 128),
            normalize_embedding=True):
  small = image_size <= 64
  stage = config_lib.StageConfig(
      steps=1, base_learning_rate=0.1, optimizer=optimizer,
      weight_decay=1e-4, contrastive_loss_weight=1.0 if supcon else 0.0,
      cross_entropy_loss_weight=0.0 if supcon else 1.0)
  return config_lib.Config(
      data=config_lib.DataConfig(image_size=image_size, num_views=2),
      model=config_lib.ModelConfig(
          resnet_depth=depth, resnet_width=width,
          first_conv_kernel_size=3 if small else 7, first_conv_stride=1 if small else 2,
          use_initial_max_pool=not small, projection_head_layers=tuple(head),
          normalize_embedding=normalize_embedding,
          stop_gradient_before_classification_head=supcon),
      stage_1=stage, stage_2=config_lib.StageConfig(steps=0),
      runtime=config_lib.RuntimeConfig(
          model_dir=tempfile.mkdtemp(), batch_size=batch * (1 if supcon else 2),
          precision=config_lib.Precision(precision), jit_compile=xla))


def make_step(cfg, supcon):
  """(step, encoder images per step): `step()` runs the trainer's step on a fixed
  synthetic batch and waits for it (it fetches the metric values)."""
  views = 2 if supcon else 1
  samples = cfg.runtime.batch_size
  image_size = cfg.data.image_size
  rng = np.random.default_rng(0)
  source = InMemorySource("synthetic", np.zeros((samples, 8, 8, 3), np.uint8),
                          np.zeros(samples, np.int32), np.zeros((1, 8, 8, 3), np.uint8),
                          np.zeros(1, np.int32), 1000, "synthetic")
  strategy = tf.distribute.get_strategy()
  trainer = train.Trainer(cfg, strategy, source, cfg.runtime.model_dir, verbose=False)
  batch_t = {"views": tf.constant(rng.random((samples, views, image_size, image_size, 3)),
                                  tf.float32),
             "labels": tf.constant(rng.integers(0, 100, samples), tf.int32)}
  return (lambda: trainer.train_step(1, batch_t)), samples * views


def measure(depth, image_size, batch, supcon, xla, precision, width, steps, warmup):
  """Encoder images per second of the train step (median over `steps`)."""
  step, images = make_step(
      _config(depth, image_size, batch, supcon, xla, precision, width), supcon)
  for _ in range(warmup):
    step()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    step()  # returns metric values: synchronises
    times.append(time.perf_counter() - t0)
  return images / statistics.median(times)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--depths", default="18,50")
  p.add_argument("--width", type=float, default=1.0)
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--batch", type=int, default=16,
                 help="SupCon samples per step (x2 views); CE gets twice as many samples")
  p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
  p.add_argument("--xla", default="off,on", help="comma-separated: off, on")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  args = p.parse_args(argv)
  device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
  print(f"train step benchmark, TF {tf.__version__}, {device}, {args.image_size}px, "
        f"precision {args.precision}, {2 * args.batch} encoder images per step "
        f"(SupCon {args.batch} x 2 views, CE {2 * args.batch} x 1), median of "
        f"{args.steps} steps after {args.warmup} warm-up")
  print(f"{'model':>10} {'xla':>4} {'SupCon img/s':>13} {'CE img/s':>10} {'SupCon/CE time':>15}")
  for depth in [int(d) for d in args.depths.split(",")]:
    for xla in [x.strip() == "on" for x in args.xla.split(",")]:
      results = {}
      for supcon in (True, False):
        try:
          results[supcon] = measure(depth, args.image_size, args.batch, supcon, xla,
                                    args.precision, args.width, args.steps, args.warmup)
        except Exception as e:  # pylint: disable=broad-except
          print(f"ResNet-{depth} xla={xla} supcon={supcon}: failed: "
                f"{str(e).splitlines()[0][:200]}")
          results[supcon] = float("nan")
      ratio = results[False] / results[True]
      print(f"{'ResNet-' + str(depth):>10} {'on' if xla else 'off':>4} "
            f"{results[True]:>13.1f} {results[False]:>10.1f} {ratio:>15.3f}", flush=True)


if __name__ == "__main__":
  main()
