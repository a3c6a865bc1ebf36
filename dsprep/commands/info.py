"""dsprep info FORMAT ROOT"""
from __future__ import annotations

import argparse
from typing import Any

from ..records import SIZE_BUCKETS
from ._common import add_source, add_workers, print_json, source_options

HELP = "count images, objects and categories per split"
DESCRIPTION = """Parse a dataset (annotations only; Cityscapes' objects are read from its
instanceIds PNGs) and print images, objects, COCO size buckets and
per-category counts per split, as a table or --json. Categories no object
(or image label) uses are folded into one line; --json lists every one.

Size buckets are COCO's (small < 32^2 <= medium < 96^2 <= large pixels of
area) measured on each object's box, so the same objects give the same counts
in every format (docs/cli.md, "info").

FORMAT may be left out: 'dsprep info ROOT' detects it.

examples:
  dsprep info voc VOCdevkit/VOC2012
  dsprep info VOCdevkit/VOC2012                                   # format detected
  dsprep info coco annotations/instances_val2017.json --json"""

# names of unused categories shown on their folded line before "..."
_FOLDED_NAMES = 12


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p, detect=True)
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..formats import get_format

    fmt = get_format(args.format)
    # what a format needs to count its objects (Cityscapes: instances from instanceIds, no masks)
    hook = getattr(fmt, "info_options", None)
    options = {**(hook() if hook else {}), **source_options(args)}
    ds = fmt.parse(args.root, split=args.split, on_error=args.on_error, workers=args.workers,
                   progress=None if not args.json else False, **options)
    stats = ds.stats()
    if args.json:
        print_json({"format": args.format, "root": str(args.root), "images": len(ds),
                    "objects": ds.num_objects(),
                    "categories": [{"id": c.id, "name": c.name} for c in ds.categories],
                    "splits": stats})
        return 0
    print(f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects, "
          f"{len(ds.categories)} categories")
    _print_table(ds, stats)
    return 0


def _print_table(ds: Any, stats: dict[str, Any]) -> None:
    splits = list(stats)
    names = [c.name for c in ds.categories]
    has_labels = any(stats[s]["images_per_label"] for s in splits)
    key = "images_per_label" if has_labels else "objects_per_category"
    used = [n for n in names if any(stats[s][key].get(n, 0) for s in splits)]
    width = max([len("boxes per image (mean/max)"), *(len(n) + 2 for n in used)]) + 2

    def row(label: str, values) -> None:
        print(label.ljust(width) + "".join(str(v).rjust(14) for v in values))

    def fmt_range(r) -> str:
        return "-" if not r else (f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}")

    row("split", splits)
    row("images", [stats[s]["images"] for s in splits])
    row("objects", [stats[s]["objects"] for s in splits])
    if ds.num_objects():
        for b, _, _ in SIZE_BUCKETS:
            row(f"  {b} (COCO, box area)", [stats[s]["size_buckets"].get(b, 0) for s in splits])
        row("boxes per image (mean/max)",
            [f"{bp['mean']:.2f}/{bp['max']}" if (bp := stats[s]["boxes_per_image"]) else "-" for s in splits])
    row("image width", [fmt_range((stats[s]["image_size"] or {}).get("width")) for s in splits])
    row("image height", [fmt_range((stats[s]["image_size"] or {}).get("height")) for s in splits])
    unused = [n for n in names if n not in set(used)]
    print()
    row("category" + (" (images)" if has_labels else " (objects/images)"), splits)
    for name in used:
        if has_labels:
            row("  " + name, [stats[s]["images_per_label"].get(name, 0) for s in splits])
        else:
            row("  " + name, [f"{stats[s]['objects_per_category'].get(name, 0)}/"
                              f"{stats[s]['images_per_category'].get(name, 0)}" for s in splits])
    if unused:  # one line for the categories nothing uses (real COCO lists several; Cityscapes' stuff)
        shown = ", ".join(unused[:_FOLDED_NAMES]) + (", ..." if len(unused) > _FOLDED_NAMES else "")
        what = "images" if has_labels else "objects"
        print(f"  + {len(unused)} categor{'y' if len(unused) == 1 else 'ies'} with 0 {what}: {shown}"
              + (" (--json lists them)" if len(unused) > _FOLDED_NAMES else ""))
