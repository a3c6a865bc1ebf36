"""Train-ready tar shards: WebDataset-compatible tars of image bytes plus one JSON record per sample.

The format (``docs/shards.md``, version 1)::

    OUT/
      index.json                      written last: categories, info, split counts, shards, byte offsets
      shards/<split>-<chunk>-<n>.tar  plain ustar; per sample {key}.json, {key}.{jpg|png|...}, masks
      manifests/dataset.json          the plan every chunk shares (categories, info, splits, options)
      manifests/<chunk>.json          one per chunk of records: its shards, merged into index.json

Writing is a map over chunks of records (fixed by record order and a chunk
size, never by the number of workers or the backend), each writing its own
shards and a small manifest, then a merge of the manifests into ``index.json``.
The chunks run in local worker processes (the default), as Ray tasks
(``backend="ray"``), or one share per invocation of a job array
(``num_tasks``/``task_index``, then :func:`merge`); the bytes are the same.

Images are kept as they are (``images="keep"``) or decoded (EXIF orientation
applied), scaled to ``max_side`` and re-encoded (JPEG at ``quality``; PNG stays
PNG), with every box, polygon, RLE mask, keypoint and mask PNG scaled with them
and the original size and scale in the record.

:func:`parse` reads ``index.json`` and the JSON members (no image decode) back
into records whose paths are the original ones; where each file lies in which
shard is in ``dataset.info["shard_files"]``, which the conversion layer uses to
extract them for another format's writer.

No torch here.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _io
from .._paths import escapes
from .._shardio import is_url, read_index, record_from_sample, split_members
from .._tar import TarShardWriter, member_bytes, padded, read_member
from ..errors import (DsprepError, ErrorPolicy, FormatError, InvalidAnnotationError, MalformedFileError,
                      MissingFileError, UnknownNameError, check_choice)
from ..records import Category, Dataset, Instances, Record, decode_segmentation, is_file_field, segmentation_json

__all__ = ["DESCRIPTION", "IMAGE_MODES", "NAME", "detect", "merge", "parse", "parse_size", "sample_doc", "write"]

log = logging.getLogger(__name__)

NAME = "shards"
DESCRIPTION = "WebDataset-compatible tar shards + index.json (images kept or re-encoded at a max side)"
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"file_names", "splits", "overlapping_splits", "objects", "boxes", "categories", "category_ids",
                   "supercategory", "crowd", "difficult", "masks", "keypoints", "image_labels", "annotation_ids",
                   "image_ids"})
INDEX = "index.json"
FORMAT_TAG = "dsprep-shards"
VERSION = 1
SHARDS_DIR = "shards"
MANIFESTS_DIR = "manifests"
PLAN = "dataset.json"
# what a shards OUT holds (a job array's tasks write into an OUT holding only these)
OUT_ENTRIES = (INDEX, SHARDS_DIR, MANIFESTS_DIR, "category_map.json", "dsprep-manifest.json")
# "keep" stores each image's bytes as they are; "link" and "copy" (the other formats' modes)
# mean the same here: a tar cannot hold a link.
IMAGE_MODES = ("keep", "link", "copy")
BACKENDS = ("local", "ray")
DEFAULT_SHARD_SIZE = 10 ** 9
_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SHARD_NAME = re.compile(r"(?P<token>.+)-(?P<chunk>\d{5,})-(?P<n>\d{5,})\.tar")
_TRANSPOSING = {5, 6, 7, 8}
_ORIENT_OPS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
               6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # as ImageOps.exif_transpose


# ----------------------------------------------------------------------------- options

def parse_size(text: str | int) -> int:
    """Bytes from ``1GB``, ``500MB``, ``64MiB`` or a plain number (KB/MB/GB are powers of 1000).

    Raises:
        UnknownNameError: not a size.
    """
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).upper() if m else None
        if not m or unit not in _UNITS:
            raise UnknownNameError(f"--shard-size {text!r}: expected a size such as 1GB, 500MB, 64MiB or a "
                                   "number of bytes")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1:
        raise UnknownNameError(f"--shard-size {text!r}: must be at least one byte")
    return value


def _image_options(images: str, max_side: int | None, quality: int) -> str | dict:
    """``"keep"`` or ``{"max_side", "quality"}`` (what index.json records as ``images``)."""
    check_choice("--images mode (with --to shards)", images, IMAGE_MODES + ("none",))
    if images == "none":
        raise UnknownNameError("--images none: shards hold the images (that is what a streaming loader reads); "
                               "use --images keep (the default) or --max-side N")
    if max_side is None:
        return "keep"
    if images == "keep":
        raise UnknownNameError(f"--images keep and --max-side {max_side}: keep stores the original bytes, "
                               "--max-side re-encodes them; give one of the two")
    if int(max_side) < 1 or not 1 <= int(quality) <= 100:
        raise UnknownNameError(f"--max-side {max_side} --quality {quality}: expected max-side >= 1 and "
                               "quality in 1..100")
    return {"max_side": int(max_side), "quality": int(quality)}


def _auto_chunk_size(n: int) -> int:
    """Records per chunk from the record count alone (never from workers): 256..10000, ~64 chunks."""
    return max(256, min(10_000, math.ceil(n / 64)))


# ----------------------------------------------------------------------------- detect

def detect(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a shards ``index.json`` (reads its first bytes only)."""
    p = Path(path)
    index = p / INDEX if p.is_dir() else p
    try:
        with open(index, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.startswith(b'{"format":"' + FORMAT_TAG.encode() + b'"')


# ----------------------------------------------------------------------------- sample JSON

def sample_doc(rec: Record, splits: Sequence[str], image_ext: str, files: Mapping[str, str],
               resized: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``{key}.json`` document of ``rec`` (docs/shards.md, "The sample JSON").

    Args:
        splits: every split that lists the record, in the dataset's split order.
        image_ext: the image member's extension.
        files: member extension -> original relative path of the other files stored (masks).
        resized: ``{"orig_width", "orig_height", "scale"}`` when the image was scaled.
    """
    inst = rec.instances
    doc = {
        "id": rec.id, "path": rec.path, "width": int(rec.width), "height": int(rec.height),
        "split": rec.split, "splits": list(splits), "label": rec.label, "source_id": rec.source_id,
        "mask_path": rec.mask_path, "instance_mask_path": rec.instance_mask_path,
        "captions": list(rec.captions), "extra": rec.extra,
        "instances": {
            "boxes": inst.boxes, "labels": inst.labels, "iscrowd": inst.iscrowd, "difficult": inst.difficult,
            "ids": inst.ids, "area": inst.area,  # NaN is written as null
            "segmentation": None if inst.segmentation is None else [segmentation_json(s) for s in inst.segmentation],
            "keypoints": inst.keypoints, "extra": inst.extra,
            # K, so that an image without objects keeps its (0, K, 3) keypoints
            "keypoints_per_object": None if inst.keypoints is None else int(inst.keypoints.shape[1]),
        },
        "image": image_ext, "files": dict(files),
    }
    if resized:
        doc.update(resized)
    return doc


def _dumps(doc: Any) -> bytes:
    """Compact JSON with keys in the order they were built: fixed by the input (the same input
    gives the same bytes), and the source's own order of dict keys (COCO ``info``, a record's
    ``extra``) and of splits survives the round trip."""
    import orjson

    return orjson.dumps(doc, default=_io.json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _check_relpath(rel: str, where: str) -> None:
    """A path named inside a shard is relative and stays below the folder it is extracted into."""
    if not rel or escapes(rel):
        raise InvalidAnnotationError(where, f"path {rel!r} is absolute or climbs out of the dataset; expected a "
                                            "relative path (the shard was not written by dsprep, or was edited)")


# ----------------------------------------------------------------------------- images

def _sniff(data: bytes, path: str) -> str:
    """The image's real format as a member extension (magic bytes; else the file's own suffix)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    return _suffix(path) or "bin"


