"""LVIS (v0.5, v1): COCO's JSON layout plus federated labels and a richer category table.

Layouts read (see ``docs/formats/lvis.md``):

- a folder holding ``lvis_v1_<split>.json`` (or ``lvis_v0.5_<split>.json``,
  ``lvis_<split>.json``), directly or under ``annotations/``, with the COCO image
  folders (``train2017/``, ``val2017/``) beside it;
- one such JSON file; its images are under ``image_dir=`` (default: the JSON's
  folder, or the folder above ``annotations/``).

What LVIS adds to COCO, all read into the record model and written back:

- per image ``not_exhaustive_category_ids`` and ``neg_category_ids`` (in
  ``Record.extra``, lists of category ids checked against the categories);
- per category ``frequency`` (``r``, ``c``, ``f``), ``synset``, ``synonyms``, ``def``,
  ``image_count`` and ``instance_count`` (in ``Category.extra``);
- images name their file by ``coco_url`` (v1 has no ``file_name``): the image is
  ``<root>/<split folder>/<name>``, the last two components of the URL, as
  detectron2's LVIS loader reads it (lvis-api's ``LVISVis`` takes the last
  component under its own ``img_dir``, which is ``<root>/<split folder>``).
  ``coco_url`` (and v0.5's ``file_name``) stay in ``Record.extra``.
- annotations have no ``iscrowd``: read as not crowd; a crowd object written
  to LVIS loses its flag (counted in the report).

The JSON is decoded by :mod:`dsprep._cocojson`, the decoder COCO uses.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._checks import INT64_MAX, INT64_MIN
from .._cocojson import (_Source, _ann_ids, _annotations, _check_images, _image_ids, _join_shared, _parse_file,
                         is_lvis_text, peek)
from .._io import check_images_mode, gc_paused, json_bytes, place_image, progress as _progress
from .._paths import output_path, safe_relpath
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError, MalformedFileError,
                      MissingFileError, check_choice)
from ..records import is_file_field, Category, Dataset, Record, make_ids_distinct

__all__ = ["NAME", "DESCRIPTION", "FREQUENCIES", "detect", "parse", "write"]

log = logging.getLogger(__name__)

NAME = "lvis"
DESCRIPTION = "LVIS v0.5/v1 JSON: COCO layout + neg/not-exhaustive category ids, frequency, synsets"

# What write keeps of any dataset, for the round-trip matrix (issue 12: the FIELDS vocabulary);
# counted lost otherwise: crowd flags, keypoints, image-level labels, renumbered ids.
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "categories", "category_ids",
                   "supercategory", "difficult", "masks", "annotation_ids", "image_ids"})

#: LVIS category frequency groups: rare (1-10 training images), common (11-100), frequent (> 100).
FREQUENCIES = ("r", "c", "f")
_FILE = re.compile(r"^lvis_(?:v\d+(?:\.\d+)?_)?(.+)\.json$")
_IMAGE_LISTS = ("not_exhaustive_category_ids", "neg_category_ids")
_NAME_WHAT = "a 'coco_url' string (or 'file_name') naming the image file"


# ----------------------------------------------------------------------------- layout

def _json_files(folder: Path) -> dict[str, Path]:
    """split -> file of ``lvis_*.json`` in ``folder`` and ``folder/annotations``."""
    found: dict[str, Path] = {}
    for d in (folder, folder / "annotations"):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                m = _FILE.match(p.name)
                if m and p.is_file():
                    found.setdefault(m.group(1), p)
    return found


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ``lvis_*.json`` file (or a JSON whose first/last 64 KiB show LVIS's
    keys), or a folder holding one (or its ``annotations/`` does).

    Example:
        >>> detect("datasets/lvis")  # doctest: +SKIP
        True
    """
    path = Path(path)
    if path.is_file():
        if _FILE.match(path.name):
            return True
        text = peek(path) if path.suffix.lower() == ".json" else None
        return text is not None and is_lvis_text(text)
    return path.is_dir() and bool(_json_files(path))


