"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from .._io import IMAGE_MODES
from ..errors import DatasetNotFoundError, FormatError, UnknownNameError, check_choice
from ..formats import FORMATS
from ..records import CATEGORY_ID_POLICIES


# Parse options of some formats, as flags: (flag, parse option, the formats that take it,
# argparse keywords). A flag given for another format is refused (format_options). A new
# format's option joins with one line here; its Python name in messages becomes the flag in
# the CLI (cli_text).
FORMAT_FLAGS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("--missing-size", "missing_size", ("voc",),
     {"choices": ("error", "zero"), "default": None,
      "help": "voc: an XML without <size> and without an image to read it from is an error (error, the "
              "default), or read with an unknown size 0x0 (zero: boxes are not checked against it)"}),
    ("--image-dir", "image_dir", ("coco",),
     {"metavar": "DIR", "default": None,
      "help": "coco: the image folder of a single annotation JSON given as ROOT (default: for "
              "annotations/<task>_<split>.json in a 2017 tree, its <split>/ folder; else an images/ folder "
              "beside the JSON, else the JSON's own folder)"}),
    ("--instances", "instances", ("cityscapes",),
     {"choices": ("none", "things", "panoptic"), "default": None,
      "help": "cityscapes: which objects to read from the instanceIds PNGs (default: what the command needs: "
              "things for info, convert --to coco/voc; none reads the semantic labels alone, for a tree whose "
              "instanceIds cannot be read)"}),
    ("--annotations", "annotations", ("cityscapes",),
     {"metavar": "gtFine|gtCoarse", "default": None,
      "help": "cityscapes: the annotation folder to read (default: gtFine; gtCoarse for train_extra)"}),
    ("--mapping", "mapping", ("imagenet",),
     {"metavar": "FILE", "default": None,
      "help": "imagenet: the class table turning ILSVRC2012_IDs into wnids, meta.mat or map_clsloc.txt "
              "(default: found beside the ground truth)"}),
)

# Python option -> CLI flag, for the names that error messages suggest (cli_text).
_FLAG_OF = {
    "allow_outside_root": "--allow-outside-root", "split": "--split", "on_error": "--on-error",
    "images": "--images", "overwrite": "--overwrite", "things_only": "--things-only",
    "categories_file": "--categories-file", "task": "--task", "root": "--data-root",
    **{option: flag for flag, option, _, _ in FORMAT_FLAGS},
}
# the Python spelling of a suggested option: name='value', name=True, name=... or a bare name=
_PY_VALUE = r"(?:'[^']*'|\"[^\"]*\"|True|False|\.\.\.|-?[0-9.]+|(?=[\s,;)]|$))"
_PY_OPTION = re.compile(r"(?<![\w.-])(" + "|".join(sorted(_FLAG_OF, key=len, reverse=True)) + r")=(" + _PY_VALUE + ")")
# "--flag (name=value in Python)" and "--flag x, name='x' in Python,": the Python half goes
_IN_PYTHON = re.compile(r"\s*\([a-z_]+=\S+? in Python\)|,\s*[a-z_]+=\S+? in Python,")
# Python options with no flag of their own, whose CLI equivalent is another command: (Python hint, CLI hint)
_CLI_INSTEAD = (
    ("pass validation_split= and seed= to make train/validation",
     "make splits with dsprep split (--ratios train=0.8,val=0.2 --seed S --out OUT)"),
)


def cli_text(text: str) -> str:
    """A message as the CLI says it: a Python option it suggests becomes its flag
    (``missing_size='zero'`` -> ``--missing-size zero``, ``allow_outside_root=True`` ->
    ``--allow-outside-root``); "(... in Python)" asides are dropped."""
    text = _IN_PYTHON.sub("", text)
    for python, cli in _CLI_INSTEAD:
        text = text.replace(python, cli)

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        value = value.strip("'\"")
        if value in ("True", "...", ""):
            return _FLAG_OF[name]
        return f"{_FLAG_OF[name]} {value}"

    return _PY_OPTION.sub(flag, text)


