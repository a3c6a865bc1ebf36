"""MS COCO: instances, person_keypoints and captions JSON (read and write).

Layouts read (see ``docs/formats/coco.md``):

- the 2017 tree: ``ROOT/annotations/<task>_<split>.json`` with images in
  ``ROOT/<split>/`` (or ``ROOT/images/<split>/``, as Datumaro and
  super-gradients lay it out);
- Roboflow: ``ROOT/<split>/_annotations.coco.json`` next to the images;
- a single JSON file; its images are in ``image_dir=`` (default: a sibling
  ``images/`` folder when there is one, else the JSON's own folder).

Record ids come from the image path relative to the root
(``val2017/000000000139``); ``Record.source_id`` is COCO's image id.

Speed: a train2017 instances file (118k images, 860k annotations, 22.5 M
polygon vertices) is decoded by msgspec straight into typed structs, with
``segmentation`` left as raw JSON text (``msgspec.Raw``) so polygons never
become Python floats; the per-object fields become one numpy array each,
grouped by image with a stable argsort; the cyclic GC is paused while the
millions of new objects are built (it would otherwise walk them again and
again). Polygons are decoded only on demand (:func:`dsprep.records.decode_segmentation`).

Conventions kept as stored (format facts: ``formats.md`` section 2):

- ``bbox`` ``[x, y, w, h]`` (0-based float pixels) becomes xyxy
  ``[x, y, x+w, y+h]`` in float64; the writer recovers ``w`` exactly.
- ``area`` is kept as stored (it is the segment area, not recomputed).
- keypoint ``skeleton`` is kept as the file stores it: 1-based in real COCO,
  0-based in Datumaro's output; nothing is renumbered.
- RLE ``counts`` keep their form (uncompressed int list on real crowd
  annotations, compressed string in results and panoptic->detection files).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._cocojson import (_IMAGE_KEYS, _INTERNAL_IMAGE_EXTRA, _Source, _annotations, _ann_ids, _check_images,
                         _image_ids, _join_shared, _keeps_ann_ids, _keeps_image_ids,
                         _parse_file, is_lvis_text, peek)
from .._io import gc_paused, json_bytes, place_image, progress as _progress
from .._paths import output_path, safe_relpath
from ..errors import DatasetNotFoundError, ErrorPolicy, MalformedFileError, MissingFileError, check_choice
from ..records import Category, Dataset, Record, is_file_field, make_ids_distinct

__all__ = ["NAME", "DESCRIPTION", "TASKS", "detect", "parse", "write"]

log = logging.getLogger(__name__)

NAME = "coco"
DESCRIPTION = "MS COCO JSON: instances, person_keypoints, captions (2017 tree, Roboflow, single file)"
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "categories", "category_ids",
                   "supercategory", "crowd", "difficult", "masks", "keypoints", "annotation_ids", "image_ids"})

#: Annotation files dsprep reads, by file-name prefix, in the order ``task=None`` picks them.
TASKS = ("instances", "person_keypoints", "captions")
_TASK_FILE = re.compile(r"^(instances|person_keypoints|captions)_(.+)\.json$")
ROBOFLOW_FILE = "_annotations.coco.json"


def _peek_is_coco(path: Path) -> bool:
    """Cheap content check: a JSON object naming 'images' and 'annotations'/'categories'."""
    text = peek(path)
    if text is None:
        return False
    if b'"segments_info"' in text or is_lvis_text(text):  # COCO panoptic, LVIS: their own formats
        return False
    return b'"images"' in text and (b'"annotations"' in text or b'"categories"' in text)


# ----------------------------------------------------------------------------- layout


def _image_prefix(root: Path, split: str) -> str:
    for rel in (split, f"images/{split}"):
        if (root / rel).is_dir():
            return rel + "/"
    return split + "/"


def _task_files(ann_dir: Path) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    if ann_dir.is_dir():
        for p in sorted(ann_dir.iterdir()):
            m = _TASK_FILE.match(p.name)
            if m and p.is_file():
                found.setdefault(m.group(1), {})[m.group(2)] = p
    return found


def _layout(path: Path, split: str | None, task: str | None,
            image_dir: str | os.PathLike | None) -> tuple[Path, list[_Source], str | None]:
    """Find the annotation files, the root and each split's image folder."""
    if task is not None:
        check_choice("COCO task", task, TASKS)
    if path.is_file():
        m = _TASK_FILE.match(path.name)
        file_task = m.group(1) if m else None
        file_split = m.group(2) if m else None
        if path.name == ROBOFLOW_FILE:
            file_split = path.parent.name
        if task is not None and file_task is not None and task != file_task:
            raise DatasetNotFoundError(f"{path}: this is a {file_task} file, but task={task!r} was asked for")
        if split is not None and file_split is not None and split != file_split:
            check_choice("split", split, [file_split])
        name_split = file_split if file_split is not None else split
        if image_dir is not None:
            return Path(image_dir), [_Source(path, name_split, "")], file_task
        if path.name == ROBOFLOW_FILE:
            return path.parent.parent, [_Source(path, name_split, path.parent.name + "/")], file_task
        tree = path.parent.parent
        if m and path.parent.name == "annotations" and any(
                (tree / rel).is_dir() for rel in (file_split, f"images/{file_split}")):
            return tree, [_Source(path, name_split, _image_prefix(tree, file_split))], file_task
        root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
        return root, [_Source(path, name_split, "")], file_task
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path}: no such file or directory (expected a COCO JSON file or a "
                                   "directory with annotations/instances_<split>.json)")
    by_task = _task_files(path / "annotations")
    if by_task:
        chosen = task or next(t for t in TASKS if t in by_task)
        if chosen not in by_task:
            raise DatasetNotFoundError(
                f"{path}: no annotations/{chosen}_<split>.json (found: "
                + ", ".join(f"{t}_{s}.json" for t, d in by_task.items() for s in d) + ")")
        files = by_task[chosen]
        splits = [split] if split is not None else list(files)
        if split is not None:
            check_choice("split", split, files)
        if image_dir is not None:
            rel = os.path.relpath(image_dir, path)
            prefix = "" if rel == "." else Path(rel).as_posix() + "/"
            return path, [_Source(files[s], s, prefix) for s in splits], chosen
        return path, [_Source(files[s], s, _image_prefix(path, s)) for s in splits], chosen
    robo = sorted(p for p in path.glob(f"*/{ROBOFLOW_FILE}"))
    if robo:
        found = {p.parent.name: p for p in robo}
        if split is not None:
            check_choice("split", split, found)
            found = {split: found[split]}
        return path, [_Source(p, s, s + "/") for s, p in found.items()], task
    if (path / ROBOFLOW_FILE).is_file():
        return path, [_Source(path / ROBOFLOW_FILE, split, "")], task
    raise DatasetNotFoundError(
        f"{path}: no COCO annotations found. Looked for {path / 'annotations'}/"
        f"{{instances,person_keypoints,captions}}_<split>.json, {path}/<split>/{ROBOFLOW_FILE} and "
        f"{path / ROBOFLOW_FILE}; or pass the JSON file itself")


