"""CVAT for images 1.1: one XML with every image's shapes, as CVAT exports a task or a project.

Spec: CVAT's exporter and importer (``cvat/apps/dataset_manager/formats/cvat.py``:
``dump_as_cvat_annotation``, ``load_anno``) and CVAT's XML format docs; facts and the shape
mapping in ``docs/formats/cvat.md``. The tree (``root`` is the export folder)::

    root/
      annotations.xml        <annotations><version>1.1</version><meta>...</meta><image .../>...
      images/<name>          a task export
      images/<subset>/<name> a project export (each <image> has subset="...")

Each ``<image id name width height [subset task_id]>`` holds shapes: ``<box xtl ytl xbr ybr
[rotation]>``, ``<polygon points="x,y;x,y;...">``, ``<polyline>``, ``<points>``,
``<ellipse cx cy rx ry [rotation]>``, ``<mask rle left top width height>``, ``<tag>``; every
shape has ``label``, ``occluded``, ``z_order``, optional ``group_id`` and ``source``, and
``<attribute name="...">value</attribute>`` children. A ``<mask>``'s ``rle`` is CVAT's own:
comma-separated run lengths over the ``width x height`` patch at ``left, top``, row by row,
starting with a run of 0s (``"{list}"[1:-1]`` in CVAT's exporter; datumaro reads it the same).

How shapes become records: box -> box (a rotated box: the extent of its corners, plus the
4-corner polygon); polygon -> polygon + extent; ellipse -> the extent plus a 32-gon of the same
area; mask -> a COCO RLE of the whole image + its pixels' box. Polylines and points have no area:
kept with their attributes in ``Record.extra["cvat"]["shapes"]``; a single ``<tag>`` is the
image-level label. Everything a shape has beyond its geometry (``occluded``, ``z_order``,
``group_id``, ``source``, attributes, an ellipse's or rotated box's own numbers) is kept in
``Instances.extra[k]["cvat"]``, so CVAT -> CVAT (and CVAT -> COCO -> CVAT) writes it back.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._checks import MAX_SIDE, check_canvas, check_side
from .._paths import confine, output_path, safe_relpath
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError,
                      MalformedFileError, MissingFileError, UnknownNameError, check_choice)
from ..masks import ellipse_polygon, encode_mask, segmentation_mask
from ..records import Category, Dataset, Instances, Record, decode_segmentation, make_ids_distinct, \
    record_id_from_path

__all__ = ["NAME", "DESCRIPTION", "detect", "parse", "write"]

log = logging.getLogger(__name__)

NAME = "cvat"
DESCRIPTION = "CVAT for images 1.1 XML (box, polygon, polyline, points, ellipse, mask, tag)"
# What write() keeps of any dataset (dsprep.formats.FIELDS, the round-trip matrix): boxes only where
# no mask is (a polygon's or mask's box is its extent), one split per image, integer image ids.
HOLDS = frozenset({"file_names", "splits", "objects", "categories", "masks", "image_labels", "image_ids"})

_AREA = ("box", "polygon", "ellipse", "mask")
_LINEAR = {"polyline": 2, "points": 1}  # no area: kept in the record's extras (min points)
_COMMON = ("label", "source", "occluded", "z_order", "group_id")
_GEOMETRY = {"box": ("xtl", "ytl", "xbr", "ybr"), "ellipse": ("cx", "cy", "rx", "ry"),
             "mask": ("rle", "left", "top", "width", "height")}
_IMAGES = "images"


# --------------------------------------------------------------------------- detect / files

def _xml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*.xml") if p.is_file())


def _root_tag(path: Path) -> str | None:
    """The root element's tag from the first 4 KiB (no parse of the whole file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    head = head.split(b"?>", 1)[-1] if head.startswith(b"<?xml") else head
    start = head.find(b"<")
    while start != -1 and head[start + 1:start + 2] in (b"!", b"?"):  # comments, doctype, PIs
        start = head.find(b"<", start + 1)
    name = head[start + 1:].split(None, 1)  # empty after a lone "<" at the end
    if start == -1 or not name:
        return None
    return name[0].split(b">", 1)[0].decode("ascii", "replace")


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a CVAT export: an XML (or a folder with one at its top) whose root element
    is ``<annotations>`` (a VOC tree has ``Annotations/`` folders, not this).

    Example:
        >>> detect("cvat_export")  # doctest: +SKIP
        True
    """
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".xml" and _root_tag(path) == "annotations"
    return path.is_dir() and any(_root_tag(p) == "annotations" for p in _xml_files(path))


def _read_xml(path: Path, where: str):
    """The parsed tree, with lxml set safe for untrusted files: no entities, no DTD, no network."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True)
    try:
        tree = etree.parse(str(path), parser)
    except etree.XMLSyntaxError as err:
        if "Excessive depth" in (err.msg or ""):
            raise MalformedFileError(f"{where}:{err.lineno}", "elements nested deeper than 256 levels; expected "
                                                              "CVAT's few levels") from None
        if "encoding" in (err.msg or "") or "UTF-8" in (err.msg or ""):
            raise MalformedFileError(f"{where}:{err.lineno}", f"bytes that are not valid in its encoding ({err.msg}); "
                                     "expected UTF-8 text (fix: re-save the file as UTF-8)") from None
        raise MalformedFileError(f"{where}:{err.lineno}", f"not well-formed XML ({err.msg})") from None
    except OSError as err:
        if "encoding" in str(err):
            raise MalformedFileError(where, "holds bytes that are not valid in its encoding; expected UTF-8 text "
                                            "(fix: re-save the file as UTF-8)") from None
        raise MalformedFileError(where, f"cannot read ({err})") from None
    dtd = tree.docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise MalformedFileError(where, "declares entities in a <!DOCTYPE>; expected none (CVAT writes none, and "
                                        "its importer, defusedxml, refuses them: they can expand without bound)")
    return tree


