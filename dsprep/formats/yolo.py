"""Ultralytics YOLO: the dataset YAML with ``images/<split>`` and ``labels/<split>`` text rows.

Spec: Ultralytics' own code is the reference (``ultralytics/data/utils.py``:
``check_det_dataset``, ``img2label_paths``, ``verify_image_label``;
``ultralytics/data/base.py``: ``get_img_files``); facts in ``docs/formats/yolo.md``.
The tree (``root`` is the YAML's folder, or its ``path:`` key)::

    data.yaml                  path, train/val/test, names (list or {id: name}), kpt_shape, flip_idx
    images/train/a.jpg         each split: a folder (searched recursively), a list of folders,
    labels/train/a.txt         or a .txt file listing images; the label of an image is its path
                               with the last ``/images/`` made ``/labels/`` and the extension ``.txt``

One row per object, every coordinate normalised by the image's width or height:

- detect: ``class cx cy w h`` (box centre and size);
- segment: ``class x1 y1 x2 y2 ...`` (one polygon; the box is its extent);
- pose (the YAML has ``kpt_shape: [K, D]``): ``class cx cy w h`` then K x (``x y`` [``v``]).

Records hold absolute pixels: ``x1 = W * (cx - w / 2)``, ``x2 = W * (cx + w / 2)``
(Ultralytics' ``xywhn2xyxy``), polygon points ``x * W``. The image size comes from
the image header (no decode, EXIF-aware, in the worker pool). An image without a
label file, or with an empty one, is an image without objects. Category ids are
YOLO's class indices 0..C-1. Classification trees (``train/<class>/*.jpg``)
read as Ultralytics' ``ClassificationDataset`` reads them (torchvision ``ImageFolder``).

:func:`write` writes ``data.yaml``, ``labels/<split>/*.txt`` with the shortest decimals
that give back each record's box at its image size, and places the images.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._checks import check_utf8_name, fit_name, read_utf8
from .._paths import confine, escapes, output_path
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError, MalformedFileError,
                      MissingFileError, check_choice)
from ..records import (Category, Dataset, Instances, Record, box_extents, decimal_sum, make_ids_distinct,
                       record_id_from_path)

__all__ = ["NAME", "DESCRIPTION", "CATEGORY_IDS", "IMAGE_EXTENSIONS", "TASKS", "detect", "label_path", "parse",
           "write"]

log = logging.getLogger(__name__)

NAME = "yolo"
DESCRIPTION = "Ultralytics YOLO (dataset YAML, images/<split> + labels/<split> rows: detect, segment, pose)"
# YOLO's class indices are 0..C-1 in category order: dsprep.convert renumbers to them (and writes
# category_map.json with the source ids) whatever --category-ids says, unless it says contiguous0.
CATEGORY_IDS = "contiguous0"
# What write() keeps of any dataset (dsprep.formats.FIELDS once the round-trip matrix lands; docs/formats/yolo.md):
# file names, splits (folders, lists of folders, .txt lists), every object, boxes to the last decimal,
# category names, keypoints (pose, the default when the records have any). Not held, counted lost:
# category ids (0..C-1; category_map.json), supercategories, crowd, difficult, masks (under pose, or
# traced from RLE), image labels (unless --task classify), annotation and image ids.
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "categories", "keypoints"})
TASKS = ("detect", "segment", "pose", "classify")
# ultralytics/data/utils.py IMG_FORMATS (8.4): the extensions listed as images, in any case.
IMAGE_EXTENSIONS = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif",
                              "tiff", "webp"})
TOLERANCE = 0.01  # verify_image_label: coordinates in [-0.01, 1.01] ("with 1% tolerance")
SPLIT_KEYS = ("train", "val", "test", "minival")
_YAML_KEYS = ("path", "train", "val", "test", "minival", "names", "nc", "kpt_shape", "flip_idx", "kpt_names",
              "dsprep_val_is_train",
              "dsprep_splits")
YAML_FILE = "data.yaml"
CATEGORY_MAP_FILE = "category_map.json"  # written beside the output by dsprep convert (dsprep.conversion)


# --------------------------------------------------------------------------- YAML

def _yaml_candidates(folder: Path) -> list[Path]:
    """``*.yaml`` at the folder's top (``*.yml`` only when there is none), as Ultralytics'
    ``find_dataset_yaml`` looks first; several: those named after the folder."""
    try:
        files = sorted(folder.glob("*.yaml")) or sorted(folder.glob("*.yml"))
    except OSError:
        return []
    files = [f for f in files if f.is_file()]
    if len(files) > 1:
        files = [f for f in files if f.stem == folder.name] or files
    return files


def _find_yaml(path: Path) -> Path | None:
    """The dataset YAML: ``path`` itself, or the one at the top of the folder ``path``."""
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    files = _yaml_candidates(path)
    if len(files) > 1:
        raise DatasetNotFoundError(f"{path}: holds several dataset YAMLs ({', '.join(f.name for f in files)}); "
                                   "pass the one to read as the root")
    return files[0] if files else None


def _read_yaml(path: Path) -> dict:
    """The YAML as a dict (``yaml.safe_load``: no Python objects are built from tags).

    Raises:
        MalformedFileError: not UTF-8, not YAML, or not a mapping at the top.
    """
    import yaml

    text = read_utf8(path, path.name)
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MalformedFileError(f"{path.name}{line}", f"not valid YAML ({err.problem or err.context}); expected a "
                                                       "dataset YAML (path, train, val, names)") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise MalformedFileError(path.name, f"not valid YAML ({err})"[:300]) from None
    if not isinstance(doc, dict):
        raise MalformedFileError(path.name, f"expected a mapping (path, train, val, names) at the top, found "
                                            f"{type(doc).__name__}")
    return doc


def _class_names(doc: Mapping, where: str) -> list[str]:
    """``names`` (a list, or ``{index: name}`` covering 0..n-1) or ``nc`` (names ``class_<i>``), as
    Ultralytics' ``check_det_dataset`` and ``check_class_names`` read them."""
    names, nc = doc.get("names"), doc.get("nc")
    if names is None and nc is None:
        raise InvalidAnnotationError(where, "no 'names' (or 'nc'); expected names: [a, b] or names: {0: a, 1: b} "
                                            "(fix: add the class names)")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, (int, float, str)) or not _is_int(nc)):
        raise InvalidAnnotationError(where, f"'nc: {nc!r}' must be an integer (the number of classes)"[:300])
    if names is None:
        return [f"class_{i}" for i in range(int(float(nc)))]
    if isinstance(names, list):
        out = [str(v) for v in names]
    elif isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items() if not isinstance(k, bool)}
        except (TypeError, ValueError):
            keyed = {}
        if len(keyed) != len(names) or sorted(keyed) != list(range(len(names))):
            keys = ", ".join(map(repr, list(names)[:8]))
            raise InvalidAnnotationError(where, f"'names' keys must be the class indices 0..{len(names) - 1}, "
                                                f"found {keys}; expected names: {{0: a, 1: b, ...}}")
        out = [keyed[i] for i in range(len(keyed))]
    else:
        raise InvalidAnnotationError(where, f"'names' must be a list or a {{index: name}} mapping, found "
                                            f"{type(names).__name__}")
    if not out:
        raise InvalidAnnotationError(where, "'names' is empty; expected at least one class name")
    if nc is not None and int(float(nc)) != len(out):
        raise InvalidAnnotationError(where, f"'names' has {len(out)} entries but 'nc: {nc}'; expected them to match")
    return out


def _is_int(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f == int(f) and 0 <= f < 2 ** 31


def _kpt_shape(doc: Mapping, where: str) -> tuple[int, int] | None:
    shape = doc.get("kpt_shape")
    if shape is None:
        return None
    if (not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in shape)
            or not 1 <= shape[0] <= 10_000 or shape[1] not in (2, 3)):
        raise InvalidAnnotationError(where, f"'kpt_shape: {shape!r}' must be [K, 2] or [K, 3] (K keypoints, with "
                                            "or without visibility)"[:300])
    flip = doc.get("flip_idx")
    if flip is not None and (not isinstance(flip, list) or sorted(flip) != list(range(shape[0]))):
        raise InvalidAnnotationError(where, f"'flip_idx' must be a permutation of 0..{shape[0] - 1} (one per "
                                            f"keypoint), found {str(flip)[:80]}")
    return shape[0], shape[1]


