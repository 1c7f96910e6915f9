#!/usr/bin/env bash
# Set up a development environment in .venv: forkjoin (editable) with its test,
# benchmark and optional extras. Needs only python3 (>= 3.11) and pip.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,bench]'
echo "forkjoin is installed in .venv (activate with: source .venv/bin/activate)"
