"""One sample per task: what the transforms move, and the target dict it becomes.

A sample is built in three steps (:class:`~dsprep.loading.dataset.TorchDataset`
runs them):

1. inputs: the record's objects as the transforms take them
   (:func:`object_inputs`), its masks (:class:`MaskReader`), or the crop a
   ``crops`` sample is (:func:`crop_plan`);
2. the transforms (:mod:`dsprep.loading.transforms`) move them with the pixels;
3. the target: :func:`make_target` turns what came out into the task's dict
   of tensors (see ``docs/loading.md`` for every key).

A new task adds its inputs here, its target in :data:`TARGETS`, and its
collate in :mod:`dsprep.loading.collate`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import InvalidAnnotationError, MissingFileError
from ..masks import read_id_png, segmentation_mask
from . import transforms as T
from .decode import decode_mask
from .luts import build_luts, mask_readers
from .table import RecordTable

__all__ = ["Failed", "MaskReader", "Skipped", "TARGETS", "crop_plan", "file_bytes", "make_target", "object_inputs",
           "to_tensor_image"]


@dataclass(frozen=True)
class Skipped:
    """Returned instead of a sample when ``on_error="skip"`` and the image is unreadable.

    The loader's collate removes it from the batch and :class:`~dsprep.loading.Loader`
    counts it (``loader.skipped``); nothing is put in its place.
    """

    index: int
    image_id: str
    message: str


@dataclass(frozen=True)
class Failed:
    """Returned instead of a sample by a worker process when the image is bad and ``on_error="raise"``.

    torch re-raises an exception from a worker as a new one built from its text, the
    worker's traceback in its message (which the CLI would print). Sent as a sample
    instead, the error itself reaches :class:`~dsprep.loading.Loader`, which raises it
    unchanged in the main process: its file, message and validate kind intact.
    """

    error: Exception


def to_tensor_image(image: Any) -> torch.Tensor:
    """An ``(H, W, 3)`` (or ``(H, W)``) uint8 image -> a ``(3, H, W)`` tensor view."""
    # The (H, W, 3) array is wrapped, not copied (it may be read-only, from PIL, or a
    # strided view): collate copies it into the batch, planar.
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return T._tensor(arr).permute(2, 0, 1)


def file_bytes(files: Mapping[str, bytes] | None, path: str) -> bytes | None:
    """The bytes of ``path`` from ``files`` (a streamed sample's members by path), or None when
    ``files`` is None (read the file itself).

    Raises:
        MissingFileError: ``files`` has no such member.
    """
    if files is None:
        return None
    data = files.get(path)
    if data is None:
        raise MissingFileError(path, "the sample has no such member in its shard (the writer stores images "
                                     "and masks as <key>.<ext>, <key>.mask.png, <key>.inst.png)")
    return data


# --------------------------------------------------------------------------- inputs

def object_inputs(table: RecordTable, objs: slice, *, keypoints: bool, flip_map: np.ndarray | None) -> dict:
    """Detection/keypoints inputs of one record: its boxes (float64 for the transforms), labels, flags."""
    sample: dict[str, Any] = {
        "boxes": table.boxes[objs].astype(np.float64),
        "labels": table.labels[objs],
        "iscrowd": table.iscrowd[objs],
        "difficult": table.difficult[objs],
    }
    if keypoints:
        sample["keypoints"] = table.keypoints[objs].astype(np.float64)
        sample["flip_map"] = flip_map
    return sample


def crop_plan(table: RecordTable, objs: slice, j: int, w: int, h: int, context: float, path: str) -> T.Plan:
    """The plan that cuts object ``j`` of a record out of its ``w x h`` image, widened by ``context``.

    Raises:
        InvalidAnnotationError: the object's box is empty.
    """
    o = objs.start + j
    x0, y0, x1, y1 = table.boxes[o].astype(np.float64)
    dx, dy = (x1 - x0) * context, (y1 - y0) * context
    x0, y0, x1, y1 = x0 - dx, y0 - dy, x1 + dx, y1 + dy
    cw, ch = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise InvalidAnnotationError(path, f"object {j} has an empty box {table.boxes[o].tolist()}; cannot crop it")
    return T.Plan(w, h, x0, y0, x1, y1, cw, ch)


class MaskReader:
    """Reads a record's masks as the task wants them: semantic label maps through the
    dataset's lookup tables, instance masks from polygons/RLE, the instance PNG or the box.

    Args:
        dataset: the Dataset (its ``info`` names lookup tables and mask readers).
        table: its :class:`RecordTable`.
        mask_lut: the ``mask_lut`` option (see :func:`dsprep.loading.luts.build_lut`).
        semantic: build the semantic side (lookup tables, readers): segmentation only.
        files: mask bytes by path, read instead of the files (a streamed sample's members).
    """

    def __init__(self, dataset: Any, table: RecordTable, mask_lut: Any = "auto", *, semantic: bool = False,
                 files: Mapping[str, bytes] | None = None):
        self.table = table
        self.files = files
        self.luts, self.lut_of = build_luts(mask_lut, dataset) if semantic else ([None], None)
        self.readers, self.sources = mask_readers(dataset) if semantic else ([], {})

    def semantic(self, r: int, w: int, h: int) -> np.ndarray:
        """Record ``r``'s label map, ``(h, w)``, its values mapped by the record's lookup table."""
        m, path = self._read_label_map(r)
        if m.shape != (h, w):
            raise InvalidAnnotationError(path, f"mask is {m.shape[1]}x{m.shape[0]}, its image is {w}x{h}")
        lut = self.luts[0 if self.lut_of is None else self.lut_of[r]]
        if lut is not None:
            m = lut[np.minimum(m, len(lut) - 1)] if int(m.max(initial=0)) >= len(lut) else lut[m]
            m = m.astype(np.uint8) if int(lut.max()) <= 255 and int(lut.min()) >= 0 else m
        return m

    def _read_label_map(self, r: int) -> tuple[np.ndarray, str]:
        tb = self.table
        rel = tb.mask_paths[r]
        source = self.sources.get(r) if rel is None else None
        if source is not None:  # no label PNG (Cityscapes instanceIds / polygons.json only): the parser's reader
            reader, kind = self.readers[source[0]]
            path = os.path.join(tb.root, source[1])
            return reader(path, kind), path
        if rel is None:
            raise InvalidAnnotationError(tb.paths[r] or "", "task='segmentation' but the record has no mask_path "
                                                            "(nor a semantic source its parser can read)")
        path = os.path.join(tb.root, rel)
        return decode_mask(path, palette=tb.mask_palette, data=file_bytes(self.files, path)), path

    def instances(self, r: int, objs: slice, w: int, h: int, path: str) -> np.ndarray:
        """``(N, h, w)`` uint8 masks of record ``r``'s objects: from each object's polygons/RLE,
        else the record's instance PNG, else the box (the best mask there is, documented)."""
        tb = self.table
        n = objs.stop - objs.start
        out = np.zeros((n, h, w), np.uint8)
        png = None  # the record's instance PNG, read once, on first need
        for j in range(n):
            o = objs.start + j
            segm = tb.segm.bytes(o) if tb.segm is not None else None
            if segm is not None:
                m = _segm_mask(segm, h, w, f"{path}: object {j}")
                if m is not None:  # None: no polygon of 3 points or more, an empty mask
                    out[j] = m
            elif tb.instance_mask_paths[r] is not None:
                if png is None:
                    png = self._instance_png(r, w, h)
                out[j] = self._instance_from_png(png, r, o, j)
            else:
                x0, y0, x1, y1 = tb.boxes[o]
                out[j, int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = 1
        return out

    def _instance_png(self, r: int, w: int, h: int) -> np.ndarray:
        tb = self.table
        mp = os.path.join(tb.root, tb.instance_mask_paths[r])
        data = file_bytes(self.files, mp)
        png = (read_id_png(mp, "rgb", data=data) if tb.mask_encoding == "rgb"
               else decode_mask(mp, palette=tb.mask_palette, data=data))
        if png.shape != (h, w):
            raise InvalidAnnotationError(mp, f"instance mask is {png.shape[1]}x{png.shape[0]}, its image is {w}x{h}")
        return png

    def _instance_from_png(self, png: np.ndarray, r: int, o: int, j: int) -> np.ndarray:
        tb = self.table
        m = png == tb.mask_value[o]
        if tb.mask_encoding in ("id", "rgb") and not m.any():
            # the ids were read from this PNG's annotations (Cityscapes instanceIds,
            # panoptic segments_info): an id without a pixel means they disagree
            raise InvalidAnnotationError(
                os.path.join(tb.root, tb.instance_mask_paths[r]), f"object {j} (segment id {int(tb.mask_value[o])}) "
                f"has no pixel in this PNG: the PNG and its annotations disagree (dsprep validate --deep)")
        return m


def _segm_mask(segm: bytes, h: int, w: int, where: str) -> np.ndarray | None:
    try:
        return segmentation_mask(segm, h, w)
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidAnnotationError(where, f"bad segmentation ({err})") from None


# --------------------------------------------------------------------------- targets

def _array(value: Any, dtype: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(value, dtype))


def classification_target(table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                          image: torch.Tensor) -> dict:
    """``label``: the image's contiguous class index (-1: unlabelled)."""
    return {"label": torch.tensor(int(table.label[r]))}


def crop_target(table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                image: torch.Tensor) -> dict:
    """``label``, ``box`` (the source box) and ``object`` (its index in the image) of object ``j``."""
    o = int(table.obj_start[r]) + int(j)
    return {"label": torch.tensor(int(table.labels[o])), "box": torch.from_numpy(table.boxes[o].copy()),
            "object": torch.tensor(int(j))}


def detection_target(table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                     image: torch.Tensor, *, keypoints: bool = False) -> dict:
    """``boxes``, ``labels``, ``iscrowd``, ``difficult`` (+ ``masks``, ``keypoints``), ``size``, ``orig_size``."""
    target = {"boxes": _array(out["boxes"], np.float32), "labels": _array(out["labels"], np.int64),
              "iscrowd": _array(out["iscrowd"], bool), "difficult": _array(out["difficult"], bool)}
    if "masks" in out:
        target["masks"] = _array(out["masks"], np.uint8)
    if keypoints:
        target["keypoints"] = _array(out["keypoints"], np.float32)
    target["size"] = torch.tensor(tuple(image.shape[1:]), dtype=torch.int64)
    target["orig_size"] = torch.tensor(orig_hw, dtype=torch.int64)
    return target


def keypoints_target(table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                     image: torch.Tensor) -> dict:
    """The detection target plus ``keypoints`` float32 (N, K, 3)."""
    return detection_target(table, r, j, out, orig_hw, image, keypoints=True)


def segmentation_target(table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                        image: torch.Tensor) -> dict:
    """``mask``: uint8, or int64 where values pass 255 (16-bit label maps)."""
    m = out["mask"]
    dtype = np.uint8 if m.dtype == np.uint8 or (m.size and int(m.max()) <= 255) else np.int64
    return {"mask": _array(m, dtype)}


# task -> its target builder, called as (table, record, object in the record (crops), transformed
# sample, original (h, w), image tensor). A read-only table, not a registry: a new task is a new line.
TARGETS: Mapping[str, Callable[..., dict]] = MappingProxyType({
    "classification": classification_target,
    "crops": crop_target,
    "detection": detection_target,
    "keypoints": keypoints_target,
    "segmentation": segmentation_target,
})


def make_target(task: str, table: RecordTable, r: int, j: int | None, out: dict, orig_hw: tuple[int, int],
                image: torch.Tensor) -> dict:
    """The task's target dict for record ``r`` (object ``j`` for crops), plus ``image_id``."""
    target = TARGETS[task](table, r, j, out, orig_hw, image)
    target["image_id"] = table.ids[r]
    return target
