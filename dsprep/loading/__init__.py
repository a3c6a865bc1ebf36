"""The torch layer: PyTorch datasets and DataLoaders over dsprep records, for every task.

``ds.torch(task=...)`` gives a :class:`TorchDataset`; ``ds.loader(...)``
(:func:`make_loader`) gives a :class:`Loader` (a ``DataLoader``) with the
task's collate, a deterministic sampler (distributed-aware, aspect-ratio
grouped for detection), seeded workers, pinned uint8 batches and
:func:`to_device` for conversion and normalisation on the device.

One module per concern, in the order a sample travels (each imports only
those above it in this list):

- :mod:`~dsprep.loading.decode`: image and mask decoding (no torch);
- :mod:`~dsprep.loading.transforms`: augmentation as one plan per sample,
  rendered once onto pixels, boxes, masks and keypoints;
- :mod:`~dsprep.loading.table`: the records as flat numpy buffers for
  workers (no torch);
- :mod:`~dsprep.loading.luts`: how mask values become classes;
- :mod:`~dsprep.loading.targets`: per task, a sample's inputs and its target dict;
- :mod:`~dsprep.loading.dataset`: :class:`TorchDataset`, which runs those steps;
- :mod:`~dsprep.loading.collate`: samples -> batches;
- :mod:`~dsprep.loading.samplers`: epoch, aspect-ratio grouped and distributed sampling;
- :mod:`~dsprep.loading.shards`: :class:`ShardStream`, a split's tar shards streamed from a
  folder or a URL through the same per-sample code;
- :mod:`~dsprep.loading.build`: :func:`make_loader` and :class:`Loader`;
- :mod:`~dsprep.loading.device`: :func:`to_device` and :class:`DeviceLoader`.

The names below are imported from their module on first use, so that
``dsprep.loading.decode`` and ``dsprep.loading.transforms`` can be used
without importing torch. See ``docs/loading.md`` and ``docs/architecture.md``.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> the module of this package that defines it
_EXPORTS = {
    "Collate": "collate", "collate_classification": "collate", "collate_detection": "collate",
    "collate_segmentation": "collate",
    "DeviceLoader": "device", "IMAGENET_MEAN": "device", "IMAGENET_STD": "device", "to_device": "device",
    "Loader": "build", "StreamLoader": "build", "make_loader": "build", "worker_init_fn": "build",
    "ShardStream": "shards",
    "EpochSampler": "samplers", "GroupedBatchSampler": "samplers",
    "RecordTable": "table",
    "Skipped": "targets",
    "TASKS": "dataset", "TorchDataset": "dataset",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .build import Loader, StreamLoader, make_loader, worker_init_fn
    from .collate import Collate, collate_classification, collate_detection, collate_segmentation
    from .dataset import TASKS, TorchDataset
    from .device import IMAGENET_MEAN, IMAGENET_STD, DeviceLoader, to_device
    from .samplers import EpochSampler, GroupedBatchSampler
    from .shards import ShardStream
    from .table import RecordTable
    from .targets import Skipped


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