# --------------------------------------------------------------------------- values

def _num(el, name: str, where: str, limit: float = MAX_SIDE) -> float:
    """A number attribute: a finite pixel coordinate within +-MAX_SIDE, or (a rotation in degrees,
    ``limit=math.inf``) any finite number."""
    text = el.get(name)
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> {name} must be a number, found "
                                                                 f"{text!r}"[:300]) from None
    if not (math.isfinite(v) and -limit <= v <= limit):
        what = f"finite pixel coordinate within +-{MAX_SIDE}" if limit == MAX_SIDE else "finite number"
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> {name} must be a {what}, found "
                                     f"{text!r} (fix: correct it)"[:300])
    return v


def _int(el, name: str, where: str, default: int | None = None) -> int | None:
    text = el.get(name)
    if text is None:
        return default
    try:
        v = int(text.strip())
    except ValueError:
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> {name} must be an integer, found "
                                                                 f"{text!r}"[:300]) from None
    if not -MAX_SIDE <= v <= MAX_SIDE:
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> {name} must be within +-{MAX_SIDE}, "
                                                                 f"found {text!r}"[:300])
    return v


def _points(el, where: str, least: int) -> list[float]:
    """``points="x,y;x,y;..."`` as a flat list of floats (at least ``least`` points)."""
    text = el.get("points") or ""
    out: list[float] = []
    try:
        for pair in text.split(";"):
            x, y = pair.split(",")
            out += [float(x), float(y)]
    except ValueError:
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> points must be 'x,y;x,y;...', found "
                                                                 f"{text[:60]!r}") from None
    arr = np.asarray(out)
    if not (np.isfinite(arr).all() and (np.abs(arr) <= MAX_SIDE).all()):
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> points must be finite pixel "
                                     f"coordinates within +-{MAX_SIDE}, found {text[:60]!r} (fix: correct them)")
    if len(out) < 2 * least:
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"a <{el.tag}> needs at least {least} points, "
                                     f"found {len(out) // 2} (fix: redraw the shape, or delete it)")
    return out


def _extent(flat: Sequence[float]) -> list[float]:
    a = np.asarray(flat, np.float64).reshape(-1, 2)
    return [float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())]


def _rotated(flat: list[float], cx: float, cy: float, degrees: float) -> list[float]:
    a = np.asarray(flat, np.float64).reshape(-1, 2) - (cx, cy)
    t = math.radians(degrees)
    rot = np.stack([a[:, 0] * math.cos(t) - a[:, 1] * math.sin(t), a[:, 0] * math.sin(t) + a[:, 1] * math.cos(t)], 1)
    return (rot + (cx, cy)).ravel().tolist()


# --------------------------------------------------------------------------- shapes

