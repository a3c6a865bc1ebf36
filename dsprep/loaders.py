"""PyTorch datasets and DataLoaders over dsprep records, for every task.

``ds.torch(task=...)`` gives a :class:`TorchDataset`; ``ds.loader(...)``
(:func:`make_loader`) gives a :class:`Loader` (a ``DataLoader``) with the
task's collate, a deterministic sampler (distributed-aware, aspect-ratio
grouped for detection), seeded workers, pinned uint8 batches and
:func:`to_device` for conversion and normalisation on the device.

Samples are ``(image, target)``: ``image`` a ``uint8 (3, H, W)`` tensor,
``target`` a dict of tensors plus ``image_id`` (the record id, a string):

- ``classification``: ``label`` int64 (contiguous index, -1 when unlabelled);
- ``crops`` (one sample per object box): ``label``, ``box`` float32 (4,)
  (the source box), ``object`` (its index in the image);
- ``detection``: ``boxes`` float32 (N, 4) xyxy in output pixels, ``labels``
  int64, ``iscrowd`` and ``difficult`` bool (N,), ``masks`` uint8 (N, H, W)
  when ``masks=True``, ``size`` and ``orig_size`` int64 ``(h, w)``;
- ``keypoints``: detection plus ``keypoints`` float32 (N, K, 3);
- ``segmentation``: ``mask`` (H, W) uint8 (int64 for 16-bit values), 255 = ignore.

The records live in flat numpy buffers (:class:`RecordTable`), not in a list
of Python objects, so forked workers read them without copying pages
(reading a Python object writes its reference count).

Random augmentation parameters come from a generator seeded by
``(seed, epoch, sample index)``: the same seed gives the same augmented epoch
whatever ``num_workers`` is. See ``docs/loading.md``.
"""
from __future__ import annotations

import json
import logging
import math
import operator
import os
import random
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.utils.data as tud

from . import transforms as T
from ._io import json_default
from .errors import FormatError, InvalidAnnotationError, check_choice
from .imageio import ImageSource, decode_mask
from .masks import read_id_png, segmentation_mask, semantic_readers

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "TASKS", "Collate", "DeviceLoader", "EpochSampler",
    "GroupedBatchSampler", "Loader", "RecordTable", "Skipped", "TorchDataset", "collate_classification",
    "collate_detection", "collate_segmentation", "make_loader", "to_device", "worker_init_fn",
]

log = logging.getLogger(__name__)