def _suffix(path: str) -> str:
    return _UNSAFE.sub("", path.rsplit("/", 1)[-1].rpartition(".")[2].lower()) if "." in path else ""


def _read(path: Path, what: str, rec: Record) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(str(path), f"{what} of record {rec.id!r} not found (shards hold the images: the "
                                          "source must have them)") from None
    except IsADirectoryError:
        raise MalformedFileError(str(path), f"{what} of record {rec.id!r} is a directory") from None


def _rescaled_image(data: bytes, path: str, opts: Mapping[str, Any]) -> tuple[bytes, str, tuple[int, int],
                                                                              tuple[int, int]]:
    """Decode (EXIF orientation applied), scale so the long side is at most ``max_side``, re-encode.

    Returns ``(bytes, ext, (orig_w, orig_h), (new_w, new_h))``, sizes of the oriented image.
    An image already small enough and upright keeps its bytes.

    Raises:
        MalformedFileError: Pillow cannot decode it.
    """
    from PIL import Image

    max_side, quality = int(opts["max_side"]), int(opts["quality"])
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            orientation = _io.exif_orientation(im)
            sw, sh = im.size
            transposed = orientation in _TRANSPOSING
            ow, oh = (sh, sw) if transposed else (sw, sh)
            s = max_side / max(ow, oh)
            if s >= 1 and orientation == 1:
                return data, _sniff(data, path), (ow, oh), (ow, oh)
            nw, nh = (max(1, round(ow * s)), max(1, round(oh * s))) if s < 1 else (ow, oh)
            target = (nh, nw) if transposed else (nw, nh)  # in the stored orientation
            jpeg = fmt in ("JPEG", "MPO", "WEBP")
            box = None
            if fmt in ("JPEG", "MPO") and s < 1:
                # DCT-domain downscale to at least twice the target (as Image.thumbnail's reducing_gap),
                # and the box it returns keeps the geometry exact where the sizes do not divide
                drafted = im.draft("RGB" if im.mode != "L" else "L", (target[0] * 2, target[1] * 2))
                box = drafted[1] if drafted else None
            im.load()
            out = im
            if out.mode not in ("RGB", "L", "RGBA", "LA", "I;16", "I", "F") or (jpeg and out.mode not in ("RGB", "L")):
                out = out.convert("RGBA" if (not jpeg and ("transparency" in out.info or "A" in out.mode))
                                  else "RGB")
            if out.size != target or box is not None:
                out = out.resize(target, Image.Resampling.BILINEAR, box=box)
            if orientation in _ORIENT_OPS:
                out = out.transpose(getattr(Image.Transpose, _ORIENT_OPS[orientation]))
            buf = io.BytesIO()
            if jpeg:
                out.save(buf, "JPEG", quality=quality)
                return buf.getvalue(), "jpg", (ow, oh), (nw, nh)
            out.save(buf, "PNG")
            return buf.getvalue(), "png", (ow, oh), (nw, nh)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MalformedFileError(path, f"cannot decode the image to re-encode it ({err})") from None


