"""PASCAL VOC: the devkit layout of VOC2007-VOC2012 (and what third-party tools write).

Spec: the VOC2007/VOC2012 devkit documentation (``devkit_doc.pdf``); facts in
``docs/formats/voc.md``. The tree (``root`` is the ``VOC20XX`` directory; a
``VOCdevkit`` directory holding exactly one ``VOC20XX`` is accepted too)::

    VOC2012/
      Annotations/<id>.xml              one per image: size, objects, boxes
      ImageSets/Main/<split>.txt        ids of a split (train, val, trainval, test)
      ImageSets/Main/<class>_<split>.txt  "<id> -1|0|1" per image
      ImageSets/Segmentation/<split>.txt  ids of the segmentation subset
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png        palette PNG: 0 background, 1..20 classes, 255 void
      SegmentationObject/<id>.png       palette PNG: 1..N = XML object order, 255 void

Conventions:

- VOC boxes are 1-based and inclusive: a full-image box is ``(1, 1, W, H)``.
  Records hold ``[xmin - 1, ymin - 1, xmax, ymax]`` (0-based continuous, as
  detectron2's ``load_voc_instances`` does) and :func:`write` adds the 1 back,
  writing integers where the value is integral and the shortest repr that
  round-trips otherwise (VOC2012 and labelme write decimals).
- Categories: the 20 VOC classes keep ids 1..20 in the canonical order
  (detectron2 ``CLASS_NAMES``); names found in XMLs that are not VOC classes
  are appended (ids 21.., in order of first appearance in sorted file order).
  A datumaro ``labelmap.txt`` beside ``Annotations/`` fixes the order instead.
- Fields only VOC has live in ``Record.extra`` (``folder``, ``filename``,
  ``source``, ``owner``, ``segmented``, ``depth``, ``unknown_xml``) and in each
  object's ``Instances.extra`` dict (``pose``, ``truncated``, ``occluded``,
  ``parts``, ``actions``, ``point``, ``attributes``, ``unknown_xml``).
  Crowd flags are written as a non-standard ``<iscrowd>1</iscrowd>`` that the
  devkit ignores and :func:`parse` reads back.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import posixpath
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._category_map import read_category_map, restorable
from .._checks import INT64_MAX, INT64_MIN, check_side, check_utf8_name, fit_name, image_error, read_utf8
from .._paths import confine, output_path
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError,
                      MalformedFileError, MissingFileError, UnknownNameError, check_choice)
from ..masks import VOC_PALETTE  # index 255 (void) = (224, 224, 192)
from ..records import Category, Dataset, Instances, Record

__all__ = ["NAME", "DESCRIPTION", "VOC_CLASSES", "VOC_PALETTE", "detect", "parse", "parse_options_for", "write"]

log = logging.getLogger(__name__)

NAME = "voc"
DESCRIPTION = "PASCAL VOC devkit tree (Annotations/*.xml, ImageSets, Segmentation PNGs)"
# Category names that mean VOC's background (index 0), not a class: labelme writes _background_
# first in class_names.txt, datumaro's labelmap.txt starts with background.
BACKGROUND_NAMES = ("background", "_background_", "__background__")
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "categories", "category_ids",
                   "supercategory", "crowd", "difficult", "masks"})

# The 20 classes in the canonical order; class index i+1 in SegmentationClass PNGs
# [detectron2 data/datasets/pascal_voc.py CLASS_NAMES; VOC devkit VOCinit.m].
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


VOID = 255

_SPLIT_ORDER = ("train", "val", "trainval", "test")
_ANN, _IMG, _MAIN, _SEGSETS = "Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation"
_SEGCLS, _SEGOBJ = "SegmentationClass", "SegmentationObject"
# Keys of Instances.extra that VOC can hold; any other per-object key is reported lost.
_OBJECT_KEYS = ("pose", "truncated", "occluded", "parts", "actions", "point", "attributes", "unknown_xml")
_IMAGE_KEYS = ("folder", "filename", "source", "owner", "segmented", "depth", "unknown_xml")
# <database>/<annotation>/<image> directly under <annotation> (labelme) belong in <source>.
_SOURCE_FIELDS = ("database", "annotation", "image", "flickrid")
_BOX_TOLERANCE = 1.0  # pixels a box may reach past the image (third-party 0-based writers)


# --------------------------------------------------------------------------- detect / layout

def _find_root(path: Path) -> Path | None:
    """The VOC20XX directory at ``path``: itself, or the single VOC year inside a VOCdevkit."""
    if (path / _ANN).is_dir() or (path / _SEGCLS).is_dir():
        return path
    if not path.is_dir():
        return None
    years = sorted(p for p in path.iterdir() if p.is_dir() and ((p / _ANN).is_dir() or (p / _SEGCLS).is_dir()))
    if len(years) == 1:
        return years[0]
    if len(years) > 1:
        raise DatasetNotFoundError(
            f"{path}: holds several VOC trees ({', '.join(p.name for p in years)}); pass one of them as the root")
    return None


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a VOC tree: ``Annotations/*.xml`` (or, for a segmentation-only
    tree, ``SegmentationClass/*.png``), directly or in the single ``VOC20XX`` of a ``VOCdevkit``.

    Example:
        >>> detect("VOCdevkit/VOC2007")  # doctest: +SKIP
        True
    """
    path = Path(path)
    try:
        root = _find_root(path)
    except DatasetNotFoundError:
        return True  # a VOCdevkit with several years is VOC; parse() asks which one
    if root is None:
        return False
    for sub, ext in ((_ANN, ".xml"), (_SEGCLS, ".png")):
        d = root / sub
        if d.is_dir():
            with os.scandir(d) as it:
                if any(e.name.endswith(ext) for e in it):
                    return True
    return False


def _read_list(path: Path) -> list[str]:
    """Ids of a split file: first token per line; blank lines and ``#`` comments skipped
    (datumaro voc_dataset3 starts its train.txt with ``# a comment``)."""
    out = []
    for line in read_utf8(path, f"{path.parent.parent.name}/{path.parent.name}/{path.name}").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split()[0])
    return out


def _confined_ids(lists: dict[str, list[str]], sub: str, root: Path, policy: ErrorPolicy,
                  allow_outside_root: bool) -> dict[str, list[str]]:
    """The ids of ``ImageSets`` lists, each kept inside ``JPEGImages/`` (the image is
    ``JPEGImages/<id>.<ext>``, its XML ``Annotations/<id>.xml``): an id that climbs out
    (``../../x``) or is absolute is a :class:`PathEscapeError` through the policy, unless
    ``allow_outside_root``; one that climbs and comes back (``a/../b``) is normalised."""
    out: dict[str, list[str]] = {}
    for name, ids in lists.items():
        kept = ids
        if any(".." in i or i[:1] in ("/", "\\") or i[1:2] == ":" for i in ids):
            kept = []
            for i in ids:
                try:
                    confine(root, i, prefix=f"{_IMG}/", what="image id", where=f"{sub}/{name}.txt",
                            allow_outside=allow_outside_root)
                except FormatError as err:
                    policy.handle(err)
                    continue
                kept.append(posixpath.normpath(i) if ".." in i else i)
        out[name] = kept
    return out


def _split_key(name: str) -> tuple:
    return (_SPLIT_ORDER.index(name), "") if name in _SPLIT_ORDER else (len(_SPLIT_ORDER), name)


def _read_splits(root: Path, sub: str) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """``(split lists, per-class lists)`` of an ImageSets folder.

    Split lists are the files without an underscore (``train.txt``); per-class lists
    are ``<class>_<split>.txt`` (``train_train.txt`` is class train, split train).
    """
    d = root / sub
    if not d.is_dir():
        return {}, {}
    splits: dict[str, list[str]] = {}
    per_class: dict[str, Path] = {}
    for p in sorted(d.glob("*.txt")):
        if "_" in p.stem:
            per_class[p.stem] = p
        else:
            splits[p.stem] = _read_list(p)
    return dict(sorted(splits.items(), key=lambda kv: _split_key(kv[0]))), per_class


def _read_labelmap(root: Path) -> list[str] | None:
    """Class names of a datumaro ``labelmap.txt`` (``name:r,g,b:parts:actions``), background dropped."""
    path = root / "labelmap.txt"
    if not path.is_file():
        return None
    names = []
    for line in read_utf8(path, "labelmap.txt").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split(":", 1)[0]
        if not names and name in BACKGROUND_NAMES:
            names.append(None)  # index 0: background, not a class
            continue
        names.append(name)
    if names and names[0] is None:
        names = names[1:]
    return [n for n in names if n is not None]


# --------------------------------------------------------------------------- XML reading

def _text(el) -> str:
    t = el.text
    return t.strip() if t else ""


