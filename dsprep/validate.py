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

__all__ = ["Problem", "validate", "validate_dataset", "KINDS", "SEVERITIES", "severity", "exit_code"]

# kind -> one-line description, in report order
KINDS = {
    "parse": "the parser could not read an item",
    "path_escape": "a path named in the dataset leaves its folder (absolute, or '..' climbing out)",
    "missing_image": "image file missing",
    "unreadable_image": "image file unreadable",
    "image_too_large": "image past Pillow's decompression-bomb limit (convert and the loader refuse it)",
    "size_mismatch": "annotated size differs from the image's real size (EXIF applied)",
    "missing_size": "objects on an image whose annotation gives no size",
    "box_outside_image": "box outside the image",
    "empty_box": "empty box (zero or negative width/height)",
    "short_polygon": "polygon with fewer than 3 points",
    "odd_polygon": "polygon with an odd number of coordinates (pycocotools drops the last one)",
    "bad_polygon": "polygon whose coordinates are not numbers (or not a flat list)",
    "rle_size_mismatch": "RLE size differs from the image size",
    "invalid_segmentation": "segmentation convert and the loader refuse (bad RLE counts, a vertex far outside)",
    "bad_iscrowd": "iscrowd other than 0 or 1 (read as crowd)",
    "duplicate_annotation_id": "two objects with the same annotation id",
    "class_not_in_labelmap": "VOC class missing from labelmap.txt (read after its classes)",
    "class_not_in_labels": "LabelMe label missing from labels.txt (read after its classes)",
    "unwritable_value": "a value JSON writers cannot hold (an integer beyond 64 bits)",
    "unknown_category": "label not among the categories",
    "unused_category": "category without any object or image label",
    "duplicate_id": "two records with the same id",
    "duplicate_file": "two records with the same image file",
    "no_annotations": "image without annotations",
    "instance_id_without_instances": "instance id on a class that has no instances",
    "instance_ids_8bit": "8-bit Cityscapes instanceIds: cannot hold instance ids (id * 1000 + k)",
    "mask_colour_not_in_palette": "mask colour not in the VOC palette",
    "unreadable_mask": "mask file missing or unreadable",
    "mask_size_mismatch": "mask size differs from its image's size",
    "area_mismatch": "stored segment area differs from its pixel count",
    "similar_category_names": "two category names one edit apart (a likely typo)",
}

# Severity of each kind: "error" (what convert, the loader or the reference tools refuse or get
# wrong; exit status 1), "warning" (read as it is, but probably not what was meant; exit 1 with
# --strict) or "info" (normal in real datasets: COCO lists categories no image uses and holds
# images without objects). A kind not named here is an error.
SEVERITIES = ("error", "warning", "info")
_SEVERITY = {
    "missing_size": "warning",
    "odd_polygon": "warning",
    "bad_iscrowd": "warning",
    "class_not_in_labelmap": "warning",
    "duplicate_file": "warning",
    "area_mismatch": "warning",
    "similar_category_names": "warning",
    "unused_category": "info",
    "no_annotations": "info",
}


def severity(kind: str) -> str:
    """``"error"``, ``"warning"`` or ``"info"`` for a problem kind (see :data:`SEVERITIES`)."""
    return _SEVERITY.get(kind, "error")


def exit_code(problems: Sequence["Problem"], *, strict: bool = False) -> int:
    """``dsprep validate``'s exit status: 1 with an error (or, ``strict``, a warning), else 0."""
    failing = {"error", "warning"} if strict else {"error"}
    return 1 if any(p.severity in failing for p in problems) else 0