def _mask_rle(el, where: str, w: int, h: int) -> dict:
    """A ``<mask>``'s patch placed on the ``w x h`` image, as a COCO RLE."""
    at = f"{where}:{el.sourceline}"
    left, top = _int(el, "left", where), _int(el, "top", where)
    mw, mh = _int(el, "width", where), _int(el, "height", where)
    if None in (left, top, mw, mh) or mw <= 0 or mh <= 0 or left < 0 or top < 0:
        raise InvalidAnnotationError(at, f"<mask> needs left, top >= 0 and width, height > 0, found {left}, {top}, "
                                         f"{mw}, {mh}")
    if left + mw > w or top + mh > h:
        raise InvalidAnnotationError(at, f"<mask> patch {left},{top} +{mw}x{mh} reaches past the {w}x{h} image; "
                                         "expected it inside (fix: re-export from CVAT)")
    check_canvas(w, h, at, "mask canvas")
    try:
        runs = np.array([int(v) for v in (el.get("rle") or "").split(",")], np.int64)
    except (ValueError, OverflowError):  # not integers, or past 64 bits
        raise InvalidAnnotationError(at, f"<mask> rle must be comma-separated run lengths, found "
                                         f"{(el.get('rle') or '')[:60]!r}") from None
    total = sum(runs.tolist())  # Python ints: an int64 sum of huge runs could wrap round to width x height
    if (runs < 0).any() or total != mw * mh:
        raise InvalidAnnotationError(at, f"<mask> rle runs must be >= 0 and add up to width x height = {mw * mh}, "
                                         f"found a sum of {total}; expected CVAT's row-by-row runs, 0s first")
    values = np.zeros(len(runs), bool)
    values[1::2] = True
    patch = np.repeat(values, runs).reshape(mh, mw)  # row by row (C order), as CVAT writes it
    full = np.zeros((h, w), bool)
    full[top:top + mh, left:left + mw] = patch
    return encode_mask(full)


def _common(el, where: str) -> dict[str, Any]:
    """The shape's attributes beyond its geometry, and its ``<attribute>`` children."""
    out: dict[str, Any] = {"type": el.tag}
    for key, value in el.attrib.items():
        if key in ("occluded", "z_order", "group_id"):
            out[key] = _int(el, key, where)
        elif key not in ("label", "points") and key not in _GEOMETRY.get(el.tag, ()):
            out[key] = value  # source, rotation, unknown attributes: text, written back as read
    attrs = {a.get("name", ""): (a.text or "") for a in el if a.tag == "attribute"}
    if attrs:
        out["attributes"] = attrs
    return out


def _area_shape(el, where: str, w: int, h: int) -> tuple[list[float], Any, dict]:
    """``(box, segmentation, cvat extra)`` of a box, polygon, ellipse or mask."""
    ex = _common(el, where)
    rot = _num(el, "rotation", where, limit=math.inf) if "rotation" in ex and el.tag in ("box", "ellipse") else 0.0
    segm: Any = None
    if el.tag == "box":
        x1, y1, x2, y2 = (_num(el, k, where) for k in _GEOMETRY["box"])
        if x2 < x1 or y2 < y1:
            raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<box> has xbr < xtl or ybr < ytl ({x1}, {y1}, "
                                                                     f"{x2}, {y2}); expected xtl <= xbr, ytl <= ybr")
        box = [x1, y1, x2, y2]
        if rot:
            ex["geometry"] = box
            segm = [_rotated([x1, y1, x2, y1, x2, y2, x1, y2], (x1 + x2) / 2, (y1 + y2) / 2, rot)]
            box = _extent(segm[0])
    elif el.tag == "polygon":
        ring = _points(el, where, 3)
        box, segm = _extent(ring), [ring]
    elif el.tag == "ellipse":
        cx, cy, rx, ry = (_num(el, k, where) for k in _GEOMETRY["ellipse"])
        if rx < 0 or ry < 0:
            raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<ellipse> radii must be >= 0, found {rx}, {ry}")
        ex["geometry"] = [cx, cy, rx, ry]
        segm = [ellipse_polygon(cx, cy, rx, ry, rot)]
        t = math.radians(rot)
        hw, hh = math.hypot(rx * math.cos(t), ry * math.sin(t)), math.hypot(rx * math.sin(t), ry * math.cos(t))
        box = [cx - hw, cy - hh, cx + hw, cy + hh]
    else:
        segm = _mask_rle(el, where, w, h)
        m = segmentation_mask(segm, h, w)
        ys, xs = np.nonzero(m)
        left, top = int(el.get("left")), int(el.get("top"))
        box = ([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs)
               else [float(left), float(top), float(left), float(top)])
    ex["box"] = box
    return box, segm, ex


