r"""Writes Fashion-MNIST as an image folder: DIR/{train,test}/<class name>/<i>.png.

The layout `--image_dir` reads, built from real data that is on this machine
(Debian's dataset-fashion-mnist idx files), so the image-folder path can be run and
measured end to end (experiments/image_folder.cfg):

  .venv/bin/python scripts/fashion_mnist_folder.py /tmp/fashion_mnist_folder
  .venv/bin/python -m supcon_tf.run --flagfile=experiments/image_folder.cfg \
      --image_dir=/tmp/fashion_mnist_folder
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from supcon_tf.data.sources import memory  # pylint: disable=g-import-not-at-top


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("directory")
  p.add_argument("--fashion_mnist_dir", default="/usr/share/datasets/fashion-mnist")
  args = p.parse_args(argv)
  source = memory.load_fashion_mnist_idx(args.fashion_mnist_dir)
  names = [n.replace("/", "_").replace(" ", "_") for n in memory.FASHION_MNIST_CLASSES]
  t0 = time.time()
  for split, images, labels in (("train", source.train_images, source.train_labels),
                                ("test", source.test_images, source.test_labels)):
    for name in names:
      os.makedirs(os.path.join(args.directory, split, name), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
      path = os.path.join(args.directory, split, names[label], f"{i:05d}.png")
      tf.io.write_file(path, tf.io.encode_png(image))
  print(f"wrote {len(source.train_labels)} + {len(source.test_labels)} PNGs under "
        f"{args.directory} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
  main()
