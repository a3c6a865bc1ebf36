"""The format registry: a literal, read-only mapping from name to module.

Each format module exposes:

- ``NAME`` and ``DESCRIPTION`` (one line, shown by ``dsprep convert --help``);
- ``detect(path) -> bool``: whether ``path`` looks like this format (cheap: file patterns only);
- ``parse(path, *, split=None, on_error="raise", workers=None, progress=None, **options) -> Dataset``;
- ``write(dataset, dest, *, images="link", progress=None, **options) -> dict``: writes into the
  existing directory ``dest`` and returns a report: ``{"images": n, "objects": n,
  "lost": {what: count}}`` where ``lost`` names what the format cannot hold.

Formats never import each other: a conversion is always ``parse`` then ``write``
through :mod:`dsprep.records`. Adding a format is one module plus one line here.
"""
from __future__ import annotations

import importlib
from types import MappingProxyType, ModuleType
from typing import Mapping

from ..errors import UnknownNameError, check_choice

__all__ = ["FORMATS", "detect_format", "get_format"]

# name -> module path. Modules are imported on first use so that `dsprep --help`
# and a COCO-only conversion do not pay for lxml or the Cityscapes tables.
_MODULES = {
    "coco": "dsprep.formats.coco",
    "coco-panoptic": "dsprep.formats.coco_panoptic",
    "voc": "dsprep.formats.voc",
    "imagenet": "dsprep.formats.imagenet",
    "cityscapes": "dsprep.formats.cityscapes",
    "shards": "dsprep.formats.shards",
}


class _LazyFormats(Mapping[str, ModuleType]):
    """A read-only mapping that imports a format module when it is first looked up."""

    def __init__(self, modules: Mapping[str, str]):
        self._modules = MappingProxyType(dict(modules))

    def __getitem__(self, name: str) -> ModuleType:
        return importlib.import_module(self._modules[name])

    def __iter__(self):
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


FORMATS: Mapping[str, ModuleType] = _LazyFormats(_MODULES)


def get_format(name: str) -> ModuleType:
    """The module of format ``name``; unknown names list the valid ones.

    Raises:
        UnknownNameError: ``name`` is not a known format.
    """
    check_choice("format", name, FORMATS)
    return FORMATS[name]


def detect_format(path) -> str:
    """The name of the first format whose ``detect(path)`` is true.

    Raises:
        UnknownNameError: no format recognises ``path``.
    """
    for name in FORMATS:
        try:
            if FORMATS[name].detect(path):
                return name
        except NotImplementedError:
            continue
    raise UnknownNameError(f"{path}: no known format recognises this directory "
                           f"(tried {', '.join(FORMATS)}); name the format explicitly")
