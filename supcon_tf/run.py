r"""The command line: `python -m supcon_tf.run --flagfile=experiments/fashion_mnist.cfg`.

The only module that reads flags; the modes themselves are in `modes.py`. Bad flags
or values, and a command that would change what the run in --model_dir computes
(`workdir.config_for_command`), fail before TensorFlow loads, with one line on stderr
and exit code 1.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

import supcon_tf
from supcon_tf import config as config_lib
from supcon_tf import errors
from supcon_tf import flags as flags_lib
from supcon_tf import warm_start
from supcon_tf import workdir

FLAGS = flags.FLAGS
flags_lib.define_flags(FLAGS)


def _fail(message: str, code: int = 1) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0].replace("ERROR:: ", ""))


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
  # absl turns the default verbosity into 0 (info) after parsing; --verbosity=-1
  # (warnings only) silences the progress lines too.
  verbose = FLAGS.verbosity >= 0
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress lines are printed instead
  try:
    cfg = flags_lib.config_from_flags(FLAGS)
    # The model_dir's contract: a resume may not change what the run computes;
    # eval/export take the run's configuration from its config.json.
    cfg = workdir.config_for_command(cfg, flags_lib.given_fields(FLAGS))
    warm_start.check_encoder_checkpoint(cfg)
    if cfg.data.deterministic:  # (modes.make_deterministic warns if it is too late)
      supcon_tf.use_deterministic_kernels()
    # TensorFlow loads only now that the flags are valid: a bad flag fails in a
    # fraction of a second instead of after the seconds TensorFlow takes to load.
    from supcon_tf import modes  # pylint: disable=g-import-not-at-top
    modes.run(cfg, verbose=verbose)
  except config_lib.ConfigError as e:
    _fail(str(e))
  except errors.Preempted as e:
    _fail(str(e), errors.Preempted.EXIT_CODE)
  except errors.RunError as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
