"""--encoder_checkpoint: a run whose encoder starts from another run's. No TensorFlow.

The usual use is the paper's second stage on its own: a linear classifier trained on
the frozen encoder of a contrastive run kept in another model_dir (several
evaluations of one pretraining, or a pretraining from elsewhere). The encoder's
weights and BatchNorm statistics are read once, when the run starts (global step 0);
from its first checkpoint on the run's own checkpoints hold them.

Checked before TensorFlow loads: the path exists, and when the checkpoint's run has a
config.json, the model flags that decide what the encoder computes (`ENCODER_FIELDS`)
are this run's. The checkpoint's variables themselves are compared with the model
once it is built (`train.compat`), before anything is read or written.
"""

import os

from supcon_tf import config as config_lib

# Model flags that change what a given set of encoder weights computes (or which
# weights it has): the encoder of another run must agree on them.
ENCODER_FIELDS = ("resnet_architecture", "resnet_depth", "resnet_width",
                  "first_conv_kernel_size", "first_conv_stride", "use_initial_max_pool",
                  "batch_norm_epsilon", "input_normalization")


def run_dir(path: str) -> str:
  """The model_dir of --encoder_checkpoint (itself, or the directory of a prefix)."""
  return path if os.path.isdir(path) else os.path.dirname(path)


def check_encoder_checkpoint(cfg: config_lib.Config) -> None:
  """Refuses an --encoder_checkpoint that is missing or holds another encoder.

  Remote paths (gs://...) are checked once TensorFlow reads them.

  Args:
    cfg: this command's config.

  Raises:
    ConfigError: no checkpoint at the path, or its run's config.json differs from
      this run in `ENCODER_FIELDS` (each named with both values).
  """
  path = cfg.model.encoder_checkpoint
  if not path or "://" in path or cfg.runtime.mode in config_lib.READER_MODES:
    return
  rt = cfg.runtime
  if os.path.exists(os.path.join(rt.model_dir, "checkpoint")) and not rt.overwrite:
    return  # a resume: the run's own checkpoints hold the encoder now
  if os.path.isdir(path):
    found = os.path.exists(os.path.join(path, "checkpoint"))
  else:
    found = os.path.exists(path + ".index")
  if not found:
    raise config_lib.ConfigError(
        f"--encoder_checkpoint={path!r} is no checkpoint (give a model_dir with "
        "checkpoints, or a checkpoint prefix such as runs/x/ckpt-1000)")
  config_path = os.path.join(run_dir(path), "config.json")
  if not os.path.exists(config_path):
    return  # (the variables are still compared with the model)
  import json  # pylint: disable=import-outside-toplevel
  try:
    with open(config_path, encoding="utf-8") as f:
      theirs = config_lib.Config.from_dict(json.load(f)).model
  except ValueError as e:
    raise config_lib.ConfigError(f"{config_path} is not a run's config ({e})") from e
  diffs = [(name, getattr(theirs, name), getattr(cfg.model, name))
           for name in ENCODER_FIELDS if getattr(theirs, name) != getattr(cfg.model, name)]
  if diffs:
    value = lambda v: getattr(v, "value", v)
    raise config_lib.ConfigError(
        f"--encoder_checkpoint={path!r} holds an encoder with "
        + " ".join(f"--{n}={value(a)}" for n, a, _ in diffs) + "; this command says "
        + " ".join(f"--{n}={value(b)}" for n, _, b in diffs)
        + " (give the encoder flags of its run)")
