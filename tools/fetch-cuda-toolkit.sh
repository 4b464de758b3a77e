#!/usr/bin/env bash
# Puts a CUDA 13.0 compiler (nvcc, ptxas, NVVM, the runtime and CCCL headers) under
# target/cuda-toolkit, from NVIDIA's PyPI wheels, and prints that directory, so that the
# `candle-cuda` feature (candle compiles its kernels with nvcc at build time) builds on a
# machine with no CUDA toolkit and no GPU:
#   CUDA_ROOT="$(tools/fetch-cuda-toolkit.sh)" PATH="$CUDA_ROOT/bin:$PATH" CUDA_COMPUTE_CAP=90 \
#     cargo build --features candle-cuda
# About 110 MB downloaded once (270 MB unpacked). Nothing here needs or installs a driver.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/cuda-toolkit
version=13.0.88
if [ ! -x "$dest/bin/nvcc" ]; then
    rm -rf "$dest" && mkdir -p "$dest/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dest/wheel" \
        "nvidia-cuda-nvcc==$version" "nvidia-nvvm==$version" "nvidia-cuda-crt==$version" \
        "nvidia-cuda-runtime==$version" "nvidia-cuda-cccl>=13.0,<13.1" >&2
    python3 - "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
dest = sys.argv[1]
for wheel in glob.glob(os.path.join(dest, "wheel", "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            prefix = "nvidia/cu13/"
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            out = os.path.join(dest, info.filename[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
    chmod +x "$dest"/bin/* "$dest"/nvvm/bin/*
    rm -rf "$dest/wheel"
    # Where a toolkit keeps its libraries (lib64), for build scripts that look there.
    [ -e "$dest/lib64" ] || ln -s lib "$dest/lib64"
fi
echo "$(pwd)/$dest"
