r"""Draws what --mode=eval_robustness's corruptions do: one Fashion-MNIST test image
under every corruption at severities 1..5 (docs/figures/corruption_examples.png).

  .venv/bin/python scripts/corruption_examples.py [--index=0] [--seed=0] [--output=...]

No TensorFlow: the corruptions are NumPy/SciPy/Pillow (supcon_tf/data/corruptions.py).
"""

import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import matplotlib  # pylint: disable=g-import-not-at-top,wrong-import-position
matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=wrong-import-position

from supcon_tf.data import corruptions  # pylint: disable=wrong-import-position
from supcon_tf.data.sources import memory  # pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--fashion_mnist_dir", default="/usr/share/datasets/fashion-mnist")
  parser.add_argument("--index", type=int, default=0, help="test image index")
  parser.add_argument("--seed", type=int, default=0, help="--corruption_seed")
  parser.add_argument("--output", default=os.path.join(REPO_ROOT, "docs", "figures",
                                                       "corruption_examples.png"))
  args = parser.parse_args(argv)
  source = memory.load_fashion_mnist_idx(args.fashion_mnist_dir)
  if not 0 <= args.index < source.num_eval:
    raise SystemExit(f"error: --index must be in [0, {source.num_eval}), got {args.index}")
  image = source.test_images[args.index:args.index + 1]
  names = corruptions.corruptions_for(image.shape[-1])
  fig, axes = plt.subplots(len(names), 6, figsize=(6 * 0.9, len(names) * 0.9))
  for row, name in enumerate(names):
    cells = [image] + [corruptions.corrupt(image, name, s, args.seed, args.index)
                       for s in corruptions.SEVERITIES]
    for col, cell in enumerate(cells):
      ax = axes[row, col]
      ax.imshow(cell[0, ..., 0], cmap="gray", vmin=0, vmax=255)
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title("clean" if col == 0 else f"s{col}", fontsize=8)
    axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
  fig.tight_layout(pad=0.2)
  os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
  fig.savefig(args.output, dpi=64)
  from PIL import Image  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  Image.open(args.output).convert("L").save(args.output, optimize=True)  # gray: small
  print(f"wrote {args.output} ({os.path.getsize(args.output) // 1024} KiB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
