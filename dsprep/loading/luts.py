"""How the values in a record's mask files become the classes a segmentation target holds.

- :func:`build_luts`: the ``mask_lut`` option -> lookup arrays (mask value
  -> class), one per kind of mask file a dataset has (Cityscapes
  ``labelIds`` and ``labelTrainIds`` side by side), and which one each record uses.
- :func:`segmentation_classes`: the classes ``dsprep train`` and ``dsprep show``
  give a semantic mask's values, and the ``mask_lut`` that produces them.
- :func:`mask_readers`: for records whose label map is drawn from another
  file (Cityscapes instanceIds or polygons.json only), the parser-named
  function that draws it.

numpy only (no torch).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..errors import check_choice
from ..masks import semantic_readers

__all__ = ["build_lut", "build_luts", "mask_readers", "segmentation_classes"]


def build_lut(mask_lut: Any, dataset: Any) -> np.ndarray | None:
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


def build_luts(mask_lut: Any, dataset: Any) -> tuple[list[np.ndarray | None], np.ndarray | None]:
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
        return [build_lut(mask_lut, dataset)], None
    space = dataset.info.get("cityscapes_label_space", "id")
    names = sorted(kinds)
    luts: list[np.ndarray | None] = []
    for name in names:
        lut = np.asarray(kinds[name], np.int64)
        if mask_lut != "auto" and space == "id":  # values -> label ids -> train ids
            lut = build_lut("train_id", dataset)[lut]
        luts.append(None if np.array_equal(lut, np.arange(len(lut))) else lut)
    # a record of no known kind: raw values for "auto", the category table for "train_id"
    luts.append(None if mask_lut == "auto" else build_lut("train_id", dataset))
    index = {name: i for i, name in enumerate(names)}
    which = np.array([index.get((e or {}).get("mask_kind"), len(names)) for e in dataset.column("extra")],
                     np.int8)
    return luts, which


def mask_readers(dataset: Any) -> tuple[list[tuple[Callable, str]], dict[int, tuple[int, str]]]:
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


def segmentation_classes(ds: Any) -> tuple[list[str], dict[str, Any]]:
    """Class names of the semantic masks and the loader options that produce them.

    Cityscapes: the 19 train ids (``mask_lut="train_id"``). VOC: background plus
    the categories in order (mask index 0 = background, i = i-th category).
    Otherwise the category names, masks taken as category positions.
    """
    names = ds.info.get("train_id_names")
    if names:
        return list(names), {"mask_lut": "train_id"}
    if ds.format == "voc":
        return ["background", *ds.class_names()], {}
    return ds.class_names(), {}
