"""The errors a run reports as one line: importable without TensorFlow (the CLI
catches them before and after TensorFlow loads), all `RunError`s."""

import subprocess
import sys

from supcon_tf import errors
from tests import testing


def test_run_errors_share_one_base_the_cli_catches():
  for error in (errors.NonFiniteLossError, errors.CorruptDataError):
    assert issubclass(error, errors.RunError)
    assert not issubclass(error, errors.ConfigError)  # a run stopped, not a bad flag


def test_the_errors_module_loads_no_tensorflow():
  code = ("import sys; import supcon_tf.errors; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  result = subprocess.run([sys.executable, "-c", code], cwd=testing.REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
