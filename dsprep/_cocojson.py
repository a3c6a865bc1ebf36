"""COCO-style JSON, shared by the formats that store it (COCO and LVIS): the annotation
decoder, the segmentation (polygon and RLE) checks and the annotation dict builder.

Formats never import each other (``docs/architecture.md``); what COCO and LVIS share
lives here, below both. ``formats/coco.py`` holds COCO's layouts, ``detect``,
``parse`` and ``write``; ``formats/lvis.py`` LVIS's. How the decoding is made fast
is told in ``formats/coco.py``'s docstring.
"""
from __future__ import annotations

import math
import mmap
import os
import re
import sys
from contextlib import contextmanager
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Mapping, Sequence

import msgspec
import numpy as np

from ._checks import INT64_MAX, INT64_MIN, MAX_SIDE
from ._io import image_size, progress as _progress
from ._paths import confine
from .errors import ErrorPolicy, FormatError, InvalidAnnotationError, MalformedFileError, MissingFileError
from .masks import rle_problem, segmentation_area
from .records import (BoxFormat, Category, Instances, Record, convert_boxes, decimal_sum, decode_segmentation,
                      record_id_from_path, segmentation_json)

# Annotation keys with a home in the record model; any other key goes to Instances.extra.
_KNOWN_ANN_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation",
                             "keypoints", "num_keypoints", "caption", "difficult"})
_IMAGE_KEYS = ("id", "width", "height", "file_name")
# Record.extra keys that dsprep itself sets and that the writer does not copy into `images`.
_INTERNAL_IMAGE_EXTRA = frozenset({"caption_ids"})
_EMPTY_RAW = msgspec.Raw(b"")
# How an image entry names its file: (entry -> relative name or None, what an error calls it).
ImageName = tuple[Callable[[dict], Any], str]

def peek(path: Path) -> bytes | None:
    """The first and last 64 KiB of a JSON file (for ``detect``), or None when it is not a JSON object."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            tail = b""
            if size > 1 << 16:
                f.seek(max(size - (1 << 16), 1 << 16))
                tail = f.read()
    except OSError:
        return None
    return head + tail if head.lstrip()[:1] == b"{" else None


def is_lvis_text(text: bytes) -> bool:
    """Whether the peeked text of a COCO-style JSON has LVIS's own keys (its images' federated
    lists, its categories' synsets and frequencies)."""
    return (b'"neg_category_ids"' in text or b'"not_exhaustive_category_ids"' in text
            or (b'"synset"' in text and b'"frequency"' in text))


# ----------------------------------------------------------------------------- typed JSON

# Integers go into int64 arrays: msgspec decodes JSON integers of any size, so the
# range is part of the type (an id of 2^70 is an error naming the annotation).
_Int = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]


