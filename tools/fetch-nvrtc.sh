#!/usr/bin/env bash
# Puts NVIDIA's NVRTC library (the run-time CUDA compiler, no GPU needed) under target/nvrtc/lib
# and prints that directory, so the cuda feature's kernel-compile tests run on a machine with no
# CUDA toolkit: LD_LIBRARY_PATH="$(tools/fetch-nvrtc.sh)" cargo test --features cuda --test cuda
# It comes from PyPI's nvidia-cuda-nvrtc-cu12 wheel (about 90 MB, downloaded once).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/nvrtc
version=12.9.86
if [ ! -e "$dest/lib/libnvrtc.so.12" ]; then
    mkdir -p "$dest/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dest/wheel" \
        "nvidia-cuda-nvrtc-cu12==$version" >&2
    python3 - "$dest" <<'PY'
import glob, os, sys, zipfile
dest = sys.argv[1]
wheel = glob.glob(os.path.join(dest, "wheel", "nvidia_cuda_nvrtc_cu12-*.whl"))[0]
os.makedirs(os.path.join(dest, "lib"), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/lib/" in name and ".so" in name:
            with open(os.path.join(dest, "lib", os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
    rm -rf "$dest/wheel"
fi
echo "$(pwd)/$dest/lib"
