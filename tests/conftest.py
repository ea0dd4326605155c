"""pytest configuration: split the CPU into 4 logical devices before any TF op.

Distributed tests (MirroredStrategy over 2 or 4 virtual CPUs) need the split to
happen before TensorFlow initialises its devices, and pytest may import every test
module into one process, so it is done here, at conftest import. Single-device code
is unaffected: it runs on CPU:0.
"""

import pytest

from supcon_tf import distribute
from tests import testing

distribute.configure_virtual_cpus(4)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
  """A directory of Fashion-MNIST-shaped idx files (64 train, 40 test images)."""
  directory = tmp_path_factory.mktemp("fashion")
  testing.write_fake_fashion_mnist(str(directory), num_train=64, num_test=40)
  return str(directory)


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="also run tests marked slow")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long test, run with --runslow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