class _Ann(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One annotation of an instances / person_keypoints / captions file.

    The fast path decodes with ``forbid_unknown_fields``: a file with extra
    keys (Datumaro ``attributes``, a stray ``score``) falls back to the path
    that keeps them, so nothing is dropped silently.
    """

    image_id: _Int | str
    id: _Int | None = None
    category_id: _Int | None = None
    bbox: list[float] | None = None
    area: float | None = None
    iscrowd: _Int | bool = 0
    segmentation: msgspec.Raw = _EMPTY_RAW  # raw JSON text, decoded lazily
    keypoints: list[float] | None = None
    num_keypoints: _Int | None = None
    caption: str | None = None
    difficult: _Int | bool = 0  # not COCO: written by dsprep for VOC's flag


class _AnnLax(_Ann, forbid_unknown_fields=False):
    """The same, accepting unknown keys (read separately into Instances.extra)."""


_ANN_DECODER = msgspec.json.Decoder(_Ann)


class _Top(msgspec.Struct, forbid_unknown_fields=True):
    """The usual top level, decoded in one pass with each annotation left as raw text.

    Anything unusual (another top-level key, a missing one, a wrong type)
    falls back to a dict of raw values, which keeps every key and explains errors.
    """

    images: msgspec.Raw
    annotations: list[msgspec.Raw] = []
    categories: msgspec.Raw = _EMPTY_RAW
    info: msgspec.Raw = _EMPTY_RAW
    licenses: msgspec.Raw = _EMPTY_RAW


# ----------------------------------------------------------------------------- helpers

def _where(file: Path | str, ann_id: Any = None, index: int | None = None) -> str:
    if ann_id is not None:
        return f"{file}: annotation id {ann_id}"
    if index is not None:
        return f"{file}: annotations[{index}]"
    return str(file)


def _byte_position(data: Any, message: str) -> str:
    m = re.search(r"\(byte (\d+)\)", message)
    if not m and "UTF-8" not in message:
        return ""
    data = bytes(data)  # an mmap or a msgspec.Raw; only on this error path
    if m:
        off = int(m.group(1))
    else:  # msgspec does not say where invalid UTF-8 is: the first byte that is not UTF-8
        try:
            data.decode("utf-8")
            return ""
        except UnicodeDecodeError as err:
            off = err.start
    head = data[:off]
    line = head.count(b"\n") + 1
    col = off - (head.rfind(b"\n") + 1) + 1
    return f" at line {line}, column {col}"


def _decode(data: Any, typ: Any, where: str) -> Any:
    """``msgspec.json.decode`` whose syntax errors (invalid UTF-8 in a string, trailing bytes,
    nesting deeper than Python's recursion limit) are a :class:`MalformedFileError` naming ``where``."""
    try:
        return msgspec.json.decode(data, type=typ) if typ is not None else msgspec.json.decode(data)
    except msgspec.ValidationError as err:
        if typ is not None:
            raise  # a subclass of DecodeError: the callers word these
        # untyped: only a number JSON allows but float64 cannot hold (1e400)
        raise MalformedFileError(where, f"invalid JSON: {_explain(err)} (a number past float64's range, such "
                                        "as 1e400)") from None
    except msgspec.DecodeError as err:
        raise MalformedFileError(where, f"invalid JSON{_byte_position(data, str(err))}: {err}") from None
    except RecursionError:
        raise MalformedFileError(where, "invalid JSON: nested deeper than Python's recursion limit "
                                        f"({sys.getrecursionlimit()} levels); expected COCO's few levels of "
                                        "nesting") from None


def _read_top(path: Path, data: Any) -> dict[str, Any]:
    """The file's top-level keys as raw JSON (``annotations``: a list of raw annotations)."""
    try:
        fast = msgspec.json.decode(data, type=_Top)
        top: dict[str, Any] = {"images": fast.images, "annotations": fast.annotations}
        for key in ("categories", "info", "licenses"):
            raw = getattr(fast, key)
            if len(raw):
                top[key] = raw
        return top
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass  # the general path below keeps other keys and words the error
    try:
        top = _decode(data, dict[str, msgspec.Raw], str(path))
    except msgspec.ValidationError:
        kind = _decode(data, None, str(path)).__class__.__name__
        found = {"list": "a JSON array", "str": "a JSON string"}.get(kind, f"a JSON {kind}")
        hint = " (a COCO results file? results are a list of detections, not ground truth)" if kind == "list" else ""
        raise MalformedFileError(str(path), "expected a COCO JSON object with 'images', 'annotations' and "
                                            f"'categories'; found {found}{hint}") from None
    if "images" not in top:
        raise MalformedFileError(str(path), "not a COCO file: expected the keys 'images', 'annotations' and "
                                            f"'categories'; found {sorted(top)[:8]} (no 'images')")
    if "annotations" in top:
        try:
            top["annotations"] = _decode(top["annotations"], list[msgspec.Raw], str(path))
        except msgspec.ValidationError as err:
            raise MalformedFileError(str(path), f"'annotations' must be a list: {_explain(err)}") from None
    return top


def _decode_raw(raw: msgspec.Raw, typ: Any, where: str, what: str) -> Any:
    try:
        return _decode(raw, typ, where)
    except msgspec.ValidationError as err:
        raise MalformedFileError(where, f"{what}: {_explain(err)}") from None


def _explain(err: msgspec.ValidationError) -> str:
    msg = str(err)
    return msg.replace("`$", "`").replace("``", "`(top)`")

class _Source(msgspec.Struct):
    json: Path
    split: str | None
    prefix: str  # image folder relative to the root, "" or ending in "/"



# ----------------------------------------------------------------------------- reading

def _safe_id(raw: msgspec.Raw | None) -> Any:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _categories(raw: msgspec.Raw | None, file: Path) -> list[Category]:
    if raw is None:
        return []
    items = _decode_raw(raw, list[dict[str, Any]], str(file), "'categories' must be a list of objects")
    cats = []
    for i, c in enumerate(items):
        cid, name = c.get("id"), c.get("name")
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str) \
                or not INT64_MIN <= cid <= INT64_MAX:
            raise MalformedFileError(f"{file}: categories[{i}]", f"expected an int 'id' (64-bit) and a str 'name'; "
                                                                 f"found id={cid!r}, name={name!r}"[:300])
        extra = {k: v for k, v in c.items() if k not in ("id", "name", "supercategory")}
        cats.append(Category(cid, name, c.get("supercategory") or "", extra))
    return cats


_get_id = attrgetter("id")
_get_image_id = attrgetter("image_id")
_get_category = attrgetter("category_id")
_get_bbox = attrgetter("bbox")
_get_area = attrgetter("area")
_get_iscrowd = attrgetter("iscrowd")
_get_difficult = attrgetter("difficult")
_get_segmentation = attrgetter("segmentation")
_get_keypoints = attrgetter("keypoints")
_get_num_keypoints = attrgetter("num_keypoints")


def _record_id(rel: str) -> str:
    """:func:`record_id_from_path`, with a fast path for the usual clean posix path."""
    if "\\" in rel or rel.startswith("./"):
        return record_id_from_path(rel)
    stem, dot, ext = rel.rpartition(".")
    return stem if dot and "/" not in ext and not stem.endswith("/") else record_id_from_path(rel)


def _member(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``np.isin`` for a small sorted key set, by binary search."""
    if not len(sorted_keys):
        return np.zeros(len(values), bool)
    pos = np.clip(np.searchsorted(sorted_keys, values), 0, len(sorted_keys) - 1)
    return sorted_keys[pos] == values


class _IdLookup:
    """Image id -> position in ``images``, for whole arrays of annotation image ids."""

    def __init__(self, index: dict[Any, int]):
        self.index = index
        try:
            ids = np.fromiter(index.keys(), np.int64, len(index))
        except (TypeError, ValueError, OverflowError):  # string ids
            self.sorted_ids = None
            return
        pos_of = np.fromiter(index.values(), np.int64, len(index))
        sorter = np.argsort(ids, kind="stable")
        self.sorted_ids, self.pos = ids[sorter], pos_of[sorter]

    def __call__(self, anns: list, ann_img: np.ndarray | None = None) -> np.ndarray:
        n = len(anns)
        if self.sorted_ids is not None and len(self.sorted_ids):
            if ann_img is None:
                try:
                    ann_img = np.fromiter(map(_get_image_id, anns), np.int64, n)
                except (TypeError, ValueError, OverflowError):
                    ann_img = None
            if ann_img is not None:
                pos = np.clip(np.searchsorted(self.sorted_ids, ann_img), 0, len(self.sorted_ids) - 1)
                return np.where(self.sorted_ids[pos] == ann_img, self.pos[pos], -1)
        get = self.index.get
        return np.fromiter((get(a.image_id, -1) for a in anns), np.int64, n)


_get_ints = attrgetter("id", "image_id", "category_id")
_get_flags = attrgetter("iscrowd", "difficult", "area")


def _columns(items: list, getter: Any, dtype: Any, k: int) -> np.ndarray | None:
    """``k`` fields of every struct as an ``(n, k)`` array in one C-level pass; None if a value does not fit."""
    n = len(items)
    try:
        return np.fromiter(chain.from_iterable(map(getter, items)), dtype, k * n).reshape(n, k)
    except (TypeError, ValueError, OverflowError):
        return None


def _column(items: list, getter: Any, dtype: Any, missing: Any) -> np.ndarray:
    """One field of every struct as an array (C-level map; a Python loop only if a value is None)."""
    n = len(items)
    try:
        return np.fromiter(map(getter, items), dtype, n)
    except TypeError:
        return np.fromiter((missing if v is None else v for v in map(getter, items)), dtype, n)


def _take(items: list, order: list[int]) -> list:
    if len(order) < 2:
        return [items[j] for j in order]
    return list(itemgetter(*order)(items))


def _check_rle(b: bytes, k: int, heights: np.ndarray, widths: np.ndarray) -> str | None:
    """What is wrong with one raw RLE segmentation (:func:`dsprep.masks.rle_problem`), or None.

    Decoded whole (there are few RLEs), so that every string in it is checked as UTF-8 too.
    """
    try:
        rle = msgspec.json.decode(b)
    except (msgspec.DecodeError, RecursionError) as err:
        return f"invalid RLE segmentation: {err}"
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return f"an RLE segmentation needs 'size' [height, width] and 'counts'; found {bytes(b[:60])!r}"
    h, w = (int(heights[k]), int(widths[k])) if k >= 0 else (0, 0)
    return rle_problem(rle, h, w)


_SEG_NONE, _SEG_POLY, _SEG_RLE, _SEG_OTHER = 0, 1, 2, 3


def _check_segmentations(segs: list[bytes], chunk: int = 1 << 16) -> tuple[dict[int, str], np.ndarray]:
    """Structural check of raw segmentation JSON, vectorized; returns problems and kinds.

    Every polygon of a polygon list (``[[x1,y1,...],...]``) must have at least
    3 points. The bracket positions come from numpy over the concatenated
    text, so 22.5 M vertices cost neither Python floats nor a Python loop.
    A polygon whose text spans 130 bytes or more holds at least 6 numbers in
    compact JSON (a number takes at most 24 characters), so only shorter
    polygons, or every polygon of a chunk that contains whitespace, have
    their commas counted. RLE objects (``{...}``) are checked one by one by
    the caller (there are few); ``[]``, ``null`` and a missing key mean none.

    Returns:
        ``{index: problem}`` and the kind of each entry (``_SEG_NONE``,
        ``_SEG_POLY``, ``_SEG_RLE``, ``_SEG_OTHER``).
    """
    problems: dict[int, str] = {}
    kinds = np.full(len(segs), _SEG_OTHER, np.int8)
    for start in range(0, len(segs), chunk):
        part = segs[start:start + chunk]
        lens = np.fromiter(map(len, part), np.int64, len(part))
        ends = np.cumsum(lens)
        starts = ends - lens
        joined = b"".join(part)
        buf = np.frombuffer(joined, np.uint8)
        nonempty = lens > 0
        first = np.zeros(len(part), np.uint8)
        second = np.zeros(len(part), np.uint8)
        first[nonempty] = buf[starts[nonempty]]
        two = lens > 1
        second[two] = buf[starts[two] + 1]
        is_poly = (first == 91) & (second == 91)  # "[["
        empty = (~nonempty) | ((first == 91) & (second == 93) & (lens == 2))
        k = kinds[start:start + len(part)]
        k[empty] = _SEG_NONE
        k[is_poly] = _SEG_POLY
        k[first == 123] = _SEG_RLE
        for i in np.flatnonzero(k == _SEG_OTHER).tolist():  # whitespace, null, or not a segmentation at all
            b = part[i]
            compact = b"".join(b.split())
            if compact in (b"null", b"[]"):
                k[i] = _SEG_NONE
                continue
            problem = _check_segmentation(b)
            if problem:
                problems[start + i] = problem
            elif compact[:1] == b"{":
                k[i] = _SEG_RLE
        if not is_poly.any():
            continue
        opens = np.flatnonzero(buf == 91)
        closes = np.flatnonzero(buf == 93)
        # Polygon starts: a '[' right after '[' or ',' (the list's first '[' follows the previous
        # entry's last byte, never '[' or ','; the '[' of RLE "size"/"counts" follow ':').
        opens = opens[opens > 0]
        before = buf[opens - 1]
        inner = opens[(before == 91) | (before == 44)]
        if not len(inner):
            continue
        close = closes[np.clip(np.searchsorted(closes, inner), 0, len(closes) - 1)]
        spaced = any(c in joined for c in (b" ", b"\n", b"\t", b"\r"))
        suspects = np.arange(len(inner)) if spaced else np.flatnonzero(close - inner < 130)
        if not len(suspects):
            continue
        owners = np.searchsorted(ends, inner[suspects], side="right")
        for j, owner in zip(suspects.tolist(), owners.tolist()):
            if not is_poly[owner]:
                continue
            o, c = int(inner[j]), int(close[j])
            n = 0 if c == o + 1 else joined.count(b",", o, c) + 1
            i = start + owner
            if n < 6 and i not in problems:
                problems[i] = f"polygon with {n} coordinates: a polygon needs at least 3 (x, y) points"
    return problems, kinds



def _check_segmentation(b: bytes) -> str | None:
    """A cheap structural check of raw segmentation JSON; returns a problem or None.

    Polygons must have >= 3 points and an even number of coordinates. The
    check counts commas instead of decoding, so 22.5 M vertices cost no floats.
    """
    if b[:2] == b"[[":
        if b.count(b"[") == 2:
            n = b.count(b",") + 1
            if n < 6:
                return f"polygon with {n} coordinates: a polygon needs at least 3 (x, y) points"
            return None
        for k, part in enumerate(b[2:-2].split(b"],[")):
            n = part.count(b",") + 1
            if n < 6:
                return f"polygon {k} with {n} coordinates: a polygon needs at least 3 (x, y) points"
        return None
    compact = b"".join(b.split())
    if compact != b:
        return _check_segmentation(compact)
    return "segmentation must be a list of polygons or an RLE object; found " + b[:40].decode("utf-8", "replace")


def _parse_file(src: _Source, task: str | None, policy: ErrorPolicy, show_progress: bool | None,
                root: Path, allow_outside_root: bool = False, image_name: ImageName | None = None
                ) -> tuple[list[Record], list[Category], dict[str, Any], str]:
    """Records, categories, info and task of one COCO-style JSON file.

    ``image_name``: how an image entry names its file, ``(function of the entry, what the
    message calls it)``; by default COCO's ``file_name``, popped from the entry (LVIS
    derives it from ``coco_url`` and keeps both keys).
    """
    file = src.json
    with _mapped(file) as (data, release):
        top = _read_top(file, data)
        images = _decode_raw(top["images"], list[dict[str, Any]], str(file), "'images' must be a list of objects")
        cats = _categories(top.get("categories"), file)
        info = _file_info(top, file)
        index, keep_img, widths, heights, names = _read_images(images, file, policy, image_name)
        paths = _image_paths(names, index, keep_img, src, root, allow_outside_root, policy)
        ann_raws = top.get("annotations", [])
        del top
        release()
        cols = _Columns(file, task, cats, index, heights, widths, policy)
        for start in range(0, len(ann_raws), _CHUNK):
            cols.add(ann_raws[start:start + _CHUNK], start)
            release()
        del ann_raws
    task = cols.task or "instances"
    # (annotations of dropped images were never added: a dropped image is not in `index`,
    # so _Columns.add flags their image id as unknown)
    by_image = _by_image(cols.finish(), len(images))
    iid_of: list[Any] = [None] * len(images)
    for iid, pos in index.items():
        iid_of[pos] = iid
    records = _file_records(by_image, task == "captions", images, paths, iid_of, widths.tolist(),
                            heights.tolist(), keep_img.tolist(), src.split, f"coco {file.name}", show_progress)
    return records, cats, info, task


def _file_info(top: dict[str, Any], file: Path) -> dict[str, Any]:
    """The file's ``info`` and ``licenses``, and its other top-level keys as ``top_level``."""
    info: dict[str, Any] = {}
    for key in ("info", "licenses"):
        if key in top:
            info[key] = _decode(top[key], None, f"{file}: '{key}'")
    others = {k: _decode(v, None, f"{file}: '{k}'") for k, v in top.items()
              if k not in ("info", "licenses", "images", "annotations", "categories")}
    if others:
        info["top_level"] = others
    return info


def _by_image(columns: tuple, n_img: int) -> tuple:
    """:meth:`_Columns.finish`'s columns grouped by image, and each image's row offsets.

    A stable argsort keeps each image's annotations in file order. Returns ``(offsets,
    ids, labels, boxes, iscrowd, difficult, area, segmentations, keypoints, extras,
    captions, caption ids)``, the lists None when no annotation has one.
    """
    (ids, labels, boxes, iscrowd, difficult, area, img_idx, segs, keypoints, num_kp, captions,
     ann_extra) = columns
    order = np.argsort(img_idx, kind="stable")
    counts = np.bincount(img_idx, minlength=n_img) if len(img_idx) else np.zeros(n_img, np.int64)
    offsets = np.zeros(n_img + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    ids, labels, boxes = ids[order], labels[order], boxes[order]
    iscrowd, difficult, area = iscrowd[order], difficult[order], area[order]
    if keypoints is not None:
        keypoints = keypoints[order]
    ordl = order.tolist()
    seg_sorted = _take(segs, ordl) if segs is not None else None
    del segs
    if num_kp is not None or ann_extra is not None:
        extra_sorted: list[dict] | None = []
        for j in ordl:
            e = dict(ann_extra[j]) if ann_extra is not None else {}
            if num_kp is not None and num_kp[j] is not None:
                e["num_keypoints"] = num_kp[j]
            extra_sorted.append(e)
    else:
        extra_sorted = None
    cap_sorted = _take(captions, ordl) if captions is not None else None
    cap_ids = ids.tolist() if captions is not None else None
    return (offsets.tolist(), ids, labels, boxes, iscrowd, difficult, area, seg_sorted, keypoints, extra_sorted,
            cap_sorted, cap_ids)


def _file_records(by_image: tuple, is_captions: bool, images: list[dict], paths: list, iid_of: list,
                  widths_l: list, heights_l: list, keep_l: list, split: str | None, desc: str,
                  show_progress: bool | None) -> list[Record]:
    """One record per kept image, its objects the slices of ``by_image`` (:func:`_by_image`)."""
    (off, ids, labels, boxes, iscrowd, difficult, area, seg_sorted, keypoints, extra_sorted, cap_sorted,
     cap_ids) = by_image
    n_img = len(images)
    records: list[Record] = []
    # Built by the trusted constructors (no __init__): the arrays above are already typed and
    # shaped, and re-validating 118k of them would cost seconds.
    new_inst, new_rec = Instances._trusted, Record._trusted
    no_kp = keypoints is None
    for i in _progress(range(n_img), total=n_img, desc=desc, enabled=show_progress):
        if not keep_l[i]:
            continue
        s, e = off[i], off[i + 1]
        if is_captions or s == e:
            s = e = 0
        inst = new_inst(
            boxes=boxes[s:e], labels=labels[s:e], iscrowd=iscrowd[s:e], difficult=difficult[s:e], ids=ids[s:e],
            area=area[s:e], segmentation=None if seg_sorted is None or s == e else seg_sorted[s:e],
            keypoints=None if no_kp else keypoints[s:e],
            extra=None if extra_sorted is None or s == e else extra_sorted[s:e])
        rel = paths[i]
        extra = images[i]  # what is left after id/width/height/file_name were popped
        caps: list[str] = []
        if cap_sorted is not None and off[i] != off[i + 1]:
            caps = cap_sorted[off[i]:off[i + 1]]
            extra["caption_ids"] = cap_ids[off[i]:off[i + 1]]
        rec = new_rec(id=_record_id(rel), path=rel, width=widths_l[i], height=heights_l[i], split=split,
                      instances=inst, captions=caps, source_id=iid_of[i], extra=extra)
        records.append(rec)
    return records


def _read_images(images: list[dict], file: Path, policy: ErrorPolicy, image_name: ImageName | None = None
                 ) -> tuple[dict[Any, int], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Pop id/width/height/file_name from each image dict (the rest becomes Record.extra)."""
    name_of, name_what = image_name if image_name is not None else (None, "a 'file_name' string")
    n_img = len(images)
    index: dict[Any, int] = {}
    keep_img = np.ones(n_img, bool)
    widths = [0] * n_img
    heights = [0] * n_img
    names: list[str] = [""] * n_img
    for i, im in enumerate(images):
        pop = im.pop
        iid, w, h = pop("id", None), pop("width", 0), pop("height", 0)
        fn = pop("file_name", None) if name_of is None else name_of(im)
        if (type(iid) is int and type(w) is int and type(h) is int and type(fn) is str and fn
                and 0 <= w <= MAX_SIDE and 0 <= h <= MAX_SIDE and INT64_MIN <= iid <= INT64_MAX
                and iid not in index):  # the usual case, without try/raise
            index[iid] = i
            widths[i], heights[i], names[i] = w, h, fn
            continue
        try:
            if not isinstance(iid, (int, str)) or isinstance(iid, bool) or (
                    isinstance(iid, int) and not INT64_MIN <= iid <= INT64_MAX):
                raise InvalidAnnotationError(f"{file}: images[{i}]", f"expected an int image 'id' (64-bit) or a "
                                                                     f"string; found {iid!r}"[:300])
            if not isinstance(fn, str) or not fn:
                raise InvalidAnnotationError(f"{file}: image id {iid}", f"expected {name_what}; found "
                                                                        f"{fn!r}"[:300])
            if not (isinstance(w, int) and isinstance(h, int)) or not (0 <= w <= MAX_SIDE and 0 <= h <= MAX_SIDE) \
                    or isinstance(w, bool) or isinstance(h, bool):
                raise InvalidAnnotationError(f"{file}: image id {iid}",
                                             f"expected int 'width' and 'height' in 0..{MAX_SIDE} (2^31 - 1, the "
                                             f"largest side an image format stores); found {w!r} x {h!r}"[:300])
            if iid in index:
                raise InvalidAnnotationError(f"{file}: image id {iid}",
                                             f"duplicate image id (images[{index[iid]}] and images[{i}])")
        except FormatError as err:
            policy.handle(err)
            keep_img[i] = False
            continue
        index[iid] = i  # a string id
        widths[i], heights[i], names[i] = w, h, fn
    return (index, keep_img, np.array(widths, np.int64).reshape(n_img), np.array(heights, np.int64).reshape(n_img),
            names)


def _image_paths(names: list[str], index: dict[Any, int], keep_img: np.ndarray, src: _Source, root: Path,
                 allow_outside_root: bool, policy: ErrorPolicy) -> list[str]:
    """Each image's path relative to the root: its split's image folder + ``file_name``.

    A ``file_name`` is relative to the split's image folder and must stay inside it
    (:func:`dsprep._paths.confine`); an image whose name leaves it is dropped
    through the policy, with its annotations.
    """
    prefix = src.prefix
    paths = [prefix + n for n in names]
    # One search over all the names first (a tenth of a per-name scan): most files hold no
    # name that could climb, and a false alarm only costs the per-name scan below.
    joined = "\n".join(names)
    if ".." not in joined and "\n/" not in joined and joined[:1] != "/" and "\\" not in joined and ":" not in joined:
        return paths
    suspects = [i for i, n in enumerate(names) if ".." in n or n[:1] in ("/", "\\") or n[1:2] == ":"]
    iid_at = {pos: iid for iid, pos in index.items()}
    for i in suspects:
        if i not in iid_at:
            continue  # already dropped
        try:
            paths[i] = confine(root, names[i], prefix=prefix, where=f"{src.json}: image id {iid_at[i]}",
                               allow_outside=allow_outside_root)
        except FormatError as err:
            policy.handle(err)
            keep_img[i] = False  # its annotations still find it, and are left out with it
    return paths


_CHUNK = 65_536  # annotations decoded into structs at a time (bounds the structs alive at once)


class _Columns:
    """Annotation fields accumulated chunk by chunk as arrays (bad annotations are left out)."""

    def __init__(self, file: Path, task: str | None, cats: list[Category], index: dict[Any, int],
                 heights: np.ndarray, widths: np.ndarray, policy: ErrorPolicy):
        self.file, self.task, self.index, self.policy = file, task, index, policy
        self.heights, self.widths = heights, widths
        self.known = np.array(sorted(c.id for c in cats), np.int64)
        self.lookup = _IdLookup(index)
        self.cats_have_keypoints = any("keypoints" in c.extra for c in cats)
        self.parts: dict[str, list] = {k: [] for k in (
            "ids", "labels", "boxes", "iscrowd", "difficult", "area", "img_idx")}
        self.segs: list[bytes | None] = []
        self.any_seg = False
        self.kp_parts: list[np.ndarray | None] = []
        self.num_kp: list[Any] | None = None
        self.captions: list[str] | None = None
        self.extra: list[dict] | None = None

    def _decode(self, raws: list[msgspec.Raw], start: int) -> tuple[list[_Ann], list[dict] | None, list[int]]:
        """Structs for one chunk; the per-annotation path keeps unknown keys and names bad ones."""
        try:  # one C-level decode per raw annotation: no joined copy of the chunk
            return list(map(_ANN_DECODER.decode, raws)), None, list(range(start, start + len(raws)))
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass  # unknown keys or a bad value: go annotation by annotation
        anns: list[_Ann] = []
        extras: list[dict] = []
        where: list[int] = []
        for i, r in enumerate(raws, start):
            try:
                keys = _decode(r, dict[str, msgspec.Raw], _where(self.file, index=i))
                ann_id = _safe_id(keys.get("id"))
                try:
                    ann = _decode(r, _AnnLax, _where(self.file, ann_id, i))
                    extra = {k: _decode(v, None, _where(self.file, ann_id, i)) for k, v in keys.items()
                             if k not in _KNOWN_ANN_KEYS}
                except msgspec.ValidationError as err:
                    raise InvalidAnnotationError(_where(self.file, ann_id, i),
                                                 f"invalid annotation: {_explain(err)}") from None
            except msgspec.ValidationError:
                self.policy.handle(InvalidAnnotationError(_where(self.file, index=i), "expected an annotation object"))
                continue
            except FormatError as err:
                self.policy.handle(err)
                continue
            anns.append(ann)
            extras.append(extra)
            where.append(i)
        return anns, (extras if any(extras) else None), where

    def add(self, raws: list[msgspec.Raw], start: int) -> None:
        """Decode one chunk, check it, and append the annotations that pass (the others to the policy)."""
        anns, extras, where = self._decode(raws, start)
        if not anns:
            return
        n = len(anns)
        self._settle_task(anns)
        is_captions = self.task == "captions"
        bad: dict[int, str] = {}
        flag = bad.setdefault

        ints = _columns(anns, _get_ints, np.int64, 3)  # id, image_id, category_id (usual case: all ints)
        img_idx = self.lookup(anns, None if ints is None else ints[:, 1])
        for i in np.flatnonzero(img_idx < 0).tolist():
            flag(i, f"image_id {anns[i].image_id!r} is not in 'images'")
        ids = ints[:, 0].copy() if ints is not None else _column(anns, _get_id, np.int64, -1)
        if is_captions:
            for i, a in enumerate(anns):
                if a.caption is None:
                    flag(i, "a captions annotation needs a 'caption' string")
            labels = np.zeros(n, np.int64)
            boxes = np.zeros((n, 4))
        else:
            labels, boxes = self._labels_boxes(anns, ints, flag)
        iscrowd, difficult, area = self._flags(anns, where)
        segs: list[bytes | None] = [None] * n if is_captions else self._segmentations(anns, img_idx, flag)
        keypoints, num_kp = self._keypoints(anns, flag)
        captions = [a.caption for a in anns] if is_captions else None

        keep = np.ones(n, bool)
        for i in sorted(bad):
            self.policy.handle(InvalidAnnotationError(_where(self.file, anns[i].id, where[i]), bad[i]))
            keep[i] = False
        del anns
        if bad:
            sel = np.flatnonzero(keep)
            pick = lambda lst: None if lst is None else [lst[j] for j in sel]  # noqa: E731
            ids, labels, boxes, iscrowd, difficult, area, img_idx = (
                ids[sel], labels[sel], boxes[sel], iscrowd[sel], difficult[sel], area[sel], img_idx[sel])
            keypoints = None if keypoints is None else keypoints[sel]
            segs, num_kp, captions, extras = pick(segs), pick(num_kp), pick(captions), pick(extras)
            n = len(sel)
        self._append(n, (ids, labels, boxes, iscrowd, difficult, area, img_idx), segs, keypoints, num_kp,
                     captions, extras)

    def _settle_task(self, anns: list[_Ann]) -> None:
        """The file's task, when not given, from the first annotation's keys."""
        if self.task is None:
            if anns[0].caption is not None:
                self.task = "captions"
            elif anns[0].keypoints is not None or self.cats_have_keypoints:
                self.task = "person_keypoints"
            else:
                self.task = "instances"

    def _labels_boxes(self, anns: list[_Ann], ints: np.ndarray | None, flag: Any
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Category ids and xyxy boxes of one chunk; bad ones flagged (``flag(row, problem)``)."""
        n = len(anns)
        labels = ints[:, 2].copy() if ints is not None else _column(anns, _get_category, np.int64, -1)
        for i in np.flatnonzero(labels == -1).tolist():
            if anns[i].category_id is None:
                flag(i, "missing 'category_id'")
        for i in np.flatnonzero(~_member(labels, self.known)).tolist():
            flag(i, f"unknown category_id {labels[i]} (categories have ids "
                    f"{', '.join(map(str, self.known[:12].tolist()))}{', ...' if len(self.known) > 12 else ''})")
        bb = list(map(_get_bbox, anns))
        try:
            if not (np.fromiter(map(len, bb), np.int64, n) == 4).all():
                raise ValueError("not [x, y, w, h]")
            boxes = np.fromiter(chain.from_iterable(bb), np.float64, 4 * n).reshape(n, 4)
        except (TypeError, ValueError):
            boxes = np.zeros((n, 4))
            for i, b in enumerate(bb):
                if b is None:
                    flag(i, "missing 'bbox'")
                elif len(b) != 4:
                    flag(i, f"bbox must be [x, y, width, height]; found {len(b)} numbers: {b}")
                else:
                    boxes[i] = b
        del bb
        finite = np.isfinite(boxes).all(1)
        for i in np.flatnonzero(~finite | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)).tolist():
            flag(i, f"bbox [x, y, width, height] must be finite with width, height >= 0; "
                    f"found {boxes[i].tolist()}")
        # xywh -> xyxy (continuous 0-based pixels: both conventions agree), x2 as the decimal the writer meant
        boxes[:, 2:] = decimal_sum(boxes[:, :2], boxes[:, 2:])
        return labels, boxes

    def _flags(self, anns: list[_Ann], where: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """iscrowd, difficult and area of one chunk (an iscrowd other than 0/1 noted)."""
        flags = _columns(anns, _get_flags, np.float64, 3)  # iscrowd, difficult, area
        if flags is not None:
            iscrowd, difficult, area = flags[:, 0] != 0, flags[:, 1] != 0, flags[:, 2].copy()
        else:
            iscrowd = _column(anns, _get_iscrowd, bool, False)
            difficult = _column(anns, _get_difficult, bool, False)
            area = _column(anns, _get_area, np.float64, math.nan)
        crowd_raw = flags[:, 0] if flags is not None else _column(anns, _get_iscrowd, np.float64, 0)
        for i in np.flatnonzero((crowd_raw != 0) & (crowd_raw != 1)).tolist():
            self.policy.note("bad_iscrowd", _where(self.file, anns[i].id, where[i]),
                             f"iscrowd is {anns[i].iscrowd!r}; expected 0 or 1 (read as crowd, as pycocotools "
                             "takes any value but 0)")
        return iscrowd, difficult, area

    def _segmentations(self, anns: list[_Ann], img_idx: np.ndarray, flag: Any) -> list[bytes | None]:
        """Each annotation's segmentation as raw JSON (None when it has none); bad ones flagged."""
        n = len(anns)
        segs = list(map(bytes, map(_get_segmentation, anns)))
        problems, kinds = _check_segmentations(segs)
        for i, problem in problems.items():
            flag(i, problem)
        for i in np.flatnonzero(kinds == _SEG_RLE).tolist():
            problem = _check_rle(segs[i], img_idx[i], self.heights, self.widths)
            if problem:
                flag(i, problem + f" (image id {anns[i].image_id})")
        if (kinds == _SEG_NONE).all():
            segs = [None] * n
        else:
            self.any_seg = True
            for i in np.flatnonzero(kinds == _SEG_NONE).tolist():
                segs[i] = None
        return segs

    def _keypoints(self, anns: list[_Ann], flag: Any) -> tuple[np.ndarray | None, list | None]:
        """Keypoints ``(n, K, 3)`` of one chunk (None without any) and num_keypoints; bad ones flagged."""
        n = len(anns)
        kps = list(map(_get_keypoints, anns))
        kp_rows = [] if kps.count(None) == n else [i for i, kp in enumerate(kps) if kp is not None]
        keypoints = None
        if kp_rows:
            k_max = max(len(kps[i]) for i in kp_rows) // 3
            keypoints = np.zeros((n, k_max, 3))
            for i in kp_rows:
                kp = kps[i]
                if len(kp) % 3 or len(kp) // 3 != k_max:
                    flag(i, f"keypoints must be {k_max} (x, y, v) triples; found {len(kp)} numbers")
                    continue
                keypoints[i] = np.asarray(kp, np.float64).reshape(k_max, 3)
        del kps
        num_kp = list(map(_get_num_keypoints, anns)) if (kp_rows or self.num_kp is not None) else None
        return keypoints, num_kp

    def _append(self, n: int, arrays: tuple, segs: list, keypoints: np.ndarray | None, num_kp: list | None,
                captions: list | None, extras: list | None) -> None:
        """Add the chunk's ``n`` kept annotations to the columns."""
        for k, v in zip(("ids", "labels", "boxes", "iscrowd", "difficult", "area", "img_idx"), arrays):
            self.parts[k].append(v)
        before = len(self.segs)
        self.segs.extend(segs)
        self.kp_parts.append(keypoints if keypoints is not None else n)
        if num_kp is not None:
            if self.num_kp is None:
                self.num_kp = [None] * before
            self.num_kp.extend(num_kp)
        elif self.num_kp is not None:
            self.num_kp.extend([None] * n)
        if captions is not None:
            if self.captions is None:
                self.captions = []
            self.captions.extend(captions)
        if extras is not None:
            if self.extra is None:
                self.extra = [{} for _ in range(before)]
            self.extra.extend(extras)
        elif self.extra is not None:
            self.extra.extend({} for _ in range(n))

    def finish(self) -> tuple:
        p = self.parts
        if not p["ids"]:
            z = np.zeros(0, np.int64)
            return (z, z.copy(), np.zeros((0, 4)), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0), z.copy(),
                    None, None, None, self.captions, None)
        cat = np.concatenate
        keypoints = None
        if any(not isinstance(k, int) for k in self.kp_parts):
            k_max = max(k.shape[1] for k in self.kp_parts if not isinstance(k, int))
            keypoints = cat([np.zeros((k, k_max, 3)) if isinstance(k, int) else
                             np.pad(k, ((0, 0), (0, k_max - k.shape[1]), (0, 0))) for k in self.kp_parts])
        return (cat(p["ids"]), cat(p["labels"]), cat(p["boxes"]), cat(p["iscrowd"]), cat(p["difficult"]),
                cat(p["area"]), cat(p["img_idx"]), self.segs if self.any_seg else None, keypoints,
                self.num_kp, self.captions, self.extra)


def _check_images(records: list[Record], splits: dict[str, list[str]], root: Path, policy: ErrorPolicy
                  ) -> tuple[list[Record], dict[str, list[str]]]:
    """The records whose image file exists (the others through the policy) and the splits
    without the others; a size the JSON lacks is read from the image header."""
    out = []
    for r in records:
        p = root / r.path
        try:
            if not p.is_file():
                raise MissingFileError(str(p), f"image file of image id {r.source_id} not found")
            if not r.width or not r.height:
                r.width, r.height = image_size(p)
        except FormatError as err:
            policy.handle(err)
            continue
        out.append(r)
    kept = {r.id for r in out}
    return out, {s: [i for i in ids if i in kept] for s, ids in splits.items()}


def _same_image(a: Record, b: Record, extra_keys: Sequence[str] = ()) -> bool:
    """Whether two entries of one image in two split files agree (size, captions, annotations and
    the image fields ``extra_keys``)."""
    x, y = a.instances, b.instances
    return (a.width == b.width and a.height == b.height and a.captions == b.captions
            and np.array_equal(x.ids, y.ids) and np.array_equal(x.labels, y.labels)
            and np.array_equal(x.boxes, y.boxes) and np.array_equal(x.iscrowd, y.iscrowd)
            and all(a.extra.get(k) == b.extra.get(k) for k in extra_keys))


def _join_shared(recs: list[Record], keys: Sequence[Any], seen: dict[Any, Record],
                 extra_keys: Sequence[str] = ()) -> list[str]:
    """The record id each of ``recs`` is listed under in its split.

    An image listed in several split files with the same key (image id and file name) and the
    same annotations (VOC's train, val and trainval written as COCO or LVIS) is one record in
    several splits: it keeps the id of its first file's record, and the later files' copies are
    not added (the caller keeps only records listed under their own id). Entries that disagree
    stay records of their own.
    """
    listed = []
    for r, key in zip(recs, keys):
        first = seen.get(key)
        if first is not None and _same_image(first, r, extra_keys):
            listed.append(first.id)
            continue
        seen.setdefault(key, r)
        listed.append(r.id)
    return listed


@contextmanager
def _mapped(path: Path) -> Iterator[tuple[Any, Any]]:
    """The file as a read-only memory map, plus ``release()`` that drops its pages from this process.

    Decoding walks the map once for the top-level keys and once per chunk of
    annotations; dropping the pages in between (``MADV_DONTNEED``; they stay in
    the page cache, so touching them again costs a minor fault, not a read)
    keeps the 450 MB of JSON text out of the peak memory while the records are built.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MissingFileError(str(path), "annotation file not found") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise MalformedFileError(str(path), "invalid JSON: the file is empty")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        can_release = hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED")

        def release() -> None:
            if can_release:
                mm.madvise(mmap.MADV_DONTNEED)

        try:
            yield mm, release
        finally:
            try:
                mm.close()
            except BufferError:  # a Raw still points into it; the GC closes it later
                pass


# ----------------------------------------------------------------------------- writing

def _segmentation_out(segm: Any) -> Any:
    """A segmentation entry as COCO JSON: raw text passes through unparsed."""
    import orjson

    if segm is None:
        return []  # bbox-only; see docs/formats/coco.md ("bbox-only ground truth")
    if isinstance(segm, (bytes, bytearray, memoryview)):
        return orjson.Fragment(bytes(segm))
    return segmentation_json(segm)


def _compressed(segm: Any) -> Any:
    """An RLE with list counts as compressed-string RLE (pycocotools); anything else unchanged."""
    if segm is None or (isinstance(segm, (bytes, bytearray)) and not segm.startswith(b"{")):
        return segm
    segm = decode_segmentation(segm)
    if isinstance(segm, dict) and not isinstance(segm.get("counts"), (str, bytes)):
        from .masks import rle_from_counts

        h, w = (int(v) for v in segm["size"])
        return rle_from_counts(np.asarray(segm["counts"]), h, w)
    return segm


def _keeps_image_ids(recs: Sequence[Record]) -> bool:
    """Whether these records' source image ids can be written as they are (unique ints >= 0).

    Image id 0 is safe in COCOeval (only *annotation* id 0 is not).
    """
    src = [r.source_id for r in recs]
    return all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in src) and len(set(src)) == len(src)


def _image_ids(recs: Sequence[Record]) -> list[int]:
    """Keep the source image ids when they are unique ints >= 0; otherwise number 1..N."""
    if _keeps_image_ids(recs):
        return [r.source_id for r in recs]  # type: ignore[misc]
    return list(range(1, len(recs) + 1))


def _keeps_ann_ids(ids: np.ndarray) -> bool:
    """Whether source annotation ids can be written as they are: all >= 1 and unique (id 0
    makes COCOeval count a match as unmatched)."""
    if ids.size == 0:
        return True
    s = np.sort(ids)
    return bool(s[0] >= 1) and bool((s[1:] != s[:-1]).all())


def _ann_ids(ids: np.ndarray) -> list[int]:
    return ids.tolist() if _keeps_ann_ids(ids) else list(range(1, len(ids) + 1))


_STANDARD_ANN_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")
_NO_EXTRA: dict[str, Any] = {}


def keypoint_fields(keypoints: np.ndarray | None, j: int, k: int, extra: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """``keypoints`` (``3k`` numbers, zero-padded) and ``num_keypoints`` of object ``j``.

    ``num_keypoints`` is the one the source stored (``extra``), else the count of
    keypoints with visibility > 0; an object without keypoints gets zeros and 0.
    The writer's and the evaluator's ground truth (:func:`dsprep.eval.to_coco_gt`).
    """
    if keypoints is None or k == 0:
        return {"keypoints": [0.0] * (3 * k), "num_keypoints": 0}
    kp = keypoints[j]
    flat = kp.ravel().tolist() + [0.0] * (3 * (k - kp.shape[0]))
    stored = extra.get("num_keypoints") if extra else None
    num = int(stored) if isinstance(stored, int) and not isinstance(stored, bool) else int((kp[:, 2] > 0).sum())
    return {"keypoints": flat, "num_keypoints": num}


def _annotations(recs: Sequence[Record], img_ids: Sequence[Any], ann_ids: Sequence[int], any_difficult: bool,
                 has_kp: bool, kp_k: int, compress_rle: bool = False, *, keep_extra: bool = True,
                 raw_json: bool = True) -> list[dict[str, Any]]:
    """COCO annotation dicts for ``recs``, in record order (``ann_ids`` in the same order).

    The one builder of COCO annotations: the writer's (COCO's and LVIS'), and the
    evaluator's ground truth (:func:`dsprep.eval.to_coco_gt`: ``keep_extra=False``, the
    source's own per-object keys left out; ``raw_json=False``, a segmentation kept as
    raw JSON text decoded, where the writer passes it through as it is).
    """
    from orjson import Fragment

    def segm_out(segm: Any) -> Any:
        if type(segm) is bytes and raw_json:
            return Fragment(segm)
        return _segmentation_out(decode_segmentation(segm) if type(segm) is bytes else segm)

    parts = [r.instances for r in recs]
    counts = [p.boxes.shape[0] for p in parts]
    n = sum(counts)
    if n == 0:
        return []
    cat = np.concatenate
    boxes = convert_boxes(cat([p.boxes for p in parts]), BoxFormat.XYXY, BoxFormat.XYWH)  # exact decimals
    areas = cat([p.area for p in parts])
    unknown = np.isnan(areas)
    # unknown area: the mask's pixel area when there is a mask (below), else the box's
    filled = np.where(unknown, boxes[:, 2] * boxes[:, 3], areas).tolist()
    box_list = boxes.tolist()
    labels = cat([p.labels for p in parts]).tolist()
    crowd = cat([p.iscrowd for p in parts]).astype(np.int64).tolist()
    diff = cat([p.difficult for p in parts]).astype(np.int64).tolist() if any_difficult else None
    reserved = frozenset(_STANDARD_ANN_KEYS) | ({"keypoints", "num_keypoints"} if has_kp else set()) | (
        {"difficult"} if diff is not None else set())
    extras = list(chain.from_iterable(p.extra if p.extra is not None and keep_extra else repeat(None, m)
                                      for p, m in zip(parts, counts)))
    if not has_kp and all(e is None or e.keys().isdisjoint(reserved) for e in extras):
        # the common case, one comprehension: no keypoints, no extra key shadowing a COCO key
        return _plain_annotations(recs, parts, counts, img_ids, ann_ids, labels, crowd, diff, box_list,
                                  filled, unknown, extras, segm_out, compress_rle)
    return _full_annotations(recs, parts, img_ids, ann_ids, labels, crowd, diff, box_list, filled,
                             unknown, extras, segm_out, compress_rle, has_kp, kp_k)


def _plain_annotations(recs: Sequence[Record], parts: list, counts: list[int], img_ids: Sequence[Any],
                       ann_ids: Sequence[int], labels: list, crowd: list, diff: list | None, box_list: list,
                       filled: list, unknown: np.ndarray, extras: list, segm_out: Any, compress_rle: bool
                       ) -> list[dict[str, Any]]:
    """:func:`_annotations` without keypoints or extra keys shadowing COCO's: one comprehension."""
    n = len(box_list)
    segms: list[Any] = [None] * n
    k = 0
    for r, p, m in zip(recs, parts, counts):
        if p.segmentation is not None:
            for j, segm in enumerate(p.segmentation):
                if segm is not None:
                    if compress_rle:
                        segm = _compressed(segm)
                    if unknown[k + j]:
                        area = segmentation_area(segm, r.height, r.width)
                        if area is not None:
                            filled[k + j] = area
                    segms[k + j] = segm_out(segm)
        k += m
    img_col = list(chain.from_iterable(repeat(iid, m) for iid, m in zip(img_ids, counts)))
    # bbox-only objects get "segmentation": [] (see docs/formats/coco.md, "bbox-only ground truth")
    if diff is None:
        return [{"id": i, "image_id": im, "category_id": c, "segmentation": [] if s is None else s,
                 "area": a, "bbox": b, "iscrowd": cr, **(e or _NO_EXTRA)}
                for i, im, c, s, a, b, cr, e in zip(ann_ids, img_col, labels, segms, filled, box_list,
                                                    crowd, extras)]
    return [{"id": i, "image_id": im, "category_id": c, "segmentation": [] if s is None else s,
             "area": a, "bbox": b, "iscrowd": cr, "difficult": d, **(e or _NO_EXTRA)}
            for i, im, c, s, a, b, cr, d, e in zip(ann_ids, img_col, labels, segms, filled, box_list,
                                                   crowd, diff, extras)]


def _full_annotations(recs: Sequence[Record], parts: list, img_ids: Sequence[Any], ann_ids: Sequence[int],
                      labels: list, crowd: list, diff: list | None, box_list: list, filled: list,
                      unknown: np.ndarray, extras: list, segm_out: Any, compress_rle: bool, has_kp: bool,
                      kp_k: int) -> list[dict[str, Any]]:
    """:func:`_annotations` with keypoints or extra keys to merge: object by object."""
    out: list[dict[str, Any]] = []
    k = 0
    for r, iid, inst in zip(recs, img_ids, parts):
        m = len(inst)
        if not m:
            continue
        segs = inst.segmentation
        kps = inst.keypoints
        for j in range(m):
            x, y, w, h = box_list[k]
            segm = segs[j] if segs is not None else None
            if compress_rle:
                segm = _compressed(segm)
            area = filled[k]
            if unknown[k] and segm is not None:
                mask_area = segmentation_area(segm, r.height, r.width)
                if mask_area is not None:
                    area = mask_area
            ann = {"id": ann_ids[k], "image_id": iid, "category_id": labels[k],
                   "segmentation": segm_out(segm),
                   "area": area, "bbox": [x, y, w, h], "iscrowd": crowd[k]}
            extra = extras[k]
            if has_kp:
                kp = keypoint_fields(kps, j, kp_k, inst.extra[j] if inst.extra else None)
                ann["keypoints"] = [int(v) if v.is_integer() else v for v in kp["keypoints"]]
                ann["num_keypoints"] = kp["num_keypoints"]
            if diff is not None:
                ann["difficult"] = diff[k]
            if extra:
                for key, value in extra.items():
                    if key not in ann and key not in _STANDARD_ANN_KEYS:
                        ann[key] = value
            out.append(ann)
            k += 1
    return out
