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
  dsprep synth coco shapes-coco/ --num-images 1000 --seed 1

--num-images is the count; --images, in every other command, says how images are
placed (link, copy, none), so synth does not take it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=list(SYNTH_FORMATS), metavar="FORMAT",
                   help=f"output format: {', '.join(SYNTH_FORMATS)} (formats that hold its boxes and masks; "
                        f"imagenet holds one label per image and cityscapes its fixed label table)")
    p.add_argument("out", metavar="OUT", help="output directory")
    p.add_argument("--num-images", type=int, default=300, metavar="N", help="number of images")
    # --images was the count here once; it means link/copy/none elsewhere: refused with a pointer
    p.add_argument("--images", dest="old_images", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists and dsprep wrote it (it holds dsprep-manifest.json)")


def run(args: argparse.Namespace) -> int:
    from ..errors import UnknownNameError
    from ..synth import synth

    if args.old_images is not None:
        raise UnknownNameError(f"--images {args.old_images}: synth's image count is --num-images "
                               f"(--num-images {args.old_images}); --images places images (link, copy, none) "
                               "in convert and split")
    report = synth(args.format, args.out, images=args.num_images, seed=args.seed, size=args.size,
                   overwrite=args.overwrite)
    print(f"wrote {report['images']} images, {report['objects']} objects "
          f"({', '.join(report['categories'])}) as {args.format} -> {args.out}")
    return 0
