"""``show``: draw a grid of samples with their boxes, class names, masks and keypoints.

One code path: every tile is drawn from what the torch loader returns for the
record (``ds.torch(task, augment=..., seed=seed, masks=...)[i]``), augmented
or not, so the picture shows exactly the targets a model would be fed.
Pillow drawing only (no matplotlib). Deterministic: the same seed picks the
same images and draws the same colours.

Each image is scaled to fill a ``cell`` x ``cell`` square (small images are
enlarged, pixel for pixel when by 2x or more), and the annotations are drawn
at that size, so labels stay legible whatever the image size.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .records import Dataset

__all__ = ["show", "draw_sample", "colour_for", "show_task", "font_size", "header_height", "label_font", "TINT"]

TINT = 0.45  # a mask pixel becomes (1 - TINT) * image + TINT * class colour
SHOW_TASKS = ("detection", "keypoints", "segmentation", "classification")


def colour_for(i: int) -> tuple[int, int, int]:
    """A distinct, stable colour for class index ``i`` (golden-ratio hue walk)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def font_size(cell: int) -> int:
    """Label text height in pixels for tiles of ``cell`` pixels (14 at 256, 17 at 320)."""
    return max(14, cell // 18)


def header_height(cell: int) -> int:
    """Height of the strip above each tile's image that names the record."""
    return font_size(cell) + 8


@lru_cache(maxsize=8)
def label_font(size: int) -> Any:
    """Pillow's scalable default font at ``size`` px (Pillow >= 10.1), else its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: its small bitmap font
        return ImageFont.load_default()


def show_task(ds: Dataset) -> str:
    """What ``show`` draws by default: keypoints, else objects, else semantic masks, else image labels."""
    from .loading.dataset import dataset_tasks

    tasks = dataset_tasks(ds)
    return next((t for t in ("keypoints", "detection", "segmentation") if t in tasks), "classification")


def _has_instance_masks(ds: Dataset) -> bool:
    """Whether any object has a shape (polygons, RLE or an instance-mask PNG), not just a box."""
    if any(ds.column("instance_mask_path")):
        return True
    return any(inst.segmentation is not None and any(s is not None for s in inst.segmentation)
               for inst in ds.column("instances"))


def _sample_source(ds: Dataset, task: str, augment: bool, seed: int) -> tuple[Any, list[str], list[int]]:
    """The torch dataset the tiles are drawn from, the class names its labels (or mask values)
    index, and each name's colour index (a class keeps its colour across tasks)."""
    from .loading import TorchDataset

    options: dict[str, Any] = {}
    names = ds.class_names()
    if task in ("detection", "keypoints"):
        options["masks"] = _has_instance_masks(ds)
    elif task == "segmentation":
        from .loading.luts import segmentation_classes

        names, options = segmentation_classes(ds)
    tds = TorchDataset(ds, task=task, augment="default" if augment else "none", seed=seed, **options)
    position = {c.name: k for k, c in enumerate(ds.categories)}
    colours = [position.get(name, k) for k, name in enumerate(names)]
    return tds, names, colours


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source row (or column) of each of ``n_out`` display rows: nearest-neighbour scaling."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _scale_mask(m: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.asarray(m)[rows[:, None], cols[None, :]]


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 140 else (255, 255, 255)


def _label(draw: Any, xy: tuple[float, float], text: str, colour: tuple[int, int, int], size: int,
           bounds: tuple[int, int, int, int], placed: list | None = None) -> bool:
    """A filled label with its top-left at ``xy``, moved inside ``bounds`` (x0, y0, x1, y1).

    With ``placed`` (the rectangles of earlier labels), a label that would cover one
    of them is not drawn (returns False); the drawn one's rectangle is appended.
    """
    font = label_font(size)
    tw = int(draw.textlength(text, font=font)) + 8
    th = size + 6
    x = int(min(max(xy[0], bounds[0]), max(bounds[0], bounds[2] - tw)))
    y = int(min(max(xy[1], bounds[1]), max(bounds[1], bounds[3] - th)))
    rect = (x, y, x + tw - 1, y + th - 1)
    if placed is not None:
        if any(rect[0] <= r[2] and r[0] <= rect[2] and rect[1] <= r[3] and r[1] <= rect[3] for r in placed):
            return False
        placed.append(rect)
    draw.rectangle(list(rect), fill=colour)
    draw.text((x + 4, y + 2), text, fill=_text_colour(colour), font=font)
    return True


def _fit(draw: Any, text: str, size: int, width: int) -> str:
    """``text`` cut from the left ("...tail") so that it fits ``width`` pixels."""
    font = label_font(size)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def _tint(arr: np.ndarray, m: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Blend ``colour`` into ``arr`` where ``m``, and draw the mask's edge in full colour."""
    if not m.any():
        return
    arr[m] = arr[m] * (1 - TINT) + np.asarray(colour, np.float32) * TINT
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    arr[m & ~inner] = colour


def _skeleton(categories: Sequence[Any], label_names: set[str]) -> tuple[list, int]:
    """The skeleton of the first drawn class that has one, and its base (COCO's is 1-based,
    Datumaro's 0-based: a 0 anywhere means 0-based)."""
    for c in categories:
        skel = c.extra.get("skeleton") if isinstance(c.extra, Mapping) else None
        if c.name in label_names and skel:
            flat = [int(v) for pair in skel for v in pair]
            return [tuple(pair) for pair in skel], 0 if min(flat) == 0 else 1
    return [], 1


def draw_sample(image: Any, target: Mapping[str, Any], names: Sequence[str], *, cell: int = 320,
                colours: Sequence[int] | None = None, title: str = "", caption: str | None = None,
                categories: Sequence[Any] = ()) -> Any:
    """One tile: ``image`` scaled to fit ``cell`` x ``cell`` with ``target`` drawn on it.

    Args:
        image: the sample's image, a ``(3, H, W)`` uint8 tensor or an ``(H, W, 3)`` array.
        target: a loader target: ``boxes`` (xyxy), ``labels``, optional ``masks``
            (N, H, W), ``keypoints`` (N, K, 3), ``difficult``, ``iscrowd``; or ``mask``
            (H, W, semantic, values index ``names``; 255 and "background" untinted);
            or ``label``.
        names: class names that labels (or mask values) index.
        colours: the colour index of each name (default: its position).
        title: text in the strip above the image (the record id).
        caption: text in a band at the bottom of the image.
        categories: the dataset's categories (keypoint skeletons).

    Returns:
        a PIL RGB image of ``cell`` x ``header_height(cell) + cell`` pixels.
    """
    from PIL import Image, ImageDraw

    arr = image.permute(1, 2, 0).numpy() if hasattr(image, "permute") else np.asarray(image)
    h, w = arr.shape[:2]
    scale = min(cell / w, cell / h)
    dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
    pil = Image.fromarray(np.ascontiguousarray(arr, np.uint8)).convert("RGB")
    pil = pil.resize((dw, dh), Image.NEAREST if scale >= 2 else Image.BILINEAR)
    rows, cols = _nearest_index(dh, h), _nearest_index(dw, w)
    colours = list(range(len(names))) if colours is None else list(colours)
    col = lambda k: colour_for(colours[k] if 0 <= k < len(colours) else k)  # noqa: E731
    name = lambda k: names[k] if 0 <= k < len(names) else str(k)  # noqa: E731
    out = np.asarray(pil).astype(np.float32)
    labels = [int(v) for v in np.asarray(target["labels"]).reshape(-1)] if "labels" in target else []
    masks = target.get("masks")
    for m, k in zip([] if masks is None else np.asarray(masks), labels):
        _tint(out, _scale_mask(m, rows, cols).astype(bool), col(k))
    seg_labels = []
    if target.get("mask") is not None:
        sem = _scale_mask(np.asarray(target["mask"]), rows, cols)
        values, counts = np.unique(sem, return_counts=True)
        for v in values[np.argsort(counts, kind="stable")].tolist():  # small classes get their label first
            if v != 255 and name(v) != "background":
                _tint(out, sem == v, col(v))
                seg_labels.append(v)
    tile = Image.new("RGB", (cell, header_height(cell) + cell), (24, 24, 24))
    ox, oy = (cell - dw) // 2, header_height(cell) + (cell - dh) // 2
    tile.paste(Image.fromarray(out.round().clip(0, 255).astype(np.uint8)), (ox, oy))
    draw = ImageDraw.Draw(tile)
    fs = font_size(cell)
    bounds = (ox, oy, ox + dw, oy + dh)
    _draw_objects(draw, target, labels, scale, (ox, oy), col, name, fs, bounds)
    if "keypoints" in target and target["keypoints"] is not None:
        skel = _skeleton(categories, {name(k) for k in labels})
        _draw_keypoints(draw, np.asarray(target["keypoints"], np.float64), skel, scale, (ox, oy), cell)
    placed: list = []
    for v in seg_labels:  # the class name at its pixel nearest the class's centroid, unless crowded out
        ys, xs = np.nonzero(sem == v)
        j = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        _label(draw, (ox + xs[j], oy + ys[j] - (fs + 6) // 2), name(v), col(v), fs, bounds, placed)
    draw.text((4, 4), _fit(draw, title, fs, cell - 8), fill=(230, 230, 230), font=label_font(fs))
    if caption:
        draw.rectangle([ox, oy + dh - fs - 8, ox + dw - 1, oy + dh - 1], fill=(0, 0, 0))
        draw.text((ox + 4, oy + dh - fs - 6), _fit(draw, caption, fs, dw - 8), fill=(255, 255, 255), font=label_font(fs))
    return tile


def _draw_objects(draw: Any, target: Mapping[str, Any], labels: list[int], scale: float, origin: tuple[int, int],
                  col: Any, name: Any, fs: int, bounds: tuple[int, int, int, int]) -> None:
    """Boxes (difficult ones thinner) and their class labels, above the box or inside its top."""
    if "boxes" not in target:
        return
    boxes = np.asarray(target["boxes"], np.float64).reshape(-1, 4) * scale
    difficult = np.asarray(target.get("difficult", np.zeros(len(boxes), bool))).reshape(-1)
    crowd = np.asarray(target.get("iscrowd", np.zeros(len(boxes), bool))).reshape(-1)
    width = max(2, fs // 7)
    placed = []
    for j, (b, k) in enumerate(zip(boxes.tolist(), labels)):
        x0, y0 = round(origin[0] + b[0]), round(origin[1] + b[1])
        x1, y1 = max(x0, round(origin[0] + b[2]) - 1), max(y0, round(origin[1] + b[3]) - 1)
        draw.rectangle([x0, y0, x1, y1], outline=col(k), width=1 if difficult[j] else width)
        text = name(k) + (" (crowd)" if crowd[j] else "") + (" (difficult)" if difficult[j] else "")
        above = y0 - fs - 6
        placed.append(((x0, above if above >= bounds[1] else y0 + width), text, col(k)))
    for xy, text, colour in placed:  # labels last: no box line crosses a label
        _label(draw, xy, text, colour, fs, bounds)


def _draw_keypoints(draw: Any, kps: np.ndarray, skel: tuple[list, int], scale: float, origin: tuple[int, int],
                    cell: int) -> None:
    """Skeleton lines (yellow) and points (green visible, orange occluded); v = 0 is not drawn."""
    pairs, base = skel
    r = max(2, cell // 100)
    for kp in kps:
        pts = [(origin[0] + x * scale, origin[1] + y * scale, v) for x, y, v in kp.tolist()]
        for a, b in pairs:
            a, b = int(a) - base, int(b) - base
            if 0 <= a < len(pts) and 0 <= b < len(pts) and pts[a][2] > 0 and pts[b][2] > 0:
                draw.line([pts[a][:2], pts[b][:2]], fill=(255, 255, 0), width=max(1, r // 2))
        for x, y, v in pts:
            if v > 0:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0) if v == 2 else (255, 128, 0),
                             outline=(0, 0, 0))


def _pick(ds: Dataset, n: int, ids: Sequence[str] | None, seed: int) -> list[int]:
    """Record positions: those named by ``ids`` (UnknownNameError otherwise) or ``n`` at random."""
    from .errors import UnknownNameError

    if ids:
        position = {r.id: k for k, r in enumerate(ds.records)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise UnknownNameError(f"unknown record ids {missing[:5]}; ids look like {ds.records[0].id!r}"
                                   if ds.records else f"unknown record ids {missing[:5]}; the dataset is empty")
        return [position[i] for i in ids]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(len(ds), size=min(n, len(ds)), replace=False).tolist()) if len(ds) else []


def show(ds: Dataset, out: str | os.PathLike, *, n: int = 16, ids: Sequence[str] | None = None, seed: int = 0,
         cell: int = 320, augment: bool = False, task: str | None = None) -> Path:
    """Write a grid PNG of ``n`` samples (or the records named by ``ids``) to ``out``.

    Each tile draws what the torch loader returns for its record:
    ``ds.torch(task, augment="default" if augment else "none", seed=seed,
    masks=...)[i]`` (detection and keypoints ask for instance masks when any
    object has a shape; segmentation uses the classes ``dsprep train`` uses),
    so ``augment=True`` shows the samples as the model sees them.

    Args:
        n: how many random records (``seed`` picks them).
        ids: record ids to draw instead.
        cell: tile side in pixels; every image is scaled to fill it.
        task: ``detection``, ``keypoints``, ``segmentation`` or ``classification``;
            default :func:`show_task`.

    Raises:
        UnknownNameError: an id in ``ids`` is not a record id, or an unknown task.
        MissingFileError: a picked record's image does not exist.
        MalformedFileError: a picked record's image is not a readable image.
        OutputExistsError: ``out`` is inside a folder the dataset reads from (the input is
            never written to: docs/cli.md, Safety).

    Example:
        >>> show(dsprep.parse("voc", "VOC2012"), "grid.png", n=9)  # doctest: +SKIP
        PosixPath('grid.png')
    """
    from PIL import Image

    from ._outdir import check_output, input_folders
    from .errors import check_choice

    check_output(out, inputs=input_folders(ds), keep_existing=True)  # a grid of one's own is replaced
    task = show_task(ds) if task is None else check_choice("show task", task, SHOW_TASKS)
    picks = _pick(ds, n, ids, seed)
    tiles = []
    if picks:
        tds, names, colours = _sample_source(ds, task, augment, seed)
        for i in picks:
            image, target = tds[i]
            rec = ds.records[i]
            caption = rec.captions[0] if rec.captions else None
            if target.get("label") is not None and int(target["label"]) >= 0:
                caption = names[int(target["label"])]
            tiles.append(draw_sample(image, target, names, cell=cell, colours=colours, title=rec.id,
                                     caption=caption, categories=ds.categories))
    th = header_height(cell) + cell
    cols = max(1, int(np.ceil(np.sqrt(len(tiles))))) if tiles else 1
    rows = max(1, int(np.ceil(len(tiles) / cols)))
    grid = Image.new("RGB", (cols * cell, rows * th), (16, 16, 16))
    for k, t in enumerate(tiles):
        grid.paste(t, ((k % cols) * cell, (k // cols) * th))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
