"""Conversion: parse one format, write another, always through records.

:func:`convert` is ``dsprep.convert``; :func:`write_dataset` writes records
in a format with the atomic-output rules (also used by ``dsprep split`` and
``dsprep synth``).

No torch here: the CLI's convert path must start fast.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._io import check_images_mode
from ._outdir import atomic_output, claim_output, input_folders
from ._paths import output_path
from .errors import DatasetNotFoundError, check_choice
from .formats import get_format
from .records import CATEGORY_ID_POLICIES, Dataset

__all__ = ["CATEGORY_MAP_FILE", "convert", "write_dataset"]

log = logging.getLogger(__name__)
CATEGORY_MAP_FILE = "category_map.json"


def write_dataset(dataset: Dataset, to: str, out: str | os.PathLike, *, images: str = "link",
                  category_ids: str = "preserve", overwrite: bool = False, progress: bool | None = None,
                  inputs: Iterable[str | os.PathLike] = (), command: str = "write",
                  **write_options: Any) -> dict[str, Any]:
    """Write ``dataset`` as format ``to`` into ``out``, atomically.

    The category-id ``policy`` is applied first and the map
    ``{"policy", "categories": [{"name", "source_id", "id"}]}`` is written to
    ``out/category_map.json``. ``out`` follows the rules of docs/cli.md "Safety":
    it may not be, hold or lie inside a folder the dataset reads from (its root,
    image and mask folders, symlink targets; plus ``inputs``), an existing ``out``
    is replaced only with ``overwrite`` and only when dsprep wrote it (its
    ``dsprep-manifest.json``, which this writes, naming ``command``), and one run
    at a time writes it.

    Returns:
        The writer's report plus ``"category_map"``.

    Raises:
        OutputExistsError: ``out`` may not be written (the message says why).
        OutputLockedError: another run is writing ``out``.
    """
    fmt = get_format(to)
    check_images_mode(images)
    check_choice("category-id policy", category_ids, CATEGORY_ID_POLICIES)
    remapped, mapping = dataset.remap_categories(category_ids)
    folders = input_folders(dataset, inputs)
    with atomic_output(out, overwrite=overwrite, inputs=folders, command=command) as tmp:
        report = dict(fmt.write(remapped, tmp, images=images, progress=progress, **write_options) or {})
        cmap = {
            "policy": category_ids,
            "source_format": dataset.format,
            "categories": [{"name": c.name, "source_id": c.id, "id": mapping[c.id]} for c in dataset.categories],
        }
        output_path(tmp, CATEGORY_MAP_FILE).write_text(json.dumps(cmap, indent=1, ensure_ascii=False) + "\n",
                                                       encoding="utf-8")
    report["category_map"] = mapping
    lost: Mapping[str, int] = report.get("lost") or {}
    for what, n in sorted(lost.items()):
        if n:
            log.warning("%s cannot hold %s: %d dropped from the output (the input is unchanged)", to, what, n)
    return report


def convert(src_format: str, root: str | os.PathLike, to: str, out: str | os.PathLike, *,
            split: str | None = None, images: str = "link", category_ids: str = "preserve",
            overwrite: bool = False, workers: int | None = None, on_error: str = "raise",
            progress: bool | None = None, allow_outside_root: bool = False,
            parse_options: Mapping[str, Any] | None = None,
            write_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Convert the dataset at ``root`` from ``src_format`` to ``to``, writing ``out``.

    Args:
        src_format, to: format names (``dsprep.formats.FORMATS``).
        root: the source dataset (directory, or a COCO JSON file).
        out: the output directory; must not exist unless ``overwrite`` (docs/cli.md "Safety").
        split: convert only this split (default: every split found).
        images: ``link`` (symlinks), ``copy`` or ``none``.
        category_ids: ``preserve``, ``contiguous0`` or ``contiguous1``.
        workers: processes for parsing (default: all cores).
        on_error: ``raise`` (stop at the first bad item) or ``warn`` (skip and count).
        allow_outside_root: let paths named inside the dataset (a COCO ``file_name``...)
            leave the dataset's folders (a split tree of your own); by default such a
            path is a :class:`~dsprep.errors.PathEscapeError`.

    Returns:
        A summary: images, objects, categories, splits, seconds, lost, skipped.

    Raises:
        DatasetNotFoundError: ``root`` does not exist.
        FormatError: bad input (names the file and what was wrong).
        PathEscapeError: a path named inside the dataset leaves it.
        OutputExistsError: ``out`` exists and ``overwrite`` is False, or was not written by
            dsprep, or is, holds or lies inside a folder the input reads from.
        OutputLockedError: another run is writing ``out``.

    Example:
        >>> convert("voc", "VOCdevkit/VOC2012", "coco", "out/")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    src = get_format(src_format)
    get_format(to)
    check_images_mode(images)
    check_choice("category-id policy", category_ids, CATEGORY_ID_POLICIES)
    root, out = Path(root), Path(out)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: no such file or directory (expected a {src_format} dataset)")
    # A source format may need options for a given target (Cityscapes reads instances only
    # when they will be written); explicit parse_options win.
    hook = getattr(src, "parse_options_for", None)
    options = {**(hook(to) if hook else {}), **dict(parse_options or {})}
    if allow_outside_root:
        options["allow_outside_root"] = True
    # OUT is checked and held before parsing (a refused or busy OUT fails at once), and
    # again with every folder the parsed records read from before writing.
    with claim_output(out, inputs=input_folders(None, [root]), overwrite=overwrite):
        dataset = src.parse(root, split=split, on_error=on_error, workers=workers, progress=progress, **options)
        if not isinstance(dataset, Dataset):  # a format bug, not user input
            raise TypeError(f"{src_format}.parse returned {type(dataset).__name__}, expected Dataset")
        report = write_dataset(dataset, to, out, images=images, category_ids=category_ids, overwrite=overwrite,
                               progress=progress, inputs=[root], command="convert", **dict(write_options or {}))
    return {
        "from": src_format, "to": to, "out": str(out),
        "images": len(dataset), "objects": dataset.num_objects(), "categories": len(dataset.categories),
        "splits": {k: len(v) for k, v in dataset.splits.items()},
        "lost": dict(report.get("lost") or {}),
        "skipped": int(dataset.info.get("skipped", 0)),
        "seconds": round(time.perf_counter() - t0, 3),
    }

