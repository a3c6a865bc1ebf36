"""Checks of values read from untrusted files, shared by the formats.

Every parser reads numbers, names and nested structures that someone else
wrote; each check here turns one way they can be wrong into a named
:class:`~dsprep.errors.FormatError` (where, expected, found, fix) instead of
an ``OverflowError``, ``UnicodeError`` or ``MemoryError`` somewhere later.
The limits, and why:

- image sides: integers ``0..MAX_SIDE`` (2^31 - 1, the largest side PNG can
  store; no image format stores more), so that every writer can write the
  size and every reader read it back;
- integers a format keeps or passes through: 64-bit signed (``int64``: numpy
  arrays, orjson, pycocotools' ids);
- canvases dsprep draws (polygons, masks) and images it decodes: at most
  Pillow's decompression-bomb limit, ``2 * PIL.Image.MAX_IMAGE_PIXELS``
  pixels (179 M by default; raise ``MAX_IMAGE_PIXELS`` for larger images,
  ``None`` lifts the limit, as in Pillow);
- text: UTF-8 (JSON and XML require it, and file names go into both).

No torch here; Pillow is imported only to read its limit.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .errors import InvalidAnnotationError, MalformedFileError, MissingFileError

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_SIDE", "NAME_BYTES", "bomb_message", "check_canvas", "check_side",
           "check_utf8_name", "fit_name", "image_error", "json_problem", "pixel_limit", "read_utf8"]

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
MAX_SIDE = 2 ** 31 - 1


def pixel_limit() -> int | None:
    """The most pixels dsprep draws or decodes: Pillow's ``2 * Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    from PIL import Image

    m = Image.MAX_IMAGE_PIXELS
    return None if m is None else 2 * int(m)


def bomb_message(pixels: int, what: str = "image") -> str:
    """The message for a canvas or image past :func:`pixel_limit` (expected, found, fix)."""
    return (f"{what} of {pixels:,} pixels is past Pillow's decompression-bomb limit of {pixel_limit():,}; "
            f"expected at most that many (fix: correct the size, or, for images this large, raise "
            f"PIL.Image.MAX_IMAGE_PIXELS before running dsprep)")


def image_error(path: str | os.PathLike, err: BaseException, what: str = "image") -> Exception:
    """The named error for an exception Pillow raised opening or decoding ``path``.

    Pillow's plugins raise many kinds on a corrupt file (OSError, SyntaxError,
    ValueError, struct.error, IndexError...), and ``DecompressionBombError``
    (an ``Exception``) on a header past :func:`pixel_limit`: every one of them
    means the file cannot be used. A missing file stays a :class:`MissingFileError`.
    """
    from PIL import Image

    path = os.fspath(path)
    if isinstance(err, FileNotFoundError):
        return MissingFileError(path, f"{what} not found")
    if isinstance(err, Image.DecompressionBombError):
        return MalformedFileError(path, f"{what} is past Pillow's decompression-bomb limit of {pixel_limit():,} "
                                        f"pixels ({err}); expected a smaller image (fix: if the image is "
                                        "genuine, raise PIL.Image.MAX_IMAGE_PIXELS before running dsprep)",
                                  kind="image_too_large")
    if isinstance(err, MemoryError):
        return MalformedFileError(path, f"{what} needs more memory than there is to decode; expected an image "
                                        "that fits in memory")
    return MalformedFileError(path, f"not a readable {what}, truncated or corrupt ({type(err).__name__}: {err})"[:400])


def check_canvas(width: int, height: int, where: str, what: str = "canvas") -> None:
    """Raise :class:`InvalidAnnotationError` when ``width x height`` is past :func:`pixel_limit`."""
    limit = pixel_limit()
    pixels = int(width) * int(height)
    if limit is not None and pixels > limit:
        raise InvalidAnnotationError(where, bomb_message(pixels, f"{what} {int(width)}x{int(height)}"))