def _layout(path: Path, split: str | None, image_dir: str | os.PathLike | None) -> tuple[Path, list[_Source]]:
    if path.is_file():
        m = _FILE.match(path.name)
        name = m.group(1) if m else path.stem
        if split is not None:
            check_choice("split", split, [name])
        folder = path.parent.parent if path.parent.name == "annotations" else path.parent
        return (Path(image_dir) if image_dir is not None else folder), [_Source(path, name, "")]
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path}: no such file or directory (expected an LVIS JSON file or a folder "
                                   "holding lvis_v1_<split>.json)")
    files = _json_files(path)
    if not files:
        raise DatasetNotFoundError(f"{path}: no LVIS annotations found; looked for {path}/lvis_*.json and "
                                   f"{path / 'annotations'}/lvis_*.json (lvis_v1_train.json, lvis_v1_val.json); "
                                   "or pass the JSON file itself")
    if split is not None:
        check_choice("split", split, files)
        files = {split: files[split]}
    root = Path(image_dir) if image_dir is not None else path
    return root, [_Source(p, s, "") for s, p in files.items()]


def _image_name(entry: dict) -> Any:
    """The image's path under the root: the last two components of ``coco_url`` (the split
    folder and the file, as detectron2 reads LVIS), else ``file_name``; None if neither is a name."""
    url = entry.get("coco_url")
    if isinstance(url, str) and url and not url.endswith("/"):
        return "/".join(url.split("/")[-2:])
    fn = entry.get("file_name")
    return fn if isinstance(fn, str) and fn else None


# ----------------------------------------------------------------------------- parse

def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise", workers: int | None = None,
          progress: bool | None = None, image_dir: str | os.PathLike | None = None, check_images: bool = False,
          allow_outside_root: bool = False, **options: Any) -> Dataset:
    """Read an LVIS dataset into records.

    Args:
        path: a folder holding ``lvis_*_<split>.json`` (or its ``annotations/``), or one JSON file.
        split: read only this split (default: every file found).
        on_error: ``"raise"`` at the first bad item, or ``"warn"``: skip bad images and
            annotations, count them in ``info["skipped"]``.
        workers: unused (one JSON per split, decoded in this process, as COCO).
        progress: show a progress bar (default: on a terminal).
        image_dir: the folder holding the split image folders (default: see the module doc).
        check_images: also check that every image file exists.
        allow_outside_root: accept a ``coco_url``/``file_name`` path that leaves the root.

    Returns:
        A :class:`Dataset` with ``format="lvis"``.

    Raises:
        DatasetNotFoundError: no LVIS JSON at ``path``.
        MalformedFileError: not JSON, not an LVIS/COCO object, or a bad category entry.
        InvalidAnnotationError: a bad image or annotation entry (names the file and id).
        MissingFileError: ``check_images`` and an image file is absent.
        PathEscapeError: an image path that leaves the root.

    Example:
        >>> ds = parse("datasets/lvis", split="val")  # doctest: +SKIP
        >>> ds.records[0].extra["neg_category_ids"][:3]  # doctest: +SKIP
        [1, 17, 1050]
    """
    if options:
        log.debug("lvis.parse ignores options %s", sorted(options))
    policy = ErrorPolicy(on_error)
    root, sources = _layout(Path(path), split, image_dir)
    records: list[Record] = []
    categories: dict[int, Category] = {}
    info: dict[str, Any] = {}
    splits: dict[str, list[str]] = {}
    seen: dict[Any, Record] = {}  # (image id, file name) -> its record, over the split files
    with gc_paused(freeze=True):
        for src in sources:
            recs, cats, file_info, _ = _parse_file(src, "instances", policy, progress, root, allow_outside_root,
                                                   image_name=(_image_name, _NAME_WHAT))
            make_ids_distinct(recs)
            _merge_categories(categories, cats, src.json)
            _check_categories(cats, src.json)
            recs = _check_images_lists(recs, {c.id for c in cats}, src.json, policy)
            info = info or dict(file_info)
            # an image in several split files (dsprep writes VOC's trainval so) is one record in each split
            listed = _join_shared(recs, [(r.source_id, r.path.rpartition("/")[2]) for r in recs], seen, _IMAGE_LISTS)
            splits.setdefault(src.split, []).extend(listed)
            records.extend(r for r, i in zip(recs, listed) if i is r.id)
    if check_images:
        records, splits = _check_images(records, splits, root, policy)
    if policy.count:
        info["skipped"] = policy.count
        info["skipped_summary"] = policy.summary("LVIS items")
    return Dataset(categories.values(), records, splits=splits, info=info, root=root, format=NAME)


