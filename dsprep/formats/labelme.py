"""LabelMe: one JSON per image, as the labelme annotation tool saves it.

Spec: labelme's own reader and writer (``labelme/_label_file.py``, ``LabelFile.load``/``save``;
``labelme/utils/shape.py`` for what each shape covers); facts and the shape mapping in
``docs/formats/labelme.md``. A tree (``root`` is any folder; JSONs are found at any depth)::

    root/
      labels.txt               optional: one class name a line, fixes the category order
      a.jpg  a.json            a JSON beside its image ...
      annotations/b.json       ... or in a folder of its own, with "imagePath": "../images/b.jpg"
      images/b.jpg

A JSON holds ``version``, ``flags`` (image-level booleans), ``shapes``, ``imagePath``
(relative to the JSON), ``imageData`` (the image file, base64; or null) and
``imageHeight``/``imageWidth``. Each shape has ``label``, ``points`` (``[[x, y], ...]``),
``shape_type``, ``group_id`` (shapes with the same label and group id are one instance,
as labelme's ``shapes_to_label`` and ``labelme2coco`` join them), ``flags``,
``description`` and, for ``mask`` shapes, ``mask`` (a base64 PNG of the box
``int(points)`` inclusive).

How shapes become records:

- ``polygon`` -> a segmentation polygon; the box is its extent.
- ``rectangle`` -> the box (two corners in any order); no segmentation unless the
  instance also has area shapes, where it joins them as a 4-corner polygon.
- ``circle`` (centre, a point on the circle) -> the box ``c +- r``; by default also a
  32-gon of the circle's area (``circles="box"`` keeps only the box); counted in
  ``info["labelme_circles_approximated"]``.
- ``mask`` -> a COCO RLE of the whole image; the box is the tight box of its pixels.
- ``line``, ``linestrip``, ``point``, ``points`` have no area: kept (with their points)
  in the instance's ``extra["labelme"]`` when they share a group with area shapes, else in
  the record's ``extra["labelme"]["shapes"]``; writers that cannot hold them report them lost.

Everything else a shape has (``flags``, ``description``, ``group_id``, unknown keys, a circle's
points) is kept in ``Instances.extra[k]["labelme"]``, so LabelMe -> LabelMe (and LabelMe ->
COCO -> LabelMe) writes the same shapes back.
"""
from __future__ import annotations

import base64
import binascii
import functools
import io
import logging
import math
import ntpath
import os
import posixpath
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._checks import MAX_SIDE, INT64_MAX, INT64_MIN, check_side, check_utf8_name, fit_name, image_error, read_utf8
from .._paths import confine, output_path, safe_relpath
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError,
                      MalformedFileError, MissingFileError, UnknownNameError, check_choice)
from ..masks import ellipse_polygon
from ..records import Category, Dataset, Instances, Record, decode_segmentation, make_ids_distinct, \
    record_id_from_path

__all__ = ["NAME", "DESCRIPTION", "SHAPE_TYPES", "detect", "parse", "write"]

log = logging.getLogger(__name__)

NAME = "labelme"
DESCRIPTION = "LabelMe: one JSON per image (shapes, group_id, flags, imageData)"
# What write() keeps of any dataset (dsprep.formats.FIELDS, the round-trip matrix): boxes only
# where no mask is (a shape's box is its points' extent), no ids, splits or flags.
HOLDS = frozenset({"file_names", "objects", "categories", "masks"})

#: Points each shape type needs (min, max); labelme's shape_to_mask asserts the same.
SHAPE_TYPES: Mapping[str, tuple[int, float]] = {
    "polygon": (3, math.inf), "rectangle": (2, 2), "circle": (2, 2), "mask": (2, 2),
    "line": (2, 2), "linestrip": (2, math.inf), "point": (1, 1), "points": (1, math.inf),
}
_AREA = frozenset({"polygon", "rectangle", "circle", "mask"})
_SHAPE_KEYS = ("label", "points", "group_id", "shape_type", "flags", "description", "mask")
_TOP_KEYS = ("version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth")
_LABELS = "labels.txt"
# JSONs dsprep convert writes beside any output (the OUT manifest, the category map): not LabelMe.
_SIDE_FILES = frozenset({"dsprep-manifest.json", "category_map.json"})
_VERSION = "5.7.0"  # the labelme version whose fields write() writes (description, mask)
_SPLITS = ("train", "val", "valid", "test")  # a first folder of this name is the record's split


# --------------------------------------------------------------------------- detect / listing