def _image(el, where: str, root: Path, allow_outside_root: bool, policy: ErrorPolicy) -> dict[str, Any]:
    """One ``<image>``: its path, size and shapes (bad shapes go through ``policy``)."""
    at = f"{where}:{el.sourceline}"
    name = el.get("name")
    if not name:
        raise InvalidAnnotationError(at, "<image> has no name; expected name=\"<file name>\"")
    subset = el.get("subset")
    prefix = f"{_IMAGES}/{safe_relpath(subset)}/" if subset else f"{_IMAGES}/"
    rel = confine(root, name.replace("\\", "/"), where=f"{where}: image id {el.get('id')}", prefix=prefix,
                  what="name", allow_outside=allow_outside_root)
    w = el.get("width")
    h = el.get("height")
    if w is not None and h is not None:
        w = check_side(_num(el, "width", where), at, "width")
        h = check_side(_num(el, "height", where), at, "height")
    elif (root / rel).is_file():
        w, h = _io.image_size(root / rel)
    else:
        raise InvalidAnnotationError(at, f"<image> {name!r} has no width/height and no image {rel} to read them "
                                         "from; expected width=\"W\" height=\"H\"")
    objects, loose, tags, unknown = [], [], [], []
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        try:
            label = child.get("label")
            if tag in _AREA or tag in _LINEAR or tag == "tag":
                if not label:
                    raise InvalidAnnotationError(f"{where}:{child.sourceline}", f"<{tag}> has no label (or an empty "
                                                 "one); expected label=\"<a label of <meta>>\"")
            if tag in _AREA:
                objects.append((label, *_area_shape(child, where, w, h)))
            elif tag in _LINEAR:
                loose.append({"label": label, "points": _points(child, where, _LINEAR[tag]), **_common(child, where)})
            elif tag == "tag":
                tags.append({"label": label, **_common(child, where)})
            else:  # cuboid, skeleton...: kept as they are, written back verbatim
                unknown.append(_raw(child))
        except FormatError as err:
            policy.handle(err)
    extra = {k: v for k, v in el.attrib.items() if k not in ("name", "width", "height", "subset")}
    if loose:
        extra["shapes"] = loose
    if tags:
        extra["tags"] = tags
    if unknown:
        extra["unknown_xml"] = unknown
    return {"rel": rel, "w": w, "h": h, "split": subset, "objects": objects, "extra": extra}


def _raw(el) -> str:
    from lxml import etree

    return etree.tostring(el, encoding="unicode", with_tail=False)


def _meta_labels(meta) -> tuple[list[str], dict[str, str]]:
    """Label names in ``<meta>`` order (task or project; names repeated across tasks once) and
    each label's raw XML (colour, type, attribute specs), for the writer to give back."""
    names: list[str] = []
    raw: dict[str, str] = {}
    if meta is None:
        return names, raw
    for labels in meta.iter("labels"):
        for lab in labels:
            if lab.tag != "label":
                continue
            n = lab.find("name")
            name = (n.text or "").strip() if n is not None else ""
            if name and name not in raw:
                names.append(name)
                raw[name] = _raw(lab)
    return names, raw


# --------------------------------------------------------------------------- parse

