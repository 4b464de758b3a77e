#!/usr/bin/env bash
# Regenerates the guide's pictures that the tools draw (docs/img/): the augment-preview grid
# and the --sweep-workers chart. docs/img/data-path.svg is drawn by hand. The chart is a timing
# picture: it shows what the command draws on the machine it ran on (say which in its caption,
# docs/tools.md), not a figure to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p stoker-tools
stoker=target/release/stoker
"$stoker" augment-preview fixtures/photos-256x144 \
    --out docs/img/augment-preview.png --augment default,fill=reflect \
    --shuffle --seed 3 -n 8 --cols 4 --size 128x72
"$stoker" bench fixtures/photos-256x144 --batch-size 8 \
    --augment default --epochs 4 --gpu-step-ms 20 --sweep-workers --plot docs/img/sweep-workers.svg
ls -l docs/img/augment-preview.png docs/img/sweep-workers.svg