def add_source(p: argparse.ArgumentParser, *, detect: bool = False) -> None:
    """``FORMAT ROOT`` positional arguments plus ``--split``, ``--on-error``, ``--allow-outside-root``
    and the :data:`FORMAT_FLAGS`. With ``detect``, FORMAT may be left out: :func:`resolve_source`
    (run by the CLI after parsing) detects it from ROOT."""
    add_positionals(p, detect=detect)
    p.add_argument("--split", default=None, help="only this split (default: every split found)")
    p.add_argument("--on-error", choices=["raise", "warn"], default="raise",
                   help="stop at the first bad item, or skip bad items (unreadable annotations; with "
                        "convert and split also records whose image file is missing) and print one summary count")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="let paths named inside the dataset (a COCO file_name, a VOC ImageSets line...) "
                        "leave its folders, for a split tree of your own; by default such a path is an "
                        "error naming the file and entry (docs/cli.md, Safety)")
    add_format_flags(p)


def add_positionals(p: argparse.ArgumentParser, *, detect: bool = False) -> None:
    """``FORMAT ROOT``; with ``detect``, ``[FORMAT] ROOT`` (see :func:`resolve_source`)."""
    if detect:
        p.add_argument("format", metavar="[FORMAT]",
                       help=f"the dataset's format: {', '.join(FORMATS)}; left out (one argument, ROOT), it "
                            "is detected from ROOT, and a tree that looks like none or several formats is an "
                            "error naming the candidates")
        p.add_argument("root", metavar="ROOT", nargs="?",
                       help="the dataset root (for coco also a single annotation JSON)")
        p.set_defaults(_detect_format=True)
    else:
        p.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                       help=f"the dataset's format: {', '.join(FORMATS)}")
        p.add_argument("root", metavar="ROOT",
                       help="the dataset root (for coco also a single annotation JSON)")


def add_format_flags(p: argparse.ArgumentParser) -> None:
    """The :data:`FORMAT_FLAGS`, in a group of their own."""
    g = p.add_argument_group("format options")
    for flag, option, _, kwargs in FORMAT_FLAGS:
        g.add_argument(flag, dest=option, **kwargs)


def format_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parse options the :data:`FORMAT_FLAGS` given ask for.

    Raises:
        UnknownNameError: a flag given for a format that does not take it.
    """
    options: dict[str, Any] = {}
    for flag, option, formats, _ in FORMAT_FLAGS:
        value = getattr(args, option, None)
        if value is None:
            continue
        if args.format not in formats:
            raise UnknownNameError(f"{flag} applies to {' and '.join(formats)} sources; found format {args.format}")
        options[option] = value
    return options


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Parse options from the ``add_source`` flags beyond split and on_error."""
    options = format_options(args)
    if getattr(args, "allow_outside_root", False):
        options["allow_outside_root"] = True
    return options


def resolve_source(args: argparse.Namespace) -> None:
    """For a command whose FORMAT may be left out (``add_source(detect=True)``): with one
    positional argument it is ROOT, and the format is detected from it.

    Raises:
        DatasetNotFoundError: ROOT does not exist.
        UnknownNameError: FORMAT is not a format; or ROOT looks like none or several formats
            (the message names the candidates and how to choose).
    """
    if not getattr(args, "_detect_format", False) or args.format is None:  # train --dataset: no positionals
        return
    if args.root is not None:
        check_choice("format", args.format, FORMATS)
        return
    from ..formats import detect_formats

    args.root, command = args.format, args.command
    if not os.path.exists(args.root):
        raise DatasetNotFoundError(f"{args.root}: no such file or directory (expected a dataset root)")
    found = detect_formats(args.root)
    if len(found) == 1:
        args.format = found[0]
        print(f"dsprep {command}: {args.root}: detected format {args.format}", file=sys.stderr)
        return
    if found:
        raise UnknownNameError(f"{args.root} looks like more than one format: {', '.join(found)}; name the one "
                               f"to read, e.g. dsprep {command} {found[0]} {args.root}")
    raise UnknownNameError(f"{args.root}: no format recognises this path (tried {', '.join(FORMATS)}); name the "
                           f"format: dsprep {command} FORMAT {args.root}")


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
