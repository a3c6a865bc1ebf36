"""Cityscapes (https://www.cityscapes-dataset.com), as cityscapesScripts lays it out.

::

    ROOT/
      leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        8-bit label ids
                                                   _gtFine_instanceIds.png     16-bit, id*1000+k
                                                   _gtFine_color.png           RGBA
                                                   _gtFine_polygons.json
                                                   _gtFine_labelTrainIds.png   (generated)
      gtCoarse/...  the same with _gtCoarse_ (train, val, train_extra)

Splits are train (2975), val (500), test (1525) and, in gtCoarse, train_extra.
The test split's ground truth is a dummy (only "ego vehicle" and
"rectification border" are real) [cityscapesScripts README]; it is flagged,
never turned into instances.

Records: ``id`` from the image path, ``source_id`` = ``<city>_<seq>_<frame>``
(the image id cityscapesScripts' panoptic conversion uses), ``extra`` =
city/sequence/frame (strings, zero padding kept), ``mask_path`` = labelIds
(or labelTrainIds, see ``label_space``), ``instance_mask_path`` = instanceIds.
Categories are the 35 rows of cityscapesScripts' ``labels.py``
(:mod:`._cityscapes_labels`): id = Cityscapes label id, supercategory = its
category, ``extra`` = trainId, catId, hasInstances, ignoreInEval, color.

Instances are not read by default (that needs every instanceIds PNG
decoded). ``instances="things"`` (what ``convert --to coco`` asks for)
gives one object per instance-class segment of instanceIds: values
``>= 1000`` are single objects (``iscrowd=0``); values ``< 1000`` of an
instance class are groups (``cargroup``...), kept as ``iscrowd=1`` objects of
that class, as cityscapesScripts' ``createPanopticImgs`` does.
``instances="panoptic"`` adds the stuff segments and drops ignoreInEval
classes, exactly ``createPanopticImgs``' segment list. Boxes are pixel
extents (xyxy), ``area`` the pixel count, ``ids`` the instanceIds value and
``segmentation`` a compressed COCO RLE. Without instanceIds PNGs the map is
rasterised from ``polygons.json`` as ``json2instanceImg`` does.

See ``docs/formats/cityscapes.md``.
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import _io
from .._checks import MAX_SIDE, check_canvas, check_side
from .._paths import output_path
from ..errors import DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError, check_choice
from ..records import Category, Dataset, Instances, Record, other_split_memberships, record_id_from_path
from . import _cityscapes_labels as L

NAME = "cityscapes"
DESCRIPTION = "Cityscapes leftImg8bit + gtFine/gtCoarse (labelIds, instanceIds, polygons.json)"
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"splits"})

__all__ = ["NAME", "DESCRIPTION", "detect", "parse", "write", "parse_options_for", "categories",
           "decode_instance_ids", "instance_map_from_polygons", "read_semantic_mask", "ANNOTATION_TYPES", "LABEL_SPACES",
           "INSTANCE_MODES"]

log = logging.getLogger(__name__)

ANNOTATION_TYPES = ("gtFine", "gtCoarse")
LABEL_SPACES = ("id", "trainId")
INSTANCE_MODES = ("none", "things", "panoptic")
IMAGE_DIR = "leftImg8bit"
IMAGE_SUFFIX = "_leftImg8bit.png"
# <city>_<seq>_<frame> (aachen_000000_000019): the city is everything before the last two
# fields, which are numbers (6 digits in the official release; other digit counts accepted)
_BASE_RE = re.compile(r"^(?P<city>.+)_(?P<sequence>\d+)_(?P<frame>\d+)$")
# Cityscapes images are PNG; a tree written from another format keeps its images' extension
_IMAGE_RE = re.compile(r"^(?P<base>.+)_leftImg8bit\.(?:png|jpe?g)$", re.IGNORECASE)
_GT_KINDS = ("labelIds", "labelTrainIds", "instanceIds", "instanceTrainIds", "color", "polygons")
DOWNLOAD_PAGE = "https://www.cityscapes-dataset.com/downloads/"


def categories() -> list[Category]:
    """The 35 Cityscapes labels as categories (id = label id, in labels.py order).

    Example:
        >>> categories()[26].name, categories()[26].extra["trainId"]
        ('car', 13)
    """
    return [Category(lab.id, lab.name, lab.category,
                     {"trainId": lab.trainId, "catId": lab.catId, "hasInstances": lab.hasInstances,
                      "ignoreInEval": lab.ignoreInEval, "color": list(lab.color)})
            for lab in L.LABELS]


def decode_instance_ids(values: np.ndarray) -> np.ndarray:
    """Class ids of instanceIds pixel values: ``v if v < 1000 else v // 1000`` [CSS].

    Example:
        >>> decode_instance_ids(np.array([7, 26000, 26001, 24])).tolist()
        [7, 26, 26, 24]
    """
    v = np.asarray(values, dtype=np.int64)
    return np.where(v < 1000, v, v // 1000)


def parse_options_for(target: str) -> dict[str, Any]:
    """Parse options a conversion to ``target`` needs (used by :func:`dsprep.convert`).

    COCO instances and VOC need the objects (boxes + RLE masks); COCO panoptic needs
    every evaluated segment, and re-reads the instanceIds pixels itself, so
    no RLE is built for it (a frame with only polygons.json keeps the RLE of
    its rasterised map: the writer has no PNG to re-read).
    """
    if target in ("coco", "voc"):
        return {"instances": "things"}
    if target == "coco-panoptic":
        return {"instances": "panoptic", "masks": False}
    return {}


def info_options() -> dict[str, Any]:
    """Parse options ``dsprep info`` uses: the objects (instance classes, from instanceIds or
    polygons.json; no RLE masks), which a plain parse does not read."""
    return {"instances": "things", "masks": False}


def detect(path: str | os.PathLike) -> bool:
    """A directory holding ``leftImg8bit/`` or ``gtFine/``/``gtCoarse/`` with split folders."""
    p = Path(path)
    if not p.is_dir():
        return False
    return any((p / d).is_dir() for d in (IMAGE_DIR, *ANNOTATION_TYPES))


# --------------------------------------------------------------------------- listing

def _scandirs(path: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir())
    except FileNotFoundError:
        return []


def _scanfiles(path: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_file())
    except FileNotFoundError:
        return []


def _in_city(base: str, city: str) -> bool:
    """``base`` is ``<city>_<seq>_<frame>`` of the folder's own city.

    A file of another city's folder (``bremen_000101_000019_gtFine_labelIds.png``
    in ``gtFine/val/bochum/``) would make a frame of its own with no image
    while the real frame lost its mask: it is a stray instead.
    """
    m = _BASE_RE.match(base)
    return bool(m) and m["city"] == city


def _list_split(root: Path, split: str, annotations: str) -> tuple[list[dict], list[str]]:
    """One dict per frame: base, city, image (rel path or None), gt files by kind. Plus stray names."""
    frames: dict[tuple[str, str], dict] = {}
    stray: list[str] = []
    img_dir, gt_dir = root / IMAGE_DIR / split, root / annotations / split
    gt_tag = f"_{annotations}_"
    for city in sorted(set(_scandirs(img_dir)) | set(_scandirs(gt_dir))):
        for name in _scanfiles(img_dir / city):
            m = _IMAGE_RE.match(name)
            if not m or not _in_city(m["base"], city):
                stray.append(f"{IMAGE_DIR}/{split}/{city}/{name}")
                continue
            base = m["base"]
            f = frames.setdefault((city, base), {"city": city, "base": base, "gt": {}})
            f["image"] = f"{IMAGE_DIR}/{split}/{city}/{name}"
        for name in _scanfiles(gt_dir / city):
            i = name.rfind(gt_tag)
            if i < 0:
                stray.append(f"{annotations}/{split}/{city}/{name}")
                continue
            base, rest = name[:i], name[i + len(gt_tag):]
            kind = rest.rsplit(".", 1)[0]
            if kind not in _GT_KINDS or not _in_city(base, city):
                stray.append(f"{annotations}/{split}/{city}/{name}")
                continue
            f = frames.setdefault((city, base), {"city": city, "base": base, "gt": {}})
            f["gt"][kind] = f"{annotations}/{split}/{city}/{name}"
    out = []
    for key in sorted(frames):
        f = frames[key]
        f.setdefault("image", f"{IMAGE_DIR}/{split}/{f['city']}/{f['base']}{IMAGE_SUFFIX}")
        f["split"] = split
        out.append(f)
    return out, stray


# --------------------------------------------------------------------------- per-frame work

def instance_map_from_polygons(doc: dict, where: str = "polygons.json") -> np.ndarray:
    """The instanceIds map that cityscapesScripts' ``json2instanceImg`` draws from a polygons.json.

    Rules [CSS json2instanceImg]: background 0 (unlabeled); ``deleted``
    objects skipped; objects drawn in list order (later ones on top) with PIL
    ``ImageDraw.polygon``; an unknown label ending in ``group`` is its base
    class drawn with the plain id (no instance); instance classes get
    ``id*1000 + k``, k counting from 0 per class; negative ids (license
    plate) are not drawn.

    Raises:
        InvalidAnnotationError: an unknown label, or a polygon that is not a
            list of at least 2 ``[x, y]`` points (PIL draws nothing of fewer),
            naming the file and the object's index.
    """
    from ..masks import rasterise_polygons

    w, h = _polygons_size(doc, where)
    objects = _polygon_objects(doc, where)
    check_canvas(w, h, where, "polygons.json canvas (imgWidth x imgHeight)")
    counters: dict[str, int] = {}
    shapes = []
    for i, obj in enumerate(objects):
        if obj.get("deleted", 0):
            continue
        lab, is_group = _polygon_label(obj, f"{where}: object {i}")
        value = lab.id
        if lab.hasInstances and not is_group:
            value = lab.id * 1000 + counters.get(lab.name, 0)
            counters[lab.name] = counters.get(lab.name, 0) + 1
        if value < 0:
            continue
        shapes.append((_polygon_points(obj.get("polygon"), f"{where}: object {i} ({obj.get('label')!r})"), value))
    return rasterise_polygons(w, h, shapes, background=0)


def _polygons_size(doc: Any, where: str) -> tuple[int, int]:
    """``(imgWidth, imgHeight)`` of a polygons.json, each an integer in ``0..MAX_SIDE``."""
    if not isinstance(doc, dict) or "imgWidth" not in doc or "imgHeight" not in doc:
        raise InvalidAnnotationError(where, "expected a JSON object with imgWidth, imgHeight and an 'objects' "
                                            "list (cityscapesScripts' polygons.json)")
    w, h = check_side(doc["imgWidth"], where, "imgWidth"), check_side(doc["imgHeight"], where, "imgHeight")
    if not (w and h):  # the size of the image its polygons are drawn on
        raise InvalidAnnotationError(where, f"imgWidth and imgHeight must be at least 1, found {w} x {h}")
    return w, h


def _polygon_objects(doc: dict, where: str) -> list[dict]:
    """The ``objects`` list of a polygons.json, each a JSON object (not a number, string or list)."""
    objects = doc.get("objects", [])
    if not isinstance(objects, list):
        raise InvalidAnnotationError(where, f"'objects' must be a list of objects, found "
                                            f"{type(objects).__name__}")
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise InvalidAnnotationError(f"{where}: object {i}", "expected a JSON object with 'label' and "
                                                                 f"'polygon', found {obj!r}"[:300])
    return objects


def _polygon_label(obj: Any, where: str) -> tuple[Any, bool]:
    """(label row, is a group) of one polygons.json object; an unknown label is a named error."""
    label = obj.get("label") if isinstance(obj, dict) else None
    if not isinstance(label, str):
        raise InvalidAnnotationError(where, f"'label' must be a Cityscapes label name, found {label!r}"[:300])
    is_group = False
    if label not in L.BY_NAME and isinstance(label, str) and label.endswith("group"):
        label, is_group = label[: -len("group")], True
    lab = L.BY_NAME.get(label)
    if lab is None:
        raise InvalidAnnotationError(where, f"unknown label {obj.get('label') if isinstance(obj, dict) else obj!r}; "
                                            f"expected a Cityscapes label name (labels.py) or <name>group")
    return lab, is_group


def _check_polygon_labels(doc: dict, where: str) -> None:
    """Every object of a polygons.json is a JSON object with a Cityscapes label and a polygon PIL
    can draw, and its canvas is within the pixel limit (no pixels drawn here)."""
    check_canvas(*_polygons_size(doc, where), where, "polygons.json canvas (imgWidth x imgHeight)")
    for i, obj in enumerate(_polygon_objects(doc, where)):
        if not obj.get("deleted", 0):
            _polygon_label(obj, f"{where}: object {i}")
            _polygon_points(obj.get("polygon"), f"{where}: object {i} ({obj.get('label')!r})")


def read_semantic_mask(path: str | os.PathLike, kind: str) -> np.ndarray:
    """The labelIds map (uint8) of a frame whose semantic source is not a labelIds PNG.

    ``path`` is the record's ``extra["semantic_source"]`` (its ``mask_path``
    is None: the file holds no label ids) and ``kind`` its
    ``extra["mask_kind"]``: ``"instanceIds"`` (the
    class of value ``v`` is ``decode_instance_ids(v)``) or ``"polygons"``
    (drawn as cityscapesScripts' ``json2labelImg`` draws it). This is what
    ``Dataset.info["mask_readers"]`` names, so that the torch layer, validate
    and other formats' writers get the same map a labelIds PNG would hold.

    Example:
        >>> read_semantic_mask("gtFine/val/x/x_000000_000019_gtFine_polygons.json", "polygons")  # doctest: +SKIP
        array([[23, 23, ...]], dtype=uint8)
    """
    from ..masks import read_label_png

    if kind == "instanceIds":
        return decode_instance_ids(read_label_png(path)).clip(0, 255).astype(np.uint8)
    if kind == "polygons":
        return _label_map_from_polygons(_io.read_json_object(Path(path)), str(path))
    raise ValueError(f"read_semantic_mask: kind must be 'instanceIds' or 'polygons', found {kind!r}")


def _polygon_points(poly: Any, where: str) -> list[tuple[float, float]]:
    """The ``[[x, y], ...]`` of a polygons.json object as points PIL can draw.

    PIL's ``ImageDraw.polygon`` needs two points or more (two draw a line),
    and json2instanceImg would crash on fewer; an empty or one-point polygon
    is reported here, as a bad annotation of this object, instead.

    Raises:
        InvalidAnnotationError: not a list of at least 2 ``[x, y]`` pairs of finite numbers.
    """
    try:
        pts = [(p[0], p[1]) for p in poly]  # as stored: PIL draws them as json2instanceImg does
    except (TypeError, IndexError, KeyError):
        pts = None
    if pts is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                              and abs(v) <= MAX_SIDE for pt in pts for v in pt):
        raise InvalidAnnotationError(where, f"polygon must be a list of [x, y] points (finite numbers within "
                                            f"+-{MAX_SIDE}), found {poly!r}"[:200])
    if len(pts) < 2:
        raise InvalidAnnotationError(where, f"polygon has {len(pts)} point(s), at least 2 are needed to draw it "
                                            f"(found {poly!r})"[:200])
    return pts


# class id -> (has instances, kept in panoptic mode), as lookup tables over ids 0..33
_HAS_INST = np.zeros(256, bool)
_PANOPTIC = np.zeros(256, bool)
for _lab in L.LABELS:
    if _lab.id >= 0:
        _HAS_INST[_lab.id] = _lab.hasInstances
        _PANOPTIC[_lab.id] = not _lab.ignoreInEval


def _keep_mask(values: np.ndarray, mode: str) -> np.ndarray:
    """Which instanceIds values become objects.

    things: instance classes, single (``>= 1000``) or group (``< 1000``).
    panoptic: every class not ignoreInEval (createPanopticImgs). A value
    ``>= 1000`` of a class without instances (datumaro writes 1024) is no
    object in either mode.
    """
    v = np.asarray(values, dtype=np.int64)
    cls = np.where(v < 1000, v, v // 1000)
    ok = (cls >= 0) & (cls < 256)
    cls = np.where(ok, cls, 0)
    inst = _HAS_INST[cls] & ok
    if mode == "things":
        return inst
    return ok & _PANOPTIC[cls] & ((v < 1000) | inst)


def _keep_values(values: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept values, their class ids, iscrowd) of segment values."""
    v = np.asarray(values, dtype=np.int64)
    v = v[_keep_mask(v, mode)]
    cls = decode_instance_ids(v)
    crowd = (v < 1000) & _HAS_INST[np.clip(cls, 0, 255)]
    return v, cls, crowd


def _frame_instances(root: Path, frame: dict, mode: str, masks: bool,
                     polygons: dict | None) -> tuple[Instances, int, int]:
    """Objects of one frame from its instanceIds PNG, else its polygons.json (``polygons``, read)."""
    from ..masks import read_label_png, segments_from_id_map

    gt = frame["gt"]
    if "instanceIds" in gt:
        path = root / gt["instanceIds"]
        id_map = read_label_png(path)
        _check_instance_depth(id_map, gt["instanceIds"])
    elif polygons is not None:
        id_map = instance_map_from_polygons(polygons, gt["polygons"])
        # No PNG to read the pixels from later (instance_mask_path is None): the RLE of the
        # rasterised map is the objects' only pixel source, so it is kept whatever ``masks`` says.
        masks = True
    else:
        return Instances(), 0, 0
    h, w = id_map.shape
    seg = segments_from_id_map(id_map, lambda v: _keep_mask(v, mode), with_rle=masks)
    vals, cls, crowd = _keep_values(seg.values, mode)
    inst = Instances._trusted(boxes=seg.boxes, labels=np.asarray(cls, np.int64), iscrowd=crowd,
                              difficult=np.zeros(len(vals), bool), ids=np.asarray(vals, np.int64),
                              area=seg.areas.astype(np.float64), segmentation=seg.rles)
    return inst, h, w


def _check_instance_depth(id_map: np.ndarray, where: str) -> None:
    """An 8-bit instanceIds PNG cannot hold ``id * 1000 + k``: a value of a class with instances
    in it is no instance of ours to guess at (a group? an instance numbered by another tool?)."""
    if id_map.dtype != np.uint8:
        return
    values = np.unique(id_map)
    things = [int(v) for v in values if _HAS_INST[v]]
    if things:
        raise InvalidAnnotationError(
            where, f"8-bit instanceIds PNG holding values {things} of classes with instances; expected a 16-bit "
            "PNG of id * 1000 + k (Cityscapes' own; 8 bits cannot hold an instance number), found mode L/P "
            "(fix: regenerate it with cityscapesScripts' json2instanceImg, or read it without instances, "
            "instances='none', for its semantic labels)")


def _frame_size(root: Path, frame: dict, polygons: dict | None) -> tuple[int, int]:
    """(width, height) from polygons.json (``polygons``, read), else a PNG header (image, then labels)."""
    gt = frame["gt"]
    if polygons is not None:
        return _polygons_size(polygons, gt["polygons"])
    for rel in (frame["image"], gt.get("labelIds"), gt.get("instanceIds"), gt.get("labelTrainIds")):
        if rel and (root / rel).is_file():
            return _io.image_size(root / rel)  # header only, PNGs included
    return 0, 0


def _load_frames(args: tuple) -> list:
    """Worker: records (or FormatErrors) for a chunk of frames."""
    root, frames, opts = args[0], args[1], args[2]
    out = []
    for frame in frames:
        try:
            out.append(_make_record(root, frame, opts))
        except FormatError as err:
            out.append(err)
    return out


def _make_record(root: Path, frame: dict, opts: dict) -> Record:
    gt = frame["gt"]
    m = _BASE_RE.match(frame["base"])
    city, seq, fr = (m["city"], m["sequence"], m["frame"]) if m else (frame["city"], "", "")
    extra: dict[str, Any] = {"city": city, "sequence": seq, "frame": fr}
    for kind in ("color", "polygons", "labelIds", "labelTrainIds", "instanceTrainIds"):
        if kind in gt:
            extra[f"{kind}_path"] = gt[kind]
    if opts["label_space"] == "trainId" and "labelTrainIds" in gt:
        mask, kind = gt["labelTrainIds"], "labelTrainIds"
    elif "labelIds" in gt:
        mask, kind = gt["labelIds"], "labelIds"
    elif "labelTrainIds" in gt:  # datumaro writes labelTrainIds without labelIds
        mask, kind = gt["labelTrainIds"], "labelTrainIds"
    elif "instanceIds" in gt or "polygons" in gt:
        # No label-id PNG: the semantic map is read from instanceIds (datumaro; label id =
        # decode_instance_ids(v)) or drawn from polygons.json (json2labelImg) by read_semantic_mask,
        # which info["mask_readers"] names. mask_path stays None: the file holds no label ids,
        # and a reader of mask_path PNGs (evaluation) must not take it for them.
        kind = "instanceIds" if "instanceIds" in gt else "polygons"
        mask = None
        extra["semantic_source"] = gt[kind]
    else:
        mask, kind = None, None
    if kind:
        extra["mask_kind"] = kind
    if opts["instances"] == "panoptic":  # the PNG name createPanopticImgs gives
        extra["panoptic_file_name"] = f"{frame['base']}_{opts['annotations']}_panoptic.png"
    dummy = frame["split"] == "test" and opts["dummy_test_labels"]
    if dummy:
        extra["dummy_labels"] = True
    polygons = _io.read_json_object(root / gt["polygons"]) if "polygons" in gt else None  # read once
    if kind == "polygons" and not dummy:
        _check_polygon_labels(polygons, gt["polygons"])  # it is the frame's semantic map: fail now, not in a loader
    width, height = _frame_size(root, frame, polygons)
    inst = Instances()
    if opts["instances"] != "none" and not dummy:
        inst, h, w = _frame_instances(root, frame, opts["instances"], opts["masks"], polygons)
        if h and not height:
            width, height = w, h
        elif h and (h, w) != (height, width):
            raise InvalidAnnotationError(gt.get("instanceIds") or gt.get("polygons", ""),
                                         f"label map is {w}x{h}, expected {width}x{height}")
    return Record._trusted(id=record_id_from_path(frame["image"]), path=frame["image"], width=width, height=height,
                           split=frame["split"], instances=inst, mask_path=mask,
                           instance_mask_path=gt.get("instanceIds"), source_id=frame["base"], extra=extra)


# --------------------------------------------------------------------------- parse

def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise",
          workers: int | None = None, progress: bool | None = None, annotations: str = "gtFine",
          label_space: str = "id", instances: str | bool = "none", masks: bool = True,
          dummy_test_labels: bool = True, allow_outside_root: bool = False) -> Dataset:
    """Read a Cityscapes tree into records.

    Args:
        path: the root holding ``leftImg8bit/`` and ``gtFine/`` (or ``gtCoarse/``).
        split: one split (``train``, ``val``, ``test``, ``train_extra``); default every split
            with a folder in ``annotations`` (a leftImg8bit split without one, such as
            ``train_extra`` beside gtFine, is skipped with a warning); every leftImg8bit
            split when there is no annotation folder at all.
        on_error: ``raise`` or ``warn`` (skip a bad frame, count it).
        workers: processes for reading many files (default: all cores).
        progress: progress bar (default: on a terminal).
        annotations: ``gtFine`` or ``gtCoarse``.
        label_space: ``id`` (label ids, what evaluation expects) or ``trainId``
            (19 classes, 255 ignore): picks ``*_labelTrainIds.png`` as
            ``mask_path`` where present and sets ``info["cityscapes_label_space"]``;
            ``info["mask_luts"][record.extra["mask_kind"]]`` maps a mask file's
            pixel values to the asked space (256 entries).
        instances: ``"none"`` (default; nothing decoded), ``"things"``
            (``True``): instance-class objects, or ``"panoptic"``: every
            evaluated segment (see the module docstring).
        masks: with instances, also build each object's RLE ``segmentation``.
            A frame without an instanceIds PNG (objects rasterised from
            polygons.json) always gets it: it is their only pixel source.
        dummy_test_labels: treat the ``test`` split's labels as the dummies
            they are in the official download (no instances, ``extra["dummy_labels"]``).
        allow_outside_root: accepted as every format accepts it; every path here
            comes from listing the city folders (none is read from a file), so
            nothing can leave the root (a symlinked city folder is followed).

    Returns:
        A :class:`Dataset` with the 35 label categories. Files that do not
        follow the ``<city>_<seq>_<frame>_`` naming are no frames: they are
        ignored, counted in ``info["stray_files"]`` and named in one warning.

    Raises:
        DatasetNotFoundError: no ``leftImg8bit``/annotation folder under ``path``.
        FormatError: a bad file (with ``on_error="raise"``).

    Example:
        >>> ds = parse("cityscapes", split="val", instances="things")  # doctest: +SKIP
        >>> ds[0].source_id, ds[0].instances.labels[:3]  # doctest: +SKIP
        ('frankfurt_000000_000294', array([24, 26, 26]))
    """
    root = Path(path)
    check_choice("annotations", annotations, ANNOTATION_TYPES)
    check_choice("label_space", label_space, LABEL_SPACES)
    if instances is True:
        instances = "things"
    elif instances is False or instances is None:
        instances = "none"
    check_choice("instances mode", instances, INSTANCE_MODES)
    policy = ErrorPolicy(on_error)
    if not root.is_dir() or not any((root / d).is_dir() for d in (IMAGE_DIR, annotations)):
        raise DatasetNotFoundError(
            f"{root}: not a Cityscapes root; expected {IMAGE_DIR}/<split>/<city>/*{IMAGE_SUFFIX} and/or "
            f"{annotations}/<split>/<city>/*_{annotations}_labelIds.png (download: {DOWNLOAD_PAGE})")
    labelled = _scandirs(root / annotations)
    found = sorted(set(_scandirs(root / IMAGE_DIR)) | set(labelled))
    if split is not None:
        check_choice("split", split, found)
        splits = [split]
    elif (root / annotations).is_dir():
        # a leftImg8bit split with no folder in these annotations (train_extra beside gtFine:
        # its labels are in gtCoarse) is not labelled data: read only when asked for by split=
        splits = [s for s in found if s in labelled]
        unlabelled = [s for s in found if s not in labelled]
        if unlabelled:
            log.warning("%s: split(s) %s have images in %s/ but no %s/ folder: skipped (not labelled in %s; "
                        "pass split=... to read one as unlabelled images, or annotations='gtCoarse' for "
                        "train_extra)", root, ", ".join(unlabelled), IMAGE_DIR, annotations, annotations)
    else:
        splits = found
    frames: list[dict] = []
    strays: list[str] = []
    for s in splits:
        fs, stray = _list_split(root, s, annotations)
        frames.extend(fs)
        strays.extend(stray)
    if strays:  # one warning naming the first file by its own folder; the count goes to info
        log.warning("%s: %d file(s) do not follow the Cityscapes naming <city>_<seq>_<frame>_leftImg8bit.png / "
                    "<city>_<seq>_<frame>_%s_<kind>.<ext> (seq and frame numbers, <city> the name of the "
                    "folder holding the file) and were ignored (first: %s)",
                    root, len(strays), annotations, strays[0])
    opts = {"instances": instances, "masks": masks, "label_space": label_space, "annotations": annotations,
            "dummy_test_labels": dummy_test_labels}
    # small batches when pixels are decoded, so that every worker gets a share
    n_workers = _io.default_workers() if workers is None else max(1, int(workers))
    chunk = max(1, min(16 if instances != "none" else 256, -(-len(frames) // (4 * n_workers))))
    batches = [(root, frames[i:i + chunk], opts) for i in range(0, len(frames), chunk)]
    results = _io.parallel_map(_load_batches, batches, workers=workers, chunk=1, desc="cityscapes",
                               show_progress=progress)
    records: list[Record] = []
    for batch in results:
        for item in batch:
            if isinstance(item, FormatError):
                policy.handle(item)
            else:
                records.append(item)
    dummy_splits = sorted({r.split for r in records if r.extra.get("dummy_labels")})
    if dummy_splits:
        log.warning("%s: the %s labels of Cityscapes are dummies (only ego vehicle and rectification "
                    "border are real): flagged extra['dummy_labels'], no instances read", root,
                    "/".join(dummy_splits))
    info: dict[str, Any] = {
        "annotations": annotations,
        "cityscapes_label_space": label_space,
        "mask_luts": _mask_luts(label_space),
        "mask_category_names": _mask_category_names(),
        "mask_readers": {kind: MASK_READER for kind in _READ_KINDS},
        "mask_ignore_index": 255 if label_space == "trainId" else 0,
        "train_id_names": [lab.name for lab in sorted((x for x in L.LABELS if 0 <= x.trainId < 255),
                                                      key=lambda x: x.trainId)],
        "instance_mask_encoding": "id",
        "instances": instances,
        "dummy_label_splits": dummy_splits,
        "stray_files": len(strays),
    }
    if policy.count:
        info["skipped"] = policy.count
        policy.summary("Cityscapes frames")
    by_split = {s: [r.id for r in records if r.split == s] for s in splits}
    return Dataset(categories(), records, splits={k: v for k, v in by_split.items() if v}, info=info,
                   root=root, format=NAME)


def _load_batches(batches: Sequence[tuple]) -> list:
    return [x for b in batches for x in _load_frames(b)]


def _mask_luts(label_space: str) -> dict[str, list[int]]:
    """mask file kind -> 256-entry lut from its pixel values to ``label_space``."""
    ident = list(range(256))
    if label_space == "trainId":
        # values outside the 19 classes (datumaro's background 19) become 255, ignore
        train = [v if v < 19 else 255 for v in range(256)]
        luts = {"labelIds": L.id_to_train_id_lut(), "labelTrainIds": train}
    else:
        luts = {"labelIds": ident, "labelTrainIds": L.train_id_to_id_lut()}
    # instanceIds / polygons.json are read as label ids by read_semantic_mask (info["mask_readers"])
    return {**luts, **{kind: luts["labelIds"] for kind in _READ_KINDS}}


# mask kinds whose file is not a label-id PNG: read_semantic_mask turns them into labelIds
_READ_KINDS = ("instanceIds", "polygons")
MASK_READER = "dsprep.formats.cityscapes:read_semantic_mask"


def _mask_category_names() -> dict[str, list[str | None]]:
    """mask file kind -> 256 entries: the category (label) name of each pixel value, None for none.

    What another format's writer needs to turn a semantic mask into its own
    class indices (VOC ``SegmentationClass`` = category position + 1). Names,
    not ids, so that ``--category-ids contiguous1`` (which renumbers the
    categories but not the pixels) does not change the meaning of a value.
    """
    name_of = {lab.id: lab.name for lab in L.LABELS}
    return {kind: [name_of.get(v) for v in lut] for kind, lut in _mask_luts("id").items()}


# --------------------------------------------------------------------------- write

def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          annotations: str | None = None, train_ids: bool = True) -> dict[str, Any]:
    """Write a Cityscapes tree into the existing directory ``dest``.

    For records parsed from Cityscapes: ``leftImg8bit`` placed by ``images``;
    ``labelIds``, ``instanceIds``, ``color`` and ``polygons.json`` copied; and
    ``*_labelTrainIds.png`` generated from labelIds (trainId per pixel, 255
    ignore), which is what cityscapesScripts' ``createTrainIdLabelImgs`` makes.
    Records from another format get their images placed and everything else
    counted as lost (their masks are not in Cityscapes label ids). Image-level
    labels and captions, which Cityscapes cannot hold, are counted as lost
    for every record, and a foreign dataset's categories as well.

    Args:
        dataset: the records (``dataset.root`` is where their files are).
        dest: an existing, empty directory.
        images: ``link``, ``copy`` or ``none``.
        progress: progress bar (default: on a terminal).
        annotations: ``gtFine``/``gtCoarse`` (default: what the dataset was read from).
        train_ids: also write ``*_labelTrainIds.png``.

    Returns:
        ``{"images", "objects", "lost"}``.
    """
    if annotations is None:  # keep what was read (gtCoarse stays gtCoarse)
        annotations = str(dataset.info.get("annotations") or "gtFine")
    check_choice("annotations", annotations, ANNOTATION_TYPES)
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    native = dataset.format == NAME
    if not native and images == "none" and len(dataset):
        # of another format's records Cityscapes holds the images only: OUT would hold nothing to read back
        raise InvalidAnnotationError(
            str(dataset.root or ""), f"a Cityscapes tree holds only the images of {dataset.format or 'these'} "
            "records (its labels are PNGs of its own label table), and images='none' places none: nothing would "
            "be written; expected --images link or copy (fix: pass one)")
    lut_train = np.array(L.id_to_train_id_lut(), dtype=np.uint8)
    lost: dict[str, int] = {}
    n_img = n_obj = 0

    def lose(what: str, n: int = 1) -> None:
        if n:
            lost[what] = lost.get(what, 0) + n

    lose("split memberships beyond each image's own split (overlapping splits: one folder per image)",
         other_split_memberships(dataset))
    placed: set[tuple[str, str, str]] = set()
    for i, rec in enumerate(_io.progress(dataset.records, total=len(dataset.records), desc="cityscapes",
                                         enabled=progress)):
        split = rec.split or "default"
        city, base = _names_for(rec, i)
        if (split, city, base) in placed:  # two foreign images whose names read as one frame
            city, base = "default", f"default_{i:06d}_000000"
        placed.add((split, city, base))
        if rec.source_id is not None and rec.source_id != base:  # read back, the id is the frame name
            lose("source image ids (a Cityscapes image's id is its frame name)")
        if base.startswith("default_") and not native:
            lose("image file names (named default_<index>_000000: Cityscapes names frames <city>_<seq>_<frame>)")
        ext = Path(rec.path).suffix.lower() or ".png"
        img_rel = f"{IMAGE_DIR}/{split}/{city}/{base}_leftImg8bit{ext}"  # never a JPEG named .png
        if _io.place_image(src_root / rec.path, dest, img_rel, images):
            n_img += 1
        else:
            lose("images (source missing)")
        gt_rel = f"{annotations}/{split}/{city}"
        prefix = f"{base}_{annotations}_"

        def gt(suffix: str) -> Path:
            return output_path(dest, f"{gt_rel}/{prefix}{suffix}", what="ground-truth file")

        # Cityscapes has no image-level label or caption: what a record carries of them is lost
        lose("image-level labels", int(rec.label is not None))
        lose("captions", len(rec.captions or ()))
        if not native:
            lose("objects", len(rec.instances))
            lose("semantic masks", int(rec.mask_path is not None))
            lose("instance mask PNGs", int(rec.instance_mask_path is not None))
            continue
        n_obj += _write_ground_truth(rec, src_root, gt, lut_train if train_ids else None, lose)
    if not native:  # Cityscapes' classes are its fixed label table: a foreign category list has no place
        lose("categories (Cityscapes has a fixed label table)", len(dataset.categories))
    return {"images": n_img, "objects": n_obj, "lost": lost}


def _write_ground_truth(rec: Record, src_root: Path, gt: Callable[[str], Path], lut_train: np.ndarray | None,
                        lose: Callable[..., None]) -> int:
    """Copy (or make) one Cityscapes record's ground-truth files; returns the objects they hold.

    labelIds, color and polygons.json are copied; labelTrainIds generated from
    labelIds (or copied when only they exist); labelIds drawn from the polygons
    or decoded from instanceIds where no labelIds PNG exists; instanceIds copied.
    ``gt(suffix)`` is the output path of one file; ``lut_train`` None: no labelTrainIds made.
    """
    from PIL import Image

    from ..masks import read_label_png

    kind = rec.extra.get("mask_kind")
    label_ids = rec.extra.get("labelIds_path") or (rec.mask_path if kind == "labelIds" else None)
    train_src = rec.extra.get("labelTrainIds_path") or (rec.mask_path if kind == "labelTrainIds" else None)
    for key, suffix in (("color_path", "color.png"), ("polygons_path", "polygons.json")):
        if rec.extra.get(key):
            shutil.copyfile(src_root / rec.extra[key], gt(suffix))
    if label_ids:
        shutil.copyfile(src_root / label_ids, gt("labelIds.png"))
        if lut_train is not None:
            ids = read_label_png(src_root / label_ids)
            if ids.dtype != np.uint8:
                ids = np.clip(ids, 0, 255).astype(np.uint8)
            Image.fromarray(lut_train[ids]).save(gt("labelTrainIds.png"))
    elif train_src:
        shutil.copyfile(src_root / train_src, gt("labelTrainIds.png"))
        lose("labelIds (source has labelTrainIds only)")
    elif rec.extra.get("polygons_path") or (kind == "instanceIds" and rec.extra.get("semantic_source")):
        # labelIds drawn from the polygons, as json2labelImg does, or decoded from instanceIds
        ids = (_label_map_from_polygons(_io.read_json_object(src_root / rec.extra["polygons_path"]),
                                        rec.extra["polygons_path"])
               if rec.extra.get("polygons_path")
               else read_semantic_mask(src_root / rec.extra["semantic_source"], kind))
        Image.fromarray(ids).save(gt("labelIds.png"))
        if lut_train is not None:
            Image.fromarray(lut_train[ids]).save(gt("labelTrainIds.png"))
    if rec.instance_mask_path:
        shutil.copyfile(src_root / rec.instance_mask_path, gt("instanceIds.png"))
        return len(rec.instances)
    if rec.extra.get("polygons_path"):
        return len(rec.instances)  # polygons.json holds them
    lose("objects (no instanceIds or polygons.json source)", len(rec.instances))
    return 0

def _label_map_from_polygons(doc: dict, where: str) -> np.ndarray:
    """labelIds (uint8) from polygons.json, as cityscapesScripts' ``json2labelImg`` draws it."""
    inst = instance_map_from_polygons(doc, where)
    return decode_instance_ids(inst).astype(np.uint8)


def _names_for(rec: Record, index: int) -> tuple[str, str]:
    """(city, <city>_<seq>_<frame>) for a record; foreign records get a made-up frame name."""
    ex = rec.extra
    if ex.get("city") and ex.get("sequence") and ex.get("frame"):
        return ex["city"], f"{ex['city']}_{ex['sequence']}_{ex['frame']}"
    if isinstance(rec.source_id, str) and _BASE_RE.match(rec.source_id):
        return _BASE_RE.match(rec.source_id)["city"], rec.source_id
    stem = Path(rec.path).name.rsplit(".", 1)[0]
    if stem.endswith("_leftImg8bit"):
        stem = stem[: -len("_leftImg8bit")]
    m = _BASE_RE.match(stem)
    if m:
        return m["city"], stem
    return "default", f"default_{index:06d}_000000"