def _nearest(im: Any, size: tuple[int, int]) -> Any:
    """A label map (PIL image) resized with nearest neighbour: one sampling for masks and RLE alike."""
    from PIL import Image

    return im.resize(size, Image.Resampling.NEAREST)


def _rescaled_mask(data: bytes, path: str, orig: tuple[int, int], new: tuple[int, int]) -> bytes:
    """A mask PNG at the new size (nearest neighbour: label values stay label values), palette kept."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.size != orig:
                raise InvalidAnnotationError(path, f"mask is {im.size[0]}x{im.size[1]}, its image "
                                                   f"{orig[0]}x{orig[1]}; expected the same size")
            out = _nearest(im, new)
            buf = io.BytesIO()
            out.save(buf, "PNG")
            return buf.getvalue()
    except (OSError, ValueError) as err:
        raise MalformedFileError(path, f"cannot decode the mask PNG to rescale it ({err})") from None


# ----------------------------------------------------------------------------- annotations at a new size

def _rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major runs, starting with zeros) of a binary mask."""
    flat = mask.ravel(order="F").astype(bool)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def _rescaled_segm(s: Any, sx: float, sy: float, orig: tuple[int, int], new: tuple[int, int],
                   where: str) -> tuple[Any, float | None]:
    """One object's segmentation at the new size; and its pixel area when it is an RLE."""
    from PIL import Image

    from ..masks import encode_mask, segmentation_mask

    s = decode_segmentation(s)
    if isinstance(s, dict):
        try:
            m = segmentation_mask(s, orig[1], orig[0])
        except (ValueError, TypeError) as err:
            raise InvalidAnnotationError(where, f"RLE mask: {err}") from None
        small = np.asarray(_nearest(Image.fromarray(m * np.uint8(255)), new)) > 0
        if isinstance(s.get("counts"), (list, tuple, np.ndarray)):
            return {"size": [new[1], new[0]], "counts": _rle_counts(small)}, float(small.sum())
        return encode_mask(small), float(small.sum())
    if isinstance(s, (list, tuple)):
        out = []
        for p in s:
            a = np.asarray(p, np.float64).ravel().copy()
            a[0::2] *= sx
            a[1::2] *= sy
            out.append(a)
        return out, None
    return s, None


def _rescaled_record(rec: Record, orig: tuple[int, int], new: tuple[int, int], where: str) -> Record:
    """``rec`` with boxes, polygons, RLE, keypoints and areas at the new image size."""
    sx, sy = new[0] / orig[0], new[1] / orig[1]
    inst = rec.instances
    boxes = inst.boxes * np.array([sx, sy, sx, sy])
    area = inst.area * (sx * sy)
    segm = None
    if inst.segmentation is not None:
        segm = []
        for j, s in enumerate(inst.segmentation):
            scaled, pixels = _rescaled_segm(s, sx, sy, orig, new, f"{where}: object {j}")
            segm.append(scaled)
            if pixels is not None and np.isfinite(area[j]):
                area[j] = pixels  # an RLE's area is its pixel count (COCO), counted at the new size
    kp = None
    if inst.keypoints is not None:
        kp = inst.keypoints.copy()
        kp[..., 0] *= sx
        kp[..., 1] *= sy
    scaled = Instances._trusted(boxes=boxes, labels=inst.labels, iscrowd=inst.iscrowd, difficult=inst.difficult,
                                ids=inst.ids, area=area, segmentation=segm, keypoints=kp, extra=inst.extra)
    return rec.replace(instances=scaled, width=new[0], height=new[1])


# ----------------------------------------------------------------------------- one sample

def _companion_files(rec: Record) -> list[tuple[str, str, str | None]]:
    """``(member suffix, relative path, extra key)`` of every file besides the image the record names:
    its masks, then paths in ``extra`` (keys ending in ``_path``, or ``semantic_source``)."""
    out: list[tuple[str, str, str | None]] = []
    seen: dict[str, str] = {}
    for name, rel in (("mask", rec.mask_path), ("inst", rec.instance_mask_path)):
        if rel and rel not in seen:
            seen[rel] = f"{name}.{_suffix(rel) or 'png'}"
            out.append((seen[rel], rel, None))
    k = 0
    for key in sorted(rec.extra or {}):
        rel = rec.extra[key]
        if is_file_field(key, rel) and rel not in seen:
            k += 1
            seen[rel] = f"file{k}.{_suffix(rel) or 'bin'}"
            out.append((seen[rel], rel, key))
    return out