def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like COCO (file patterns and a peek at a JSON's first/last 64 KiB).

    Example:
        >>> detect("datasets/coco")  # doctest: +SKIP
        True
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".json" or path.name.startswith("panoptic_"):
            return False
        return _peek_is_coco(path)
    if not path.is_dir():
        return False
    if _task_files(path / "annotations"):
        return True
    return (path / ROBOFLOW_FILE).is_file() or any(path.glob(f"*/{ROBOFLOW_FILE}"))


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise",
          workers: int | None = None, progress: bool | None = None, task: str | None = None,
          image_dir: str | os.PathLike | None = None, check_images: bool = False,
          allow_outside_root: bool = False) -> Dataset:
    """Read a COCO dataset into records.

    Args:
        path: a dataset root (2017 tree or Roboflow export) or one JSON file.
        split: read only this split (default: every ``<task>_<split>.json`` found).
        on_error: ``"raise"`` at the first bad item, or ``"warn"``: skip bad
            annotations/images, count them in ``dataset.info["skipped"]``.
        workers: unused (one JSON per split is decoded in this process; it is
            fast enough that a pool would only add pickling).
        progress: show a progress bar (default: on a terminal).
        task: ``"instances"``, ``"person_keypoints"`` or ``"captions"``
            (default: the first of these that the tree has).
        image_dir: the image folder for a single JSON file (default: a
            sibling ``images/`` folder, else the JSON's folder).
        check_images: also check that every image file exists (and read
            missing sizes from image headers).
        allow_outside_root: accept a ``file_name`` that leaves its split's image
            folder (``../x.jpg``, an absolute path); by default it is a
            :class:`~dsprep.errors.PathEscapeError` naming the JSON and image id.

    Returns:
        A :class:`Dataset` with ``format="coco"``; ``info`` holds COCO's
        ``info``/``licenses`` and ``task``.

    Raises:
        DatasetNotFoundError: no COCO annotations at ``path``.
        MalformedFileError: not JSON, or JSON that is not COCO.
        InvalidAnnotationError: a bad annotation (names the file and annotation id).
        MissingFileError: ``check_images`` and an image file is absent.
        PathEscapeError: a ``file_name`` leaves its image folder (see ``allow_outside_root``).

    Example:
        >>> ds = parse("coco2017", split="val2017")  # doctest: +SKIP
        >>> ds.records[0].id, ds.records[0].instances.boxes[:1]  # doctest: +SKIP
        ('val2017/000000000139', array([[236.98, 142.51, 261.68, 212.01]]))
    """
    path = Path(path)
    policy = ErrorPolicy(on_error)
    root, sources, task_found = _layout(path, split, task, image_dir)
    records: list[Record] = []
    categories: dict[int, Category] = {}
    info: dict[str, Any] = {}
    splits: dict[str, list[str]] = {}
    seen: dict[tuple[Any, str], Record] = {}  # (image id, file_name) -> its record, over the split files
    with gc_paused(freeze=True):
        for src in sources:
            recs, cats, file_info, file_task = _parse_file(src, task or task_found, policy, progress, root,
                                                           allow_outside_root)
            make_ids_distinct(recs)  # a.jpg and a.png of one folder: two ids
            for c in cats:
                old = categories.get(c.id)
                if old is None:
                    categories[c.id] = c
                elif old.name != c.name:
                    raise MalformedFileError(str(src.json), f"category id {c.id} is {c.name!r} here but "
                                                            f"{old.name!r} in another split's file")
            if not info:
                info = dict(file_info)
                info["task"] = file_task
            if len(sources) == 1:  # image ids are unique within a file: every record is its own
                listed = [r.id for r in recs]
            else:
                listed = _join_shared(recs, [(r.source_id, r.path[len(src.prefix):]) for r in recs], seen)
            if src.split is not None:
                splits.setdefault(src.split, []).extend(listed)
            records.extend(r for r, i in zip(recs, listed) if i is r.id)
    if check_images:
        records, splits = _check_images(records, splits, root, policy)
    summary = policy.summary("COCO items")
    if policy.count:
        info["skipped"] = policy.count
        info["skipped_summary"] = summary
    return Dataset(categories.values(), records, splits=splits, info=info, root=root, format=NAME)