def _parse_xml(path: Path, where: str, root: Path, policy: ErrorPolicy, allow_outside_root: bool):
    doc = _read_xml(path, where).getroot()
    if doc.tag != "annotations":
        raise MalformedFileError(f"{where}:{doc.sourceline}", f"expected root element <annotations> (CVAT for "
                                                              f"images), found <{doc.tag}>")
    if doc.find("track") is not None:
        raise MalformedFileError(f"{where}:{doc.find('track').sourceline}", "holds <track> elements: this is CVAT "
                                 "for video; expected CVAT for images (fix: export the task as 'CVAT for images 1.1')")
    images = []
    for el in doc.iter("image"):
        try:
            images.append(_image(el, where, root, allow_outside_root, policy))
        except FormatError as err:
            policy.handle(err)
    meta = doc.find("meta")
    return images, meta


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: Any = "raise", workers: int | None = None,
          progress: bool | None = None, allow_outside_root: bool = False, **options: Any) -> Dataset:
    """Read a CVAT for images 1.1 export into records (one record per ``<image>``).

    Args:
        path: the export folder (its ``*.xml`` with root ``<annotations>``; several are read in
            name order) or one XML.
        split: read only the images whose ``subset`` is this (project exports).
        on_error: ``"raise"`` (first bad item) or ``"warn"`` (skip bad shapes and images;
            counted in ``info["skipped"]``).
        workers, progress: accepted for the common signature (one XML is read in this process).
        allow_outside_root: accept an image ``name`` that leaves ``images/``.

    Returns:
        A :class:`~dsprep.records.Dataset` (``format="cvat"``): categories are ``<meta>``'s labels
        in order (ids 1..N), then labels used but not declared; records in file order, path
        ``images/[<subset>/]<name>``, ``source_id`` the image id, ``split`` its ``subset``.

    Raises:
        DatasetNotFoundError: no CVAT XML at ``path``.
        FormatError: bad input (file and line named), in ``"raise"`` mode.
    """
    if options:
        log.debug("cvat.parse ignores options %s", sorted(options))
    policy = ErrorPolicy(on_error)
    path = Path(path)
    files = [path] if path.is_file() else [p for p in _xml_files(path) if _root_tag(p) == "annotations"] \
        if path.is_dir() else []
    if not files:
        raise DatasetNotFoundError(f"{path}: no CVAT XML found; expected annotations.xml (root element "
                                   "<annotations>) as CVAT exports it")
    root = path.parent if path.is_file() else path
    images, names, raw_labels, metas = [], [], {}, []
    for f in files:
        got, meta = _parse_xml(f, f.name, root, policy, allow_outside_root)
        images += got
        n, r = _meta_labels(meta)
        names += [x for x in n if x not in raw_labels]
        raw_labels.update({k: v for k, v in r.items() if k not in raw_labels})
        if meta is not None:
            metas.append(_raw(meta))
    if split is not None:
        listed = list(dict.fromkeys(i["split"] for i in images if i["split"]))
        if not listed:
            raise UnknownNameError(f"Unknown split {split!r}: no <image> of {path} has a subset; every image is "
                                   "read when split is None")
        check_choice("split", split, listed)
        images = [i for i in images if i["split"] == split]
    categories, records = _records(images, names, raw_labels, policy)
    info: dict[str, Any] = {"skipped": policy.count}
    if metas:
        info["cvat_meta"] = metas[0]
    policy.summary("CVAT shapes/images")
    return Dataset(categories, records, info=info, root=root, format=NAME)


def _records(images: list[dict], names: list[str], raw_labels: Mapping[str, str],
             policy: ErrorPolicy) -> tuple[list[Category], list[Record]]:
    known = {n: i + 1 for i, n in enumerate(names)}

    def label_id(name: str, where: str) -> int:
        if name not in known:
            known[name] = len(known) + 1
            policy.note("unknown_category", where, f"label {name!r} is not among <meta>'s labels; read as category "
                                                   f"{known[name]} (fix: add it to the task's labels)")
        return known[name]

    records = []
    # a project export numbers each task's images from 0: ids that repeat name no single image, so
    # they are not source ids (each stays in extra["cvat"]["id"] and is written back)
    ids = [im["extra"].get("id") for im in images]
    unique_ids = len(set(ids)) == len(ids)
    for im in images:
        objs = im["objects"]
        labels = [label_id(o[0], im["rel"]) for o in objs]
        inst = Instances(boxes=np.array([o[1] for o in objs], np.float64).reshape(-1, 4), labels=labels,
                         segmentation=[o[2] for o in objs] if any(o[2] is not None for o in objs) else None,
                         extra=[{"cvat": o[3]} for o in objs] if objs else None)
        for s in [*im["extra"].get("shapes", ()), *im["extra"].get("tags", ())]:
            label_id(s["label"], im["rel"])
        tags = im["extra"].get("tags", [])
        src = im["extra"].get("id") if unique_ids else None
        records.append(Record(record_id_from_path(im["rel"]), im["rel"], im["w"], im["h"], im["split"],
                              label=known[tags[0]["label"]] if len(tags) == 1 else None, instances=inst,
                              source_id=int(src) if src is not None and src.strip().lstrip("-").isdigit() else src,
                              extra={"cvat": im["extra"]} if im["extra"] else {}))
    make_ids_distinct(records)
    cats = [Category(i, n, extra={"cvat_xml": raw_labels[n]} if n in raw_labels else {}) for n, i in known.items()]
    return cats, records


