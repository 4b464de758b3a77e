#!/usr/bin/env bash
# Regenerates the guide's pictures that the tools draw (docs/img/): the augment-preview grid
# and the --sweep-workers chart. docs/img/data-path.svg is drawn by hand.
# - The grid comes out of `stoker augment-preview` as a PNG of about 370 KB (photographs with
#   noise do not compress losslessly); `stoker resize --scale 1 --format jpg --quality 75`
#   re-encodes it to a JPEG of about 40 KB, which is what the guide shows.
# - The chart is a timing picture: it shows what the command draws on the machine it ran on
#   (say which in its caption, docs/tools.md), not a figure to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p stoker-tools
stoker=target/release/stoker
work=target/doc-images
rm -rf "$work"
mkdir -p "$work/png"
"$stoker" augment-preview fixtures/photos-256x144 \
    --out "$work/png/augment-preview.png" --augment default,fill=reflect \
    --shuffle --seed 3 -n 4 --cols 2 --size 192x108
"$stoker" resize "$work/png" "$work/jpg" --scale 1 --format jpg --quality 75
cp "$work/jpg/augment-preview.jpg" docs/img/augment-preview.jpg
"$stoker" bench fixtures/photos-256x144 --batch-size 8 \
    --augment default --epochs 16 --gpu-step-ms 20 --sweep-workers --plot docs/img/sweep-workers.svg
ls -l docs/img/augment-preview.jpg docs/img/sweep-workers.svg