def _looks_like_labelme(path: Path) -> bool:
    """A JSON whose first or last 64 KiB name both ``"shapes"`` and ``"imagePath"``."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            tail = f.read(65536)
    except OSError:
        return False
    return b'"shapes"' in head and (b'"imagePath"' in head or b'"imagePath"' in tail)


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds LabelMe JSONs: the first ``*.json`` found breadth first (its top level,
    then sub-folders in name order, 3 levels and 64 folders at most; dsprep's side files skipped)
    names ``"shapes"`` and ``"imagePath"``. ``annotations/<split>/a.json`` (``layout="folder"``
    of a dataset with splits) is found.

    Example:
        >>> detect("data_annotated")  # doctest: +SKIP
        True
    """
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json" and _looks_like_labelme(path)
    if not path.is_dir():
        return False
    queue, seen = [(path, 0)], 0
    while queue and seen < 64:
        folder, depth = queue.pop(0)
        seen += 1
        try:  # scandir: the entry types come with the listing (no stat per image file)
            with os.scandir(folder) as it:
                entries = sorted((e.name, e.is_dir(), e.is_file()) for e in it if not e.name.startswith("."))
        except OSError:
            continue
        first = next((name for name, _, is_file in entries if is_file and name.lower().endswith(".json")
                      and not (depth == 0 and name in _SIDE_FILES)), None)
        if first is not None:
            return _looks_like_labelme(folder / first)
        if depth < 3:
            queue += [(folder / name, depth + 1) for name, is_dir, _ in entries if is_dir]
    return False


def _list_jsons(root: Path) -> list[str]:
    """Every ``*.json`` below ``root`` (hidden folders skipped), as sorted posix paths relative to it."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        out.extend(prefix + f for f in files if f.lower().endswith(".json") and not f.startswith(".")
                   and not (prefix == "" and f in _SIDE_FILES))
    return sorted(out)


# --------------------------------------------------------------------------- values

def _number(v: Any, where: str, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidAnnotationError(where, f"{what} must be a number, found {v!r}"[:300])
    f = float(v)
    if not (math.isfinite(f) and -MAX_SIDE <= f <= MAX_SIDE):
        raise InvalidAnnotationError(where, f"{what} must be a finite pixel coordinate within +-{MAX_SIDE}, "
                                            f"found {v!r} (fix: correct the point)"[:300])
    return f


def _points(shape: Mapping[str, Any], kind: str, where: str) -> list[list[float]]:
    """The shape's ``points`` as ``[[x, y], ...]`` floats, checked against the shape type."""
    pts = shape.get("points")
    if not isinstance(pts, list) or (pts and (set(map(type, pts)) != {list} or set(map(len, pts)) != {2})):
        raise InvalidAnnotationError(where, f"points must be a list of [x, y] pairs, found {pts!r}"[:300])
    lo, hi = SHAPE_TYPES[kind]
    if not lo <= len(pts) <= hi:
        need = f"{lo}" if lo == hi else f"at least {lo}"
        raise InvalidAnnotationError(where, f"a {kind} needs {need} points, found {len(pts)} (fix: redraw the "
                                            "shape, or delete it)")
    # the common case in C (type sets, one array); anything odd goes value by value for its message
    flat = [v for p in pts for v in p]
    if set(map(type, flat)) <= {int, float}:
        try:
            a = np.array(flat, np.float64)
        except OverflowError:  # an int beyond float64
            a = None
        # NaN propagates through max and fails <=, as does inf
        if a is not None and (a.size == 0 or float(np.abs(a).max()) <= MAX_SIDE):
            return a.reshape(-1, 2).tolist()
    return [[_number(p[0], where, "x"), _number(p[1], where, "y")] for p in pts]