@dataclass(frozen=True)
class Problem:
    """One problem: its kind (a key of :data:`KINDS`), where, and what was found."""

    kind: str
    where: str
    message: str

    @property
    def severity(self) -> str:
        return severity(self.kind)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _check_files(items: Sequence[tuple[str, str, int, int, bool]]) -> list[Problem]:
    """Worker: existence, header size (and full decode when deep) of image files."""
    from PIL import Image, ImageOps

    from ._checks import image_error

    out = []
    for rid, path, w, h, deep in items:
        if not os.path.exists(path):
            out.append(Problem("missing_image", rid, f"{path} does not exist"))
            continue
        try:
            rw, rh = image_size(path)
            if deep:
                try:
                    with Image.open(path) as im:
                        im = ImageOps.exif_transpose(im)
                        im.load()
                except Exception as err:  # whatever Pillow raises on a corrupt file
                    raise image_error(path, err) from None
        except FormatError as err:
            out.append(Problem(err.kind or "unreadable_image", rid, str(err)))
            continue
        if w and h and (rw, rh) != (w, h):
            out.append(Problem("size_mismatch", rid, f"annotation says {w}x{h}, image is {rw}x{rh}"))
    return out


def _check_masks(ds: Dataset, root: Path) -> Iterable[Problem]:
    from PIL import Image

    from ._checks import image_error

    has_instances = {c.id: bool(c.extra.get("hasInstances")) for c in ds.categories if "hasInstances" in c.extra}
    voc_colours = mask_palette(ds)
    palette = None if voc_colours is None else set(map(tuple, voc_colours.tolist()))
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
                        yield from _mask_size_problem(r, rel, (mw, mh), root)
                    need_pixels = ((palette is not None and mode != "P")
                                   or (attr == "instance_mask_path" and bool(has_instances)))
                    arr = (np.asarray(im.convert("RGB") if mode not in ("P", "L", "I", "I;16", "RGB") else im)
                           if need_pixels else None)
            except Exception as err:  # whatever Pillow raises on a bad file
                err = image_error(path, err, "mask")
                yield Problem(getattr(err, "kind", None) or "unreadable_mask", r.id, f"{rel}: {err.message}")
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
                vals = np.unique(arr).astype(np.int64)
                things = [int(v) for v in vals if has_instances.get(int(v), False)]
                if arr.dtype == np.uint8 and things:
                    yield Problem("instance_ids_8bit", r.id, f"{rel}: an 8-bit instanceIds PNG holding values "
                                  f"{things} of classes with instances; expected 16-bit id * 1000 + k (convert "
                                  "and instances= refuse it; regenerate with cityscapesScripts' json2instanceImg)")
                ids = np.unique(vals[vals >= 1000] // 1000)
                bad_ids = [int(i) for i in ids if not has_instances.get(int(i), False)]
                if bad_ids:
                    yield Problem("instance_id_without_instances", r.id,
                                  f"{rel}: instance ids on classes without instances: label ids {bad_ids}")


def _mask_size_problem(r: Any, rel: str, mask: tuple[int, int], root: Path) -> Iterable[Problem]:
    """A mask whose size is not its record's: the side that is wrong is named. The image file
    decides: a mask of the image file's own size is right, and the annotated size is what is
    wrong (reported once, as ``size_mismatch`` by the image check)."""
    try:
        real = image_size(root / r.path)
    except FormatError:  # missing or unreadable: reported by the image check; the annotation is all we have
        real = None
    if real == mask:
        return
    if real is None:
        found = f"the annotation gives its image as {r.width}x{r.height}"
    else:
        found = f"its image {r.path} is {real[0]}x{real[1]}"
    yield Problem("mask_size_mismatch", r.id,
                  f"{rel}: mask is {mask[0]}x{mask[1]} (width x height), {found}; expected the same size: a mask "
                  "covers its image pixel for pixel (fix: regenerate or resize the mask)")


def _segmentation_problems(segm: Any, h: int, w: int, where: str) -> Iterable[Problem]:
    """What convert's writers and the loader would refuse in one object's segmentation
    (:mod:`dsprep.masks`), plus what they accept but is wrong (odd or short polygons)."""
    from .masks import _flat_polygon, rle_problem

    try:
        segm = decode_segmentation(segm, where)
    except FormatError as err:
        yield Problem("invalid_segmentation", where, err.message)
        return
    if isinstance(segm, dict):
        size = segm.get("size")
        if h and w and isinstance(size, list) and size != [h, w]:
            yield Problem("rle_size_mismatch", where, f"RLE size {size}, image is [{h}, {w}] (h, w)")
        problem = rle_problem(segm)
        if problem:
            yield Problem("invalid_segmentation", where, problem)
        return
    if not isinstance(segm, list):
        yield Problem("invalid_segmentation", where, f"expected a list of polygons or an RLE object; found "
                                                     f"{type(segm).__name__}")
        return
    for k, poly in enumerate(segm):
        if isinstance(poly, np.ndarray):
            poly = poly.ravel().tolist()
        if not isinstance(poly, (list, tuple)) or not all(
                issubclass(t, (int, float, np.number)) and t is not bool for t in set(map(type, poly))):
            yield Problem("bad_polygon", where, f"polygon {k}: expected a flat list of numbers [x1, y1, ...]; "
                                                f"found {poly!r}"[:200])
            continue
        if len(poly) % 2:
            yield Problem("odd_polygon", where, f"polygon {k} has {len(poly)} coordinates; expected x, y pairs "
                                                "(pycocotools and convert drop the last one)")
        if len(poly) < 6:
            yield Problem("short_polygon", where, f"polygon {k} of {len(poly) // 2} points; expected at least 3")
        elif h and w:
            try:
                _flat_polygon(poly, k, h, w)
            except ValueError as err:
                yield Problem("invalid_segmentation", where, str(err))


def _duplicate_annotation_ids(ds: Dataset) -> Iterable[Problem]:
    """Source annotation ids used twice: within an image (every format), and within a split's
    file for COCO, whose ids are file-wide (pycocotools' index keeps only one of the two)."""
    groups: dict[Any, list] = defaultdict(list)
    for r in ds.records:
        ids = r.instances.ids
        if len(ids) and (ids >= 0).any():
            groups[r.split if ds.format == "coco" else r.id].append(ids[ids >= 0])
    for key, parts in groups.items():
        values, counts = np.unique(np.concatenate(parts), return_counts=True)
        for v, n in zip(values[counts > 1].tolist(), counts[counts > 1].tolist()):
            where = f"split {key}" if ds.format == "coco" else str(key)
            yield Problem("duplicate_annotation_id", f"{where}: annotation id {v}",
                          f"{n} objects share this id; expected unique ids (convert renumbers them)")


def _name_key(name: str) -> str:
    """A category name as typed-alike: case, ``_``/``-`` and repeated spaces ignored."""
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _one_edit(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one inserted or dropped character, or two neighbours swapped.

    One *substituted* letter is not counted: real vocabularies are full of such pairs
    (horse, house, mouse in COCO panoptic; carrot, parrot in LVIS)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1:]
    return a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1]


