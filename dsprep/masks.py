"""Mask helpers shared by the formats: label-map segments to boxes and COCO RLE,
polygon rasterisation, PNG id maps. numpy, Pillow and pycocotools only (no torch).

COCO RLE (pycocotools ``mask.py``): ``{"size": [h, w], "counts": str}``; the
counts run over the mask in column-major (Fortran) order and start with the
number of zeros. :func:`segments_from_id_map` builds the RLE of every segment
of an integer label map in one pass over the pixels, instead of one binary
mask plus one ``mask.encode`` per segment.
"""
from __future__ import annotations

import io
import logging
import math
import os
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .records import decode_segmentation

__all__ = ["VOC_PALETTE", "Segments", "ellipse_polygon", "encode_mask", "id_to_rgb", "mask_palette", "rasterise_polygons",
           "read_id_png", "read_label_png", "rgb_to_id", "rle_from_counts", "segmentation_area", "segmentation_mask",
           "segmentation_rle", "segments_from_id_map", "semantic_readers"]

log = logging.getLogger(__name__)


def _voc_palette() -> np.ndarray:
    """The devkit colour map (``VOClabelcolormap.m``): bits of the index spread over R, G, B."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


# The PASCAL VOC colour map, index -> (R, G, B); index 255 (void) = (224, 224, 192). VOC's palette
# PNGs carry it, and RGB label masks (datumaro's VOC export) are written in its colours.
VOC_PALETTE = _voc_palette()


def mask_palette(dataset: Any) -> np.ndarray | None:
    """The colour map through which this dataset's RGB label masks are read, or None (RGB refused).

    A dataset parsed from VOC: :data:`VOC_PALETTE` (datumaro and CVAT write VOC
    masks as RGB in those colours). The one rule for every reader of a
    record's masks: the parser, the loaders and ``dsprep validate``.
    """
    return VOC_PALETTE if getattr(dataset, "format", None) == "voc" else None


class Segments:
    """The segments of one label map, as parallel arrays (one row per kept value).

    Attributes:
        values: ``(N,)`` int64 pixel values, ascending.
        boxes: ``(N, 4)`` float64 xyxy, 0-based continuous (pixel ``i`` covers ``[i, i+1)``).
        areas: ``(N,)`` int64 pixel counts.
        rles: N compressed COCO RLE dicts (``counts`` is ``str``), or None when not asked for.
    """

    __slots__ = ("values", "boxes", "areas", "rles")

    def __init__(self, values: np.ndarray, boxes: np.ndarray, areas: np.ndarray, rles: list | None):
        self.values, self.boxes, self.areas, self.rles = values, boxes, areas, rles

    def __len__(self) -> int:
        return int(self.values.shape[0])


def encode_mask(mask: np.ndarray) -> dict:
    """COCO compressed RLE of one binary ``(H, W)`` mask, with ``counts`` as ``str`` (JSON-ready).

    Example:
        >>> encode_mask(np.eye(2, dtype=bool))
        {'size': [2, 2], 'counts': '0120'}
    """
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_from_counts(counts: np.ndarray, h: int, w: int) -> dict:
    """Compressed RLE (``counts`` as ``str``) from uncompressed Fortran-order counts.

    Example:
        >>> rle_from_counts(np.array([1, 2, 1]), 2, 2)
        {'size': [2, 2], 'counts': '121'}
    """
    return {"size": [int(h), int(w)], "counts": _compress_counts([np.asarray(counts, dtype=np.int64)])[0]}


def _compress_counts(counts_list: Sequence[np.ndarray]) -> list[str]:
    """pycocotools' ``rleToString`` (maskApi.c) for many count arrays at once, in numpy.

    Counts from the fourth on (``i > 2``) are stored as the difference to the
    count two before; each value is written in 5-bit groups, low first, with
    0x20 as the "more" flag, plus 48 to land in printable ASCII. Going on
    while the rest is not the sign extension of the group just written:
    ``more = (c & 0x10) ? x != -1 : x != 0``. One pass over all segments of
    an image: ``frPyObjects`` would cost a Python-to-C list conversion per
    segment, a numpy pass per segment a dozen small-array calls.
    """
    lens = np.array([c.size for c in counts_list], dtype=np.int64)
    if lens.sum() == 0:
        return ["" for _ in counts_list]
    c = np.concatenate(counts_list).astype(np.int64)
    seg_start = np.concatenate([[0], np.cumsum(lens)[:-1]])
    pos = np.arange(c.size) - np.repeat(seg_start, lens)
    x = c.copy()
    d = pos > 2
    idx = np.flatnonzero(d)
    x[idx] = c[idx] - c[idx - 2]
    groups = []
    out_len = np.zeros(c.size, dtype=np.int64)
    active = np.ones(c.size, dtype=bool)
    while active.any():
        g = x & 0x1F
        groups.append(g)
        out_len += active
        x = x >> 5
        active = active & np.where((g & 0x10) != 0, x != -1, x != 0)
    k = len(groups)
    g = np.stack(groups, axis=1)
    col = np.arange(k)[None, :]
    chars = (g | ((col < out_len[:, None] - 1) * 0x20)) + 48
    data = chars[col < out_len[:, None]].astype(np.uint8).tobytes().decode("ascii")
    seg_chars = np.add.reduceat(out_len, seg_start) if c.size else np.zeros(len(lens), np.int64)
    seg_chars = np.where(lens > 0, seg_chars, 0)
    ends = np.cumsum(seg_chars)
    starts = ends - seg_chars
    return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def segments_from_id_map(id_map: np.ndarray, keep: Any = None, *,
                         with_rle: bool = True) -> Segments:
    """Boxes, areas and compressed RLEs of every segment (pixel value) of a label map.

    Args:
        id_map: ``(H, W)`` integer map (Cityscapes instanceIds, a decoded panoptic PNG).
        keep: the values to report (default: every value present), or a
            predicate ``f(values) -> bool array`` applied to the run values.
        with_rle: also build each segment's RLE (False: boxes and areas only).

    Returns:
        :class:`Segments`, sorted by value.

    How: one row-major pass finds the runs of equal values, which give every
    segment's area and box at once; then each segment's RLE is built from its
    box crop only (transposed, since RLE counts run column by column). No
    full-image mask per segment and no transpose of the whole map: on a
    2048x1024 map the full transpose alone costs as much as half the PNG
    decode.

    Example:
        >>> s = segments_from_id_map(np.array([[0, 7], [7, 7]]), keep=[7])
        >>> s.values.tolist(), s.boxes.tolist(), s.areas.tolist(), s.rles[0]["counts"]
        ([7], [[0.0, 0.0, 2.0, 2.0]], [3], '13')
    """
    id_map = np.ascontiguousarray(id_map)
    if id_map.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {id_map.shape}")
    h, w = id_map.shape
    n = h * w
    empty = Segments(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64), [] if with_rle else None)
    if n == 0:
        return empty
    flat = id_map.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    vals = flat[starts]
    if keep is not None:
        if callable(keep):  # a predicate on the run values
            sel = np.asarray(keep(vals), dtype=bool)
        else:
            sel = np.isin(vals, np.asarray(keep, dtype=np.int64))
        starts, ends, vals = starts[sel], ends[sel], vals[sel]
    if vals.size == 0:
        return empty
    order = np.argsort(vals, kind="stable")
    starts, ends, vals = starts[order], ends[order], vals[order]
    first = np.concatenate([[0], np.flatnonzero(vals[1:] != vals[:-1]) + 1])
    uvals = vals[first].astype(np.int64)
    areas = np.add.reduceat(ends - starts, first).astype(np.int64)
    # Box extents per run: a run inside one row spans columns s%w..(e-1)%w; a run that
    # wraps past the end of a row covers the right of one row and the left of the next,
    # hence every column.
    y0, y1 = starts // w, (ends - 1) // w
    x0, x1 = starts % w, (ends - 1) % w
    wrap = y1 > y0
    x0 = np.where(wrap, 0, x0)
    x1 = np.where(wrap, w - 1, x1)
    boxes = np.stack([np.minimum.reduceat(x0, first), np.minimum.reduceat(y0, first),
                      np.maximum.reduceat(x1, first) + 1, np.maximum.reduceat(y1, first) + 1],
                     axis=1).astype(np.int64)
    rles = None
    if with_rle:
        strings = _compress_counts([_counts_in_box(id_map, int(v), b, h, w) for v, b in zip(uvals, boxes)])
        rles = [{"size": [h, w], "counts": st} for st in strings]
    return Segments(uvals, boxes.astype(np.float64), areas, rles)


def _counts_in_box(id_map: np.ndarray, value: int, box: np.ndarray, h: int, w: int) -> np.ndarray:
    """Uncompressed RLE counts of ``id_map == value``, looking only inside ``box`` (xyxy ints)."""
    bx0, by0, bx1, by1 = (int(v) for v in box)
    ch = by1 - by0
    # one zero row of padding after each column of the crop, so runs never join across columns
    padded = np.zeros((bx1 - bx0, ch + 1), dtype=bool)
    padded[:, :ch] = id_map[by0:by1, bx0:bx1].T == value
    p = padded.reshape(-1)
    edges = np.flatnonzero(p[1:] != p[:-1]) + 1
    if p[0]:
        edges = np.concatenate([[0], edges])
    col, row = np.divmod(edges, ch + 1)
    pos = (col + bx0) * h + row + by0  # position in the full map's column-major order
    s, e = pos[0::2], pos[1::2]
    if by0 == 0 and by1 == h and s.size > 1:  # a run ending at the bottom goes on at the next top
        join = e[:-1] == s[1:]
        if join.any():
            keep_s = np.concatenate([[True], ~join])
            keep_e = np.concatenate([~join, [True]])
            s, e = s[keep_s], e[keep_e]
    counts = np.empty(2 * s.size + 1, dtype=np.int64)
    counts[0] = s[0]
    counts[2:-1:2] = s[1:] - e[:-1]
    counts[1::2] = e - s
    counts[-1] = h * w - e[-1]
    if counts[-1] == 0:
        counts = counts[:-1]
    return counts


LABEL_PNG_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I", "1")


def read_label_png(path: str | os.PathLike, what: str = "label PNG", *,
                   palette: np.ndarray | None = None, data: bytes | None = None) -> np.ndarray:
    """Decode a single-channel label PNG to an ``(H, W)`` array of its stored values.

    Palette (``P``) and grey (``L``) PNGs give ``uint8`` (the palette index,
    never the colour), 16-bit grey (``I;16``) ``uint16``, 32-bit ``I``
    ``int32``, and 1-bit ``uint8`` 0/1. Pillow's warnings (decompression
    bomb) are silenced: a label map is as large as its image.

    With a ``palette`` (:func:`mask_palette`), a colour mask is a label map
    too: any mode other than ``P``, ``L`` and 1-bit is read as RGB and each
    colour becomes its index in the palette (``uint8``).

    Args:
        path: the PNG.
        what: how error messages name the file's kind ("label PNG", "label mask"...).
        palette: ``(256, 3)`` uint8 colours, index -> (R, G, B), or None.
        data: the file's bytes, read instead of ``path`` (which then only names it: a shard member).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: unreadable or truncated, or not a single-channel
            image (an RGB "colour" mask is not a label map) when no palette is given.
        InvalidAnnotationError: a colour outside the palette.

    Example:
        >>> read_label_png("gtFine/val/a/a_000000_000019_gtFine_instanceIds.png").dtype  # doctest: +SKIP
        dtype('uint16')
    """
    from PIL import Image

    from ._checks import image_error
    from .errors import MalformedFileError

    path = os.fspath(path)
    colours = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(_source(path, data)) as im:
                if palette is not None and im.mode not in ("P", "L", "1"):
                    colours = True
                    arr = np.asarray(im.convert("RGB"))
                elif im.mode not in LABEL_PNG_MODES:
                    raise MalformedFileError(path, f"expected a single-channel {what} (mode P, L or 16-bit "
                                                   f"I;16), found mode {im.mode}")
                else:
                    im.load()
                    arr = np.asarray(im)
    except MalformedFileError:
        raise
    except Exception as err:  # every kind Pillow raises on a bad file (see _checks.image_error)
        raise image_error(path, err, what) from None
    if colours:
        return _palette_indices(arr, palette, path)
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def _source(path: str, data: bytes | None) -> Any:
    """What ``Image.open`` reads: the file at ``path``, or ``data`` (a shard member's bytes)."""
    return path if data is None else io.BytesIO(data)


def _palette_indices(rgb: np.ndarray, palette: np.ndarray, path: str) -> np.ndarray:
    """``(H, W, 3)`` colours -> ``(H, W)`` uint8 indices into ``palette``."""
    from .errors import InvalidAnnotationError

    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal = (palette[:, 0].astype(np.int32) << 16) | (palette[:, 1].astype(np.int32) << 8) | palette[:, 2]
    order = np.argsort(pal, kind="stable")
    pos = np.clip(np.searchsorted(pal[order], key), 0, len(pal) - 1)
    idx = order[pos]
    if not np.all(pal[idx] == key):
        bad = np.unique(rgb[pal[idx] != key].reshape(-1, 3), axis=0)[:3].tolist()
        raise InvalidAnnotationError(path, f"RGB mask has colours outside the VOC palette, e.g. {bad}")
    return idx.astype(np.uint8)


def read_id_png(path: str | os.PathLike, encoding: str = "id", *, data: bytes | None = None) -> np.ndarray:
    """Decode an id PNG to an integer ``(H, W)`` array.

    ``encoding="id"``: a single-channel PNG (8-bit ``L``/``P``, 16-bit
    ``I;16``, 32-bit ``I``) whose value is the id (:func:`read_label_png`).
    ``encoding="rgb"``: COCO panoptic, an RGB (or RGBA) PNG whose id is
    R + 256 G + 256^2 B (int32). ``data``: the file's bytes, read instead of ``path``.

    Raises:
        MissingFileError: no such file.
        MalformedFileError: unreadable, or not of the mode ``encoding`` needs.

    Example:
        >>> read_id_png("panoptic_val2017/000000000139.png", "rgb").max()  # doctest: +SKIP
        8922372
    """
    from PIL import Image

    from ._checks import image_error
    from .errors import MalformedFileError

    if encoding != "rgb":
        return read_label_png(path, data=data)
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(_source(path, data)) as im:
                if im.mode not in ("RGB", "RGBA"):
                    raise MalformedFileError(path, f"expected an RGB id PNG (id = R + 256 G + 256^2 B), "
                                                   f"found mode {im.mode}")
                rgb = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    except MalformedFileError:
        raise
    except Exception as err:  # every kind Pillow raises on a bad file (see _checks.image_error)
        raise image_error(path, err, "id PNG") from None
    return rgb_to_id(rgb)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic segment ids: R + 256 G + 256^2 B (panopticapi ``utils.rgb2id``)."""
    rgb = rgb.astype(np.int32, copy=False)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_id`: ``(H, W)`` ids -> ``(H, W, 3)`` uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.empty((*ids.shape, 3), dtype=np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = (ids // 256) % 256
    out[..., 2] = (ids // 65536) % 256
    return out


def rasterise_polygons(width: int, height: int, shapes: Iterable[tuple[Sequence, int]],
                       background: int = 0) -> np.ndarray:
    """Fill polygons into an int32 map in the given order (later ones overwrite earlier ones).

    ``shapes`` yields ``(polygon, value)`` with polygon a list of ``(x, y)``
    points. Drawn with PIL ``ImageDraw.polygon`` on a mode ``"I"`` image, as
    cityscapesScripts' ``json2instanceImg``/``json2labelImg`` do, so the
    pixels match theirs.
    """
    from PIL import Image, ImageDraw

    img = Image.new("I", (int(width), int(height)), int(background))
    draw = ImageDraw.Draw(img)
    for polygon, value in shapes:
        draw.polygon([(p[0], p[1]) for p in polygon], fill=int(value))
    return np.asarray(img, dtype=np.int32)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, degrees: float = 0.0, sides: int = 32) -> list[float]:
    """A flat ``[x1, y1, ...]`` polygon of ``sides`` vertices with the area of the ellipse (``pi rx ry``),
    rotated by ``degrees`` clockwise on the image (y down), as CVAT's ``rotation`` turns shapes.

    Used for LabelMe circles and CVAT ellipses, which the record model holds as polygons: the
    radii are scaled by ``sqrt(2 pi / (n sin(2 pi / n)))`` so that the polygon's area is the
    ellipse's exactly (an inscribed 32-gon would be 0.6% smaller).

    Example:
        >>> len(ellipse_polygon(10, 10, 3, 2))
        64
    """
    n = int(sides)
    k = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    t = np.arange(n) * (2 * math.pi / n)
    x, y = rx * k * np.cos(t), ry * k * np.sin(t)
    a = math.radians(degrees)
    ring = np.empty(2 * n)
    ring[0::2] = cx + x * math.cos(a) - y * math.sin(a)
    ring[1::2] = cy + x * math.sin(a) + y * math.cos(a)
    return ring.tolist()


# --------------------------------------------------------------------------- object segmentations
# One object's ``segmentation`` (records.py): None, a list of polygons (each a flat
# [x1, y1, x2, y2, ...]), an RLE dict {"size": [h, w], "counts": str | bytes | list[int]},
# or raw JSON bytes of one of those. Read as pycocotools' COCO.annToRLE/annToMask do,
# except that polygons of fewer than 3 points (6 numbers) are dropped first: they enclose
# no pixel, and pycocotools' frPyObjects takes a leading 4-number polygon for a box and
# refuses a 2-number one.


def decompress_counts(counts: str | bytes) -> np.ndarray:
    """The uncompressed counts of a compressed COCO RLE string (pycocotools' ``rleFrString``).

    The inverse of :func:`_compress_counts`, in numpy: values are 5-bit groups
    (plus 48, 0x20 = "more"), sign-extended from the last group's 0x10, and
    from the fourth value on stored as the difference to the value two before.

    Raises:
        ValueError: a character outside ``'0'..'o'``, a value cut off at the end,
            a value of more than 7 groups (past 32 bits) or a negative count.

    Example:
        >>> decompress_counts("121").tolist()
        [1, 2, 1]
    """
    raw = counts.encode("latin-1", "replace") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        raise ValueError(f"character {raw[bad[0]:bad[0] + 1]!r} at {int(bad[0])} is not one of COCO's "
                         "compressed RLE characters ('0'..'o')")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("the last count is cut off (its last character says more follow)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    groups = ends - starts + 1
    if int(groups.max()) > 7:
        raise ValueError("a count runs past 32 bits")
    shift = 5 * (np.arange(c.size) - np.repeat(starts, groups))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    x = np.where((c[ends] & 0x10) != 0, x | (-1 << (5 * groups)), x)
    out = x.copy()
    out[1::2] = np.cumsum(x[1::2])  # value i (i >= 3) adds the value two before: two running sums
    out[2::2] = np.cumsum(x[2::2])
    if (out < 0).any():
        raise ValueError(f"count {int(np.flatnonzero(out < 0)[0])} is negative")
    return out


def rle_problem(segm: dict, h: int = 0, w: int = 0) -> str | None:
    """What is wrong with an RLE dict, or None: its ``size`` must be ``[height, width]``
    within the pixel limit (and equal ``(h, w)`` when given), its ``counts`` a COCO
    compressed string or a list of ints >= 0 summing to ``height * width``.

    pycocotools checks none of this, and decoding counts that run past the mask
    writes past its buffer.
    """
    from ._checks import MAX_SIDE, bomb_message, pixel_limit

    size = segm.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= MAX_SIDE for v in size)):
        return f"RLE 'size' must be [height, width] (ints 0..{MAX_SIDE}); found {size!r}"[:300]
    hh, ww = int(size[0]), int(size[1])
    limit = pixel_limit()
    if limit is not None and hh * ww > limit:
        return bomb_message(hh * ww, f"RLE mask {ww}x{hh}")
    if h and w and (hh, ww) != (int(h), int(w)):
        return f"RLE size [{hh}, {ww}] ([height, width]) disagrees with the image's {int(h)} x {int(w)}"
    counts = segm.get("counts")
    if isinstance(counts, (str, bytes, bytearray)):
        try:
            values = decompress_counts(counts)
        except ValueError as err:
            return f"RLE counts string is not COCO's compressed form: {err}"
    elif isinstance(counts, (list, tuple, np.ndarray)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 2 ** 32
                   for v in counts):
            return "RLE counts must be ints >= 0 (run lengths); found " + repr(list(counts)[:8])[:200]
        values = np.asarray(counts, np.int64)
    else:
        return f"RLE 'counts' must be a string or a list of ints; found {type(counts).__name__}"
    total = int(values.sum())
    if total != hh * ww:
        return f"RLE counts sum to {total}, but size [{hh}, {ww}] has {hh * ww} pixels"
    return None


def _flat_polygon(p: Any, k: int, h: int, w: int) -> np.ndarray:
    """One polygon as a flat float64 array; a polygon that is not a flat list of finite numbers
    near the image raises ValueError (pycocotools allocates per pixel of perimeter, and casts
    to 32-bit ints: a vertex at 1e9 would cost gigabytes or wrap around)."""
    try:
        a = np.asarray(p)
    except (ValueError, TypeError):
        a = None
    if a is None or a.ndim == 0 or a.dtype.kind not in "iuf":  # an (N, 2) array of points is fine
        raise ValueError(f"polygon {k} must be a flat list of numbers [x1, y1, x2, y2, ...]; found "
                         + repr(p)[:80])
    a = a.astype(np.float64).ravel()
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"polygon {k} has a coordinate that is not finite")
    side = max(int(h), int(w), 1)
    if a.size and (a.min() < -side or a.max() > 2 * side):
        raise ValueError(f"polygon {k} has a vertex far outside the {int(w)}x{int(h)} image "
                         f"(coordinates {a.min():g}..{a.max():g}; expected {-side}..{2 * side})")
    return a


def _pycoco_rle(segm: Any, h: int, w: int, where: str = "segmentation") -> dict | None:
    """pycocotools RLE (``counts`` as bytes) of a segmentation entry, or None when it has no shape.

    Raises:
        InvalidAnnotationError: a malformed entry (naming ``where``), before
            pycocotools sees it.
    """
    from pycocotools import mask as mask_utils

    from ._checks import check_canvas
    from .errors import InvalidAnnotationError

    segm = decode_segmentation(segm, where)
    if segm is None:
        return None
    if isinstance(segm, dict):
        if "counts" not in segm:
            raise InvalidAnnotationError(where, f"RLE dict without 'counts' (keys {sorted(map(str, segm))[:8]})")
        rle = dict(segm)
        if not rle.get("size"):
            rle["size"] = [int(h), int(w)]  # no size: the image's (as panopticapi/COCO results assume)
        problem = rle_problem(rle)
        if problem:
            raise InvalidAnnotationError(where, problem)
        hh, ww = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, str):
            return {"size": [hh, ww], "counts": counts.encode("ascii")}
        if isinstance(counts, (bytes, bytearray)):
            return {"size": [hh, ww], "counts": bytes(counts)}
        return mask_utils.frPyObjects({"size": [hh, ww], "counts": [int(v) for v in counts]}, hh, ww)
    if not isinstance(segm, (list, tuple)):
        raise InvalidAnnotationError(where, f"segmentation must be a list of polygons or an RLE dict, found "
                                            f"{type(segm).__name__}")
    try:
        polys = [_flat_polygon(p, k, h, w) for k, p in enumerate(segm)]
    except ValueError as err:
        raise InvalidAnnotationError(where, str(err)) from None
    polys = [p.tolist() for p in polys if len(p) >= 6]
    if not polys:
        return None
    check_canvas(w, h, where, "polygon canvas")
    return mask_utils.merge(mask_utils.frPyObjects(polys, int(h), int(w)))


def segmentation_rle(segm: Any, h: int, w: int, where: str = "segmentation") -> dict | None:
    """Compressed COCO RLE (``counts`` as ``str``) of one object's segmentation entry.

    Polygons are rasterised at the image size ``(h, w)`` and merged into one
    mask; an RLE keeps its own ``size`` (the image's when it has none).

    Args:
        segm: None, a list of flat polygons, an RLE dict (str, bytes or list
            counts), or raw JSON bytes of either.
        h: image height.
        w: image width.
        where: how errors name the entry (``"val2017/x: object 3"``).

    Returns:
        ``{"size": [h, w], "counts": str}``, or None when the entry has no
        shape (None, ``[]``, or only polygons of fewer than 3 points).

    Raises:
        InvalidAnnotationError: a malformed entry (a ValueError): an RLE that
            :func:`rle_problem` refuses, a polygon that is not a flat list of
            finite numbers near the image, a canvas past the pixel limit.

    Example:
        >>> segmentation_rle([[0, 0, 2, 0, 2, 2, 0, 2]], 2, 2)
        {'size': [2, 2], 'counts': '04'}
    """
    rle = _pycoco_rle(segm, h, w, where)
    if rle is None:
        return None
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def segmentation_mask(segm: Any, h: int, w: int, *, on_size_mismatch: str = "raise",
                      where: str = "segmentation") -> np.ndarray | None:
    """Binary ``(h, w)`` uint8 mask of one object's segmentation entry (see :func:`segmentation_rle`).

    Args:
        segm: the entry.
        h: image height.
        w: image width.
        on_size_mismatch: ``"raise"`` (InvalidAnnotationError) or ``"none"``
            (return None) when an RLE's size is not ``(h, w)``.
        where: how errors name the entry.

    Returns:
        The mask, or None when the entry has no shape.

    Raises:
        InvalidAnnotationError: see :func:`segmentation_rle`.

    Example:
        >>> segmentation_mask({"size": [2, 2], "counts": [1, 2, 1]}, 2, 2).tolist()
        [[0, 1], [1, 0]]
    """
    from pycocotools import mask as mask_utils

    from .errors import InvalidAnnotationError

    rle = _pycoco_rle(segm, h, w, where)
    if rle is None:
        return None
    if (int(rle["size"][0]), int(rle["size"][1])) != (int(h), int(w)):
        if on_size_mismatch == "none":
            return None
        raise InvalidAnnotationError(where, f"RLE of size ({int(rle['size'][0])}, {int(rle['size'][1])}) on an image of size "
                         f"({int(h)}, {int(w)})")
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2 warns about __array__(copy=)
        warnings.simplefilter("ignore", DeprecationWarning)
        m = mask_utils.decode(rle)
    return m.astype(np.uint8, copy=False)


def segmentation_area(segm: Any, h: int, w: int, where: str = "segmentation") -> float | None:
    """Pixel count of one object's segmentation entry (pycocotools ``mask.area``).

    An RLE counts at its own size. ``h`` or ``w`` of 0 means an unknown
    image size: polygons are then rasterised on a canvas that holds them.

    Returns:
        The area; None when the entry is None or ``[]``; 0.0 for only
        polygons of fewer than 3 points.

    Raises:
        InvalidAnnotationError: see :func:`segmentation_rle`.

    Example:
        >>> segmentation_area([[0, 0, 4, 0, 4, 2, 0, 2]], 0, 0)
        8.0
    """
    from pycocotools import mask as mask_utils

    from .errors import InvalidAnnotationError

    segm = decode_segmentation(segm, where)
    if segm is None or (isinstance(segm, (list, tuple)) and len(segm) == 0):
        return None
    if isinstance(segm, (list, tuple)) and (not h or not w):
        # no image size: a canvas holding the polygons (checked against the pixel limit below)
        try:
            pts = [_flat_polygon(p, k, 2 ** 31, 2 ** 31) for k, p in enumerate(segm)]
        except ValueError as err:
            raise InvalidAnnotationError(where, str(err)) from None
        pts = np.concatenate([p for p in pts if p.size >= 6] or [np.zeros(0)])
        if pts.size == 0:
            return 0.0
        w = max(1, int(np.ceil(pts[0::2].max())) + 1)
        h = max(1, int(np.ceil(pts[1::2].max())) + 1)
    rle = _pycoco_rle(segm, h, w, where)
    return 0.0 if rle is None else float(mask_utils.area(rle))


def semantic_readers(dataset: Any) -> dict[str, Any]:
    """Mask kind -> the function that draws a record's label map from another file.

    A parser whose semantic source for some records is not a label PNG (a
    Cityscapes frame with only ``polygons.json`` or only instanceIds) leaves
    their ``mask_path`` None, puts the file in ``record.extra["semantic_source"]``
    and its kind in ``extra["mask_kind"]``, and names the function in
    ``dataset.info["mask_readers"]`` (kind -> ``"module:function"``), called as
    ``function(path, kind)`` and returning the map a label PNG would hold.

    Example:
        >>> semantic_readers(dsprep.load("cityscapes", root="cs_polygons_only"))  # doctest: +SKIP
        {'polygons': <function read_semantic_mask ...>}
    """
    import importlib

    named = dataset.info.get("mask_readers")
    out: dict[str, Any] = {}
    for kind, spec in (named.items() if isinstance(named, Mapping) else ()):
        module, _, attr = str(spec).partition(":")
        out[kind] = getattr(importlib.import_module(module), attr)
    return out
