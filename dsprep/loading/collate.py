"""Samples -> batches, per task.

Images become one contiguous ``(B, 3, H, W)`` uint8 tensor, zero-padded at
the right and bottom to the largest image (to a multiple of ``pad_to`` for
detection). In a worker the batch is allocated in shared memory, so sending
it to the main process copies nothing. Targets: stacked (classification,
segmentation masks padded with 255) or a list of dicts (detection,
keypoints). :class:`Skipped` markers are dropped and, with
``report_skips``, handed back to the loader to count.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.utils.data as tud

from ..errors import check_choice
from .targets import Failed, Skipped
from .transforms import TASKS

__all__ = ["Collate", "collate_classification", "collate_detection", "collate_segmentation", "unpack_targets"]


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
    dst = out.numpy()  # numpy's copy turns HWC pixels planar in half the time of torch's strided copy
    for k, t in enumerate(images):
        h, w = int(t.shape[1]), int(t.shape[2])
        dst[k, :, :h, :w] = t.numpy()
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
        failed = next((s for s in samples if isinstance(s, Failed)), None)
        if failed is not None:  # a bad image in a worker: its error goes to the Loader as it is
            return None, failed
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


def unpack_targets(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, dict):
        return {k: unpack_targets(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack_targets(v) for v in obj]
    return obj