def _number(el, where: str) -> float:
    """A finite number (NaN, inf and 1e400 are no coordinate or size)."""
    t = el.text
    try:
        v = float(t)
    except (TypeError, ValueError):
        raise InvalidAnnotationError(
            f"{where}:{el.sourceline}", f"<{el.tag}> must be a number, found {(t or '').strip()!r}"[:300]) from None
    if not math.isfinite(v):
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<{el.tag}> must be a finite number, found "
                                                                 f"{(t or '').strip()!r}"[:300])
    return v


def _flag(el, where: str) -> int | None:
    """An integer flag (``0``, ``1``, ``1.0``); None for an empty element (labelme writes ``<truncated/>``)."""
    t = el.text
    if t is None or not t.strip():
        return None
    try:
        v = float(t)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and INT64_MIN <= v <= INT64_MAX):
        raise InvalidAnnotationError(
            f"{where}:{el.sourceline}", f"<{el.tag}> must be an integer (a flag: 0 or 1; depth: 3), found {t.strip()!r}"[:300])
    return int(v) if v.is_integer() else v  # type: ignore[return-value]


_INF = float("inf")


def _bndbox(el, where: str) -> list[float]:
    """``[xmin-1, ymin-1, xmax, ymax]`` from a ``<bndbox>`` (children in any order).

    The fast path for well-formed boxes; anything odd goes to :func:`_bndbox_checked`,
    which finds the offending element and names its line.
    """
    x0 = y0 = x1 = y1 = None
    try:
        for c in el:
            t = c.tag
            if t == "xmin":
                tx = c.text
                x0 = float(tx)
            elif t == "ymin":
                ty = c.text
                y0 = float(ty)
            elif t == "xmax":
                x1 = float(c.text)
            elif t == "ymax":
                y1 = float(c.text)
    except (TypeError, ValueError):
        return _bndbox_checked(el, where)
    if x0 is None or y0 is None or x1 is None or y1 is None or not (
            x1 >= x0 - 1 and y1 >= y0 - 1 and abs(x0) + abs(y0) + abs(x1) + abs(y1) < _INF):
        return _bndbox_checked(el, where)
    # 1-based inclusive -> 0-based continuous; xmax == xmin is a one-pixel-wide box, xmax == xmin - 1
    # an empty one, and between the two a box narrower than a pixel (decimal coordinates).
    return [_minus1(x0, tx), _minus1(y0, ty), x1, y1]


def _bndbox_checked(el, where: str) -> list[float]:
    """:func:`_bndbox` with a check and a clear error for every way a box can be wrong."""
    vals: dict[str, float] = {}
    texts: dict[str, str] = {}
    for c in el:
        tag = c.tag
        if tag in ("xmin", "ymin", "xmax", "ymax"):
            vals[tag] = _number(c, where)
            texts[tag] = c.text
    if len(vals) != 4:
        missing = [k for k in ("xmin", "ymin", "xmax", "ymax") if k not in vals]
        raise InvalidAnnotationError(f"{where}:{el.sourceline}",
                                     f"<bndbox> needs xmin, ymin, xmax, ymax; missing {', '.join(missing)}")
    xmin, ymin, xmax, ymax = vals["xmin"], vals["ymin"], vals["xmax"], vals["ymax"]
    if not (math.isfinite(xmin) and math.isfinite(ymin) and math.isfinite(xmax) and math.isfinite(ymax)):
        raise InvalidAnnotationError(f"{where}:{el.sourceline}", f"<bndbox> has a non-finite value {vals}")
    # 1-based inclusive -> 0-based continuous; xmax == xmin is a one-pixel-wide box, xmax == xmin - 1
    # an empty one (0-based width 0): less is a negative width.
    if xmax < xmin - 1 or ymax < ymin - 1:
        which = f"xmax={xmax:g} < xmin={xmin:g}" if xmax < xmin - 1 else f"ymax={ymax:g} < ymin={ymin:g}"
        raise InvalidAnnotationError(f"{where}:{el.sourceline}",
                                     f"<bndbox> has {which}; expected xmin <= xmax (1-based, inclusive: "
                                     "xmax = xmin - 1 is an empty box, less a negative width)")
    return [_minus1(xmin, texts["xmin"]), _minus1(ymin, texts["ymin"]), xmax, ymax]


def _minus1(x: float, text: str) -> float:
    """``text - 1`` rounded once, so that :func:`_plus1_text` inverts it exactly.

    ``float(text) - 1.0`` rounds twice when the result falls into a finer binade
    (``1.62 - 1`` gives ``0.6200000000000001``); then the subtraction is done in
    decimal. Integers and values >= 2 that stay in their binade take the fast path.
    """
    if x.is_integer():
        if len(text) < 16:  # a non-integral decimal rounding to an integer needs 17 digits
            return x - 1.0
    elif x >= 2.0:
        m, e = math.frexp(x - 1.0)
        # x and x - 1 strictly inside one binade: the grid is the same, x - 1 is exact
        if e == math.frexp(x)[1] and m != 0.5:
            return x - 1.0
    return float(Decimal(text.strip()) - 1)


def _plus1_text(x: float) -> str:
    """The VOC text of a 0-based ``x``: ``x + 1`` computed in decimal from ``repr(x)``,
    so that :func:`_minus1` of it gives back ``x`` exactly."""
    x = float(x)
    if x.is_integer() and abs(x) < 2 ** 53:
        return str(int(x) + 1)
    d = Decimal(repr(x)) + 1
    short = _fmt(float(d))  # the shortest text usually suffices; the exact decimal always does
    return short if _minus1(float(short), short) == x else str(d)


def _raw(el) -> str:
    from lxml import etree

    return etree.tostring(el, encoding="unicode", with_tail=False)


def _parse_object(obj, where: str) -> tuple[str, list[float], bool, bool, dict]:
    name = None
    box = None
    difficult = False
    crowd = False
    ex: dict[str, Any] = {}
    for c in obj:
        tag = c.tag
        if tag == "name":
            t = c.text
            name = t.strip() if t else ""
        elif tag == "bndbox":
            box = _bndbox(c, where)
        elif tag == "difficult":
            t = c.text
            difficult = t == "1" if (t == "0" or t == "1") else bool(_flag(c, where))
        elif tag == "pose":
            t = c.text
            ex["pose"] = t.strip() if t else ""
        elif tag == "truncated" or tag == "occluded":
            t = c.text
            ex[tag] = 0 if t == "0" else 1 if t == "1" else _flag(c, where)
        elif tag == "iscrowd":
            crowd = bool(_flag(c, where))
        elif tag == "part":
            pname, pbox = None, None
            for pc in c:
                if pc.tag == "name":
                    pname = _text(pc)
                elif pc.tag == "bndbox":
                    pbox = _bndbox(pc, where)
            if pbox is None:
                raise InvalidAnnotationError(f"{where}:{c.sourceline}", "<part> without a <bndbox>")
            ex.setdefault("parts", []).append({"name": pname or "", "box": pbox})
        elif tag == "actions":
            ex["actions"] = {a.tag: _flag(a, where) for a in c if isinstance(a.tag, str)}
        elif tag == "point":
            ex["point"] = {p.tag: _number(p, where) for p in c if isinstance(p.tag, str)}
        elif tag == "attributes":
            # datumaro: <attributes><attribute><name>n</name><value>v</value></attribute>...
            attrs: dict[str, str] = {}
            for a in c:
                if a.tag == "attribute":
                    an = a.find("name")
                    av = a.find("value")
                    if an is not None:
                        attrs[_text(an)] = _text(av) if av is not None else ""
            ex["attributes"] = attrs
        elif isinstance(tag, str):
            ex.setdefault("unknown_xml", []).append(_raw(c))
    if not name:
        raise InvalidAnnotationError(f"{where}:{obj.sourceline}",
                                     "<object> has no <name> (or an empty one); expected a class name")
    if box is None:
        raise InvalidAnnotationError(f"{where}:{obj.sourceline}", f"<object> {name!r} has no <bndbox>")
    return name, box, difficult, crowd, ex


