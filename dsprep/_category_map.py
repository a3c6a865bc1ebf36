"""``OUT/category_map.json``: the categories a conversion wrote, with their ids.

``dsprep convert`` (:func:`dsprep.conversion.write_dataset`) writes it into every OUT:
``{"policy", "source_format", "categories": [{"name", "source_id", "id", "supercategory"}]}``,
``id`` being the id as written (after ``--category-ids``). A format that stores class names but
no ids (VOC) reads it back, so that COCO -> VOC -> COCO gives back COCO's ids 1..90 and the
supercategories (docs/records.md, "What survives which conversion").
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

CATEGORY_MAP_FILE = "category_map.json"

__all__ = ["CATEGORY_MAP_FILE", "category_map_text", "read_category_map", "restorable"]


def category_map_text(categories: Sequence[Any], mapping: Mapping[int, int], policy: str,
                      source_format: str | None) -> str:
    """The file's text for ``categories`` (source ids) renumbered by ``mapping``."""
    cmap = {
        "policy": policy,
        "source_format": source_format,
        "categories": [{"name": c.name, "source_id": c.id, "id": mapping[c.id], "supercategory": c.supercategory}
                       for c in categories],
    }
    return json.dumps(cmap, indent=1, ensure_ascii=False) + "\n"


def read_category_map(root: str | os.PathLike) -> dict[str, dict[str, Any]] | None:
    """``name -> {"id", "supercategory"}`` from ``root/category_map.json``, or None when there is none
    or it is not one dsprep wrote (not JSON, names not unique, ids not ints): it is then ignored."""
    path = Path(root) / CATEGORY_MAP_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["categories"]
        out = {}
        for e in entries:
            name, cid, sup = e["name"], e["id"], e.get("supercategory", "")
            if not (isinstance(name, str) and type(cid) is int and isinstance(sup, str)) or name in out:
                return None
            out[name] = {"id": cid, "supercategory": sup}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if len({e["id"] for e in out.values()}) == len(out) else None


def restorable(root: str | os.PathLike, categories: Sequence[Any]) -> bool:
    """Whether ``root``'s category map gives back these categories' ids and supercategories."""
    cmap = read_category_map(root)
    return cmap is not None and all(
        c.name in cmap and cmap[c.name]["id"] == c.id and cmap[c.name]["supercategory"] == (c.supercategory or "")
        for c in categories)
