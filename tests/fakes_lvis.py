"""Tiny generated LVIS v1 trees for the LVIS tests.

``make_lvis(tmp_path)`` writes ``ROOT/annotations/lvis_v1_{train,val}.json`` (images named
by ``coco_url`` only, as in v1) and ``ROOT/{train2017,val2017}/*.jpg``, and returns the
documents, so a test compares against values it did not hard-code.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CATEGORIES = [
    {"id": 1, "name": "acorn", "synset": "acorn.n.01", "synonyms": ["acorn"], "def": "nut from an oak tree",
     "frequency": "r", "image_count": 1, "instance_count": 2},
    {"id": 3, "name": "aerosol_can", "synset": "aerosol.n.02", "synonyms": ["aerosol_can", "spray_can"],
     "def": "a dispenser that holds a substance under pressure", "frequency": "c", "image_count": 2,
     "instance_count": 2},
    {"id": 7, "name": "straße_sign", "synset": "street_sign.n.01", "synonyms": ["street_sign"], "def": "a sign",
     "frequency": "f", "image_count": 1, "instance_count": 1},
]


def make_lvis(tmp_path: Path, *, images: bool = True) -> dict[str, Any]:
    """Two splits of two images each; image ids 10, 11 (train), 20, 21 (val); each image's
    ``neg_category_ids``/``not_exhaustive_category_ids`` differ; one val image has no objects.

    Returns:
        ``{"root", "docs": {split: document}, "files": {split: path}}``.
    """
    root = tmp_path / "lvis"
    (root / "annotations").mkdir(parents=True)
    docs, files = {}, {}
    ann_id = 1
    for split, base in (("train", 10), ("val", 20)):
        folder = f"{split}2017"
        (root / folder).mkdir()
        imgs, anns = [], []
        for k in range(2):
            iid = base + k
            w, h = 32 + 8 * k, 24
            imgs.append({"id": iid, "width": w, "height": h, "license": 1,
                         "coco_url": f"http://images.cocodataset.org/{folder}/{iid:012d}.jpg",
                         "flickr_url": f"http://farm.example/{iid}.jpg", "date_captured": "2013-11-19 20:30:17",
                         "neg_category_ids": [7] if k == 0 else [], "not_exhaustive_category_ids": [3] if k else []})
            if images:
                Image.fromarray(np.full((h, w, 3), iid, np.uint8)).save(root / folder / f"{iid:012d}.jpg")
            if split == "val" and k == 1:
                continue  # an image without objects
            for cat, (x, y, bw, bh) in ((1, (1.5, 2.25, 10.5, 8.0)), (3, (12.0, 3.0, 7.75, 9.5))):
                poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
                anns.append({"id": ann_id, "image_id": iid, "category_id": cat if k == 0 else 7 - 6 * (cat == 3),
                             "bbox": [x, y, bw, bh], "area": bw * bh, "segmentation": [poly]})
                ann_id += 1
        docs[split] = {"info": {"description": "generated", "year": 2019}, "licenses": [{"id": 1, "name": "x"}],
                       "categories": copy.deepcopy(CATEGORIES), "images": imgs, "annotations": anns}
        files[split] = root / "annotations" / f"lvis_v1_{split}.json"
        files[split].write_text(json.dumps(docs[split], ensure_ascii=False))
    return {"root": root, "docs": docs, "files": files}