def _parse_xml_file(path: str, where: str, policy: ErrorPolicy):
    """One XML -> (extra, width, height, names, boxes, difficult, crowd, objextras, size_line).

    Raises MalformedFileError for a file that is not VOC XML; bad objects go through ``policy``.
    """
    from lxml import etree

    try:
        tree = etree.parse(path)
    except etree.XMLSyntaxError as err:
        if "Excessive depth" in err.msg:  # lxml's own advice (XML_PARSE_HUGE) is no fix for a user
            raise MalformedFileError(f"{where}:{err.lineno}", "elements nested deeper than 256 levels; expected "
                                                              "VOC's few levels") from None
        raise MalformedFileError(f"{where}:{err.lineno}", f"not well-formed XML ({err.msg})") from None
    except OSError as err:
        if "encoding" in str(err):  # lxml: bytes that are not UTF-8 (or the declared encoding)
            raise MalformedFileError(where, "holds bytes that are not valid in its encoding (UTF-8 unless its "
                                            "<?xml encoding=...?> says otherwise); expected UTF-8 text (fix: "
                                            "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8)") from None
        raise MalformedFileError(where, f"cannot read ({err})") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise MalformedFileError(f"{where}:{ann.sourceline}", f"expected root element <annotation>, found <{ann.tag}>")
    extra: dict[str, Any] = {}
    width = height = 0
    have_size = False
    names: list[str] = []
    boxes: list[list[float]] = []
    diff: list[bool] = []
    crowd: list[bool] = []
    oex: list[dict] = []
    for el in ann:
        tag = el.tag
        if tag == "object":
            try:
                n, b, d, c, ex = _parse_object(el, where)
            except FormatError as err:
                policy.handle(err)
                continue
            names.append(n)
            boxes.append(b)
            diff.append(d)
            crowd.append(c)
            oex.append(ex)
        elif tag == "size":
            w = h = None
            for c in el:
                if c.tag == "width":
                    w = c
                elif c.tag == "height":
                    h = c
                elif c.tag == "depth":
                    extra["depth"] = _flag(c, where)
            if w is not None and h is not None and _text(w) and _text(h):
                width = check_side(_number(w, where), f"{where}:{w.sourceline}", "<width>")
                height = check_side(_number(h, where), f"{where}:{h.sourceline}", "<height>")
                have_size = width > 0 and height > 0
        elif tag == "filename" or tag == "folder":
            extra[tag] = (el.text or "").strip()
        elif tag == "segmented":
            extra["segmented"] = _flag(el, where)
        elif tag == "source" or tag == "owner":
            # (c.text or "").strip() is _text(c) inlined: six of them per VOC2007 image
            extra[tag] = {c.tag: (c.text or "").strip() for c in el if isinstance(c.tag, str)}
        elif tag in _SOURCE_FIELDS:
            extra.setdefault("source", {})[tag] = _text(el)
        elif isinstance(tag, str):
            extra.setdefault("unknown_xml", []).append(_raw(el))
    return extra, width, height, have_size, names, boxes, diff, crowd, oex


def _image_relpath(stem: str, extra: Mapping[str, Any]) -> str:
    """``JPEGImages/<id><ext>``: the id is the XML stem (the devkit's rule; the mmdetection
    fixture's 000001.xml says ``<filename>000002.jpg``), the extension the ``<filename>``'s."""
    fn = extra.get("filename") or ""
    base, dot, ext = fn.rpartition(".")
    ext = f".{ext}" if dot and base and "/" not in ext else ".jpg"
    return f"{_IMG}/{stem}{ext}"


def _parse_chunk_gc_paused(items: Sequence[tuple[str, str]], **options: Any) -> dict[str, Any]:
    """:func:`_parse_chunk` with the cyclic GC paused (in a worker, the parent's pause does not reach)."""
    with _io.gc_paused():
        return _parse_chunk(items, **options)


def _parse_chunk(items: Sequence[tuple[str, str]], *, root: str, known: Mapping[str, int], mode: str,
                 masks: tuple[frozenset, frozenset], missing_size: str = "error", segmentation: bool = False,
                 cat_names: Sequence[str] = ()):
    """Parse a chunk of ``(stem, kind)`` items (in a worker); see :func:`_records_from_chunk`.

    Labels of names not in ``known`` are -1 and listed in ``"unknown"`` as
    ``(object index in the chunk, name)``: category ids are assigned in the parent,
    in file order, so that any number of workers gives the same ids.
    """
    policy = ErrorPolicy(mode)
    rootp = Path(root)
    root_s = str(rootp) + "/"
    chunk = _Chunk()
    obj_masks = masks[1]
    for stem, kind in items:
        where = f"{_ANN}/{stem}.xml"
        try:
            check_utf8_name(stem, where if kind == "xml" else f"{_IMG}/{stem}.*")
            if kind == "xml":
                extra, w, h, have_size, names, boxes, diff, crowd, oex = _parse_xml_file(
                    root_s + where, where, policy)
                rel = _image_relpath(stem, extra)
            else:  # listed in a split (or has a mask) but has no XML: an image without objects
                extra, w, h, have_size, names, boxes, diff, crowd, oex = {}, 0, 0, False, [], [], [], [], []
                rel = _find_image(rootp, stem)
                if rel is None:
                    raise MissingFileError(f"{_IMG}/{stem}.*", "listed in ImageSets but has neither "
                                           f"{where} nor an image file")
                where = rel
                extra["filename"] = rel.rsplit("/", 1)[1]  # what write() puts in the XML it creates
            if not have_size:
                w, h = _size_from_image(rootp, rel, where, missing_size)
            segm = None
            if stem in obj_masks and (kind != "xml" or segmentation):
                got = _mask_rles(rootp, stem, f"{_SEGOBJ}/{stem}.png")
                if kind == "xml":  # object k of the XML <-> value k+1 of the PNG
                    segm = [got[k + 1][0] if k + 1 in got else None for k in range(len(names))]
                else:  # no XML: the masks are the only annotation; objects come from them
                    segm = _objects_from_masks(got, stem, cat_names, policy, names, boxes, diff, crowd, oex)
            labels = []
            keep = []
            for i, n in enumerate(names):
                b = boxes[i]
                if w and h and (b[0] < -_BOX_TOLERANCE or b[1] < -_BOX_TOLERANCE
                                or b[2] > w + _BOX_TOLERANCE or b[3] > h + _BOX_TOLERANCE):
                    try:
                        raise InvalidAnnotationError(
                            where, f"object {i + 1} ({n!r}) box xmin,ymin,xmax,ymax="
                            f"{_plus1_text(b[0])},{_plus1_text(b[1])},{_fmt(b[2])},{_fmt(b[3])} lies outside the "
                            f"{w}x{h} image; expected 1 <= x <= {w}, 1 <= y <= {h} (1 px tolerance)",
                            kind="box_outside_image")
                    except FormatError as err:
                        policy.handle(err)
                        continue
                keep.append(i)
                labels.append(known.get(n, -1))
            if len(keep) != len(names):
                pick = lambda lst: [lst[i] for i in keep]  # noqa: E731
                names, boxes, diff, crowd, oex = pick(names), pick(boxes), pick(diff), pick(crowd), pick(oex)
                if segm is not None:
                    segm = pick(segm)
            chunk.add(stem, rel, w, h, extra, segm, names, labels, boxes, diff, crowd, oex)
        except FormatError as err:
            policy.handle(err)
    return chunk.finish(policy)


def _size_from_image(rootp: Path, rel: str, where: str, missing_size: str) -> tuple[int, int]:
    """(width, height) of an annotation without ``<size>``: the image's header, else 0x0 when
    ``missing_size="zero"`` (datumaro's voc_dataset2), else an error."""
    img = rootp / rel
    if img.is_file():
        return _io.image_size(img)
    if missing_size == "zero":
        return 0, 0
    raise InvalidAnnotationError(
        where, f"no <size> (or an empty one) and no image {rel} to read the size from; "
        "expected <size><width>W</width><height>H</height></size> (pass "
        "missing_size='zero' to accept an unknown size)")


def _objects_from_masks(got: Mapping[int, tuple], stem: str, cat_names: Sequence[str], policy: ErrorPolicy,
                        names: list, boxes: list, diff: list, crowd: list, oex: list) -> list:
    """The objects of an image without an XML, from its masks (:func:`_mask_rles`' ``got``),
    appended to the object lists; returns their RLEs. A class index outside the classes is
    handled by ``policy`` and its object left out."""
    for k in sorted(got):
        rle, box, c = got[k]
        if not 1 <= c <= len(cat_names):
            policy.handle(InvalidAnnotationError(
                f"{_SEGOBJ}/{stem}.png", f"object {k} has class index {c} in {_SEGCLS}; "
                f"expected 1..{len(cat_names)}"))
            continue
        names.append(cat_names[c - 1])
        boxes.append(box)
        diff.append(False)
        crowd.append(False)
        oex.append({})
    return [got[k][0] for k in sorted(got) if 1 <= got[k][2] <= len(cat_names)]


