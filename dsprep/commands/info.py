"""dsprep info FORMAT ROOT"""
from __future__ import annotations

import argparse

from ._common import add_source, add_workers, print_json

HELP = "count images, objects and categories per split"
DESCRIPTION = """Parse a dataset (annotations only, no pixels) and print images, objects and
per-category counts per split, as a table or --json.

examples:
  dsprep info voc VOCdevkit/VOC2012
  dsprep info coco annotations/instances_val2017.json --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..formats import get_format

    ds = get_format(args.format).parse(args.root, split=args.split, on_error=args.on_error,
                                       workers=args.workers, progress=None if not args.json else False)
    stats = ds.stats()
    if args.json:
        print_json({"format": args.format, "root": str(args.root), "images": len(ds),
                    "objects": ds.num_objects(),
                    "categories": [{"id": c.id, "name": c.name} for c in ds.categories],
                    "splits": stats})
        return 0
    print(f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects, "
          f"{len(ds.categories)} categories")
    names = [c.name for c in ds.categories]
    splits = list(stats)
    width = max([len("category"), *map(len, names)]) + 2
    print("".join(["split".ljust(width), *(s.rjust(12) for s in splits)]))
    print("".join(["images".ljust(width), *(str(stats[s]["images"]).rjust(12) for s in splits)]))
    print("".join(["objects".ljust(width), *(str(stats[s]["objects"]).rjust(12) for s in splits)]))
    for name in names:
        row = [stats[s]["objects_per_category"].get(name, 0) + stats[s]["images_per_label"].get(name, 0)
               for s in splits]
        print("".join([("  " + name).ljust(width), *(str(v).rjust(12) for v in row)]))
    return 0