# --------------------------------------------------------------------------- write

def _fmt(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)


def _points_text(flat: Sequence[float]) -> str:
    a = np.asarray(flat, np.float64).ravel()
    return ";".join(f"{_fmt(a[i])},{_fmt(a[i + 1])}" for i in range(0, len(a) - 1, 2))


def _cvat_rle(m: np.ndarray) -> tuple[str, int, int, int, int]:
    """``(rle, left, top, width, height)`` of a bool mask's tight patch, CVAT's row-by-row runs."""
    ys, xs = np.nonzero(m)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    flat = m[y1:y2 + 1, x1:x2 + 1].ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs  # CVAT's runs start with 0s
    return ", ".join(map(str, runs)), x1, y1, x2 - x1 + 1, y2 - y1 + 1


def _same_box(stored: Any, box: np.ndarray) -> bool:
    """``box`` is the box parse() gave, up to float rounding (a COCO reader's ``x + w`` rounded to
    its shortest decimal differs in the last bit): an edit or a transform moves it by far more."""
    return (isinstance(stored, list) and len(stored) == 4 and all(isinstance(v, (int, float)) for v in stored)
            and np.allclose(stored, box, rtol=1e-12, atol=0.0))


def _stored(box: np.ndarray, segm: Any, ex: Mapping[str, Any] | None) -> dict | None:
    """The shape parse() read for this object, if the record still has the box and the kind of
    segmentation it gave (a box none, or a list when rotated; a polygon or ellipse a list; a mask an
    RLE): a record edited, or converted through a format that re-derived its masks, is written anew."""
    cv = (ex or {}).get("cvat")
    if not (isinstance(cv, dict) and cv.get("type") in _AREA and _same_box(cv.get("box"), box)):
        return None
    kind = cv["type"]
    want = dict if kind == "mask" else list if kind != "box" or "geometry" in cv else type(None)
    return cv if isinstance(segm, want) else None


def _shape_elements(rec: Record, k: int, label: str, lost: dict[str, int]) -> list[tuple[str, dict, dict]]:
    """``[(tag, XML attributes, <attribute> children)]`` of object ``k``."""
    inst = rec.instances
    box = inst.boxes[k]
    segm = decode_segmentation(inst.segmentation[k]) if inst.segmentation is not None else None
    cv = _stored(box, segm, inst.extra[k] if inst.extra is not None else None)
    common = {"label": label} if cv is not None else {"label": label, "occluded": "0", "z_order": "0"}
    if cv is not None:
        common.update({key: str(v) for key, v in cv.items() if key not in ("type", "box", "geometry", "attributes")
                       and v is not None})
        kind, children = cv["type"], cv.get("attributes") or {}
    else:
        kind = "mask" if isinstance(segm, dict) else "polygon" if isinstance(segm, list) and segm else "box"
        children = {}
    if kind == "box":
        geo = cv.get("geometry") if cv is not None and "geometry" in cv else box.tolist()
        return [("box", {**common, **dict(zip(_GEOMETRY["box"], map(_fmt, geo)))}, children)]
    if kind == "ellipse":
        return [("ellipse", {**common, **dict(zip(_GEOMETRY["ellipse"], map(_fmt, cv["geometry"])))}, children)]
    if kind == "polygon":
        rings = [np.asarray(r, np.float64).ravel() for r in segm]
        ok = [r for r in rings if len(r) >= 6]
        _add(lost, "mask polygons of fewer than 3 points", len(rings) - len(ok))
        if len(ok) == 1:
            _box_lost(box, _extent(ok[0]), lost)
            return [("polygon", {**common, "points": _points_text(ok[0])}, children)]
        if not ok:
            return [("box", {**common, **dict(zip(_GEOMETRY["box"], map(_fmt, box)))}, children)]
        # a CVAT polygon is one ring: an object of several becomes one <mask> of their pixels
    m = segmentation_mask(segm, int(rec.height), int(rec.width), where=f"{rec.path}: object {k}")
    if m is None or not m.any():
        _add(lost, "empty masks (objects; written as their box)", 1)
        return [("box", {**common, **dict(zip(_GEOMETRY["box"], map(_fmt, box)))}, children)]
    rle, left, top, w, h = _cvat_rle(m.astype(bool))
    ys, xs = np.nonzero(m)
    _box_lost(box, [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)], lost)
    return [("mask", {**common, "rle": rle, "left": str(left), "top": str(top), "width": str(w), "height": str(h)},
             children)]


