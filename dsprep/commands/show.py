"""dsprep show FORMAT ROOT --out grid.png"""
from __future__ import annotations

import argparse

from ._common import add_source, source_options

HELP = "draw a grid of samples with boxes, class names, masks and keypoints"
DESCRIPTION = """Draw a grid of samples with their boxes, class names, translucent masks,
keypoints and skeletons (Pillow drawing). Deterministic with --seed. Every tile is
drawn from what the torch loader returns for the record (with --augment: after the
training augmentation), so the picture shows exactly what a model is fed. Each image
is scaled to fill a --cell square, small ones enlarged.

examples:
  dsprep show voc VOCdevkit/VOC2012 --out grid.png
  dsprep show coco coco2017/ --split val2017 --ids val2017/000000000139 --out one.png
  dsprep show coco coco2017/ --split train --augment --out augmented.png"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p, detect=True)
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("-n", "--num", type=int, default=16, help="number of samples")
    p.add_argument("--ids", nargs="+", default=None, help="record ids to draw instead of a random pick")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pick (and augmentation)")
    p.add_argument("--cell", type=int, default=320, help="tile side in pixels; images are scaled to fill it")
    p.add_argument("--augment", action="store_true",
                   help="draw samples as the training pipeline's default augmentation feeds them")
    p.add_argument("--task", default=None, choices=["detection", "keypoints", "segmentation", "classification"],
                   help="what to draw (default: keypoints if any, else objects with their masks, else "
                        "semantic masks, else image labels)")


def run(args: argparse.Namespace) -> int:
    from ..formats import get_format
    from ..show import show

    ds = get_format(args.format).parse(args.root, split=args.split, on_error=args.on_error, progress=False,
                                       **source_options(args))
    path = show(ds, args.out, n=args.num, ids=args.ids, seed=args.seed, cell=args.cell, augment=args.augment,
                task=args.task)
    print(f"wrote {path}")
    return 0