# Short names are one edit from many real names (cat, car, cap, cup...): only names of at least
# this many characters are compared by edits; shorter ones only for case and separators.
_TYPO_MIN_LENGTH = 5


def _similar_category_names(ds: Dataset, used: Counter[int]) -> Iterable[Problem]:
    """Pairs of category names that differ only in case and separators, or by one edit
    (both at least :data:`_TYPO_MIN_LENGTH` characters): ``persn`` beside ``person``.
    Candidates share a one-deletion key (linear in the names); each is checked exactly."""
    cats = list(ds.categories)
    keys: dict[str, list[int]] = defaultdict(list)
    norm = [_name_key(c.name) for c in cats]
    for i, n in enumerate(norm):
        variants = {n} | ({n[:k] + n[k + 1:] for k in range(len(n))} if len(n) >= _TYPO_MIN_LENGTH - 1 else set())
        for v in variants:
            keys[v].append(i)
    pairs = sorted({(i, j) for group in keys.values() for i in group for j in group if i < j})
    for i, j in pairs:
        a, b = norm[i], norm[j]
        if a != b and (min(len(a), len(b)) < _TYPO_MIN_LENGTH or not _one_edit(a, b)):
            continue
        ca, cb = cats[i], cats[j]
        if used[ca.id] > used[cb.id]:  # name the rarer one first: it is the likely typo
            ca, cb = cb, ca
        how = "differs only in case or separators from" if a == b else "is one edit from"
        yield Problem("similar_category_names", f"category {ca.id} {ca.name!r}",
                      f"used {used[ca.id]} times; {how} category {cb.id} {cb.name!r} (used {used[cb.id]} "
                      "times): a likely typo (fix: rename it, or merge the two)")


