"""dsprep: prepare, convert and load ImageNet, COCO, PASCAL VOC and Cityscapes.

Importing ``dsprep`` does not import torch: the torch layer
(:mod:`dsprep.loaders`, :mod:`dsprep.models`) is imported when first used.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .catalog import load
from .convert import convert
from .errors import (DatasetNotFoundError, DsprepError, FormatError, InvalidAnnotationError,
                     MalformedFileError, MissingFileError, OutputExistsError, UnknownNameError)
from .formats import FORMATS, detect_format, get_format
from .records import BoxFormat, Category, Dataset, Instances, Record, convert_boxes


def parse(format: str, root, **options) -> Dataset:
    """Parse the dataset at ``root`` in ``format`` into records (annotations only).

    Example:
        >>> ds = dsprep.parse("voc", "VOCdevkit/VOC2007", split="test")  # doctest: +SKIP
    """
    return get_format(format).parse(root, **options)


def __getattr__(name: str):
    # The torch layer on first use only: ``import dsprep`` stays torch-free.
    if name in ("to_device", "make_loader"):
        from . import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'dsprep' has no attribute {name!r}")


__all__ = sorted([
    "BoxFormat", "Category", "Dataset", "DatasetNotFoundError", "DsprepError", "FORMATS",
    "FormatError", "Instances", "InvalidAnnotationError", "MalformedFileError", "MissingFileError",
    "OutputExistsError", "Record", "UnknownNameError", "convert", "convert_boxes", "detect_format",
    "get_format", "load", "parse", "__version__",
])
