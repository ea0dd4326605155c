"""The config dataclasses, `validate` and the dict/JSON round trip (`supcon_tf/config.py`)."""

import pytest

from supcon_tf import config as config_lib


def test_config_module_has_no_tensorflow():
  import subprocess
  import sys
  code = ("import sys, supcon_tf.config, supcon_tf.flags; "
          "assert 'tensorflow' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
