"""File-system helpers shared by the formats: header-only image sizes, image
placement, atomic output directories, progress bars and a process pool.

No torch here (formats import this module).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .errors import InvalidAnnotationError, MalformedFileError, MissingFileError, OutputExistsError, check_choice

__all__ = ["IMAGE_MODES", "atomic_output", "default_workers", "gc_paused", "image_size", "json_bytes",
           "parallel_map", "place_image", "progress", "read_json_object"]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

IMAGE_MODES = ("link", "copy", "none")
# EXIF orientation values that swap width and height (5..8 are the transposing ones).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


def read_json_object(path: str | os.PathLike) -> dict:
    """Parse a JSON file whose top level must be an object (orjson).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: not valid JSON, or not an object at the top.
    """
    import orjson

    try:
        doc = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise MissingFileError(str(path), "file not found") from None
    except orjson.JSONDecodeError as err:  # syntax, UTF-8, nesting past 1024 levels
        raise MalformedFileError(str(path), f"not valid JSON ({err})") from None
    except OSError as err:  # a directory, a symlink loop, no permission
        raise MalformedFileError(str(path), f"cannot read ({err.strerror or err})") from None
    if not isinstance(doc, dict):
        raise MalformedFileError(str(path), f"expected a JSON object, found {type(doc).__name__}")
    return doc


def json_default(obj):
    """``default=`` for json/orjson: numpy scalars and arrays, bytes (text), sets and
    tuples (lists), paths; anything else is a TypeError naming its type."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def json_bytes(obj: Any, where: str) -> bytes:
    """``obj`` as JSON by orjson (numpy values as numbers, see :func:`json_default`).

    A value passed through from the input that JSON writers cannot hold (an
    integer beyond 64 bits, text with a lone surrogate) is a named error, not
    orjson's bare ``TypeError``.

    Raises:
        InvalidAnnotationError: naming ``where`` and the value's path in ``obj``.
    """
    import orjson

    try:
        return orjson.dumps(obj, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        from ._checks import json_problem

        problem = json_problem(obj)
        if problem is None:
            raise
        raise InvalidAnnotationError(f"{where}{problem[0]}", "cannot write a value that came from the input: "
                                     + problem[1]) from None


@contextlib.contextmanager
def gc_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many acyclic objects are made.

    Building records (or COCOeval's per-image state) allocates objects in
    bursts; every few hundred the collector runs and, as they pile up, rescans
    all of them: for COCO train2017 that costs as much as parsing. These
    objects hold no reference cycles, so reference counting frees them all
    the same (Mercurial's ``util.nogc`` does this around manifest parsing).
    The previous state is restored even on error. ``freeze=True`` then moves
    everything alive to the permanent generation (``gc.freeze``), so later
    collections skip it and forked DataLoader workers do not touch its pages.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if freeze:
                gc.freeze()
            gc.enable()


def exif_orientation(im) -> int:
    """The EXIF orientation (1..8) of an opened PIL image, without decoding its pixels.

    Only images that carry EXIF pay for parsing it (JPEG APP1, PNG eXIf and WebP
    EXIF chunks land in ``im.info["exif"]``; TIFF keeps it in its own IFD). Pillow's
    PNG ``getexif()`` would otherwise decode every pixel looking for a trailing eXIf
    chunk (63 ms for a 2048x1024 Cityscapes PNG). A broken EXIF block reads as 1.
    """
    if "exif" not in im.info and im.format != "TIFF":
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not hide a readable image
        return 1
    return int(value) if value in range(1, 9) else 1


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image as it will be decoded, from the header only.

    No pixels are decoded. EXIF orientations 5-8 (rotations by 90 degrees)
    swap the two, so the size matches ``ImageOps.exif_transpose`` output.

    Raises:
        MissingFileError: the file does not exist.
        MalformedFileError: Pillow cannot identify it as an image, or it is past
            Pillow's decompression-bomb limit (``kind="image_too_large"``).
    """
    from PIL import Image

    from ._checks import image_error

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = exif_orientation(im)
    except Exception as err:  # every kind Pillow raises on a bad header (see image_error)
        raise image_error(path, err, "image file (header)") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        w, h = h, w
    return int(w), int(h)


def place_image(src: Path, dst: Path, mode: str) -> bool:
    """Put ``src`` at ``dst`` by ``mode`` (``link``: symlink, ``copy``, ``none``).

    Returns False when the source is missing (the caller counts and reports it).
    A hard link is not used: it would let a later edit of the output modify the input.
    """
    if mode == "none":
        return True
    if not src.exists():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "link":
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copy2(src, dst)
    return True


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; rename it to ``out`` on success.

    On error the temporary directory is removed and ``out`` is left as it was.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        tmp.rename(out)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        tmp.rename(out)


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "",
             enabled: bool | None = None, unit: str = "file") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (default: stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[Sequence[T]], R], items: Sequence[T], *, workers: int | None = None,
                 chunk: int = 256, desc: str = "", show_progress: bool | None = None) -> list[R]:
    """Apply ``fn`` to consecutive chunks of ``items``; results are in chunk order.

    ``fn`` takes a chunk (a list) and returns one result per chunk, so a
    worker does many small files per round trip. With ``workers <= 1`` or few
    items it runs in this process (no pool start-up cost).
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    chunks = [list(items[i:i + chunk]) for i in range(0, len(items), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return [fn(c) for c in progress(chunks, total=len(chunks), desc=desc, enabled=show_progress)]
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
        return list(progress(pool.map(fn, chunks), total=len(chunks), desc=desc, enabled=show_progress))


def check_images_mode(mode: str) -> str:
    return check_choice("--images mode", mode, IMAGE_MODES)


def relpath_posix(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()