TASKS = T.TASKS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- flat record storage

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
    both) and ``mask_encoding`` (how to decode that PNG: ``"rgb"`` or None).

    Raises:
        InvalidAnnotationError: a label that is not one of the dataset's categories.
    """

    def __init__(self, dataset: Any, *, keypoints: bool = False, segmentation: bool = False,
                 image_labels: bool = True, object_labels: bool = True):
        # Columns, not records: a lazily listed dataset (ImageNet) builds no Record per image.
        col = dataset.column
        paths = col("path")
        index = dataset.category_index()
        self.num_classes = len(index)
        self.root = "" if dataset.root is None else os.fspath(dataset.root)
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
        instances = col("instances")
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
        encoding = (getattr(dataset, "info", None) or {}).get("instance_mask_encoding")
        check_choice("instance_mask_encoding", encoding, (None, "id", "rgb"))
        self.mask_encoding = "rgb" if encoding == "rgb" else None
        by_id = encoding in ("id", "rgb")
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
            pos = np.clip(np.searchsorted(lut_keys, inst.labels), 0, max(len(lut_keys) - 1, 0))
            known = lut_keys[pos] == inst.labels if len(lut_keys) else np.zeros(len(inst.labels), bool)
            if not known.all() and not object_labels:
                self.labels[a:b] = np.where(known, lut_vals[pos] if len(lut_keys) else -1, -1)
            elif not known.all():
                bad = sorted(set(inst.labels.tolist()) - set(lut_keys.tolist()))
                raise InvalidAnnotationError(paths[i], f"object labels {bad} are not category ids of this dataset")
            else:
                self.labels[a:b] = lut_vals[pos]
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


# --------------------------------------------------------------------------- samples

@dataclass(frozen=True)
class Skipped:
    """Returned instead of a sample when ``on_error="skip"`` and the image is unreadable.

    The loader's collate removes it from the batch and :class:`Loader`
    counts it (``loader.skipped``); nothing is put in its place.
    """

    index: int
    image_id: str
    message: str


def _build_lut(mask_lut: Any, dataset: Any) -> np.ndarray | None:
    """``mask_lut`` option -> one lookup array (value -> class), or None for raw values."""
    if isinstance(mask_lut, str):
        if mask_lut == "auto":
            mask_lut = dataset.info.get("mask_lut")
            if mask_lut is None:
                return None
        elif mask_lut in ("train_id", "trainId"):
            table = {c.id: c.extra.get("trainId", c.extra.get("train_id")) for c in dataset.categories}
            table = {k: v for k, v in table.items() if v is not None}
            if not table:
                raise ValueError("mask_lut='train_id': no category carries a trainId in its extra")
            mask_lut = {k: (255 if v < 0 else v) for k, v in table.items() if k >= 0}
        else:
            check_choice("mask_lut", mask_lut, ("auto", "train_id"))
    if mask_lut is None:
        return None
    if isinstance(mask_lut, Mapping):
        keys = [int(k) for k in mask_lut]
        size = 256 if max(keys, default=0) < 256 else 65536
        lut = np.full(size, 255, np.int64)
        for k, v in mask_lut.items():
            lut[int(k)] = int(v)
        return lut
    lut = np.asarray(mask_lut, np.int64).ravel()
    if lut.size == 0:
        raise ValueError("mask_lut is empty")
    return lut


def _build_luts(mask_lut: Any, dataset: Any) -> tuple[list[np.ndarray | None], np.ndarray | None]:
    """``mask_lut`` option -> (lookup arrays, per record the index of its array; None: the first for all).

    Masks of one dataset can come in several kinds whose pixel values mean
    different things: a Cityscapes tree parsed with ``label_space="trainId"``
    has ``labelTrainIds`` PNGs where they exist and ``labelIds`` elsewhere.
    Such a parser sets ``info["mask_luts"]`` (kind -> 256 entries, file value
    -> the dataset's label space, named by ``info["cityscapes_label_space"]``)
    and ``record.extra["mask_kind"]``; ``"auto"`` then applies each record's
    own, and ``"train_id"`` maps every kind to train ids.
    """
    kinds = dataset.info.get("mask_luts")
    if not (isinstance(mask_lut, str) and mask_lut in ("auto", "train_id", "trainId") and kinds):
        return [_build_lut(mask_lut, dataset)], None
    space = dataset.info.get("cityscapes_label_space", "id")
    names = sorted(kinds)
    luts: list[np.ndarray | None] = []
    for name in names:
        lut = np.asarray(kinds[name], np.int64)
        if mask_lut != "auto" and space == "id":  # values -> label ids -> train ids
            lut = _build_lut("train_id", dataset)[lut]
        luts.append(None if np.array_equal(lut, np.arange(len(lut))) else lut)
    # a record of no known kind: raw values for "auto", the category table for "train_id"
    luts.append(None if mask_lut == "auto" else _build_lut("train_id", dataset))
    index = {name: i for i, name in enumerate(names)}
    which = np.array([index.get((e or {}).get("mask_kind"), len(names)) for e in dataset.column("extra")],
                     np.int8)
    return luts, which


def _mask_readers(dataset: Any) -> tuple[list[tuple[Callable, str]], dict[int, tuple[int, str]]]:
    """(readers, record index -> (its reader's index, its source file)) for records without a label PNG.

    A parser whose semantic source for some records is another file (a
    Cityscapes frame with only instanceIds, or only polygons.json) leaves
    their ``mask_path`` None, puts the file in ``record.extra["semantic_source"]``
    and its kind in ``extra["mask_kind"]``, and names the function that turns
    it into the label map a PNG would hold: ``info["mask_readers"]`` = kind ->
    ``"module:function"``, called as ``function(path, kind)``.
    """
    named = semantic_readers(dataset)
    if not named:
        return [], {}
    kinds = sorted(named)
    readers = [(named[kind], kind) for kind in kinds]
    index = {kind: i for i, kind in enumerate(kinds)}
    sources = {}
    for r, (rel, e) in enumerate(zip(dataset.column("mask_path"), dataset.column("extra"))):
        e = e or {}
        if rel is None and e.get("semantic_source") and e.get("mask_kind") in index:
            sources[r] = (index[e["mask_kind"]], str(e["semantic_source"]))
    return readers, sources


def _to_tensor_image(image: Any) -> torch.Tensor:
    # The (H, W, 3) array is wrapped, not copied (it may be read-only, from PIL, or a view
    # of planar data from torch's resampler): collate copies it into the batch.
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(arr)
    return t.permute(2, 0, 1)


class TorchDataset(tud.Dataset):
    """A map-style torch Dataset over a dsprep :class:`~dsprep.records.Dataset`.

    Args:
        dataset: the parsed records (``dataset.root`` + ``record.path`` locate images).
        task: ``classification``, ``crops``, ``detection``, ``keypoints`` or
            ``segmentation``; None picks from the records (image labels ->
            classification, keypoints -> keypoints, objects -> detection,
            mask paths -> segmentation).
        transform: alias of ``augment`` (what :meth:`Dataset.torch` passes).
        augment: ``"none"`` (default here: decode only), ``"default"``
            (the task's training preset), ``"eval"``, a
            :class:`dsprep.transforms.Compose`, or any callable
            ``(image, target) -> (image, target)`` on the decoded tensors (run
            with torch, numpy and random seeded from (seed, epoch, index)).
        seed: seeds every sample's augmentation with ``(seed, epoch, index)``.
        on_error: ``"raise"``, or ``"skip"``: an unreadable image yields a
            :class:`Skipped` marker that the loader's collate drops and counts.
        masks: detection: also give instance masks (from each object's
            polygons/RLE, else from the record's instance mask PNG decoded
            by ``dataset.info["instance_mask_encoding"]``, else the box).
        mask_lut: segmentation: ``"auto"`` (``dataset.info["mask_lut"]`` if
            present; a Cityscapes dataset's masks to the label space it was
            parsed in, each by its kind, ``info["mask_luts"]``; else raw mask
            values), ``"train_id"`` (category id -> ``extra["trainId"]``, as
            Cityscapes labelIds -> trainIds, unmapped values become 255; a
            Cityscapes ``labelTrainIds`` mask is kept as train ids), a dict
            ``{value: class}`` (unmapped -> 255) or an array indexed by mask
            value; None for raw values.
        flip_map: keypoints: the permutation a horizontal flip applies; by
            default from the first category with ``extra["keypoints"]`` names
            (left/right swap), else COCO person's for 17 points.
        crop_context: crops: widen each box by this fraction on every side.
        crop_crowd: crops: include crowd boxes (default False).
        **preset_options: passed to :func:`dsprep.transforms.preset`
            (``size``, ``min_size``, ``max_size``, ``crop_size``, ``scale``,
            ``color_jitter``, ``iou_crop``, ``letterbox``, ``fill``).

    Example:
        >>> tds = ds.torch(task="detection", augment="default")  # doctest: +SKIP
        >>> image, target = tds[0]; target["boxes"].shape         # doctest: +SKIP
        torch.Size([3, 4])
    """

    def __init__(self, dataset: Any, task: str | None = None, transform: Any = None, *, augment: Any = None,
                 seed: int = 0, on_error: str = "raise", masks: bool = False, mask_lut: Any = "auto",
                 flip_map: Sequence[int] | None = None, crop_context: float = 0.0, crop_crowd: bool = False,
                 **preset_options: Any):
        if transform is not None and augment is not None:
            raise ValueError("pass either transform= or augment=, not both (they are the same thing)")
        augment = transform if transform is not None else augment
        if augment is None:
            augment = "none"
        self.task = check_choice("task", task, TASKS) if task is not None else _infer_task(dataset)
        self.on_error = check_choice("on_error mode", on_error, ("raise", "skip"))
        self.seed = int(seed)
        self.epoch = 0
        self.masks = bool(masks)
        want_kp = self.task == "keypoints"
        self.table = RecordTable(dataset, keypoints=want_kp, segmentation=self.masks,
                                 image_labels=self.task == "classification",
                                 object_labels=self.task in ("crops", "detection", "keypoints"))
        self.num_classes = self.table.num_classes
        self.class_names = [c.name for c in dataset.categories]
        if isinstance(augment, str):
            self.augment_name = augment
            self.transform: Any = T.preset(self.task, augment, **preset_options)
        else:
            if preset_options:
                raise TypeError(f"options {sorted(preset_options)} only apply to the named augment presets")
            self.augment_name = "custom"
            self.transform = augment
        self._native = isinstance(self.transform, T.Compose)
        self.mask_luts, self.mask_lut_of = (_build_luts(mask_lut, dataset) if self.task == "segmentation"
                                            else ([None], None))
        self.mask_readers, self.mask_sources = (_mask_readers(dataset) if self.task == "segmentation"
                                                else ([], {}))
        self.flip_map = None
        if want_kp:
            self.flip_map = np.asarray(flip_map if flip_map is not None else _default_flip_map(dataset, self.table))
        self.crop_context = float(crop_context)
        if self.task == "crops":
            keep = np.ones(len(self.table.labels), bool) if crop_crowd else ~self.table.iscrowd
            obj = np.flatnonzero(keep)
            rec = np.searchsorted(self.table.obj_start, obj, side="right") - 1
            self.crop_index = np.stack([rec, obj - self.table.obj_start[rec]], axis=1).astype(np.int64)
        else:
            self.crop_index = None
        self.skipped: list[Skipped] = []  # filled when used in this process (num_workers=0)

    # -- size, epochs, keys
    def __len__(self) -> int:
        return len(self.crop_index) if self.crop_index is not None else len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer indices (samplers of :func:`make_loader` yield their own)."""
        self.epoch = int(epoch)

    def key(self, index: int, epoch: int) -> tuple[int, int]:
        """What a sampler yields for ``index`` in ``epoch``: ``(epoch, index)``, which carries
        the epoch to the worker that seeds the sample's augmentation."""
        return int(epoch), int(index)

    def _split_key(self, key: Any) -> tuple[int, int]:
        """``(epoch, sample index)`` of a key: an ``(epoch, index)`` pair from the samplers,
        or a plain index read as a sequence does (negative from the end, IndexError at
        ``len``, so ``for s in tds`` ends) in the epoch of :meth:`set_epoch`."""
        n = len(self)
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"a sample key is an index or an (epoch, index) pair; found {key!r}")
            epoch, i = operator.index(key[0]), operator.index(key[1])
        else:
            epoch, i = self.epoch, operator.index(key)
            if i < 0:
                i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {key!r} out of range for {n} samples")
        return epoch, i

    def record_index(self, index: int) -> int:
        """The record a sample index reads (differs from it for ``crops``)."""
        return int(self.crop_index[index, 0]) if self.crop_index is not None else int(index)

    def aspect_groups(self) -> np.ndarray:
        ratio_groups = self.table.aspect_groups()
        return ratio_groups[self.crop_index[:, 0]] if self.crop_index is not None else ratio_groups

    # -- samples
    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, i = self._split_key(key)
        r = self.record_index(i)
        try:
            return self._load(i, r, epoch)
        except FormatError as err:
            if self.on_error != "skip":
                raise
            skipped = Skipped(i, self.table.ids[r] or "", str(err))
            self.skipped.append(skipped)
            log.debug("skipping sample %d: %s", i, err)
            return skipped

    def _rng(self, epoch: int, i: int) -> np.random.Generator:
        # Philox is counter-based: a distinct key gives an independent stream, with no
        # seed hashing per sample (SeedSequence would cost 2.5x as much).
        return np.random.Generator(np.random.Philox(key=[self.seed % 2**64, ((epoch % 2**32) << 32) | (i % 2**32)]))

    def _load(self, i: int, r: int, epoch: int) -> tuple[torch.Tensor, dict]:
        tb = self.table
        path = tb.path(r)
        src = ImageSource(path)
        w, h = src.size
        rw, rh = int(tb.width[r]), int(tb.height[r])
        if rw > 0 and rh > 0 and (rw, rh) != (w, h) and self.task != "classification":
            src.close()
            raise InvalidAnnotationError(path, f"the annotation gives size {rw}x{rh}, the image is {w}x{h}; "
                                               f"boxes and masks would not fit the pixels")
        try:
            sample: dict[str, Any] = {"image": src}
            objs = tb.objects(r)
            task = self.task
            plan = None
            if task in ("detection", "keypoints"):
                sample["boxes"] = tb.boxes[objs].astype(np.float64)
                sample["labels"] = tb.labels[objs]
                sample["iscrowd"] = tb.iscrowd[objs]
                sample["difficult"] = tb.difficult[objs]
                if task == "keypoints":
                    sample["keypoints"] = tb.keypoints[objs].astype(np.float64)
                    sample["flip_map"] = self.flip_map
                if self.masks:
                    sample["masks"] = self._instance_masks(r, objs, w, h, path)
            elif task == "segmentation":
                sample["mask"] = self._semantic_mask(r, w, h)
            elif task == "crops":
                o = objs.start + int(self.crop_index[i, 1])
                x0, y0, x1, y1 = tb.boxes[o].astype(np.float64)
                c = self.crop_context
                dx, dy = (x1 - x0) * c, (y1 - y0) * c
                x0, y0, x1, y1 = x0 - dx, y0 - dy, x1 + dx, y1 + dy
                cw, ch = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
                if x1 - x0 <= 0 or y1 - y0 <= 0:
                    raise InvalidAnnotationError(path, f"object {int(self.crop_index[i, 1])} has an empty box "
                                                       f"{tb.boxes[o].tolist()}; cannot crop it")
                plan = T.Plan(w, h, x0, y0, x1, y1, cw, ch)
        except BaseException:
            src.close()  # the file stays open until decoded; a bad mask or box must not leak it
            raise
        if self._native:
            out = self.transform(sample, self._rng(epoch, i), plan)
            image = _to_tensor_image(out["image"])
        else:
            if plan is None:
                plan = T.Plan.identity(w, h)
            out = T.render(sample, plan)
            image = _to_tensor_image(out["image"])
        target = self._target(i, r, out, (h, w), image)
        if not self._native and self.transform is not None and self.augment_name == "custom":
            image, target = self._call_user(self.transform, image, target, epoch, i)
        return image, target

    def _call_user(self, fn: Callable, image: torch.Tensor, target: dict, epoch: int, i: int) -> Any:
        seed = int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0])
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                np.random.seed(seed)
                random.seed(seed)
                return fn(image, target)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    def _target(self, i: int, r: int, out: dict, orig_hw: tuple[int, int], image: torch.Tensor) -> dict:
        tb = self.table
        task = self.task
        target: dict[str, Any] = {}
        if task in ("classification", "crops"):
            if task == "crops":
                o = int(self.crop_index[i, 1])
                target["label"] = torch.tensor(int(tb.labels[tb.obj_start[r] + o]))
                target["box"] = torch.from_numpy(tb.boxes[tb.obj_start[r] + o].copy())
                target["object"] = torch.tensor(o)
            else:
                target["label"] = torch.tensor(int(tb.label[r]))
        elif task in ("detection", "keypoints"):
            target["boxes"] = torch.from_numpy(np.ascontiguousarray(out["boxes"], np.float32))
            target["labels"] = torch.from_numpy(np.ascontiguousarray(out["labels"], np.int64))
            target["iscrowd"] = torch.from_numpy(np.ascontiguousarray(out["iscrowd"], bool))
            target["difficult"] = torch.from_numpy(np.ascontiguousarray(out["difficult"], bool))
            if "masks" in out:
                target["masks"] = torch.from_numpy(np.ascontiguousarray(out["masks"], np.uint8))
            if task == "keypoints":
                target["keypoints"] = torch.from_numpy(np.ascontiguousarray(out["keypoints"], np.float32))
            target["size"] = torch.tensor(tuple(image.shape[1:]), dtype=torch.int64)
            target["orig_size"] = torch.tensor(orig_hw, dtype=torch.int64)
        elif task == "segmentation":
            m = out["mask"]
            dtype = np.uint8 if m.dtype == np.uint8 or (m.size and int(m.max()) <= 255) else np.int64
            target["mask"] = torch.from_numpy(np.ascontiguousarray(m, dtype))
        target["image_id"] = tb.ids[r]
        return target

    def _semantic_mask(self, r: int, w: int, h: int) -> np.ndarray:
        tb = self.table
        rel = tb.mask_paths[r]
        source = self.mask_sources.get(r) if rel is None else None
        if source is not None:  # no label PNG (Cityscapes instanceIds / polygons.json only): the parser's reader
            reader, kind = self.mask_readers[source[0]]
            path = os.path.join(tb.root, source[1])
            m = reader(path, kind)
        elif rel is None:
            raise InvalidAnnotationError(tb.paths[r] or "", "task='segmentation' but the record has no mask_path "
                                                            "(nor a semantic source its parser can read)")
        else:
            path = os.path.join(tb.root, rel)
            m = decode_mask(path)
        if m.shape != (h, w):
            raise InvalidAnnotationError(path, f"mask is {m.shape[1]}x{m.shape[0]}, its image is {w}x{h}")
        lut = self.mask_luts[0 if self.mask_lut_of is None else self.mask_lut_of[r]]
        if lut is not None:
            m = lut[np.minimum(m, len(lut) - 1)] if int(m.max(initial=0)) >= len(lut) else lut[m]
            m = m.astype(np.uint8) if int(lut.max()) <= 255 and int(lut.min()) >= 0 else m
        return m

    def _instance_masks(self, r: int, objs: slice, w: int, h: int, path: str) -> np.ndarray:
        tb = self.table
        n = objs.stop - objs.start
        out = np.zeros((n, h, w), np.uint8)
        inst_png = None
        for j in range(n):
            o = objs.start + j
            segm = tb.segm.bytes(o) if tb.segm is not None else None
            if segm is not None:
                try:
                    m = segmentation_mask(segm, h, w)
                except (ValueError, KeyError, TypeError) as err:
                    raise InvalidAnnotationError(f"{path}: object {j}", f"bad segmentation ({err})") from None
                if m is not None:  # None: no polygon of 3 points or more, an empty mask
                    out[j] = m
                continue
            rel = tb.instance_mask_paths[r]
            if rel is not None:
                if inst_png is None:
                    mp = os.path.join(tb.root, rel)
                    inst_png = read_id_png(mp, "rgb") if tb.mask_encoding == "rgb" else decode_mask(mp)
                    if inst_png.shape != (h, w):
                        raise InvalidAnnotationError(mp, f"instance mask is {inst_png.shape[1]}x"
                                                         f"{inst_png.shape[0]}, its image is {w}x{h}")
                out[j] = inst_png == tb.mask_value[o]
                if tb.mask_encoding in ("id", "rgb") and not out[j].any():
                    # the ids were read from this PNG's annotations (Cityscapes instanceIds,
                    # panoptic segments_info): an id without a pixel means they disagree
                    raise InvalidAnnotationError(
                        os.path.join(tb.root, rel), f"object {j} (segment id {int(tb.mask_value[o])}) has no "
                        f"pixel in this PNG: the PNG and its annotations disagree (dsprep validate --deep)")
            else:  # no shape known: the box is the best mask there is (documented)
                x0, y0, x1, y1 = tb.boxes[o]
                out[j, int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = 1
        return out


def _infer_task(dataset: Any) -> str:
    if any(label is not None for label in dataset.column("label")):
        return "classification"
    instances = dataset.column("instances")
    if any(inst.keypoints is not None for inst in instances):
        return "keypoints"
    if any(map(len, instances)):
        return "detection"
    if any(dataset.column("mask_path")):
        return "segmentation"
    if dataset.info.get("mask_readers") and any(e.get("semantic_source") for e in dataset.column("extra")):
        return "segmentation"  # label maps drawn from another file (Cityscapes polygons.json)
    raise ValueError("cannot tell the task from the records (no image labels, objects or mask paths); "
                     f"pass task= one of {', '.join(TASKS)}")


def _default_flip_map(dataset: Any, table: RecordTable) -> np.ndarray:
    for c in dataset.categories:
        names = c.extra.get("keypoints") if isinstance(c.extra, Mapping) else None
        if names:
            return T.flip_map_from_names(names)
    k = table.keypoints.shape[1] if table.keypoints is not None else 0
    if k == 17:
        return np.asarray(T.COCO_PERSON_FLIP_MAP)
    return np.arange(k)


# --------------------------------------------------------------------------- collate

def _empty(shape: Sequence[int], dtype: torch.dtype, fill: int | None = None) -> torch.Tensor:
    """A tensor for a batch; in a worker it lives in shared memory, so sending it costs no copy."""
    numel = int(np.prod(shape))
    out = None
    if tud.get_worker_info() is not None:
        try:
            elem = torch.empty(0, dtype=dtype)
            storage = elem._typed_storage()._new_shared(numel, device="cpu")
            out = elem.new(storage).resize_(tuple(shape))
        except (AttributeError, RuntimeError, TypeError):  # private API moved: fall back
            out = None
    if out is None:
        out = torch.empty(tuple(shape), dtype=dtype)
    if fill is not None:
        out.fill_(fill)
    return out


def _stack_images(images: Sequence[torch.Tensor], pad_to: int = 1) -> torch.Tensor:
    """``(3, H, W)`` uint8 tensors -> one contiguous ``(B, 3, H, W)``, zero-padded at right/bottom."""
    hs = [int(t.shape[1]) for t in images]
    ws = [int(t.shape[2]) for t in images]
    H, W = max(hs), max(ws)
    if pad_to > 1:
        H, W = -(-H // pad_to) * pad_to, -(-W // pad_to) * pad_to
    out = _empty((len(images), 3, H, W), torch.uint8)
    for k, t in enumerate(images):
        h, w = int(t.shape[1]), int(t.shape[2])
        out[k, :, :h, :w] = t
        if w < W:  # zero only the padding: every byte of the batch is written once
            out[k, :, :h, w:] = 0
        if h < H:
            out[k, :, h:] = 0
    return out


def _stack_masks(masks: Sequence[torch.Tensor], fill: int = 255) -> torch.Tensor:
    H = max(int(m.shape[0]) for m in masks)
    W = max(int(m.shape[1]) for m in masks)
    dtype = torch.int64 if any(m.dtype == torch.int64 for m in masks) else torch.uint8
    same = all(tuple(m.shape) == (H, W) for m in masks)
    out = _empty((len(masks), H, W), dtype, None if same else fill)
    for k, m in enumerate(masks):
        out[k, :m.shape[0], :m.shape[1]] = m
    return out


def collate_classification(samples: Sequence[Any]) -> tuple[torch.Tensor, dict] | None:
    """``[(image, target)]`` -> ``(images (B, 3, H, W) uint8, {"label": (B,), "image_id": [...], ...})``.

    Tensors in the targets are stacked, other values listed. Skipped samples
    are dropped; an empty batch gives None.

    Example:
        >>> images, targets = collate_classification([tds[0], tds[1]])  # doctest: +SKIP
    """
    samples = [s for s in samples if not isinstance(s, Skipped)]
    if not samples:
        return None
    images = _stack_images([s[0] for s in samples])
    targets: dict[str, Any] = {}
    for key in samples[0][1]:
        vals = [s[1][key] for s in samples]
        targets[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return images, targets


def collate_detection(samples: Sequence[Any], pad_to: int = 1) -> tuple[torch.Tensor, list[dict]] | None:
    """``[(image, target)]`` -> ``(images (B, 3, H, W) uint8 zero-padded at right/bottom, [target])``.

    Each target's ``size`` gives its image's unpadded ``(h, w)``; boxes are
    in those pixels (padding is to the right and bottom, so it moves nothing).
    """
    samples = [s for s in samples if not isinstance(s, Skipped)]
    if not samples:
        return None
    return _stack_images([s[0] for s in samples], pad_to), [s[1] for s in samples]


def collate_segmentation(samples: Sequence[Any]) -> tuple[torch.Tensor, dict] | None:
    """``[(image, target)]`` -> ``(images (B, 3, H, W), {"mask": (B, H, W), "image_id": [...]})``.

    Different sizes are padded at right/bottom: images with 0, masks with 255 (ignore).
    """
    samples = [s for s in samples if not isinstance(s, Skipped)]
    if not samples:
        return None
    images = _stack_images([s[0] for s in samples])
    masks = _stack_masks([s[1]["mask"] for s in samples])
    if masks.shape[1:] != images.shape[2:]:  # images padded further than masks (never, but be exact)
        full = torch.full((len(samples), *images.shape[2:]), 255, dtype=masks.dtype)
        full[:, :masks.shape[1], :masks.shape[2]] = masks
        masks = full
    return images, {"mask": masks, "image_id": [s[1]["image_id"] for s in samples]}


class Collate:
    """The task's collate as a picklable object; with ``report_skips`` it returns ``(batch, skipped)``.

    :class:`Loader` uses ``report_skips=True`` to count skipped samples that
    were dropped in worker processes.
    """

    def __init__(self, task: str, *, pad_to: int = 1, report_skips: bool = False):
        self.task = check_choice("task", task, TASKS)
        self.pad_to = int(pad_to)
        self.report_skips = report_skips

    def __call__(self, samples: Sequence[Any]) -> Any:
        if self.task in ("detection", "keypoints"):
            batch = collate_detection(samples, self.pad_to)
        elif self.task == "segmentation":
            batch = collate_segmentation(samples)
        else:
            batch = collate_classification(samples)
        if self.report_skips:
            if batch is not None:
                batch = (batch[0], _pack(batch[1]))
            return batch, [s for s in samples if isinstance(s, Skipped)]
        return batch


# A tensor leaves a worker as a shared-memory file descriptor: one socket
# round trip each. A detection batch of 8 has ~50 small target tensors, and
# those round trips cost more than the images. Inside the Loader, targets
# travel as numpy arrays (pickled by value, in the same message) and become
# tensors again in the main process; only the image batch uses shared memory.

def _pack(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_pack(v) for v in obj]
    return obj


def _unpack(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- samplers

def _dist_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(tud.Sampler[tuple[int, int]]):
    """Shuffles (seeded by ``seed + epoch``), shards across ranks, and tells workers the epoch.

    Under ``torch.distributed`` (``torchrun``) each rank gets its own
    ``1/world`` of the indices, exactly as ``DistributedSampler`` does (same
    permutation, same padding by repetition unless ``drop_last``). Each
    ``iter()`` uses the current epoch and then advances it, so a loop over
    epochs needs no ``set_epoch`` call (calling it still works). It yields
    ``(epoch, index)`` pairs (:meth:`TorchDataset.key`), which carry the epoch
    to the worker that seeds the sample's augmentation.

    Args:
        size: number of samples.
        shuffle: a new permutation every epoch.
        seed: the permutation seed (the same on every rank).
        num_replicas, rank: default from ``torch.distributed`` when initialised, else 1 and 0.
        drop_last: drop the tail instead of padding ranks to equal length.
    """

    def __init__(self, size: int, *, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False):
        world, me = _dist_world()
        self.size = int(size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = world if num_replicas is None else int(num_replicas)
        self.rank = me if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last and self.size % self.num_replicas:
            self.num_samples = self.size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.size / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for ``epoch``."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            idx = torch.randperm(self.size, generator=g).numpy()
        else:
            idx = np.arange(self.size)
        total = self.num_samples * self.num_replicas
        if not self.drop_last and total > len(idx) and len(idx):
            idx = np.concatenate([idx, np.resize(idx, total - len(idx))])
        idx = idx[:total]
        return idx[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        return iter([(epoch, i) for i in self.indices(epoch).tolist()])

    def __len__(self) -> int:
        return self.num_samples


class GroupedBatchSampler(tud.Sampler[list[tuple[int, int]]]):
    """Batches whose images share an aspect-ratio group (tall vs wide by default).

    Padding a batch to its largest image then wastes little. ``(epoch, index)`` keys
    from ``sampler`` are bucketed by ``group_ids[index]``; a bucket is
    yielded when full. What is left in the buckets at the end is batched
    together, groups mixed, so the number of batches depends only on
    ``len(sampler)``: ``len // batch_size`` (``drop_last``) or its ceiling,
    the same on every rank of a distributed run (a rank with one more batch
    than the others would wait in allreduce for ever; torchvision's reference
    GroupedBatchSampler fixes the count for the same reason).
    """

    def __init__(self, sampler: EpochSampler, group_ids: np.ndarray, batch_size: int, drop_last: bool = False):
        self.sampler = sampler
        self.group_ids = np.asarray(group_ids, np.int64)
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for key in self.sampler:
            g = int(self.group_ids[key[1]])
            b = buckets[g]
            b.append(key)
            if len(b) == self.batch_size:
                yield list(b)
                b.clear()
        rest = [key for g in sorted(buckets) for key in buckets[g]]
        for a in range(0, len(rest), self.batch_size):
            batch = rest[a:a + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy's and ``random``'s global generators from the worker's torch seed.

    Recent torch already seeds ``random`` and numpy in its worker loop; this
    makes it explicit and independent of the torch version (forked workers
    would otherwise share one numpy state). dsprep's own augmentation does
    not use global generators; user code often does.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- loader

class Loader(tud.DataLoader):
    """A ``DataLoader`` that counts skipped samples and advances the epoch by itself.

    Attributes:
        skipped: every :class:`Skipped` dropped so far (``on_error="skip"``).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skipped: list[Skipped] = []

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at ``epoch`` (the sampler otherwise counts epochs itself)."""
        sampler = getattr(self.batch_sampler, "sampler", None) or self.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        before = len(self.skipped)
        for item in super().__iter__():
            if isinstance(self.collate_fn, Collate) and self.collate_fn.report_skips:
                batch, skipped = item
                self.skipped.extend(skipped)
                if batch is None:
                    continue
                yield batch[0], _unpack(batch[1])
            else:
                yield item
        new = self.skipped[before:]
        if new:
            log.warning("skipped %d unreadable sample(s) this epoch (nothing was put in their place); first: %s",
                        len(new), new[0].message)


def make_loader(dataset: Any, batch_size: int = 32, *, task: str | None = None, augment: Any = "default",
                shuffle: bool | None = None, num_workers: int | None = None, seed: int = 0,
                drop_last: bool = False, pin_memory: bool | None = None, persistent_workers: bool | None = None,
                prefetch_factor: int | None = None, distributed: bool | None = None,
                group_aspect_ratio: bool | None = None, on_error: str = "raise", pad_to: int = 1,
                collate_fn: Callable | None = None, **options: Any) -> Loader:
    """A DataLoader for ``dataset`` with the task's collate, sampler and worker set-up.

    Args:
        dataset: a dsprep Dataset (a :class:`TorchDataset` is built with
            ``task``, ``augment``, ``seed``, ``on_error`` and ``options``) or
            a :class:`TorchDataset`.
        batch_size: samples per batch (per rank).
        augment: ``"default"`` (training preset), ``"eval"``, ``"none"``, or a
            transform (see :class:`TorchDataset`).
        shuffle: default True for ``augment="default"``, else False.
        num_workers: default ``min(8, cores)``.
        seed: permutation and augmentation seed.
        pin_memory: default True when CUDA is available.
        persistent_workers: default True when ``num_workers > 0``.
        distributed: shard across ``torch.distributed`` ranks (default: when initialised).
        group_aspect_ratio: batch tall and wide images apart (default: detection/keypoints when shuffling).
        on_error: ``"skip"`` drops unreadable images (counted in ``loader.skipped``).
        pad_to: detection: pad batch height and width to a multiple of this.
        collate_fn: replaces the task's collate.
        **options: :class:`TorchDataset` options (``masks``, ``mask_lut``,
            ``size``, ``min_size``...).

    Returns:
        a :class:`Loader` yielding ``(images, targets)`` with ``images`` uint8
        ``(B, 3, H, W)`` contiguous; pass batches to :func:`to_device`.

    Example:
        >>> loader = make_loader(ds, batch_size=64, task="classification", num_workers=4)  # doctest: +SKIP
        >>> for images, targets in loader:                                                # doctest: +SKIP
        ...     x = to_device(images, "cuda", dtype=torch.bfloat16)
    """
    if isinstance(dataset, TorchDataset):
        if options or task not in (None, dataset.task):
            raise TypeError("dataset is already a TorchDataset: pass task/options when building it, not here")
        tds = dataset
    else:
        tds = TorchDataset(dataset, task=task, augment=augment, seed=seed, on_error=on_error, **options)
    if shuffle is None:
        shuffle = tds.augment_name in ("default", "custom") and augment not in ("eval", "none")
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    world, rank = _dist_world()
    if distributed is False:
        world, rank = 1, 0
    sampler = EpochSampler(len(tds), shuffle=shuffle, seed=seed, num_replicas=world, rank=rank,
                           drop_last=drop_last and world > 1)
    if group_aspect_ratio is None:
        group_aspect_ratio = shuffle and tds.task in ("detection", "keypoints")
    if group_aspect_ratio:
        batch_sampler: Any = GroupedBatchSampler(sampler, tds.aspect_groups(), batch_size, drop_last)
    else:
        batch_sampler = tud.BatchSampler(sampler, batch_size, drop_last)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return Loader(tds, batch_sampler=batch_sampler, num_workers=num_workers,
                  collate_fn=collate_fn or Collate(tds.task, pad_to=pad_to, report_skips=True),
                  pin_memory=pin_memory, worker_init_fn=worker_init_fn, **extra)


# --------------------------------------------------------------------------- device side

_AFFINE_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _affine(mean: Sequence[float] | None, std: Sequence[float] | None, device: torch.device,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    key = (tuple(mean) if mean is not None else None, tuple(std) if std is not None else None, str(device), dtype)
    hit = _AFFINE_CACHE.get(key)
    if hit is None:
        m = torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0), dtype=torch.float64)
        s = torch.tensor(std if std is not None else (1.0, 1.0, 1.0), dtype=torch.float64)
        # (x / 255 - mean) / std == x * (1 / (255 std)) + (-mean / std)
        scale = (1.0 / (255.0 * s)).view(1, -1, 1, 1).to(device=device, dtype=dtype)
        bias = (-m / s).view(1, -1, 1, 1).to(device=device, dtype=dtype)
        hit = _AFFINE_CACHE[key] = (scale, bias)
    return hit


def _move(obj: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: _move(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(v, device, non_blocking) for v in obj)
    return obj


def to_device(batch: Any, device: str | torch.device, *, dtype: torch.dtype | None = torch.float32,
              mean: Sequence[float] | None = IMAGENET_MEAN, std: Sequence[float] | None = IMAGENET_STD,
              channels_last: bool = False, non_blocking: bool = True) -> Any:
    """Move a batch to ``device``; convert and normalise the uint8 images there.

    The uint8 images cross the bus (4x fewer bytes than float32) with
    ``non_blocking=True`` (asynchronous from pinned memory), then become
    ``dtype`` and ``(x / 255 - mean) / std`` on the device. ``mean=None,
    std=None`` gives ``x / 255``; ``dtype=None`` leaves them uint8. Targets
    move alongside (strings stay). On CPU it computes the same thing.

    Args:
        batch: ``(images, targets)`` from a dsprep loader, or an images tensor.
        device: where to.
        dtype: ``torch.float32``, ``torch.float16``, ``torch.bfloat16`` or None.
        mean, std: per channel, on the 0..1 scale (ImageNet's by default).
        channels_last: return images in ``torch.channels_last`` memory format.
        non_blocking: asynchronous copies (effective from pinned memory).

    Returns:
        the batch in the same structure.

    Example:
        >>> images, targets = to_device(next(iter(loader)), "cuda", dtype=torch.float16)  # doctest: +SKIP
    """
    device = torch.device(device)
    if isinstance(batch, torch.Tensor):
        images, rest, single = batch, None, True
    else:
        images, rest, single = batch[0], batch[1:], False
    x = images.to(device, non_blocking=non_blocking)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if dtype is not None and x.dtype == torch.uint8 and x.ndim == 4:
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu" else dtype
        out = torch.empty(x.shape, dtype=work, device=device, memory_format=fmt)
        out.copy_(x)
        scale, bias = _affine(mean, std, device, work)
        out.mul_(scale).add_(bias)
        x = out if work == dtype else out.to(dtype)
    elif dtype is not None:
        x = x.to(dtype)
    if x.ndim == 4:
        x = x.contiguous(memory_format=fmt)
    if single:
        return x
    moved = tuple(_move(v, device, non_blocking) for v in rest)
    return type(batch)((x, *moved)) if isinstance(batch, tuple) else [x, *moved]


class DeviceLoader:
    """Wrap a loader so that batches arrive on ``device``, converted (see :func:`to_device`).

    On CUDA the next batch is copied on a side stream while the current one
    is used.

    Example:
        >>> for images, targets in DeviceLoader(loader, "cuda", dtype=torch.bfloat16):  # doctest: +SKIP
        ...     loss = model(images, targets)
    """

    def __init__(self, loader: Iterable, device: str | torch.device, **to_device_options: Any):
        self.loader = loader
        self.device = torch.device(device)
        self.options = to_device_options

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield to_device(batch, self.device, **self.options)
            return
        stream = torch.cuda.Stream(self.device)
        pending = None
        for batch in self.loader:
            with torch.cuda.stream(stream):
                nxt = to_device(batch, self.device, **self.options)
            if pending is not None:
                yield pending
            torch.cuda.current_stream(self.device).wait_stream(stream)
            _record(nxt, torch.cuda.current_stream(self.device))
            pending = nxt
        if pending is not None:
            yield pending


def _record(obj: Any, stream: Any) -> None:
    if isinstance(obj, torch.Tensor):
        obj.record_stream(stream)
    elif isinstance(obj, Mapping):
        for v in obj.values():
            _record(v, stream)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _record(v, stream)

