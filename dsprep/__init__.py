"""dsprep: prepare, convert and load ImageNet, COCO, PASCAL VOC and Cityscapes.

Importing ``dsprep`` does not import torch: the torch layer
(:mod:`dsprep.loading`, :mod:`dsprep.models`) is imported when first used.

This module is the package root: the one place that knows both the record
model (:mod:`dsprep.records`, the ground floor) and the torch layer above
it, so it is here that ``Dataset.torch`` and ``Dataset.loader`` are wired
to :mod:`dsprep.loading` (``docs/architecture.md``).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .catalog import load
from .conversion import convert
from .errors import (DatasetNotFoundError, DsprepError, FormatError, InvalidAnnotationError,
                     MalformedFileError, MissingFileError, OutputExistsError, OutputLockedError,
                     PathEscapeError, UnknownNameError)
from .formats import FORMATS, detect_format, get_format
from .records import BoxFormat, Category, Dataset, Instances, Record, convert_boxes


def parse(format: str, root, **options) -> Dataset:
    """Parse the dataset at ``root`` in ``format`` into records (annotations only).

    Example:
        >>> ds = dsprep.parse("voc", "VOCdevkit/VOC2007", split="test")  # doctest: +SKIP
    """
    return get_format(format).parse(root, **options)


def _dataset_torch(self: Dataset, task: str | None = None, augment: Any = "none", **options: Any) -> Any:
    """A map-style ``torch.utils.data.Dataset`` over these records: a
    :class:`dsprep.loading.TorchDataset` (see it for ``augment`` and the options).

    torch is imported now, not when records are.
    """
    from .loading.dataset import TorchDataset

    return TorchDataset(self, task=task, augment=augment, **options)


def _dataset_loader(self: Dataset, batch_size: int = 32, **options: Any) -> Any:
    """A ``torch.utils.data.DataLoader`` with the task's collate, sampler and workers
    (:func:`dsprep.loading.make_loader`; torch is imported now)."""
    from .loading.build import make_loader

    return make_loader(self, batch_size=batch_size, **options)


_dataset_torch.__name__ = _dataset_torch.__qualname__ = "Dataset.torch"
_dataset_loader.__name__ = _dataset_loader.__qualname__ = "Dataset.loader"
Dataset.torch = _dataset_torch  # type: ignore[method-assign]
Dataset.loader = _dataset_loader  # type: ignore[method-assign]


# Names of the torch layer, imported from dsprep.loading on first use: `import dsprep` stays
# torch-free (`from dsprep import *` does import torch, as it asks for every name).
_TORCH_NAMES = ("make_loader", "to_device")


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'dsprep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_NAMES))


# The public API, listed once (pinned by tests/test_public_api.py). ``dsprep.__version__`` is
# metadata, not part of it.
__all__ = sorted([
    "BoxFormat", "Category", "Dataset", "DatasetNotFoundError", "DsprepError", "FORMATS",
    "FormatError", "Instances", "InvalidAnnotationError", "MalformedFileError", "MissingFileError",
    "OutputExistsError", "OutputLockedError", "PathEscapeError", "Record", "UnknownNameError", "convert",
    "convert_boxes", "detect_format", "get_format", "load", "parse", *_TORCH_NAMES,
])
