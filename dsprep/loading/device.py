"""The device step: uint8 batches cross the bus, then become float and normalised there.

:func:`to_device` moves a batch (``non_blocking`` from pinned memory) and
computes ``(x / 255 - mean) / std`` on the device in the requested dtype;
:class:`DeviceLoader` wraps a loader so that on CUDA the next batch is copied
on a side stream while the current one is used.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DeviceLoader", "to_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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