def _box_lost(box: np.ndarray, derived: list[float], lost: dict[str, int]) -> None:
    _add(lost, "boxes of objects with a mask (CVAT derives them from the shape; these differed)",
         int(derived != box.tolist()))


def _add(lost: dict[str, int], what: str, n: int) -> None:
    if n:
        lost[what] = lost.get(what, 0) + n


def _count_lost(rec: Record, lost: dict[str, int]) -> None:
    inst = rec.instances
    _add(lost, "crowd flags (objects; CVAT has no crowd)", int(inst.iscrowd.sum()))
    _add(lost, "difficult flags (objects)", int(inst.difficult.sum()))
    _add(lost, "annotation ids", int((inst.ids >= 0).sum()))
    _add(lost, "stored areas", int(np.isfinite(inst.area).sum()))
    if inst.keypoints is not None:
        _add(lost, "keypoints (objects)", int((inst.keypoints[..., 2] > 0).any(axis=1).sum()))
    other = sorted({key for e in (inst.extra or ()) if e for key in e if key != "cvat"})
    if other:
        _add(lost, "object fields (" + ", ".join(other) + ")", sum(1 for e in inst.extra if e and set(e) - {"cvat"}))
    _add(lost, "captions", len(rec.captions))
    _add(lost, "mask PNGs (semantic/instance)", int(bool(rec.mask_path or rec.instance_mask_path)))
    _add(lost, "source image ids (not integers)", int(rec.source_id is not None and not _is_int(rec.source_id)))
    other = sorted(k for k in (rec.extra or {}) if k != "cvat")
    if other:
        _add(lost, "image fields (" + ", ".join(other) + ")", 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _image_name(rec: Record) -> tuple[str, str]:
    """``(name attribute, image path in OUT)``: CVAT's own paths kept; others under ``images/[<split>/]``."""
    path = safe_relpath(rec.path)
    if path.startswith(f"{_IMAGES}/"):
        path = path[len(_IMAGES) + 1:]
    if rec.split and path.startswith(f"{rec.split}/"):
        path = path[len(rec.split) + 1:]
    folder = f"{_IMAGES}/{safe_relpath(rec.split)}/" if rec.split else f"{_IMAGES}/"
    return path, folder + path


def _image_element(parent, rec: Record, index: int, name: str, names: Mapping[int, str], lost: dict[str, int]):
    from lxml import etree

    cv = (rec.extra or {}).get("cvat") or {}
    attrs = {"id": str(cv.get("id", rec.source_id if _is_int(rec.source_id) else index)), "name": name}
    if rec.split:
        attrs["subset"] = rec.split
    attrs.update({k: str(v) for k, v in cv.items() if k not in ("id", "shapes", "tags", "unknown_xml")
                  and isinstance(v, (str, int))})
    attrs.update({"width": str(int(rec.width)), "height": str(int(rec.height))})
    img = etree.SubElement(parent, "image", attrs)
    for k in range(len(rec.instances)):
        label = names.get(int(rec.instances.labels[k]), str(int(rec.instances.labels[k])))
        for tag, a, children in _shape_elements(rec, k, label, lost):
            _element(img, tag, a, children)
    for s in cv.get("shapes") or ():
        a = {key: str(v) for key, v in s.items() if key not in ("type", "points", "attributes") and v is not None}
        _element(img, s.get("type", "polyline"), {**a, "points": _points_text(s["points"])}, s.get("attributes") or {})
    tags = cv.get("tags") or ([{"label": names.get(rec.label, str(rec.label))}] if rec.label is not None else [])
    for t in tags:
        _element(img, "tag", {key: str(v) for key, v in t.items() if key not in ("type", "attributes")
                              and v is not None}, t.get("attributes") or {})
    for text in cv.get("unknown_xml") or ():
        img.append(etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True)))


