"""supcon_tf: Supervised Contrastive Learning in TensorFlow 2 / Keras."""

import os as _os

# oneDNN kernels for convolutions, BatchNorm and matmuls on CPU. TensorFlow turns
# them on by itself only on CPUs with AVX-512; on AVX2-only CPUs it falls back to
# Eigen, whose convolution backward passes make the train step ~1.6x slower (README,
# "Train step profile"). Read when TensorFlow loads, so set here, before any import
# of it by the package; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