def _group_id(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not INT64_MIN <= v <= INT64_MAX:
        raise InvalidAnnotationError(where, f"group_id must be an integer or null, found {v!r}"[:300])
    return v


def _b64(text: Any, where: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidAnnotationError(where, f"{what} must be base64 text, found {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidAnnotationError(where, f"{what} is not valid base64 ({err}); expected the base64 of a "
                                            "file (fix: re-save the JSON with labelme)") from None


def _png_mask(text: Any, where: str, w: int, h: int) -> np.ndarray:
    """A ``mask`` shape's base64 PNG as a bool ``(h, w)`` array (nonzero = inside)."""
    from PIL import Image

    data = _b64(text, where, "mask")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (w, h):
                raise InvalidAnnotationError(where, f"mask PNG is {im.size[0]}x{im.size[1]} but its points span "
                                                    f"{w}x{h} pixels (int(x2) - int(x1) + 1 by ...); expected the "
                                                    "same size (fix: redraw the mask)")
            arr = np.asarray(im.convert("L")) if im.mode not in ("1", "L", "P", "I") else np.asarray(im)
    except FormatError:
        raise
    except Exception as err:
        raise InvalidAnnotationError(where, f"mask is not a readable PNG ({type(err).__name__}: {err})"[:300]) \
            from None
    return arr.astype(bool) if arr.ndim == 2 else arr.any(axis=-1)


def _extent(pts: Sequence[Sequence[float]] | np.ndarray) -> list[float]:
    if isinstance(pts, list) and pts:  # [[x, y], ...] floats from _points: faster than an array
        xs, ys = zip(*pts)
        return [min(xs), min(ys), max(xs), max(ys)]
    a = np.asarray(pts, np.float64).reshape(-1, 2)
    return [*a.min(0).tolist(), *a.max(0).tolist()]


# --------------------------------------------------------------------------- one file

def _image_size(doc: Mapping[str, Any], where: str, root: Path, rel: str, data: bytes | None) -> tuple[int, int]:
    """``(width, height)`` from imageWidth/imageHeight, checked against ``imageData`` when embedded;
    from the embedded data or the image file's header when the JSON has none."""
    from PIL import Image

    w, h = doc.get("imageWidth"), doc.get("imageHeight")
    w = None if w is None else check_side(w, where, "imageWidth")
    h = None if h is None else check_side(h, where, "imageHeight")
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
        except Exception as err:
            raise image_error(f"{where}: imageData", err, "embedded image") from None
        if (w, h) not in ((None, None), size):
            raise InvalidAnnotationError(where, f"imageWidth x imageHeight is {w}x{h} but imageData holds a "
                                                f"{size[0]}x{size[1]} image; expected the same (fix: correct "
                                                "the size, or re-save the JSON with labelme, which takes the "
                                                "image's)")
        return size
    if w is not None and h is not None:
        return w, h
    img = root / rel
    if img.is_file():
        return _io.image_size(img)
    raise InvalidAnnotationError(where, f"no imageWidth/imageHeight, no imageData and no image {rel} to read the "
                                        "size from; expected the size or the image (fix: add the two keys)")


def _shape(raw: Any, k: int, where: str) -> tuple[str, str, list[list[float]], int | None, dict]:
    """``(label, shape_type, points, group_id, meta)`` of one shape; meta is the shape less its
    label and points (flags, description, unknown keys...), with ``order`` = its index."""
    at = f"{where}: shape {k}"
    if not isinstance(raw, dict):
        raise InvalidAnnotationError(at, f"expected a JSON object, found {type(raw).__name__}")
    label = raw.get("label")
    if not isinstance(label, str) or not label:
        raise InvalidAnnotationError(at, f"label must be a non-empty string, found {label!r}"[:300])
    kind = raw.get("shape_type")
    kind = "polygon" if kind is None else kind  # labelme 3.x wrote no shape_type: polygons only
    if not isinstance(kind, str) or kind not in SHAPE_TYPES:  # a list is unhashable: a TypeError, not this
        raise InvalidAnnotationError(at, f"unknown shape_type {kind!r}; expected one of "
                                         f"{', '.join(SHAPE_TYPES)}"[:300])
    pts = _points(raw, kind, at)
    gid = _group_id(raw.get("group_id"), at)
    for key, typ in (("flags", dict), ("description", str)):
        if raw.get(key) is not None and not isinstance(raw[key], typ):
            raise InvalidAnnotationError(at, f"{key} must be a {'JSON object' if typ is dict else 'string'} or "
                                             f"null, found {raw[key]!r}"[:300])
    meta = {key: v for key, v in raw.items() if key not in ("label", "points")}
    meta["order"] = k
    return label, kind, pts, gid, meta


def _parse_file(rel_json: str, root: Path, circles: str, allow_outside_root: bool) -> dict[str, Any]:
    """One JSON -> the pieces of its record (see :func:`_records_from`)."""
    where = rel_json
    check_utf8_name(rel_json, where)
    doc = _io.read_json_object(root / rel_json)
    shapes = doc.get("shapes")
    ipath = doc.get("imagePath")
    if not isinstance(shapes, list) or not isinstance(ipath, str):
        raise MalformedFileError(where, "not a LabelMe file: expected \"shapes\" (a list) and \"imagePath\" (a "
                                        f"string), found {type(shapes).__name__} and {type(ipath).__name__} (fix: "
                                        "move JSONs that are not LabelMe out of the folder)")
    folder = posixpath.dirname(rel_json)
    ipath = ipath.replace("\\", "/")  # labelme reads Windows paths as posix (PureWindowsPath)
    # Relative to the JSON, confined to the root (not to the JSON's folder: "../images/a.jpg" from
    # annotations/a.json is the usual split layout); an absolute path is judged as it is.
    joined = ipath if ntpath.isabs(ipath) or not folder else f"{folder}/{ipath}"
    rel = confine(root, joined, where=where, what="imagePath", allow_outside=allow_outside_root)
    data = doc.get("imageData")
    data = None if data is None else _b64(data, where, "imageData")
    width, height = _image_size(doc, where, root, rel, data)
    if doc.get("flags") is not None and not isinstance(doc["flags"], dict):
        raise InvalidAnnotationError(where, f"flags must be a JSON object or null, found {doc['flags']!r}"[:300])
    parsed = [_shape(s, k, where) for k, s in enumerate(shapes)]
    objects, loose, approximated = _instances(parsed, where, width, height, circles)
    extra: dict[str, Any] = {}
    for key in ("version", "flags"):
        if doc.get(key):
            extra[key] = doc[key]
    other = {k: v for k, v in doc.items() if k not in _TOP_KEYS}
    if other:
        extra["other"] = other
    if loose:
        extra["shapes"] = loose
    if data is not None and (rel == rel_json or not (root / rel).is_file()):
        # the only copy of the image (labelme's tutorial names the JSON itself): write() embeds it again
        extra["image_data_in"] = rel_json
    return {"json": rel_json, "rel": rel, "w": width, "h": height, "objects": objects,
            "extra": {"labelme": extra} if extra else {}, "circles": approximated}


def _instances(parsed: list, where: str, w: int, h: int, circles: str) -> tuple[list, list, int]:
    """Join shapes into instances by ``(label, group_id)``; ``(objects, loose shapes, circles
    approximated)``. An object is ``(label, box, segmentation, meta list)``."""
    groups: dict[Any, list] = {}
    for k, item in enumerate(parsed):
        label, _, _, gid, _ = item
        groups.setdefault((label, gid) if gid is not None else ("", k), []).append(item)
    objects, loose, approximated = [], [], 0
    for members in groups.values():
        area = [m for m in members if m[1] in _AREA]
        if not area:  # lines and points alone: no object, kept with the record
            loose.extend({"label": m[0], "points": m[2], **m[4]} for m in members)
            continue
        box, segm, n = _geometry(area, where, w, h, circles)
        approximated += n
        metas = []
        for label, kind, pts, _, meta in members:
            meta = dict(meta)
            if kind != "polygon" or not isinstance(segm, list):
                meta["points"] = pts  # a polygon of a polygon-list segmentation is its ring
            metas.append(meta)
        objects.append((members[0][0], box, segm, {"labelme": {"shapes": metas, "box": box}}))
    return objects, loose, approximated


def _geometry(area: list, where: str, w: int, h: int, circles: str) -> tuple[list[float], Any, int]:
    """``(box, segmentation, circles approximated)`` of one instance's area shapes."""
    boxes, rings, masks, approximated = [], [], [], 0
    has_region = False
    for label, kind, pts, _, meta in area:
        at = f"{where}: shape {meta['order']}"
        if kind == "polygon":
            boxes.append(_extent(pts))
            rings.append([v for p in pts for v in p])
            has_region = True
        elif kind == "rectangle":
            b = _extent(pts)
            boxes.append(b)
            rings.append([b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]])
        elif kind == "circle":
            (cx, cy), (px, py) = pts
            r = math.hypot(px - cx, py - cy)
            boxes.append([cx - r, cy - r, cx + r, cy + r])
            rings.append(ellipse_polygon(cx, cy, r, r))
            approximated += 1
            has_region = has_region or circles == "polygon"
        else:  # mask: the PNG covers int(x1)..int(x2), int(y1)..int(y2) inclusive (labelme's shape_to_mask)
            (x1, y1), (x2, y2) = [[int(v) for v in p] for p in pts]
            sub = _png_mask(meta.get("mask"), at, x2 - x1 + 1, y2 - y1 + 1)
            masks.append((x1, y1, sub))
            ys, xs = np.nonzero(sub)
            boxes.append([float(x1 + xs.min()), float(y1 + ys.min()), float(x1 + xs.max() + 1),
                          float(y1 + ys.max() + 1)] if len(xs) else [float(x1), float(y1), float(x1), float(y1)])
            has_region = True
    if len(boxes) == 1:
        box = [float(v) for v in boxes[0]]
    else:
        box = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        box = [float(v) for v in box]
    if not has_region:
        return box, None, 0
    if not masks:
        return box, rings, approximated
    return box, _union_rle(rings, masks, where, w, h), approximated


def _union_rle(rings: list, masks: list, where: str, w: int, h: int) -> dict:
    """One RLE of an instance that has mask shapes: the masks and its other shapes' rings, unioned."""
    from .._checks import check_canvas
    from ..masks import encode_mask, segmentation_mask

    if not (w and h):
        raise InvalidAnnotationError(where, "a mask shape on an image of unknown size; expected imageWidth and "
                                            "imageHeight")
    check_canvas(w, h, where, "mask canvas")
    full = np.zeros((h, w), bool)
    for x1, y1, sub in masks:
        ys, xs = slice(max(y1, 0), min(y1 + sub.shape[0], h)), slice(max(x1, 0), min(x1 + sub.shape[1], w))
        full[ys, xs] |= sub[ys.start - y1:ys.stop - y1, xs.start - x1:xs.stop - x1]
    for ring in rings:
        m = segmentation_mask([ring], h, w, where=where)
        if m is not None:
            full |= m.astype(bool)
    return encode_mask(full)


def _parse_chunk(items: Sequence[str], *, root: str, mode: str, circles: str, allow_outside_root: bool) -> dict:
    policy = ErrorPolicy(mode)
    out = []
    with _io.gc_paused():
        for rel_json in items:
            try:
                out.append(_parse_file(rel_json, Path(root), circles, allow_outside_root))
            except FormatError as err:
                policy.handle(err)
    return {"files": out, "policy": policy}


# --------------------------------------------------------------------------- parse

def _read_labels(root: Path) -> list[str] | None:
    path = root / _LABELS
    if not path.is_file():
        return None
    names = [line.strip() for line in read_utf8(path, _LABELS).splitlines()]
    return list(dict.fromkeys(n for n in names if n))


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: Any = "raise", workers: int | None = None,
          progress: bool | None = None, circles: str = "polygon", allow_outside_root: bool = False,
          **options: Any) -> Dataset:
    """Read a folder of LabelMe JSONs into records (one record per JSON).

    Args:
        path: the folder (JSONs at any depth; ``imagePath`` is relative to each JSON) or one JSON.
        split: read only the JSONs under the first-level folder of this name (``train``,
            ``val``, ``valid``, ``test``: the record's ``split``).
        on_error: ``"raise"`` (first bad file) or ``"warn"`` (skip bad files, counted in
            ``info["skipped"]``).
        workers: processes (default all cores; the result equals ``workers=1``).
        progress: show a bar (default: when stderr is a terminal).
        circles: ``"polygon"`` (a circle is its box plus a 32-gon of the same area) or ``"box"``.
        allow_outside_root: accept an ``imagePath`` that leaves ``path`` (``../../x.jpg``, an
            absolute path); by default it is a :class:`~dsprep.errors.PathEscapeError`.

    Returns:
        A :class:`~dsprep.records.Dataset` (``format="labelme"``): categories are the labels in
        ``labels.txt`` order when ``path/labels.txt`` exists, then in order of first appearance
        (ids 1..N); records in sorted JSON order.

    Raises:
        DatasetNotFoundError: no JSON under ``path``.
        FormatError: bad input (the JSON and shape index are named), in ``"raise"`` mode.

    Example:
        >>> ds = parse("data_annotated")  # doctest: +SKIP
        >>> ds[0].instances.boxes[0]  # doctest: +SKIP
        array([191.81, 107.34, 313.81, 329.34])
    """
    if options:
        log.debug("labelme.parse ignores options %s", sorted(options))
    check_choice("circles mode", circles, ("polygon", "box"))
    policy = ErrorPolicy(on_error)
    path = Path(path)
    root, jsons = (path.parent, [path.name]) if path.is_file() else (path, _list_jsons(path) if path.is_dir() else [])
    if split is not None:
        listed = sorted({j.split("/", 1)[0] for j in jsons if "/" in j and j.split("/", 1)[0] in _SPLITS})
        if not listed:
            raise UnknownNameError(f"Unknown split {split!r}: {path} has no split folders ({', '.join(_SPLITS)}); "
                                   "every JSON is read when split is None")
        check_choice("split", split, listed)
        jsons = [j for j in jsons if j.startswith(split + "/")]
    if not jsons:
        raise DatasetNotFoundError(f"{path}: no LabelMe JSON found; expected <name>.json files (one per image) "
                                   "in this folder or below it")
    fn = functools.partial(_parse_chunk, root=str(root), mode=policy.mode, circles=circles,
                           allow_outside_root=allow_outside_root)
    chunks = _io.parallel_map(fn, jsons, workers=workers, chunk=max(32, min(256, len(jsons) // 8 + 1)),
                              desc="LabelMe JSON", show_progress=progress)
    files = []
    for c in chunks:
        policy.merge(c["policy"])
        files.extend(c["files"])
    labels = _read_labels(root)
    categories, records, circles_n = _records_from(files, labels, policy)
    info: dict[str, Any] = {"skipped": policy.count, "labelme_circles_approximated": circles_n}
    if labels is not None:
        info["labelme_labels_txt"] = True
    if circles_n:
        log.info("labelme: %d circles read as 32-gons of the same area (circles='box' keeps only their box)",
                 circles_n)
    policy.summary("LabelMe files")
    return Dataset(categories, records, info=info, root=root, format=NAME)


def _records_from(files: list[dict], labels: list[str] | None, policy: ErrorPolicy) -> tuple[list, list, int]:
    known = {n: i + 1 for i, n in enumerate(labels or ())}
    records = []
    circles = 0
    for f in files:
        labs = []
        for name, *_ in f["objects"]:
            if name not in known:
                known[name] = len(known) + 1
                if labels is not None:
                    policy.note("class_not_in_labels", f["json"], f"label {name!r} is not in {_LABELS}; read as "
                                f"category {known[name]}, after its classes (fix: add it to {_LABELS})")
            labs.append(known[name])
        objs = f["objects"]
        inst = Instances(boxes=np.array([o[1] for o in objs], np.float64).reshape(-1, 4), labels=labs,
                         segmentation=[o[2] for o in objs] if any(o[2] is not None for o in objs) else None,
                         extra=[o[3] for o in objs] if objs else None)
        first = f["rel"].split("/", 1)[0]
        records.append(Record(record_id_from_path(f["rel"]), f["rel"], f["w"], f["h"],
                              split=first if first in _SPLITS and "/" in f["rel"] else None,
                              instances=inst, extra=f["extra"]))
        circles += f["circles"]
    make_ids_distinct(records)
    return [Category(i, n) for n, i in known.items()], records, circles


# --------------------------------------------------------------------------- write

def _rect(box: Sequence[float]) -> list[list[float]]:
    return [[float(box[0]), float(box[1])], [float(box[2]), float(box[3])]]


def _same_box(stored: Any, box: np.ndarray) -> bool:
    """``box`` is the box parse() gave, up to float rounding (a COCO reader's ``x + w`` rounded to
    its shortest decimal differs in the last bit): an edit or a transform moves it by far more."""
    return (isinstance(stored, list) and len(stored) == 4 and all(isinstance(v, (int, float)) for v in stored)
            and np.allclose(stored, box, rtol=1e-12, atol=0.0))


def _stored_shapes(box: np.ndarray, segm: Any, ex: Mapping[str, Any] | None) -> list[dict] | None:
    """The shapes parse() read for this object, if its box is still the one they gave (the record
    was not edited); polygons take their points from the segmentation's rings, in order."""
    lm = (ex or {}).get("labelme")
    if not isinstance(lm, dict) or not isinstance(lm.get("shapes"), list) or not _same_box(lm.get("box"), box):
        return None
    out, ring = [], 0
    rings = segm if isinstance(segm, list) else None
    for meta in lm["shapes"]:
        if not isinstance(meta, dict):
            return None
        shape = dict(meta)
        if "points" not in shape:
            if rings is None or ring >= len(rings):
                return None
            flat = np.asarray(rings[ring], np.float64).ravel()
            shape["points"] = flat.reshape(-1, 2).tolist()
        if shape.get("shape_type", "polygon") in ("polygon", "rectangle", "circle"):
            ring += 1  # each has a ring in a polygon-list segmentation (see _geometry)
        out.append(shape)
    return out


def _mask_shape(segm: Any, h: int, w: int, where: str) -> dict | None:
    """A ``mask`` shape (points = the pixels' inclusive box, mask = that crop as a PNG) of an RLE."""
    from PIL import Image

    from ..masks import segmentation_mask

    m = segmentation_mask(segm, h, w, where=where, on_size_mismatch="raise")
    if m is None or not m.any():
        return None
    ys, xs = np.nonzero(m)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    buf = io.BytesIO()
    Image.fromarray((m[y1:y2 + 1, x1:x2 + 1] > 0).astype(np.uint8)).save(buf, format="PNG")
    return {"points": [[float(x1), float(y1)], [float(x2), float(y2)]], "shape_type": "mask",
            "mask": base64.b64encode(buf.getvalue()).decode("ascii")}


def _shapes_of(rec: Record, names: Mapping[int, str], lost: dict[str, int]) -> list[dict]:
    """Every shape of one record, in the order parse() read them (new objects after)."""
    inst = rec.instances
    placed: list[tuple[float, int, dict]] = []
    next_gid = _first_free_gid(rec)
    for k in range(len(inst)):
        label = names.get(int(inst.labels[k]), str(int(inst.labels[k])))
        segm = decode_segmentation(inst.segmentation[k]) if inst.segmentation is not None else None
        ex = inst.extra[k] if inst.extra is not None else None
        shapes = _stored_shapes(inst.boxes[k], segm, ex)
        stored = shapes is not None
        if shapes is None:
            shapes = _new_shapes(inst.boxes[k], segm, rec, k, lost)
            if len(shapes) > 1:
                for s in shapes:
                    s["group_id"] = next_gid
                next_gid += 1
            if _first_order(ex) is not None:  # an edited LabelMe object keeps its place in the file
                shapes[0]["order"] = _first_order(ex)
        for s in shapes:
            order = s.pop("order", None)
            placed.append((order if isinstance(order, int) else math.inf, len(placed),
                           _labelme_shape(label, s, stored)))
    for s in ((rec.extra or {}).get("labelme") or {}).get("shapes") or ():
        s = dict(s)
        order = s.pop("order", None)
        placed.append((order if isinstance(order, int) else math.inf, len(placed),
                       _labelme_shape(s.pop("label", ""), s, True)))
    return [s for _, _, s in sorted(placed, key=lambda t: (t[0], t[1]))]


def _first_order(ex: Mapping[str, Any] | None) -> int | None:
    shapes = ((ex or {}).get("labelme") or {}).get("shapes") if isinstance((ex or {}).get("labelme"), dict) else None
    order = shapes[0].get("order") if isinstance(shapes, list) and shapes and isinstance(shapes[0], dict) else None
    return order if isinstance(order, int) and not isinstance(order, bool) else None


def _first_free_gid(rec: Record) -> int:
    used = [s.get("group_id") for e in (rec.instances.extra or ()) if e
            for s in ((e.get("labelme") or {}).get("shapes") or ()) if isinstance(s, dict)]
    return max([g for g in used if isinstance(g, int) and not isinstance(g, bool)], default=0) + 1


def _labelme_shape(label: str, s: Mapping[str, Any], stored: bool) -> dict:
    """A shape as labelme saves it: label and points first, then the keys it had (a shape that
    did not come from LabelMe gets labelme 5's: group_id, description, shape_type, flags, mask)."""
    if stored:  # read by parse(): its own keys, nothing added
        rest = {k: v for k, v in s.items() if k != "points"}
    else:
        rest = {"group_id": s.get("group_id"), "description": "", "shape_type": s["shape_type"], "flags": {},
                "mask": s.get("mask")}
    return {"label": label, "points": s.get("points", []), **rest}


def _new_shapes(box: np.ndarray, segm: Any, rec: Record, k: int, lost: dict[str, int]) -> list[dict]:
    """Shapes of an object that did not come from LabelMe: polygons, a mask, or its box. A box that
    parse() would not give back (it derives boxes from the points) is counted lost."""
    shapes = None
    if isinstance(segm, list):
        rings = [np.asarray(r, np.float64).ravel() for r in segm]
        ok = [r for r in rings if len(r) >= 6 and len(r) % 2 == 0]
        _add(lost, "mask polygons of fewer than 3 points (LabelMe polygons need 3)", len(rings) - len(ok))
        if ok:
            shapes = [{"points": r.reshape(-1, 2).tolist(), "shape_type": "polygon"} for r in ok]
            derived = _extent(np.concatenate(ok))
    elif isinstance(segm, dict):
        shape = _mask_shape(segm, int(rec.height), int(rec.width), f"{rec.path}: object {k}")
        if shape is not None:
            shapes = [shape]
            (x1, y1), (x2, y2) = shape["points"]
            derived = [x1, y1, x2 + 1, y2 + 1]  # the mask's pixels, as parse() reads them
        else:
            _add(lost, "empty masks (objects; written as their box)", 1)
    if shapes is None:
        return [{"points": _rect(box), "shape_type": "rectangle"}]
    _add(lost, "boxes of objects with a mask (LabelMe derives them from the shape; these differed)",
         int(derived != box.tolist()))
    return shapes


def _add(lost: dict[str, int], what: str, n: int) -> None:
    if n:
        lost[what] = lost.get(what, 0) + n


def _count_lost(rec: Record, lost: dict[str, int]) -> None:
    inst = rec.instances
    _add(lost, "crowd flags (objects; LabelMe has no crowd)", int(inst.iscrowd.sum()))
    _add(lost, "difficult flags (objects)", int(inst.difficult.sum()))
    _add(lost, "annotation ids", int((inst.ids >= 0).sum()))
    _add(lost, "stored areas", int(np.isfinite(inst.area).sum()))
    if inst.keypoints is not None:
        _add(lost, "keypoints (objects)", int((inst.keypoints[..., 2] > 0).any(axis=1).sum()))
    other = sorted({key for e in (inst.extra or ()) if e for key in e if key != "labelme"})
    if other:
        _add(lost, "object fields (" + ", ".join(other) + ")", sum(1 for e in inst.extra if e and set(e) - {"labelme"}))
    _add(lost, "captions", len(rec.captions))
    _add(lost, "image-level labels", int(rec.label is not None))
    _add(lost, "source image ids", int(rec.source_id is not None))
    _add(lost, "mask PNGs (semantic/instance)", int(bool(rec.mask_path or rec.instance_mask_path)))
    other = sorted(k for k in (rec.extra or {}) if k != "labelme")
    if other:
        _add(lost, "image fields (" + ", ".join(other) + ")", 1)


def _json_names(records: Sequence[Record], layout: str) -> list[tuple[str, str]]:
    """``(image path, JSON path)`` in OUT per record: the image keeps its (safe) path; the JSON sits
    beside it (``beside``) or mirrors it under ``annotations/`` (``folder``, images under ``images/``)."""
    out, taken = [], set()
    for r in records:
        # each folder and file name cut to what a file system holds, 255 bytes, with room for the
        # JSON's "#n.json" (a 400-character name from a COCO file_name with images="none":
        # fit_name keeps it distinct)
        img = "/".join(fit_name(part, 245) for part in safe_relpath(r.path).split("/"))
        if layout == "folder":
            img = f"images/{img}"
        stem = posixpath.splitext(img)[0]
        name = f"annotations/{stem[len('images/'):]}" if layout == "folder" else stem
        cand, n = f"{name}.json", 1
        while cand in taken:
            n += 1
            cand = f"{name}#{n}.json"
        taken.add(cand)
        out.append((img, cand))
    return out


def _lost_splits(dataset: Dataset, lost: dict[str, int]) -> None:
    """LabelMe has no split lists: a record keeps its split only as its first folder (``train/``...)."""
    member: dict[str, int] = {}
    for ids in dataset.splits.values():
        for i in ids:
            member[i] = member.get(i, 0) + 1
    n = sum(1 for r in dataset.records if r.split and (r.path.split("/", 1)[0] != r.split or r.split not in _SPLITS
                                                        or "/" not in r.path))
    n += sum(1 for v in member.values() if v > 1)
    _add(lost, "splits (LabelMe keeps a split only as a first folder train/, val/, valid/ or test/)", n)


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          on_error: str = "raise", layout: str = "beside", image_data: bool = False,
          **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as LabelMe JSONs (one per record) into the existing directory ``dest``.

    Objects parsed from LabelMe get their shapes back as they were read (unless their box was
    changed); others become one ``polygon`` per ring, a ``mask`` shape for an RLE, or a
    ``rectangle``. A ``labels.txt`` lists the categories in order, so that :func:`parse` gives
    them back their order and ids 1..N.

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: ``link``, ``copy`` or ``none`` (place no image).
        on_error: ``"raise"`` on a missing image file, or ``"warn"`` (counted in the report).
        layout: ``"beside"`` (``<path>.json`` beside each image) or ``"folder"``
            (``images/<path>`` and ``annotations/<path>.json``, ``imagePath`` ``../images/...``).
        image_data: embed each image file, base64, as ``imageData`` (labelme's default when
            saving; off here: it triples the size). An image that exists only embedded in its
            source JSON is always embedded again.

    Returns:
        ``{"images", "objects", "lost": {what: n}, "missing_images"}``.

    Raises:
        MissingFileError: an image to place or embed does not exist (``on_error="raise"``).
    """
    if options:
        log.debug("labelme.write ignores options %s", sorted(options))
    _io.check_images_mode(images)
    check_choice("layout", layout, ("beside", "folder"))
    policy = ErrorPolicy(on_error)
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    names = {c.id: c.name for c in dataset.categories}
    lost: dict[str, int] = {}
    records = dataset.records
    missing = n_obj = 0
    places = _json_names(records, layout)
    _add(lost, "image file names (longer than a file system holds: shortened)",
         sum(img.rpartition("/")[2] != safe_relpath(r.path).rpartition("/")[2] for r, (img, _) in zip(records, places)))
    for rec, (img_rel, json_rel) in _io.progress(list(zip(records, places)), total=len(records), desc="LabelMe write",
                                                 enabled=progress):
        src = src_root / rec.path
        if images != "none" and not _embedded_in(rec) and not _io.place_record_image(
                src, dest, img_rel, images, rec.id, "annotations", policy):
            missing += 1
        doc = _document(rec, names, lost, posixpath.relpath(img_rel, posixpath.dirname(json_rel) or "."),
                        _image_data(rec, src, src_root, image_data, policy, lost))
        output_path(dest, json_rel, what="annotation").write_bytes(_io.json_bytes(doc, json_rel))
        n_obj += len(rec.instances)
        _count_lost(rec, lost)
    _write_labels(dest, dataset.categories, lost)
    _lost_splits(dataset, lost)
    policy.summary("images")
    return {"images": len(records), "objects": n_obj, "lost": lost, "missing_images": missing}


def _embedded_in(rec: Record) -> str | None:
    return ((rec.extra or {}).get("labelme") or {}).get("image_data_in")


def _image_data(rec: Record, src: Path, src_root: Path, wanted: bool, policy: ErrorPolicy,
                lost: dict[str, int]) -> str | None:
    """The base64 ``imageData`` to write: the image file's when asked; the source JSON's when the
    image exists only there."""
    source_json = _embedded_in(rec)
    if source_json:
        try:
            data = _io.read_json_object(src_root / source_json).get("imageData")
        except FormatError:
            data = None
        if not isinstance(data, str):
            _add(lost, "embedded images (imageData: its source JSON is gone)", 1)
        return data if isinstance(data, str) else None
    if not wanted:
        return None
    try:
        return base64.b64encode(src.read_bytes()).decode("ascii")
    except OSError:
        try:
            raise MissingFileError(str(src), f"image of record {rec.id!r} not found; cannot embed it as imageData "
                                             "(write without image_data, or give the image)")
        except FormatError as err:
            policy.handle(err)
        return None


def _document(rec: Record, names: Mapping[int, str], lost: dict[str, int], image_path: str,
              data: str | None) -> dict:
    lm = (rec.extra or {}).get("labelme") or {}
    doc = {"version": lm.get("version") or _VERSION, "flags": lm.get("flags") or {},
           "shapes": _shapes_of(rec, names, lost), "imagePath": image_path, "imageData": data,
           "imageHeight": int(rec.height) or None, "imageWidth": int(rec.width) or None}
    for k, v in (lm.get("other") or {}).items():
        doc.setdefault(k, v)
    return doc


def _write_labels(dest: Path, categories: Sequence[Category], lost: dict[str, int]) -> None:
    """``labels.txt``: one category name a line, in order (parse() numbers them 1..N)."""
    bad = [c.name for c in categories if not c.name.strip() or "\n" in c.name or "\r" in c.name
           or c.name != c.name.strip()]
    if bad:
        raise InvalidAnnotationError(_LABELS, f"category name {bad[0]!r} cannot be one line of {_LABELS} "
                                              "(empty, padded with spaces, or holding a line break); expected "
                                              "a name (fix: rename the category)")
    output_path(dest, _LABELS, what="class list").write_text("".join(f"{c.name}\n" for c in categories),
                                                             encoding="utf-8")
    _add(lost, "category ids (LabelMe stores names; re-read ids are 1..N in labels.txt order)",
         sum(1 for i, c in enumerate(categories) if c.id != i + 1))
    _add(lost, "category supercategories (LabelMe stores names only)", sum(1 for c in categories if c.supercategory))