# --------------------------------------------------------------------------- layout

def _dataset_root(yaml_path: Path, doc: Mapping, allow_outside: bool) -> Path:
    """The folder split paths are relative to: ``path:`` relative to the YAML's folder, else that folder.

    Ultralytics resolves a relative ``path`` against the working directory, then its
    ``datasets_dir`` setting; neither depends on the dataset, so here a relative
    ``path`` is read against the YAML's folder and, where that is no folder (the
    ``path: coco8`` of a YAML that sits inside ``coco8/``), the YAML's folder is the root.
    """
    base = yaml_path.parent
    p = doc.get("path")
    if p is None or p == "":
        return base
    if not isinstance(p, str):
        raise InvalidAnnotationError(yaml_path.name, f"'path' must be text (a folder), found {type(p).__name__}")
    p = _absolute_inside(base, p)
    rel = confine(base, p, where=f"{yaml_path.name}: path", what="path", allow_outside=allow_outside)
    root = base / rel if not os.path.isabs(rel) else Path(rel)
    return root if _is_a(root, "dir") else base


def _is_a(path: Path, kind: str) -> bool:
    """``path.exists()`` / ``is_dir()`` / ``is_file()`` for a path named in the dataset: False, not
    an OSError, for a name the OS refuses (too long, or a component that is a file)."""
    try:
        return path.exists() if kind == "any" else path.is_dir() if kind == "dir" else path.is_file()
    except OSError:
        return False


def _absolute_inside(base: Path, p: str) -> str:
    """An absolute ``p`` that is ``base`` or lies inside it, made relative to it (``.`` for
    ``base``: the ``path: /data/coco8`` of a YAML inside ``/data/coco8``); else ``p`` as it is."""
    if not os.path.isabs(p):
        return p
    rp, rb = os.path.realpath(p), os.path.realpath(base)
    if rp == rb or rp.startswith(rb.rstrip(os.sep) + os.sep):
        return os.path.relpath(rp, rb).replace(os.sep, "/")
    return p


def _split_entries(root: Path, doc: Mapping, key: str, where: str, allow_outside: bool) -> list[str]:
    """The paths (relative to ``root``) a split key names: folders or ``.txt`` image lists.

    A ``../x`` that leaves the root is read as ``x`` when that exists, as Ultralytics
    retries it (Roboflow's ``train: ../train/images``).
    """
    value = doc.get(key)
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidAnnotationError(where, f"'{key}' must be a path or a list of paths (folders or .txt "
                                            f"image lists), found {str(value)[:80]!r}")
    out = []
    for v in values:
        if isinstance(value, str) and v.startswith("../") and escapes(v) and _is_a(root / v[3:], "any"):
            v = v[3:]
        v = _absolute_inside(root, v)
        rel = confine(root, v, where=f"{where}: {key}", what=f"'{key}' path", allow_outside=allow_outside)
        if not _is_a(root / rel, "any"):
            raise MissingFileError(f"{where}: {key}", f"{v!r} resolves to {root / rel}, which does not exist; "
                                                      "expected a folder of images or a .txt list of them")
        out.append(rel)
    return out


def _is_image(name: str) -> bool:
    return name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS and "." in name


def _list_folder(root: Path, rel: str) -> list[str]:
    """Images under ``root/rel`` (recursively; dot files and folders skipped, as ``glob`` does)."""
    out = []
    stack = [rel.rstrip("/")]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(root / d) as it:
                entries = list(it)
        except OSError as err:
            raise MalformedFileError(d, f"cannot list this folder ({err.strerror or err})") from None
        for e in entries:
            if e.name[0] == ".":
                continue
            r = f"{d}/{e.name}" if d not in ("", ".") else e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if is_dir:
                stack.append(r)
            elif _is_image(e.name):
                out.append(r)
    return out


def _list_file(root: Path, rel: str, allow_outside: bool) -> list[str]:
    """Images of a ``.txt`` list: one path a line, relative to the list's folder (``./x`` or ``x``),
    or absolute inside the dataset folder; each must stay inside the dataset folder.

    Darknet lists (CVAT's "YOLO 1.1" export: ``data/train.txt`` saying ``data/obj_train_data/a.jpg``)
    are relative to Darknet's working folder, the dataset root: when the list's first plain line
    is no file beside the list but is one under the root, the list's plain lines are read from
    the root (Ultralytics reads plain lines from its working directory)."""
    folder = posixpath.dirname(rel)
    prefix = f"{folder}/" if folder else ""
    base = os.path.realpath(root) + os.sep
    out = []
    lines = read_utf8(root / rel, rel).splitlines()
    plain = next((ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("./")
                  and not os.path.isabs(ln.strip())), None)
    prefix_plain = prefix
    if prefix and plain is not None and not escapes(plain) and not _is_a(root / folder / plain, "file") \
            and _is_a(root / plain, "file"):
        prefix_plain = ""
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if os.path.isabs(line) and os.path.realpath(line).startswith(base):
            item = os.path.relpath(os.path.realpath(line), base[:-1]).replace(os.sep, "/")
        elif line.startswith("./"):
            item = prefix + line[2:]
        else:
            item = prefix_plain + line
        if _is_image(item):
            out.append(confine(root, item, where=f"{rel}:{n}", what="image path", allow_outside=allow_outside))
    return out


def label_path(image_rel: str) -> str:
    """The label file of an image (paths relative to the dataset root), by Ultralytics'
    ``img2label_paths``: the last ``/images/`` becomes ``/labels/``, the extension ``.txt``.

    Example:
        >>> label_path("images/train/a.jpg"), label_path("train/images/a.b.png"), label_path("x/a.jpg")
        ('labels/train/a.txt', 'train/labels/a.b.txt', 'x/a.txt')
    """
    p = "/" + image_rel
    head, sep, tail = p.rpartition("/images/")
    if sep:
        p = f"{head}/labels/{tail}"
    return p[1:].rsplit(".", 1)[0] + ".txt"


# --------------------------------------------------------------------------- label rows

class _Rows:
    """The objects of one chunk of images, as flat columns (sent back from a worker in one piece)."""

    def __init__(self, kpt: tuple[int, int] | None):
        self.kpt = kpt
        self.rel: list[str] = []
        self.w: list[int] = []
        self.h: list[int] = []
        self.count: list[int] = []
        self.flat: list[str] = []        # box and pose rows, ncol tokens each
        self.polys: list = []            # per image: None, or per object its normalised polygon
        self.poly_cls: list[str] = []
        self.missing = self.empty = 0


def _row_error(where: str, line: int, message: str) -> InvalidAnnotationError:
    return InvalidAnnotationError(f"{where}:{line}", message)


def _lines(text: str) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of each non-blank line."""
    return [(n, t) for n, t in enumerate((ln.split() for ln in text.splitlines()), 1) if t]


def _read_label(rows: _Rows, text: str, where: str, ncol: int) -> None:
    """Append one label file's rows to ``rows`` (the image was appended before); errors name the line."""
    toks = [ln.split() for ln in text.splitlines()]
    if ncol != 5 or set(map(len, toks)) != {5}:  # not the plain detect file (5 columns every line)
        numbered = _lines(text)
        lens = {len(t) for _, t in numbered}
        if not numbered:
            rows.polys.append(None)
            rows.count.append(0)
            rows.empty += 1
            return
        if ncol != 5 or lens == {5}:
            for n, t in numbered:
                if len(t) != ncol:
                    what = f"pose rows (kpt_shape in the YAML): class cx cy w h + keypoints = {ncol}" \
                        if ncol != 5 else "5 (class cx cy w h)"
                    raise _row_error(where, n, f"{len(t)} columns; expected {what}")
            toks = [t for _, t in numbered]
        else:
            _read_polygons(rows, numbered, where)
            return
    rows.polys.append(None)
    rows.count.append(len(toks))
    for t in toks:
        rows.flat += t


