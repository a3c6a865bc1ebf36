"""Image and mask decoding for the torch layer (no torch here).

Rules (see ``docs/loading.md``):

- Decode by content, never by extension: a PNG named ``.JPEG`` (there are
  some in ILSVRC2012 train) decodes as the PNG it is.
- Apply the EXIF orientation, so that pixels agree with the width and height
  the parsers recorded (``dsprep._io.image_size`` applies it too).
- Everything becomes 8-bit RGB: CMYK (Adobe inverted CMYK included, Pillow
  handles it), L, P, LA, PA, RGBA (alpha dropped), and 16-bit grey
  (``I;16``, ``I``) scaled by ``>> 8``.
- JPEGs can be decoded at 1/2, 1/4 or 1/8 of their size in the DCT domain
  (libjpeg's scaled IDCT: Pillow's ``Image.draft``, simplejpeg's
  ``min_width/min_height``). Reduced pixel ``k`` covers source pixels
  ``[s k, s k + s)`` exactly; the last one of an axis whose length is not a
  multiple of ``s`` is partial. :meth:`ImageSource.reduction` says which
  reduction a given output scale allows and :meth:`ImageSource.grid` where
  the reduced pixels lie in the oriented image, so that the transform plan
  can be put on that grid (``dsprep.loading.transforms.fit``).
- A missing file raises :class:`~dsprep.errors.MissingFileError`; a truncated
  or unreadable one, or one past Pillow's decompression-bomb limit,
  :class:`~dsprep.errors.MalformedFileError` (whatever Pillow raised). Both name the file.

Two decoders, one result. With the ``fast`` extra installed
(``pip install dsprep[fast]``: simplejpeg, libjpeg-turbo), baseline and
progressive YCbCr, greyscale and RGB JPEGs are decoded by libjpeg-turbo
straight from the file's bytes into a numpy array. Everything else (PNG,
CMYK/YCCK JPEGs, images over Pillow's decompression-bomb limit, files
libjpeg-turbo reports an error or warning on) goes through Pillow, as it
does without the extra. The EXIF orientation of a JPEG that carries EXIF or
XMP metadata is read by Pillow from its header in both cases. Both call libjpeg-turbo's accurate integer IDCT
and smooth chroma upsampling, so the pixels agree bit for bit with the
wheels dsprep is tested on (``tests/test_imageio.py``).

Masks (:func:`decode_mask`) keep their values: palette PNGs give their
indices (VOC ``SegmentationClass``: class index, 255 = void), ``L`` gives
grey levels (Cityscapes ``labelIds``), ``I;16`` gives 16-bit values
(Cityscapes ``instanceIds``, ``id * 1000 + k``).

:class:`ImageSource` is the decode seam: the dataset opens each image as
one (``TorchDataset._open_checked``), the transforms read its ``size``, ask
it for the reduction their output scale allows, and decode it once.
"""
from __future__ import annotations

import io
import logging
import os
import struct
import warnings

import numpy as np
from PIL import Image

from .._checks import image_error
from .._io import exif_orientation
from ..errors import MalformedFileError
from ..masks import read_label_png

try:  # the optional fast path (the ``fast`` extra)
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - the test set-up installs it; tests switch it off by hand
    _simplejpeg = None

__all__ = ["ImageSource", "decode_image", "decode_mask", "fast_jpeg_available"]

log = logging.getLogger(__name__)

# EXIF orientation (tag 0x0112) -> how the stored pixels become the oriented image:
# (transpose, then mirror the output's x axis, then its y axis); the same results as
# PIL.ImageOps.exif_transpose (tests/test_imageio.py checks every value).
_ORIENT = {
    1: (False, False, False),
    2: (False, True, False),   # mirror
    3: (False, True, True),    # rotate 180
    4: (False, False, True),   # flip
    5: (True, False, False),   # transpose
    6: (True, True, False),    # rotate 90 clockwise
    7: (True, True, True),     # transverse
    8: (True, False, True),    # rotate 90 counter-clockwise
}
_REDUCTIONS = (8, 4, 2)
# libjpeg-turbo colour spaces decoded by the fast path (CMYK and YCCK go to Pillow, whose
# CMYK -> RGB conversion is the reference).
_FAST_COLOURSPACES = ("YCbCr", "Gray", "RGB")
_JPEG_FORMATS = ("JPEG", "MPO")  # Pillow opens multi-picture camera JPEGs as MPO: still one JPEG to decode


