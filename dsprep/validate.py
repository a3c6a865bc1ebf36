"""``validate``: find every problem in a dataset, grouped and counted.

Two sources of problems:

1. What the format's parser reports: it runs with ``on_error="warn"`` and a
   policy that keeps every message, so one bad XML or annotation does not hide
   the rest (malformed files, non-numeric coordinates, unknown category ids...).
2. Checks on the parsed records and the files they point at (below).

No torch here; pixels are decoded only with ``deep=True``.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ._io import image_size, parallel_map
from .errors import ErrorPolicy, FormatError
from .masks import mask_palette
from .records import Dataset, decode_segmentation

__all__ = ["Problem", "validate", "validate_dataset", "KINDS"]

# kind -> one-line description, in report order
KINDS = {
    "parse": "the parser could not read an item",
    "path_escape": "a path named in the dataset leaves its folder (absolute, or '..' climbing out)",
    "missing_image": "image file missing",
    "unreadable_image": "image file unreadable",
    "size_mismatch": "annotated size differs from the image's real size (EXIF applied)",
    "missing_size": "objects on an image whose annotation gives no size",
    "box_outside_image": "box outside the image",
    "empty_box": "empty box (zero or negative width/height)",
    "short_polygon": "polygon with fewer than 3 points",
    "rle_size_mismatch": "RLE size differs from the image size",
    "unknown_category": "label not among the categories",
    "unused_category": "category without any object or image label",
    "duplicate_id": "two records with the same id",
    "duplicate_file": "two records with the same image file",
    "no_annotations": "image without annotations",
    "instance_id_without_instances": "instance id on a class that has no instances",
    "mask_colour_not_in_palette": "mask colour not in the VOC palette",
    "unreadable_mask": "mask file missing or unreadable",
    "mask_size_mismatch": "mask size differs from its image's size",
    "area_mismatch": "stored segment area differs from its pixel count",
}


@dataclass(frozen=True)
class Problem:
    """One problem: its kind (a key of :data:`KINDS`), where, and what was found."""

    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _check_files(items: Sequence[tuple[str, str, int, int, bool]]) -> list[Problem]:
    """Worker: existence, header size (and full decode when deep) of image files."""
    from PIL import Image, ImageOps

    out = []
    for rid, path, w, h, deep in items:
        if not os.path.exists(path):
            out.append(Problem("missing_image", rid, f"{path} does not exist"))
            continue
        try:
            rw, rh = image_size(path)
            if deep:
                with Image.open(path) as im:
                    im = ImageOps.exif_transpose(im)
                    im.load()
        except (FormatError, OSError, ValueError) as err:
            out.append(Problem("unreadable_image", rid, f"{path}: {err}"))
            continue
        if w and h and (rw, rh) != (w, h):
            out.append(Problem("size_mismatch", rid, f"annotation says {w}x{h}, image is {rw}x{rh}"))
    return out


def _check_masks(ds: Dataset, root: Path) -> Iterable[Problem]:
    from PIL import Image

    has_instances = {c.id: bool(c.extra.get("hasInstances")) for c in ds.categories if "hasInstances" in c.extra}
    voc_colours = mask_palette(ds)
    palette = None if voc_colours is None else {tuple(map(int, c)) for c in voc_colours}
    for r in ds.records:
        for attr in ("mask_path", "instance_mask_path"):
            rel = getattr(r, attr)
            if not rel:
                continue
            path = root / rel
            # Pixels are read only where a check needs them: RGB masks of a VOC tree (palette
            # colours) and instance masks of a dataset with hasInstances (Cityscapes); a palette
            # PNG holds palette indices by construction. Otherwise the header proves it readable.
            try:
                with Image.open(path) as im:
                    mode = im.mode
                    mw, mh = im.size  # header only: a mask covers its image pixel for pixel
                    if r.width and r.height and (mw, mh) != (r.width, r.height):
                        yield Problem("mask_size_mismatch", r.id,
                                      f"{rel}: mask is {mw}x{mh}, its image is {r.width}x{r.height}")
                    need_pixels = ((palette is not None and mode != "P")
                                   or (attr == "instance_mask_path" and bool(has_instances)))
                    arr = (np.asarray(im.convert("RGB") if mode not in ("P", "L", "I", "I;16", "RGB") else im)
                           if need_pixels else None)
            except (OSError, ValueError) as err:
                yield Problem("unreadable_mask", r.id, f"{rel}: {err}")
                continue
            if arr is None:
                continue
            if palette is not None and arr.ndim == 3:
                colours = {tuple(map(int, c)) for c in np.unique(arr.reshape(-1, 3), axis=0)}
                bad = sorted(colours - palette)
                if bad:
                    yield Problem("mask_colour_not_in_palette", r.id,
                                  f"{rel}: {len(bad)} colours not in the VOC palette, e.g. {bad[:3]}")
            if attr == "instance_mask_path" and has_instances and arr.ndim == 2:
                vals = np.unique(arr)
                ids = np.unique(vals[vals >= 1000] // 1000)
                bad_ids = [int(i) for i in ids if not has_instances.get(int(i), False)]
                if bad_ids:
                    yield Problem("instance_id_without_instances", r.id,
                                  f"{rel}: instance ids on classes without instances: label ids {bad_ids}")


def validate_dataset(ds: Dataset, *, root: str | os.PathLike | None = None, check_files: bool = True,
                     deep: bool = False, workers: int | None = None) -> list[Problem]:
    """Check parsed records (and, with ``check_files``, the files they point at).

    Args:
        ds: the parsed dataset.
        root: where record paths are relative to (default ``ds.root``).
        check_files: look at image files (existence, header size) and masks.
        deep: decode every image fully (finds truncated files; slower).
        workers: processes for the file checks (default: all cores).

    Returns:
        Every problem found, in :data:`KINDS` order.
    """
    problems: list[Problem] = []
    cats = {c.id for c in ds.categories}
    used: Counter[int] = Counter()
    ids: Counter[str] = Counter(r.id for r in ds.records)
    files: Counter[str] = Counter(r.path for r in ds.records)
    for rid, n in ids.items():
        if n > 1:
            problems.append(Problem("duplicate_id", rid, f"{n} records share this id"))
    for path, n in files.items():
        if n > 1:
            problems.append(Problem("duplicate_file", path, f"{n} records share this image file"))
    for r in ds.records:
        inst = r.instances
        w, h = r.width, r.height
        if r.label is not None:
            used[r.label] += 1
            if r.label not in cats:
                problems.append(Problem("unknown_category", r.id, f"image label {r.label} is not a category id"))
        if len(inst) and not (w and h):
            problems.append(Problem("missing_size", r.id, f"{len(inst)} objects but the annotation gives "
                                    f"size {w}x{h}; boxes cannot be checked against the image"))
        # extra["semantic_source"]: a frame whose semantic map is drawn from another file (Cityscapes
        # polygons.json / instanceIds only; the parser has read and checked it)
        if len(inst) == 0 and r.label is None and not r.mask_path and not r.captions \
                and not (r.extra or {}).get("semantic_source"):
            problems.append(Problem("no_annotations", r.id, "no objects, label, mask or caption"))
        for j, (box, label) in enumerate(zip(inst.boxes, inst.labels.tolist())):
            where = f"{r.id} object {j}" + (f" (id {inst.ids[j]})" if inst.ids[j] >= 0 else "")
            used[label] += 1
            if label not in cats:
                problems.append(Problem("unknown_category", where, f"label {label} is not a category id"))
            x1, y1, x2, y2 = box.tolist()
            if not (x2 > x1 and y2 > y1):
                problems.append(Problem("empty_box", where, f"box {[x1, y1, x2, y2]} has no area"))
            if w and h and (x1 < 0 or y1 < 0 or x2 > w or y2 > h):
                problems.append(Problem("box_outside_image", where,
                                        f"box {[x1, y1, x2, y2]} (xyxy, 0-based) outside the {w}x{h} image"))
        for j, segm in enumerate(inst.segmentation or ()):
            if segm is None:
                continue
            where = f"{r.id} object {j}" + (f" (id {inst.ids[j]})" if inst.ids[j] >= 0 else "")
            segm = decode_segmentation(segm)
            if isinstance(segm, dict):
                size = list(segm.get("size") or [])
                if h and w and size != [h, w]:
                    problems.append(Problem("rle_size_mismatch", where, f"RLE size {size}, image is [{h}, {w}] (h, w)"))
            elif isinstance(segm, list):
                for poly in segm:
                    if len(poly) < 6:
                        problems.append(Problem("short_polygon", where,
                                                f"polygon of {len(poly) // 2} points; expected at least 3"))
    # Categories are "used" by objects or image labels; a dataset annotated by semantic masks
    # alone (Cityscapes labelIds without instances) uses them through pixels we do not count.
    annotated = any(len(r.instances) or r.label is not None for r in ds.records)
    for c in (ds.categories if annotated else ()):
        if not used[c.id]:
            problems.append(Problem("unused_category", f"category {c.id} {c.name!r}", "no object or image label uses it"))
    # what a parser found while decoding masks (coco-panoptic with verify="all": validate --deep)
    for png, sid, stored, counted in ds.info.get("segment_area_mismatches") or ():
        problems.append(Problem("area_mismatch", f"{png} segment {sid}",
                                f"segments_info area {stored:g}, the PNG has {counted} pixels of this id"))
    if check_files:
        base = Path(root if root is not None else ds.root or ".")
        items = [(r.id, str(base / r.path), r.width, r.height, deep) for r in ds.records]
        for chunk in parallel_map(_check_files, items, workers=workers, chunk=512):
            problems.extend(chunk)
        problems.extend(_check_masks(ds, base))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(problems, key=lambda p: order.get(p.kind, len(order)))


def validate(format: str, root: str | os.PathLike, *, split: str | None = None, deep: bool = False,
             workers: int | None = None, **parse_options: Any) -> tuple[Dataset, list[Problem]]:
    """Parse ``root`` leniently and check it; returns the dataset and every problem.

    With ``deep``, every image is decoded and the format checks what it only
    samples otherwise (coco-panoptic: every PNG's ids against ``segments_info``;
    a mismatch is a ``parse`` problem naming the PNG).

    Raises:
        DsprepError: the input is unusable (not this format at all, root missing).
    """
    from .formats import get_format

    fmt = get_format(format)
    # a format may check more when asked to be thorough (coco-panoptic: every PNG's ids
    # against its segments_info, not only the first)
    own = getattr(fmt, "validate_options", None)
    if own is not None:
        parse_options = {**own(deep=deep), **parse_options}
    policy = ErrorPolicy("warn", show=10**9)
    ds = fmt.parse(root, split=split, on_error=policy, workers=workers, progress=False,
                                  **parse_options)
    problems = [Problem("path_escape" if kind == "PathEscapeError" else "parse", e.split(": ", 1)[0],
                        e.split(": ", 1)[-1]) for e, kind in zip(policy.examples, policy.example_kinds)]
    return ds, problems + validate_dataset(ds, root=ds.root or root, deep=deep, workers=workers)


def group(problems: Sequence[Problem]) -> dict[str, list[Problem]]:
    """Problems by kind, in :data:`KINDS` order."""
    out: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        out[p.kind].append(p)
    return dict(out)


def to_json(problems: Sequence[Problem]) -> dict[str, Any]:
    g = group(problems)
    return {"problems": len(problems), "counts": {k: len(v) for k, v in g.items()},
            "items": [asdict(p) for p in problems]}