def _merge_categories(into: dict[int, Category], cats: Sequence[Category], file: Path) -> None:
    for c in cats:
        old = into.setdefault(c.id, c)
        if old.name != c.name:
            raise MalformedFileError(str(file), f"category id {c.id} is {c.name!r} here but {old.name!r} in another "
                                                "split's file; expected one category table")


def _is_int64(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX


def _check_categories(cats: Sequence[Category], file: Path) -> None:
    """LVIS's category fields, where present, have their documented types."""
    for c in cats:
        e = c.extra
        where = f"{file}: category id {c.id}"
        problem = None
        if "frequency" in e and e["frequency"] not in FREQUENCIES:
            problem = f"'frequency' must be one of 'r', 'c', 'f' (rare, common, frequent); found {e['frequency']!r}"
        elif "synonyms" in e and not (isinstance(e["synonyms"], list) and all(isinstance(s, str) for s in e["synonyms"])):
            problem = f"'synonyms' must be a list of strings; found {e['synonyms']!r}"
        elif any(k in e and not isinstance(e[k], str) for k in ("synset", "def")):
            k = next(k for k in ("synset", "def") if k in e and not isinstance(e[k], str))
            problem = f"{k!r} must be a string; found {e[k]!r}"
        elif any(k in e and not (_is_int64(e[k]) and e[k] >= 0) for k in ("image_count", "instance_count")):
            k = next(k for k in ("image_count", "instance_count") if k in e and not (_is_int64(e[k]) and e[k] >= 0))
            problem = f"{k!r} must be an integer >= 0; found {e[k]!r}"
        if problem:
            raise MalformedFileError(where, problem[:300])


def _check_images_lists(recs: list[Record], known: set[int], file: Path, policy: ErrorPolicy) -> list[Record]:
    """Each image's ``neg_category_ids`` / ``not_exhaustive_category_ids``: lists of known category ids."""
    out = []
    for r in recs:
        try:
            for key in _IMAGE_LISTS:
                if key not in r.extra:
                    continue
                ids = r.extra[key]
                where = f"{file}: image id {r.source_id}"
                if not isinstance(ids, list) or not all(_is_int64(i) for i in ids):
                    raise InvalidAnnotationError(where, f"{key!r} must be a list of 64-bit integer category ids; "
                                                        f"found {ids!r}"[:300])
                unknown = [i for i in ids if i not in known]
                if unknown:
                    raise InvalidAnnotationError(where, f"{key!r} names category id(s) {unknown[:5]} that are not in "
                                                        "'categories'; expected ids of the category table")
        except FormatError as err:
            policy.handle(err)
            continue
        out.append(r)
    return out


# ----------------------------------------------------------------------------- write

def _frequency(image_count: int) -> str:
    """LVIS's groups by training images: rare 1-10, common 11-100, frequent > 100."""
    return "r" if image_count <= 10 else "c" if image_count <= 100 else "f"


def _category_table(dataset: Dataset) -> list[dict[str, Any]]:
    """LVIS categories: the source's fields kept; ``image_count``, ``instance_count``,
    ``frequency`` and ``synonyms`` filled in from the records where the source has none
    (lvis-api's LVISEval reads ``frequency``)."""
    instances: Counter[int] = Counter()
    images: Counter[int] = Counter()
    for r in dataset.records:
        labels = r.instances.labels.tolist()
        instances.update(labels)
        images.update(set(labels))
    out = []
    for c in dataset.categories:
        entry: dict[str, Any] = {"id": int(c.id), "name": c.name}
        if c.supercategory:
            entry["supercategory"] = c.supercategory
        entry.update({k: v for k, v in c.extra.items() if k not in ("id", "name", "supercategory")})
        entry.setdefault("synonyms", [c.name])
        entry.setdefault("image_count", images[c.id])
        entry.setdefault("instance_count", instances[c.id])
        entry.setdefault("frequency", _frequency(entry["image_count"] if _is_int64(entry["image_count"]) else 0))
        out.append(entry)
    return out


def _image_paths(recs: Sequence[Record], split: str) -> list[str]:
    """Where each image goes under OUT: its ``coco_url``'s split folder and name when the URL names
    this image's file (same file name: an LVIS source, COCO), else ``<split>/<file name>``; where
    two collide, the record's relative path with ``/`` as ``__`` (readers take the URL's last two
    components: the folder and the file)."""
    out: list[str] = []
    seen: set[str] = set()
    for r in recs:
        url = _image_name(r.extra) if isinstance((r.extra or {}).get("coco_url"), str) else None
        if url and safe_relpath(url) == url and url.rpartition("/")[2] == r.path.rpartition("/")[2]:
            rel = url
        else:
            rel = f"{safe_relpath(split)}/{r.path.rpartition('/')[2]}"
        if rel in seen:  # one folder per split, and LVIS names a file by the URL's last two components
            stem, dot, ext = safe_relpath(r.path).replace("/", "__").rpartition(".")
            rel, k = f"{safe_relpath(split)}/{stem}{dot}{ext}", 1
            while rel in seen:
                rel, k = f"{safe_relpath(split)}/{stem}_{k}{dot}{ext}", k + 1
        seen.add(rel)
        out.append(rel)
    return out


def _image_entry(r: Record, iid: Any, rel: str) -> dict[str, Any]:
    """An LVIS image: id, size, ``coco_url`` (the source's when it still names ``rel``, else
    ``rel`` itself), the federated lists (empty where the source has none) and the other extras."""
    entry: dict[str, Any] = {"id": iid, "width": int(r.width), "height": int(r.height)}
    extra = r.extra or {}
    url = extra.get("coco_url")
    entry["coco_url"] = url if isinstance(url, str) and _image_name({"coco_url": url}) == rel else rel
    for key in _IMAGE_LISTS:
        entry[key] = extra.get(key, [])
    for k, v in extra.items():
        if k not in entry and k not in ("caption_ids",) and not is_file_field(k, v):
            entry[k] = v
    return entry


def _lost(dataset: Dataset) -> dict[str, int]:
    recs = dataset.records
    lost = {"crowd flags (LVIS has no iscrowd)": sum(int(r.instances.iscrowd.sum()) for r in recs),
            "keypoints": sum(len(r.instances) for r in recs if r.instances.keypoints is not None),
            "captions": sum(len(r.captions) for r in recs),
            "image-level labels": sum(r.label is not None for r in recs),
            "mask PNGs": sum((r.mask_path is not None) + (r.instance_mask_path is not None) for r in recs),
            "files named by image fields (Cityscapes color, polygons...: not carried)": sum(
                is_file_field(k, v) for r in recs for k, v in (r.extra or {}).items())}
    return {k: v for k, v in lost.items() if v}


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as LVIS: ``lvis_v1_<split>.json`` per split, images under ``<split folder>/``.

    The JSON loads in lvis-api's ``LVIS`` and ``LVISEval``: images carry ``coco_url``,
    ``neg_category_ids`` and ``not_exhaustive_category_ids``; categories carry
    ``frequency``, ``synonyms``, ``image_count`` and ``instance_count`` (computed from
    the records where the source has none); annotations have no ``iscrowd``. Records
    in no split, when others have one, go to split ``default``.

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: how images are placed (``link``, ``copy``, ``none``).
        progress: show a progress bar (default: on a terminal).

    Returns:
        ``{"images": n, "objects": n, "lost": {what: count}, "files": [...]}``.

    Raises:
        MissingFileError: an image to place does not exist.
    """
    if options:
        log.debug("lvis.write ignores options %s", sorted(options))
    check_images_mode(images)
    dest = Path(dest)
    by_id = dataset.record_by_id()
    groups = dict(dataset.splits) or {"all": [r.id for r in dataset.records]}
    listed = {i for ids in groups.values() for i in ids}
    unsplit = [r.id for r in dataset.records if r.id not in listed]
    if unsplit:
        groups[next(n for n in ("default", "unsplit", "unassigned") if n not in groups)] = unsplit
    root = Path(dataset.root) if dataset.root is not None else None
    cats = _category_table(dataset)
    src_info = dataset.info.get("info")
    info = dict(src_info) if isinstance(src_info, dict) else {"description": f"written by dsprep from "
                                                                            f"{dataset.format or 'records'}"}
    licenses = dataset.info.get("licenses") if isinstance(dataset.info.get("licenses"), list) else []
    any_difficult = any(r.instances.difficult.any() for r in dataset.records)
    files, replaced = [], 0
    # image and annotation ids over the whole dataset, so that an image in several split files
    # has the same ids in each (the reader makes it one record again)
    every = [by_id[i] for i in dict.fromkeys(i for ids in groups.values() for i in ids) if i in by_id]
    img_id_of = dict(zip((r.id for r in every), _image_ids(every)))
    parts = [r.instances.ids for r in every]
    all_ann = _ann_ids(np.concatenate(parts)) if parts else []
    ann_ids_of, k = {}, 0
    for r in every:
        ann_ids_of[r.id], k = all_ann[k:k + len(r.instances)], k + len(r.instances)
    with gc_paused():
        for split, ids in groups.items():
            recs = [by_id[i] for i in ids if i in by_id]
            rels = _image_paths(recs, split)
            img_ids = [img_id_of[r.id] for r in recs]
            anns = _annotations(recs, img_ids, [a for r in recs for a in ann_ids_of[r.id]], any_difficult, False, 0)
            for a in anns:
                a.pop("iscrowd", None)
            _place_images(recs, rels, root, dest, images, progress, split)
            replaced += sum(isinstance((r.extra or {}).get("coco_url"), str) and
                            _image_name({"coco_url": r.extra["coco_url"]}) != rel for r, rel in zip(recs, rels))
            doc = {"info": info, "licenses": licenses, "images": [_image_entry(r, i, rel) for r, i, rel in
                                                                  zip(recs, img_ids, rels)],
                   "annotations": anns, "categories": cats}
            name = f"lvis_v1_{safe_relpath(split).replace('/', '_')}.json"
            output_path(dest, name, what="annotation file").write_bytes(json_bytes(doc, f"{name}: "))
            files.append(name)
    lost = _lost(dataset)
    renumbered = sum(r.source_id is not None and img_id_of[r.id] != r.source_id for r in every)
    if renumbered:
        lost["source image ids (LVIS's are unique ints >= 0; numbered 1..N)"] = renumbered
    renumbered = sum(i >= 0 and i != j for r in every for i, j in zip(r.instances.ids.tolist(), ann_ids_of[r.id]))
    if renumbered:
        lost["annotation ids (LVIS's are unique over the dataset and >= 1; numbered 1..N)"] = renumbered
    flat = sum(rel.rpartition("/")[2] != r.path.rpartition("/")[2]
               for split, ids in groups.items()
               for r, rel in zip([by_id[i] for i in ids if i in by_id],
                                 _image_paths([by_id[i] for i in ids if i in by_id], split)))
    if flat:
        lost["file names (two images of one split with one name: written as their relative path, / as __)"] = flat
    if replaced:  # LVIS finds images by coco_url: one that does not name where the image is, is rewritten
        lost["coco_url values not naming the image's place (written as its relative path)"] = replaced
    # each image and object once, though an image in several splits is in several files
    return {"images": len(every), "objects": sum(len(r.instances) for r in every), "lost": lost, "files": files}


def _place_images(recs: Sequence[Record], rels: Sequence[str], root: Path | None, dest: Path, images: str,
                  progress: bool | None, split: str) -> None:
    if images == "none":
        return
    for r, rel in _progress(list(zip(recs, rels)), total=len(recs), desc=f"images {split}", enabled=progress):
        src = (root / r.path) if root is not None else Path(r.path)
        if not place_image(src, dest, rel, images):
            raise MissingFileError(str(src), f"image file of record {r.id!r} not found (needed to place it as {rel}; "
                                             "use --images none (images='none' in Python) to write annotations only)")
