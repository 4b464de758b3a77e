#!/usr/bin/env bash
# The Python package's tests: builds `pip install ./python` from source into a virtual
# environment (target/python-venv, kept between runs) with numpy, pytest, ml-dtypes, torch and
# Keras from PyPI, then runs pytest on python/tests. Run from anywhere; extra arguments go to
# pytest. Needs what tools/install-deps.sh installs, and python3 >= 3.11 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STOKER_VENV:-target/python-venv}"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
# maturin's build hook runs `maturin` from PATH.
export PATH="$venv/bin:$PATH"
# Pinned: the versions the tests were written against (torch's default wheel brings its CUDA
# libraries, about 5 GB; pip's cache makes later installs quick).
"$py" -m pip install -q --disable-pip-version-check \
  "maturin==1.16.0" "numpy==2.4.6" "pytest==9.2.0" "ml-dtypes==0.7.0" \
  "torch==2.15.0" "keras==3.15.1"
# The package itself, built from this checkout (a release build of the Rust core; without the
# release profile's debug info, which no test reads and which costs build and link time).
CARGO_PROFILE_RELEASE_DEBUG=0 "$py" -m pip install -q --disable-pip-version-check --no-build-isolation ./python
export KERAS_BACKEND=torch
exec "$py" -m pytest python/tests -q "$@"
