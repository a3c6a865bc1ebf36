"""COCO panoptic segmentation (https://cocodataset.org/#format-data, "Panoptic Segmentation").

::

    ROOT/
      annotations/panoptic_<split>.json     images, categories (isthing, color), annotations
      annotations/panoptic_<split>/*.png    one RGB PNG per image: segment id = R + 256 G + 256^2 B
      <split>/*.jpg                         the images (also found: images/<split>/, images/)

Each annotation is per image: ``{image_id, file_name, segments_info: [{id,
category_id, area, bbox [x, y, w, h], iscrowd}]}``; pixel value 0 is void.
Segment ids reach 16.7 M, so all three channels matter [formats.md, verified
on panopticapi's sample].

Records: one object per segment, ``boxes`` from ``bbox`` (xywh -> xyxy),
``labels`` = ``category_id``, ``iscrowd``, ``area`` as stored, ``ids`` = the
segment id, ``instance_mask_path`` = the PNG and ``Dataset.info
["instance_mask_encoding"] = "rgb"``: a segment's mask is ``rgb_to_id(png)
== ids[i]``, decoded lazily by whoever needs pixels (the torch layer, the
writer). ``parse(..., masks=True)`` decodes every PNG and fills
``segmentation`` with compressed RLE instead.

Parsing checks the first PNG against its ``segments_info`` (one decode), so
a tree of panopticapi's 2-channel PNGs (R = category id, G = instance id) is
rejected at once with a clear message; ``verify="all"`` checks every PNG.

See ``docs/formats/coco-panoptic.md``.
"""
from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import _io
from .._checks import INT64_MAX, INT64_MIN, check_side, fit_name
from .._paths import confine, output_path, safe_relpath
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError,
                      MalformedFileError, check_choice)
from ..records import (BoxFormat, Category, Dataset, Instances, Record, convert_boxes, make_ids_distinct,
                       other_split_memberships, record_id_from_path)

NAME = "coco-panoptic"
DESCRIPTION = "COCO panoptic: annotations/panoptic_<split>.json + PNGs (id = R + 256 G + 256^2 B)"
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"file_names", "splits", "categories", "category_ids", "supercategory", "crowd", "masks",
                   "annotation_ids", "image_ids"})

__all__ = ["NAME", "DESCRIPTION", "detect", "parse", "parse_options_for", "validate_options", "write",
           "VERIFY_MODES"]

log = logging.getLogger(__name__)

VERIFY_MODES = ("first", "all", "none")
MAX_SEGMENT_ID = 256 ** 3 - 1
_SEGMENT_KEYS = ("id", "category_id", "area", "bbox", "iscrowd")
_IMAGE_KEYS = ("id", "width", "height", "file_name")
# image keys of COCO's image entries a panoptic JSON carries over from another format
_IMAGE_EXTRA_KEYS = ("license", "coco_url", "flickr_url", "date_captured")
# category keys the writer turns into isthing / uses to drop a category (Cityscapes)
_CATEGORY_USED = ("hasInstances", "ignoreInEval")
_TWO_CHANNEL_HINT = ("this looks like panopticapi's 2-channel format (R = category id, G = instance id, "
                     "B = 0), which is not COCO panoptic; convert it with panopticapi's "
                     "converters/2channels2panoptic_coco_format.py")


def detect(path: str | os.PathLike) -> bool:
    """``annotations/panoptic_*.json`` (or a ``panoptic_*.json`` file) beside a PNG folder of the same stem."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".json" and p.name.startswith("panoptic_") and p.with_suffix("").is_dir()
    if not p.is_dir():
        return False
    for d in (p / "annotations", p):
        for j in d.glob("panoptic_*.json"):
            if j.with_suffix("").is_dir():
                return True
    return False


# --------------------------------------------------------------------------- parse

def _annotation_files(path: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """(root, [(split, json)]) for a root directory or one JSON file."""
    if path.is_file():
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
        return root, [(_split_of(path), path)]
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path}: no such file or directory (expected a COCO panoptic root "
                                   f"with annotations/panoptic_<split>.json, or that JSON file)")
    for d in (path / "annotations", path):
        found = sorted(d.glob("panoptic_*.json"))
        if found:
            return path, [(_split_of(j), j) for j in found]
    raise DatasetNotFoundError(f"{path}: no annotations/panoptic_<split>.json found (looked in "
                               f"{path / 'annotations'} and {path})")


def _split_of(json_path: Path) -> str:
    stem = json_path.stem
    return stem[len("panoptic_"):] if stem.startswith("panoptic_") else stem


def _load_json(path: Path) -> dict:
    doc = _io.read_json_object(path)
    if not isinstance(doc.get("annotations"), list) \
            or not isinstance(doc.get("categories"), list) or not isinstance(doc.get("images", []), list):
        raise MalformedFileError(str(path), "expected a JSON object with 'images', 'annotations' and 'categories' "
                                            "lists (COCO panoptic)")
    for a in doc["annotations"][:1]:
        if not isinstance(a, dict) or "segments_info" not in a:
            raise MalformedFileError(str(path), "annotations have no 'segments_info': this is not a COCO "
                                                "panoptic file (COCO instances? use format 'coco')")
    return doc


def _is_id(value: Any) -> bool:
    """An image id: a 64-bit int or a string (Cityscapes' panoptic ids are strings)."""
    return (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)
                                       and INT64_MIN <= value <= INT64_MAX))