class _Chunk:
    """A worker's parsed images as flat per-chunk lists: pickling one Record per image back
    from a worker costs as much as parsing the XML; flat lists and one array per chunk do not."""

    def __init__(self) -> None:
        self.stem: list[str] = []
        self.rel: list[str] = []
        self.w: list[int] = []
        self.h: list[int] = []
        self.extra: list[dict] = []
        self.count: list[int] = []
        self.segm: list[list | None] = []
        self.boxes: list[list[float]] = []
        self.labels: list[int] = []
        self.diff: list[bool] = []
        self.crowd: list[bool] = []
        self.oex: list[dict] = []
        self.unknown: list[tuple[int, str]] = []

    def add(self, stem: str, rel: str, w: int, h: int, extra: dict, segm: list | None, names: list,
            labels: list, boxes: list, diff: list, crowd: list, oex: list) -> None:
        self.stem.append(stem)
        self.rel.append(rel)
        self.w.append(w)
        self.h.append(h)
        self.extra.append(extra)
        self.count.append(len(names))
        self.segm.append(segm)
        for i, lab in enumerate(labels):
            if lab == -1:
                self.unknown.append((len(self.labels) + i, names[i]))
        self.boxes.extend(boxes)
        self.labels.extend(labels)
        self.diff.extend(diff)
        self.crowd.extend(crowd)
        self.oex.extend(oex)

    def finish(self, policy: ErrorPolicy) -> dict[str, Any]:
        m = len(self.labels)
        return {"stem": self.stem, "rel": self.rel, "w": self.w, "h": self.h, "extra": self.extra,
                "count": self.count, "segm": self.segm, "boxes": np.array(self.boxes, np.float64).reshape(m, 4),
                "labels": np.array(self.labels, np.int64), "difficult": np.array(self.diff, bool),
                "iscrowd": np.array(self.crowd, bool), "oex": self.oex, "unknown": self.unknown, "policy": policy}


def _records_from_chunk(c: Mapping[str, Any], split_of: Mapping[str, str],
                        masks: tuple[frozenset, frozenset]) -> list[Record]:
    """Build the Records of one parsed chunk (in the parent process)."""
    cls_masks, obj_masks = masks
    out = []
    a = 0
    boxes, labels, diff, crowd, oex = c["boxes"], c["labels"], c["difficult"], c["iscrowd"], c["oex"]
    m = len(labels)
    ids, area = np.full(m, -1, np.int64), np.full(m, np.nan)  # VOC has neither; one array per chunk
    # Built by the trusted constructors (as coco.parse does): the arrays are typed and shaped per
    # chunk already, and validating them again per image costs as much as a fifth of the parse.
    new_inst, new_rec = Instances._trusted, Record._trusted
    for stem, rel, w, h, extra, n, segm in zip(c["stem"], c["rel"], c["w"], c["h"], c["extra"], c["count"],
                                               c["segm"]):
        b = a + n
        ex = oex[a:b]
        inst = new_inst(boxes=boxes[a:b], labels=labels[a:b], iscrowd=crowd[a:b], difficult=diff[a:b],
                        ids=ids[a:b], area=area[a:b], segmentation=segm, extra=ex if any(ex) else None)
        rec = new_rec(id=f"{_IMG}/{stem}", path=rel, width=w, height=h, split=split_of.get(stem), instances=inst,
                      mask_path=f"{_SEGCLS}/{stem}.png" if stem in cls_masks else None,
                      instance_mask_path=f"{_SEGOBJ}/{stem}.png" if stem in obj_masks else None, extra=extra)
        out.append(rec)
        a = b
    return out


def _mask_rles(root: Path, stem: str, where: str) -> dict[int, tuple[dict, list[float], int]]:
    """Object index -> (compressed RLE, tight box, class index) from SegmentationObject (+ Class).

    VOC convention: SegmentationObject value k is the k-th ``<object>`` of the XML
    (1-based); 0 is background and 255 void (borders, difficult regions), which
    belong to no object. The class of object k is the most frequent
    SegmentationClass value under it (0 when that mask is absent).
    """
    from ..masks import segments_from_id_map

    obj = _read_mask(root / _SEGOBJ / f"{stem}.png")
    cls_path = root / _SEGCLS / f"{stem}.png"
    cls = _read_mask(cls_path) if cls_path.is_file() else None
    if cls is not None and cls.shape != obj.shape:
        raise InvalidAnnotationError(where, f"{_SEGCLS} is {cls.shape[1]}x{cls.shape[0]} but {_SEGOBJ} "
                                     f"is {obj.shape[1]}x{obj.shape[0]}; expected the same size")
    seg = segments_from_id_map(obj, lambda v: (v != 0) & (v != VOID))
    classes = np.zeros(256, np.int64)
    if cls is not None and len(seg):
        # per object value, the most frequent class under it (ties: the lowest, as argmax picks)
        o, c = obj.ravel().astype(np.int64), cls.ravel().astype(np.int64)
        valid = (c != 0) & (c != VOID)
        votes = np.bincount(o[valid] * 256 + c[valid], minlength=256 * 256).reshape(256, 256)
        classes = votes.argmax(axis=1)
    return {int(k): (rle, box, int(classes[k]))
            for k, rle, box in zip(seg.values.tolist(), seg.rles, seg.boxes.tolist())}


def _find_image(root: Path, stem: str) -> str | None:
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp"):
        if (root / _IMG / f"{stem}{ext}").is_file():
            return f"{_IMG}/{stem}{ext}"
    return None


def _fmt(v: float) -> str:
    """A VOC coordinate: an integer where integral, else the shortest repr that round-trips."""
    v = float(v)
    if v.is_integer() and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v)


def parse_options_for(target: str) -> dict[str, Any]:
    """Parse options a conversion to ``target`` needs (used by :func:`dsprep.convert`).

    Formats that hold per-object masks (COCO, COCO panoptic) get the
    ``SegmentationObject`` masks decoded into each object's segmentation, so
    ``convert voc --to coco`` keeps masks; a plain parse reads annotations only.
    """
    return {"segmentation": True} if target in ("coco", "coco-panoptic") else {}


def _png_stems(folder: Path) -> frozenset:
    """The stems of the PNGs in a mask folder (empty when there is none)."""
    return frozenset(n[:-4] for n in os.listdir(folder) if n.endswith(".png")) if folder.is_dir() else frozenset()