def _unique_names(recs: Sequence[Record]) -> list[str]:
    """file_name per record: the basename when unique within the split, else the relative path,
    made safe to join to the split folder (``../x.jpg`` -> ``__/x.jpg``: :func:`safe_relpath`)."""
    base = [safe_relpath(r.path.rpartition("/")[2]) for r in recs]
    if len(set(base)) == len(base):
        return base
    seen: dict[str, int] = {}
    for b in base:
        seen[b] = seen.get(b, 0) + 1
    return [b if seen[b] == 1 else safe_relpath(r.path) for b, r in zip(base, recs)]


def _count_renumbered(recs: Sequence[Record], ann_ids: Sequence[int], out: set[tuple[str, int]]) -> None:
    """Add ``(record id, object)`` of each object whose source annotation id (>= 0) is not the one written."""
    counts = [len(r.instances.ids) for r in recs]
    if not sum(counts):
        return
    ids = np.concatenate([r.instances.ids for r in recs])
    changed = np.flatnonzero((ids >= 0) & (ids != np.asarray(ann_ids, np.int64)))
    if changed.size:  # only these are looked up by record (none where the source had no ids: YOLO, VOC)
        starts = np.cumsum([0] + counts)
        for k in changed.tolist():
            i = int(np.searchsorted(starts, k, side="right")) - 1
            out.add((recs[i].id, k - int(starts[i])))