def _annotations_by_image(doc: dict, jpath: Path, policy: ErrorPolicy) -> dict[Any, dict]:
    """image_id -> its annotation; an entry that is not an object, has no usable image_id or
    repeats one goes through ``policy`` (and is left out)."""
    by_image: dict[Any, dict] = {}
    for i, a in enumerate(doc["annotations"]):
        try:
            if not isinstance(a, dict) or not _is_id(a.get("image_id")):
                raise InvalidAnnotationError(f"{jpath}: annotations[{i}]", "expected an object with an int or "
                                             f"string 'image_id' and 'segments_info'; found {a!r}"[:300])
            if a["image_id"] in by_image:
                raise InvalidAnnotationError(f"{jpath}: annotations[{i}]", f"a second annotation of image_id "
                                             f"{a['image_id']!r}; expected one per image")
        except FormatError as err:
            policy.handle(err)
            continue
        by_image[a["image_id"]] = a
    return by_image


def _image_dir(root: Path, json_path: Path, split: str, first_file: str | None,
               images_dir: str | os.PathLike | None) -> Path:
    if images_dir is not None:
        return Path(images_dir) if Path(images_dir).is_absolute() else root / images_dir
    candidates = [root / split, root / "images" / split, root / "images", root, json_path.parent]
    if isinstance(first_file, str) and first_file:
        for c in candidates:
            try:
                if (c / first_file).is_file():
                    return c
            except OSError:  # a name too long for the file system: not the folder's file
                continue
    for c in candidates[:3]:
        if c.is_dir():
            return c
    return root / split


def _categories(doc: dict, where: Path) -> list[Category]:
    cats = []
    for i, c in enumerate(doc["categories"]):
        cid = c.get("id") if isinstance(c, dict) else None
        if not (isinstance(cid, int) and not isinstance(cid, bool) and INT64_MIN <= cid <= INT64_MAX
                and isinstance(c.get("name"), str)):
            raise MalformedFileError(f"{where}: categories[{i}]", f"expected an int 'id' (64-bit) and a str "
                                                                  f"'name'; found {c!r}"[:300])
        if any(x.id == cid for x in cats):
            raise MalformedFileError(f"{where}: categories[{i}]", f"category id {cid} repeats; expected "
                                                                  "distinct ids")
        extra = {k: v for k, v in c.items() if k not in ("id", "name", "supercategory")}
        cats.append(Category(cid, c["name"], str(c.get("supercategory", "") or ""), extra))
    return cats


