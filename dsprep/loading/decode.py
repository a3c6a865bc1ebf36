"""Image and mask decoding for the torch layer (no torch here).

Rules (see ``docs/loading.md``):

- Decode by content, never by extension: a PNG named ``.JPEG`` (there are
  some in ILSVRC2012 train) decodes as the PNG it is.
- Apply the EXIF orientation, so that pixels agree with the width and height
  the parsers recorded (``dsprep._io.image_size`` applies it too).
- Everything becomes 8-bit RGB: CMYK (Adobe inverted CMYK included, Pillow
  handles it), L, P, LA, PA, RGBA (alpha dropped), and 16-bit grey
  (``I;16``, ``I``) scaled by ``>> 8``.
- JPEGs are decoded at reduced size with ``Image.draft`` when the output is at
  most half the source. PIL's draft only shrinks by 2, 4 or 8 while both sides
  stay at least the requested size, so the request must be the size the
  *whole image* would have at the crop's output scale, not the output size
  itself: asking for (224, 224) on a 500x375 image never shrinks it.
- A missing file raises :class:`~dsprep.errors.MissingFileError`; a truncated
  or unreadable one, or one past Pillow's decompression-bomb limit,
  :class:`~dsprep.errors.MalformedFileError` (whatever Pillow raised). Both name the file.

Masks (:func:`decode_mask`) keep their values: palette PNGs give their
indices (VOC ``SegmentationClass``: class index, 255 = void), ``L`` gives
grey levels (Cityscapes ``labelIds``), ``I;16`` gives 16-bit values
(Cityscapes ``instanceIds``, ``id * 1000 + k``).

:class:`ImageSource` is the decode seam: the dataset opens each image as
one (``TorchDataset._open_checked``), the transforms read its ``size`` and
decode it at the scale they need. A faster JPEG path (decoding at the
output's scale in one step) is one more module here providing the same
``size``, ``decode(scale)`` and ``close()``.
"""
from __future__ import annotations

import io
import logging
import math
import os
import warnings
import numpy as np
from PIL import Image

from .._checks import image_error
from .._io import exif_orientation
from ..errors import MalformedFileError
from ..masks import read_label_png

__all__ = ["ImageSource", "decode_image", "decode_mask"]

log = logging.getLogger(__name__)

# EXIF tag 0x0112 (Orientation) -> the PIL transpose that undoes it
# (the same table as PIL.ImageOps.exif_transpose).
_ORIENTATION_OPS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}


def _open(path: str, data: bytes | None = None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # DecompressionBombWarning and friends belong in the log, not in a worker's stderr.
            warnings.simplefilter("ignore")
            return Image.open(path if data is None else io.BytesIO(data))
    except Exception as err:  # every kind Pillow raises, the decompression-bomb error included
        raise image_error(path, err, "image file") from None


def _orientation(im: Image.Image) -> int:
    value = exif_orientation(im)
    return value if value in _ORIENTATION_OPS else 1


class ImageSource:
    """An opened image whose size is known and whose pixels are not decoded yet.

    Transforms read :attr:`size` to draw their parameters, then call
    :meth:`decode` with the output scale, so that JPEGs can be decoded at the
    crop's own scale.

    Args:
        path: the image file.
        data: its bytes, read instead of the file (``path`` then only names it: a shard member).

    Attributes:
        path: as given.
        size: ``(width, height)`` after EXIF orientation.

    Raises:
        MissingFileError: the file does not exist.
        MalformedFileError: Pillow cannot identify it.

    Example:
        >>> src = ImageSource("photo.jpg")  # doctest: +SKIP
        >>> pil, scale = src.decode(0.25)   # decoded at 1/2 or 1/4 size  # doctest: +SKIP
    """

    __slots__ = ("path", "_im", "orientation", "size")

    def __init__(self, path: str | os.PathLike, data: bytes | None = None):
        self.path = os.fspath(path)
        self._im: Image.Image | None = _open(self.path, data)
        self.orientation = _orientation(self._im)
        w, h = self._im.size
        self.size = (h, w) if self.orientation in _SWAPS_AXES else (w, h)

    def close(self) -> None:
        if self._im is not None:
            self._im.close()
            self._im = None

    def decode(self, scale: float = 1.0) -> tuple[Image.Image, float]:
        """Decode to an RGB PIL image, at reduced size where ``scale <= 0.5``.

        Args:
            scale: output pixels per source pixel that the caller will
                resample to (the smaller of the two axes). JPEGs are decoded
                at 1/2, 1/4 or 1/8 when that still leaves at least ``scale``
                times the source size.

        Returns:
            ``(image, factor)``: the oriented RGB image and the factor its
            size has relative to :attr:`size` (1.0, or 0.5, 0.25, 0.125 after draft).

        Raises:
            MalformedFileError: the file is truncated or corrupt.
        """
        im = self._im
        if im is None:
            raise ValueError(f"{self.path}: ImageSource already closed")
        self._im = None
        factor = 1.0
        try:
            if scale <= 0.5 and im.format == "JPEG":
                w, h = im.size  # stored (unrotated) size; the scale is the same on both axes
                want = (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))
                res = im.draft(None, want)
                if res is not None:
                    factor = res[1][2] / w
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
            im = _to_rgb(im, self.path)
        except Exception as err:  # every kind Pillow raises on a corrupt file (see _checks.image_error)
            im.close()
            if isinstance(err, MalformedFileError):
                raise
            raise image_error(self.path, err, "image file") from None
        if self.orientation != 1:
            im = im.transpose(_ORIENTATION_OPS[self.orientation])
        return im, factor


def _to_rgb(im: Image.Image, path: str) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and int(arr.max(initial=0)) <= 255:
            grey = arr.astype(np.uint8)
        else:
            grey = (arr.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if mode == "F":
        arr = np.asarray(im).clip(0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr[:, :, None], 3, axis=2), "RGB")
    if mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as err:
        raise MalformedFileError(path, f"cannot convert image mode {mode!r} to RGB ({err})") from None


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a whole image to an ``(H, W, 3) uint8`` RGB array (EXIF orientation applied).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: not an image, truncated, or corrupt; the message names the file.

    Example:
        >>> decode_image("a.JPEG").shape  # a PNG named .JPEG works  # doctest: +SKIP
        (48, 64, 3)
    """
    im, _ = ImageSource(path).decode(1.0)
    return np.asarray(im)


def decode_mask(path: str | os.PathLike, *, palette: np.ndarray | None = None,
                data: bytes | None = None) -> np.ndarray:
    """Decode a label mask PNG to an ``(H, W)`` array of its stored values.

    Palette (``P``) and grey (``L``) masks give ``uint8`` (the palette index,
    never the colour); 16-bit masks give ``int32`` (values up to 65535). With
    a ``palette`` (:func:`dsprep.masks.mask_palette`: a VOC dataset's), an RGB
    mask gives each colour's index in it, as the VOC parser reads it. ``data``: the
    file's bytes, read instead of ``path`` (a shard member).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: unreadable, or not a single-channel label image
            (an RGB "colour" mask is not a label mask) when no palette is given.
        InvalidAnnotationError: a colour outside the palette.

    Example:
        >>> decode_mask("SegmentationClass/2007_000032.png").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    arr = read_label_png(path, "label mask", palette=palette, data=data)
    return arr if arr.dtype == np.uint8 else arr.astype(np.int32)
