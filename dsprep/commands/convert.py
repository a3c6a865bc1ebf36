"""dsprep convert FORMAT ROOT --to FORMAT --out OUT"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .._io import IMAGE_MODES
from ..errors import UnknownNameError
from ..formats import FORMATS
from ._common import (add_output, add_panoptic_options, add_source, add_workers, format_options, panoptic_options,
                      print_json)

HELP = "convert a dataset between formats (through the one record model)"
DESCRIPTION = """Convert a dataset between formats. The input is never modified; the output is
written to a temporary directory and renamed to OUT when complete. OUT may not
be, hold or lie inside a folder the input reads from; --overwrite replaces only
a folder dsprep wrote (docs/cli.md, "Safety").

FORMAT may be left out: 'dsprep convert ROOT --to coco --out OUT' detects it
(a tree that looks like none or several formats is an error naming them).

examples:
  dsprep convert voc VOCdevkit/VOC2012 --to coco --out voc-coco/
  dsprep convert VOCdevkit/VOC2012 --to coco --out voc-coco/              # format detected
  dsprep convert coco annotations/instances_val2017.json --image-dir val2017/ --to voc --out v/
  dsprep convert coco coco2017/ --to voc --out coco-voc/ --split val2017 --images copy
  dsprep convert voc VOC2012/ --to coco --out out/ --category-ids contiguous0
  dsprep convert coco-panoptic coco/ --to coco --out things/ --things-only
  dsprep convert imagenet ILSVRC2012/ --to shards --out in1k-shards/ --max-side 256
  dsprep convert coco coco2017/ --to shards --out s/ --num-tasks 8 --task-index 3   # then: dsprep shards merge s/

What the target format cannot hold (keypoints in VOC, say) is named in a warning
with counts, never dropped silently.