def _sample(rec: Record, key: str, splits: Sequence[str], root: Path | None, image_opts: Any,
            lost: dict[str, int]) -> list[tuple[str, bytes]]:
    """The members of one sample: ``{key}.json``, the image, then the masks and other files."""
    def src(rel: str) -> Path:
        return root / rel if root is not None else Path(rel)

    data = _read(src(rec.path), "image", rec)
    files = _companion_files(rec)
    resized = None
    if image_opts == "keep":
        image, ext = data, _sniff(data, rec.path)
        contents = [_read(src(rel), "mask" if k is None else f"file {rel} ({k})", rec) for _, rel, k in files]
    else:
        image, ext, orig, new = _rescaled_image(data, str(src(rec.path)), image_opts)
        if rec.width and rec.height and (rec.width, rec.height) != orig:
            raise InvalidAnnotationError(str(src(rec.path)), f"record {rec.id!r} says {rec.width}x{rec.height}, "
                                         f"the image decodes to {orig[0]}x{orig[1]} (EXIF orientation applied); "
                                         "its boxes cannot be scaled with it")
        kept = [(m, rel, k) for m, rel, k in files if k is None]
        dropped = [k for _, _, k in files if k is not None]
        if dropped:  # polygons.json, colour PNGs...: not rescalable here, so not stored
            what = "files beside the image not rescaled by --max-side (" + ", ".join(sorted(dropped)) + ")"
            lost[what] = lost.get(what, 0) + len(dropped)
            rec = rec.replace(extra={k: v for k, v in rec.extra.items() if k not in dropped})
        files = kept
        contents = [_rescaled_mask(_read(src(rel), "mask", rec), str(src(rel)), orig, new) for _, rel, _ in files]
        files = [(f"{m.split('.')[0]}.png", rel, k) for m, rel, k in files]
        if new != orig or rec.width == 0:
            rec = _rescaled_record(rec, orig, new, str(src(rec.path)))
        resized = {"orig_width": orig[0], "orig_height": orig[1], "scale": [new[0] / orig[0], new[1] / orig[1]]}
    doc = sample_doc(rec, splits, ext, {m: rel for m, rel, _ in files}, resized)
    return ([(f"{key}.json", _dumps(doc)), (f"{key}.{ext}", image)]
            + [(f"{key}.{m}", c) for (m, _, _), c in zip(files, contents)])


def _key(index: int, rec_id: str) -> str:
    """The sample key: the record's index (unique, gives back the record order) and its id made tar-
    and WebDataset-safe (no dots, no slashes: WebDataset splits the key at the first dot)."""
    return f"{index:06d}_{_UNSAFE.sub('_', rec_id)[-64:]}"


def _key_index(key: str, where: str) -> int:
    head = key.split("_", 1)[0]
    if not head.isdigit():
        raise MalformedFileError(where, f"sample key {key!r} does not start with its record index (NNNNNN_...)")
    return int(head)


# ----------------------------------------------------------------------------- one chunk

def _write_chunk(job: Mapping[str, Any]) -> dict[str, Any]:
    """Write the shards of one chunk and its manifest; returns the manifest.

    The same function runs in a local worker, a Ray task or a job-array task. Shards
    are written through temporary files renamed when complete, the manifest last; a
    re-run of the chunk replaces exactly its own shards (and removes those of an older
    run of it that this run did not write).
    """
    dest, c = Path(job["dest"]), int(job["chunk"])
    root = Path(job["root"]) if job["root"] is not None else None
    limit = int(job["options"]["shard_size"])
    policy = ErrorPolicy(job["on_error"])
    open_: dict[str, TarShardWriter] = {}
    count: dict[str, int] = {}
    done: list[tuple[int, int, dict]] = []
    lost: dict[str, int] = {}
    n_obj = 0
    order = {t: i for i, t in enumerate(job["tokens"])}

    def close(token: str) -> None:
        w = open_.pop(token)
        entry = w.close()
        done.append((order[token], count[token] - 1,
                     {"path": f"{SHARDS_DIR}/{w.path.name}", "split": job["tokens"][token], **entry}))

    try:
        for index, token, splits, rec in job["records"]:
            key = _key(index, rec.id)
            try:
                members = _sample(rec, key, splits, root, job["options"]["images"], lost)
            except FormatError as err:
                policy.handle(err)
                continue
            size = member_bytes(members)
            w = open_.get(token)
            if w is not None and w.size_after(size) > limit:
                close(token)
                w = None
            if w is None:
                n = count.get(token, 0)
                count[token] = n + 1
                w = open_[token] = TarShardWriter(dest / SHARDS_DIR / f"{token}-{c:05d}-{n:05d}.tar")
            w.add(key, members)
            n_obj += len(rec.instances)
        for token in list(open_):
            close(token)
    except BaseException:
        for w in open_.values():
            w.abort()
        raise
    shards = [e for _, _, e in sorted(done, key=lambda t: (t[0], t[1]))]
    manifest = {"chunk": c, "num_chunks": job["num_chunks"], "num_tasks": job["num_tasks"],
                "dataset": job["fingerprint"], "options": job["options"], "records": len(job["records"]),
                "objects": n_obj, "skipped": policy.examples[:5], "skipped_count": policy.count, "lost": lost,
                "shards": shards}
    _remove_stale_shards(dest, c, {Path(e["path"]).name for e in shards})
    _atomic_write(dest / MANIFESTS_DIR / f"{c:05d}.json", _dumps(manifest))
    return manifest


