#!/usr/bin/env bash
# The data of benches/s3.rs: 2,000 copies of the 1080p photographs resized by `stoker resize`
# into 8 tar shards of 250 256x144 JPEGs, in target/bench-data/s3-tar. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
photos="${PHOTOS:-../shared/fixtures/photos-1080p}"
src=target/bench-data/s3-src/all
out=target/bench-data/s3-tar
if [ -f "$out/stoker.json" ]; then exit 0; fi
mkdir -p "$src"
mapfile -t files < <(find "$photos" -maxdepth 1 -name '*.jpg' | sort)
for i in $(seq 0 1999); do
  f="${files[$((i % ${#files[@]}))]}"
  ln -sf "$(realpath "$f")" "$src/$(printf 'img-%05d.jpg' "$i")"
done
cargo run --release -q -p stoker-tools -- resize target/bench-data/s3-src "$out" \
  --size 256x144 --to tar --shard-size 250 --quiet
