"""pytest configuration: split the CPU into 4 logical devices before any TF op.

Distributed tests (MirroredStrategy over 2 or 4 virtual CPUs) need the split to
happen before TensorFlow initialises its devices, and pytest may import every test
module into one process, so it is done here, at conftest import. Single-device code
is unaffected: it runs on CPU:0.
"""

from tests import testing

testing.setup_virtual_cpus(4)