def _unwritable_values(ds: Dataset) -> Iterable[Problem]:
    """Values kept from the input that JSON writers cannot write (an integer beyond 64 bits):
    ``convert`` to COCO or COCO panoptic would stop at them."""
    from ._io import json_bytes

    parts: list[tuple[str, Any]] = [("info", {k: v for k, v in ds.info.items() if k in ("info", "licenses",
                                                                                        "top_level")}),
                                    ("categories", [dict(c.extra) for c in ds.categories])]
    parts += [(f"{r.id}: image fields", r.extra) for r in ds.records if r.extra]
    parts += [(f"{r.id}: object fields", r.instances.extra) for r in ds.records if r.instances.extra]
    try:
        json_bytes([p for _, p in parts], "")
    except FormatError:
        for name, value in parts:  # the slow path, only when something is wrong
            try:
                json_bytes(value, f"{name} ")
            except FormatError as err:
                yield Problem("unwritable_value", err.where.strip(), err.message)


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
            if segm is not None:
                where = f"{r.id} object {j}" + (f" (id {inst.ids[j]})" if inst.ids[j] >= 0 else "")
                problems.extend(_segmentation_problems(segm, h, w, where))
    problems.extend(_duplicate_annotation_ids(ds))
    problems.extend(_unwritable_values(ds))
    # Categories are "used" by objects or image labels; a dataset annotated by semantic masks
    # alone (Cityscapes labelIds without instances) uses them through pixels we do not count.
    # A format's own fixed classes (VOC's 20 without a labelmap.txt) are not the dataset's
    # choice: one it does not use is no problem.
    annotated = any(len(r.instances) or r.label is not None for r in ds.records)
    builtin = set(ds.info.get("builtin_categories") or ())
    for c in (ds.categories if annotated else ()):
        if not used[c.id] and c.id not in builtin:
            problems.append(Problem("unused_category", f"category {c.id} {c.name!r}", "no object or image label uses it"))
    problems.extend(_similar_category_names(ds, used))
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
    policy = ErrorPolicy("warn", show=10**9, quiet=True)  # every item is in the report: no summary line
    ds = fmt.parse(root, split=split, on_error=policy, workers=workers, progress=False,
                                  **parse_options)
    problems = [Problem(e.kind or "parse", e.where, e.message) for e in policy.errors + policy.notes]
    return ds, problems + validate_dataset(ds, root=ds.root or root, deep=deep, workers=workers)


def group(problems: Sequence[Problem]) -> dict[str, list[Problem]]:
    """Problems by kind, in :data:`KINDS` order."""
    out: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        out[p.kind].append(p)
    return dict(out)


def severity_counts(problems: Sequence[Problem]) -> dict[str, int]:
    """``{"error": n, "warning": n, "info": n}`` (every severity, 0 included)."""
    counts = Counter(p.severity for p in problems)
    return {s: counts.get(s, 0) for s in SEVERITIES}


def to_json(problems: Sequence[Problem], *, strict: bool = False) -> dict[str, Any]:
    g = group(problems)
    return {"problems": len(problems), "severities": severity_counts(problems),
            "exit_status": exit_code(problems, strict=strict),
            "counts": {k: len(v) for k, v in g.items()},
            "kinds": {k: {"severity": severity(k), "count": len(v)} for k, v in g.items()},
            "items": [{**asdict(p), "severity": p.severity} for p in problems]}