def fast_jpeg_available() -> bool:
    """True when the libjpeg-turbo fast path (simplejpeg, the ``fast`` extra) is installed."""
    return _simplejpeg is not None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:  # missing (MissingFileError), a directory, no permission...
        raise image_error(path, err, "image file") from None


def _open(path: str, data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # DecompressionBombWarning and friends belong in the log, not in a worker's stderr.
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except Exception as err:  # every kind Pillow raises, the decompression-bomb error included
        raise image_error(path, err, "image file") from None


def _orientation(im: Image.Image) -> int:
    value = exif_orientation(im)
    return value if value in _ORIENT else 1


def _jpeg_has_metadata(data: bytes) -> bool:
    """Whether a JPEG carries an EXIF or XMP APP1 segment (where Pillow reads the orientation).

    Walks the marker segments from SOI to the first frame or scan header; a
    file too odd to walk answers True (Pillow then reads it).
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            return False  # a frame or scan header: the metadata segments come before it
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker < 0xC0 or 0xD0 <= marker <= 0xD9 or length < 2:
            return True  # a marker without a length here, or a broken length
        if marker == 0xE1 and (data.startswith(b"Exif", pos + 4) or data.startswith(b"http://ns.adobe", pos + 4)):
            return True
        pos += 2 + length
    return True


def _fast_header(data: bytes) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` of a JPEG the fast path decodes as Pillow would, else None."""
    if _simplejpeg is None or not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        h, w, colourspace, _ = _simplejpeg.decode_jpeg_header(data)
    except Exception:  # noqa: BLE001 - anything libjpeg-turbo raises or warns about: Pillow decides
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if colourspace not in _FAST_COLOURSPACES or (limit and w * h > limit):
        return None  # CMYK, YCCK; decompression bombs get Pillow's verdict
    orientation = 1
    if _jpeg_has_metadata(data):  # Pillow reads the orientation (EXIF, XMP) from the header
        try:
            with Image.open(io.BytesIO(data)) as im:
                orientation = _orientation(im)
        except Exception:  # noqa: BLE001 - whatever it is, the Pillow path names it
            return None
    return int(w), int(h), orientation


class ImageSource:
    """An opened image whose size is known and whose pixels are not decoded yet.

    Transforms read :attr:`size` to draw their parameters, ask
    :meth:`reduction` which DCT reduction their output scale allows and
    :meth:`grid` where its pixels lie, then call :meth:`decode` once.

    Args:
        path: the image file.
        data: its bytes, read instead of the file (``path`` then only names it: a shard member).

    Attributes:
        path: as given.
        size: ``(width, height)`` after EXIF orientation.
        orientation: the EXIF orientation applied (1..8).

    Raises:
        MissingFileError: the file does not exist.
        MalformedFileError: Pillow cannot identify it.

    Example:
        >>> src = ImageSource("photo.jpg")                 # doctest: +SKIP
        >>> s = src.reduction(0.3); s                      # 1/2 still leaves 0.3 of the size  # doctest: +SKIP
        2
        >>> src.decode(s).shape                            # (ceil(h / 2), ceil(w / 2), 3)  # doctest: +SKIP
    """

    __slots__ = ("path", "size", "orientation", "_data", "_im", "_stored")

    def __init__(self, path: str | os.PathLike, data: bytes | None = None):
        self.path = os.fspath(path)
        if data is None:
            data = _read(self.path)
        head = _fast_header(data)
        if head is not None:  # decoded by libjpeg-turbo from the bytes
            self._data, self._im = data, None
            w, h, self.orientation = head
        else:
            self._data = None
            self._im: Image.Image | None = _open(self.path, data)
            self.orientation = _orientation(self._im)
            w, h = self._im.size
        self._stored = (w, h)
        self.size = (h, w) if _ORIENT[self.orientation][0] else (w, h)

    @property
    def fast(self) -> bool:
        """Whether libjpeg-turbo (simplejpeg) will decode it, rather than Pillow."""
        return self._data is not None

    def close(self) -> None:
        if self._im is not None:
            self._im.close()
            self._im = None
        self._data = None

    def reduction(self, scale: float) -> int:
        """The DCT reduction (1, 2, 4 or 8) to decode at for an output ``scale`` times the source size.

        The largest ``s`` with ``s * scale <= 1``: the reduced image still has at
        least as many pixels as the output on both axes. JPEGs only (1 for
        anything else), with both sides at least 8 pixels.
        """
        w, h = self._stored
        jpeg = self._data is not None or (self._im is not None and self._im.format in _JPEG_FORMATS)
        if not jpeg or min(w, h) < 8:
            return 1
        for s in _REDUCTIONS:
            if s * scale <= 1 + 1e-9:
                return s
        return 1

    def grid(self, reduce: int) -> tuple[int, int]:
        """Where the reduced pixels lie: ``(ox, oy)`` such that decoded pixel ``(i, j)`` covers
        oriented source pixels ``[ox + s i, ox + s (i + 1)) x [oy + s j, oy + s (j + 1))``.

        0 unless the orientation mirrors an axis whose length is not a multiple
        of ``reduce``: the partial last pixel of the stored image then comes first.
        """
        if reduce == 1:
            return 0, 0
        _, fx, fy = _ORIENT[self.orientation]
        w, h = self.size
        return (w - reduce * -(-w // reduce) if fx else 0), (h - reduce * -(-h // reduce) if fy else 0)

    def decode(self, reduce: int = 1) -> np.ndarray:
        """Decode to an oriented ``(H, W, 3)`` uint8 RGB array, at ``1 / reduce`` of the size.

        Args:
            reduce: 1, or a reduction :meth:`reduction` offered; the result then has
                ``ceil(h / reduce) x ceil(w / reduce)`` pixels.

        Returns:
            the pixels (possibly a strided view: orientation flips are views).

        Raises:
            MalformedFileError: the file is truncated or corrupt.
        """
        if self._data is None and self._im is None:
            raise ValueError(f"{self.path}: ImageSource already closed")
        if reduce != 1 and (reduce not in _REDUCTIONS or reduce > self.reduction(1 / reduce)):
            raise ValueError(f"{self.path}: cannot decode at 1/{reduce}")
        arr = self._decode_fast(reduce) if self._data is not None else None
        if arr is None:
            arr = self._decode_pil(reduce)
        return _orient(arr, self.orientation)

    def _decode_fast(self, reduce: int) -> np.ndarray | None:
        data, self._data = self._data, None
        w, h = self._stored
        try:
            return _simplejpeg.decode_jpeg(data, "RGB", min_width=-(-w // reduce) if reduce > 1 else 0,
                                           min_height=-(-h // reduce) if reduce > 1 else 0)
        except Exception:  # noqa: BLE001 - corrupt, or warned about: Pillow decides, as without the extra
            self._im = _open(self.path, data)
            return None

    def _decode_pil(self, reduce: int) -> np.ndarray:
        im, self._im = self._im, None
        try:
            if reduce > 1:  # exactly 1/reduce: Pillow picks the largest of 8, 4, 2 that leaves >= the request
                im.draft(None, (im.size[0] // reduce, im.size[1] // reduce))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
            return np.asarray(_to_rgb(im, self.path))
        except Exception as err:  # every kind Pillow raises on a corrupt file (see _checks.image_error)
            if isinstance(err, MalformedFileError):
                raise
            raise image_error(self.path, err, "image file") from None
        finally:
            im.close()


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> the oriented image (views, no copy)."""
    transpose, flip_x, flip_y = _ORIENT[orientation]
    if transpose:
        arr = arr.transpose(1, 0, 2)
    if flip_x:
        arr = arr[:, ::-1]
    if flip_y:
        arr = arr[::-1]
    return arr


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
    return np.ascontiguousarray(ImageSource(path).decode())


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