--to shards (docs/shards.md) writes WebDataset-compatible tar shards and index.json:
the images' own bytes (--images keep, the default; link and copy mean the same), or
re-encoded with --max-side. The conversion runs as chunks of records: in local
processes (--workers), as Ray tasks (--backend ray), or shared between the tasks of a
job array (--num-tasks N --task-index I, each writing into the same OUT, then
'dsprep shards merge OUT'); the shards are byte-identical whichever way.
Converting shards to another format extracts the images as files (a file inside a
tar cannot be symlinked: --images link places them as files too)."""

SHARDS_FLAGS = ("shard_size", "max_side", "chunk_size", "backend", "ray_address", "num_tasks", "task_index")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p, detect=True)
    p.add_argument("--to", required=True, choices=list(FORMATS), metavar="FORMAT",
                   help=f"the output format: {', '.join(FORMATS)}")
    add_output(p, image_modes=IMAGE_MODES + ("keep",),
               images_help="place images in OUT as symlinks, copies, or not at all; with --to shards: keep "
                           "(the default) stores the original bytes")
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_panoptic_options(p)
    g = p.add_argument_group("--to shards")
    g.add_argument("--shard-size", default=None, metavar="SIZE",
                   help="close a shard before it passes SIZE: 1GB (the default), 500MB, 64MiB or bytes")
    g.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="re-encode every image so that its long side is at most N pixels (boxes, masks and "
                        "keypoints scaled with it; original size and scale kept in each record); default: "
                        "keep the original bytes")
    g.add_argument("--quality", type=int, default=90, help="JPEG quality with --max-side (PNG stays PNG)")
    g.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="records per chunk, the unit of work (default: from the record count, 256..10000; "
                        "never from --workers, so the shards do not depend on it)")
    g.add_argument("--backend", choices=["local", "ray"], default=None,
                   help="run the chunks in local processes (local, the default) or as Ray tasks "
                        "(pip install 'dsprep[ray]')")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)")
    g.add_argument("--num-tasks", type=int, default=None, metavar="N",
                   help="job array of N tasks (SLURM array, Kubernetes indexed job): this invocation writes "
                        "its share of the chunks into OUT; 'dsprep shards merge OUT' writes the index after")
    g.add_argument("--task-index", type=int, default=None, metavar="I",
                   help="this invocation's task, 0..N-1 (e.g. $SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX)")
    g = p.add_argument_group("--to labelme")
    g.add_argument("--layout", choices=["beside", "folder"], default=None,
                   help="beside (the default): each JSON beside its image; folder: images/ and annotations/")
    g.add_argument("--image-data", action="store_true", default=None,
                   help="embed each image in its JSON as base64 imageData (default: imageData null)")



def _write_options(args: argparse.Namespace) -> dict[str, Any]:
    """The --to shards flags as write options (refused with another target: they would do nothing)."""
    given = {k: getattr(args, k) for k in SHARDS_FLAGS if getattr(args, k) is not None}
    if args.to != "shards":
        if given or args.images == "keep":
            flags = [f"--{k.replace('_', '-')}" for k in given] + (["--images keep"] if args.images == "keep" else [])
            raise UnknownNameError(f"{', '.join(flags)}: only with --to shards (this writes {args.to})")
        return {}
    if args.num_tasks is None and args.task_index is not None:
        raise UnknownNameError("--task-index without --num-tasks: give both (or neither)")
    if args.max_side is not None:
        given["quality"] = args.quality
    given["workers"] = args.workers
    given["on_error"] = args.on_error
    return given


LABELME_FLAGS = ("layout", "image_data")


def _labelme_options(args: argparse.Namespace) -> dict[str, Any]:
    """The --to labelme flags as write options (refused with another target)."""
    given = {k: getattr(args, k) for k in LABELME_FLAGS if getattr(args, k, None) is not None}
    if given and args.to != "labelme":
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise UnknownNameError(f"{flags}: only with --to labelme (this writes {args.to})")
    return given


def run(args: argparse.Namespace) -> int:
    from ..conversion import convert

    write_options = {**_write_options(args), **_labelme_options(args)}
    summary = convert(args.format, args.root, args.to, args.out, split=args.split, images=args.images,
                      category_ids=args.category_ids, overwrite=args.overwrite, workers=args.workers,
                      on_error=args.on_error, progress=False if args.quiet else None,
                      allow_outside_root=args.allow_outside_root, parse_options={**panoptic_options(args), **format_options(args)},
                      write_options=write_options)
    if args.num_tasks is not None and not args.json:
        print(f"task {args.task_index} of {args.num_tasks}: wrote {summary['written']['images']} images in "
              f"{summary['written']['shards']} shards to {summary['out']}; when every task has ended: "
              f"dsprep shards merge {summary['out']}", file=sys.stdout)
        return 0
    if args.json:
        print_json(summary)
        return 0
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items()) or "no split lists"
    line = (f"converted {summary['from']} -> {summary['to']}: {_written(summary)}, "
            f"{summary['categories']} categories ({splits}) in {summary['seconds']:.2f} s -> {summary['out']}")
    if summary["skipped"]:
        line += f"; skipped {summary['skipped']} bad items"
        if summary.get("missing_images"):
            line += f" ({summary['missing_images']} records whose image file is missing)"
    lost = {k: v for k, v in summary["lost"].items() if v}
    if lost:
        line += "; not kept: " + ", ".join(f"{k} {v}" for k, v in lost.items())
    print(line, file=sys.stdout)
    return 0


def _written(summary: dict) -> str:
    """``N images, M objects`` written; ``n of N images, ... written`` when the target held fewer
    than were read (an ImageNet tree holds no unlabelled image): the summary counts what was written."""
    written = summary.get("written") or {}
    parts, short = [], False
    for what in ("images", "objects"):
        read, wrote = summary[what], written.get(what, summary[what])
        short |= wrote != read
        parts.append(f"{wrote} {what}" if wrote == read else f"{wrote} of {read} {what}")
    return ", ".join(parts) + (" written" if short else "")
