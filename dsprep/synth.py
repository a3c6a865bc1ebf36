"""A small, valid, learnable sample dataset: coloured shapes on textured backgrounds.

Each image holds 1-3 non-overlapping shapes (circle, square, triangle, diamond,
cross), each in a random colour, so the class is the *shape*, not the colour.
Every shape has its exact box and polygon, so boxes, masks and class labels
are all true. Used by the README's demo and by the tests; nothing is
downloaded.

Example:
    >>> from dsprep.synth import synth
    >>> synth("voc", "out/shapes-voc", images=50, seed=0)  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .records import Category, Dataset, Instances, Record

__all__ = ["SHAPES", "SYNTH_FORMATS", "synth", "make_shapes_dataset"]

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
# The formats that hold what synth makes (1-3 shapes per image, boxes and polygons).
SYNTH_FORMATS = ("voc", "coco", "coco-panoptic")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[float]:
    """The outline of ``shape`` centred at (cx, cy) with half-size r, as flat x, y pairs."""
    if shape == "circle":
        pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    elif shape == "square":
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == "triangle":
        pts = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == "diamond":
        pts = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    else:  # cross: a plus sign of arm width r*2/3
        a = r / 3
        pts = [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a),
               (cx + a, cy + a), (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a),
               (cx - r, cy - a), (cx - a, cy - a)]
    return [round(v, 2) for p in pts for v in p]


def make_shapes_dataset(root: str | os.PathLike, *, images: int = 300, seed: int = 0, size: int = 128,
                        val_fraction: float = 0.2) -> Dataset:
    """Draw ``images`` JPEGs under ``root/images/`` and return their records.

    Categories are the shapes, ids 1..5. Splits: ``train`` and ``val``
    (``val_fraction`` of the images). Boxes are the shapes' exact extents
    (continuous xyxy); segmentation is the shape polygon.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    cats = [Category(i + 1, name, "shape") for i, name in enumerate(SHAPES)]
    n_val = int(round(images * val_fraction))
    records = []
    cells = 2  # a 2x2 grid: shapes never overlap, so polygons equal the visible pixels
    cell = size / cells
    for k in range(images):
        # Textured background: a smooth random gradient plus noise.
        base = rng.integers(40, 216, size=3)
        yy, xx = np.mgrid[0:size, 0:size]
        grad = (xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3))[..., None]
        bg = np.clip(base + grad + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(bg, "RGB")
        draw = ImageDraw.Draw(im)
        n = int(rng.integers(1, 4))
        slots = rng.permutation(cells * cells)[:n]
        boxes, labels, polys = [], [], []
        for slot in slots:
            shape_i = int(rng.integers(len(SHAPES)))
            r = float(rng.uniform(cell * 0.22, cell * 0.42))
            cx = (slot % cells) * cell + cell / 2 + float(rng.uniform(-(cell / 2 - r), cell / 2 - r))
            cy = (slot // cells) * cell + cell / 2 + float(rng.uniform(-(cell / 2 - r), cell / 2 - r))
            poly = _polygon(SHAPES[shape_i], cx, cy, r)
            colour = tuple(int(c) for c in (255 - base + rng.integers(-40, 40, 3)) % 256)
            draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=colour)
            xs, ys = poly[0::2], poly[1::2]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
            labels.append(shape_i + 1)
            polys.append([poly])
        name = f"shapes_{k:05d}"
        rel = f"images/{name}.jpg"
        im.save(root / rel, quality=92)
        split = "val" if k < n_val else "train"
        records.append(Record(
            id=f"images/{name}", path=rel, width=size, height=size, split=split,
            instances=Instances(boxes=np.array(boxes, np.float64), labels=labels, segmentation=polys)))
    order = {"train": [r.id for r in records if r.split == "train"], "val": [r.id for r in records if r.split == "val"]}
    return Dataset(cats, records, splits=order, root=root, format="synth",
                   info={"description": f"dsprep synthetic shapes, seed {seed}"})


def synth(format: str, out: str | os.PathLike, *, images: int = 300, seed: int = 0, size: int = 128,
          overwrite: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Write a shapes dataset of ``images`` images as ``format`` into ``out``.

    Returns:
        The writer's report (images, objects, lost) plus the categories.
    """
    from ._outdir import claim_output
    from .conversion import write_dataset
    from .formats import get_format

    from .errors import check_choice

    get_format(format)
    check_choice("synth format", format, SYNTH_FORMATS)
    if images < 2:
        raise ValueError(f"synth needs at least 2 images (a train and a val image), got {images}")
    out = Path(out)
    # OUT is checked and held first: nothing is drawn for an OUT that will be refused
    with claim_output(out, overwrite=overwrite), \
            tempfile.TemporaryDirectory(prefix=".dsprep-synth-", dir=out.parent) as tmp:
        ds = make_shapes_dataset(tmp, images=images, seed=seed, size=size)
        report = write_dataset(ds, format, out, images="copy", overwrite=overwrite, progress=progress,
                               command="synth")
    report.setdefault("images", len(ds))
    report.setdefault("objects", ds.num_objects())
    report["categories"] = [c.name for c in ds.categories]
    return report

