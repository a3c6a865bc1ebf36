"""Shards written by hand, following the shard format (docs/shards.md) with tarfile + orjson.

The streaming loader's tests read these, and also what the format cannot produce on its own:
a corrupt sample, a truncated shard, a split listed as explicit samples. ``open_shards`` gives
the Dataset that ``dsprep.load(format="shards", root=...)`` returns.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from dsprep._shardio import read_index
from dsprep.records import Category, Dataset, Record


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def sample_json(r: Record, splits: list[str], image: str, files: dict[str, str]) -> dict:
    inst = r.instances
    segm = inst.segmentation
    return {
        "id": r.id, "path": r.path, "width": r.width, "height": r.height, "split": r.split, "splits": splits,
        "label": r.label, "source_id": r.source_id, "mask_path": r.mask_path,
        "instance_mask_path": r.instance_mask_path, "captions": list(r.captions), "extra": dict(r.extra),
        "instances": {
            "boxes": inst.boxes.tolist(), "labels": inst.labels.tolist(), "iscrowd": inst.iscrowd.tolist(),
            "difficult": inst.difficult.tolist(), "ids": inst.ids.tolist(),
            "area": [_num(a) for a in inst.area.tolist()],
            "segmentation": None if segm is None else [s.decode() if isinstance(s, bytes) else s for s in segm],
            "keypoints": None if inst.keypoints is None else inst.keypoints.tolist(),
            "keypoints_per_object": None if inst.keypoints is None else inst.keypoints.shape[1],
            "extra": inst.extra,
        },
        "image": image, "files": files,
    }


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o644, 0, 0, "", ""
    ti.type = tarfile.REGTYPE
    tf.addfile(ti, io.BytesIO(data))


def _ext(data: bytes) -> str:
    return "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"


def write_shards(ds: Dataset, out: Path, *, per_shard: int = 4, source_format: str = "coco") -> dict:
    """Write ``ds`` (its images read from ``ds.root``) as shards in ``out``; returns the index.

    Records go to the shards of their home split (the smallest split listing them),
    ``per_shard`` samples a shard; a split holding records stored under another split is
    listed in ``"samples"``.
    """
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    split_of = {}
    order = list(ds.splits)
    for s in order:
        for rid in ds.splits[s]:
            split_of.setdefault(rid, []).append(s)
    home = {rid: min(s, key=lambda name: len(ds.splits[name])) for rid, s in split_of.items()}
    by_split: dict[str, list[Record]] = {}
    for n, r in enumerate(ds.records):
        by_split.setdefault(home[r.id], []).append((n, r))
    shards, where = [], {}
    for split in order:
        recs = by_split.get(split, [])
        for c, a in enumerate(range(0, len(recs), per_shard)):
            path = f"shards/{split}-00000-{c:05d}.tar"
            members = []
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
                for n, r in recs[a:a + per_shard]:
                    key = f"{n:06d}_" + re.sub(r"[^A-Za-z0-9_-]+", "_", r.id)[-64:]
                    start = tf.offset
                    img = (Path(ds.root) / r.path).read_bytes()
                    files = {k: p for k, p in (("mask.png", r.mask_path), ("inst.png", r.instance_mask_path)) if p}
                    doc = sample_json(r, split_of[r.id], _ext(img), files)
                    _add(tf, f"{key}.json", orjson.dumps(doc))
                    _add(tf, f"{key}.{_ext(img)}", img)
                    for suffix, rel in files.items():
                        _add(tf, f"{key}.{suffix}", (Path(ds.root) / rel).read_bytes())
                    members.append([key, start, tf.offset - start])
                    where[r.id] = (len(shards), len(members) - 1)
            data = buf.getvalue()
            (out / path).write_bytes(data)
            shards.append({"path": path, "split": split, "samples": len(members), "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "members": members})
    samples = {s: [list(where[i]) for i in ds.splits[s]] for s in order
               if any(home[i] != s for i in ds.splits[s])}
    index = {"format": "dsprep-shards", "version": 1, "source_format": source_format,
             "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory, "extra": dict(c.extra)}
                            for c in ds.categories],
             "info": {k: v for k, v in ds.info.items() if isinstance(v, (str, int, float, dict, list))},
             "splits": {s: len(ds.splits[s]) for s in order}, "images": "keep", "records": len(ds),
             "shards": shards, "samples": samples}
    (out / "index.json").write_bytes(orjson.dumps(index))
    return index


def open_shards(root: str | Path, split: str | None = None) -> Dataset:
    """What ``dsprep.load(format="shards", root=root, split=split)`` returns (until the format lands)."""
    index = read_index(str(root))
    cats = [Category(c["id"], c["name"], c.get("supercategory", ""), c.get("extra") or {})
            for c in index["categories"]]
    info = {**index["info"], "shards": {"root": str(root), "index": index, "split": split}}
    return Dataset(cats, [], info=info, root=str(root), format="shards")


def corrupt_member(out: Path, index: dict, shard: int, member: int, at: int = 600) -> None:
    """Flip bytes inside a sample (its JSON member's data) so that it no longer parses."""
    sh = index["shards"][shard]
    path = Path(out) / sh["path"]
    data = bytearray(path.read_bytes())
    _, off, _ = sh["members"][member]
    data[off + 512:off + 512 + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def rgb_digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