def _shared_ids(groups: Mapping[str, list[Record]]) -> tuple[list[Record], list[int], list[int]] | None:
    """Image and annotation ids that are the same in every split file, or None.

    Returns ``(records, image_ids, annotation_ids)`` over the records of all
    splits (each once, in order of first appearance; annotation ids in record
    order). Source ids are kept when they are valid and unique across the
    whole dataset; when no split would keep its own source ids, everything is
    numbered dataset-wide (1..N images, 1..M annotations). None when some
    split has source ids that are valid within it but collide with another
    split's (Datumaro writes one JSON per split, each numbered 1..N): those
    files are then written split by split, each keeping its own ids.
    """
    written = list({r.id: r for recs in groups.values() for r in recs}.values())
    if _keeps_image_ids(written):
        img_ids = [r.source_id for r in written]
    elif any(recs and _keeps_image_ids(recs) for recs in groups.values()):
        return None
    else:
        img_ids = list(range(1, len(written) + 1))
    parts = [r.instances.ids for r in written]
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if _keeps_ann_ids(ids):
        return written, img_ids, ids.tolist()
    if ids.size and (ids >= 1).any():  # some split may hold valid ids of its own
        row = {r.id: i for i, r in enumerate(written)}
        for recs in groups.values():
            split_ids = [parts[row[r.id]] for r in recs]
            split_ids = np.concatenate(split_ids) if split_ids else ids[:0]
            if split_ids.size and _keeps_ann_ids(split_ids):
                return None
    return written, img_ids, list(range(1, len(ids) + 1))


