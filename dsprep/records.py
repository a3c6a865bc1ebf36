"""The one record model every format parses into and writes from.

A :class:`Dataset` holds :class:`Category` entries and a list of image
:class:`Record` s. Each record keeps its objects as a struct of arrays
(:class:`Instances`): one ``(N, 4)`` box array per image, not one Python
object per box.

Conventions (see ``docs/records.md``):

- Boxes are absolute pixel coordinates, 0-based and continuous, ``xyxy``:
  pixel ``i`` covers ``[i, i+1)``. VOC's 1-based inclusive ``xmin..xmax``
  becomes ``[xmin-1, xmax]``; COCO's ``[x, y, w, h]`` becomes ``[x, y, x+w, y+h]``.
- Boxes and keypoints are stored as float64, not float32: float32 would turn
  COCO's ``473.07`` into ``473.0700073242188`` and break exact round trips.
  The torch layer hands out float32.
- ``labels`` hold the *source* category id (COCO's 1..90 with gaps, VOC's
  1..20); the contiguous training index is derived by
  :meth:`Dataset.category_index`.
- Segmentation is kept in the form the source had, one entry per object:
  ``None``, a list of polygons (each a flat ``[x1, y1, x2, y2, ...]``), an RLE
  dict ``{"size": [h, w], "counts": str | list[int]}``, or ``bytes`` holding
  one of those as raw JSON text, decoded only when asked
  (:func:`decode_segmentation`).

This module imports numpy only: no torch, no Pillow.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import check_choice

__all__ = [
    "BoxFormat",
    "Category",
    "Dataset",
    "Instances",
    "LazyRecords",
    "Record",
    "CATEGORY_ID_POLICIES",
    "SIZE_BUCKETS",
    "box_extents",
    "convert_boxes",
    "decimal_sum",
    "decode_segmentation",
    "distinct_ids",
    "is_file_field",
    "make_ids_distinct",
    "other_split_memberships",
    "record_id_from_path",
    "segmentation_json",
    "size_buckets",
]

CATEGORY_ID_POLICIES = ("preserve", "contiguous0", "contiguous1")


class BoxFormat(str, enum.Enum):
    """How four box numbers are to be read. Records always hold ``XYXY``."""

    XYXY = "xyxy"  # x1, y1, x2, y2 (continuous, 0-based)
    XYWH = "xywh"  # COCO: x, y, width, height
    CXCYWH = "cxcywh"  # centre x, centre y, width, height


def convert_boxes(boxes: np.ndarray, src: BoxFormat | str, dst: BoxFormat | str) -> np.ndarray:
    """Convert an ``(N, 4)`` array between box formats (returns a new float64 array).

    Widths and heights are exact decimals (:func:`box_extents`): the xyxy box
    of COCO's ``[473.07, 395.93, 38.65, 28.67]`` gives back ``38.65``, not
    ``38.64999999999998``. Every writer and the evaluators convert through here.

    Example:
        >>> convert_boxes(np.array([[10, 20, 30, 40]]), "xywh", "xyxy").tolist()
        [[10.0, 20.0, 40.0, 60.0]]
        >>> convert_boxes(np.array([[473.07, 395.93, 473.07 + 38.65, 395.93 + 28.67]]), "xyxy", "xywh").tolist()
        [[473.07, 395.93, 38.65, 28.67]]
    """
    src, dst = BoxFormat(src), BoxFormat(dst)
    b = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    if src == dst:
        return b
    if src == BoxFormat.XYWH:
        b[:, 2:] = decimal_sum(b[:, :2], b[:, 2:])
    elif src == BoxFormat.CXCYWH:
        half = b[:, 2:] / 2
        b[:, :2], b[:, 2:] = b[:, :2] - half, b[:, :2] + half
    # b is now xyxy
    if dst == BoxFormat.XYWH:
        b[:, 2:] = box_extents(b)
    elif dst == BoxFormat.CXCYWH:
        wh = box_extents(b)
        b[:, :2] = b[:, :2] + wh / 2
        b[:, 2:] = wh
    return b


def box_extents(xyxy: np.ndarray) -> np.ndarray:
    """``(N, 2)`` width and height of ``(N, 4)`` xyxy boxes, each the shortest decimal ``w``
    with ``x1 + w == x2`` in float64 or as decimals (:func:`decimal_sum`); the same for ``h``.

    Reading ``[x, y, w, h]`` stored ``x2 = x + w``; ``x2 - x`` can differ from ``w`` in the
    last bit (473.07 + 38.65 - 473.07 is 38.64999999999998). The source's ``w`` was the
    shortest decimal that gives back ``x2``, so rounding to 0, 1, ... 15 decimals and keeping
    the first that adds up recovers it exactly. Where no float adds up to ``x2`` in float
    arithmetic (64.09 + w is 331.29999999999995 or 331.30000000000007, never 331.3), the
    decimal difference does, through :func:`decimal_sum` (which the readers use); where
    nothing does, the plain difference is kept.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    out = b[:, 2:] - b[:, :2]
    for a in (0, 1):
        lo, hi, w = b[:, a], b[:, a + 2], out[:, a]
        todo = np.ones(len(w), bool)
        for d in range(16):
            if not todo.any():
                break
            cand = np.round(w, d)
            ok = todo & ((lo + cand == hi) | (decimal_sum(lo, cand) == hi))
            w[ok] = cand[ok]
            todo &= ~ok
    return out


