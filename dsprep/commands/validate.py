"""dsprep validate [FORMAT] ROOT"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._common import add_format_flags, add_positionals, add_workers, cli_text, print_json, source_options

HELP = "report every problem in a dataset, grouped by severity and kind, and counted"
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
0/1, VOC classes missing from labelmap.txt, category names one edit apart
(likely typos). docs/cli.md lists every kind with its severity.

severities:
  error    what convert, the loader or the reference tools refuse or get wrong
  warning  read as it is, but probably not what was meant (a likely typo,
           iscrowd 2 read as crowd, an odd-length polygon)
  info     normal in real datasets: categories no object uses, images without
           annotations (real COCO has both)

exit status: 0 no errors (warnings and info are shown, counted, and pass),
1 errors found (with --strict: errors or warnings), 2 unusable input.

FORMAT may be left out: 'dsprep validate ROOT' detects it.

examples:
  dsprep validate voc VOCdevkit/VOC2012
  dsprep validate coco2017/ --split val2017 --deep --json
  dsprep validate --strict shapes-voc/             # CI gate: warnings fail too"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_positionals(p, detect=True)
    p.add_argument("--split", default=None, help="only this split (default: every split found)")
    p.add_argument("--deep", action="store_true", help="decode every image fully (finds truncated files); "
                   "coco-panoptic: check every PNG's ids against segments_info, not only the first")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too, not only on errors")
    p.add_argument("--show", type=int, default=5, metavar="N", help="problems shown per kind")
    p.add_argument("--json", action="store_true", help="print every problem as JSON (each with its severity)")
    add_workers(p)
    add_format_flags(p)


def run(args: argparse.Namespace) -> int:
    from ..validate import exit_code, to_json, validate

    ds, problems = validate(args.format, args.root, split=args.split, deep=args.deep, workers=args.workers,
                            **source_options(args))
    code = exit_code(problems, strict=args.strict)
    if args.json:
        report = to_json(problems, strict=args.strict)
        for item in report["items"]:
            item["message"] = cli_text(item["message"])
        print_json({"format": args.format, "root": str(args.root), "images": len(ds), **report})
        return code
    head = f"{args.format} dataset at {args.root}: {len(ds)} images, {ds.num_objects()} objects: "
    if not problems:
        print(head + "no problems found")
        return code
    _print_report(head, problems, args.show, args.strict)
    sys.stdout.flush()
    return code


def _print_report(head: str, problems: Sequence, show: int, strict: bool) -> None:
    """The counts per severity on one line, then each severity's kinds with their first ``show`` items."""
    from ..validate import KINDS, SEVERITIES, group, severity_counts

    counts = severity_counts(problems)
    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    print(head + ", ".join(f"{counts[s]} {plural[s] if counts[s] != 1 or s == 'info' else s}" for s in SEVERITIES))
    groups = group(problems)
    for sev in SEVERITIES:
        kinds = {k: v for k, v in groups.items() if v[0].severity == sev}
        for kind, items in kinds.items():
            print(f"\n{sev}: {kind} ({len(items)}): {KINDS.get(kind, '')}")
            for p in items[:show]:
                print(f"  {cli_text(str(p))}")
            if len(items) > show:
                print(f"  ... and {len(items) - show} more (--json for all)")
    failing = counts["error"] + (counts["warning"] if strict else 0)
    verdict = ("fails" if failing else "passes") + (" (--strict: warnings fail too)" if strict else "")
    n_err, n_warn = counts["error"], counts["warning"]
    print(f"\n{verdict}: {n_err} error{'s' * (n_err != 1)}" + (f", {n_warn} warning{'s' * (n_warn != 1)}" if strict else ""))
