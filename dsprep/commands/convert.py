"""dsprep convert FORMAT ROOT --to FORMAT --out OUT"""
from __future__ import annotations

import argparse
import sys

from ..formats import FORMATS
from ._common import add_output, add_panoptic_options, add_source, add_workers, panoptic_options, print_json

HELP = "convert a dataset between formats (through the one record model)"
DESCRIPTION = """Convert a dataset between formats. The input is never modified; the output is
written to a temporary directory and renamed to OUT when complete.

examples:
  dsprep convert voc VOCdevkit/VOC2012 --to coco --out voc-coco/
  dsprep convert coco coco2017/ --to voc --out coco-voc/ --split val2017 --images copy
  dsprep convert voc VOC2012/ --to coco --out out/ --category-ids contiguous0
  dsprep convert coco-panoptic coco/ --to coco --out things/ --things-only

What the target format cannot hold (keypoints in VOC, say) is named in a warning
with counts, never dropped silently."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("--to", required=True, choices=list(FORMATS), metavar="FORMAT",
                   help=f"the output format: {', '.join(FORMATS)}")
    add_output(p)
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_panoptic_options(p)


def run(args: argparse.Namespace) -> int:
    from ..conversion import convert

    summary = convert(args.format, args.root, args.to, args.out, split=args.split, images=args.images,
                      category_ids=args.category_ids, overwrite=args.overwrite, workers=args.workers,
                      on_error=args.on_error, progress=False if args.quiet else None,
                      parse_options=panoptic_options(args))
    if args.json:
        print_json(summary)
        return 0
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items()) or "no split lists"
    line = (f"converted {summary['from']} -> {summary['to']}: {summary['images']} images, "
            f"{summary['objects']} objects, {summary['categories']} categories ({splits}) "
            f"in {summary['seconds']:.2f} s -> {summary['out']}")
    if summary["skipped"]:
        line += f"; skipped {summary['skipped']} bad items"
    print(line, file=sys.stdout)
    return 0
