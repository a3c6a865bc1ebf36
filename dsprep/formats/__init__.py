"""The format registry: a literal, read-only mapping from name to module.

Each format module exposes:

- ``NAME`` and ``DESCRIPTION`` (one line, shown by ``dsprep convert --help``);
- ``detect(path) -> bool``: whether ``path`` looks like this format (cheap: file patterns only);
  a format whose detect matches generic trees (ImageNet: any folder of image folders) also sets
  ``DETECT_WEAK = True``: it is a candidate only where no other format recognises the path
  (:func:`detect_formats`; ``dsprep info ROOT`` and friends use it);
- ``parse(path, *, split=None, on_error="raise", workers=None, progress=None, **options) -> Dataset``;
- ``write(dataset, dest, *, images="link", progress=None, **options) -> dict``: writes into the
  existing directory ``dest`` and returns a report: ``{"images": n, "objects": n,
  "lost": {what: count}}`` where ``lost`` names what the format cannot hold;
- ``HOLDS``: the subset of :data:`FIELDS` that ``write`` keeps of *any* dataset, so that
  parsing the output gives it back equal. Everything else a dataset has is either given back
  equal anyway or counted in ``lost`` under a key naming it (:data:`LOST_WORDS`); the
  round-trip matrix (``tests/test_roundtrip_matrix.py``) checks both for every ordered
  pair of formats and ``docs/records.md`` lists what it observed (``scripts/gen_roundtrip_table.py``).

``parse`` may set ``info["builtin_categories"]``: ids of categories the format supplies
whatever the files hold (VOC's 20 classes without a ``labelmap.txt``); ``dsprep validate``
does not report those as unused.

Formats never import each other: a conversion is always ``parse`` then ``write``
through :mod:`dsprep.records`. Adding a format is one module plus one line here.
"""
from __future__ import annotations

import importlib
from types import MappingProxyType, ModuleType
from typing import Mapping

from ..errors import UnknownNameError, check_choice

__all__ = ["FIELDS", "FORMATS", "LOST_WORDS", "detect_format", "detect_formats", "get_format"]

# What a format may hold of a dataset: the vocabulary of each module's HOLDS.
FIELDS: Mapping[str, str] = MappingProxyType({
    "file_names": "image file names (the name without its folder)",
    "splits": "split of each image",
    "overlapping_splits": "an image in several splits (VOC trainval)",
    "objects": "every object, also those without a mask",
    "boxes": "object boxes, to the last decimal",
    "categories": "object categories (by name)",
    "category_ids": "category ids as given (COCO 1..90 with gaps)",
    "supercategory": "category supercategories",
    "crowd": "crowd flags",
    "difficult": "difficult flags",
    "masks": "object masks (pixels)",
    "keypoints": "object keypoints",
    "image_labels": "image-level labels",
    "annotation_ids": "annotation ids",
    "image_ids": "source image ids (ints; Cityscapes' string ids are its file names)",
})

# A writer's ``lost`` key for a field it cannot hold names the field with one of these
# (lower-case) words.
LOST_WORDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "file_names": ("file name",),
    "splits": ("split",),
    "overlapping_splits": ("split",),
    "objects": ("object",),
    "boxes": ("box",),
    "categories": ("categor", "object"),
    "category_ids": ("category id", "categories"),
    "supercategory": ("supercategor", "categories"),
    "crowd": ("crowd",),
    "difficult": ("difficult",),
    "masks": ("mask", "segmentation"),
    "keypoints": ("keypoint",),
    "image_labels": ("image-level label",),
    "annotation_ids": ("annotation id",),
    "image_ids": ("image id",),
})

# name -> module path. Modules are imported on first use so that `dsprep --help`
# and a COCO-only conversion do not pay for lxml or the Cityscapes tables.
_MODULES = {
    "coco": "dsprep.formats.coco",
    "coco-panoptic": "dsprep.formats.coco_panoptic",
    "voc": "dsprep.formats.voc",
    # before imagenet: detect_format asks in this order, and a KITTI training/ folder
    # (image_2/*.png) would also pass for a class-subfolder tree
    "lvis": "dsprep.formats.lvis",
    "kitti": "dsprep.formats.kitti",
    "imagenet": "dsprep.formats.imagenet",
    "cityscapes": "dsprep.formats.cityscapes",
    "shards": "dsprep.formats.shards",
    "labelme": "dsprep.formats.labelme",
    "cvat": "dsprep.formats.cvat",
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


def detect_formats(path) -> list[str]:
    """Every format that recognises ``path``, in registry order: the candidates.

    A format with ``DETECT_WEAK`` (one whose ``detect`` matches generic trees) is listed
    only when no other format recognises ``path``. Empty when none does.
    """
    strong: list[str] = []
    weak: list[str] = []
    for name in FORMATS:
        module = FORMATS[name]
        try:
            found = module.detect(path)
        except (NotImplementedError, OSError):  # a format without detection, an unreadable folder
            continue
        if found:
            (weak if getattr(module, "DETECT_WEAK", False) else strong).append(name)
    return strong or weak


def detect_format(path) -> str:
    """The one format that recognises ``path`` (see :func:`detect_formats`).

    Raises:
        UnknownNameError: no format recognises ``path``, or more than one does (the
            message lists the candidates).
    """
    found = detect_formats(path)
    if len(found) > 1:
        raise UnknownNameError(f"{path}: looks like more than one format ({', '.join(found)}); "
                               "name the format explicitly")
    if not found:
        raise UnknownNameError(f"{path}: no known format recognises this path "
                               f"(tried {', '.join(FORMATS)}); name the format explicitly")
    return found[0]
