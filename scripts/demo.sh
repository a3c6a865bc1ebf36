#!/usr/bin/env bash
# The main job on built-in sample data (nothing downloaded): generate a small VOC
# dataset of coloured shapes, convert it to COCO, and summarise it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${DEMO_OUT:-demo-out}
D=.venv/bin/dsprep
$D synth voc "$OUT/voc" --images 300 --seed 0 --overwrite
$D convert voc "$OUT/voc" --to coco --out "$OUT/coco" --overwrite
$D info coco "$OUT/coco"
