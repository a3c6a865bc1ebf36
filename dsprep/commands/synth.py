"""dsprep synth FORMAT OUT"""
from __future__ import annotations

import argparse

from ..synth import SYNTH_FORMATS

HELP = "write a small, learnable sample dataset of coloured shapes (no download)"
DESCRIPTION = """Write a sample dataset: images of 1-3 coloured shapes (circle, square,
triangle, diamond, cross) with their exact boxes, polygon masks and class labels,
split into train and val. A few hundred images take a few seconds.

examples:
  dsprep synth voc shapes-voc/
  dsprep synth coco shapes-coco/ --images 1000 --seed 1"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=list(SYNTH_FORMATS), metavar="FORMAT",
                   help=f"output format: {', '.join(SYNTH_FORMATS)} (formats that hold its boxes and masks; "
                        f"imagenet holds one label per image and cityscapes its fixed label table)")
    p.add_argument("out", metavar="OUT", help="output directory")
    p.add_argument("--images", type=int, default=300, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists and dsprep wrote it (it holds dsprep-manifest.json)")


def run(args: argparse.Namespace) -> int:
    from ..synth import synth

    report = synth(args.format, args.out, images=args.images, seed=args.seed, size=args.size,
                   overwrite=args.overwrite)
    print(f"wrote {report['images']} images, {report['objects']} objects "
          f"({', '.join(report['categories'])}) as {args.format} -> {args.out}")
    return 0
