#!/usr/bin/env bash
# Every test of the project: the Rust workspace's (cargo test, with the features that need no
# toolkit), then the Python package's (python/test.sh: built from source into a venv, pytest).
# Run after tools/install-deps.sh. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --features cuda,burn,candle "$@"
python/test.sh
