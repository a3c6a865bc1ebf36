"""Tiny generated VOC trees for tests (torchvision's ``inject_fake_data`` contract).

``make_voc(tmp_path, n=3)`` writes ``n`` images of 16x12 px with XMLs, split
lists and (optionally) palette masks, and returns the counts a parser must find.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _palette() -> list[int]:
    pal = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _xml(stem: str, w: int, h: int, objects: list[dict], *, size: bool = True) -> str:
    parts = ["<annotation>", "  <folder>VOC2012</folder>", f"  <filename>{stem}.jpg</filename>",
             "  <source><database>The VOC2012 Database</database></source>"]
    if size:
        parts.append(f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>")
    parts.append("  <segmented>0</segmented>")
    for o in objects:
        parts.append("  <object>")
        parts.append(f"    <name>{o['name']}</name>")
        parts.append(f"    <pose>{o.get('pose', 'Unspecified')}</pose>")
        parts.append(f"    <truncated>{o.get('truncated', 0)}</truncated>")
        parts.append(f"    <difficult>{o.get('difficult', 0)}</difficult>")
        x0, y0, x1, y1 = o["bndbox"]
        parts.append(f"    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>")
        parts.append(o.get("tail", ""))
        parts.append("  </object>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def make_voc(tmp_path: Path, n: int = 3, *, splits: dict[str, list[int]] | None = None, masks: bool = False,
             images: bool = True, extra_class: str | None = None, w: int = 16, h: int = 12) -> dict[str, Any]:
    """Write a VOC tree under ``tmp_path/VOC2012`` and return what a parser must find.

    Image ``i`` (``2012_00000i``) has ``i % 3 + 1`` objects of classes
    ``VOC_CLASSES[(i + k) % 20]``; object 0 of every image is difficult when
    ``i`` is odd. ``extra_class`` renames object 0 of image 0 to a non-VOC name.

    Returns:
        ``{"root", "images", "objects", "splits": {name: n}, "boxes": {record id: [[x0,y0,x1,y1],...]},
        "names": {record id: [...]}, "masks": n}``
    """
    root = Path(tmp_path) / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits = splits if splits is not None else {"train": list(range(0, n, 2)), "val": list(range(1, n, 2))}
    expect_boxes, expect_names = {}, {}
    n_obj = 0
    for i in range(n):
        stem = f"2012_{i:06d}"
        objs = []
        for k in range(i % 3 + 1):
            x0, y0 = 1 + k, 1 + k
            objs.append({"name": VOC_CLASSES[(i + k) % 20], "bndbox": (x0, y0, x0 + 5 + k, y0 + 4),
                         "difficult": int(k == 0 and i % 2 == 1)})
        if extra_class and i == 0:
            objs[0]["name"] = extra_class
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(stem, w, h, objs), encoding="utf-8")
        if images:
            Image.new("RGB", (w, h), (i * 20 % 256, 60, 90)).save(root / "JPEGImages" / f"{stem}.jpg")
        rid = f"JPEGImages/{stem}"
        expect_boxes[rid] = [[o["bndbox"][0] - 1.0, o["bndbox"][1] - 1.0, float(o["bndbox"][2]),
                              float(o["bndbox"][3])] for o in objs]
        expect_names[rid] = [o["name"] for o in objs]
        n_obj += len(objs)
        if masks:
            cls = np.zeros((h, w), np.uint8)
            obj = np.zeros((h, w), np.uint8)
            for k, o in enumerate(objs):
                x0, y0, x1, y1 = o["bndbox"]
                c = VOC_CLASSES.index(o["name"]) + 1 if o["name"] in VOC_CLASSES else 255
                cls[y0 - 1:y1, x0 - 1:x1] = c
                obj[y0 - 1:y1, x0 - 1:x1] = k + 1
            cls[0, :] = 255  # a void border, as the real masks have
            for sub, arr in (("SegmentationClass", cls), ("SegmentationObject", obj)):
                (root / sub).mkdir(exist_ok=True)
                im = Image.fromarray(arr, mode="P")
                im.putpalette(_palette())
                im.save(root / sub / f"{stem}.png")
    for name, idx in splits.items():
        (root / "ImageSets/Main" / f"{name}.txt").write_text(
            "".join(f"2012_{i:06d}\n" for i in idx), encoding="utf-8")
    if masks:
        (root / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets/Segmentation/train.txt").write_text(
            "".join(f"2012_{i:06d}\n" for i in range(n)), encoding="utf-8")
    return {"root": root, "images": n, "objects": n_obj, "splits": {k: len(v) for k, v in splits.items()},
            "boxes": expect_boxes, "names": expect_names, "masks": n if masks else 0}