def _items_to_read(xml_stems: list[str], splits: Mapping[str, list[str]], split: str | None,
                   masks: tuple[frozenset, frozenset]) -> list[tuple[str, str]]:
    """``(stem, "xml" | "image")`` of the images to read: every XML (or only the asked split's),
    plus split-listed ids and, in a tree without XMLs, mask PNGs, that have no XML."""
    xml_set = set(xml_stems)
    if split is not None:
        wanted = list(dict.fromkeys(splits[split]))
    else:
        extra_ids = [s for ids in splits.values() for s in ids if s not in xml_set]
        if not xml_stems:
            extra_ids += sorted(masks[0] | masks[1])
        wanted = xml_stems + list(dict.fromkeys(s for s in extra_ids if s not in xml_set))
    return [(s, "xml" if s in xml_set else "image") for s in wanted]


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: Any = "raise",
          workers: int | None = None, progress: bool | None = None, class_lists: str = "check",
          missing_size: str = "error", segmentation: bool = False, allow_outside_root: bool = False,
          **options: Any) -> Dataset:
    """Read a VOC tree into records.

    Args:
        path: the ``VOC20XX`` directory (or a ``VOCdevkit`` holding exactly one).
        split: read only this ``ImageSets/Main`` split (records get ``split=split``).
        on_error: ``"raise"`` (first bad item) or ``"warn"`` (skip bad objects/files; the
            count is ``dataset.info["skipped"]``).
        workers: processes for the XMLs (default all cores; results equal ``workers=1``).
        progress: show a bar (default: when stderr is a terminal).
        class_lists: ``"check"`` cross-checks ``<class>_<split>.txt`` (1/0/-1) against the
            objects and counts disagreements in ``info["voc_class_list_mismatches"]``;
            ``"skip"`` does not read them.
        missing_size: what to do with an XML without ``<size>`` whose image is absent
            too: ``"error"`` (InvalidAnnotationError) or ``"zero"`` (width = height = 0).
        segmentation: also decode ``SegmentationObject`` PNGs into a per-object RLE
            (object k of the XML = value k in the PNG). Off by default: parsing then
            reads annotations only. A tree without XMLs (labelme's instance
            segmentation export) always takes its objects from the masks.
        allow_outside_root: accept an ``ImageSets`` id that leaves ``JPEGImages/``
            (``../../x``, an absolute path); by default it is a
            :class:`~dsprep.errors.PathEscapeError` naming the list and the id.
            ``<filename>`` contributes only its extension, so it cannot move an image.

    Returns:
        A :class:`~dsprep.records.Dataset` (``format="voc"``, ``root`` = the VOC20XX dir).

    Raises:
        DatasetNotFoundError: no VOC tree at ``path``.
        FormatError: bad input (the file and XML line are named), in ``"raise"`` mode.

    Example:
        >>> ds = parse("VOCdevkit/VOC2007", split="val", workers=2)  # doctest: +SKIP
        >>> ds.records[0].instances.boxes[0]  # doctest: +SKIP
        array([ 47., 239., 195., 371.])
    """
    if options:
        log.debug("voc.parse ignores options %s", sorted(options))
    check_choice("class_lists mode", class_lists, ("check", "skip"))
    check_choice("missing_size mode", missing_size, ("error", "zero"))
    policy = ErrorPolicy(on_error)
    path = Path(path)
    root = _find_root(path) if path.exists() else None
    if root is None:
        raise DatasetNotFoundError(f"{path}: not a VOC tree; expected {path}/Annotations/*.xml "
                                   f"(or a VOCdevkit directory holding one VOC20XX directory)")
    ann_dir = root / _ANN
    xml_stems = sorted(n[:-4] for n in os.listdir(ann_dir) if n.endswith(".xml")) if ann_dir.is_dir() else []
    splits, per_class = _read_splits(root, _MAIN)
    seg_splits, _ = _read_splits(root, _SEGSETS)
    splits = _confined_ids(splits, _MAIN, root, policy, allow_outside_root)
    seg_splits = _confined_ids(seg_splits, _SEGSETS, root, policy, allow_outside_root)

    masks = (_png_stems(root / _SEGCLS), _png_stems(root / _SEGOBJ))
    if not splits and not xml_stems and seg_splits:
        splits = dict(seg_splits)  # a segmentation-only tree: its lists are the splits
    if split is not None:
        if not splits:
            raise UnknownNameError(f"Unknown split {split!r}: {root} has no ImageSets/Main/<split>.txt lists "
                                   "(every image is read when split is None)")
        check_choice("split", split, splits)
        splits = {split: splits[split]}
    items = _items_to_read(xml_stems, splits, split, masks)
    # Record.split: a single name (the first split, in train/val/trainval/test order, that lists it).
    split_of: dict[str, str] = {}
    for name, ids in splits.items():
        for s in ids:
            split_of.setdefault(s, name)

    labelmap = _read_labelmap(root)
    names = list(labelmap) if labelmap else list(VOC_CLASSES)
    known = {n: i + 1 for i, n in enumerate(names)}
    fn = functools.partial(_parse_chunk_gc_paused, root=str(root), known=known, mode=policy.mode, masks=masks,
                           missing_size=missing_size,
                           segmentation=segmentation, cat_names=tuple(names))
    # XML trees, per-object dicts and records are acyclic: the cyclic GC would only rescan them
    with _io.gc_paused():
        results = _io.parallel_map(fn, items, workers=workers, chunk=max(64, min(512, len(items) // 8 + 1)),
                                   desc="VOC XML", show_progress=progress)
        records: list[Record] = []
        for chunk in results:
            policy.merge(chunk["policy"])
            for i, n in chunk["unknown"]:
                if n not in known:
                    known[n] = len(known) + 1
                    names.append(n)
                    if labelmap:
                        stem = chunk["stem"][int(np.searchsorted(np.cumsum(chunk["count"]), i, side="right"))]
                        policy.note("class_not_in_labelmap", f"{_ANN}/{stem}.xml",
                                    f"class {n!r} is not in labelmap.txt; read as category {known[n]}, after the "
                                    "labelmap's classes (fix: add it to labelmap.txt)")
                chunk["labels"][i] = known[n]
            records.extend(_records_from_chunk(chunk, split_of, masks))
    present = {r.id[len(_IMG) + 1:] for r in records}
    ds_splits = {k: [f"{_IMG}/{s}" for s in dict.fromkeys(v) if s in present] for k, v in splits.items()}
    info: dict[str, Any] = {"skipped": policy.count}
    if root.name.upper().startswith("VOC") and root.name[3:].isdigit():
        info["voc_year"] = root.name[3:]
    if seg_splits:
        info["voc_segmentation_splits"] = {k: [f"{_IMG}/{s}" for s in v] for k, v in seg_splits.items()}
    if per_class:
        info["voc_class_lists"] = sorted(per_class)
        if class_lists == "check":
            info["voc_class_list_mismatches"] = _check_class_lists(per_class, records, known, splits, policy)
    if labelmap:
        info["voc_labelmap"] = True
    # after the class-list check, which compares labels 1..N (``known``) with the lists
    categories = _restored_ids([Category(i + 1, n) for i, n in enumerate(names)], records, root)
    if not labelmap:  # the 20 standard classes, whether the tree uses them or not: not "unused" (dsprep validate)
        info["builtin_categories"] = [c.id for c in categories[:len(VOC_CLASSES)]]  # (ids as restored)
    policy.summary("VOC objects/files")
    return Dataset(categories, records, splits=ds_splits, info=info, root=root, format=NAME)


def _restored_ids(categories: list[Category], records: list[Record], root: Path) -> list[Category]:
    """The category ids and supercategories ``dsprep convert`` wrote to ``category_map.json``
    beside the tree, when it names exactly these classes; else ``categories`` as they are
    (1..N). Object labels follow."""
    cmap = read_category_map(root)
    if cmap is None or not {c.name for c in categories} <= set(cmap) or \
            not set(cmap) - {c.name for c in categories} <= set(BACKGROUND_NAMES):
        return categories
    lut = np.array([0] + [cmap[c.name]["id"] for c in categories], np.int64)  # 1..N -> written id
    for r in records:
        if len(r.instances):
            r.instances.labels = lut[r.instances.labels]
    return [Category(cmap[c.name]["id"], c.name, cmap[c.name]["supercategory"]) for c in categories]


def _check_class_lists(per_class: Mapping[str, Path], records: Sequence[Record], known: Mapping[str, int],
                       splits: Mapping[str, Any], policy: ErrorPolicy) -> int:
    """Count lines of ``<class>_<split>.txt`` that disagree with the objects.

    Devkit meaning: 1 = a non-difficult object of the class is present, 0 = only
    difficult ones, -1 = none. Lists of classes no XML names (datumaro's
    ``background``, ``ignored``) are read too: every ``1`` there is a mismatch.
    Ids without an XML are not checked. VOC2007 has 80 such files of 2.5k-5k
    lines, so the comparison is done per file with numpy, not per line.
    """
    row = {r.id[len(_IMG) + 1:]: i for i, r in enumerate(records)}
    ncls = max(known.values(), default=0) + 1
    expected = np.full((len(records) + 1, ncls), -1, np.int8)  # last row: ids without an XML
    counts = [r.instances.boxes.shape[0] for r in records]
    if sum(counts):
        labs = np.concatenate([r.instances.labels for r in records])
        flags = np.where(np.concatenate([r.instances.difficult for r in records]), 0, 1).astype(np.int8)
        rows = np.repeat(np.arange(len(records)), counts)
        ok = (labs > 0) & (labs < ncls)
        np.maximum.at(expected, (rows[ok], labs[ok]), flags[ok])
    bad = 0
    first = None
    cache: dict[str, tuple[list[str], np.ndarray]] = {}
    for stem, path in per_class.items():
        cls, _, sp = stem.rpartition("_")
        cid = known.get(cls, 0)
        try:
            data = read_utf8(path, f"{_MAIN}/{stem}.txt")
        except FormatError as err:
            policy.handle(err)
            continue
        if "#" in data:
            data = "\n".join(t for t in data.splitlines() if not t.lstrip().startswith("#"))
        tokens = data.split()
        ids, vals = tokens[0::2], tokens[1::2]
        if len(ids) != len(vals):
            log.warning("%s/%s.txt: expected '<id> <-1|0|1>' lines; not checked", _MAIN, stem)
            continue
        cached = cache.get(sp)
        if cached is None or cached[0] != ids:  # the lists of one split share their ids and order
            cached = cache[sp] = (ids, np.array([row.get(x, len(records)) for x in ids], np.int64))
        cached_rows = cached[1]
        try:
            got = np.array(vals, dtype=np.int64) if vals else np.zeros(0, np.int64)
        except ValueError:
            log.warning("%s/%s.txt: a flag is not -1, 0 or 1; not checked", _MAIN, stem)
            continue
        exp = expected[cached_rows, cid] if cid else np.full(len(ids), -1, np.int8)
        diff = (got != exp) & (cached_rows < len(records))
        n = int(diff.sum())
        if n:
            bad += n
            if first is None:
                k = int(np.flatnonzero(diff)[0])
                first = f"{_MAIN}/{stem}.txt: {ids[k]} says {vals[k]}, the XML says {int(exp[k])}"
    if bad:
        log.warning("%d lines of the per-class lists disagree with the XML objects (first: %s)", bad, first)
    return bad


# --------------------------------------------------------------------------- masks

def _read_mask(path: Path) -> np.ndarray:
    """A mask PNG as class/instance indices: P and L as stored; RGB through the VOC palette."""
    from ..masks import read_label_png

    return read_label_png(path, "mask PNG", palette=VOC_PALETTE)


def _save_mask(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(VOC_PALETTE.ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, optimize=False)


def _rasterise(inst: Instances, h: int, w: int, index_of: Mapping[int, int],
               lost: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Class and object masks from polygons/RLE (painter's order: later objects on top).

    One index per pixel cannot hold overlapping objects: pixels of an object
    covered by a later one are lost from it, and counted in ``lost``.
    """
    if inst.segmentation is None or not any(s is not None for s in inst.segmentation):
        return None
    from ..masks import segmentation_mask

    cls = np.zeros((h, w), np.uint8)
    obj = np.zeros((h, w), np.uint8)
    painted: list[tuple[int, int]] = []  # (object value, its pixel count)
    for k, s in enumerate(inst.segmentation):
        m = segmentation_mask(s, h, w, on_size_mismatch="none")
        if m is None:  # no shape, or an RLE of another size
            continue
        m = m.astype(bool)
        cls[m] = index_of.get(int(inst.labels[k]), VOID)
        obj[m] = min(k + 1, 254)
        painted.append((min(k + 1, 254), int(m.sum())))
    if lost is not None and painted:
        final = np.bincount(obj.ravel(), minlength=256)
        hidden = sum(1 for v, n in painted if final[v] < n)
        if hidden:
            lost["object mask pixels hidden by later, overlapping objects (objects)"] = \
                lost.get("object mask pixels hidden by later, overlapping objects (objects)", 0) + hidden
    return cls, obj


# --------------------------------------------------------------------------- writing

def _sub(parent, tag: str, text: Any = None):
    from lxml import etree

    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _box_el(parent, box: Sequence[float]) -> None:
    bb = _sub(parent, "bndbox")
    x0, y0, x1, y1 = (float(v) for v in box)
    _sub(bb, "xmin", _plus1_text(x0))
    _sub(bb, "ymin", _plus1_text(y0))
    _sub(bb, "xmax", _fmt(x1))
    _sub(bb, "ymax", _fmt(y1))


def _flag_text(v: Any) -> str | None:
    return None if v is None or v == "" else _fmt(v) if isinstance(v, float) else str(v)


def _xml_for(rec: Record, filename: str, names: Mapping[int, str], segmented: int | None,
             lost: dict[str, int], exact: bool) -> bytes:
    """The XML of one record. ``exact`` (the record came from a VOC XML, directly or through
    another format that kept its extra fields): write the fields the source had and only
    those, so that parse(write(parse(x))) == parse(x); otherwise write the devkit's shape
    with its defaults (pose Unspecified, truncated 0, depth 3)."""
    from lxml import etree

    ex = rec.extra or {}
    ann = etree.Element("annotation")
    if "folder" in ex:
        _sub(ann, "folder", ex["folder"])
    if not exact or "filename" in ex:
        _sub(ann, "filename", filename)
    for key in ("source", "owner"):
        if isinstance(ex.get(key), Mapping):
            el = _sub(ann, key)
            for k, v in ex[key].items():
                _sub(el, k, v)
    if rec.width or rec.height:
        size = _sub(ann, "size")
        _sub(size, "width", int(rec.width))
        _sub(size, "height", int(rec.height))
        if "depth" in ex:
            _sub(size, "depth", _flag_text(ex["depth"]))
        elif not exact:
            _sub(size, "depth", 3)
    if "segmented" in ex:
        _sub(ann, "segmented", _flag_text(ex["segmented"]))
    elif not exact:
        _sub(ann, "segmented", segmented or 0)
    inst = rec.instances
    oex = inst.extra or [None] * len(inst)
    boxes = inst.boxes.tolist()
    for k in range(len(inst)):
        o = oex[k] or {}
        obj = _sub(ann, "object")
        _sub(obj, "name", _class_name(names, int(inst.labels[k]), rec, k))
        _sub(obj, "pose", o.get("pose", "Unspecified")) if (not exact or "pose" in o) else None
        if not exact or "truncated" in o:
            _sub(obj, "truncated", _flag_text(o.get("truncated", 0)))
        if "occluded" in o:
            _sub(obj, "occluded", _flag_text(o["occluded"]))
        _sub(obj, "difficult", int(bool(inst.difficult[k])))
        if inst.iscrowd[k]:
            _sub(obj, "iscrowd", 1)  # non-standard: the devkit ignores it, parse() reads it back
        _box_el(obj, boxes[k])
        for part in o.get("parts") or ():
            p = _sub(obj, "part")
            _sub(p, "name", part.get("name", ""))
            _box_el(p, part["box"])
        if isinstance(o.get("actions"), Mapping):
            a = _sub(obj, "actions")
            for kk, v in o["actions"].items():
                _sub(a, kk, _flag_text(v))
        if isinstance(o.get("point"), Mapping):
            p = _sub(obj, "point")
            for kk, v in o["point"].items():
                _sub(p, kk, _fmt(v))
        if isinstance(o.get("attributes"), Mapping):
            a = _sub(obj, "attributes")
            for kk, v in o["attributes"].items():
                at = _sub(a, "attribute")
                _sub(at, "name", kk)
                _sub(at, "value", _attr_text(v))
        for raw in o.get("unknown_xml") or ():
            obj.append(etree.fromstring(raw))
        other = [key for key in o if key not in _OBJECT_KEYS]
        if other:
            lost["object fields (" + ", ".join(sorted(other)) + ")"] = \
                lost.get("object fields (" + ", ".join(sorted(other)) + ")", 0) + 1
    for raw in ex.get("unknown_xml") or ():
        ann.append(etree.fromstring(raw))
    etree.indent(ann, space="  ")
    return etree.tostring(ann, encoding="utf-8", xml_declaration=False, pretty_print=True)


def _class_name(names: Mapping[int, str], label: int, rec: Record, k: int) -> str:
    """Object ``k``'s ``<name>``: VOC readers strip it, so an empty name or one with surrounding
    spaces would read back as another class."""
    name = names.get(label, str(label))
    if not name or name != name.strip():
        raise InvalidAnnotationError(rec.path, f"object {k} is of category {label} named {name!r}; a VOC <name> "
                                               "is read stripped of surrounding spaces, so expected a name "
                                               "without them (fix: rename the category in the source)")
    return name


def _from_voc(rec: Record) -> bool:
    """Whether a record carries the image-level fields parse() puts in ``extra`` (so it came
    from a VOC XML, e.g. VOC -> COCO -> VOC with the COCO writer keeping extra fields)."""
    ex = rec.extra
    return bool(ex) and any(k in ex for k in ("filename", "folder", "source", "owner", "segmented", "depth"))


def _attr_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _fmt(v)
    return str(v)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


_SPACE = re.compile(r"\s+")


def _listable(name: str) -> str:
    """``name`` as an ``ImageSets`` line reads it back: whitespace separates a line's fields and a
    leading ``#`` makes a comment, so both become ``_`` (an empty name too)."""
    name = _SPACE.sub("_", name)
    return "_" + name[1:] if name.startswith("#") else (name or "_")


def _names_for(records: Sequence[Record]) -> tuple[list[str], int]:
    """The XML/image name of each record: the path stem; clashing stems (two ``0001.jpg`` in
    different folders) become the record id with ``/`` -> ``_``, and a stem too long for a file
    name is cut with a hash (:func:`dsprep._checks.fit_name`). Returns (names, renamed)."""
    stems = [_listable(fit_name(Path(r.path).stem, 200)) for r in records]
    count: dict[str, int] = {}
    for s in stems:
        count[s] = count.get(s, 0) + 1
    out, renamed = [], 0
    used: set[str] = set()
    for r, s in zip(records, stems):
        name = s
        if count[s] > 1:
            name = fit_name(_SAFE.sub("_", r.id.replace("/", "_")).strip("_"), 200) or s
            renamed += 1
        elif s != Path(r.path).stem:
            renamed += 1
        base, i = name, 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        out.append(name)
    return out, renamed


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          on_error: str = "raise", **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as a VOC devkit tree into the existing directory ``dest``.

    Writes ``Annotations/<name>.xml``, ``JPEGImages/<name><ext>`` (by ``images``:
    ``link``, ``copy`` or ``none``), ``ImageSets/Main/<split>.txt`` and
    ``<class>_<split>.txt`` for every split, and, for records with masks (mask
    files, or polygons/RLE that are rasterised), ``SegmentationClass`` /
    ``SegmentationObject`` palette PNGs and ``ImageSets/Segmentation`` lists
    (exactly the images given a ``SegmentationClass``, which alone get
    ``<segmented>1``). Another format's semantic mask is mapped to VOC class
    indices when ``dataset.info["mask_category_names"]`` names the category of
    each of its values (Cityscapes labelIds), else counted lost. Masks of
    records flagged ``extra["dummy_labels"]`` (the Cityscapes test split) are
    placeholders: never written, counted lost.
    A ``labelmap.txt`` (datumaro's format) is written when the categories are not
    exactly the 20 VOC classes in order, so that :func:`parse` restores their order.

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: how images are placed.
        on_error: ``"raise"`` on a missing image file, or ``"warn"`` (counted in the report).

    Returns:
        ``{"images", "objects", "lost": {what: n}, "renamed", "missing_images", "masks"}``.

    Raises:
        MissingFileError: an image to place does not exist (``on_error="raise"``).

    Example:
        >>> write(parse("VOC2007"), "out/", images="none")  # doctest: +SKIP
        {'images': 9963, 'objects': 24640, 'lost': {}, ...}
    """
    if options:
        log.debug("voc.write ignores options %s", sorted(options))
    _io.check_images_mode(images)
    policy = ErrorPolicy(on_error)
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else None
    names_by_id = {c.id: c.name for c in dataset.categories}
    # SegmentationClass index = position in category order + 1 (canonical VOC order for VOC data);
    # a background category (labelme's _background_) is VOC's index 0, not class 1.
    classes = [c for c in dataset.categories if c.name not in BACKGROUND_NAMES]
    index_of = {c.id: 0 for c in dataset.categories}
    index_of.update({c.id: (i + 1 if i < 254 else VOID) for i, c in enumerate(classes)})
    foreign_luts = {} if dataset.format == NAME else _foreign_mask_luts(dataset, index_of)
    lost: dict[str, int] = {}
    records = dataset.records
    fnames, renamed = _names_for(records)
    if renamed:
        log.warning("voc: %d images share a file name with another; named after their record id instead", renamed)
        lost["image file names (shared with another image, or not a VOC name: renamed)"] = renamed
    exact = dataset.format == NAME
    output_path(dest, _ANN, folder=True)
    name_of: dict[str, str] = {}
    mask_names: list[str] = []
    missing = 0
    n_obj = 0
    # VOC keeps class names only: other category fields (LVIS frequency/synset, COCO keypoint names) are lost
    cat_fields = sorted({k for c in dataset.categories for k in (c.extra or {})})
    if cat_fields:
        lost[f"category fields ({', '.join(cat_fields)})"] = sum(bool(c.extra) for c in dataset.categories)
    for rec, name in _io.progress(list(zip(records, fnames)), total=len(records), desc="VOC write",
                                  enabled=progress):
        name_of[rec.id] = name
        ext = os.path.splitext(rec.path)[1] or ".jpg"
        img_rel = f"{_IMG}/{name}{ext}"
        if images != "none":
            missing += _place_image(rec, src_root, dest, img_rel, images, policy)
        segmented = None
        inst = rec.instances
        has_class = _write_masks(rec, name, dataset, dest, src_root, index_of, foreign_luts, lost)
        if has_class:  # ImageSets/Segmentation lists exactly the images with a SegmentationClass
            mask_names.append(name)
            segmented = 1
        ex = rec.extra or {}
        filename = ex.get("filename") if ("filename" in ex and Path(rec.path).stem == name) else f"{name}{ext}"
        output_path(dest, f"{_ANN}/{name}.xml", what="annotation").write_bytes(
            _checked_xml(rec, filename, names_by_id, segmented, lost, exact or _from_voc(rec), images))
        n_obj += len(inst)
        _count_lost(rec, lost)
    # Split lists.
    if dataset.splits:
        by_id = dataset.record_by_id()
        for split, ids in dataset.splits.items():
            ids = [i for i in ids if i in name_of]
            output_path(dest, f"{_MAIN}/{split}.txt", what="split list").write_text(
                "".join(f"{name_of[i]}\n" for i in ids), encoding="utf-8")
            no_list = _write_class_lists(dest, split, [(name_of[i], by_id[i].instances) for i in ids],
                                         dataset.categories)
        if no_list:
            log.warning("voc: no ImageSets/Main/<class>_<split>.txt for %d class name(s) that cannot name a file "
                        "(empty, holding '/' or NUL, or longer than 255 bytes), e.g. %.60r; their XMLs hold them",
                        len(no_list), no_list[0])
    if mask_names:
        have = set(mask_names)
        src_seg = dataset.info.get("voc_segmentation_splits") if dataset.format == NAME else None
        groups = src_seg or dataset.splits
        if groups:
            for split, ids in groups.items():
                lines = [name_of[i] for i in ids if i in name_of and name_of[i] in have]
                if not lines and not exact:  # a split without masks (Cityscapes test) gets no list
                    continue
                output_path(dest, f"{_SEGSETS}/{split}.txt", what="split list").write_text(
                    "".join(f"{n}\n" for n in lines), encoding="utf-8")
    if [c.name for c in classes] != list(VOC_CLASSES):
        _write_labelmap(dest, classes)
    _count_lost_categories(dataset, classes, dest, lost)
    policy.summary("images")
    report: dict[str, Any] = {"images": len(records), "objects": n_obj, "lost": lost,
                              "renamed": renamed, "missing_images": missing, "masks": len(mask_names)}
    return report


def _count_lost_categories(dataset: Dataset, classes: list[Category], dest: Path, lost: dict[str, int]) -> None:
    """Count in ``lost`` what the categories lose: background ones, and ids and supercategories
    that ``category_map.json`` beside ``dest`` does not restore."""
    if len(classes) < len(dataset.categories):
        lost["categories named as background (VOC's index 0, not a class)"] = len(dataset.categories) - len(classes)
    # VOC XML holds class names; a VOC reader numbers them 1..N in category order (canonical
    # order for the 20 VOC classes). Ids that differ do not survive, and say so.
    # dsprep convert writes them to category_map.json (beside, first), which parse() reads back.
    if not restorable(dest, classes):
        changed = sum(1 for i, c in enumerate(classes) if c.id != i + 1)
        if changed:
            lost["category ids (VOC stores names; re-read ids are 1..N in category order)"] = changed
        supers = sum(1 for c in classes if c.supercategory)
        if supers:
            lost["category supercategories (VOC stores names only)"] = supers


def _place_image(rec: Record, src_root: Path | None, dest: Path, img_rel: str, images: str,
                 policy: ErrorPolicy) -> int:
    """Place one record's image at ``img_rel``; 1 when it is missing (handled by ``policy``), else 0."""
    src = (src_root / rec.path) if src_root is not None else Path(rec.path)
    if _io.place_image(src, dest, img_rel, images):
        return 0
    try:
        raise MissingFileError(str(src), f"image of record {rec.id!r} not found; cannot {images} "
                               f"it to {img_rel} (use --images none, images='none' in Python, to write annotations only)")
    except FormatError as err:
        policy.handle(err)
        return 1


def _write_masks(rec: Record, name: str, dataset: Dataset, dest: Path, src_root: Path | None,
                 index_of: Mapping[int, int], foreign_luts: Mapping[str, np.ndarray], lost: dict[str, int]) -> bool:
    """One record's SegmentationClass and SegmentationObject PNGs (what is not written is counted in
    ``lost``); returns whether it has a SegmentationClass (ImageSets/Segmentation lists those)."""
    exact = dataset.format == NAME
    inst = rec.instances
    # Object masks from polygons/RLE when every object has one (COCO, or VOC parsed with
    # segmentation=True): SegmentationObject value k is then XML object k by construction.
    full_segm = (len(inst) and inst.segmentation is not None
                 and all(x is not None for x in inst.segmentation))
    made = None
    if rec.width and rec.height and (full_segm or not (rec.mask_path or rec.instance_mask_path)):
        made = _rasterise(inst, int(rec.height), int(rec.width), index_of, lost)

    def mask_src(rel: str) -> Path:
        return (src_root / rel) if src_root is not None else Path(rel)

    # SegmentationClass: a VOC class mask file wins (it keeps its 255 void borders); another
    # format's semantic mask is mapped pixel by pixel when its values name categories
    # (Cityscapes labelIds), else the objects' masks are rasterised; else there is none.
    has_class = False
    if (rec.extra or {}).get("dummy_labels") and not exact and (
            rec.mask_path or rec.instance_mask_path or _semantic_source(dataset, rec)):
        # Cityscapes test gt files are placeholders: written as SegmentationClass they would
        # read back as ground truth. Not written, not listed in ImageSets/Segmentation; said.
        what = "dummy label masks (Cityscapes test: not ground truth)"
        lost[what] = lost.get(what, 0) + 1
    elif rec.mask_path and exact:
        _copy_mask(mask_src(rec.mask_path), output_path(dest, f"{_SEGCLS}/{name}.png", what="mask"))
        has_class = True
    elif rec.mask_path or _semantic_source(dataset, rec):
        kind = (rec.extra or {}).get("mask_kind")
        to_voc = foreign_luts.get(kind)
        if to_voc is not None:
            values = _read_foreign_mask(dataset, mask_src(rec.mask_path or _semantic_source(dataset, rec)),
                                        kind).astype(np.int64, copy=False)
            _save_mask(to_voc[np.minimum(values, len(to_voc) - 1)],
                       output_path(dest, f"{_SEGCLS}/{name}.png", what="mask"))
            has_class = True
        else:
            # Cityscapes labelTrainIds of an unknown kind, or any mask whose values are not
            # category ids: never copied as if they were VOC class indices.
            what = f"{dataset.format or 'source'} mask PNGs (semantic)"
            lost[what] = lost.get(what, 0) + 1
    if not has_class and made is not None:
        _save_mask(made[0], output_path(dest, f"{_SEGCLS}/{name}.png", what="mask"))
        has_class = True
    # SegmentationObject: rasterised objects (value k+1 = XML object k), else a VOC file
    if made is not None:
        _save_mask(made[1], output_path(dest, f"{_SEGOBJ}/{name}.png", what="mask"))
    elif (rec.extra or {}).get("dummy_labels") and not exact:
        pass  # counted above
    elif rec.instance_mask_path and exact:
        _copy_mask(mask_src(rec.instance_mask_path), output_path(dest, f"{_SEGOBJ}/{name}.png", what="mask"))
    elif rec.instance_mask_path:
        # Cityscapes instanceIds, panoptic ids: not VOC object indices, and objects without
        # their own polygons/RLE cannot be rasterised in XML order.
        what = f"{dataset.format or 'source'} mask PNGs (instance)"
        lost[what] = lost.get(what, 0) + 1
    return has_class


def _checked_xml(rec: Record, filename: str, names: Mapping[int, str], segmented: int | None,
                 lost: dict[str, int], exact: bool, images: str) -> bytes:
    """:func:`_xml_for` of what VOC readers read back: boxes outside the image clipped
    (:func:`_boxes_inside`); a record of unknown size without an image to read it from, or text
    XML cannot hold, is an :class:`InvalidAnnotationError`."""
    # A VOC XML without <size> is read back from its image's header; one parsed so is written back so.
    if not (rec.width and rec.height) and images == "none" and not exact:
        raise InvalidAnnotationError(
            rec.path, f"record {rec.id!r} has no image size ({rec.width}x{rec.height}); a VOC XML needs "
            "<size>, or an image beside it to read it from, and images='none' places none (fix: convert with "
            "--images link or copy, or give the source its sizes)")
    try:
        return _xml_for(_boxes_inside(rec, lost), filename, names, segmented, lost, exact)
    except ValueError as err:  # lxml: a control character or lone surrogate in a name or value
        if isinstance(err, FormatError):
            raise
        raise InvalidAnnotationError(rec.path, f"cannot be written as VOC XML: {err} (a name or value holds "
                                               "a character XML cannot hold, such as a control character); "
                                               "expected XML text (fix: correct it in the source)") from None


def _boxes_inside(rec: Record, lost: dict[str, int]) -> Record:
    """``rec`` with every box lying outside its image by more than VOC's tolerance clipped to the
    image (VOC readers, dsprep's included, refuse such boxes), each counted in ``lost``.

    A box within the tolerance stays exact; a box wholly outside becomes an empty box on the edge.
    """
    inst = rec.instances
    w, h = rec.width, rec.height
    if not (len(inst) and w and h):
        return rec
    b = inst.boxes
    out = (b[:, 0] < -_BOX_TOLERANCE) | (b[:, 1] < -_BOX_TOLERANCE) | (b[:, 2] > w + _BOX_TOLERANCE) | (
        b[:, 3] > h + _BOX_TOLERANCE)
    if not out.any():
        return rec
    clipped = b.copy()
    clipped[out] = np.clip(b[out], 0, [w, h, w, h])
    what = "boxes outside the image (objects; clipped to it: VOC readers refuse them)"
    lost[what] = lost.get(what, 0) + int(out.sum())
    return rec.replace(instances=dataclasses.replace(inst, boxes=clipped))


def _foreign_mask_luts(dataset: Dataset, index_of: Mapping[int, int]) -> dict[str, np.ndarray]:
    """Mask kind -> uint8 lookup from another format's semantic mask values to VOC class indices.

    A parser whose mask values name categories says so in
    ``info["mask_category_names"]`` (kind -> one category name or None per
    value, the kind in ``record.extra["mask_kind"]``; Cityscapes labelIds and
    labelTrainIds). A value becomes its category's position + 1, as the
    rasterised masks do; a value naming no category of the dataset is void (255).
    """
    kinds = dataset.info.get("mask_category_names")
    if not isinstance(kinds, Mapping):
        return {}
    voc_of = {c.name: index_of[c.id] for c in dataset.categories}
    return {kind: np.array([voc_of.get(n, VOID) if n is not None else VOID for n in names] + [VOID], np.uint8)
            for kind, names in kinds.items()}


def _semantic_source(dataset: Dataset, rec: Record) -> str | None:
    """A record's semantic source when it has no label PNG (``extra["semantic_source"]``, of a
    kind the parser names in ``info["mask_readers"]``: Cityscapes instanceIds or polygons.json only)."""
    ex = rec.extra or {}
    readers = dataset.info.get("mask_readers")
    if rec.mask_path is None and ex.get("semantic_source") and isinstance(readers, Mapping) \
            and ex.get("mask_kind") in readers:
        return str(ex["semantic_source"])
    return None


def _read_foreign_mask(dataset: Dataset, path: Path, kind: str | None) -> np.ndarray:
    """Another format's semantic mask as values of its kind.

    A label PNG is decoded; a record without one (:func:`_semantic_source`) is
    read by the function the parser names in ``info["mask_readers"][kind]``
    (``"module:function"``), which gives the map a label PNG would hold.
    """
    readers = dataset.info.get("mask_readers")
    named = readers.get(kind) if isinstance(readers, Mapping) and kind is not None else None
    if named:
        from ..masks import semantic_readers

        return np.asarray(semantic_readers(dataset)[kind](path, kind))
    from ..masks import mask_palette, read_label_png

    return read_label_png(path, palette=mask_palette(dataset))  # the rule every mask reader follows


def _count_lost(rec: Record, lost: dict[str, int]) -> None:
    def add(what: str, n: int) -> None:
        if n:
            lost[what] = lost.get(what, 0) + n

    inst = rec.instances
    if inst.keypoints is not None:
        add("keypoints (objects)", int((inst.keypoints[..., 2] > 0).any(axis=1).sum()))
    add("captions", len(rec.captions))
    add("annotation ids", int((inst.ids >= 0).sum()))
    add("stored areas", int(np.isfinite(inst.area).sum()))
    if rec.label is not None:
        add("image-level labels", 1)
    if rec.source_id is not None:
        add("source image ids", 1)
    other = [k for k in (rec.extra or {}) if k not in _IMAGE_KEYS]
    if other:
        add("image fields (" + ", ".join(sorted(other)) + ")", 1)


def _copy_mask(src: Path, dst: Path) -> None:
    """A palette PNG is copied as is; an RGB (datumaro) or L mask is re-saved as P with the VOC palette."""
    import shutil

    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(src) as im:
            mode = im.mode
    except Exception as err:  # every kind Pillow raises on a bad file (see _checks.image_error)
        raise image_error(src, err, "mask PNG") from None
    if mode == "P" and src.suffix.lower() == ".png":
        shutil.copyfile(src, dst)
    else:
        _save_mask(_read_mask(src), dst)


def _write_class_lists(dest: Path, split: str, rows: list[tuple[str, Instances]],
                       categories: Sequence[Category]) -> list[str]:
    """``<class>_<split>.txt``: ``"<id> %2d"`` with 1 / 0 (only difficult) / -1, as the devkit.

    Returns the class names that cannot name a file (none is written for them: the per-class
    list is derivable from the XMLs, which hold the name).
    """
    skipped = []
    for c in categories:
        if not c.name or not _is_file_name(f"{c.name}_{split}.txt"):
            skipped.append(c.name)
            continue
        lines = []
        for name, inst in rows:
            sel = inst.labels == c.id
            flag = -1 if not sel.any() else (1 if (~inst.difficult[sel]).any() else 0)
            lines.append(f"{name} {flag:2d}\n")
        output_path(dest, f"{_MAIN}/{c.name}_{split}.txt", what="class list").write_text("".join(lines),
                                                                                      encoding="utf-8")
    return skipped


def _is_file_name(name: str) -> bool:
    """Whether ``name`` can be one file's name here: no separator or NUL, at most 255 bytes of UTF-8
    (a 400-character class name cannot name its ``<class>_<split>.txt``)."""
    if "/" in name or "\\" in name or "\0" in name:
        return False
    try:
        return len(name.encode("utf-8")) <= 255
    except UnicodeEncodeError:
        return False


def _write_labelmap(dest: Path, categories: Sequence[Category]) -> None:
    if any(":" in c.name or "\n" in c.name for c in categories):
        log.warning("voc: a category name holds ':' or a newline; no labelmap.txt written, so parse() "
                    "will order the categories as VOC classes first, then by first appearance")
        return
    lines = ["# label:color_rgb:parts:actions\n", "background:0,0,0::\n"]
    for i, c in enumerate(categories):
        r, g, b = VOC_PALETTE[min(i + 1, 255)]
        lines.append(f"{c.name}:{r},{g},{b}::\n")
    output_path(dest, "labelmap.txt").write_text("".join(lines), encoding="utf-8")
