#!/usr/bin/env bash
# The GPU checks and figures of docs/gpu.md in one call, for a machine with an NVIDIA GPU but no
# Rust toolchain. Two steps:
#
#   tools/gpu-check.sh bundle        # here: builds the cuda binaries into target/gpu-bundle
#   tools/gpu-check.sh run [OUT]     # there (with target/gpu-bundle carried): tests and figures
#
# `run` writes every log and JSON under OUT (default $OUT, else target/gpu-check) and prints a
# short table last. It changes nothing on the GPU (no clocks, no reset).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=target/gpu-bundle

if [ "${1:-}" = bundle ]; then
    set -e
    cargo build --release -p stoker-tools --features cuda
    cargo build --release --features cuda --example train_gpu
    tests=$(cargo test --release --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"): print(m["executable"])')
    ex_tests=$(cargo test --release --features cuda --example train_gpu --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]: print(m["executable"])')
    rm -rf "$bundle" && mkdir -p "$bundle"
    cp target/release/stoker "$bundle/stoker"
    cp target/release/examples/train_gpu "$bundle/train_gpu"
    cp $tests "$bundle/test_cuda"
    cp $ex_tests "$bundle/test_train_gpu"
    strip "$bundle"/*
    du -sh "$bundle"
    exit 0
fi
[ "${1:-}" = run ] || { echo "usage: tools/gpu-check.sh bundle | run [OUT]" >&2; exit 2; }
out=${2:-${OUT:-target/gpu-check}}
mkdir -p "$out"
for b in stoker train_gpu test_cuda test_train_gpu; do
    [ -x "$bundle/$b" ] || { echo "missing $bundle/$b: run 'tools/gpu-check.sh bundle' first" >&2; exit 2; }
done

# NVRTC and cuBLAS: cudarc looks for libnvrtc.so / libcublas.so (or .so.12); link whatever
# version the machine has under those names.
libs=$(mktemp -d)
for name in nvrtc cublas cublasLt nvrtc-builtins; do
    found=$(find /usr/local/cuda*/lib64 /usr/lib/x86_64-linux-gnu \
        $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) \
        -name "lib$name.so*" 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] && ln -sf "$found" "$libs/lib$name.so" && echo "lib$name: $found"
done | tee "$out/libs.txt"
export LD_LIBRARY_PATH="$libs:$(dirname "$(grep nvrtc: "$out/libs.txt" | head -1 | cut -d' ' -f2)" 2>/dev/null):${LD_LIBRARY_PATH:-}"

nvidia-smi -L | tee "$out/gpu.txt"

# A larger data set from the fixtures (1024 JPEGs of 256x144, 4 classes), for steadier figures.
data=$(mktemp -d)/photos
for c in fixtures/photos-256x144/*/; do
    cls=$(basename "$c"); mkdir -p "$data/$cls"
    for i in $(seq 0 31); do for f in "$c"*.jpg; do cp "$f" "$data/$cls/$i-$(basename "$f")"; done; done
done

status() { if [ "$1" -eq 0 ]; then echo ok; else echo "FAILED ($1)"; fi; }
(cd . && timeout 300 "$bundle/test_cuda" --test-threads 1 --nocapture) > "$out/test_cuda.txt" 2>&1
t1=$(status $?)
timeout 300 "$bundle/test_train_gpu" --test-threads 1 --nocapture > "$out/test_train_gpu.txt" 2>&1
t2=$(status $?)

bench() { # name, args...
    local name=$1; shift
    timeout 300 "$bundle/stoker" bench "$data" --gpu --json "$@" > "$out/$name.json" 2> "$out/$name.err"
}
bench fast --batch-size 64 --gpu-step spin:20 --epochs 5
bench slow --batch-size 64 --gpu-step spin:2 --workers 1 --epochs 3
bench f32_upload --batch-size 256 --gpu-step gemm:1024 --epochs 5
bench u8_upload --batch-size 256 --gpu-step gemm:1024 --epochs 5 --gpu-convert f32
bench u8_f16_noise --batch-size 256 --gpu-step gemm:1024 --epochs 5 --gpu-convert f16 \
    --normalize imagenet --gpu-noise 0.03
timeout 300 "$bundle/train_gpu" "$data" --epochs 10 --batch-size 64 --accumulate 4 \
    > "$out/train_gpu.txt" 2>&1
t3=$(status $?)

python3 - "$out" "$t1" "$t2" "$t3" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"tests: cuda {sys.argv[2]}, train_gpu {sys.argv[3]}; train_gpu run {sys.argv[4]}")
print(f"{'run':14} {'verdict':12} {'idle %':>7} {'loader':>8} {'step':>8} {'combined':>9} {'pinned':>7} {'pageable':>8}")
for name in ["fast", "slow", "f32_upload", "u8_upload", "u8_f16_noise"]:
    try:
        j = json.load(open(os.path.join(out, name + ".json")))
    except Exception:
        err = open(os.path.join(out, name + ".err")).read().strip().splitlines()
        print(f"{name:14} error: {err[-1] if err else 'no output'}")
        continue
    print(f"{name:14} {j['verdict']:12} {100 * j['gpu_idle_fraction']:7.2f} {j['loader_images_per_s']:8.0f} "
          f"{j['step_images_per_s']:8.0f} {j['combined_images_per_s']:9.0f} {j['h2d_gbps_pinned']:7.2f} {j['h2d_gbps_pageable']:8.2f}")
lines = open(os.path.join(out, "train_gpu.txt")).read().strip().splitlines()
print("\n".join(lines[-3:]))
PY
