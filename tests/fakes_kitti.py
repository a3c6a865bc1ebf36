"""Tiny generated KITTI object trees for the KITTI tests.

``make_kitti(tmp_path, ...)`` writes ``ROOT/training/{label_2,image_2,calib}``,
``ROOT/testing/image_2`` and ``ROOT/ImageSets/{train,val,test}.txt`` and returns
what a reader must find, so a test compares against numbers it did not hard-code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (type, truncated, occluded, alpha, box, dims, location, rotation_y): decimals as KITTI writes them
ROWS = [
    "Car 0.00 0 -1.58 1.50 2.25 10.75 8.00 1.47 1.60 3.69 -3.12 1.72 30.15 -1.67",
    "Pedestrian 0.31 1 0.21 3.00 1.00 5.47 11.99 1.72 0.50 0.80 1.23 1.61 12.03 0.30",
    "Cyclist 0.00 3 -1.65 12.00 4.10 14.50 9.90 1.86 0.60 2.02 4.59 1.32 45.84 -1.55",
    "DontCare -1 -1 -10 0.00 0.00 4.00 3.00 -1 -1 -1 -1000 -1000 -1000 -10",
    "traffic_sign 0.00 0 0.00 6.25 0.50 8.75 3.50 0.50 0.60 0.05 2.00 -1.00 20.00 0.00",
]
SIZE = (24, 16)  # width, height of every generated image


def make_kitti(tmp_path: Path, *, n_train: int = 4, n_test: int = 2, lists: bool = True, images: bool = True,
               score: bool = False) -> dict[str, Any]:
    """Write a small KITTI tree under ``tmp_path / "kitti"``.

    Training image ``k`` gets rows ``ROWS[k % 5]``, ``ROWS[(k + 1) % 5]`` (image 0 also an empty
    line at the end); with ``score`` each row gets a 16th column ``0.9`` + k/100.
    ``ImageSets``: train = the even ids, val = the odd ones, test = the testing ids.

    Returns:
        ``{"root", "labels": {stem: [rows]}, "train", "val", "test", "objects", "dontcare"}``.
    """
    root = tmp_path / "kitti"
    for sub in ("training/label_2", "training/image_2", "training/calib", "testing/image_2", "ImageSets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    labels: dict[str, list[str]] = {}
    for k in range(n_train):
        stem = f"{k:06d}"
        rows = [ROWS[k % len(ROWS)], ROWS[(k + 1) % len(ROWS)]]
        if score:
            rows = [f"{r} {0.9 + k / 100:.2f}" for r in rows]
        labels[stem] = rows
        text = "".join(r + "\n" for r in rows) + ("\n" if k == 0 else "")
        (root / "training/label_2" / f"{stem}.txt").write_text(text)
        (root / "training/calib" / f"{stem}.txt").write_text(f"P0: {k} 0 0 0 0 0 0 0 0 0 0 0\n\n")
        if images:
            _image(root / "training/image_2" / f"{stem}.png", k)
    test = [f"{k:06d}" for k in range(n_test)]
    for k, stem in enumerate(test):
        _image(root / "testing/image_2" / f"{stem}.png", 10 + k)
    train = [s for i, s in enumerate(labels) if i % 2 == 0]
    val = [s for i, s in enumerate(labels) if i % 2 == 1]
    if lists:
        for name, ids in (("train", train), ("val", val), ("test", test)):
            (root / "ImageSets" / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
    all_rows = [r for rows in labels.values() for r in rows]
    return {"root": root, "labels": labels, "train": train, "val": val, "test": test, "objects": len(all_rows),
            "dontcare": sum(r.startswith("DontCare") for r in all_rows)}


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(path)
