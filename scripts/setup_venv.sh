#!/bin/sh
# Creates $VENV (default .venv), installs the pinned requirements and the package
# (editable) into it.
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: $PYTHON not found; install Python 3.11 (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "setup: installing python3-venv with apt-get" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv
      "$PYTHON" -m venv "$VENV"
    else
      echo "setup: '$PYTHON -m venv' failed; install python3-venv (Debian: sudo apt-get install python3-venv) and rerun" >&2
      exit 1
    fi
  fi
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
# The package itself, editable (pyproject.toml): benchmarks, scripts and tests import
# it from anywhere; its dependencies are the pins above.
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
echo "setup: $VENV ready"
