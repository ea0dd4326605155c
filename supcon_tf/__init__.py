"""supcon_tf: Supervised Contrastive Learning in TensorFlow 2 / Keras."""

import os as _os

# oneDNN kernels for convolutions, BatchNorm and matmuls on CPU. TensorFlow turns
# them on by itself only on CPUs with AVX-512; on AVX2-only CPUs it falls back to
# Eigen, whose convolution backward passes make the train step ~1.6x slower (README,
# "Train step profile"). Read when TensorFlow loads, so set here, before any import
# of it by the package; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
# oneDNN's convolution gradients are not bit-reproducible run to run (measured: 2 of 5
# identical runs diverged from their first step; 5 of 5 agreed with Eigen), so the
# CLI turns them off again for --deterministic unless the user set the variable.
# The marker tells child processes (which inherit the variable) that the package,
# not the user, chose the value.
_PACKAGE_DEFAULT_MARK = "SUPCON_TF_ONEDNN_DEFAULT"
ONEDNN_SET_BY_USER = ("TF_ENABLE_ONEDNN_OPTS" in _os.environ
                      and _os.environ.get(_PACKAGE_DEFAULT_MARK) != "1")
if not ONEDNN_SET_BY_USER:
  _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
  _os.environ[_PACKAGE_DEFAULT_MARK] = "1"


def use_deterministic_kernels() -> bool:
  """Before TensorFlow loads: Eigen's kernels instead of oneDNN's (reproducible).

  Returns:
    False when it is too late (TensorFlow already loaded with oneDNN on) or the
    user chose TF_ENABLE_ONEDNN_OPTS=1 explicitly.
  """
  import sys as _sys  # pylint: disable=import-outside-toplevel
  if _os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
    return True
  if ONEDNN_SET_BY_USER or "tensorflow" in _sys.modules:
    return False
  _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
  return True
