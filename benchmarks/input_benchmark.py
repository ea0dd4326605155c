r"""Images/s of the input pipeline alone, next to the images/s a train step consumes.

Runs the package's own training input (`pipeline.train_dataset`, two views per image,
one input pipeline) with 1 and 2 CPU cores (the process pinned with
sched_setaffinity, a private tf.data thread pool of that size), on:

* `32px`: CIFAR-shaped images held in memory (`InMemorySource`), SimCLR
  augmentation with PyTorch-style jitter, as the CIFAR experiment files;
* `224px simclr` / `224px autoaugment`: a TFDS `imagenet2012` prepared locally from
  photo-like JPEGs of ImageNet's typical size (500x375 and 375x500, ~110 KB at
  quality 90 like ILSVRC's average), streamed from its record files, decoded
  crop-only; SimCLR augmentation with blur (r50's SimCLR) or AutoAugment (r50.cfg);
* `224px folder`: the same JPEGs as an image folder (file reads, the corrupt-file
  guard).

Then, with all cores, the images/s of the trainer's own train step (SupCon, two
views, `Trainer.train_step`) for the encoders those inputs feed. If the input
figure is below the step figure, a run on that many cores is input-bound. Prints
a table; never passes or fails.

  .venv/bin/python benchmarks/input_benchmark.py
  .venv/bin/python benchmarks/input_benchmark.py --cores=1,2,4,8 --batches=40
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
import supcon_tf  # pylint: disable=g-import-not-at-top,unused-import  (before TF: oneDNN)

CASES = ("32px", "224px simclr", "224px autoaugment", "224px folder")


def _photo_like(rng, label, height, width):
  """Smooth random colour fields plus mild noise: compresses like a photograph."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  coarse = rng.random((1, 12, 12, 3)).astype("float32") * 255.0
  image = tf.image.resize(coarse, [height, width], method="bicubic")[0].numpy()
  image += rng.normal(0, 20, image.shape) + 8 * label
  return np.clip(image, 0, 255).astype(np.uint8)


def make_data(directory: str, num_images: int) -> dict:
  """The 224 px datasets (a TFDS imagenet2012 and the same JPEGs in a folder)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tests import testing  # pylint: disable=g-import-not-at-top
  per_class = max(1, num_images // 8)
  data_dir, _ = testing.make_fake_imagenet(
      os.path.join(directory, "imagenet"), num_classes=8, per_class=per_class,
      num_validation=8, num_shards=8, sizes=(375, 501), image_fn=_photo_like)
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  folder = os.path.join(directory, "folder")
  sizes = []
  for i, ex in enumerate(builder.as_dataset(split="train", decoders={
      "image": tfds.decode.SkipDecoding()})):
    label_dir = os.path.join(folder, f"c{int(ex['label'])}")
    os.makedirs(label_dir, exist_ok=True)
    data = ex["image"].numpy()
    sizes.append(len(data))
    with open(os.path.join(label_dir, f"{i}.jpg"), "wb") as f:
      f.write(data)
  return {"data_dir": data_dir, "folder": folder,
          "mean_jpeg_kb": sum(sizes) / len(sizes) / 1024, "num": len(sizes)}


def _source_and_view(case: str, data: dict):
  """(source, training ViewSpec) of `case`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from supcon_tf.config import AugmentationType, DataConfig  # pylint: disable=g-import-not-at-top
  from supcon_tf.data import sources  # pylint: disable=g-import-not-at-top
  from supcon_tf.data.augment import views  # pylint: disable=g-import-not-at-top
  if case == "32px":
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8192, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(8192) % 10).astype(np.int32)
    source = sources.memory.InMemorySource("cifar-shaped", images, labels, images[:16],
                                           labels[:16], 10, "synthetic")
    view = views.ViewSpec.from_config(DataConfig(
        image_size=32, augmentation_type=AugmentationType.SIMCLR,
        crop_area_range=(0.2, 1.0), augmentation_magnitude=0.5,
        use_pytorch_color_jitter=True))
    return source, view
  if case == "224px folder":
    source = sources.load_source(DataConfig(
        dataset="image_folder", image_dir=data["folder"], train_split="all",
        eval_split="all"))
  else:
    source = sources.load_source(DataConfig(
        dataset="imagenet2012", data_dir=data["data_dir"], eval_split="validation"))
  kind = (AugmentationType.AUTOAUGMENT if case.endswith("autoaugment")
          else AugmentationType.SIMCLR)
  view = views.ViewSpec.from_config(DataConfig(
      image_size=224, augmentation_type=kind, augmentation_magnitude=1.0,
      blur_probability=0.5 if kind == AugmentationType.SIMCLR else 0.0))
  return source, view


