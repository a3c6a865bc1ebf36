"""The records of a Dataset as flat numpy buffers, shared copy-free by DataLoader workers.

A list of Python objects shared with forked workers is copied page by page
as the workers read it (reading a Python object writes its reference
count); the same data in a few numpy arrays is not. :class:`RecordTable`
is built once per torch dataset, from the Dataset's columns (a lazily listed
ImageNet tree builds no Record per image), and holds everything a sample
needs: paths, ids, sizes, image labels and, per object, boxes, labels,
flags, keypoints, raw segmentations and instance-mask values.

No torch here (numpy only): a future record source (the shards reader) can
build the same table.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from .._io import json_default
from ..errors import InvalidAnnotationError, check_choice
from ..masks import mask_palette

__all__ = ["RecordTable"]

class _Strings:
    """Many strings in one uint8 buffer plus int64 offsets (no Python object per string)."""

    def __init__(self, items: Iterable[str | bytes | None]):
        items = items if isinstance(items, list) else list(items)
        n = len(items)
        nones = items.count(None)
        if nones in (0, n):
            self.present = np.full(n, nones == 0, bool)
            strs = items if nones == 0 else [""] * n
        else:
            self.present = np.fromiter((s is not None for s in items), bool, n)
            strs = [("" if s is None else s) for s in items]
        try:
            text: str | None = "".join(strs)
        except TypeError:  # bytes among them
            text = None
        if text is not None and text.isascii():
            # The common case (paths, ids): one join and one encode, lengths in characters
            # are lengths in bytes. 1.28M ImageNet paths: 0.3 s instead of 1.1 s.
            lengths = np.fromiter(map(len, strs), np.int64, n)
            data = text.encode("ascii")
        else:
            parts = [s if isinstance(s, bytes) else str(s).encode("utf-8") for s in strs]
            lengths = np.fromiter(map(len, parts), np.int64, n)
            data = b"".join(parts)
        self.offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.buf = np.frombuffer(data, np.uint8).copy()

    def __len__(self) -> int:
        return len(self.present)

    def bytes(self, i: int) -> bytes | None:
        if not self.present[i]:
            return None
        return self.buf[self.offsets[i]:self.offsets[i + 1]].tobytes()

    def __getitem__(self, i: int) -> str | None:
        b = self.bytes(i)
        return None if b is None else b.decode("utf-8")

    def any(self) -> bool:
        return bool(self.present.any())


def _segm_bytes(segm: Any) -> bytes | None:
    if segm is None:
        return None
    if isinstance(segm, (bytes, bytearray, memoryview)):
        return bytes(segm)
    return json.dumps(segm, default=json_default, separators=(",", ":")).encode("utf-8")


class RecordTable:
    """The records of a Dataset as flat numpy arrays, shared copy-free by DataLoader workers.

    Per image: ``paths``, ``ids``, ``mask_paths``, ``instance_mask_paths``
    (string tables), ``width``, ``height``, ``label`` (contiguous index, -1 =
    none). Per object, concatenated over images and sliced by ``obj_start``:
    ``boxes`` float32 (M, 4), ``labels`` (contiguous), ``iscrowd``,
    ``difficult``, ``keypoints`` float32 (M, K, 3) and ``segm`` (raw JSON per
    object) when asked for, ``mask_value`` (the object's value in the instance
    mask PNG, by ``dataset.info["instance_mask_encoding"]``: ``"id"``
    (Cityscapes instanceIds) or ``"rgb"`` (COCO panoptic, R + 256 G + 256^2 B):
    ``Instances.ids``; unset: its 1-based position, VOC
    ``SegmentationObject``'s convention; ``extra["instance_id"]`` overrides
    both) and ``mask_encoding`` (how to decode that PNG: ``"rgb"`` or None);
    ``mask_palette``: the colours through which RGB label masks are read
    (:func:`dsprep.masks.mask_palette`; None: RGB masks are refused).

    Raises:
        InvalidAnnotationError: a label that is not one of the dataset's categories.
    """

    def __init__(self, dataset: Any, *, keypoints: bool = False, segmentation: bool = False,
                 image_labels: bool = True, object_labels: bool = True):
        # Columns, not records: a lazily listed dataset (ImageNet) builds no Record per image.
        index = dataset.category_index()
        self.num_classes = len(index)
        self.root = "" if dataset.root is None else os.fspath(dataset.root)
        paths = dataset.column("path")
        self._image_columns(dataset, paths, index, image_labels)
        encoding = (getattr(dataset, "info", None) or {}).get("instance_mask_encoding")
        check_choice("instance_mask_encoding", encoding, (None, "id", "rgb"))
        self.mask_encoding = "rgb" if encoding == "rgb" else None
        self.mask_palette = mask_palette(dataset)
        self._object_columns(dataset.column("instances"), paths, index, by_id=encoding in ("id", "rgb"),
                             keypoints=keypoints, segmentation=segmentation, object_labels=object_labels)

    def _image_columns(self, dataset: Any, paths: list, index: dict[int, int], image_labels: bool) -> None:
        """Per image: ids, paths, mask paths, sizes, and the label as a contiguous index (-1: none)."""
        col = dataset.column
        self.ids = _Strings(col("id"))
        self.paths = _Strings(paths)
        self.mask_paths = _Strings(col("mask_path"))
        self.instance_mask_paths = _Strings(col("instance_mask_path"))
        self.width = np.array(col("width"), np.int32)
        self.height = np.array(col("height"), np.int32)
        labels = col("label")
        get = index.get
        self.label = np.array([-1 if v is None else get(v, -2) for v in labels], np.int64).reshape(-1)
        unknown = np.flatnonzero(self.label == -2)
        if unknown.size:
            if image_labels:
                i = int(unknown[0])
                raise InvalidAnnotationError(paths[i], f"image label {labels[i]!r} is not a category id "
                                                       f"of this dataset (known: {sorted(index)[:10]}...)")
            self.label[unknown] = -1

    def _object_columns(self, instances: list, paths: list, index: dict[int, int], *, by_id: bool,
                        keypoints: bool, segmentation: bool, object_labels: bool) -> None:
        """Per object, concatenated over images (``obj_start`` slices them): boxes, contiguous
        labels, flags, instance-mask values, and keypoints and raw segmentations when asked."""
        if instances and instances.count(instances[0]) == len(instances):  # one shared (empty) Instances
            counts = np.full(len(instances), len(instances[0]), np.int64)
        else:
            counts = np.fromiter(map(len, instances), np.int64, len(instances))
        self.obj_start = np.zeros(len(instances) + 1, np.int64)
        np.cumsum(counts, out=self.obj_start[1:])
        m = int(self.obj_start[-1])
        self.boxes = np.zeros((m, 4), np.float32)
        self.labels = np.zeros(m, np.int64)
        self.iscrowd = np.zeros(m, bool)
        self.difficult = np.zeros(m, bool)
        # int64: COCO panoptic segment ids reach 256^3 - 1
        self.mask_value = np.zeros(m, np.int64)
        lut_keys = np.array(sorted(index), np.int64)
        lut_vals = np.array([index[k] for k in lut_keys], np.int64)
        k = 0
        if keypoints:
            k = max((inst.keypoints.shape[1] for inst in instances if inst.keypoints is not None), default=0)
        self.keypoints = np.zeros((m, k, 3), np.float32) if keypoints else None
        segms: list[bytes | None] = []
        for i in np.flatnonzero(counts).tolist():  # images with objects only
            inst = instances[i]
            a, b = self.obj_start[i], self.obj_start[i + 1]
            self.boxes[a:b] = inst.boxes
            self.labels[a:b] = _contiguous(inst.labels, lut_keys, lut_vals, paths[i], strict=object_labels)
            self.iscrowd[a:b] = inst.iscrowd
            self.difficult[a:b] = inst.difficult
            self.mask_value[a:b] = inst.ids if by_id else np.arange(1, b - a + 1)
            if inst.extra is not None:
                for j, e in enumerate(inst.extra):
                    if e and "instance_id" in e:
                        self.mask_value[a + j] = int(e["instance_id"])
            if keypoints and inst.keypoints is not None:
                self.keypoints[a:b, :inst.keypoints.shape[1]] = inst.keypoints
            if segmentation:
                segms.extend(_segm_bytes(s) for s in (inst.segmentation or [None] * (b - a)))
        # images without objects add no entries, so segms lines up with the object arrays
        self.segm = _Strings(segms) if segmentation else None

    def __len__(self) -> int:
        return len(self.ids)

    def objects(self, i: int) -> slice:
        return slice(int(self.obj_start[i]), int(self.obj_start[i + 1]))

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def aspect_groups(self, bins: Sequence[float] = (1.0,)) -> np.ndarray:
        """Group index per image by ``width / height`` (two groups by default: tall, wide)."""
        ratio = self.width / np.maximum(self.height, 1)
        return np.searchsorted(np.asarray(bins, np.float64), ratio, side="right").astype(np.int64)


def _contiguous(labels: np.ndarray, lut_keys: np.ndarray, lut_vals: np.ndarray, path: str, *,
                strict: bool) -> np.ndarray:
    """Source category ids -> contiguous indices (``lut_keys`` sorted); an unknown id raises
    when ``strict``, else becomes -1."""
    pos = np.clip(np.searchsorted(lut_keys, labels), 0, max(len(lut_keys) - 1, 0))
    known = lut_keys[pos] == labels if len(lut_keys) else np.zeros(len(labels), bool)
    if known.all():
        return lut_vals[pos]
    if not strict:
        return np.where(known, lut_vals[pos] if len(lut_keys) else -1, -1)
    bad = sorted(set(labels.tolist()) - set(lut_keys.tolist()))
    raise InvalidAnnotationError(path, f"object labels {bad} are not category ids of this dataset")
