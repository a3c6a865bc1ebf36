"""dsprep validate FORMAT ROOT"""
from __future__ import annotations

import argparse
import sys

from ._common import add_workers, print_json
from ..formats import FORMATS

HELP = "report every problem in a dataset, grouped and counted"
DESCRIPTION = """Parse a dataset leniently and report every problem, grouped and counted, with
the file and annotation for each: unreadable files, missing images, sizes that
disagree with the image, boxes outside the image or empty, polygons of fewer than
3 points, RLE sizes, unknown or unused categories, duplicate ids or files, images
without annotations, Cityscapes instance ids on classes without instances, VOC
mask colours outside the palette, masks whose size is not their image's; and
whatever convert or the loader would refuse: images past Pillow's decompression-
bomb limit, RLE counts or polygons they cannot draw, 8-bit Cityscapes
instanceIds, values JSON writers cannot hold; plus duplicate annotation ids,
polygons of odd length or with non-numeric coordinates, iscrowd other than
0/1, VOC classes missing from labelmap.txt. docs/cli.md lists every kind.

exit status: 0 clean, 1 problems found, 2 unusable input.

examples:
  dsprep validate voc VOCdevkit/VOC2012
  dsprep validate coco coco2017/ --split val2017 --deep --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT", help=f"the dataset's format: {', '.join(FORMATS)}")
    p.add_argument("root", metavar="ROOT", help="the dataset root (for coco also a single annotation JSON)")
    p.add_argument("--split", default=None, help="only this split (default: every split found)")
    p.add_argument("--deep", action="store_true", help="decode every image fully (finds truncated files); "
                   "coco-panoptic: check every PNG's ids against segments_info, not only the first")
    p.add_argument("--show", type=int, default=5, metavar="N", help="problems shown per kind")
    p.add_argument("--json", action="store_true", help="print every problem as JSON")
    add_workers(p)


def run(args: argparse.Namespace) -> int:
    from ..validate import KINDS, group, to_json, validate

    ds, problems = validate(args.format, args.root, split=args.split, deep=args.deep, workers=args.workers)
    if args.json:
        print_json({"format": args.format, "root": str(args.root), "images": len(ds), **to_json(problems)})
        return 1 if problems else 0
    if not problems:
        print(f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects: no problems found")
        return 0
    groups = group(problems)
    print(f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects: "
          f"{len(problems)} problems of {len(groups)} kinds")
    for kind, items in groups.items():
        print(f"\n{kind} ({len(items)}): {KINDS.get(kind, '')}")
        for p in items[: args.show]:
            print(f"  {p}")
        if len(items) > args.show:
            print(f"  ... and {len(items) - args.show} more (--json for all)")
    sys.stdout.flush()
    return 1
