#!/bin/sh
# Makes sure Fashion-MNIST's idx files are where the default config reads them.
# Installs Debian's dataset-fashion-mnist package with apt when they are missing.
set -eu
DIR=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] || [ -f "$DIR/train-images-idx3-ubyte" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
  echo "data: installing Debian's dataset-fashion-mnist package" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
if [ ! -f "$DIR/train-images-idx3-ubyte.gz" ] && [ ! -f "$DIR/train-images-idx3-ubyte" ]; then
  cat >&2 <<MSG
data: Fashion-MNIST not found in $DIR and apt could not install it.
  Either install Debian's package:   sudo apt-get install dataset-fashion-mnist
  or put the four idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
  t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the Fashion-MNIST
  release in a directory and run: make FASHION_MNIST_DIR=/that/dir ...
  (and pass --fashion_mnist_dir=/that/dir to supcon_tf.run).
MSG
  exit 1
fi
