"""A small generated LabelMe tree (one JSON per image), for tests/test_labelme.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image


def shape(label: str, points: list, kind: str = "polygon", group_id: int | None = None, **more: Any) -> dict:
    return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": kind,
            "flags": {}, "mask": None, **more}


def document(image_path: str, shapes: list, w: int = 16, h: int = 12, **more: Any) -> dict:
    return {"version": "5.7.0", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": h, "imageWidth": w, **more}


def make_labelme(tmp_path: Path, *, layout: str = "beside", n: int = 3) -> dict[str, Any]:
    """Write ``n`` 16x12 images with a LabelMe JSON each under ``tmp_path / "labelme"``.

    Image k has: a ``cat`` polygon, a ``dog`` rectangle, and (k >= 1) a ``cat`` made of two
    polygons joined by group_id 7, plus a ``dog`` point (no object). ``layout="folder"`` puts
    the JSONs in ``annotations/`` and the images in ``images/`` (``imagePath`` ``../images/...``).

    Returns:
        ``{"root", "images": n, "objects": n, "boxes": {record id: [[x1, y1, x2, y2], ...]}}``.
    """
    root = tmp_path / "labelme"
    expected: dict[str, Any] = {"root": root, "images": n, "objects": 0, "boxes": {}}
    for k in range(n):
        name = f"img{k}"
        img_rel = f"images/{name}.png" if layout == "folder" else f"{name}.png"
        json_rel = f"annotations/{name}.json" if layout == "folder" else f"{name}.json"
        (root / img_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / json_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 12), (k * 40, 90, 30)).save(root / img_rel)
        shapes = [shape("cat", [[1, 1], [6.5, 1], [6.5, 5 + k]]),
                  shape("dog", [[14, 10], [8, 2]], "rectangle")]
        boxes = [[1.0, 1.0, 6.5, 5.0 + k], [8.0, 2.0, 14.0, 10.0]]
        if k >= 1:
            shapes += [shape("cat", [[0, 8], [3, 8], [3, 11]], group_id=7),
                       shape("dog", [[5, 5]], "point"),
                       shape("cat", [[10, 0], [15, 0], [15, 1.25]], group_id=7)]
            boxes.append([0.0, 0.0, 15.0, 11.0])
        image_path = f"../images/{name}.png" if layout == "folder" else f"{name}.png"
        (root / json_rel).write_text(json.dumps(document(image_path, shapes)), encoding="utf-8")
        rid = img_rel.rsplit(".", 1)[0]
        expected["boxes"][rid] = boxes
        expected["objects"] += len(boxes)
    return expected
