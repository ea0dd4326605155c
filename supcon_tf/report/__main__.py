"""`python -m supcon_tf.report`: see `cli.py`."""

import sys

from supcon_tf.report import cli

if __name__ == "__main__":
  sys.exit(cli.main(sys.argv))
