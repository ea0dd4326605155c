# Two commands: `make demo` and `make test`. Both set up what is missing first:
# a virtualenv in .venv/ from requirements.txt and Fashion-MNIST's idx files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist

.PHONY: setup venv data demo demo-ce evidence test test-all benchmark benchmark-input benchmark-peer clean

setup: venv data

venv: $(STAMP)

# Reinstalled only when requirements.txt changes; a second run starts in seconds.
$(STAMP): requirements.txt pyproject.toml
	PYTHON=$(PYTHON) VENV=$(VENV) sh scripts/setup_venv.sh
	touch $@

data:
	@FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) sh scripts/ensure_data.sh

demo: setup
	@echo "make demo: SupCon on Fashion-MNIST, expected ~8 min on a 2-core CPU where" \
	  "benchmarks/train_step_benchmark.py --depths=18 --xla=off gives ~40 ResNet-18 images/s" \
	  "(~11 min where it gives ~19 with TF_ENABLE_ONEDNN_OPTS=0); measured 2026-12-04," \
	  "see README 'Measured numbers'. The progress lines show the training ETA."
	$(PY) -m supcon_tf.run --flagfile=experiments/fashion_mnist.cfg

demo-ce: setup
	$(PY) -m supcon_tf.run --flagfile=experiments/fashion_mnist_ce.cfg

# The evidence study (hours on a 2-core CPU; stop and rerun at will: it resumes).
evidence: setup
	$(PY) scripts/evidence.py

# The default suite (what CI runs). Slow tests are marked and left to test-all.
test: setup
	$(PY) -m pytest -q --durations=15 tests

test-all: setup
	$(PY) -m pytest -q --runslow tests

benchmark: setup
	$(PY) benchmarks/loss_benchmark.py

benchmark-input: setup
	$(PY) benchmarks/input_benchmark.py

# Our step against a PyTorch SupContrast-style step (installs the benchmark-only torch).
benchmark-peer: setup
	$(VENV)/bin/pip install -q -r requirements-bench.txt
	$(PY) benchmarks/peer_step_benchmark.py

clean:
	rm -rf runs