def _image_entry(r: Record, iid: Any, name: str) -> dict[str, Any]:
    """The image's JSON entry: its extra fields too, but not files of another tree (``is_file_field``)."""
    entry = {"id": iid, "width": int(r.width), "height": int(r.height), "file_name": name}
    extra = r.extra
    if extra:
        if extra.keys().isdisjoint(_IMAGE_RESERVED) and not any(is_file_field(k, v) for k, v in extra.items()):
            entry.update(extra)
        else:
            for k, v in extra.items():
                if k not in entry and k not in _INTERNAL_IMAGE_EXTRA and not is_file_field(k, v):
                    entry[k] = v
    return entry


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          info: Mapping[str, Any] | None = None, compress_rle: bool = False, **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as a COCO 2017 tree into the existing directory ``dest``.

    Per split (``dataset.splits``; all records as split ``all`` when there
    are none; records in no split, when others have one, as split ``default``): ``annotations/instances_<split>.json`` (or
    ``person_keypoints_<split>.json`` when the dataset has keypoints), plus
    ``captions_<split>.json`` when records have captions; images placed under
    ``dest/<split>/<file_name>`` by ``images`` (``link``, ``copy``, ``none``).

    The JSON loads in ``pycocotools.coco.COCO`` and is accepted by
    ``COCOeval``: ``info`` and ``licenses`` always present; every annotation
    has ``iscrowd``, ``area``, ``bbox`` ``[x, y, w, h]`` and ``segmentation``;
    annotation ids start at 1 (source ids kept when all are >= 1 and unique).
    Image and annotation ids are the same in every split file when possible
    (see :func:`_shared_ids` and docs/formats/coco.md), and each record's
    entries are then built once for all the files it appears in.
    Per-object fields COCO lacks (VOC ``difficult``, ``pose``, ``truncated``,
    ``occluded``, ``parts``...) are written as extra annotation keys, which
    pycocotools ignores and :func:`parse` reads back.

    Args:
        dataset: the records (category ids as they should appear in the file).
        dest: an existing, empty directory.
        images: how to place image files; ``none`` writes annotations only.
        progress: show a progress bar (default: on a terminal).
        info: COCO ``info`` to write (default: the dataset's, else a minimal one).
        compress_rle: write RLE with list counts (uncompressed, as real COCO
            crowd ground truth has them) as compressed strings. Default: keep
            the source's form; both are valid COCO.

    Returns:
        ``{"images": n, "objects": n, "lost": {what: count}, "files": [...]}``.

    Raises:
        MissingFileError: an image file to place does not exist.

    Example:
        >>> write(parse("VOC2012-as-coco"), "out")  # doctest: +SKIP
        {'images': 17125, 'objects': 40138, 'lost': {}, 'files': [...]}
    """
    from .._io import check_images_mode

    check_images_mode(images)
    if options:
        raise TypeError(f"unknown COCO write option(s): {', '.join(sorted(options))}")
    dest = Path(dest)
    by_id = dataset.record_by_id()
    groups = _write_groups(dataset)
    root = Path(dataset.root) if dataset.root is not None else None
    categories, coco_info, licenses, top_level = _file_header(dataset, info)
    has_kp = any(r.instances.keypoints is not None for r in dataset.records)
    has_captions = any(r.captions for r in dataset.records)
    has_objects = any(len(r.instances) for r in dataset.records)
    write_instances = has_objects or bool(categories) or not has_captions
    any_difficult = bool(dataset.records) and bool(
        np.concatenate([r.instances.difficult for r in dataset.records]).any())
    kp_k = max((r.instances.keypoints.shape[1] for r in dataset.records if r.instances.keypoints is not None),
               default=0)
    lost = _write_losses(dataset)
    files: list[str] = []
    written_images: set[str] = set()
    written_objects: set[tuple[str, int]] = set()
    renumbered: set[str] = set()  # records whose source image id could not be written
    renumbered_anns: set[tuple[str, int]] = set()  # (record id, object) whose annotation id could not
    task = "person_keypoints" if has_kp else "instances"
    with gc_paused():  # tens of thousands of acyclic dicts: see gc_paused
        split_recs = {split: [by_id[i] for i in rec_ids if i in by_id] for split, rec_ids in groups.items()}
        # Ids the same in every split file when possible (trainval = train + val in VOC): each
        # record's image entry and annotation dicts are then built once and shared by the files.
        shared = _shared_ids(split_recs)
        if shared is not None:
            written, shared_img_ids, shared_ann_ids = shared
            _count_renumbered(written, shared_ann_ids, renumbered_anns)
            img_id_of = {r.id: iid for r, iid in zip(written, shared_img_ids)}
            entry_of: dict[str, dict[str, Any]] = {}
            shared_anns = _shared_annotations(split_recs, written, shared_img_ids, shared_ann_ids, any_difficult,
                                              has_kp, kp_k, compress_rle) if write_instances else {}
        for split, recs in split_recs.items():
            names = _unique_names(recs)
            if shared is not None:
                img_ids = [img_id_of[r.id] for r in recs]
                image_entries = _shared_image_entries(recs, names, img_ids, entry_of)
            else:
                img_ids = _image_ids(recs)
                image_entries = [_image_entry(r, iid, name) for r, name, iid in zip(recs, names, img_ids)]
            renumbered.update(r.id for r, iid in zip(recs, img_ids) if r.source_id is not None and iid != r.source_id)
            if images != "none":
                _place_split_images(recs, names, split, root, dest, images, progress)
            if write_instances:
                if shared is not None:
                    anns = _split_annotations(shared_anns, recs)
                else:
                    ids = [r.instances.ids for r in recs]
                    ann_ids = _ann_ids(np.concatenate(ids)) if ids else []
                    _count_renumbered(recs, ann_ids, renumbered_anns)
                    anns = _annotations(recs, img_ids, ann_ids, any_difficult, has_kp, kp_k, compress_rle)
                written_objects.update((r.id, len(r.instances)) for r in recs)
                doc = {"info": coco_info, "licenses": licenses, **top_level, "images": image_entries,
                       "annotations": anns, "categories": categories}
                files.append(_write_json(dest, f"annotations/{task}_{split}.json", doc))
            if has_captions:
                # no 'categories' key: pycocotools indexes category_id of every annotation when it is
                # present, and captions have none (the real captions_*.json has no 'categories' either)
                doc = {"info": coco_info, "licenses": licenses, "images": image_entries,
                       "annotations": _caption_entries(recs, img_ids)}
                files.append(_write_json(dest, f"annotations/captions_{split}.json", doc))
            written_images.update(r.id for r in recs)
        # dropped inside the pause: the collection as it ends would otherwise scan every dict written
        doc = anns = image_entries = shared_anns = entry_of = None
    # each image and object once, though an image in several splits is in several files
    n_images, n_objects = len(written_images), sum(n for _, n in written_objects)
    lost["source image ids (COCO's are unique ints >= 0; numbered 1..N)"] = len(renumbered)
    lost["annotation ids (COCO's are unique over the dataset and >= 1; numbered 1..N)"] = len(renumbered_anns)
    return {"images": n_images, "objects": n_objects, "lost": {k: v for k, v in lost.items() if v},
            "files": files}


def _write_groups(dataset: Dataset) -> dict[str, list[str]]:
    """Record ids per split file: the dataset's splits, ``all`` without any, records in none as ``default``."""
    groups = dataset.splits or {"all": [r.id for r in dataset.records]}
    in_a_split = {i for ids in groups.values() for i in ids}
    unsplit = [r.id for r in dataset.records if r.id not in in_a_split]
    if unsplit:  # e.g. a VOC XML no ImageSets/Main list names: written, not dropped
        name = next(n for n in ("default", "unsplit", "unassigned") if n not in groups)
        groups = {**groups, name: unsplit}
        log.warning("%d image(s) in no split (e.g. %s) are written as split %r", len(unsplit), unsplit[0], name)
    return groups


def _file_header(dataset: Dataset, info: Mapping[str, Any] | None
                 ) -> tuple[list[dict[str, Any]], dict[str, Any], list, dict[str, Any]]:
    """``(categories, info, licenses, other top-level keys)`` of every file written."""
    categories = [{"id": int(c.id), "name": c.name, "supercategory": c.supercategory or "",
                   **{k: v for k, v in c.extra.items() if k not in ("id", "name", "supercategory")}}
                  for c in dataset.categories]
    src_info = dataset.info.get("info")
    coco_info = dict(info) if info is not None else (dict(src_info) if isinstance(src_info, dict) else {
        "description": f"written by dsprep from {dataset.format or 'records'}", "url": "", "version": "1.0",
        "year": "", "contributor": "", "date_created": ""})
    licenses = dataset.info.get("licenses")
    licenses = licenses if isinstance(licenses, list) else []
    top_level = dataset.info.get("top_level") if isinstance(dataset.info.get("top_level"), dict) else {}
    top_level = {k: v for k, v in top_level.items() if k not in ("info", "licenses", "images", "annotations",
                                                                "categories")}
    return categories, coco_info, licenses, top_level


def _write_losses(dataset: Dataset) -> dict[str, int]:
    """What COCO cannot hold, counted before writing (the ids renumbered are added after)."""
    lost = {"image-level labels": sum(r.label is not None for r in dataset.records),
            "semantic mask PNGs (mask_path)": sum(r.mask_path is not None for r in dataset.records),
            # an image field of the source named like one of COCO's own (LVIS v0.5's 2014 file_name)
            "image fields named like COCO's (file_name, id, width, height)": sum(
                not r.extra.keys().isdisjoint(_IMAGE_KEYS) for r in dataset.records if r.extra),
            # an instance mask PNG is carried when its objects hold their masks (VOC parsed with
            # segmentation=True, as convert does); only records whose objects have none lose it
            "instance mask PNGs (instance_mask_path)": sum(
                r.instance_mask_path is not None and not (
                    r.instances.segmentation is not None and len(r.instances)
                    and all(s is not None for s in r.instances.segmentation))
                for r in dataset.records)}
    lost["files named by image fields (Cityscapes color, polygons...: not carried)"] = sum(
        is_file_field(k, v) for r in dataset.records for k, v in r.extra.items())
    return lost


def _shared_annotations(split_recs: Mapping[str, list[Record]], written: list[Record], img_ids: list[int],
                        ann_ids: list[int], any_difficult: bool, has_kp: bool, kp_k: int, compress_rle: bool
                        ) -> list[dict[str, Any]] | dict[str, bytes]:
    """The annotations of every record, built once for all the files it is in: the list of
    dicts itself when one file holds every record once (one split, the common case: no
    per-record serialising), else each record's as JSON text (without brackets) by record id,
    for :func:`_split_annotations` to join per file."""
    all_anns = _annotations(written, img_ids, ann_ids, any_difficult, has_kp, kp_k, compress_rle)
    if len(split_recs) == 1 and len(written) == len(next(iter(split_recs.values()))):
        return all_anns
    ann_json: dict[str, bytes] = {}
    a = 0
    for r in written:
        b = a + r.instances.boxes.shape[0]
        if b > a:
            ann_json[r.id] = json_bytes(all_anns[a:b], f"{r.id}: annotations")[1:-1]
        a = b
    return ann_json


def _split_annotations(shared: list[dict[str, Any]] | dict[str, bytes], recs: list[Record]) -> Any:
    """One split file's ``annotations`` from :func:`_shared_annotations`."""
    if isinstance(shared, list):
        return shared
    import orjson

    return orjson.Fragment(b"[" + b",".join(shared[r.id] for r in recs if r.id in shared) + b"]")


def _shared_image_entries(recs: list[Record], names: list[str], img_ids: list[int],
                          entry_of: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The split's image entries, each record's built once (``entry_of``) for all the files it is in."""
    image_entries = []
    for r, name, iid in zip(recs, names, img_ids):
        entry = entry_of.get(r.id)
        if entry is None:
            entry = entry_of[r.id] = _image_entry(r, iid, name)
        elif entry["file_name"] != name:  # a basename unique in one split, not another
            entry = {**entry, "file_name": name}
        image_entries.append(entry)
    return image_entries


def _place_split_images(recs: list[Record], names: list[str], split: str, root: Path | None, dest: Path,
                        images: str, progress: bool | None) -> None:
    """Place the split's image files as ``dest/<split>/<file_name>``."""
    for r, name in _progress(list(zip(recs, names)), total=len(recs), desc=f"images {split}", enabled=progress):
        src = (root / r.path) if root is not None else Path(r.path)
        if not place_image(src, dest, f"{split}/{name}", images):
            raise MissingFileError(str(src), f"image file of record {r.id!r} not found (needed to "
                                             f"place it as {split}/{name}; use --images none "
                                             "(images='none' in Python) to write annotations only)")


def _caption_entries(recs: list[Record], img_ids: list[int]) -> list[dict[str, Any]]:
    """The split's caption annotations; source caption ids kept when all are valid and unique."""
    caps = []
    for r, iid in zip(recs, img_ids):
        cids = r.extra.get("caption_ids")
        for j, text in enumerate(r.captions):
            cid = cids[j] if isinstance(cids, list) and len(cids) == len(r.captions) else None
            caps.append({"id": cid, "image_id": iid, "caption": text})
    ids = [c["id"] for c in caps]
    if not (all(isinstance(i, int) and i >= 1 for i in ids) and len(set(ids)) == len(ids)):
        for k, c in enumerate(caps, 1):
            c["id"] = k
    return caps


def _write_json(dest: Path, rel: str, doc: dict[str, Any]) -> str:
    """Write ``doc`` as ``dest/rel``; returns ``rel``."""
    out = output_path(dest, rel, what="annotation file")
    out.write_bytes(json_bytes(doc, f"{rel}: "))
    return out.relative_to(dest).as_posix()


_IMAGE_RESERVED = frozenset(_IMAGE_KEYS) | _INTERNAL_IMAGE_EXTRA