def _write_chunks(jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`_write_chunk` of a one-job list (the shape :func:`dsprep._io.parallel_map` hands over)."""
    (job,) = jobs
    return _write_chunk(job)


def _remove_stale_shards(dest: Path, chunk: int, keep: set[str]) -> None:
    try:
        names = os.listdir(dest / SHARDS_DIR)
    except FileNotFoundError:
        return
    for name in names:
        m = _SHARD_NAME.fullmatch(name)
        if m and int(m["chunk"]) == chunk and name not in keep:
            os.unlink(dest / SHARDS_DIR / name)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary sibling and a rename: readers see the old or the new file."""
    import uuid

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- the plan

def _ranges(indices: Sequence[int]) -> list[list[int]]:
    """``[[start, stop], ...]`` runs of consecutive record indices (a split is usually a few runs)."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def _tokens(split_names: Sequence[str], has_unsplit: bool) -> dict[str, str | None]:
    """File-name token -> split name (None: records in no split), unique even where names clash."""
    out: dict[str, str | None] = {}
    names: list[str | None] = list(split_names) + ([None] if has_unsplit else [])
    for i, name in enumerate(names):
        token = "_nosplit" if name is None else (_UNSAFE.sub("_", name) or "_")
        if token in out:
            token = f"{token}_{i}"
        out[token] = name
    return out


def _plan(dataset: Dataset, dest: Path, options: Mapping[str, Any], *, chunk_size: int | None,
          num_tasks: int | None, on_error: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dataset-level plan (``manifests/dataset.json``) and one job per chunk of records."""
    records = dataset.records
    index_of = {r.id: i for i, r in enumerate(records)}
    splits = {name: [index_of[i] for i in ids if i in index_of] for name, ids in dataset.splits.items()}
    member_of: dict[int, list[str]] = {}
    for name, idx in splits.items():
        for i in idx:
            member_of.setdefault(i, []).append(name)
    size = {name: len(idx) for name, idx in splits.items()}
    position = {name: k for k, name in enumerate(splits)}
    unsplit = any(i not in member_of for i in range(len(records)))
    tokens = _tokens(list(splits), unsplit)
    token_of = {name: t for t, name in tokens.items()}
    chunk_size = int(chunk_size) if chunk_size else _auto_chunk_size(len(records))
    num_chunks = max(1, math.ceil(len(records) / chunk_size))
    ids_sha = hashlib.sha256("\n".join(f"{r.id}\t{r.path}" for r in records).encode("utf-8", "surrogatepass"))
    info = {k: v for k, v in dataset.info.items() if k != "shard_files"}
    plan = {"format": FORMAT_TAG + "-plan", "version": VERSION, "source_format": dataset.format,
            "records": len(records), "records_sha256": ids_sha.hexdigest(), "chunk_size": chunk_size,
            "num_chunks": num_chunks, "num_tasks": num_tasks, "options": dict(options),
            "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory, "extra": dict(c.extra)}
                           for c in dataset.categories],
            "info": info, "splits": {name: _ranges(idx) for name, idx in splits.items()},
            "tokens": tokens}
    fingerprint = hashlib.sha256(_dumps(plan)).hexdigest()
    jobs = []
    for c in range(num_chunks):
        rows = []
        for i in range(c * chunk_size, min(len(records), (c + 1) * chunk_size)):
            listed = member_of.get(i, [])
            # a record is stored once, under the smallest split that lists it (VOC train/val rather
            # than trainval); readers of the other splits find it through index.json "samples"
            home = min(listed, key=lambda s: (size[s], position[s])) if listed else None
            rows.append((i, token_of[home], listed, records[i]))
        jobs.append({"chunk": c, "num_chunks": num_chunks, "num_tasks": num_tasks, "records": rows,
                     "root": None if dataset.root is None else str(dataset.root), "dest": str(dest),
                     "options": dict(options), "tokens": tokens, "fingerprint": fingerprint,
                     "on_error": on_error})
    return plan, jobs


def task_chunks(num_chunks: int, num_tasks: int, task_index: int) -> range:
    """The chunks task ``task_index`` of ``num_tasks`` writes: a contiguous share, in record order."""
    return range(task_index * num_chunks // num_tasks, (task_index + 1) * num_chunks // num_tasks)


# ----------------------------------------------------------------------------- backends

def _run_local(jobs: Sequence[Mapping[str, Any]], workers: int | None, progress: bool | None) -> list[dict]:
    return _io.parallel_map(_write_chunks, jobs, workers=workers, chunk=1, desc="shards",
                            show_progress=progress)


def _ray_chunk(job: Mapping[str, Any]) -> dict[str, Any] | DsprepError:
    """:func:`_write_chunk` as a Ray task: bad input is returned, not raised, so that Ray's retries
    (``retry_exceptions=[OSError]``) never re-run a chunk for a missing image (MissingFileError is
    an OSError too) and the driver raises the same error the local backend does."""
    try:
        return _write_chunk(job)
    except DsprepError as err:
        return err


def _run_ray(jobs: Sequence[Mapping[str, Any]], workers: int | None, progress: bool | None,
             address: str | None, max_retries: int) -> list[dict]:
    """Each chunk a plain Ray task (not Ray Data): it writes its shards straight to ``dest`` (a
    folder every node sees) and returns only its manifest. Retried ``max_retries`` times when a
    worker dies or an OSError is raised; bad input (a DsprepError) is not retried."""
    try:
        import ray
    except ImportError:
        raise DsprepError("--backend ray needs Ray: pip install 'dsprep[ray]'") from None
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers or _io.default_workers(), **kwargs)
        started = True
    try:
        task = ray.remote(max_retries=max_retries, retry_exceptions=[OSError])(_ray_chunk)
        refs = [task.remote(job) for job in jobs]
        out = []
        for ref in _io.progress(refs, total=len(refs), desc="shards (ray)", enabled=progress, unit="chunk"):
            result = ray.get(ref)
            if isinstance(result, DsprepError):
                raise result
            out.append(result)
        return out
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- write