def _element(parent, tag: str, attrs: Mapping[str, str], children: Mapping[str, str]) -> None:
    from lxml import etree

    el = etree.SubElement(parent, tag, dict(attrs))
    for n, v in children.items():
        etree.SubElement(el, "attribute", {"name": n}).text = v


def _meta(root_el, dataset: Dataset) -> None:
    """``<meta>``: the source's when it is CVAT's and its labels are still the categories, else a
    ``<task>`` (or, with splits, a ``<project>`` listing them) with the categories as labels."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    raw = dataset.info.get("cvat_meta") if dataset.format == NAME else None
    if isinstance(raw, str):
        meta = etree.fromstring(raw, parser)
        if _meta_labels(meta)[0] == [c.name for c in dataset.categories]:
            root_el.append(meta)
            return
    meta = etree.SubElement(root_el, "meta")
    splits = list(dataset.splits)
    holder = etree.SubElement(meta, "project" if splits else "task")
    labels = etree.SubElement(holder, "labels")
    for c in dataset.categories:
        xml = c.extra.get("cvat_xml") if isinstance(c.extra, Mapping) else None
        if isinstance(xml, str):
            labels.append(etree.fromstring(xml, parser))
        else:
            lab = etree.SubElement(labels, "label")
            etree.SubElement(lab, "name").text = c.name
            etree.SubElement(lab, "attributes")
    if splits:
        etree.SubElement(holder, "subsets").text = "\n".join(splits)


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          on_error: str = "raise", **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as a CVAT for images 1.1 export: ``annotations.xml`` and ``images/``.

    Objects parsed from CVAT get their shape back (box, rotated box, ellipse, polygon, mask, with
    occluded, z_order, group_id, source and attributes) unless their box was changed; others
    become a ``<polygon>`` per ring, a ``<mask>`` for an RLE, or a ``<box>``. A record's split is
    its images' ``subset`` (and folder, as in a project export).

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: ``link``, ``copy`` or ``none``.
        on_error: ``"raise"`` on a missing image file, or ``"warn"`` (counted in the report).

    Returns:
        ``{"images", "objects", "lost": {what: n}, "missing_images"}``.
    """
    from lxml import etree

    if options:
        log.debug("cvat.write ignores options %s", sorted(options))
    _io.check_images_mode(images)
    policy = ErrorPolicy(on_error)
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    names = {c.id: c.name for c in dataset.categories}
    lost: dict[str, int] = {}
    doc = etree.Element("annotations")
    etree.SubElement(doc, "version").text = "1.1"
    _meta(doc, dataset)
    missing = n_obj = 0
    for i, rec in enumerate(_io.progress(dataset.records, total=len(dataset), desc="CVAT write", enabled=progress)):
        name, img_rel = _image_name(rec)
        if images != "none" and not _io.place_image(src_root / rec.path, dest, img_rel, images):
            try:
                raise MissingFileError(str(src_root / rec.path), f"image of record {rec.id!r} not found; cannot "
                                       f"{images} it to {img_rel} (use --images none to write annotations only)")
            except FormatError as err:
                policy.handle(err)
                missing += 1
        try:
            _image_element(doc, rec, i, name, names, lost)
        except ValueError as err:  # lxml: a control character or lone surrogate in a name or value
            if isinstance(err, FormatError):
                raise
            raise InvalidAnnotationError(rec.path, f"cannot be written as XML: {err}; expected XML text (fix: "
                                                   "correct it in the source)") from None
        n_obj += len(rec.instances)
        _count_lost(rec, lost)
    _add(lost, "category ids (CVAT stores names; re-read ids are 1..N in <meta> order)",
         sum(1 for i, c in enumerate(dataset.categories) if c.id != i + 1))
    _add(lost, "category supercategories (CVAT stores names only)",
         sum(1 for c in dataset.categories if c.supercategory))
    member: dict[str, int] = {}
    for ids in dataset.splits.values():
        for rid in ids:
            member[rid] = member.get(rid, 0) + 1
    _add(lost, "splits (images in several: CVAT keeps one subset, the record's split)",
         sum(1 for v in member.values() if v > 1))
    etree.indent(doc, space="  ")
    output_path(dest, "annotations.xml", what="annotation").write_bytes(
        etree.tostring(doc, xml_declaration=True, encoding="utf-8", pretty_print=True))
    policy.summary("images")
    return {"images": len(dataset), "objects": n_obj, "lost": lost, "missing_images": missing}
