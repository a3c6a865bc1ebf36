"""Tiny generated COCO trees for the COCO tests.

``make_coco(tmp_path, ...)`` writes ``ROOT/annotations/<task>_<split>.json``
and ``ROOT/<split>/*.jpg`` (16x12 .. 64x48 images) and returns what a reader
must find, so a test compares against numbers it did not hard-code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "animal"},
              {"id": 3, "name": "dog", "supercategory": "animal"},
              {"id": 7, "name": "car", "supercategory": "vehicle"}]
KEYPOINT_NAMES = ["nose", "left_eye", "right_eye"]
SKELETON = [[1, 2], [1, 3]]  # 1-based, as real COCO stores it


def _rle_list(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict[str, Any]:
    """Uncompressed RLE (column-major runs starting with zeros) of a filled rectangle."""
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    flat = m.ravel(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [h, w], "counts": counts}


def make_coco(tmp_path: Path, *, splits: tuple[str, ...] = ("train2017", "val2017"), images_per_split: int = 3,
              task: str = "instances", compressed_rle: bool = False, with_images: bool = True,
              image_root: str = "", extra_keys: bool = False, seed: int = 0) -> dict[str, Any]:
    """Write a small COCO tree under ``tmp_path / "coco"``.

    Args:
        splits: split names (one JSON and one image folder each).
        task: ``instances``, ``person_keypoints`` or ``captions``.
        compressed_rle: crowd RLE as a compressed string (else an int list, as real COCO ground truth).
        with_images: write the JPEGs (else annotations only).
        image_root: ``""`` for ``ROOT/<split>/``, ``"images"`` for ``ROOT/images/<split>/``.
        extra_keys: add a non-standard ``attributes`` dict to every annotation.

    Returns:
        ``{"root", "images": {split: n}, "objects": {split: n}, "crowd": n, "boxes": {(split, file_name): [[x,y,w,h]...]},
        "json": {split: path}}``.
    """
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    expected: dict[str, Any] = {"root": root, "images": {}, "objects": {}, "crowd": 0, "boxes": {}, "json": {},
                                "captions": 0}
    ann_id = 1
    image_id = 100
    for split in splits:
        img_dir = root / image_root / split if image_root else root / split
        if with_images:
            img_dir.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        n_obj = 0
        for k in range(images_per_split):
            w, h = int(rng.integers(16, 65)), int(rng.integers(12, 49))
            name = f"{image_id:012d}.jpg"
            if with_images:
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / name)
            images.append({"id": image_id, "width": w, "height": h, "file_name": name, "license": 1,
                           "coco_url": f"http://example.org/{name}", "date_captured": "2017-01-01 00:00:00"})
            boxes = []
            if task == "captions":
                for c in range(2):
                    anns.append({"id": ann_id, "image_id": image_id, "caption": f"caption {c} of {name}"})
                    ann_id += 1
                    expected["captions"] += 1
            else:
                for o in range(k):  # image 0 of each split has no objects
                    x = round(float(rng.uniform(0, w / 2)), 2)
                    y = round(float(rng.uniform(0, h / 2)), 2)
                    bw = round(float(rng.uniform(2, w - x - 1)), 2)
                    bh = round(float(rng.uniform(2, h - y - 1)), 2)
                    crowd = task == "instances" and o == 1
                    if crowd:
                        x0, y0, x1, y1 = int(x), int(y), int(x + bw), int(y + bh)
                        rle = _rle_list(h, w, y0, y1, x0, x1)
                        if compressed_rle:
                            rle = mask_utils.frPyObjects(rle, h, w)
                            rle["counts"] = rle["counts"].decode("ascii")
                        segm = rle
                        x, y, bw, bh = float(x0), float(y0), float(x1 - x0), float(y1 - y0)
                        area = float((x1 - x0) * (y1 - y0))
                        expected["crowd"] += 1
                    else:
                        segm = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
                        if o == 2:  # a second polygon
                            segm.append([x, y, x + bw / 2, y, x, y + bh / 2])
                        area = round(bw * bh, 3)
                    ann = {"id": ann_id, "image_id": image_id, "category_id": CATEGORIES[o % 3]["id"],
                           "segmentation": segm, "area": area, "bbox": [x, y, bw, bh], "iscrowd": int(crowd)}
                    if task == "person_keypoints":
                        ann["category_id"] = 1
                        kp = []
                        for _ in KEYPOINT_NAMES:
                            v = int(rng.integers(0, 3))
                            kp += [0, 0, 0] if v == 0 else [int(x + bw / 2), int(y + bh / 2), v]
                        ann["keypoints"] = kp
                        ann["num_keypoints"] = sum(1 for i in range(2, len(kp), 3) if kp[i] > 0)
                    if extra_keys:
                        ann["attributes"] = {"occluded": bool(o % 2), "color": "red"}
                    anns.append(ann)
                    boxes.append([x, y, bw, bh])
                    ann_id += 1
                    n_obj += 1
            expected["boxes"][(split, name)] = boxes
            image_id += 1
        cats = CATEGORIES
        if task == "person_keypoints":
            cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES,
                     "skeleton": SKELETON}]
        doc = {"info": {"description": "dsprep fake", "year": 2017}, "licenses": [{"id": 1, "name": "L", "url": ""}],
               "images": images, "annotations": anns}
        if task != "captions":
            doc["categories"] = cats
        path = root / "annotations" / f"{task}_{split}.json"
        path.write_text(json.dumps(doc))
        expected["json"][split] = path
        expected["images"][split] = images_per_split
        expected["objects"][split] = n_obj
    return expected
