#!/usr/bin/env bash
# The main job on built-in sample data (nothing downloaded): generate a small VOC
# dataset of coloured shapes, convert it to COCO, summarise it, and sanity-train
# the bundled ResNet-18 on its object crops: 4 epochs of ~460 crops at 32x32, well under a
# minute of training on 2 CPU cores (docs/benchmarks.md, "Sanity training").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${DEMO_OUT:-demo-out}
D=.venv/bin/dsprep
$D synth voc "$OUT/voc" --num-images 300 --seed 0 --overwrite
$D convert voc "$OUT/voc" --to coco --out "$OUT/coco" --overwrite
$D info coco "$OUT/coco"
$D train coco "$OUT/coco" --task crops --model resnet18 --image-size 32 --epochs 4 --batch-size 32 \
   --out "$OUT/train" --overwrite