def write(dataset: Dataset, dest: str | os.PathLike, *, images: str = "keep", progress: bool | None = None,
          on_error: str = "raise", shard_size: str | int = DEFAULT_SHARD_SIZE, max_side: int | None = None,
          quality: int = 90, chunk_size: int | None = None, workers: int | None = None, backend: str = "local",
          ray_address: str | None = None, max_retries: int = 3, num_tasks: int | None = None,
          task_index: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write ``dataset`` as tar shards into the existing directory ``dest``.

    Args:
        images: ``keep`` (the original bytes; ``link`` and ``copy`` mean the same here) unless
            ``max_side`` is given.
        shard_size: a shard closes before it would pass this size (``"1GB"``, ``"500MB"``, bytes).
        max_side, quality: re-encode every image so that its long side is at most ``max_side``
            (JPEG at ``quality``; PNG stays PNG), scaling the annotations with it.
        chunk_size: records per chunk (default: from the record count, 256..10000).
        workers: local worker processes (default: all cores); for Ray on its own machine, its CPUs.
        backend: ``local`` or ``ray`` (``ray_address`` or ``$RAY_ADDRESS`` joins a cluster).
        num_tasks, task_index: write only this task's share of the chunks and its manifests
            (no index: :func:`merge` writes it once every task is done).
        overwrite: with ``num_tasks``, let this task replace the plan of another conversion
            found in ``dest`` (otherwise refused).

    Returns:
        ``{"images", "objects", "lost", "shards", "bytes", "skipped"}`` (of this task's share).

    Raises:
        MissingFileError, MalformedFileError: an image or mask cannot be read or decoded.
    """
    check_choice("backend", backend, BACKENDS)
    options = {"images": _image_options(images, max_side, quality), "shard_size": parse_size(shard_size)}
    dest = Path(dest)
    plan, jobs = _plan(dataset, dest, options, chunk_size=chunk_size, num_tasks=num_tasks, on_error=on_error)
    plan_bytes = _dumps(plan)
    if num_tasks is not None:
        _check_same_plan(dest / MANIFESTS_DIR / PLAN, plan_bytes, overwrite)
        jobs = [jobs[c] for c in task_chunks(len(jobs), int(num_tasks), int(task_index or 0))]
    _atomic_write(dest / MANIFESTS_DIR / PLAN, plan_bytes)
    if backend == "ray":
        manifests = _run_ray(jobs, workers, progress, ray_address, max_retries)
    else:
        manifests = _run_local(jobs, workers, progress)
    if num_tasks is None:
        merge(dest)
    return _report(manifests)


def _check_same_plan(path: Path, plan: bytes, overwrite: bool) -> None:
    """A task of a job array joins only the conversion whose plan it would write itself."""
    from ..errors import OutputExistsError

    try:
        found = path.read_bytes()
    except FileNotFoundError:
        return
    if found != plan and not overwrite:
        raise OutputExistsError(f"{path}: this OUT holds shards of another conversion (different input, options, "
                                "chunk size or --num-tasks); give every task the same command, or another --out "
                                "(--overwrite lets this task replace that plan)")


def _report(manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    lost: dict[str, int] = {}
    for m in manifests:
        for what, n in m["lost"].items():
            lost[what] = lost.get(what, 0) + n
    skipped = sum(m["skipped_count"] for m in manifests)
    if skipped:
        examples = [e for m in manifests for e in m["skipped"]][:5]
        log.warning("skipped %d bad records; first: %s", skipped, " | ".join(examples))
    return {"images": sum(e["samples"] for m in manifests for e in m["shards"]),
            "objects": sum(m["objects"] for m in manifests), "lost": lost,
            "shards": sum(len(m["shards"]) for m in manifests),
            "bytes": sum(e["bytes"] for m in manifests for e in m["shards"]), "skipped": skipped}


# ----------------------------------------------------------------------------- merge

def _load_manifests(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plan and every chunk's manifest, checked to belong together.

    Raises:
        MissingFileError: the plan or a chunk's manifest is absent (naming the task that writes it).
        MalformedFileError: a manifest of another conversion, or not JSON.
    """
    plan_path = out / MANIFESTS_DIR / PLAN
    if not plan_path.is_file():
        raise MissingFileError(str(plan_path), "no shards conversion here: expected the plan every task writes "
                                               "first (run dsprep convert ... --to shards --out OUT)")
    plan = _io.read_json_object(plan_path)
    fingerprint = hashlib.sha256(_dumps(plan)).hexdigest()
    num_chunks, num_tasks = int(plan["num_chunks"]), plan.get("num_tasks")
    manifests, missing = [], []
    for c in range(num_chunks):
        path = out / MANIFESTS_DIR / f"{c:05d}.json"
        if not path.is_file():
            missing.append(c)
            continue
        m = _io.read_json_object(path)
        if m.get("dataset") != fingerprint or m.get("chunk") != c:
            raise MalformedFileError(str(path), "written by another conversion of this OUT (different input, "
                                                "options, chunk size or --num-tasks) than manifests/dataset.json; "
                                                "re-run that task with the same command as the others")
        manifests.append(m)
    if missing:
        if num_tasks:
            tasks = sorted({t for t in range(int(num_tasks)) for c in missing
                            if c in task_chunks(num_chunks, int(num_tasks), t)})
            who = (f"task(s) {', '.join(map(str, tasks))} of --num-tasks {num_tasks} (--task-index "
                   f"{tasks[0]}...) have not finished")
        else:
            who = "the conversion did not finish"
        raise MissingFileError(str(out / MANIFESTS_DIR), f"{len(missing)} of {num_chunks} chunk manifests are "
                               f"missing (chunks {', '.join(map(str, missing[:10]))}"
                               f"{'...' if len(missing) > 10 else ''}): {who}; run them, then merge again")
    return plan, manifests


def merge(out: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """Merge every chunk's manifest into ``out/index.json`` (atomically: temporary file, rename).

    Checks that all chunks' manifests are there and belong to the same conversion, that
    every shard they name exists with the size recorded (and with ``verify``, its sha256),
    and removes shard files no manifest names (an older run's, or a crashed task's
    temporary files).

    Returns:
        The index (as written).

    Raises:
        MissingFileError: a manifest or a shard is missing (naming the task to re-run).
        MalformedFileError: a shard of another size or checksum; manifests of two conversions.
    """
    out = Path(out)
    plan, manifests = _load_manifests(out)
    tokens = plan["tokens"]
    order = {t: k for k, t in enumerate(tokens)}
    entries = [e for m in manifests for e in m["shards"]]
    for e in entries:
        _check_shard(out, e, verify)
    _remove_unlisted(out, {Path(e["path"]).name for e in entries})

    def sort_key(e: Mapping[str, Any]) -> tuple[int, int, int]:
        m = _SHARD_NAME.fullmatch(Path(e["path"]).name)
        return order[m["token"]], int(m["chunk"]), int(m["n"])

    entries.sort(key=sort_key)
    where: dict[int, tuple[int, int]] = {}
    for s, e in enumerate(entries):
        for j, (key, _, _) in enumerate(e["members"]):
            where[_key_index(key, e["path"])] = (s, j)
    split_counts: dict[str, int] = {}
    samples: dict[str, list[list[int]]] = {}
    for name, ranges in plan["splits"].items():
        pos = [list(where[i]) for a, b in ranges for i in range(a, b) if i in where]
        split_counts[name] = len(pos)
        own = [[s, j] for s, e in enumerate(entries) if e["split"] == name for j in range(e["samples"])]
        if pos != own:
            samples[name] = pos
    index = {"format": FORMAT_TAG, "version": VERSION, "source_format": plan["source_format"],
             "categories": plan["categories"], "info": plan["info"], "splits": split_counts,
             "images": plan["options"]["images"], "records": len(where), "shards": entries, "samples": samples}
    _atomic_write(out / INDEX, _dumps(index))
    return index


def _check_shard(out: Path, e: Mapping[str, Any], verify: bool) -> None:
    path = out / e["path"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MissingFileError(str(path), "shard named by its chunk's manifest not found; re-run the task that "
                                          "wrote it") from None
    if size != e["bytes"]:
        raise MalformedFileError(str(path), f"{size} bytes, its manifest says {e['bytes']}: the shard was changed "
                                            "or cut short; re-run the task that wrote it")
    if verify:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != e["sha256"]:
            raise MalformedFileError(str(path), "sha256 differs from its manifest's: the shard is corrupt; re-run "
                                                "the task that wrote it")


def _remove_unlisted(out: Path, keep: set[str]) -> None:
    folder = out / SHARDS_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        stale = _SHARD_NAME.fullmatch(name) and name not in keep
        leftover = name.startswith(".") and ".tar.tmp-" in name
        if stale or leftover:
            log.warning("removing %s/%s: no manifest names it (left by an older or interrupted run)",
                        folder, name)
            os.unlink(folder / name)


# ----------------------------------------------------------------------------- parse

def parse(path: str | os.PathLike, *, split: str | None = None, on_error: str = "raise",
          workers: int | None = None, progress: bool | None = None, **options: Any) -> Dataset:
    """Read ``index.json`` and every sample's JSON member (no image is decoded) into a Dataset.

    Records keep their original paths (``JPEGImages/000005.jpg``) and the dataset its
    source format and info, so that writing it in the source format gives the source
    back; ``dataset.info["shard_files"]`` maps each path to ``[shard, offset, size,
    kind]`` (kind ``image`` or ``file``) in the tars, which :func:`dsprep.conversion.write_dataset`
    extracts for the writer.

    Args:
        path: the shards folder (or its ``index.json``), or a URL (``http(s)://``, ``s3://``...
            with ``dsprep[remote]``): then only ``index.json`` is read, and the Dataset has no
            records but ``info["shards"]``, from which its loader streams the split.
        split: only this split's records.

    Raises:
        MissingFileError: no index.json, or a shard it names is absent.
        MalformedFileError: index.json or a shard does not match (size, tar headers, member
            names), or a sample's JSON is not valid.
        InvalidAnnotationError: a sample's fields have the wrong type or shape.
    """
    if options:
        log.debug("shards.parse ignores options %s", sorted(options))
    if is_url(path):
        return _remote(str(path), split)
    root = Path(path)
    if root.is_file():
        root = root.parent
    index = _read_index(root)
    _check_split(root, index, split)
    policy = ErrorPolicy(on_error)
    shards = index["shards"]
    members = {name: split_members(index, name) for name in index["splits"] if split in (None, name)}
    if split is None:
        members[None] = split_members(index, None)  # every sample, the unsplit ones included
    wanted = sorted({s for runs in members.values() for s, _ in runs})
    records: list[tuple[int, Record]] = []
    files: dict[str, list] = {}
    for s in _io.progress(wanted, total=len(wanted), desc="shards", enabled=progress, unit="shard"):
        records.extend(_read_shard(root, shards[s], files, policy))
    records.sort(key=lambda t: t[0])  # the source's record order (the key's index)
    records = _known_labels(records, {int(c["id"]) for c in index["categories"]}, root, policy)
    id_of = {i: r.id for i, r in records}
    splits = {name: _split_ids(shards, runs, id_of) for name, runs in members.items() if name is not None}
    recs = [r for _, r in records]
    if split is not None:
        keep = set(splits[split])
        recs = [r for r in recs if r.id in keep]
    cats = [Category(int(c["id"]), str(c["name"]), c.get("supercategory") or "", dict(c.get("extra") or {}))
            for c in index["categories"]]
    info = {**dict(index.get("info") or {}), "shard_files": files, "shards_images": index.get("images")}
    if policy.count:
        info["skipped"] = policy.count
        policy.summary("samples")
    return Dataset(cats, recs, splits=splits, info=info, root=root, format=index.get("source_format") or NAME)


def _known_labels(records: list[tuple[int, Record]], ids: set[int], root: Path, policy: ErrorPolicy
                  ) -> list[tuple[int, Record]]:
    """The records whose object labels (and image label) are category ids of the index; another is
    an error naming it (``on_error="warn"``: skipped), as the stream names it, and as every other
    format's reader would refuse it once written."""
    known = np.fromiter(ids, np.int64, len(ids))
    out = []
    for i, r in records:
        labels = r.instances.labels
        bad = sorted(set(labels[~np.isin(labels, known)].tolist()))
        if r.label is not None and r.label not in ids:
            bad.append(r.label)
        if bad:
            policy.handle(InvalidAnnotationError(f"{root / INDEX}: sample {r.id}", f"labels {bad[:5]} are not "
                                                 "category ids of the index; expected one of its categories"))
            continue
        out.append((i, r))
    return out


def _check_split(root: Any, index: Mapping[str, Any], split: str | None) -> None:
    """``split=`` must name one of the index's splits (a named error, not a KeyError)."""
    if split is not None and not index["splits"]:
        raise UnknownNameError(f"{root}: these shards name no splits (their source had none), so "
                               f"split={split!r} cannot be chosen; leave split out to read every sample")
    if split is not None:
        check_choice("split", split, list(index["splits"]))


def _remote(url: str, split: str | None) -> Dataset:
    """Shards at a URL (fsspec; ``dsprep[remote]``): ``index.json`` only, read once. Reading every
    sample's JSON up front would read the whole dataset over the network, so the records are left
    to the stream (``info["shards"]``: the root, the index and the split, which the loaders read)."""
    index = read_index(url)
    _check_split(url, index, split)
    cats = [Category(int(c["id"]), str(c["name"]), c.get("supercategory") or "", dict(c.get("extra") or {}))
            for c in index["categories"]]
    info = {**dict(index.get("info") or {}), "shards": {"root": url, "index": index, "split": split}}
    return Dataset(cats, [], info=info, root=url, format=NAME)


def _split_ids(shards: Sequence[Mapping[str, Any]], runs: Sequence[tuple[int, Sequence[int]]],
               id_of: Mapping[int, str]) -> list[str]:
    """The record ids of a split's ``[(shard, [member...])]`` runs, in order (skipped samples left out)."""
    ids = []
    for s, js in runs:
        for j in js:
            i = _key_index(shards[s]["members"][j][0], shards[s]["path"])
            if i in id_of:
                ids.append(id_of[i])
    return ids


def _read_index(root: Path) -> dict[str, Any]:
    """``index.json`` (read and checked by :func:`dsprep._shardio.read_index`), each shard's path
    also checked to stay inside the folder."""
    index = read_index(root)  # the types and numbers of every entry checked there
    for e in index["shards"]:
        _check_relpath(e["path"], str(root / INDEX))
    return index


def _record(doc: Any, where: str) -> Record:
    """A sample's JSON as a record (:func:`dsprep._shardio.record_from_sample`), its paths checked
    and the ``--max-side`` fields (``orig_width``, ``orig_height``, ``scale``) in ``extra``."""
    if not isinstance(doc, dict):
        raise InvalidAnnotationError(where, f"expected a JSON object, found {type(doc).__name__}")
    rec = record_from_sample(doc, where)
    for rel in (rec.path, rec.mask_path, rec.instance_mask_path):
        if rel is not None:
            _check_relpath(rel, where)
    rec.extra.update({k: doc[k] for k in ("orig_width", "orig_height", "scale") if k in doc})
    return rec


def _read_shard(root: Path, e: Mapping[str, Any], files: dict[str, list],
                policy: ErrorPolicy) -> list[tuple[int, Record]]:
    """The records of one shard, read at the offsets index.json gives (headers checked)."""
    import orjson

    path = root / e["path"]
    where = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MissingFileError(where, "shard named by index.json not found") from None
    except OSError as err:  # a name too long, a loop of links...
        raise MalformedFileError(where, f"cannot read the shard named by index.json ({err.strerror or err})") from None
    if size != e.get("bytes"):
        raise MalformedFileError(where, f"{size} bytes, index.json says {e.get('bytes')}: the shard was changed "
                                        "or cut short, or index.json is another conversion's")
    out = []
    with open(path, "rb") as f:
        for key, offset, length in e["members"]:
            data_at, n = read_member(f, offset, f"{key}.json", where)
            f.seek(data_at)
            raw = f.read(n)
            member = f"{where}: member {key}.json"
            try:
                doc = orjson.loads(raw)
                rec = _record(doc, member)
            except orjson.JSONDecodeError as err:
                policy.handle(MalformedFileError(member, f"not valid JSON ({err})"))
                continue
            except FormatError as err:
                policy.handle(err)
                continue
            at = data_at + padded(n)
            names = [(doc.get("image"), rec.path, "image")] + [(m, rel, "file")
                                                               for m, rel in (doc.get("files") or {}).items()]
            for ext, rel, kind in names:
                _check_relpath(rel, member)
                data_at, n = read_member(f, at, f"{key}.{ext}", where)
                files[rel] = [e["path"], data_at, n, kind]
                at = data_at + padded(n)
            if at != offset + length:
                raise MalformedFileError(where, f"sample {key}: members end at byte {at}, index.json says "
                                                f"{offset + length}")
            out.append((_key_index(key, where), rec))
    return out
