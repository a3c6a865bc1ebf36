"""A tiny generated Cityscapes tree (torchvision's ``inject_fake_data`` contract).

Every frame is 32x16 and holds the same scene, shifted right by the frame
index: sky, building, road, ego vehicle, two cars, a person, a ``cargroup``,
a license plate drawn over a car (never drawn: negative id) and a deleted car
(skipped). All shapes are axis-aligned rectangles, so the expected pixels are
painted here with numpy, independently of PIL: ``ImageDraw.polygon`` fills a
rectangle's corner pixels inclusively.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 32, 16
LABEL_COLORS = {0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0), 7: (128, 64, 128), 11: (70, 70, 70),
                23: (70, 130, 180), 24: (220, 20, 60), 26: (0, 0, 142)}

# (label, x0, y0, x1, y1, deleted): drawn in this order, corners inclusive
SCENE = [
    ("sky", 0, 0, 31, 5, 0),
    ("building", 0, 6, 15, 9, 0),
    ("road", 0, 10, 31, 14, 0),
    ("ego vehicle", 0, 15, 31, 15, 0),
    ("car", 16, 0, 18, 3, 1),  # deleted: skipped, does not count as car 0
    ("car", 2, 8, 7, 12, 0),  # 26000
    ("license plate", 3, 11, 5, 12, 0),  # id -1: not drawn
    ("car", 10, 9, 14, 13, 0),  # 26001
    ("person", 20, 4, 22, 12, 0),  # 24000
    ("cargroup", 24, 10, 29, 13, 0),  # 26, no instance id
]
IDS = {"sky": 23, "building": 11, "road": 7, "ego vehicle": 1, "car": 26, "person": 24, "license plate": -1}
# objects per frame with instances="things": car 26000, car 26001, person 24000, crowd 26
THINGS_PER_FRAME = 4


def scene(shift: int = 0) -> tuple[list[dict], np.ndarray]:
    """(polygons.json objects, expected instanceIds map) of the scene shifted by ``shift``."""
    inst = np.zeros((H, W), np.uint16)
    objects = []
    counters: dict[str, int] = {}
    for label, x0, y0, x1, y1, deleted in SCENE:
        x0, x1 = min(x0 + shift, W - 1), min(x1 + shift, W - 1)
        objects.append({"label": label, "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
                        "deleted": deleted, "verified": 0, "date": "", "user": "fake", "id": len(objects)})
        if deleted:
            continue
        base = label[:-5] if label.endswith("group") else label
        lid = IDS[base]
        if lid < 0:
            continue
        value = lid
        if base in ("car", "person") and not label.endswith("group"):
            value = lid * 1000 + counters.get(base, 0)
            counters[base] = counters.get(base, 0) + 1
        inst[y0:y1 + 1, x0:x1 + 1] = value
    return objects, inst


def make_cityscapes(tmp_path: Path, cities=("bochum", "bremen"), splits=("train", "val"), frames: int = 2,
                    *, annotations: str = "gtFine", pngs: bool = True, polygons: bool = True,
                    images: bool = True, test: bool = False) -> dict:
    """Write ``tmp_path/leftImg8bit`` and ``tmp_path/<annotations>``; return what a parser should find.

    Returns:
        ``{"root", "images", "splits": {split: n}, "frames": [(split, city, base)],
        "things_per_frame", "instance_maps": {base: array}}``; with ``test=True``
        a ``test`` split with dummy labels (ego vehicle/rectification border only) is added.
    """
    root = Path(tmp_path)
    out: dict = {"root": root, "frames": [], "splits": {}, "instance_maps": {},
                 "things_per_frame": THINGS_PER_FRAME}
    all_splits = list(splits) + (["test"] if test else [])
    for si, split in enumerate(all_splits):
        n = 0
        for ci, city in enumerate(cities):
            for k in range(frames):
                base = f"{city}_{si * 100 + ci:06d}_{k * 19 + 19:06d}"  # unique across splits
                shift = k
                if split == "test":
                    inst = np.zeros((H, W), np.uint16)
                    inst[-1, :] = 1
                    inst[:, 0] = 2
                    objects = [{"label": "ego vehicle", "polygon": [[0, H - 1], [W - 1, H - 1], [W - 1, H - 1],
                                                                    [0, H - 1]]}]
                else:
                    objects, inst = scene(shift)
                labels = np.where(inst < 1000, inst, inst // 1000).astype(np.uint8)
                gt = root / annotations / split / city
                gt.mkdir(parents=True, exist_ok=True)
                if images:
                    img = root / "leftImg8bit" / split / city
                    img.mkdir(parents=True, exist_ok=True)
                    rgb = np.zeros((H, W, 3), np.uint8)
                    rgb[..., 0] = labels * 7
                    Image.fromarray(rgb).save(img / f"{base}_leftImg8bit.png")
                if pngs:
                    Image.fromarray(labels).save(gt / f"{base}_{annotations}_labelIds.png")
                    Image.fromarray(inst).save(gt / f"{base}_{annotations}_instanceIds.png")  # I;16
                    color = np.zeros((H, W, 4), np.uint8)
                    for lid, c in LABEL_COLORS.items():
                        color[labels == lid] = (*c, 255)
                    Image.fromarray(color, "RGBA").save(gt / f"{base}_{annotations}_color.png")
                if polygons:
                    doc = {"imgHeight": H, "imgWidth": W, "objects": objects}
                    (gt / f"{base}_{annotations}_polygons.json").write_text(json.dumps(doc))
                out["frames"].append((split, city, base))
                out["instance_maps"][base] = inst
                n += 1
        out["splits"][split] = n
    out["images"] = sum(out["splits"].values())
    return out