def measure_input(case: str, data: dict, cores: int, batch: int, batches: int,
                  warmup: int) -> float:
  """Images/s of one input pipeline on `cores` cores (run in a child process)."""
  os.sched_setaffinity(0, set(range(cores)))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_inter_op_parallelism_threads(cores)
  tf.config.threading.set_intra_op_parallelism_threads(cores)
  from supcon_tf.config import DataConfig  # pylint: disable=g-import-not-at-top
  from supcon_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  source, view = _source_and_view(case, data)
  spec = pipeline.TrainInputSpec(global_batch_size=batch, num_views=2, seed=0, stage=1)
  options = pipeline.InputOptions.from_config(DataConfig(
      deterministic=False, input_threads=cores, shuffle_buffer_size=1000))
  iterator = iter(pipeline.train_dataset(source, spec, view, options))
  for _ in range(warmup):
    next(iterator)["views"].numpy()
  t0 = time.perf_counter()
  for _ in range(batches):
    next(iterator)["views"].numpy()
  return batches * batch / (time.perf_counter() - t0)


def _child(args) -> None:
  data = json.loads(args.child_data)
  rate = measure_input(args.child_case, data, args.child_cores, args.batch, args.batches,
                       args.warmup)
  print(json.dumps({"rate": rate}))


def _run_child(case, data, cores, args) -> float:
  command = [sys.executable, os.path.abspath(__file__), "--child_case", case,
             "--child_cores", str(cores), "--child_data", json.dumps(data),
             "--batch", str(args.batch), "--batches", str(args.batches),
             "--warmup", str(args.warmup)]
  result = subprocess.run(command, capture_output=True, text=True, cwd=_ROOT,
                          env=dict(os.environ, PYTHONPATH=_ROOT), check=False)
  lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
  if result.returncode or not lines:
    print(f"  {case} on {cores} core(s) failed: {result.stderr.strip()[-500:]}")
    return float("nan")
  return json.loads(lines[-1])["rate"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cores", default="1,2", help="comma-separated core counts")
  p.add_argument("--cases", default=",".join(CASES))
  p.add_argument("--batch", type=int, default=32, help="images per batch (x2 views)")
  p.add_argument("--batches", type=int, default=12, help="timed batches")
  p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
  p.add_argument("--images", type=int, default=256, help="224 px JPEGs generated")
  p.add_argument("--step_models", default="18@32,50@32,50@224",
                 help="DEPTH@SIZE encoders whose train step is measured ('' skips)")
  p.add_argument("--child_case", help=argparse.SUPPRESS)
  p.add_argument("--child_cores", type=int, help=argparse.SUPPRESS)
  p.add_argument("--child_data", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child_case:
    return _child(args)

  cores = [int(c) for c in args.cores.split(",")]
  available = len(os.sched_getaffinity(0))
  cores = [c for c in cores if c <= available]
  cases = [c.strip() for c in args.cases.split(",") if c.strip()]
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    data = {}
    if any(c.startswith("224") for c in cases):
      t0 = time.time()
      data = make_data(tmp, args.images)
      print(f"prepared {data['num']} JPEGs of 375..500 px (mean {data['mean_jpeg_kb']:.0f} "
            f"KB) as TFDS imagenet2012 and as a folder in {time.time() - t0:.0f}s")
    print(f"input pipeline, TF {tf.__version__}, {available} cores available, batch "
          f"{args.batch} x 2 views, {args.batches} batches after {args.warmup} warm-up")
    print(f"{'case':>20} " + " ".join(f"{str(c) + ' core(s) img/s':>18}" for c in cores))
    for case in cases:
      rates = [_run_child(case, data, c, args) for c in cores]
      print(f"{case:>20} " + " ".join(f"{r:>18.1f}" for r in rates), flush=True)

  if args.step_models:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_step_benchmark  # pylint: disable=g-import-not-at-top
    print(f"train step (SupCon, 2 views, float32, {available} cores, the trainer's step)")
    print(f"{'encoder':>20} {'img/s consumed':>15}")
    for spec in args.step_models.split(","):
      depth, size = (int(x) for x in spec.split("@"))
      rate = train_step_benchmark.measure(depth, size, 8, True, False, "float32", 1.0,
                                          steps=3, warmup=1) / 2  # images, not views
      print(f"{'ResNet-' + str(depth) + ' @' + str(size) + 'px':>20} {rate:>15.1f}",
            flush=True)


if __name__ == "__main__":
  main()
