"""KITTI object detection: ``label_2/*.txt`` rows, ``image_2/`` and ``ImageSets`` split lists.

The tree (``root``; a ``training/`` or ``testing/`` folder alone is accepted too; see
``docs/formats/kitti.md``)::

    root/
      training/label_2/<id>.txt   one row per object (15 columns; 16 with a score)
      training/image_2/<id>.png   the left colour camera image
      training/calib/<id>.txt     camera calibration (carried over, not read)
      testing/image_2/<id>.png    images without labels
      ImageSets/<split>.txt       ids of a split (train.txt, val.txt: the lists people use)

A row is ``type truncated occluded alpha left top right bottom h w l x y z rotation_y [score]``
(devkit ``readme.txt``). Conventions:

- The 2D box ``left top right bottom`` is read as it is: the devkit's evaluation
  (``evaluate_object.cpp``, ``boxoverlap``) takes width ``right - left`` and
  area ``(right - left) * (bottom - top)``, with no ``+1``, which is the record
  model's continuous 0-based ``xyxy``. No shift either way.
- ``DontCare`` rows are crowd-like ignore regions: ``iscrowd`` set, category
  ``DontCare``.
- Everything else of a row lives in the object's ``Instances.extra["kitti"]`` dict
  (``truncated``, ``occluded``, ``alpha``, ``dimensions`` [h, w, l],
  ``location`` [x, y, z], ``rotation_y``, ``score``), with the row's own decimal
  text where writing the number back would not give it (``-1`` rather than
  ``-1.00``), so KITTI -> KITTI gives back every row byte for byte.
- Categories: KITTI's eight classes and ``DontCare`` keep ids 1..9 in the
  devkit's order; other types are appended in order of first appearance.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import posixpath
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._checks import MAX_SIDE, check_utf8_name, fit_name, read_utf8
from .._paths import confine, output_path, safe_relpath
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError, MissingFileError,
                      check_choice)
from ..records import Category, Dataset, Instances, Record

__all__ = ["NAME", "DESCRIPTION", "KITTI_CLASSES", "COLUMNS", "detect", "parse", "write"]

log = logging.getLogger(__name__)

NAME = "kitti"
DESCRIPTION = "KITTI object: training/label_2/*.txt rows (2D box + 3D fields), image_2/, ImageSets lists"

# What write keeps of any dataset, for the round-trip matrix (issue 12: the FIELDS vocabulary);
# the rest is given back anyway or counted in the report's lost: category ids and
# supercategories (KITTI stores type names), the class of a crowd object (a DontCare row),
# masks, keypoints, difficult flags, image labels, annotation and image ids.
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "crowd"})

#: The devkit's object types, in its readme's order; ``DontCare`` marks ignore regions.
KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
DONT_CARE = "DontCare"
#: The numeric columns after ``type``, in row order (``score`` only in result files).
COLUMNS = ("truncated", "occluded", "alpha", "left", "top", "right", "bottom", "height", "width", "length",
           "x", "y", "z", "rotation_y", "score")
_BOX = ("left", "top", "right", "bottom")
_PARTS = ("training", "testing")
_LABELS, _IMAGES, _CALIB, _SETS = "label_2", "image_2", "calib", "ImageSets"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_SPLIT_ORDER = ("train", "val", "trainval", "test")
_IMAGE_KEYS = ("kitti_calib", "kitti_no_label_file", "kitti_folder")  # Record.extra keys KITTI sets
# What KITTI writes for a value it does not have (its DontCare rows): written for objects of
# other formats, which have no 3D fields.
_UNKNOWN = {"truncated": -1.0, "occluded": -1, "alpha": -10.0, "height": -1.0, "width": -1.0, "length": -1.0,
            "x": -1000.0, "y": -1000.0, "z": -1000.0, "rotation_y": -10.0}


# ----------------------------------------------------------------------------- layout

def _parts(root: Path) -> list[str]:
    """The folders of ``root`` that hold KITTI data: ``training/``, ``testing/`` or root itself ("")."""
    found = [p for p in _PARTS if (root / p / _LABELS).is_dir() or (root / p / _IMAGES).is_dir()]
    if found:
        return found
    if (root / _LABELS).is_dir() or (root / _IMAGES).is_dir():
        return [""]
    return []


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds ``training/label_2`` (or ``image_2``), ``testing/image_2``, or is such a folder.

    Example:
        >>> detect("datasets/kitti/object")  # doctest: +SKIP
        True
    """
    path = Path(path)
    return path.is_dir() and bool(_parts(path))


