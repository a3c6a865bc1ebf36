"""Tiny generated Ultralytics YOLO trees for tests (torchvision's ``inject_fake_data`` contract).

``make_yolo(tmp_path)`` writes ``data.yaml``, ``images/{train,val}/*.png`` of given sizes
and ``labels/{train,val}/*.txt`` rows, and returns what a parser must find.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


def image(path: Path, w: int, h: int, exif_orientation: int | None = None) -> None:
    """A tiny image of ``w`` x ``h`` (JPEG with an EXIF orientation when asked, else PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (w, h), (90, 120, 30))
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, format="JPEG", exif=exif.tobytes())
    else:
        im.save(path)


def write_yaml(root: Path, text: str, name: str = "data.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    return root / name


# (split, stem, width, height, label text or None for no label file)
DETECT = [
    ("train", "a", 20, 10, "0 0.5 0.5 0.5 0.4\n1 0.25 0.25 0.1 0.2\n"),
    ("train", "b", 16, 16, ""),           # empty label file: no objects
    ("train", "c", 12, 8, None),          # no label file: no objects
    ("val", "d", 10, 20, "1 0.45 0.55 0.3 0.3"),  # no trailing newline
]

SEGMENT = [
    ("train", "s1", 20, 10, "0 0.1 0.1 0.5 0.1 0.5 0.9 0.1 0.9\n"),
    ("val", "s2", 10, 10, "1 0 0 1 0 0.5 1\n"),
]

POSE = [
    ("train", "p1", 20, 10, "0 0.5 0.5 0.5 0.4 0.3 0.4 2 0.7 0.4 1 0 0 0\n"),
    ("val", "p2", 10, 10, "0 0.5 0.5 1 1 0.1 0.1 2 0.9 0.1 2 0.5 0.9 2\n"),
]


def make_yolo(root: Path, rows: list[tuple[str, str, int, int, str | None]] = DETECT,
              names: str = "[cat, dog]", extra_yaml: str = "") -> dict[str, Any]:
    """Write a YOLO tree at ``root``; returns images, objects, per split counts, missing/empty labels."""
    objects = missing = empty = 0
    splits: dict[str, int] = {}
    for split, stem, w, h, text in rows:
        image(root / "images" / split / f"{stem}.png", w, h)
        splits[split] = splits.get(split, 0) + 1
        if text is None:
            missing += 1
            continue
        lab = root / "labels" / split / f"{stem}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(text, encoding="utf-8")
        n = sum(1 for ln in text.splitlines() if ln.strip())
        objects += n
        empty += n == 0
    keys = "".join(f"{s}: images/{s}\n" for s in splits)
    write_yaml(root, f"{keys}names: {names}\n{extra_yaml}")
    return {"images": len(rows), "objects": objects, "splits": splits, "missing": missing, "empty": empty}