def check_side(value: Any, where: str, name: str) -> int:
    """An image side as an int in ``0..MAX_SIDE``; floats must be finite (and are truncated, as
    ``int()`` does: VOC writes ``500.0`` sometimes).

    Raises:
        InvalidAnnotationError: not a number, not finite, negative or past ``MAX_SIDE``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidAnnotationError(where, f"{name} must be a number of pixels, found {value!r}"[:300])
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidAnnotationError(where, f"{name} must be a finite number of pixels, found {value!r}")
    if not 0 <= value <= MAX_SIDE:
        raise InvalidAnnotationError(where, f"{name} must be 0..{MAX_SIDE} pixels (2^31 - 1, the largest side "
                                            f"an image format stores), found {value!r} (fix: write the image's "
                                            "size in pixels)")
    return int(value)


def json_problem(obj: Any) -> tuple[str, str] | None:
    """``(path, message)`` of the first value JSON writers cannot write, or None.

    JSON decoders give Python ints of any size (and Python's ``json`` strings
    holding lone surrogates, ``"\\udcff"``); orjson, numpy and pycocotools
    hold 64-bit integers and UTF-8 text. Called once orjson has refused ``obj``
    (:func:`dsprep._io.json_bytes`), to name the value.
    """
    path, value = _first_unwritable(obj)
    if type(value) is int:
        return path, (f"the integer {value} does not fit in 64 bits; expected integers in "
                      f"{INT64_MIN}..{UINT64_MAX} (fix: correct the value, or write it as a string)")
    if type(value) is str:
        return path, (f"text that is not valid Unicode ({value.encode('utf-8', 'backslashreplace')[:60]!r}); "
                      "expected text UTF-8 can hold, without lone surrogates such as \\udcff (fix: correct "
                      "the text)")
    return None


UINT64_MAX = 2 ** 64 - 1


def _first_unwritable(obj: Any) -> tuple[str, Any]:
    """(path, value) of the first integer outside 64 bits or string with a lone surrogate.

    Walked with a stack, not recursion: a decoder accepts nesting about as deep
    as Python's recursion limit.
    """
    stack = [(obj, "")]
    while stack:
        value, where = stack.pop()
        if type(value) is int:
            if not INT64_MIN <= value <= UINT64_MAX:
                return where, value
        elif type(value) is str:
            if _bad_text(value):
                return where, value
        elif isinstance(value, dict):
            for k in reversed(list(value)):
                if isinstance(k, str) and _bad_text(k):
                    return f"{where} (a key)", k
                stack.append((value[k], f"{where}.{k}" if where else str(k)))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return "", None


def _bad_text(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def read_utf8(path: str | os.PathLike, where: str | None = None, *, strip_bom: bool = True) -> str:
    """A text file decoded as UTF-8 (a leading byte-order mark dropped).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: not UTF-8, naming the line and the bytes.
    """
    where = str(path) if where is None else where
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise MissingFileError(where, "file not found") from None
    except OSError as err:
        raise MalformedFileError(where, f"cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig" if strip_bom else "utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise MalformedFileError(f"{where}:{line}", f"not UTF-8 text: bytes {data[err.start:err.end + 3]!r}; "
                                                    "expected UTF-8 (fix: re-save the file as UTF-8, e.g. "
                                                    "iconv -f latin1 -t utf-8)") from None


NAME_BYTES = 240  # file systems hold 255 bytes a name; room left for a suffix a writer adds (".xml")


def fit_name(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` if its UTF-8 fits ``limit`` bytes, else cut to fit with ``~`` and 8 hex digits of
    its hash before the extension: a file name every file system holds, distinct for distinct
    names (a 400-character COCO ``file_name`` becomes a VOC image id).

    Example:
        >>> fit_name("x" * 300 + ".jpg", 20)
        'xxxxxxx~f6b6611a.jpg'
    """
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return name
    import hashlib

    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode("utf-8", "surrogatepass")) > 16:
        stem, ext = name, ""
    tag = "~" + hashlib.sha1(raw).hexdigest()[:8] + (f".{ext}" if ext else "")
    keep = stem.encode("utf-8", "surrogatepass")[:max(1, limit - len(tag.encode()))]
    return keep.decode("utf-8", "ignore") + tag


def check_utf8_name(name: str, where: str) -> str:
    """``name`` (a file name from the file system) if it is valid UTF-8.

    Python decodes undecodable bytes of a file name as lone surrogates
    (``os.fsdecode``); such a name cannot be written into JSON or XML.

    Raises:
        InvalidAnnotationError: naming the raw bytes and how to rename the file.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(name)
        where = where.encode("utf-8", "backslashreplace").decode("utf-8")  # printable, as JSON too
        raise InvalidAnnotationError(where, f"file name {raw!r} is not valid UTF-8; expected a UTF-8 name "
                                            "(JSON and XML hold only UTF-8; fix: rename it, e.g. with "
                                            "convmv -f latin1 -t utf-8 --notest)") from None
    return name