def _listing(folder: Path, where: str) -> list[str]:
    """The file names of ``folder`` (sorted; none when it does not exist), each valid UTF-8."""
    if not folder.is_dir():
        return []
    return sorted(check_utf8_name(n, f"{where}/{n}") for n in os.listdir(folder) if not n.startswith("."))


def _read_lists(root: Path, policy: ErrorPolicy, allow_outside: bool) -> dict[str, list[str]]:
    """``ImageSets/<split>.txt`` -> ids (first token per line; blank lines skipped), train/val/trainval/test first.

    Each id is a file stem under ``image_2/``: one that climbs out (``../x``) is a PathEscapeError.
    """
    folder = root / _SETS
    lists: dict[str, list[str]] = {}
    for name in _listing(folder, _SETS):
        if not name.endswith(".txt") or not (folder / name).is_file():
            continue
        where = f"{_SETS}/{name}"
        ids = []
        for line in read_utf8(folder / name, where).splitlines():
            token = line.strip().split()[0] if line.strip() else ""
            if not token:
                continue
            try:
                confine(root, token, where=where, prefix=f"training/{_IMAGES}/", what="image id",
                        allow_outside=allow_outside)
            except FormatError as err:
                policy.handle(err)
                continue
            ids.append(posixpath.normpath(token) if ".." in token else token)  # a/../b: b
        lists[name[:-4]] = ids
    order = {n: i for i, n in enumerate(_SPLIT_ORDER)}
    return dict(sorted(lists.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


# ----------------------------------------------------------------------------- rows

def _number(token: str, column: str, where: str) -> float:
    try:
        v = float(token)
    except ValueError:
        raise InvalidAnnotationError(where, f"column {column!r} must be a number, found {token!r}"[:300]) from None
    if not math.isfinite(v):
        raise InvalidAnnotationError(where, f"column {column!r} must be a finite number, found {token!r}"[:300])
    if column in _BOX and abs(v) > MAX_SIDE:
        raise InvalidAnnotationError(where, f"column {column!r} must be a pixel coordinate within "
                                            f"+-{MAX_SIDE}, found {token!r}"[:300])
    return v


# A row whose every column is what the writer writes for its value (``%.2f`` decimals of at most 13
# integer digits, which float gives back exactly; occluded an integer): no text to keep.
_D2 = r"-?(?:0|[1-9]\d{0,12})\.\d\d"
_CANONICAL_ROW = re.compile(rf"{_D2} (?:-1|[0-3])(?: {_D2}){{12,13}}")


def _fmt(v: float) -> str:
    """KITTI's ``%.2f`` where that gives back ``v`` exactly, else the shortest repr that does."""
    s = f"{v:.2f}"
    return s if float(s) == v else repr(float(v))


def _parse_row(tokens: list[str], where: str) -> tuple[str, list[float], dict[str, Any]]:
    """``(type, box, kitti dict)`` of one row's tokens."""
    if len(tokens) not in (15, 16):
        raise InvalidAnnotationError(where, f"expected 15 columns (type, truncated, occluded, alpha, left, top, "
                                            f"right, bottom, h, w, l, x, y, z, rotation_y) or 16 (+ score); found "
                                            f"{len(tokens)}: {' '.join(tokens)[:120]!r}")
    kind = tokens[0]
    try:
        float(kind)
    except ValueError:
        pass
    else:
        raise InvalidAnnotationError(where, f"the first column is the object type (Car, Pedestrian, ...); found the "
                                            f"number {kind!r} (fix: the row lacks its type)")
    try:
        nums = [float(t) for t in tokens[1:]]
    except ValueError:
        nums = None
    if nums is None or not all(map(math.isfinite, nums)) or any(abs(v) > MAX_SIDE for v in nums[3:7]):
        values = {c: _number(t, c, where) for c, t in zip(COLUMNS, tokens[1:])}  # raises, naming the column
    else:
        values = dict(zip(COLUMNS, nums))
    occ = values["occluded"]
    if not occ.is_integer() or occ not in (-1, 0, 1, 2, 3):
        raise InvalidAnnotationError(where, f"column 'occluded' must be 0, 1, 2, 3 (3: unknown) or -1 (DontCare); "
                                            f"found {tokens[2]!r}")
    box = [values[c] for c in _BOX]
    if box[2] < box[0] or box[3] < box[1]:
        raise InvalidAnnotationError(where, f"box left top right bottom must have right >= left and bottom >= top; "
                                            f"found {' '.join(tokens[4:8])}")
    kitti: dict[str, Any] = {"truncated": values["truncated"], "occluded": int(occ), "alpha": values["alpha"],
                             "dimensions": [values["height"], values["width"], values["length"]],
                             "location": [values["x"], values["y"], values["z"]], "rotation_y": values["rotation_y"]}
    if "score" in values:
        kitti["score"] = values["score"]
    if not _CANONICAL_ROW.fullmatch(" ".join(tokens[1:])):  # (the common case skips the per-column check)
        text = {c: t for c, t in zip(COLUMNS, tokens[1:]) if t != _canonical(c, values[c])}
        if text:
            kitti["text"] = text
    return kind, box, kitti


def _canonical(column: str, v: float) -> str:
    return str(int(v)) if column == "occluded" else _fmt(v)


def _parse_label(path: Path, rel: str) -> tuple[list[str], list[list[float]], list[dict[str, Any]]]:
    """Types, boxes and kitti dicts of one label file (blank lines skipped)."""
    kinds, boxes, dicts = [], [], []
    for n, line in enumerate(read_utf8(path, rel).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        kind, box, kitti = _parse_row(tokens, f"{rel}:{n}")
        kinds.append(kind)
        boxes.append(box)
        dicts.append(kitti)
    return kinds, boxes, dicts


def _parse_chunk(items: Sequence[tuple[str, str | None, str | None]], *, root: str, mode: str) -> dict[str, Any]:
    """Worker: each ``(image rel, label rel, calib rel)`` -> its rows and image size."""
    policy = ErrorPolicy(mode)
    out: list[tuple | None] = []
    for img, label, _calib in items:
        try:
            kinds, boxes, dicts = _parse_label(Path(root, label), label) if label else ([], [], [])
            w = h = 0
            if os.path.isfile(os.path.join(root, img)):
                w, h = _io.image_size(os.path.join(root, img))
            out.append((kinds, boxes, dicts, w, h))
        except FormatError as err:
            policy.handle(err)
            out.append(None)
    return {"rows": out, "policy": policy}


# ----------------------------------------------------------------------------- parse

def _items(root: Path, part: str) -> list[tuple[str, str | None, str | None]]:
    """``(image rel, label rel, calib rel)`` per stem that has a label file or an image, sorted by stem."""
    base = f"{part}/" if part else ""
    labels = {n[:-4]: n for n in _listing(root / base / _LABELS, f"{base}{_LABELS}") if n.endswith(".txt")}
    images: dict[str, str] = {}
    for n in _listing(root / base / _IMAGES, f"{base}{_IMAGES}"):
        stem, ext = os.path.splitext(n)
        if ext in _IMAGE_EXTS:
            images.setdefault(stem, n)
    calib = {n[:-4] for n in _listing(root / base / _CALIB, f"{base}{_CALIB}") if n.endswith(".txt")}
    out = []
    for stem in sorted(set(labels) | set(images)):
        img = f"{base}{_IMAGES}/{images.get(stem, stem + '.png')}"
        out.append((img, f"{base}{_LABELS}/{labels[stem]}" if stem in labels else None,
                    f"{base}{_CALIB}/{stem}.txt" if stem in calib else None))
    return out


def _categories(found: Sequence[str]) -> tuple[list[Category], dict[str, int]]:
    names = list(KITTI_CLASSES) + [t for t in dict.fromkeys(found) if t not in KITTI_CLASSES]
    return [Category(i + 1, n) for i, n in enumerate(names)], {n: i + 1 for i, n in enumerate(names)}


def _record(item: tuple[str, str | None, str | None], row: tuple, part: str, known: Mapping[str, int],
            split: str | None) -> Record:
    img, label, calib = item
    kinds, boxes, dicts, w, h = row
    crowd = [k == DONT_CARE for k in kinds]
    inst = Instances(boxes=np.asarray(boxes, np.float64).reshape(-1, 4), labels=[known[k] for k in kinds],
                     iscrowd=crowd, extra=[{"kitti": d} for d in dicts] if dicts else None)
    extra: dict[str, Any] = {}
    if label is None:
        extra["kitti_no_label_file"] = True
    if calib is not None:
        extra["kitti_calib"] = calib
    if part == "testing":  # where the writer puts it back, through other formats too
        extra["kitti_folder"] = part
    # no source_id: KITTI's id is the file stem, already in the record's id and path
    return Record(img.rpartition(".")[0], img, w, h, split, instances=inst, extra=extra)


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise", workers: int | None = None,
          progress: bool | None = None, types: Sequence[str] | None = None, allow_outside_root: bool = False,
          **options: Any) -> Dataset:
    """Read a KITTI object tree into records.

    Args:
        path: the folder holding ``training/`` (and ``testing/``, ``ImageSets/``), or one
            such folder itself (holding ``label_2/``, ``image_2/``).
        split: read only this split: an ``ImageSets/<split>.txt`` list, else ``training``
            or ``testing``.
        on_error: ``"raise"`` at the first bad row, or ``"warn"``: skip the file, count it
            in ``info["skipped"]``.
        workers: processes reading label files and image headers (default: all cores).
        progress: show a progress bar (default: on a terminal).
        types: the object types the data may hold (default: any: KITTI's nine first,
            others appended); a row of another type is then an InvalidAnnotationError.
        allow_outside_root: accept an ``ImageSets`` id that leaves ``image_2/`` (no
            PathEscapeError); only files listed in ``label_2/`` and ``image_2/`` are read, so
            such an id is then a MissingFileError naming where it was looked for.

    Returns:
        A :class:`Dataset` (``format="kitti"``); image sizes come from the image
        headers (0 where the image is absent: KITTI labels hold no size).

    Raises:
        DatasetNotFoundError: no KITTI tree at ``path``.
        InvalidAnnotationError: a bad row (the file and line are named).
        MalformedFileError: a label file or list that is not UTF-8.
        MissingFileError: an ``ImageSets`` id with neither a label file nor an image.
        PathEscapeError: an ``ImageSets`` id that leaves ``image_2/``.
        UnknownNameError: an unknown ``split``.

    Example:
        >>> ds = parse("kitti/object", split="val")  # doctest: +SKIP
        >>> ds.records[0].instances.extra[0]["kitti"]["location"]  # doctest: +SKIP
        [1.84, 1.47, 8.41]
    """
    if options:
        log.debug("kitti.parse ignores options %s", sorted(options))
    policy = ErrorPolicy(on_error)
    root = Path(path)
    parts = _parts(root) if root.is_dir() else []
    if not parts:
        raise DatasetNotFoundError(f"{root}: not a KITTI object tree; expected {root}/training/label_2/*.txt "
                                   f"(or image_2/), {root}/testing/image_2/, or {root}/label_2/*.txt")
    lists = _read_lists(root, policy, allow_outside_root)
    with _io.gc_paused():
        items = {part: _items(root, part) for part in parts}
        names = list(lists) if lists else [p for p in parts if p]
        if split is not None:
            check_choice("split", split, names)
        rows = _read_rows(root, items, policy, workers, progress)
        found = [k for part in parts for row in rows[part] if row is not None for k in row[0]]
        if types is not None:
            _check_types(items, rows, types, policy)
            found = list(types)
        categories, known = _categories(found)
        records, splits = _build(root, parts, items, rows, lists, known, policy)
    if split is not None:
        keep = set(splits[split])
        records = [r for r in records if r.id in keep]
        splits = {split: splits[split]}
    info: dict[str, Any] = {"skipped": policy.count, "kitti_split_lists": list(lists),
                            # KITTI's nine types are categories whatever the files use (validate: not "unused")
                            "builtin_categories": list(range(1, len(KITTI_CLASSES) + 1))}
    policy.summary("KITTI label files")
    return Dataset(categories, records, splits=splits, info=info, root=root, format=NAME)


def _read_rows(root: Path, items: Mapping[str, list], policy: ErrorPolicy, workers: int | None,
               progress: bool | None) -> dict[str, list]:
    flat = [it for part in items.values() for it in part]
    fn = functools.partial(_parse_chunk, root=str(root), mode=policy.mode)
    results = _io.parallel_map(fn, flat, workers=workers, chunk=max(64, min(512, len(flat) // 8 + 1)),
                               desc="KITTI labels", show_progress=progress)
    rows: list = []
    for chunk in results:
        policy.merge(chunk["policy"])
        rows.extend(chunk["rows"])
    out, a = {}, 0
    for part, its in items.items():
        out[part], a = rows[a:a + len(its)], a + len(its)
    return out


def _check_types(items: Mapping[str, list], rows: Mapping[str, list], types: Sequence[str],
                 policy: ErrorPolicy) -> None:
    allowed = set(types)
    for part, its in items.items():
        for k, (item, row) in enumerate(zip(its, rows[part])):
            bad = [t for t in (row[0] if row else ()) if t not in allowed]
            if bad:
                try:
                    raise InvalidAnnotationError(item[1], f"object type {bad[0]!r} is not one of types= "
                                                          f"({', '.join(types)}); fix: add it to types, or drop types= "
                                                          "to read every type")
                except FormatError as err:
                    policy.handle(err)
                    rows[part][k] = None


def _list_folder(name: str, parts: Sequence[str]) -> str:
    """The folder whose images a split list names: ``test`` lists name ``testing/`` images (when
    there is one), the others ``training/`` (or the root, for a tree without those folders)."""
    if name == "test" and "testing" in parts:
        return "testing"
    return "training" if "training" in parts else ""


def _build(root: Path, parts: Sequence[str], items: Mapping[str, list], rows: Mapping[str, list],
           lists: Mapping[str, list[str]], known: Mapping[str, int], policy: ErrorPolicy
           ) -> tuple[list[Record], dict[str, list[str]]]:
    """Records of every part, and the splits: the ImageSets lists, else one split per folder."""
    split_of: dict[tuple[str, str], str] = {}
    for name, ids in lists.items():
        part = _list_folder(name, parts)
        for i in ids:
            split_of.setdefault((part, i), name)
    records: list[Record] = []
    by_key: dict[tuple[str, str], str | None] = {}
    for part in parts:
        for item, row in zip(items[part], rows[part]):
            stem = item[0].rpartition("/")[2].rpartition(".")[0]
            if row is None:  # a bad file skipped (and counted) under on_error="warn"
                by_key[(part, stem)] = None
                continue
            default = None if lists or not part else part
            rec = _record(item, row, part, known, split_of.get((part, stem), default))
            records.append(rec)
            by_key[(part, stem)] = rec.id
    if not lists:
        return records, {p: [r.id for r in records if r.split == p] for p in parts if p}
    splits: dict[str, list[str]] = {}
    for name, ids in lists.items():
        part = _list_folder(name, parts)
        out = []
        for i in ids:
            rid = by_key.get((part, i), "")
            if rid is None:
                continue
            if not rid:
                base = f"{part}/" if part else ""
                try:
                    raise MissingFileError(f"{_SETS}/{name}.txt", f"id {i!r} has neither {base}{_LABELS}/{i}.txt nor "
                                                                  f"an image {base}{_IMAGES}/{i}.png (fix: remove the "
                                                                  "line, or add the files)")
                except FormatError as err:
                    policy.handle(err)
                    continue
            out.append(rid)
        splits[name] = out
    return records, splits


# ----------------------------------------------------------------------------- write

def _row_values(kitti: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numeric columns (other than the box) from an object's ``extra["kitti"]``; KITTI's
    unknown-value markers where the object has none (an object of another format)."""
    values = dict(_UNKNOWN)
    if not isinstance(kitti, Mapping):
        return values
    for key in ("truncated", "occluded", "alpha", "rotation_y", "score"):
        if isinstance(kitti.get(key), (int, float)) and not isinstance(kitti.get(key), bool):
            values[key] = kitti[key]
    for key, cols in (("dimensions", ("height", "width", "length")), ("location", ("x", "y", "z"))):
        vec = kitti.get(key)
        if isinstance(vec, (list, tuple)) and len(vec) == 3:
            values.update(zip(cols, vec))
    return values


def _row(kind: str, box: Sequence[float], kitti: Mapping[str, Any] | None) -> str:
    """One label row; a column keeps the source's text when that text still reads as the value,
    and a value the object lacks is written as KITTI writes it in DontCare rows (``-1``, ``-10``)."""
    values = _row_values(kitti)
    values.update(zip(_BOX, box))
    text = kitti.get("text") if isinstance(kitti, Mapping) and isinstance(kitti.get("text"), Mapping) else {}
    out = [kind]
    for column in COLUMNS:
        if column not in values:
            continue
        v = values[column]
        t = text.get(column)
        if isinstance(t, str) and _reads_as(t, v):
            out.append(t)
        elif column == "occluded" or v is _UNKNOWN.get(column):
            out.append(str(int(v)))
        else:
            out.append(_fmt(float(v)))
    return " ".join(out)


def _reads_as(token: str, v: float) -> bool:
    try:
        return float(token) == float(v)
    except ValueError:
        return False


def _type_name(name: str, lost: dict[str, int]) -> str:
    """A category name as a KITTI type: one token (spaces become ``_``)."""
    kind = "_".join(name.split()) or "_"
    if kind != name:
        _count(lost, "class names with spaces (written with '_')")
    return kind


def _count(lost: dict[str, int], what: str, n: int = 1) -> None:
    if n:
        lost[what] = lost.get(what, 0) + n


def _label_text(rec: Record, names: Mapping[int, str], lost: dict[str, int]) -> str:
    inst = rec.instances
    oex = inst.extra or [None] * len(inst)
    rows = []
    for k, box in enumerate(inst.boxes.tolist()):
        name = names.get(int(inst.labels[k]))
        if name is None:
            raise InvalidAnnotationError(f"record {rec.id!r}: object {k}", f"label {int(inst.labels[k])} is not "
                                                                          "among the categories; expected a category id")
        o = oex[k] or {}
        if inst.iscrowd[k] and name != DONT_CARE:
            _count(lost, "crowd objects (written as DontCare regions: their class is lost)")
            name = DONT_CARE
        rows.append(_row(_type_name(name, lost), box, o.get("kitti")))
        other = sorted(key for key in o if key != "kitti")
        if other:
            _count(lost, "object fields (" + ", ".join(other) + ")")
    return "".join(r + "\n" for r in rows)


def _count_lost(rec: Record, lost: dict[str, int]) -> None:
    inst = rec.instances
    if inst.segmentation is not None:
        _count(lost, "segmentation (polygons, RLE)", sum(s is not None for s in inst.segmentation))
    if inst.keypoints is not None:
        _count(lost, "keypoints", len(inst))
    _count(lost, "difficult flags", int(inst.difficult.sum()))
    _count(lost, "annotation ids", int((inst.ids != -1).sum()))
    _count(lost, "stored areas", int((~np.isnan(inst.area)).sum()))
    _count(lost, "captions", len(rec.captions))
    _count(lost, "image-level labels", int(rec.label is not None))
    _count(lost, "source image ids", int(rec.source_id is not None))
    _count(lost, "mask PNGs", int(rec.mask_path is not None) + int(rec.instance_mask_path is not None))
    other = sorted(k for k in (rec.extra or {}) if k not in _IMAGE_KEYS)
    if other:
        _count(lost, "image fields (" + ", ".join(other[:8]) + (", ..." if len(other) > 8 else "") + ")")


def _part(rec: Record) -> str:
    """``testing`` for a record read from a KITTI ``testing/`` folder, else ``training``."""
    return "testing" if (rec.extra or {}).get("kitti_folder") == "testing" else "training"


def _names(records: Sequence[Record], renumber: bool) -> list[str]:
    """The file stem of each record: its own stem, unless another image of its folder
    (``training``/``testing``) has it too or it is not a plain name (or too long for a file name),
    then its id made a name (as the VOC writer does); ``renumber``: ``000000``, ``000001``... in record order (what
    mmdetection3d's converter reads)."""
    if renumber:
        return [f"{i:06d}" for i in range(len(records))]
    keys = [(_part(r), r.path.rpartition("/")[2].rpartition(".")[0]) for r in records]
    count = Counter(keys)
    used = {k for k in keys if count[k] == 1 and k[1] and k[1] == safe_relpath(k[1]) and "/" not in k[1]
            and fit_name(k[1]) == k[1]}  # a stem past a file system's 255 bytes goes the renaming path
    out: list[str] = []
    for r, key in zip(records, keys):
        if key in used and count[key] == 1:
            out.append(key[1])
            continue
        base = fit_name(safe_relpath(r.id).replace("/", "_"))
        stem, k = base, 1
        while (key[0], stem) in used:
            stem, k = fit_name(f"{base}_{k}"), k + 1
        used.add((key[0], stem))
        out.append(stem)
    return out


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          renumber: bool = False, **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as a KITTI object tree into the existing directory ``dest``.

    Every record becomes ``training/label_2/<name>.txt`` (records read from a KITTI
    ``testing/`` folder go back there, without a label file when they had none) and
    ``training/image_2/<name><ext>`` placed by ``images`` (``link``, ``copy``, ``none``);
    a KITTI calibration file is copied to ``calib/``. Splits become ``ImageSets/<split>.txt``
    (not for a KITTI source that had no lists: its splits are its folders).

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: how images are placed.
        renumber: name the files ``000000``, ``000001``... in record order instead of
            keeping each image's own stem (mmdetection3d reads ids as integers).

    Returns:
        ``{"images", "objects", "lost": {what: n}, "files": n}``.

    Raises:
        MissingFileError: an image (or calibration file) to place does not exist.
        InvalidAnnotationError: an object's label is not among the categories.
    """
    if options:
        log.debug("kitti.write ignores options %s", sorted(options))
    _io.check_images_mode(images)
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else None
    from_kitti = dataset.format == NAME
    names_by_id = {c.id: c.name for c in dataset.categories}
    records = dataset.records
    stems = _names(records, renumber)
    lost: dict[str, int] = {}
    n_obj = files = 0
    name_of: dict[str, str] = {}
    for rec, stem in _io.progress(list(zip(records, stems)), total=len(records), desc="KITTI write",
                                  enabled=progress):
        part = _part(rec)
        name_of[rec.id] = stem
        if not (rec.extra or {}).get("kitti_no_label_file"):
            output_path(dest, f"{part}/{_LABELS}/{stem}.txt", what="label file").write_text(
                _label_text(rec, names_by_id, lost), encoding="utf-8")
            files += 1
        elif len(rec.instances):
            raise InvalidAnnotationError(rec.id, "record marked kitti_no_label_file has objects")
        _place(rec, src_root, dest, f"{part}/{_IMAGES}/{stem}{os.path.splitext(rec.path)[1] or '.png'}", images)
        calib = (rec.extra or {}).get("kitti_calib")
        if isinstance(calib, str):
            _copy_calib(src_root, calib, dest, f"{part}/{_CALIB}/{stem}.txt", lost)
        n_obj += len(rec.instances)
        _count_lost(rec, lost)
    renamed = sum(stem != rec.path.rpartition("/")[2].rpartition(".")[0] for rec, stem in zip(records, stems))
    if renamed:
        lost["file names (renumber=True: 000000...)" if renumber else
             "file names (shared with another image of the folder, or not a plain name: written as the record id)"] = renamed
    _write_lists(dataset, dest, name_of, from_kitti)
    _category_losses(dataset, lost)
    return {"images": len(records), "objects": n_obj, "lost": lost, "files": files}


def _place(rec: Record, src_root: Path | None, dest: Path, rel: str, images: str) -> None:
    src = (src_root / rec.path) if src_root is not None else Path(rec.path)
    _io.place_record_image(src, dest, rel, images, rec.id, "labels")


def _copy_calib(src_root: Path | None, calib: str, dest: Path, rel: str, lost: dict[str, int]) -> None:
    """Copy the record's calibration file; one not beside the source (a KITTI tree converted to
    another format and back) is counted lost. The name must stay inside the source root."""
    src = None if src_root is None else src_root / confine(src_root, calib, where="Record.extra['kitti_calib']",
                                                           what="calibration file")
    if src is None or not src.is_file():
        _count(lost, "calibration files (not found beside the source)")
        return
    shutil.copyfile(src, output_path(dest, rel, what="calibration file"))


def _write_lists(dataset: Dataset, dest: Path, name_of: Mapping[str, str], from_kitti: bool) -> None:
    if from_kitti and not dataset.info.get("kitti_split_lists"):
        return  # its splits are its training/ and testing/ folders
    for split, ids in dataset.splits.items():
        lines = "".join(f"{name_of[i]}\n" for i in ids if i in name_of)
        output_path(dest, f"{_SETS}/{fit_name(safe_relpath(split).replace('/', '_'))}.txt",
                    what="split list").write_text(lines, encoding="utf-8")


def _category_losses(dataset: Dataset, lost: dict[str, int]) -> None:
    """KITTI stores type names: a reader numbers them KITTI's nine first, then in order of appearance."""
    if dataset.format == NAME:
        return
    _count(lost, "category ids (KITTI stores type names)",
           sum(1 for c in dataset.categories if c.name not in KITTI_CLASSES or c.id != KITTI_CLASSES.index(c.name) + 1))
    _count(lost, "category supercategory/extra fields", sum(1 for c in dataset.categories if c.supercategory or c.extra))
