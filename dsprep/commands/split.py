"""dsprep split FORMAT ROOT --ratios train=0.8,val=0.1,test=0.1 --seed 123 --out OUT"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_output, add_source, add_workers, print_json, source_options

HELP = "re-split a dataset N ways, seeded (optionally stratified by class)"
DESCRIPTION = """Split a dataset's images N ways and write it, in its own format, to OUT:
VOC ImageSets/Main/<split>.txt lists, COCO one JSON per split, ImageNet one
folder per split. The input is never modified. The same seed gives the same
split on any machine (numpy PCG64 over the sorted image ids).

Every image the parse returns is split once (with --split, only that split's
images), except images whose labels are dummies (the Cityscapes test split):
they are not ground truth, so they are left out of the split and the output,
and a message says how many. --stratify keeps class proportions in every split: by image label
for classification, else by each image's rarest class (--stratify-by).

examples:
  dsprep split voc VOCdevkit/VOC2012 --ratios train=0.8,val=0.1,test=0.1 --seed 123 --out voc-split/
  dsprep split imagenet imagenette/ --ratios train=0.9,val=0.1 --stratify --out imnet-split/
  dsprep split coco instances_train2017.json --ratios train=8,val=1,test=1 --stratify --out coco-split/"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p, detect=True)
    p.add_argument("--ratios", required=True, metavar="NAME=R,...",
                   help="split names and ratios, e.g. train=0.8,val=0.1,test=0.1 (or weights 8,1,1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (non-negative)")
    p.add_argument("--stratify", action="store_true", help="keep class proportions in every split")
    p.add_argument("--stratify-by", choices=("auto", "label", "rarest", "most_frequent"), default="auto",
                   help="stratum of an image: its label, its rarest class, or its most frequent class "
                        "(auto: label if the dataset has image labels, else rarest)")
    add_output(p)
    add_workers(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from .._outdir import claim_output, input_folders
    from ..errors import DatasetNotFoundError
    from ..splitting import parse_ratios

    ratios = parse_ratios(args.ratios)  # fail on bad ratios before parsing a large dataset
    root, out = Path(args.root), Path(args.out)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: no such file or directory (expected a {args.format} dataset)")
    # OUT is checked and held before parsing a large dataset, as convert does
    with claim_output(out, inputs=input_folders(None, [root]), overwrite=args.overwrite):
        return _split(args, ratios, root, out)


def _split(args: argparse.Namespace, ratios: dict[str, float], root: Path, out: Path) -> int:
    from ..conversion import without_missing_images, write_dataset
    from ..errors import FormatError
    from ..formats import get_format
    from ..splitting import apply_split, dummy_labelled, split_ids, strata_for

    fmt = get_format(args.format)
    ds = fmt.parse(args.root, split=args.split, on_error=args.on_error, workers=args.workers,
                   progress=False if args.quiet else None, **source_options(args))
    missing = 0
    if args.on_error == "warn" and args.images != "none":  # as convert: a record without its image is skipped
        ds, missing = without_missing_images(ds)
    # Frames whose labels are dummies (Cityscapes test) are no ground truth: dealt into new
    # splits they would be re-read as labelled. They are left out of the split and the output.
    dummy = set(dummy_labelled(ds.records))
    if dummy and len(dummy) == len(ds.records):
        raise FormatError(str(root), f"all {len(dummy)} images have dummy labels (Cityscapes test split: not "
                                     f"ground truth); nothing to split (pick labelled splits with --split)")
    if dummy:
        splits = sorted({r.split for r in ds.records if r.id in dummy})
        print(f"left out {len(dummy)} images whose labels are dummies, not ground truth (split "
              f"{'/'.join(map(str, splits))}, Cityscapes test); they are neither split nor written",
              file=sys.stderr)
    ids = [r.id for r in ds.records if r.id not in dummy]
    strata = strata_for(ds.records, args.stratify_by) if args.stratify else None
    parts = split_ids(ids, ratios, args.seed, strata=strata)
    new = apply_split(ds, parts)
    report = write_dataset(new, args.format, out, images=args.images, category_ids=args.category_ids,
                           overwrite=args.overwrite, progress=False if args.quiet else None, inputs=[root],
                           command="split")
    summary = {"format": args.format, "out": str(out), "seed": args.seed, "ratios": ratios,
               "stratified": bool(args.stratify), "images": len(new),
               "splits": {k: len(v) for k, v in parts.items()}, "lost": dict(report.get("lost") or {}),
               "left_out_dummy_labels": len(dummy), "missing_images": missing}
    if args.json:
        print_json(summary)
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    print(f"split {len(new)} images ({counts}), seed {args.seed}"
          f"{', stratified' if args.stratify else ''} -> {out}")
    return 0