def _decimals(v: np.ndarray) -> np.ndarray:
    """Decimals of each value's shortest form (0..15; 16 where it has none as short)."""
    d = np.full(v.shape, 16, np.int64)
    idx = np.flatnonzero(np.isfinite(v))
    vals = v[idx]
    for k in range(16):
        if not idx.size:
            break
        ok = np.round(vals, k) == vals
        d[idx[ok]] = k
        idx, vals = idx[~ok], vals[~ok]
    return d


def decimal_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` as the sum of their shortest decimals: ``64.09 + 267.21`` is ``331.3``, where
    float64 gives ``331.29999999999995``. A COCO reader adds ``x + w``; this keeps the corner
    the writer had (:func:`box_extents`), so that decimals survive COCO both ways.

    Only sums that come out longer than 10 decimals are looked at (one vectorised test), and
    fixed where both terms are short decimals (the scaled sum stays an exact integer).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s = a + b
    if s.ndim == 0:
        return decimal_sum(a.reshape(1), b.reshape(1))[0]
    flat = s.reshape(-1)  # a view: s is a new contiguous array
    with np.errstate(invalid="ignore", over="ignore"):
        sus = np.flatnonzero(np.round(flat, 10) != flat)
    if sus.size:
        aa = np.broadcast_to(a, s.shape).reshape(-1)[sus]
        bb = np.broadcast_to(b, s.shape).reshape(-1)[sus]
        d = np.maximum(_decimals(aa), _decimals(bb))
        with np.errstate(invalid="ignore", over="ignore"):
            fit = (d < 16) & (np.abs(flat[sus]) * 10.0 ** np.minimum(d, 15) < 2.0 ** 52)
        for k in np.unique(d[fit]).tolist():
            m = sus[fit & (d == k)]
            flat[m] = np.round(flat[m], k)
    return s


def record_id_from_path(relpath: str) -> str:
    """The stable record id: the path relative to the dataset root, posix, without extension.

    ``JPEGImages/000005.jpg`` -> ``JPEGImages/000005``. Two ``0001.jpg`` in
    different folders get two ids.
    """
    relpath = relpath.replace("\\", "/")
    while relpath.startswith("./"):
        relpath = relpath[2:]
    head, _, tail = relpath.rpartition("/")
    stem = tail.rsplit(".", 1)[0] if "." in tail else tail
    return f"{head}/{stem}" if head else stem


def distinct_ids(ids: list[str], paths: list[str]) -> list[str]:
    """``ids``, except that an id standing for several different paths becomes each path, and
    an id still repeated (one file listed twice) gets ``#2``, ``#3``... from its second time on.

    Record ids drop the extension (:func:`record_id_from_path`), so ``a.jpg``
    and ``a.png`` in one folder would share ``a``; they are two images (as
    torchvision's ``ImageFolder`` lists them), and their ids keep the extension.
    Two entries of one COCO file naming the same ``file_name`` are two records
    too (pycocotools keeps both; ``validate`` reports them as ``duplicate_file``).

    Example:
        >>> distinct_ids(["c/a", "c/a", "c/b", "c/b"], ["c/a.jpg", "c/a.png", "c/b.jpg", "c/b.jpg"])
        ['c/a.jpg', 'c/a.png', 'c/b', 'c/b#2']
    """
    if len(set(ids)) == len(ids):
        return ids
    paths_of: dict[str, set[str]] = {}
    for rid, path in zip(ids, paths):
        paths_of.setdefault(rid, set()).add(path)
    out = [path if len(paths_of[rid]) > 1 else rid for rid, path in zip(ids, paths)]
    if len(set(out)) == len(out):
        return out
    seen: dict[str, int] = {}
    for k, rid in enumerate(out):
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1:
            out[k] = f"{rid}#{seen[rid]}"
    return out


def make_ids_distinct(records: "list[Record]") -> None:
    """Apply :func:`distinct_ids` to these records' ids, in place."""
    ids = [r.id for r in records]
    for r, rid, new in zip(records, ids, distinct_ids(ids, [r.path for r in records])):
        if new is not rid:
            r.id = new


def is_file_field(key: str, value: Any) -> bool:
    """Whether ``Record.extra[key]`` names a file relative to the dataset root (Cityscapes'
    ``color_path``, ``polygons_path``, ``semantic_source``...): carried as a file by a writer that
    packs files (shards), and meaningless in another format's tree without it."""
    return (key.endswith("_path") or key == "semantic_source") and isinstance(value, str) and bool(value)


def other_split_memberships(dataset: "Dataset") -> int:
    """How many listings of ``dataset.splits`` name an image outside its own ``Record.split``
    (VOC's trainval holds train and val): what a format that keeps one split per image (a
    folder per split) cannot hold, and counts lost."""
    own = dict(zip(dataset.column("id"), dataset.column("split")))
    return sum(1 for split, ids in dataset.splits.items() for i in ids if i in own and own[i] != split)


def decode_segmentation(segm: Any, where: str = "segmentation") -> Any:
    """Return a segmentation entry in decoded form (raw JSON bytes are parsed).

    Raises:
        InvalidAnnotationError: raw bytes that are not JSON (or not UTF-8 text), naming ``where``.
    """
    if isinstance(segm, (bytes, bytearray, memoryview)):
        try:
            return json.loads(bytes(segm))
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            from .errors import InvalidAnnotationError

            raise InvalidAnnotationError(where, f"segmentation is not valid JSON text ({err})"[:300]) from None
    return segm


@dataclass(frozen=True)
class Category:
    """A class as the source defines it.

    Attributes:
        id: the source's id (COCO ``category_id``, VOC canonical 1..20, ImageNet sorted index).
        name: the source's name (COCO name, VOC name, ImageNet wnid, Cityscapes label name).
        supercategory: COCO supercategory (or Cityscapes category), ``""`` if none.
        extra: anything else the source has (COCO ``keypoints`` names and
            1-based ``skeleton``, panoptic ``isthing``/``color``, ImageNet
            ``words``, Cityscapes ``trainId``...).
    """

    id: int
    name: str
    supercategory: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _as_array(name: str, value: Any, dtype: Any, shape_tail: tuple[int, ...], n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.size == 0 and arr.ndim != 1 + len(shape_tail):
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        raise ValueError(f"Instances.{name} must have shape (N, {', '.join(map(str, shape_tail)) or ''})"
                         .replace(", )", ")") + f", but got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"Instances.{name} has {arr.shape[0]} rows, but boxes has {n}")
    return arr


@dataclass(eq=False)
class Instances:
    """The objects of one image, as parallel arrays of length N.

    Attributes:
        boxes: ``(N, 4) float64`` xyxy, 0-based continuous pixels.
        labels: ``(N,) int64`` source category ids.
        iscrowd: ``(N,) bool`` (COCO crowd regions).
        difficult: ``(N,) bool`` (VOC ``difficult``; ignored in evaluation).
        ids: ``(N,) int64`` source annotation ids (COCO ``id``; ``-1`` where the source has none).
        area: ``(N,) float64`` the source's stored area (COCO), NaN where unknown.
        segmentation: ``None`` or a list of N entries (see module docstring).
        keypoints: ``None`` or ``(N, K, 3) float64`` ``x, y, v`` with COCO's visibility 0/1/2.
        extra: ``None`` or a list of N dicts of per-object fields only one
            format has (VOC ``pose``, ``truncated``, ``occluded``, ``parts``,
            ``actions``, ``attributes``; COCO unknown keys).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    iscrowd: np.ndarray | None = None
    difficult: np.ndarray | None = None
    ids: np.ndarray | None = None
    area: np.ndarray | None = None
    segmentation: list | None = None
    keypoints: np.ndarray | None = None
    extra: list | None = None

    # The per-object arrays: ``None`` in ``__init__`` means "fill with the default", so a
    # trusted constructor, which stores what it is given, needs each of them.
    _ARRAY_FIELDS: ClassVar[tuple[str, ...]] = ("boxes", "labels", "iscrowd", "difficult", "ids", "area")
    # Set below the class: see _trusted_constructor.
    _trusted: ClassVar[Callable[..., "Instances"]]

    def __post_init__(self) -> None:
        self.boxes = _as_array("boxes", self.boxes, np.float64, (4,), None)
        n = self.boxes.shape[0]
        self.labels = _as_array("labels", self.labels, np.int64, (), n)
        self.iscrowd = (np.zeros(n, bool) if self.iscrowd is None
                        else _as_array("iscrowd", self.iscrowd, bool, (), n))
        self.difficult = (np.zeros(n, bool) if self.difficult is None
                          else _as_array("difficult", self.difficult, bool, (), n))
        self.ids = (np.full(n, -1, np.int64) if self.ids is None
                    else _as_array("ids", self.ids, np.int64, (), n))
        self.area = (np.full(n, np.nan) if self.area is None
                     else _as_array("area", self.area, np.float64, (), n))
        if self.keypoints is not None:
            kp = np.asarray(self.keypoints, dtype=np.float64)
            if kp.ndim != 3 or kp.shape[2] != 3 or kp.shape[0] != n:
                raise ValueError(f"Instances.keypoints must have shape ({n}, K, 3), but got shape {kp.shape}")
            self.keypoints = kp
        for name in ("segmentation", "extra"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, list):
                    value = list(value)
                    setattr(self, name, value)
                if len(value) != n:
                    raise ValueError(f"Instances.{name} has {len(value)} entries, but boxes has {n}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instances):
            return NotImplemented
        return (np.array_equal(self.boxes, other.boxes) and np.array_equal(self.labels, other.labels)
                and np.array_equal(self.iscrowd, other.iscrowd)
                and np.array_equal(self.difficult, other.difficult)
                and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.area, other.area, equal_nan=True)
                and _opt_equal(self.keypoints, other.keypoints)
                and _segm_list(self.segmentation) == _segm_list(other.segmentation)
                and (self.extra or None) == (other.extra or None))

    def select(self, keep: np.ndarray | Sequence[int] | Sequence[bool]) -> "Instances":
        """A new Instances with only the rows in ``keep`` (indices or a boolean mask)."""
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        pick = (lambda lst: None if lst is None else [lst[i] for i in idx])
        return Instances(
            boxes=self.boxes[idx], labels=self.labels[idx], iscrowd=self.iscrowd[idx],
            difficult=self.difficult[idx], ids=self.ids[idx], area=self.area[idx],
            segmentation=pick(self.segmentation),
            keypoints=None if self.keypoints is None else self.keypoints[idx],
            extra=pick(self.extra))


def _opt_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


def _segm_list(segm: list | None) -> list | None:
    if segm is None or all(s is None for s in segm):
        return None
    return [segmentation_json(s) for s in segm]


def segmentation_json(segm: Any) -> Any:
    """One object's segmentation entry as plain JSON values, in the form the source had: None,
    polygons as lists of floats, or an RLE ``{"size": [h, w], "counts": str | list[int]}``
    (raw JSON bytes are decoded, bytes counts become text, numpy values lists).

    Example:
        >>> segmentation_json(b'{"size": [2, 2], "counts": "04"}')
        {'size': [2, 2], 'counts': '04'}
    """
    return _normalise_segm(decode_segmentation(segm))


def _normalise_segm(s: Any) -> Any:
    if isinstance(s, dict):
        counts = s.get("counts")
        if isinstance(counts, (bytes, bytearray)):
            counts = bytes(counts).decode("ascii")
        elif isinstance(counts, np.ndarray):
            counts = counts.tolist()
        return {"size": [int(v) for v in s.get("size", ())], "counts": counts}
    if isinstance(s, (list, tuple)):
        return [np.asarray(p, dtype=np.float64).ravel().tolist() for p in s]
    return s


@dataclass(eq=False)
class Record:
    """One image and everything annotated on it.

    Attributes:
        id: stable id from the relative path (:func:`record_id_from_path`).
        path: image path relative to the dataset root, posix separators.
        width, height: size of the decoded image (EXIF orientation applied);
            0 when neither the annotation nor the image says.
        split: the split it was read under (``"train"``, ``"val"``...) or None.
        label: image-level class (source category id) for classification, or None.
        instances: the objects (:class:`Instances`).
        mask_path: semantic mask, relative to the root (VOC SegmentationClass,
            Cityscapes labelIds), or None.
        instance_mask_path: instance mask (VOC SegmentationObject, Cityscapes
            instanceIds, COCO panoptic PNG), or None.
        captions: image captions (COCO captions).
        source_id: the id the source format gave the image (COCO's int
            ``image_id``, Cityscapes' ``frankfurt_000000_000294``), or None.
        extra: image-level fields only one format has (VOC ``source``/
            ``owner``/``segmented``, COCO ``license``/``coco_url``,
            Cityscapes city/sequence/frame).
    """

    id: str
    path: str
    width: int = 0
    height: int = 0
    split: str | None = None
    label: int | None = None
    instances: Instances = field(default_factory=Instances)
    mask_path: str | None = None
    instance_mask_path: str | None = None
    captions: list[str] = field(default_factory=list)
    source_id: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # Set below the class: see _trusted_constructor.
    _trusted: ClassVar[Callable[..., "Record"]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    def replace(self, **changes: Any) -> "Record":
        """A copy with some fields changed: shallow, as :func:`dataclasses.replace` makes it,
        without running ``__init__`` (a sixth of the cost: ``Dataset.subset`` copies every record).

        Raises:
            TypeError: a name that is not a Record field.
        """
        unknown = sorted(set(changes) - set(_RECORD_FIELDS))
        if unknown:
            raise TypeError(f"Record has no field(s) {', '.join(unknown)}")
        c = object.__new__(type(self))
        c.__dict__.update(self.__dict__)
        c.__dict__.update(changes)
        return c


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Record))


def _trusted_constructor(cls: type, required: Sequence[str] = ()) -> Callable[..., Any]:
    """A fast keyword-only constructor of the dataclass ``cls`` that stores its arguments as given.

    ``__init__`` and ``__post_init__`` do not run: nothing is checked or converted,
    so a caller passes every value in its stored form (arrays of the field's dtype
    and shape, lists where the field is a list). Parsers that have built typed,
    shaped columns use it: validating 118k COCO images again costs seconds.

    The constructor is generated from :func:`dataclasses.fields` (as ``dataclasses``
    generates ``__init__``), so the field list is written once, in the class: a
    field added there is in every record it builds, with its default (a fresh one
    from ``default_factory``) where a caller does not name it; a name that is not a
    field is a ``TypeError``, and so is a field of ``required`` left out (fields
    whose ``__init__`` default is not their stored form, such as ``Instances.iscrowd``).
    """
    names = ", ".join(f.name for f in dataclasses.fields(cls))
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": dataclasses.MISSING}
    params, items = [], []
    for f in dataclasses.fields(cls):
        value = f.name
        if f.name in required or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            params.append(f.name)
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            value = f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"
        else:
            ns[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        items.append(f"{f.name!r}: {value}")
    unknown = set(required) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    src = (f"def _trusted(*, {', '.join(params)}):\n"
           f"    obj = _new(_cls)\n"
           f"    obj.__dict__ = {{{', '.join(items)}}}\n"
           f"    return obj\n")
    exec(src, ns)  # noqa: S102 - source built above from the class's own field names
    fn = ns["_trusted"]
    fn.__qualname__ = f"{cls.__qualname__}._trusted"
    fn.__module__ = cls.__module__
    fn.__doc__ = (f"A {cls.__name__} from values already in their stored form, unchecked "
                  f"(:func:`dsprep.records._trusted_constructor`). Keyword-only: {names}.")
    return fn


Instances._trusted = staticmethod(_trusted_constructor(Instances, required=Instances._ARRAY_FIELDS))
Record._trusted = staticmethod(_trusted_constructor(Record))


class LazyRecords:
    """Records a parser has listed but not yet built, for :class:`Dataset` to build on first use.

    Listing ImageNet train (1.28M files) costs about as much as walking the
    folders; building a :class:`Record` and its id and path strings per file
    costs as much again, and ~400 bytes a record. A parser that returns a
    subclass lets ``len(ds)``, ``ds.splits``, ``ds.column(...)`` and the
    loaders (which read columns) work from its compact listing; the records
    are built, once, when ``ds.records`` (or iteration, indexing) is first
    used, and from then on the Dataset holds an ordinary list.

    Subclasses implement ``__len__`` and :meth:`build`; :meth:`column` and
    :meth:`split_ids` answer without building where they can (by default they
    cannot, and the Dataset builds its records to answer).
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def build(self) -> list[Record]:
        """Every record, in order, as a new list (called at most once per Dataset)."""
        raise NotImplementedError

    def column(self, name: str) -> list | None:
        """``[getattr(r, name) for r in records]`` without building them, or None if it cannot."""
        return None

    def split_ids(self) -> dict[str, list[str]] | None:
        """Split name -> ids of the records with that ``split``, in order, or None if it cannot."""
        return None

    def subset(self, split: str) -> "LazyRecords | None":
        """The records whose ``split`` is ``split``, still unbuilt and sharing no record with
        these, or None if it cannot."""
        return None


# COCO's object sizes (cocodataset.org/#detection-eval): small < 32^2 <= medium < 96^2 <= large,
# in pixels of area. One definition for info and stats.
SIZE_BUCKETS = (("small", -math.inf, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, math.inf))


def size_buckets(boxes: np.ndarray) -> dict[str, int]:
    """Objects per COCO size bucket (:data:`SIZE_BUCKETS`), by the area of each ``xyxy`` box.

    By the box, not a stored or mask area: every format holds the box, so the same objects
    give the same counts from COCO, VOC, Cityscapes or shards (COCOeval buckets by COCO's
    ``area`` field, the segment's pixels, which other formats do not store; a box is never
    smaller than its segment, so an object just under a threshold by its mask can count one
    bucket up here).

    Example:
        >>> size_buckets(np.array([[0, 0, 10, 10], [0, 0, 32, 32], [0, 0, 100, 100]], np.float64))
        {'small': 1, 'medium': 1, 'large': 1}
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return {name: int(((area >= lo) & (area < hi)).sum()) for name, lo, hi in SIZE_BUCKETS}


class Dataset:
    """Categories plus image records, as parsed from one dataset root.

    Args:
        categories: the classes, in the source's order.
        records: the images.
        splits: split name -> record ids, in the source's order. Splits may
            overlap (VOC ``trainval`` is ``train`` + ``val``). When omitted it
            is built from each record's ``split``.
        info: dataset-level metadata (COCO ``info`` and ``licenses``, VOC year...).
        root: the directory that record paths are relative to.
        format: the format name it was parsed from.

    The torch layer's entry points, ``ds.torch(task=..., augment=...)`` (a
    :class:`dsprep.loading.TorchDataset`) and ``ds.loader(batch_size, ...)``
    (:func:`dsprep.loading.make_loader`), are attached by the package root
    (``dsprep/__init__.py``): this module is the ground floor and names no
    layer above it (``docs/architecture.md``). torch is imported when they
    are first called.

    Example:
        >>> ds = Dataset([Category(1, "cat")], [Record("a", "a.jpg", 8, 8, "train")])
        >>> len(ds), list(ds.splits)
        (1, ['train'])
    """

    # Set on the class by dsprep/__init__.py (see above); declared here for readers and type checkers.
    torch: Callable[..., Any]
    loader: Callable[..., Any]

    def __init__(self, categories: Iterable[Category], records: Iterable[Record] | "LazyRecords", *,
                 splits: Mapping[str, Sequence[str]] | None = None, info: Mapping[str, Any] | None = None,
                 root: Any = None, format: str | None = None):
        self.categories: list[Category] = list(categories)
        # A LazyRecords is kept as it is until .records is first read (see LazyRecords).
        self._records: list[Record] | LazyRecords = (records if isinstance(records, LazyRecords)
                                                     else list(records))
        # Given, or the records' own ``split`` fields as they are now; for a LazyRecords,
        # derived on first read of .splits (from the listing, without building records).
        self._splits: dict[str, list[str]] | None = (None if splits is None
                                                     else {k: list(v) for k, v in splits.items()})
        if self._splits is None and not isinstance(self._records, LazyRecords):
            self._splits = self._splits_from_records()
        self.info: dict[str, Any] = dict(info or {})
        self.root = root
        self.format = format
        ids = [c.id for c in self.categories]
        if len(set(ids)) != len(ids):
            dup = [i for i, n in Counter(ids).items() if n > 1]
            raise ValueError(f"duplicate category ids {dup[:5]}")

    @property
    def records(self) -> list[Record]:
        """The images, a list of :class:`Record` (built here, once, if the parser listed them lazily)."""
        recs = self._records
        if isinstance(recs, LazyRecords):
            recs = self._records = recs.build()
            if self._splits is None:  # fixed now, before anyone edits a record (as for a list)
                self._splits = self._splits_from_records()
        return recs

    @records.setter
    def records(self, value: Iterable[Record]) -> None:
        if self._splits is None:  # splits stay those of the records given at construction
            self._splits = self._splits_from_records()
        self._records = list(value)

    @property
    def splits(self) -> dict[str, list[str]]:
        """Split name -> record ids, in the source's order (may overlap)."""
        if self._splits is None:
            self._splits = self._splits_from_records()
        return self._splits

    @splits.setter
    def splits(self, value: Mapping[str, Sequence[str]]) -> None:
        self._splits = {k: list(v) for k, v in value.items()}

    def _splits_from_records(self) -> dict[str, list[str]]:
        if isinstance(self._records, LazyRecords):
            listed = self._records.split_ids()
            if listed is not None:
                return listed
        built: dict[str, list[str]] = {}
        for r in self.records:
            if r.split is not None:
                built.setdefault(r.split, []).append(r.id)
        return built

    def column(self, name: str) -> list:
        """One field of every record, in record order: ``[getattr(r, name) for r in ds.records]``.

        For lazily listed records (ImageNet) the values come from the listing
        without building a :class:`Record` per image, which is how the loaders
        read a 1.28M-image tree. Treat the values as read-only.
        """
        if name not in _RECORD_FIELDS:
            raise AttributeError(f"Record has no field {name!r} (fields: {', '.join(_RECORD_FIELDS)})")
        if isinstance(self._records, LazyRecords):
            listed = self._records.column(name)
            if listed is not None:
                return listed
        return [getattr(r, name) for r in self.records]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def __repr__(self) -> str:
        return (f"Dataset(format={self.format!r}, images={len(self)}, "
                f"objects={self.num_objects()}, categories={len(self.categories)}, "
                f"splits={ {k: len(v) for k, v in self.splits.items()} })")

    def num_objects(self) -> int:
        return sum(map(len, self.column("instances")))

    def record_by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.records}

    def category_by_id(self) -> dict[int, Category]:
        return {c.id: c for c in self.categories}

    def category_index(self) -> dict[int, int]:
        """Source category id -> contiguous 0-based training index (in category order)."""
        return {c.id: i for i, c in enumerate(self.categories)}

    def class_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def subset(self, split: str) -> "Dataset":
        """The records of one split, as a new Dataset sharing categories and info."""
        check_choice("split", split, self.splits)
        if isinstance(self._records, LazyRecords):
            part = self._records.subset(split)
            ids = None if part is None else part.column("id")
            # Still unbuilt when the split's ids are exactly those listed under it (they are,
            # unless ds.splits was edited).
            if ids is not None and ids == self.splits[split]:
                return Dataset(self.categories, part, splits={split: ids}, info=self.info, root=self.root,
                               format=self.format)
        by_id = self.record_by_id()
        recs = [by_id[i].replace(split=split) for i in self.splits[split] if i in by_id]
        return Dataset(self.categories, recs, splits={split: [r.id for r in recs]},
                       info=self.info, root=self.root, format=self.format)

    def remap_categories(self, policy: str) -> tuple["Dataset", dict[int, int]]:
        """Renumber categories by ``policy``; returns the new dataset and ``{old_id: new_id}``.

        ``preserve`` keeps source ids; ``contiguous0`` numbers categories
        0..C-1 in category order, ``contiguous1`` 1..C. Labels and image-level
        labels follow.
        """
        check_choice("category-id policy", policy, CATEGORY_ID_POLICIES)
        if policy == "preserve":
            return self, {c.id: c.id for c in self.categories}
        start = 0 if policy == "contiguous0" else 1
        mapping = {c.id: start + i for i, c in enumerate(self.categories)}
        lut_keys = np.array(sorted(mapping), dtype=np.int64)
        lut_vals = np.array([mapping[k] for k in lut_keys], dtype=np.int64)

        def remap(labels: np.ndarray) -> np.ndarray:
            if labels.size == 0:
                return labels.copy()
            pos = np.searchsorted(lut_keys, labels)
            pos = np.clip(pos, 0, len(lut_keys) - 1)
            ok = lut_keys[pos] == labels
            return np.where(ok, lut_vals[pos], labels)

        cats = [dataclasses.replace(c, id=mapping[c.id]) for c in self.categories]
        recs = []
        for r in self.records:
            inst = dataclasses.replace(r.instances, labels=remap(r.instances.labels))
            label = mapping.get(r.label, r.label) if r.label is not None else None
            recs.append(r.replace(instances=inst, label=label))
        return Dataset(cats, recs, splits=self.splits, info=self.info, root=self.root,
                       format=self.format), mapping

    def stats(self) -> dict[str, Any]:
        """Per split: images, objects, per-category object and image counts, COCO size
        buckets, image size range and boxes per image.

        Size buckets: :func:`size_buckets` (COCO's thresholds on the box area, the
        same for the same objects whatever the format).
        """
        names = {c.id: c.name for c in self.categories}
        by_id = self.record_by_id()
        groups = self.splits or {"all": [r.id for r in self.records]}

        def counts(values: np.ndarray) -> dict[str, int]:
            keys, n = np.unique(values, return_counts=True)
            return {names.get(k, str(k)): v for k, v in zip(keys.tolist(), n.tolist())}

        out: dict[str, Any] = {}
        for split, ids in groups.items():
            # One concatenation per field, then numpy: a Counter per record cost
            # 0.3 s on COCO train2017's 118k images.
            recs = [by_id[i] for i in ids if i in by_id]
            per_image = np.array([len(r.instances) for r in recs], np.int64)
            n_obj = int(per_image.sum())
            insts = [r.instances for r in recs if len(r.instances)]
            labels = np.concatenate([x.labels for x in insts]) if insts else np.zeros(0, np.int64)
            owner = np.repeat(np.arange(len(insts)), [len(x) for x in insts])
            first_in_image = np.unique(np.stack([owner, labels]), axis=1)[1] if insts else labels
            sizes = np.array([(r.width, r.height) for r in recs if r.width and r.height], np.int64).reshape(-1, 2)
            buckets: dict[str, int] = {}
            if insts:
                buckets = size_buckets(np.concatenate([x.boxes for x in insts]))
            image_labels = np.array([r.label for r in recs if r.label is not None], np.int64)
            out[split] = {
                "images": len(recs),
                "objects": n_obj,
                "objects_per_category": counts(labels),
                "images_per_category": counts(first_in_image),
                "images_per_label": counts(image_labels),
                "size_buckets": buckets,
                "image_size": ({"width": [int(sizes[:, 0].min()), int(sizes[:, 0].max())],
                                "height": [int(sizes[:, 1].min()), int(sizes[:, 1].max())]} if len(sizes) else None),
                "boxes_per_image": ({"mean": round(n_obj / len(recs), 3), "max": int(per_image.max())}
                                    if recs else None),
            }
        return out
