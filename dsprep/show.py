"""``show``: draw a grid of samples with their boxes, class names, masks and keypoints.

Pillow drawing only (no matplotlib). Deterministic: the same seed picks the
same images and draws the same colours.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .records import Category, Dataset, Record

__all__ = ["draw_record", "show", "colour_for"]


def colour_for(i: int) -> tuple[int, int, int]:
    """A distinct, stable colour for class index ``i`` (golden-ratio hue walk)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _object_masks(rec: Record, h: int, w: int) -> list[np.ndarray | None]:
    """Per-object binary masks from polygons or RLE (None where an object has none or its RLE is not h x w)."""
    from .masks import segmentation_mask

    segms = rec.instances.segmentation or [None] * len(rec.instances)
    out: list[np.ndarray | None] = []
    for s in segms:
        m = segmentation_mask(s, h, w, on_size_mismatch="none")
        out.append(None if m is None else m.astype(bool))
    return out


def draw_record(image: Any, rec: Record, categories: Sequence[Category], *, boxes: np.ndarray | None = None,
                labels: Sequence[int] | None = None, masks: Sequence[np.ndarray | None] | None = None,
                keypoints: np.ndarray | None = None, caption: str | None = None) -> Any:
    """Draw ``rec``'s annotations on a PIL ``image`` (RGB); returns a new image.

    ``boxes``/``labels``/``masks``/``keypoints`` override the record's (for
    augmented samples whose geometry changed). Labels are source category ids.
    """
    from PIL import Image, ImageDraw

    im = image.convert("RGB").copy()
    w, h = im.size
    index = {c.id: i for i, c in enumerate(categories)}
    names = {c.id: c.name for c in categories}
    inst = rec.instances
    boxes = inst.boxes if boxes is None else boxes
    labels = inst.labels.tolist() if labels is None else list(labels)
    if masks is None:
        masks = _object_masks(rec, h, w) if inst.segmentation is not None else [None] * len(labels)
    keypoints = inst.keypoints if keypoints is None else keypoints
    arr = np.asarray(im).astype(np.float32)
    for m, lab in zip(masks, labels):
        if m is not None and m.shape == (h, w):
            arr[m] = arr[m] * 0.55 + np.array(colour_for(index.get(lab, 0)), np.float32) * 0.45
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for j, (box, lab) in enumerate(zip(np.asarray(boxes).reshape(-1, 4).tolist(), labels)):
        col = colour_for(index.get(lab, 0))
        dashed = bool(inst.difficult[j]) if j < len(inst) and boxes is inst.boxes else False
        draw.rectangle([box[0], box[1], max(box[0], box[2] - 1), max(box[1], box[3] - 1)], outline=col,
                       width=1 if dashed else 2)
        text = str(names.get(lab, lab))
        tw = draw.textlength(text)
        draw.rectangle([box[0], max(0, box[1] - 11), box[0] + tw + 3, max(0, box[1] - 11) + 11], fill=col)
        draw.text((box[0] + 2, max(0, box[1] - 11)), text, fill=(0, 0, 0))
    if keypoints is not None and len(keypoints):
        skel = []
        for lab in set(labels):
            cat = next((c for c in categories if c.id == lab), None)
            if cat is not None and cat.extra.get("skeleton"):
                skel = cat.extra["skeleton"]
        for kp in np.asarray(keypoints):
            for a, b in skel:  # COCO skeletons are 1-based
                if 0 < a <= len(kp) and 0 < b <= len(kp) and kp[a - 1, 2] > 0 and kp[b - 1, 2] > 0:
                    draw.line([tuple(kp[a - 1, :2]), tuple(kp[b - 1, :2])], fill=(255, 255, 0), width=1)
            for x, y, v in kp:
                if v > 0:
                    col = (0, 255, 0) if v == 2 else (255, 128, 0)
                    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=col)
    if caption:
        draw.rectangle([0, h - 12, w, h], fill=(0, 0, 0))
        draw.text((2, h - 12), caption[:80], fill=(255, 255, 255))
    return im


def _load_image(path: Path) -> Any:
    """The RGB image, EXIF orientation applied (a missing or corrupt file is a FormatError naming it)."""
    from PIL import Image

    from .loading.decode import decode_image

    return Image.fromarray(decode_image(path))


def show(ds: Dataset, out: str | os.PathLike, *, n: int = 16, ids: Sequence[str] | None = None, seed: int = 0,
         cell: int = 256, augment: bool = False, task: str = "detection") -> Path:
    """Write a grid PNG of ``n`` samples (or the records named by ``ids``) to ``out``.

    With ``augment=True`` the samples go through the training pipeline's
    default augmentation (torch layer) and are drawn as the model sees them.

    Raises:
        UnknownNameError: an id in ``ids`` is not a record id.
        MissingFileError: a picked record's image does not exist.
        MalformedFileError: a picked record's image is not a readable image.
        OutputExistsError: ``out`` is inside a folder the dataset reads from (the input is
            never written to: docs/cli.md, Safety).

    Example:
        >>> show(dsprep.parse("voc", "VOC2012"), "grid.png", n=9)  # doctest: +SKIP
        PosixPath('grid.png')
    """
    from PIL import Image, ImageDraw

    from ._outdir import check_output, input_folders
    from .errors import UnknownNameError

    check_output(out, inputs=input_folders(ds), keep_existing=True)  # a grid of one's own is replaced

    position = {r.id: k for k, r in enumerate(ds.records)}
    if ids:
        missing = [i for i in ids if i not in position]
        if missing:
            raise UnknownNameError(f"unknown record ids {missing[:5]}; ids look like {ds.records[0].id!r}"
                                   if ds.records else f"unknown record ids {missing[:5]}; the dataset is empty")
        picks = [position[i] for i in ids]
    else:
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(ds), size=min(n, len(ds)), replace=False).tolist()) if len(ds) else []
    tiles = []
    root = Path(ds.root or ".")
    tds = ds.torch(task=task, augment="default", seed=seed) if augment else None
    source_id_of = {j: c.id for j, c in enumerate(ds.categories)}  # contiguous index -> source id
    name_of = {c.id: c.name for c in ds.categories}
    for i in picks:
        rec = ds.records[i]
        if tds is not None:
            image, target = tds[i]
            im = Image.fromarray(image.permute(1, 2, 0).numpy())
            masks = target.get("masks")
            tile = draw_record(im, rec, ds.categories, boxes=target["boxes"].numpy(),
                               labels=[source_id_of[int(l)] for l in target["labels"]],
                               masks=None if masks is None else [m.numpy().astype(bool) for m in masks],
                               keypoints=None if target.get("keypoints") is None else target["keypoints"].numpy())
        else:
            im = _load_image(root / rec.path)
            caption = rec.captions[0] if rec.captions else None
            if rec.label is not None:
                caption = name_of.get(rec.label, str(rec.label))
            tile = draw_record(im, rec, ds.categories, caption=caption)
        tile.thumbnail((cell, cell))
        canvas = Image.new("RGB", (cell, cell + 12), (32, 32, 32))
        canvas.paste(tile, ((cell - tile.width) // 2, 12))
        ImageDraw.Draw(canvas).text((2, 0), rec.id[-40:], fill=(220, 220, 220))
        tiles.append(canvas)
    cols = max(1, int(np.ceil(np.sqrt(len(tiles))))) if tiles else 1
    rows = max(1, int(np.ceil(len(tiles) / cols)))
    grid = Image.new("RGB", (cols * cell, rows * (cell + 12)), (16, 16, 16))
    for k, t in enumerate(tiles):
        grid.paste(t, ((k % cols) * cell, (k // cols) * (cell + 12)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