def _read_polygons(rows: _Rows, numbered: list[tuple[int, list[str]]], where: str) -> None:
    polys = []
    for n, t in numbered:
        if len(t) == 5:
            raise _row_error(where, n, "a detection row (5 columns) in a file of polygon rows; Ultralytics "
                                       "refuses files that mix them (fix: one kind of row per dataset)")
        if len(t) < 7 or len(t) % 2 == 0:
            raise _row_error(where, n, f"{len(t)} columns; expected 5 (class cx cy w h) or an odd number >= 7 "
                                       "(class x1 y1 x2 y2 x3 y3 ...: a polygon of 3 or more points)")
        rows.poly_cls.append(t[0])
        polys.append((n, t[1:]))
    rows.polys.append(polys)
    rows.count.append(len(polys))


def _floats(tokens: Sequence[str], where: str) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        for t in tokens:
            try:
                float(t)
            except ValueError:
                raise InvalidAnnotationError(where, f"{t[:40]!r} is not a number; expected numbers "
                                                    "(class index, then normalised coordinates)") from None
        raise


def _check_values(arr: np.ndarray, ncls: int, kpt: tuple[int, int] | None, boxes: bool) -> np.ndarray:
    """Per row, the first problem's message index (-1: none): columns are class, then
    normalised values (box: cx cy w h [+ keypoints]; polygon rows are checked one by one)."""
    m = len(arr)
    bad = np.full(m, -1, np.int64)
    cls = arr[:, 0]
    coords = arr[:, 1:]
    if kpt is not None and kpt[1] == 3:
        vis = np.zeros(coords.shape[1], bool)
        vis[4 + 2::3] = True
        xy = coords[:, ~vis]
    else:
        xy = coords
    checks = [
        ~np.isfinite(arr).all(axis=1),                                         # 0: NaN / inf
        (cls != np.floor(cls)) | (cls < 0) | (cls >= ncls),                    # 1: class index
        ((xy < -TOLERANCE) | (xy > 1 + TOLERANCE)).any(axis=1),                # 2: outside [0, 1]
        (coords[:, 2:4] < 0).any(axis=1) if boxes else np.zeros(m, bool),      # 3: negative size
    ]
    for k in range(len(checks) - 1, -1, -1):
        bad[checks[k]] = k
    return bad


def _value_message(k: int, row: np.ndarray, ncls: int) -> str:
    if k == 0:
        return f"a value is not finite ({row.tolist()[:12]}); expected finite numbers"
    if k == 1:
        return f"class {row[0]:g} is not a class index; expected an integer 0..{ncls - 1} (the YAML names {ncls})"
    if k == 2:
        vals = row[1:]
        out = vals[(vals < -TOLERANCE) | (vals > 1 + TOLERANCE)]
        return (f"coordinate {out[0]:g} lies outside [0, 1] (tolerance {TOLERANCE}); expected values normalised by "
                "the image size (fix: divide pixel coordinates by the width / height)")
    return f"negative box size (w={row[3]:g}, h={row[4]:g}); expected w, h >= 0"


def _checked_rows(rows: _Rows, ncls: int, policy: ErrorPolicy, root: Path, label_of: Mapping[str, str]
                  ) -> tuple[np.ndarray, list[int]]:
    """The chunk's box/pose rows as an ``(M, ncol)`` array with bad rows dropped (each through
    ``policy``, naming the file and line), and the per-image counts after the drop."""
    kpt = rows.kpt
    ncol = 5 + (kpt[0] * kpt[1] if kpt else 0)
    counts = [c if p is None else 0 for c, p in zip(rows.count, rows.polys)]
    arr = _floats(rows.flat, "labels").reshape(-1, ncol) if rows.flat else np.zeros((0, ncol))
    bad = _check_values(arr, ncls, kpt, True)
    if (bad < 0).all():
        return arr, counts
    owner = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum([0] + counts)
    for i in np.flatnonzero(bad >= 0).tolist():
        img = int(owner[i])
        lab = label_of[rows.rel[img]]
        k = i - int(start[img])
        line = _lines(read_utf8(root / lab, lab))[k][0]
        policy.handle(_row_error(lab, line, _value_message(int(bad[i]), arr[i], ncls)))
        counts[img] -= 1
    return arr[bad < 0], counts


def _snap(v: np.ndarray, size: np.ndarray | float) -> np.ndarray:
    """``v`` (pixels computed from normalised text) as the double nearest to the exact decimal
    product, where that is within rounding error of ``v``.

    ``10 * (0.3 - 0.2 / 2)`` is 1.9999999999999998 in floating point and 2 in decimal. A row
    of d decimals times an integer image size has at most d + 1 decimals, so rounding to D
    decimals (D = 11 or 12 for sizes up to 10,000 px: as many as keep ``v * 10**D`` an exact
    integer in a double) within a few ulps of the size gives that product exactly, for rows
    written with up to D - 1 decimals. Values with no such decimal stay as computed.
    """
    v = np.asarray(v, np.float64)
    # Per element, from that value's own image size only: the same row reads the same
    # whichever images share its chunk.
    scale = np.maximum(np.abs(np.asarray(size, np.float64)), 1.0) * (1 + 2 * TOLERANCE)
    p = 10.0 ** np.clip(np.floor(np.log10(2.0 ** 52 / scale)), 0, 15)
    with np.errstate(over="ignore", invalid="ignore"):  # a value far past its image: inf here, kept as computed
        cand = np.round(v * p) / p
    return np.where(np.abs(cand - v) <= 8 * np.spacing(scale), cand, v)