def _segment_values(s: Any, where: str) -> tuple[int, int, tuple | None, float]:
    """(id, category_id, xyxy box or None, area or NaN) of one segments_info entry."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

    if not isinstance(s, dict):
        raise InvalidAnnotationError(where, f"expected a segment object, found {s!r}"[:300])
    sid, cid, bbox, a = s.get("id"), s.get("category_id"), s.get("bbox"), s.get("area")
    if not (isinstance(sid, int) and isinstance(cid, int) and not isinstance(sid, bool)
            and not isinstance(cid, bool) and INT64_MIN <= cid <= INT64_MAX):
        raise InvalidAnnotationError(where, f"expected int 'id' and 'category_id'; found id={sid!r}, "
                                            f"category_id={cid!r}"[:300])
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(map(number, bbox))
                                 and bbox[2] >= 0 and bbox[3] >= 0):
        raise InvalidAnnotationError(where, f"bbox must be [x, y, width, height], finite with width, height >= 0; "
                                            f"found {bbox!r}"[:300])
    if a is not None and not number(a):
        raise InvalidAnnotationError(where, f"area must be a finite number, found {a!r}"[:300])
    box = None if bbox is None else (bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3])
    return sid, cid, box, np.nan if a is None else float(a)


def _instances(ann: dict, cat_ids: set[int], where: str, policy: ErrorPolicy | None = None) -> Instances:
    segs = ann.get("segments_info")
    if not isinstance(segs, list):
        raise InvalidAnnotationError(where, f"segments_info must be a list, found {type(segs).__name__}")
    n = len(segs)
    boxes = np.zeros((n, 4))
    labels = np.zeros(n, np.int64)
    crowd = np.zeros(n, bool)
    ids = np.zeros(n, np.int64)
    area = np.full(n, np.nan)
    extra: list[dict] = []
    for i, s in enumerate(segs):
        sid, cid, box, a = _segment_values(s, f"{where}: segments_info[{i}]")
        if box is not None:
            boxes[i] = box
        area[i] = a
        crowd[i] = bool(s.get("iscrowd", 0))
        if s.get("iscrowd", 0) not in (0, 1) and policy is not None:
            policy.note("bad_iscrowd", f"{where}: segment {sid}", f"iscrowd is {s.get('iscrowd')!r}; expected 0 "
                                                                  "or 1 (read as crowd: it is truthy)"[:300])
        if not 0 < sid <= MAX_SEGMENT_ID:
            raise InvalidAnnotationError(f"{where}: segment {sid}",
                                         f"segment id must be in 1..{MAX_SEGMENT_ID} (0 is void)")
        if cid not in cat_ids:
            raise InvalidAnnotationError(f"{where}: segment {sid}", f"category_id {cid} is not in categories")
        ids[i], labels[i] = sid, cid
        extra.append({k: v for k, v in s.items() if k not in _SEGMENT_KEYS})
    if len(set(ids.tolist())) != n:
        raise InvalidAnnotationError(where, "segment ids repeat within the image")
    return Instances._trusted(boxes=boxes, labels=labels, iscrowd=crowd, difficult=np.zeros(n, bool), ids=ids,
                              area=area, extra=extra if any(extra) else None)


def _check_png(path: Path, ids: np.ndarray, masks: bool, areas: np.ndarray | None = None,
               size: tuple[int, int] = (0, 0)) -> tuple[list | None, list[tuple[int, float, int]]]:
    """Decode one panoptic PNG, check its size against the image's ``size`` (width, height;
    unknown when 0) and its ids against segments_info.

    Returns:
        (RLEs if ``masks`` else None, [(segment id, stored area, pixel count)] of the
        segments whose stored ``area`` differs from their pixel count).
    """
    from PIL import Image

    from .._checks import image_error
    from ..masks import rgb_to_id, segments_from_id_map

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):
                raise MalformedFileError(str(path), f"expected an RGB PNG (id = R + 256 G + 256^2 B), "
                                                    f"found mode {im.mode}")
            if size[0] and size[1] and im.size != tuple(size):
                raise InvalidAnnotationError(
                    str(path), f"the PNG is {im.size[0]}x{im.size[1]}, its image is {size[0]}x{size[1]} "
                    "(width x height); expected the same size: a segment map covers its image pixel for pixel "
                    "(fix: regenerate the PNG, or correct the image's width/height in the JSON)",
                    kind="mask_size_mismatch")
            rgb = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    except FormatError:
        raise
    except Exception as err:  # every kind Pillow raises on a bad file (see _checks.image_error)
        raise image_error(path, err, "panoptic PNG") from None
    id_map = rgb_to_id(rgb)
    seg = segments_from_id_map(id_map, None, with_rle=masks)
    present = set(seg.values.tolist()) - {0}
    expected = set(ids.tolist())
    if present != expected:
        extra_ids = sorted(present - expected)
        missing = sorted(expected - present)
        msg = (f"PNG segment ids do not match segments_info: {len(extra_ids)} ids in the PNG but not in the "
               f"JSON (first {extra_ids[:3]}), {len(missing)} in the JSON but not in the PNG (first {missing[:3]})")
        if int(rgb[..., 2].max(initial=0)) == 0 and extra_ids:
            msg += f"; {_TWO_CHANNEL_HINT}"
        raise InvalidAnnotationError(str(path), msg)
    index = {int(v): i for i, v in enumerate(seg.values)}
    # stored areas are kept as they are (datumaro's a.png stores 20 for 25 pixels): only reported
    off = [] if areas is None else [
        (int(v), float(a), int(seg.areas[index[int(v)]])) for v, a in zip(ids.tolist(), areas.tolist())
        if np.isfinite(a) and float(a) != float(seg.areas[index[int(v)]])]
    if not masks:
        return None, off
    return [seg.rles[index[int(v)]] for v in ids], off


def _decode_chunk(items: Sequence[tuple]) -> list:
    out = []
    for path, ids, masks, areas, size in items:
        try:
            out.append(_check_png(path, ids, masks, areas, size))
        except FormatError as err:
            out.append(err)
    return out


def validate_options(deep: bool) -> dict[str, Any]:
    """Parse options :func:`dsprep.validate.validate` uses: ``--deep`` checks every PNG (``verify="all"``).

    Example:
        >>> validate_options(deep=True)
        {'verify': 'all'}
    """
    return {"verify": "all"} if deep else {}


def parse_options_for(target: str) -> dict[str, Any]:
    """Parse options a conversion to ``target`` needs (used by :func:`dsprep.convert`).

    COCO instances and VOC hold per-object masks, not the panoptic id PNG: the
    segments are decoded into RLE (``masks=True``) so they survive.
    """
    return {"masks": True} if target in ("coco", "voc") else {}


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise",
          workers: int | None = None, progress: bool | None = None, masks: bool = False,
          verify: str = "first", images_dir: str | os.PathLike | None = None,
          categories_file: str | os.PathLike | None = None, things_only: bool = False,
          allow_outside_root: bool = False) -> Dataset:
    """Read COCO panoptic annotations into records.

    Args:
        path: the root (with ``annotations/panoptic_<split>.json``) or one such JSON file
            (its PNG folder is the folder of the same stem beside it).
        split: only this split (``val2017``...); default every JSON found.
        on_error: ``raise`` or ``warn`` (skip a bad image, count it).
        workers: processes for decoding PNGs (``masks=True`` / ``verify="all"``).
        progress: progress bar (default: on a terminal).
        masks: decode every PNG and store each segment's compressed RLE in ``segmentation``.
        verify: ``first`` (default: check the first PNG against its segments_info),
            ``all`` or ``none``.
        images_dir: where the images are, relative to the root (default: found
            among ``<split>/``, ``images/<split>/``, ``images/``, the root).
        categories_file: a panopticapi-style categories JSON (a list of
            ``{id, name, isthing, color}``, as ``panoptic_coco_categories.json``):
            gives ``isthing`` to the categories whose JSON entry lacks it
            (matched by id; a differing name is an error).
        things_only: keep the segments and categories with ``isthing == 1`` only,
            as panopticapi's ``panoptic2detection_coco_format.py --things_only``
            (images are all kept; the count left out is logged and stored in
            ``info["things_only"]``). Every category needs an ``isthing``.
        allow_outside_root: accept an image ``file_name`` that leaves the image
            folder, or a segment PNG ``file_name`` that leaves the PNG folder; by
            default either is a :class:`~dsprep.errors.PathEscapeError`.

    Returns:
        A :class:`Dataset`; ``info`` holds the JSON's ``info``/``licenses`` and
        ``instance_mask_encoding = "rgb"``.

    Raises:
        DatasetNotFoundError: no panoptic JSON at ``path``.
        FormatError: a bad file; a 2-channel PNG is named as such.

    Example:
        >>> ds = parse("coco", split="val2017")  # doctest: +SKIP
        >>> ds[0].instances.ids[:2]  # doctest: +SKIP
        array([3937500, 4260062])
    """
    check_choice("verify mode", verify, VERIFY_MODES)
    policy = ErrorPolicy(on_error)
    root, files = _annotation_files(Path(path))
    if split is not None:
        check_choice("split", split, [s for s, _ in files])
        files = [(s, j) for s, j in files if s == split]
    categories: list[Category] | None = None
    records: list[Record] = []
    splits: dict[str, list[str]] = {}
    info: dict[str, Any] = {"instance_mask_encoding": "rgb"}
    area_notes: list[tuple[str, int, float, int]] = []
    for split_name, jpath in files:
        doc = _load_json(jpath)
        cats = _categories(doc, jpath)
        if categories is None:
            categories = cats
        elif [c.id for c in cats] != [c.id for c in categories]:
            log.warning("%s: categories differ from the first split's; keeping the first split's", jpath)
        for key in ("info", "licenses"):
            if key in doc and key not in info:
                info[key] = doc[key]
        cat_ids = {c.id for c in categories}
        png_dir = jpath.with_suffix("")
        images = doc.get("images") or []
        by_image = _annotations_by_image(doc, jpath, policy)
        first = images[0].get("file_name") if images and isinstance(images[0], dict) else None
        img_dir = _image_dir(root, jpath, split_name, first, images_dir)
        split_recs: list[Record] = []
        known: set = set()
        for i, img in enumerate(images):
            try:
                image_id = _image_id(img, i, jpath, known)
                split_recs.append(_record(img, by_image.get(image_id), root, img_dir, png_dir, jpath,
                                          split_name, cat_ids, policy, allow_outside_root))
            except FormatError as err:
                policy.handle(err)
        for image_id in by_image:
            if image_id not in known:
                policy.handle(InvalidAnnotationError(f"{jpath}: annotation of image_id {image_id!r}",
                                                     "no image with this id in 'images'"))
        split_recs = _verify(split_recs, root, verify, masks, workers, progress, policy, area_notes)
        make_ids_distinct(split_recs)  # a.jpg and a.png of one folder: two ids
        records.extend(split_recs)
        splits[split_name] = [r.id for r in split_recs]
    categories = categories or []
    if categories_file is not None:
        _fill_isthing(categories, Path(categories_file))
    if things_only:
        categories = _keep_things(records, categories, root, info)
    if area_notes:  # kept as stored; validate reports them (area_mismatch)
        info["segment_area_mismatches"] = area_notes
        log.warning("%s: %d segment(s) store an area that differs from their pixel count (kept as stored; "
                    "first: %s segment %d stores %g, has %d pixels)", root, len(area_notes), *area_notes[0])
    if policy.count:
        info["skipped"] = policy.count
        policy.summary("panoptic images")
    return Dataset(categories, records, splits=splits, info=info, root=root, format=NAME)


def _fill_isthing(categories: list[Category], path: Path) -> None:
    """Give ``isthing`` from a panopticapi categories file to the categories that lack it."""
    import orjson

    from ..errors import MissingFileError

    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise MissingFileError(str(path), "categories file not found") from None
    except orjson.JSONDecodeError as err:
        raise MalformedFileError(str(path), f"not valid JSON ({err})") from None
    entries = doc.get("categories") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise MalformedFileError(str(path), "expected a panopticapi categories list [{id, name, isthing, color}] "
                                            "(as panoptic_coco_categories.json) or a JSON with 'categories'")
    table = {e["id"]: e for e in entries}
    for c in categories:
        entry = table.get(c.id)
        if "isthing" in c.extra or entry is None or "isthing" not in entry:
            continue
        if entry.get("name", c.name) != c.name:
            raise InvalidAnnotationError(f"{path}: category {c.id}",
                                         f"named {entry.get('name')!r} there but {c.name!r} in the dataset; "
                                         f"pass the categories file of this dataset")
        c.extra["isthing"] = int(entry["isthing"])


def _keep_things(records: list[Record], categories: list[Category], root: Path, info: dict) -> list[Category]:
    """Drop stuff segments (``isthing == 0``) from ``records`` in place; return the thing categories."""
    unknown = [c.name for c in categories if "isthing" not in c.extra]
    if unknown:
        raise FormatError(f"{root}: categories", f"things_only needs 'isthing' on every category; "
                                                 f"{len(unknown)} have none ({', '.join(unknown[:5])}); pass a "
                                                 f"panopticapi categories file (categories_file= / --categories-file)")
    stuff = np.array([c.id for c in categories if not c.extra["isthing"]], np.int64)
    dropped = 0
    for r in records:
        is_stuff = np.isin(r.instances.labels, stuff)
        if is_stuff.any():
            dropped += int(is_stuff.sum())
            r.instances = r.instances.select(~is_stuff)
    info["things_only"] = {"stuff_segments_dropped": dropped, "stuff_categories": len(stuff)}
    log.info("%s: things_only: left out %d stuff segment(s) of %d stuff categories", root, dropped, len(stuff))
    return [c for c in categories if c.extra["isthing"]]


def _image_id(img: Any, i: int, jpath: Path, known: set) -> Any:
    """The id of ``images[i]``, added to ``known``; not an object, no usable id, or a repeated one: an error."""
    image_id = img.get("id") if isinstance(img, dict) else None
    if not _is_id(image_id):
        raise InvalidAnnotationError(f"{jpath}: images[{i}]", f"expected an object with an int or string 'id'; "
                                                              f"found {img!r}"[:300])
    if image_id in known:
        raise InvalidAnnotationError(f"{jpath}: images[{i}]", f"image id {image_id!r} repeats; expected distinct ids")
    known.add(image_id)
    return image_id


def _folder_prefix(folder: Path, root: Path) -> str:
    """``folder`` relative to ``root`` as a path prefix: ``""`` or ending in ``/``."""
    rel = _io.relpath_posix(folder, root)
    return "" if rel == "." else rel + "/"


def _record(img: dict, ann: dict | None, root: Path, img_dir: Path, png_dir: Path, jpath: Path, split: str,
            cat_ids: set[int], policy: ErrorPolicy | None = None, allow_outside_root: bool = False) -> Record:
    """One image's record; its ``file_name`` stays inside ``img_dir``, its PNG's inside ``png_dir``
    (:func:`dsprep._paths.confine`)."""
    image_id, file_name = img["id"], img.get("file_name")
    where = f"{jpath}: image id {image_id!r}"
    if not isinstance(file_name, str) or not file_name:
        raise InvalidAnnotationError(where, f"expected a 'file_name' string, found {file_name!r}"[:300])
    width = check_side(img.get("width") or 0, where, "width")
    height = check_side(img.get("height") or 0, where, "height")
    rel = posixpath.normpath(confine(root, file_name, prefix=_folder_prefix(img_dir, root),
                                     where=where, allow_outside=allow_outside_root))
    extra = {k: v for k, v in img.items() if k not in _IMAGE_KEYS}
    if ann is None:
        log.debug("%s: image %r has no panoptic annotation", jpath, image_id)
        return Record._trusted(id=record_id_from_path(rel), path=rel, width=width, height=height, split=split,
                               source_id=image_id, extra=extra)
    png_name = ann.get("file_name") or f"{Path(file_name).stem}.png"
    if not isinstance(png_name, str):
        raise InvalidAnnotationError(where, f"the annotation's file_name must be a string, found {png_name!r}"[:300])
    png_rel = posixpath.normpath(confine(root, png_name, prefix=_folder_prefix(png_dir, root),
                                         what="segment PNG file_name", allow_outside=allow_outside_root,
                                         where=f"{jpath}: annotation of image id {image_id!r}"))
    extra["panoptic_file_name"] = png_name
    inst = _instances(ann, cat_ids, f"{jpath}: image_id {image_id!r}", policy)
    return Record._trusted(id=record_id_from_path(rel), path=rel, width=width, height=height, split=split,
                           instances=inst, instance_mask_path=png_rel, source_id=image_id, extra=extra)


def _verify(recs: list[Record], root: Path, verify: str, masks: bool, workers: int | None,
            progress: bool | None, policy: ErrorPolicy, area_notes: list) -> list[Record]:
    with_png = [r for r in recs if r.instance_mask_path]
    if masks or verify == "all":
        todo = with_png
    elif verify == "first":
        todo = with_png[:1]
    else:
        return recs
    items = [(root / r.instance_mask_path, r.instances.ids, masks, r.instances.area, (r.width, r.height))
             for r in todo]
    results = [x for chunk in _io.parallel_map(_decode_chunk, items, workers=workers, chunk=8,
                                               desc="panoptic PNGs", show_progress=progress) for x in chunk]
    bad: set[str] = set()
    for r, res in zip(todo, results):
        if isinstance(res, FormatError):
            policy.handle(res)
            bad.add(r.id)
            continue
        rles, off = res
        if rles is not None:
            r.instances.segmentation = rles
        area_notes.extend((r.instance_mask_path, sid, stored, counted) for sid, stored, counted in off)
    return [r for r in recs if r.id not in bad]


# --------------------------------------------------------------------------- write

def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None
          ) -> dict[str, Any]:
    """Write ``annotations/panoptic_<split>.json`` + PNGs (and ``<split>/`` images) into ``dest``.

    Segment pixels come from, in order of preference:

    1. the record's ``instance_mask_path`` with ``Instances.ids`` naming the
       segments (COCO panoptic PNGs, Cityscapes instanceIds: the encoding is
       ``dataset.info["instance_mask_encoding"]``, ``"rgb"`` or ``"id"``):
       pixels of listed ids keep their id, all others become void, and the
       stored ``area``/``bbox`` are written as they are (NaN area: counted);
    2. per-object ``segmentation`` (RLE or polygons), painted in object order
       (later objects on top) with ids ``Instances.ids`` when they are valid
       and distinct, else 1..N; area and bbox are counted on the painted map
       and objects left with no pixel are dropped (reported lost).

    Categories flagged ``ignoreInEval`` (Cityscapes) are not written, and
    their objects are dropped, as cityscapesScripts' ``createPanopticImgs``
    does. ``isthing`` comes from the category's ``isthing``, else Cityscapes'
    ``hasInstances``, else 1. Image ids are the records' ``source_id`` when
    those are distinct (Cityscapes' string ids stay strings), else 1..N.

    Returns:
        ``{"images", "objects", "lost"}``.
    """
    from PIL import Image

    from ..masks import id_to_rgb

    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    encoding = dataset.info.get("instance_mask_encoding")
    native = dataset.format == NAME
    dropped_cats = {c.id for c in dataset.categories if c.extra.get("ignoreInEval")}
    lost: dict[str, int] = {}
    n_obj = n_img = 0

    def lose(what: str, n: int = 1) -> None:
        if n:
            lost[what] = lost.get(what, 0) + n

    lose("split memberships beyond each image's own split (overlapping splits: one folder per image)",
         other_split_memberships(dataset))
    cats_out = []
    for c in dataset.categories:
        if c.id in dropped_cats:
            continue
        entry = {"id": c.id, "name": c.name, "supercategory": c.supercategory,
                 "isthing": int(bool(c.extra.get("isthing", c.extra.get("hasInstances", 1))))}
        other = []
        for k, v in c.extra.items():
            if k in entry or k in _CATEGORY_USED:
                continue
            if k == "color" or native:  # a panoptic JSON's own keys go back as they came
                entry[k] = list(v) if isinstance(v, tuple) else v
            else:
                other.append(k)  # COCO keypoints/skeleton, Cityscapes trainId/catId...
        if other:
            lose("category fields (" + ", ".join(sorted(other)) + ")")
        cats_out.append(entry)
    lose("categories flagged ignoreInEval", len(dropped_cats))
    source_ids = [r.source_id for r in dataset.records]
    use_source = (all(isinstance(s, (int, str)) and not isinstance(s, bool) for s in source_ids)
                  and len(set(source_ids)) == len(source_ids))
    if not use_source:
        lose("source image ids", sum(s is not None for s in source_ids))

    by_split: dict[str, list[tuple[int, Record]]] = {}
    for i, r in enumerate(dataset.records):
        by_split.setdefault(r.split or "default", []).append((i, r))
    for split, items in by_split.items():
        png_dir = f"annotations/panoptic_{split}"
        output_path(dest, png_dir, what="segment PNG folder", folder=True)  # made even when it stays empty
        names = [safe_relpath(Path(r.path).name) for _, r in items]
        flat_names = len(set(names)) == len(names)
        images_out, anns_out = [], []
        used_png: set[str] = set()
        for (i, rec), name in _io.progress(list(zip(items, names)), total=len(items), desc=f"panoptic {split}",
                                           enabled=progress):
            image_id = rec.source_id if use_source else i + 1
            file_name = name if flat_names else safe_relpath(rec.path)
            _check_has_size(rec)
            if _io.place_image(src_root / rec.path, dest, f"{split}/{file_name}", images):
                n_img += 1
            else:
                lose("images (source missing)")
            png_name = _png_name(rec, file_name, i, used_png)
            img_entry = {"id": image_id, "width": rec.width, "height": rec.height, "file_name": file_name}
            _count_lost(rec, native, lose)
            for k, v in rec.extra.items():
                if k in _IMAGE_EXTRA_KEYS or (native and k != "panoptic_file_name"):
                    img_entry[k] = v
            id_map, segs = _segments_for(rec, src_root, encoding, dropped_cats, lose)
            n_obj += len(segs)
            Image.fromarray(id_to_rgb(id_map)).save(output_path(dest, f"{png_dir}/{png_name}", what="segment PNG"))
            images_out.append(img_entry)
            anns_out.append({"image_id": image_id, "file_name": png_name, "segments_info": segs})
        doc = {"info": dataset.info.get("info") or {"description": "written by dsprep"},
               "licenses": dataset.info.get("licenses") or [],
               "images": images_out, "annotations": anns_out, "categories": cats_out}
        _dump_json(output_path(dest, f"annotations/panoptic_{split}.json", what="annotation file"), doc)
    return {"images": n_img, "objects": n_obj, "lost": lost}


def _check_has_size(rec: Record) -> None:
    """A panoptic PNG covers the whole image: its size must be known (ImageNet records carry
    none unless parsed with read_sizes=True)."""
    if not (rec.width and rec.height):
        raise InvalidAnnotationError(
            str(rec.path), f"record {rec.id!r} has no image size ({rec.width}x{rec.height}); "
            "coco-panoptic needs it to draw the segment PNG (for imagenet, parse with read_sizes=True)")


def _png_name(rec: Record, file_name: str, i: int, used: set[str]) -> str:
    """The segment PNG's name: the one the record was read with, else the image's stem; made safe,
    each part fitted to the file system, and distinct within its split (``used``, updated)."""
    png_name = safe_relpath(str(rec.extra.get("panoptic_file_name")
                                or f"{Path(file_name).with_suffix('').as_posix()}.png"))
    png_name = "/".join(fit_name(part) for part in png_name.split("/"))
    if png_name in used:
        png_name = f"{i:08d}_{Path(png_name).name}"
    used.add(png_name)
    return png_name


def _count_lost(rec: Record, native: bool, lose) -> None:
    """Count what of ``rec`` a panoptic JSON + PNG has no place for (the VOC and COCO writers' wording)."""
    inst = rec.instances
    lose("image-level labels", int(rec.label is not None))  # panoptic JSON has no field for them
    lose("captions", len(rec.captions))
    # the PNG holds segments, not a per-pixel class file (labelIds, SegmentationClass)
    lose("semantic mask PNGs (mask_path)", int(rec.mask_path is not None))
    if inst.keypoints is not None:
        lose("keypoints (objects)", int((inst.keypoints[..., 2] > 0).any(axis=1).sum()))
    lose("difficult flags (objects)", int(inst.difficult.sum()))
    if not native:
        other = [k for k in (rec.extra or {}) if k not in _IMAGE_EXTRA_KEYS and k != "panoptic_file_name"]
        if other:
            lose("image fields (" + ", ".join(sorted(other)) + ")")


def _dump_json(path: Path, doc: dict) -> None:
    path.write_bytes(_io.json_bytes(doc, f"{path.parent.name}/{path.name}: "))


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _segments_for(rec: Record, src_root: Path, encoding: str | None, dropped_cats: set[int],
                  lose) -> tuple[np.ndarray, list[dict]]:
    """(segment id map, segments_info) of one record."""
    from ..masks import read_id_png

    inst = rec.instances
    keep = np.array([int(lab) not in dropped_cats for lab in inst.labels], dtype=bool)
    lose("objects of ignoreInEval categories", int((~keep).sum()))
    inst = inst.select(keep)
    h, w = int(rec.height), int(rec.width)
    ids = inst.ids
    ids_ok = len(inst) == 0 or (bool((ids > 0).all()) and bool((ids <= MAX_SEGMENT_ID).all())
                                and len(set(ids.tolist())) == len(ids))
    src = src_root / rec.instance_mask_path if rec.instance_mask_path else None
    if src is not None and ids_ok and encoding in ("rgb", "id") and src.is_file():
        id_map = read_id_png(src, encoding).astype(np.int32)
        if not h:
            h, w = id_map.shape
        elif id_map.shape != (h, w):  # written as is, it would read back as a PNG of the wrong size
            raise InvalidAnnotationError(
                str(rec.instance_mask_path), f"the segment PNG is {id_map.shape[1]}x{id_map.shape[0]}, its image "
                f"is {w}x{h} (width x height); expected the same size (fix: regenerate the PNG, or correct the "
                "image's size in the source)")
        id_map = np.where(np.isin(id_map, ids), id_map, 0).astype(np.int32)
        segs = []
        need = np.isnan(inst.area) | ~np.isfinite(inst.boxes).all(axis=1)
        counted = _count(id_map, ids[need]) if need.any() else {}
        xywh = convert_boxes(inst.boxes, BoxFormat.XYXY, BoxFormat.XYWH)  # exact decimals
        for k in range(len(inst)):
            sid = int(ids[k])
            if need[k]:
                area, bbox = counted.get(sid, (0, [0, 0, 0, 0]))
            else:
                area, bbox = _num(inst.area[k]), [_num(v) for v in xywh[k]]
            segs.append(_segment_entry(sid, int(inst.labels[k]), area, bbox, bool(inst.iscrowd[k]), inst, k))
        return id_map, segs
    # paint per-object masks
    id_map = np.zeros((h, w), np.int32)
    seg_ids = ids if ids_ok else np.arange(1, len(inst) + 1)
    if not ids_ok:
        lose("annotation ids", int((ids >= 0).sum()))
    painted = []
    for k in range(len(inst)):
        mask = _object_mask(inst.segmentation[k] if inst.segmentation is not None else None, h, w)
        if mask is None:
            lose("objects without a mask")
            continue
        id_map[mask] = int(seg_ids[k])
        painted.append(k)
    counted = _count(id_map, seg_ids[painted]) if painted else {}
    segs = []
    for k in painted:
        sid = int(seg_ids[k])
        if sid not in counted:
            lose("objects hidden by later objects")
            continue
        area, bbox = counted[sid]
        # area is counted on the painted map: a stored area that differs (COCO's polygon area) is not kept
        lose("stored areas", int(bool(np.isfinite(inst.area[k])) and float(inst.area[k]) != area))
        # likewise the box: the painted segment's extent, which a box drawn apart from the mask is not
        x0, y0, bw, bh = (float(v) for v in bbox)
        lose("boxes (the painted mask's extent is written instead)",
             int(inst.boxes[k].tolist() != [x0, y0, x0 + bw, y0 + bh]))
        segs.append(_segment_entry(sid, int(inst.labels[k]), area, bbox, bool(inst.iscrowd[k]), inst, k))
    return id_map, segs


def _segment_entry(sid: int, label: int, area, bbox, crowd: bool, inst: Instances, k: int) -> dict:
    entry = {"id": sid, "category_id": label, "area": area, "bbox": bbox, "iscrowd": int(crowd)}
    if inst.extra is not None and inst.extra[k]:
        for key, v in inst.extra[k].items():
            entry.setdefault(key, v)
    return entry


def _count(id_map: np.ndarray, ids: np.ndarray) -> dict[int, tuple[int, list[int]]]:
    from ..masks import segments_from_id_map

    seg = segments_from_id_map(id_map, ids, with_rle=False)
    return {int(v): (int(a), [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])])
            for v, a, b in zip(seg.values, seg.areas, seg.boxes)}


def _object_mask(segm: Any, h: int, w: int) -> np.ndarray | None:
    """Boolean ``(h, w)`` mask of an RLE dict or polygon list, or None (no shape, or an RLE of another size)."""
    from ..masks import segmentation_mask

    m = segmentation_mask(segm, h, w, on_size_mismatch="none")
    return None if m is None else m.astype(bool)
