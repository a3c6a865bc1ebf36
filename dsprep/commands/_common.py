"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._io import IMAGE_MODES
from ..errors import FormatError
from ..formats import FORMATS
from ..records import CATEGORY_ID_POLICIES


def add_source(p: argparse.ArgumentParser) -> None:
    """``FORMAT ROOT`` positional arguments plus ``--split``, ``--on-error`` and ``--allow-outside-root``."""
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                   help=f"the dataset's format: {', '.join(FORMATS)}")
    p.add_argument("root", metavar="ROOT",
                   help="the dataset root (for coco also a single annotation JSON)")
    p.add_argument("--split", default=None, help="only this split (default: every split found)")
    p.add_argument("--on-error", choices=["raise", "warn"], default="raise",
                   help="stop at the first bad item, or skip bad items and print one summary count")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="let paths named inside the dataset (a COCO file_name, a VOC ImageSets line...) "
                        "leave its folders, for a split tree of your own; by default such a path is an "
                        "error naming the file and entry (docs/cli.md, Safety)")


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Parse options from the ``add_source`` flags beyond split and on_error."""
    return {"allow_outside_root": True} if getattr(args, "allow_outside_root", False) else {}


def add_panoptic_options(p: argparse.ArgumentParser) -> None:
    """``--things-only`` and ``--categories-file``: parse options of a coco-panoptic source."""
    g = p.add_argument_group("coco-panoptic sources")
    g.add_argument("--things-only", action="store_true",
                   help="keep only the segments and categories with isthing=1 (panopticapi's panoptic2detection "
                        "--things_only); default: every segment, stuff included, is an object")
    g.add_argument("--categories-file", metavar="JSON", default=None,
                   help="a panopticapi categories JSON (panoptic_coco_categories.json) that gives isthing to "
                        "categories whose panoptic JSON entry lacks it")


def panoptic_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parse options :func:`add_panoptic_options` asked for.

    Raises:
        FormatError: one was given for a source that is not coco-panoptic.
    """
    options: dict[str, Any] = {}
    if getattr(args, "things_only", False):
        options["things_only"] = True
    if getattr(args, "categories_file", None):
        options["categories_file"] = args.categories_file
    if options and args.format != "coco-panoptic":
        flags = " and ".join(("--things-only",) * ("things_only" in options)
                             + ("--categories-file",) * ("categories_file" in options))
        raise FormatError(flags, f"applies to coco-panoptic sources (isthing); found format {args.format}")
    return options


def add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="processes for parsing many files (default: all cores)")


def add_output(p: argparse.ArgumentParser, *, image_modes: tuple[str, ...] = IMAGE_MODES,
               images_help: str = "place images in OUT as symlinks, copies, or not at all") -> None:
    p.add_argument("--out", required=True, metavar="OUT",
                   help="output directory, written atomically; never the input, a folder inside it or "
                        "above it, nor the current directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists and dsprep wrote it (it holds dsprep-manifest.json and "
                        "nothing else the manifest does not list); any other folder is refused")
    p.add_argument("--images", choices=image_modes, default="link", help=images_help)
    p.add_argument("--category-ids", choices=CATEGORY_ID_POLICIES, default="preserve",
                   help="keep source category ids, or renumber them 0.. or 1.. in category order "
                        "(the map is written to OUT/category_map.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
