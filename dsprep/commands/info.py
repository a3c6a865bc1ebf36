"""dsprep info FORMAT ROOT"""
from __future__ import annotations

import argparse

from ._common import add_source, add_workers, print_json, source_options

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
                                       workers=args.workers, progress=None if not args.json else False,
                                       **source_options(args))
    stats = ds.stats()
    if args.json:
        print_json({"format": args.format, "root": str(args.root), "images": len(ds),
                    "objects": ds.num_objects(),
                    "categories": [{"id": c.id, "name": c.name} for c in ds.categories],
                    "splits": stats})
        return 0
    print(f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects, "
          f"{len(ds.categories)} categories")
    splits = list(stats)
    names = [c.name for c in ds.categories]
    width = max([len("boxes per image (mean/max)"), *(len(n) + 2 for n in names)]) + 2

    def row(label: str, values) -> None:
        print(label.ljust(width) + "".join(str(v).rjust(14) for v in values))

    def fmt_range(r) -> str:
        return "-" if not r else (f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}")

    row("split", splits)
    row("images", [stats[s]["images"] for s in splits])
    row("objects", [stats[s]["objects"] for s in splits])
    if ds.num_objects():
        for b in ("small", "medium", "large"):
            row(f"  {b} (COCO area)", [stats[s]["size_buckets"].get(b, 0) for s in splits])
        row("boxes per image (mean/max)",
            [f"{bp['mean']:.2f}/{bp['max']}" if (bp := stats[s]["boxes_per_image"]) else "-" for s in splits])
    row("image width", [fmt_range((stats[s]["image_size"] or {}).get("width")) for s in splits])
    row("image height", [fmt_range((stats[s]["image_size"] or {}).get("height")) for s in splits])
    has_labels = any(stats[s]["images_per_label"] for s in splits)
    print()
    row("category" + (" (images)" if has_labels else " (objects/images)"), splits)
    for name in names:
        if has_labels:
            row("  " + name, [stats[s]["images_per_label"].get(name, 0) for s in splits])
        else:
            row("  " + name, [f"{stats[s]['objects_per_category'].get(name, 0)}/"
                              f"{stats[s]['images_per_category'].get(name, 0)}" for s in splits])
    return 0
