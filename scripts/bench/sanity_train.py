"""Sanity training figures (docs/benchmarks.md, "Sanity training").

1. The built-in sample data: synth VOC -> convert to COCO -> parse -> train
   ResNet-18 on object crops at 32x32 for 4 epochs on the CPU, as scripts/demo.sh
   does; prints val accuracy, wall time and images/s. The bars: >= 90% val
   accuracy, and the demo's training within about a minute on 2 cores.
2. The real imagenette images in ../shared/fixtures: train end to end for one
   epoch (too few images to learn; the check is that it runs and writes everything).

Usage: python scripts/bench/sanity_train.py [--images 300] [--epochs 4] [--image-size 32] [--out /tmp/dsprep-sanity]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import dsprep
from dsprep.synth import synth
from dsprep.train import TrainConfig, train

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: dsprep.train.cpu_plan's")
    ap.add_argument("--out", default="/tmp/dsprep-sanity")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    synth("voc", out / "voc", images=args.images, seed=0)
    dsprep.convert("voc", out / "voc", "coco", out / "coco", progress=False)
    ds = dsprep.parse("coco", out / "coco")
    t_data = time.perf_counter() - t0
    cfg = TrainConfig(task="crops", model="resnet18", image_size=args.image_size, epochs=args.epochs, batch_size=32,
                      workers=args.workers, out=str(out / "train"), progress=False)
    res = train(ds.subset("train"), ds.subset("val"), cfg)
    hist = json.loads((out / "train" / "metrics.json").read_text())["epochs"]
    ips = sum(e["train"]["images_per_s"] * e["train"]["seconds"] for e in hist) / sum(e["train"]["seconds"] for e in hist)
    print(json.dumps({"data_seconds": round(t_data, 2), "train_seconds": round(res["seconds"], 1),
                      "best_val_top1": res["best"]["top1"], "final_val_top1": hist[-1]["val"]["top1"],
                      "train_images_per_s": round(ips, 1),
                      "epochs_to_90": next((e["epoch"] for e in hist if e["val"]["top1"] >= 0.9), None)}))
    imagenette = FIXTURES / "imagenette"
    if imagenette.is_dir():
        ds = dsprep.parse("imagenet", imagenette)
        cfg = TrainConfig(task="classification", image_size=128, epochs=1, batch_size=16, workers=args.workers,
                          out=str(out / "imagenette"), progress=False)
        r = train(ds.subset("train"), ds.subset("val"), cfg)
        files = sorted(p.name for p in (out / "imagenette").iterdir())
        print(json.dumps({"imagenette_seconds": round(r["seconds"], 1), "files": files}))


if __name__ == "__main__":
    main()