def _to_pixels(arr: np.ndarray, w: np.ndarray, h: np.ndarray, kpt: tuple[int, int] | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes ``(M, 4)`` xyxy and keypoints ``(M, K, 3)`` in pixels from normalised rows."""
    cx, cy, bw, bh = arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4]
    # ultralytics.utils.ops.xywhn2xyxy's x1 = W * (cx - w / 2); x2 as x1 + W * w (COCO's x + w), each
    # product snapped to its exact decimal (_snap): within 1e-12 px of Ultralytics' x2 = W * (cx + w / 2).
    x1, y1 = _snap(w * (cx - bw / 2), w), _snap(h * (cy - bh / 2), h)
    # x2 as the decimal sum (records.decimal_sum, as COCO's reader adds x + w): 58.04 + 38.67 is 96.71
    boxes = np.stack([x1, y1, decimal_sum(x1, _snap(w * bw, w)), decimal_sum(y1, _snap(h * bh, h))], axis=1)
    if kpt is None:
        return boxes, None
    k, d = kpt
    pts = arr[:, 5:].reshape(-1, k, d)
    out = np.empty((len(arr), k, 3))
    out[..., 0] = _snap(pts[..., 0] * w[:, None], w[:, None])
    out[..., 1] = _snap(pts[..., 1] * h[:, None], h[:, None])
    if d == 3:
        out[..., 2] = pts[..., 2]
    else:  # no visibility column: labelled where the point is inside (Ultralytics masks x < 0 or y < 0)
        out[..., 2] = np.where((pts[..., 0] < 0) | (pts[..., 1] < 0), 0.0, 2.0)
    return boxes, out


def _polygon_objects(rows: _Rows, img: int, w: int, h: int, ncls: int, policy: ErrorPolicy, where: str,
                     cls_at: int) -> tuple[list, list, list]:
    """(labels, boxes, segmentations) of one image's polygon rows, bad rows through ``policy``."""
    labels, boxes, segs = [], [], []
    for j, (n, toks) in enumerate(rows.polys[img]):
        try:
            vals = _floats([rows.poly_cls[cls_at + j]] + toks, f"{where}:{n}")
            k = int(_check_values(vals[None, :], ncls, None, False)[0])
            if k >= 0:
                raise _row_error(where, n, _value_message(k, vals, ncls))
        except FormatError as err:
            policy.handle(err)
            continue
        xy = _snap(vals[1:].reshape(-1, 2) * (w, h), np.array([w, h], np.float64))
        labels.append(int(vals[0]))
        boxes.append([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
        segs.append([xy.ravel().tolist()])
    return labels, boxes, segs


def _read_chunk(items: Sequence[tuple[str, str]], *, root: str, ncls: int, kpt: tuple[int, int] | None,
                mode: str) -> dict[str, Any]:
    """Worker: each ``(image, label)`` pair's header size and rows, as flat per-chunk arrays."""
    with _io.gc_paused():
        policy = ErrorPolicy(mode)
        rootp = Path(root)
        base = root + os.sep
        rows = _Rows(kpt)
        ncol = 5 + (kpt[0] * kpt[1] if kpt else 0)
        label_of = dict(items)
        for rel, lab in items:
            try:
                check_utf8_name(rel, rel)
                w, h = _io.image_size(base + rel)
                try:
                    data = _io.read_bytes(base + lab)
                except FileNotFoundError:
                    data = None
                except OSError as err:
                    raise MalformedFileError(lab, f"cannot read ({err.strerror or err})") from None
                n_before = len(rows.flat)
                if data is None:
                    rows.polys.append(None)
                    rows.count.append(0)
                    rows.missing += 1
                else:
                    try:
                        text = (data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode()
                    except UnicodeDecodeError:
                        text = read_utf8(rootp / lab, lab)  # raises, naming the line and the bytes
                    try:
                        _read_label(rows, text, lab, ncol)
                    except FormatError:
                        del rows.flat[n_before:]
                        raise
            except FormatError as err:
                policy.handle(err)
                continue
            rows.rel.append(rel)
            rows.w.append(w)
            rows.h.append(h)
        return _chunk_objects(rows, ncls, policy, rootp, label_of)


def _chunk_objects(rows: _Rows, ncls: int, policy: ErrorPolicy, root: Path, label_of: Mapping[str, str]
                   ) -> dict[str, Any]:
    """The chunk's objects in pixels: boxes, labels, per-image segmentations, keypoints."""
    arr, box_counts = _checked_rows(rows, ncls, policy, root, label_of)
    w = np.repeat(np.array(rows.w, np.float64), box_counts)
    h = np.repeat(np.array(rows.h, np.float64), box_counts)
    boxes, kps = _to_pixels(arr, w, h, rows.kpt)
    labels = arr[:, 0].astype(np.int64)
    if not any(p is not None for p in rows.polys):
        return {"rel": rows.rel, "w": rows.w, "h": rows.h, "count": box_counts, "boxes": boxes, "labels": labels,
                "segm": None, "keypoints": kps, "policy": policy, "missing": rows.missing, "empty": rows.empty}
    # Polygon files: the objects of each image in file order, box rows and polygon rows merged.
    out_boxes, out_labels, segm, counts = [], [], [], []
    a = cls_at = 0
    for img, polys in enumerate(rows.polys):
        if polys is None:
            b = a + box_counts[img]
            out_boxes.append(boxes[a:b])
            out_labels.append(labels[a:b])
            segm.append(None)
            counts.append(b - a)
            a = b
            continue
        lab, bx, sg = _polygon_objects(rows, img, rows.w[img], rows.h[img], ncls, policy, label_of[rows.rel[img]],
                                       cls_at)
        cls_at += len(polys)
        out_boxes.append(np.array(bx, np.float64).reshape(-1, 4))
        out_labels.append(np.array(lab, np.int64))
        segm.append(sg)
        counts.append(len(lab))
    return {"rel": rows.rel, "w": rows.w, "h": rows.h, "count": counts,
            "boxes": np.concatenate(out_boxes) if out_boxes else np.zeros((0, 4)),
            "labels": np.concatenate(out_labels) if out_labels else np.zeros(0, np.int64),
            "segm": segm, "keypoints": None, "policy": policy, "missing": rows.missing, "empty": rows.empty}


# --------------------------------------------------------------------------- detect / parse

def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a YOLO dataset: a dataset YAML (``train:`` and ``names``/``nc``), or a
    folder with one at its top. A bare ``train/<class>/`` tree is left to ``imagenet``
    (``parse`` reads it as a classification tree when asked by name).
    """
    p = Path(path)
    try:
        files = [p] if p.is_file() else _yaml_candidates(p) if p.is_dir() else []
        for f in files[:3]:
            if f.suffix.lower() in (".yaml", ".yml") and f.stat().st_size < 1 << 20:
                text = f.read_text(encoding="utf-8", errors="replace")
                keys = {ln.split(":", 1)[0].strip() for ln in text.splitlines() if ":" in ln and ln[:1] not in " #-"}
                if "train" in keys and ("names" in keys or "nc" in keys):
                    return True
    except OSError:
        return False
    return False


def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise", workers: int | None = None,
          progress: bool | None = None, allow_outside_root: bool = False) -> Dataset:
    """Parse an Ultralytics YOLO dataset (detect, segment or pose; or a classification tree).

    Args:
        path: the dataset YAML, or a folder with one at its top; a folder without
            one that holds ``train/<class>/`` image folders is read as a classification tree.
        split: only this split (a key of the YAML: ``train``, ``val``, ``test``, ``minival``).
        on_error: ``"raise"`` (the first bad row or file stops the parse) or ``"warn"``
            (bad rows and unreadable images skipped, one summary line).
        workers: processes reading image headers and label files (default: all cores).
        progress: show a progress bar (default: when stderr is a terminal).
        allow_outside_root: let ``path``/split entries and list lines leave the dataset folder.

    Returns:
        A Dataset: categories ``0..C-1`` named by ``names``; one record per image, its
        ``split`` the first split listing it (``ds.splits`` lists every split, they may
        overlap); ``info["yolo"]`` holds the YAML's other keys, ``kpt_shape`` and ``flip_idx``;
        ``info["missing_labels"]``/``info["empty_labels"]`` count images without objects.

    Raises:
        DatasetNotFoundError: no YAML and no classification tree at ``path``.
        FormatError: a bad YAML, label row or image (the message names file and line).
        PathEscapeError: a path in the YAML or a list leaves the dataset folder.

    Example:
        >>> ds = parse("coco8/coco8.yaml")  # doctest: +SKIP
        >>> len(ds), ds.splits.keys()  # doctest: +SKIP
        (8, dict_keys(['train', 'val']))
    """
    p = Path(path)
    if not p.exists():
        raise DatasetNotFoundError(f"{p}: no such file or folder (expected a YOLO dataset YAML or its folder)")
    yaml_path = _find_yaml(p)
    if yaml_path is None:
        if p.is_dir():
            return _parse_classify(p, split, on_error)
        raise DatasetNotFoundError(f"{p}: not a .yaml file (expected a YOLO dataset YAML or its folder)")
    doc = _read_yaml(yaml_path)
    where = yaml_path.name
    if "val" not in doc and "validation" in doc:  # check_det_dataset renames it, with a warning
        doc = {("val" if k == "validation" else k): v for k, v in doc.items()}
    names = _class_names(doc, where)
    kpt = _kpt_shape(doc, where)
    root = _dataset_root(yaml_path, doc, allow_outside_root)
    extra = doc.get("dsprep_splits")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidAnnotationError(where, f"'dsprep_splits' must map split names to paths, found "
                                            f"{type(extra).__name__}")
    split_doc = {**{k: doc[k] for k in SPLIT_KEYS if doc.get(k)}, **{str(k): v for k, v in (extra or {}).items()}}
    if doc.get("dsprep_val_is_train") is True and split_doc.get("val") == split_doc.get("train"):
        del split_doc["val"]  # dsprep's writer named train as val only because Ultralytics requires a val
    keys = list(split_doc)
    if not keys:
        raise InvalidAnnotationError(where, "no split: expected 'train' (and 'val') naming image folders or lists")
    if split is not None:
        check_choice("split", split, keys)
        keys = [split]
    policy = ErrorPolicy(on_error)
    listed: dict[str, list[str]] = {}
    for k in keys:
        found: list[str] = []
        for rel in _split_entries(root, split_doc, k, where, allow_outside_root):
            found += _list_folder(root, rel) if (root / rel).is_dir() else _list_file(root, rel, allow_outside_root)
        listed[k] = sorted(set(found))  # get_img_files sorts the paths
    records, splits, info = _read_records(root, listed, len(names), kpt, policy, workers, progress)
    cats = _restored_ids([Category(i, n, extra=_keypoint_names(doc, i, kpt)) for i, n in enumerate(names)],
                         records, yaml_path.parent)
    info["yolo"] = {"yaml": yaml_path.name, **({"kpt_shape": list(kpt)} if kpt else {}),
                    **({"flip_idx": list(doc["flip_idx"])} if kpt and doc.get("flip_idx") is not None else {}),
                    "other_keys": {k: v for k, v in doc.items() if k not in _YAML_KEYS}}
    info["skipped"] = policy.count
    policy.summary("YOLO rows/images")
    return Dataset(cats, records, splits=splits, info=info, root=root, format=NAME)


def _keypoint_names(doc: Mapping, cls: int, kpt: tuple[int, int] | None) -> dict:
    """Category extra for pose data: COCO's ``keypoints`` names (``kpt_names`` of the YAML, else 0..K-1)."""
    if kpt is None:
        return {}
    names = doc.get("kpt_names")
    mine = names.get(cls) if isinstance(names, dict) else None
    if isinstance(mine, list) and len(mine) == kpt[0]:
        return {"keypoints": [str(n) for n in mine]}
    return {"keypoints": [str(i) for i in range(kpt[0])]}


def _read_records(root: Path, listed: Mapping[str, list[str]], ncls: int, kpt, policy: ErrorPolicy, workers,
                  progress) -> tuple[list[Record], dict[str, list[str]], dict[str, Any]]:
    """One record per listed image (its first split), read in the worker pool."""
    first: dict[str, str] = {}
    for k, rels in listed.items():
        for r in rels:
            first.setdefault(r, k)
    items = [(r, label_path(r)) for r in first]
    fn = partial(_read_chunk, root=str(root), ncls=ncls, kpt=kpt, mode=policy.mode)
    records: list[Record] = []
    missing = empty = 0
    # one pause over the whole read: with one worker the chunks are read in this process, and a
    # collection as each chunk's pause ended rescanned every chunk read before it (6 % of the time)
    with _io.gc_paused():
        chunks = _io.parallel_map(fn, items, workers=workers, chunk=512, desc="YOLO labels", show_progress=progress)
        for c in chunks:
            policy.merge(c["policy"])
            records += _records_from_chunk(c, first)
            missing += c["missing"]
            empty += c["empty"]
    make_ids_distinct(records)
    id_of = {r.path: r.id for r in records}
    splits = {k: [id_of[r] for r in rels if r in id_of] for k, rels in listed.items()}
    return records, splits, {"missing_labels": missing, "empty_labels": empty}


def _records_from_chunk(c: Mapping[str, Any], split_of: Mapping[str, str]) -> list[Record]:
    """The Records of one chunk, built without re-validating its per-chunk arrays (as voc does)."""
    out = []
    a = 0
    boxes, labels, kps = c["boxes"], c["labels"], c["keypoints"]
    m = len(labels)
    crowd, diff, ids, area = np.zeros(m, bool), np.zeros(m, bool), np.full(m, -1, np.int64), np.full(m, np.nan)
    segm = c["segm"] or [None] * len(c["rel"])
    new_inst, new_rec = Instances.__new__, Record.__new__
    for rel, w, h, n, sg in zip(c["rel"], c["w"], c["h"], c["count"], segm):
        b = a + n
        inst = new_inst(Instances)
        inst.__dict__ = {"boxes": boxes[a:b], "labels": labels[a:b], "iscrowd": crowd[a:b], "difficult": diff[a:b],
                         "ids": ids[a:b], "area": area[a:b], "segmentation": sg,
                         "keypoints": kps[a:b] if kps is not None else None, "extra": None}
        rec = new_rec(Record)
        rec.__dict__ = {"id": record_id_from_path(rel), "path": rel, "width": w, "height": h,
                        "split": split_of.get(rel), "label": None, "instances": inst, "mask_path": None,
                        "instance_mask_path": None, "captions": [], "source_id": None, "extra": {}}
        out.append(rec)
        a = b
    return out


def _category_map(folder: Path) -> list[dict] | None:
    """The entries of ``folder/category_map.json`` (``dsprep convert`` writes it beside every output:
    ``{"categories": [{"name", "source_id", "id"[, "supercategory"]}]}``), or None: absent, not
    JSON, or not of that shape (then ignored, as the file is dsprep's, not the format's)."""
    import json

    path = folder / CATEGORY_MAP_FILE
    try:
        if not path.is_file() or path.stat().st_size > 1 << 24:
            return None
        entries = json.loads(path.read_text(encoding="utf-8"))["categories"]
        ok = isinstance(entries, list) and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and type(e.get("id")) is int
            and type(e.get("source_id")) is int and isinstance(e.get("supercategory", ""), (str, type(None)))
            for e in entries)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entries if ok else None


def _restored_ids(categories: list[Category], records: Sequence[Record], folder: Path) -> list[Category]:
    """The source category ids (and supercategories) that ``dsprep convert`` wrote to
    ``category_map.json`` beside the YAML, when the map names exactly these classes as
    0..C-1 in this order; else ``categories`` as they are (0..C-1). Labels follow."""
    entries = _category_map(folder)
    if entries is None or [(e["name"], e["id"]) for e in entries] != [(c.name, c.id) for c in categories] \
            or len({e["source_id"] for e in entries}) != len(entries):
        return categories
    lut = np.array([e["source_id"] for e in entries], np.int64)
    for r in records:
        if len(r.instances):
            r.instances.labels = lut[r.instances.labels]
        if r.label is not None:
            r.label = int(lut[r.label])
    return [Category(e["source_id"], c.name, e.get("supercategory") or "", extra=c.extra)
            for e, c in zip(entries, categories)]


_CLS_SPLITS = (("train", ("train",)), ("val", ("val", "validation")), ("test", ("test",)))


def _parse_classify(root: Path, split: str | None, on_error: str) -> Dataset:
    """A classification tree as Ultralytics reads it (``check_cls_dataset``, torchvision ``ImageFolder``):
    ``train/``, ``val/`` (or ``validation/``), ``test/``; classes are the sorted folders of ``train/``."""
    dirs = {k: next((root / n for n in names if (root / n).is_dir()), None) for k, names in _CLS_SPLITS}
    if dirs["train"] is None:
        raise DatasetNotFoundError(f"{root}: no dataset YAML (*.yaml) and no train/<class>/ folders; expected a "
                                   "YOLO dataset YAML, or a classification tree train/<class>/*.jpg")
    classes = sorted(e.name for e in os.scandir(dirs["train"]) if e.is_dir() and e.name[0] != ".")
    keys = [k for k, d in dirs.items() if d is not None]
    if split is not None:
        check_choice("split", split, keys)
        keys = [split]
    index = {c: i for i, c in enumerate(classes)}
    policy = ErrorPolicy(on_error)
    records: list[Record] = []
    unknown = 0
    for k in keys:
        d = dirs[k]
        found = sorted(e.name for e in os.scandir(d) if e.is_dir() and e.name[0] != ".")
        for cname in found:
            if cname not in index:
                unknown += 1
                policy.handle(InvalidAnnotationError(f"{d.name}/{cname}", f"class folder not in train/ (classes: "
                                                     f"{', '.join(classes[:8])}); expected the classes of train/"))
                continue
            for rel in sorted(_list_folder(root, f"{d.name}/{cname}")):
                records.append(Record(record_id_from_path(rel), rel, split=k, label=index[cname]))
    make_ids_distinct(records)
    policy.summary("class folders")
    cats = _restored_ids([Category(i, c) for i, c in enumerate(classes)], records, root)
    return Dataset(cats, records, info={"yolo": {"task": "classify"}, "skipped": policy.count}, root=root,
                   format=NAME)


# --------------------------------------------------------------------------- write: numbers

def _text(v: float) -> str:
    """The shortest text that reads back as ``v`` (positional, never ``1e-05``)."""
    t = repr(float(v))
    if "e" in t:
        t = np.format_float_positional(v, unique=True, trim="-")
    return t[:-2] if t.endswith(".0") else t


def _exact_start(lo: np.ndarray, half: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised centres with the fewest decimals such that ``_snap(size * (c - half)) == lo``
    (``half``: the normalised half size as written), and where one was found."""
    c = (lo / size) + half
    out = c.copy()
    todo = np.ones(len(c), bool)
    for d in range(18):
        if not todo.any():
            break
        cand = np.round(c[todo], d)
        sz = size[todo]
        ok = _snap(sz * (cand - half[todo]), sz) == lo[todo]
        idx = np.flatnonzero(todo)[ok]
        out[idx] = cand[ok]
        todo[idx] = False
    return out, ~todo


def _exact_scaled(v: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised values with the fewest decimals that :func:`parse` reads back as exactly ``v``."""
    n = v / size
    out = n.copy()
    todo = np.ones(len(n), bool)
    for d in range(18):
        if not todo.any():
            break
        cand = np.round(n[todo], d)
        ok = _snap(cand * size[todo], size[todo]) == v[todo]
        idx = np.flatnonzero(todo)[ok]
        out[idx] = cand[ok]
        todo[idx] = False
    return out, ~todo


def _box_columns(boxes: np.ndarray, w: float, h: float) -> tuple[np.ndarray, int]:
    """``(N, 4)`` normalised cx cy w h of xyxy pixel boxes that :func:`parse` reads back as
    exactly these boxes (fewest decimals), and how many are not exact (a few ulps off)."""
    n = len(boxes)
    ext = box_extents(boxes)  # the decimal width with x1 + w == x2 (COCO's w, VOC's integers)
    cols, exact = np.empty((n, 4)), np.ones(n, bool)
    for axis, size in ((0, float(w)), (1, float(h))):
        sz = np.full(n, size)
        s, ok_s = _exact_scaled(ext[:, axis], sz)
        c, ok_c = _exact_start(boxes[:, axis], s / 2, sz)
        back = _snap(sz * (c - s / 2), sz) + _snap(sz * s, sz)
        exact &= ok_s & ok_c & (back == boxes[:, axis + 2])
        cols[:, axis], cols[:, axis + 2] = c, s
    return cols, int((~exact).sum())


def _rows_text(cls: Sequence[int], cols: np.ndarray) -> str:
    return "".join(f"{c} " + " ".join(map(_text, row)) + "\n" for c, row in zip(cls, cols.tolist()))


def _scaled_text(v: np.ndarray, size: float) -> tuple[list[str], int]:
    """Texts of pixel values ``v`` normalised by ``size`` (read back exactly), and how many are not exact."""
    n, ok = _exact_scaled(np.asarray(v, np.float64), np.full(len(v), float(size)))
    return [_text(x) for x in n.tolist()], int((~ok).sum())


# --------------------------------------------------------------------------- write: objects

class _Report:
    """What the writer counts: ``lost`` (what YOLO cannot hold) and ``approximate`` entries."""

    def __init__(self) -> None:
        self.lost: dict[str, int] = {}

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.lost[what] = self.lost.get(what, 0) + int(n)


def _polygon_of(segm: Any, box: np.ndarray, h: int, w: int, where: str, report: _Report) -> list[float]:
    """One flat pixel polygon for an object (YOLO holds one per row): its polygon; several joined
    into one ring; an RLE traced along its pixel edges; none: its box as a rectangle."""
    from ..masks import mask_polygons, segmentation_mask
    from ..records import decode_segmentation

    segm = decode_segmentation(segm, where)
    if isinstance(segm, dict):
        mask = segmentation_mask(segm, h, w, on_size_mismatch="none", where=where)
        rings, holes = mask_polygons(mask) if mask is not None else ([], 0)
        report.add("RLE masks traced to polygons (objects; approximate: pixel-edge outlines)")
        report.add("mask holes (objects; YOLO polygons have none)", holes > 0)
        segm = rings
    polys = [p for p in (segm or []) if isinstance(p, (list, tuple)) and len(p) >= 6]
    if not polys:
        report.add("objects without a mask, written as their box's rectangle (segment)")
        x1, y1, x2, y2 = box.tolist()
        return [x1, y1, x2, y1, x2, y2, x1, y2]
    if len(polys) > 1:
        report.add("multi-part masks joined into one polygon (objects; approximate)")
    return [float(v) for p in polys for v in p]


def _segment_rows(rec: Record, keep: np.ndarray, index: Mapping[int, int], report: _Report) -> str:
    inst = rec.instances
    w, h = rec.width, rec.height
    lines = []
    segs = inst.segmentation or [None] * len(inst)
    inexact = 0
    for k in np.flatnonzero(keep).tolist():
        poly = np.asarray(_polygon_of(segs[k], inst.boxes[k], h, w, f"{rec.path}: object {k}", report))
        poly = np.clip(poly.reshape(-1, 2), 0, [w, h])
        xs, bx = _scaled_text(poly[:, 0], w)
        ys, by = _scaled_text(poly[:, 1], h)
        inexact += bool(bx or by)
        ext = [poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()]
        report.add("boxes re-read as their polygon's extent, which differs from the stored box (objects)",
                   not np.array_equal(ext, inst.boxes[k]))
        lines.append(f"{index[int(inst.labels[k])]} " + " ".join(f"{x} {y}" for x, y in zip(xs, ys)) + "\n")
    report.add("polygons whose normalised points are not exact decimals (objects; within 1e-12 px)", inexact)
    return "".join(lines)


def _box_rows(rec: Record, keep: np.ndarray, index: Mapping[int, int], task: str, kdim: int, nkpt: int,
              report: _Report) -> str:
    inst = rec.instances
    w, h = float(rec.width), float(rec.height)
    boxes = _inside(inst.boxes[keep], w, h, report)
    cols, inexact = _box_columns(boxes, w, h)
    report.add("boxes whose normalised values are not exact decimals (objects; within 1e-12 px)", inexact)
    texts = [[_text(v) for v in row] for row in cols.tolist()]
    cls = [index[int(c)] for c in inst.labels[keep].tolist()]
    if task == "pose":
        kp = inst.keypoints[keep] if inst.keypoints is not None else np.zeros((int(keep.sum()), nkpt, 3))
        if inst.keypoints is None:
            report.add("objects without keypoints, written with K zero keypoints (pose)", len(kp))
        for row, pts in zip(texts, kp):
            xs, _ = _scaled_text(pts[:, 0], w)
            ys, _ = _scaled_text(pts[:, 1], h)
            vs = [_text(v) for v in pts[:, 2].tolist()]
            row += [t for i in range(nkpt) for t in ((xs[i], ys[i], vs[i]) if kdim == 3 else (xs[i], ys[i]))]
        if kdim == 2:
            report.add("keypoint visibility (kpt_shape [K, 2] has none)", int((kp[..., 2] == 1).sum()))
    return "".join(f"{c} {' '.join(t)}\n" for c, t in zip(cls, texts))


def _inside(boxes: np.ndarray, w: float, h: float, report: _Report) -> np.ndarray:
    """Boxes reaching past the image beyond YOLO's 1% tolerance (readers refuse them) clipped to it."""
    t = TOLERANCE
    out = ((boxes[:, 0] < -t * w) | (boxes[:, 1] < -t * h) | (boxes[:, 2] > (1 + t) * w)
           | (boxes[:, 3] > (1 + t) * h) | (boxes[:, 2] - boxes[:, 0] > (1 + t) * w)
           | (boxes[:, 3] - boxes[:, 1] > (1 + t) * h))
    if not out.any():
        return boxes
    boxes = boxes.copy()
    boxes[out] = np.clip(boxes[out], 0, [w, h, w, h])
    report.add("boxes outside the image (objects; clipped to it: YOLO readers refuse them)", int(out.sum()))
    return boxes


def _lost_fields(rec: Record, keep: np.ndarray, task: str, report: _Report) -> None:
    inst = rec.instances
    if task != "segment" and inst.segmentation is not None:
        report.add("object segmentations (objects; boxes kept)",
                   sum(1 for k in np.flatnonzero(keep) if inst.segmentation[k] is not None))
    if task != "pose" and inst.keypoints is not None:
        report.add("keypoints (objects)", int((inst.keypoints[keep][..., 2] > 0).any(axis=1).sum()))
    report.add("difficult flags (objects written as ordinary ones)", int(inst.difficult[keep].sum()))
    report.add("annotation ids", int((inst.ids[keep] >= 0).sum()))
    report.add("stored areas", int(np.isfinite(inst.area[keep]).sum()))
    if inst.extra is not None:
        report.add("object fields", sum(1 for k in np.flatnonzero(keep) if inst.extra[k]))
    report.add("captions", len(rec.captions))
    report.add("semantic masks", rec.mask_path is not None)
    report.add("instance masks", rec.instance_mask_path is not None)
    report.add("source image ids", rec.source_id is not None)
    if task != "classify":
        report.add("image-level labels (only --task classify writes them: class folders)", rec.label is not None)
    report.add("image fields", bool(rec.extra))


def _label_text(rec: Record, task: str, crowd: str, index: Mapping[int, int], nkpt: int, kdim: int,
                report: _Report) -> tuple[str, int]:
    """The label file of one record and its number of rows."""
    inst = rec.instances
    keep = np.ones(len(inst), bool)
    if inst.iscrowd.any():
        if crowd == "drop":
            keep &= ~inst.iscrowd
            report.add("crowd objects (dropped: YOLO has no crowd; crowd='keep' writes them as ordinary ones)",
                       int(inst.iscrowd.sum()))
        else:
            report.add("crowd flags (crowd objects written as ordinary ones; crowd='drop' leaves them out)",
                       int(inst.iscrowd.sum()))
    unknown = ~np.isin(inst.labels, list(index))
    if unknown.any():
        raise InvalidAnnotationError(rec.path, f"object of category {int(inst.labels[unknown][0])}, which is not "
                                               "among the dataset's categories; expected one of them")
    _lost_fields(rec, keep, task, report)
    if not keep.any():
        return "", 0
    text = (_segment_rows(rec, keep, index, report) if task == "segment"
            else _box_rows(rec, keep, index, task, kdim, nkpt, report))
    return text, int(keep.sum())


# --------------------------------------------------------------------------- write: layout

def _folder_name(split: str) -> str:
    """A split name as one folder name that reads back as itself (no separators, no dot names)."""
    name = fit_name(split.replace("/", "_").replace("\\", "_").replace("\0", "_"))
    return name if name and name not in (".", "..") and name[0] != "." else "_" + name


def _placement(dataset: Dataset) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each record's split folder (its own split where a split lists it, else the first split
    listing it, else ``train``) and the split lists to write (every record in one at least)."""
    splits = {k: list(v) for k, v in dataset.splits.items() if v}
    first: dict[str, str] = {}
    for k, ids in splits.items():
        for i in ids:
            first.setdefault(i, k)
    folder: dict[str, str] = {}
    for r in dataset.records:
        k = r.split if r.split is not None and r.id in set(splits.get(r.split, ())) else first.get(r.id)
        if k is None:
            k = r.split or "train"
            splits.setdefault(k, []).append(r.id)
        folder[r.id] = k
    return folder, splits


def _file_names(records: Sequence[Record], folder: Mapping[str, str]) -> list[str]:
    """Each record's image file name in its split folder: the source's, or, where two would
    clash, the record id with ``/`` -> ``__`` (and the extension)."""
    out, used = [], set()
    for r in records:
        base = fit_name(r.path.replace("\\", "/").rsplit("/", 1)[-1]) or "image"
        ext = base[base.rfind("."):] if "." in base else ".jpg"
        name = base if _is_image(base) else base + ".jpg"
        if (folder[r.id], name) in used:
            name = fit_name(r.id.replace("/", "__").replace("#", "_") + ext)
        k = 2
        while (folder[r.id], name) in used:
            name = fit_name(f"{r.id.replace('/', '__')}_{k}{ext}")
            k += 1
        used.add((folder[r.id], name))
        out.append(name)
    return out


def _split_values(splits: Mapping[str, list[str]], folder: Mapping[str, str], img_rel: Mapping[str, str],
                  dest: Path) -> dict[str, Any]:
    """The YAML value of each split: its folder, a list of folders, or a ``.txt`` image list."""
    members: dict[str, set[str]] = {}
    for i, f in folder.items():
        members.setdefault(f, set()).add(i)
    out: dict[str, Any] = {}
    for k, ids in splits.items():
        folders = list(dict.fromkeys(folder[i] for i in ids if i in folder))
        whole = set().union(*(members[f] for f in folders)) if folders else set()
        if whole == set(ids) and len(ids) == len(set(ids)):
            paths = [f"images/{_folder_name(f)}" for f in folders]
            out[k] = paths[0] if len(paths) == 1 else paths
        else:
            name = f"{_folder_name(k)}.txt"
            output_path(dest, name, what="split list").write_text(
                "".join(f"./{img_rel[i]}\n" for i in ids if i in img_rel), encoding="utf-8")
            out[k] = name
    return out


def _flip_idx(names: Sequence[str]) -> list[int]:
    """Ultralytics' ``flip_idx`` from keypoint names: ``left_x`` <-> ``right_x``, others themselves."""
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for i, n in enumerate(names):
        other = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        out.append(pos.get(other, i))
    return out


def _yaml_doc(dataset: Dataset, values: Mapping[str, Any], task: str, kpt: tuple[int, int] | None) -> dict:
    src = dataset.info.get("yolo") if dataset.format == NAME else None
    src = src if isinstance(src, Mapping) else {}
    doc: dict[str, Any] = {}
    std = {k: v for k, v in values.items() if k in SPLIT_KEYS}
    val_is_train = "train" in std and "val" not in std
    if val_is_train:
        std["val"] = std["train"]  # Ultralytics requires val; the same images, said in the docs
    doc.update(std)
    if val_is_train:
        doc["dsprep_val_is_train"] = True  # parse reads no val split back (Ultralytics ignores the key)
    other = {k: v for k, v in values.items() if k not in SPLIT_KEYS}
    if other:
        doc["dsprep_splits"] = other  # splits Ultralytics has no key for (VOC's trainval); parse reads them
    doc["names"] = {i: c.name for i, c in enumerate(dataset.categories)}
    if task == "pose" and kpt is not None:
        doc["kpt_shape"] = [kpt[0], kpt[1]]
        kp_names = next((c.extra.get("keypoints") for c in dataset.categories if c.extra.get("keypoints")), None)
        flip = src.get("flip_idx") or (_flip_idx([str(n) for n in kp_names])
                                       if isinstance(kp_names, list) and len(kp_names) == kpt[0] else None)
        if flip is not None:
            doc["flip_idx"] = list(flip)
        named = {i: [str(n) for n in c.extra["keypoints"]] for i, c in enumerate(dataset.categories)
                 if isinstance(c.extra.get("keypoints"), list) and len(c.extra["keypoints"]) == kpt[0]
                 and [str(n) for n in c.extra["keypoints"]] != [str(j) for j in range(kpt[0])]}
        if named:
            doc["kpt_names"] = named
    for k, v in (src.get("other_keys") or {}).items():
        doc.setdefault(k, v)
    return doc


def _task_of(dataset: Dataset, task: str | None) -> str:
    if task is not None:
        return check_choice("YOLO task", task, TASKS)
    recs = dataset.records
    if recs and all(len(r.instances) == 0 for r in recs) and any(r.label is not None for r in recs):
        return "classify"
    # keypoints with K = 0 points an object (a shards sample may say so) are no pose data: kpt_shape is [K >= 1, D]
    if any(r.instances.keypoints is not None and r.instances.keypoints.shape[1] and len(r.instances) for r in recs):
        return "pose"
    if any(r.instances.segmentation is not None and any(s is not None for s in r.instances.segmentation)
           for r in recs):
        return "segment"
    return "detect"


def _pose_shape(dataset: Dataset, task: str) -> tuple[int, int] | None:
    if task != "pose":
        return None
    ks = {r.instances.keypoints.shape[1] for r in dataset.records if r.instances.keypoints is not None
          and len(r.instances) and r.instances.keypoints.shape[1]}
    if len(ks) > 1:
        raise InvalidAnnotationError("keypoints", f"records hold {sorted(ks)} keypoints per object; YOLO pose "
                                                  "rows hold one K for the dataset (kpt_shape)")
    src = dataset.info.get("yolo") if dataset.format == NAME else None
    kdim = (src or {}).get("kpt_shape", [0, 3])[1] if isinstance(src, Mapping) else 3
    if not ks:
        names = next((c.extra.get("keypoints") for c in dataset.categories if c.extra.get("keypoints")), None)
        if not isinstance(names, list) or not names:
            raise InvalidAnnotationError("keypoints", "task='pose' but no record has keypoints and no category "
                                                      "names them; expected keypoints (or --task detect)")
        ks = {len(names)}
    return ks.pop(), int(kdim)


def _sized(rec: Record, src_root: Path | None) -> Record:
    """``rec`` with its image size, read from the image header where the record has none."""
    if rec.width and rec.height:
        return rec
    src = (src_root / rec.path) if src_root is not None else Path(rec.path)
    if src.is_file():
        w, h = _io.image_size(src)
        return rec.replace(width=w, height=h)
    if len(rec.instances) == 0:
        return rec
    raise InvalidAnnotationError(rec.path, f"record {rec.id!r} has no image size and no image at {src} to read "
                                           "it from; YOLO rows are normalised by the size (fix: give the source "
                                           "its sizes, or its images)")


def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "link", progress: bool | None = None,
          task: str | None = None, crowd: str = "keep", on_error: str = "raise", **options: Any) -> dict[str, Any]:
    """Write ``dataset`` as an Ultralytics YOLO dataset into the existing directory ``dest``.

    Writes ``data.yaml`` (splits, ``names`` as ``{index: name}``, for pose ``kpt_shape``,
    ``flip_idx`` and ``kpt_names``), ``images/<split>/<file>`` (by ``images``: ``link``,
    ``copy`` or ``none``) and ``labels/<split>/<stem>.txt`` for every image with objects.
    Class indices are the categories' positions (0..C-1); ``dsprep.convert`` renumbers to
    them and writes ``category_map.json`` with the source ids. Coordinates are the
    shortest decimals that :func:`parse` reads back as the record's boxes exactly.
    A split that is not one folder is a list of folders or a ``<split>.txt`` image list;
    splits Ultralytics has no key for go under ``dsprep_splits``.

    Args:
        dataset: the records.
        dest: an existing, empty directory.
        images: how images are placed.
        task: ``detect`` (box rows), ``segment`` (polygon rows: polygons as they are,
            several joined into one, RLE masks traced along their pixel edges, objects
            without a mask as their box), ``pose`` (box + keypoints) or ``classify``
            (``<split>/<class>/<file>`` folders); default: from the records (keypoints:
            pose; masks: segment; image labels only: classify; else detect).
        crowd: ``keep`` (crowd objects written as ordinary ones, the flag counted lost) or
            ``drop`` (left out, counted).
        on_error: ``"raise"`` on a missing image file, or ``"warn"`` (counted in the report).

    Returns:
        ``{"images", "objects", "lost": {what: n}, "task", "missing_images"}``.

    Raises:
        InvalidAnnotationError: a record with objects but no image size to normalise them.
        MissingFileError: an image to place does not exist (``on_error="raise"``).

    Example:
        >>> write(parse("VOC2007"), "out/", images="link", task="detect")  # doctest: +SKIP
    """
    if options:
        log.debug("yolo.write ignores options %s", sorted(options))
    _io.check_images_mode(images)
    check_choice("crowd option", crowd, ("keep", "drop"))
    dest = Path(dest)
    task = _task_of(dataset, task)
    if task == "classify":
        return _write_classify(dataset, dest, images, progress)
    kpt = _pose_shape(dataset, task)
    index = {c.id: i for i, c in enumerate(dataset.categories)}
    report = _Report()
    report.add("category ids (YOLO classes are 0..C-1 in category order; see category_map.json)",
               sum(1 for c in dataset.categories if index[c.id] != c.id))
    _lost_categories(dataset, dest, report)
    src_root = Path(dataset.root) if dataset.root is not None else None
    folder, splits = _placement(dataset)
    records = dataset.records
    names = _file_names(records, folder)
    policy = ErrorPolicy(on_error)
    img_rel: dict[str, str] = {}
    n_obj = missing = 0
    for rec, name in _io.progress(list(zip(records, names)), total=len(records), desc="YOLO write",
                                  enabled=progress):
        rec = _sized(rec, src_root)
        rel = f"images/{_folder_name(folder[rec.id])}/{name}"
        text, n = _label_text(rec, task, crowd, index, kpt[0] if kpt else 0, kpt[1] if kpt else 3, report)
        if n:
            output_path(dest, label_path(rel), what="label file").write_text(text, encoding="utf-8")
        n_obj += n
        src = (src_root / rec.path) if src_root is not None else Path(rec.path)
        if not _io.place_record_image(src, dest, rel, images, rec.id, "labels", policy):
            missing += 1
        if images == "none":
            output_path(dest, posixpath.dirname(rel), what="image folder", folder=True)
        img_rel[rec.id] = rel
    _write_yaml(dest, _yaml_doc(dataset, _split_values(splits, folder, img_rel, dest), task, kpt))
    policy.summary("images")
    return {"images": len(records), "objects": n_obj, "lost": report.lost, "task": task, "missing_images": missing}


def _lost_categories(dataset: Dataset, dest: Path, report: _Report) -> None:
    """Supercategories: YOLO stores names only; kept only where ``dest``'s category map (written by
    dsprep convert before the writer, once it holds them) has them, as :func:`parse` reads it."""
    kept = {e["name"]: e.get("supercategory") or "" for e in _category_map(dest) or []}
    report.add("category supercategories (YOLO stores names only)",
               sum(1 for c in dataset.categories if c.supercategory and kept.get(c.name) != c.supercategory))


def _write_yaml(dest: Path, doc: Mapping[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    output_path(dest, YAML_FILE, what="dataset YAML").write_text(
        "# Ultralytics YOLO dataset written by dsprep (docs/formats/yolo.md)\n" + text, encoding="utf-8")


def _write_classify(dataset: Dataset, dest: Path, images: str, progress: bool | None) -> dict[str, Any]:
    """``<split>/<class>/<file>``, as Ultralytics' classification datasets are laid out."""
    report = _Report()
    names = {}
    for c in dataset.categories:
        f = _folder_name(c.name)
        names[c.id] = f"{f}_{c.id}" if f in names.values() else f
    report.add("category names changed into folder names", sum(1 for c in dataset.categories if names[c.id] != c.name))
    _lost_categories(dataset, dest, report)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    used: set[str] = set()
    n = 0
    for r in _io.progress(dataset.records, total=len(dataset.records), desc="YOLO classify", enabled=progress):
        if r.label is None or r.label not in names:
            report.add("images without a label")
            continue
        base = r.path.replace("\\", "/").rsplit("/", 1)[-1]
        rel = f"{_folder_name(r.split or 'train')}/{names[r.label]}/{base}"
        if rel in used:
            rel = f"{rel.rsplit('/', 1)[0]}/{r.id.replace('/', '__')}{base[base.rfind('.'):] if '.' in base else ''}"
        used.add(rel)
        if not _io.place_image(src_root / r.path, dest, rel, images):
            report.add("images missing at the source")
            continue
        if images == "none":
            output_path(dest, posixpath.dirname(rel), what="class folder", folder=True)
        _lost_fields(r, np.zeros(len(r.instances), bool), "classify", report)
        n += 1
    return {"images": n, "objects": 0, "lost": report.lost, "task": "classify", "missing_images": 0}
