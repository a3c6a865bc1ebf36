"""File-system helpers shared by the formats: header-only image sizes, image
placement, atomic output directories, progress bars and a process pool.

No torch here (formats import this module).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import struct
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from ._paths import checked_output_path
from .errors import InvalidAnnotationError, MalformedFileError, MissingFileError, check_choice

__all__ = ["IMAGE_MODES", "default_workers", "gc_paused", "image_size", "json_bytes", "parallel_map", "place_image",
           "process_pool", "progress", "read_json_object"]

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


def read_bytes(path: str) -> bytes:
    """The whole file, by ``os.open``/``os.read`` (half the cost of ``open(path, "rb").read()``
    for the small files read one per image: YOLO label rows). Raises ``OSError`` as ``open``."""
    fd = os.open(path, _O_RDONLY)
    try:
        parts = []
        while True:
            part = os.read(fd, _HEAD_BYTES)
            if not part:
                break
            parts.append(part)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@contextlib.contextmanager
def gc_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many acyclic objects are made.

    Building records (or COCOeval's per-image state) allocates objects in
    bursts; every few hundred the collector runs and, as they pile up, rescans
    all of them: for COCO train2017 that costs as much as parsing. These
    objects hold no reference cycles, so reference counting frees them all
    the same (Mercurial's ``util.nogc`` does this around manifest parsing).
    The previous state is restored even on error. ``freeze=True`` then (on success only) moves
    everything alive to the permanent generation (``gc.freeze``), so later
    collections skip it and forked DataLoader workers do not touch its pages.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    done = False
    try:
        yield
        done = True
    finally:
        if was_enabled:
            # Frozen only on success: while an error propagates, its traceback's frames (and
            # the memory-mapped JSON they hold: one open file each) would be frozen for good.
            if freeze and done:
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


@functools.lru_cache(maxsize=1)
def _pil_image():
    """``PIL.Image``, imported on first use (formats that read no image never import Pillow)."""
    from PIL import Image

    return Image


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image as it will be decoded, from the header only.

    No pixels are decoded. EXIF orientations 5-8 (rotations by 90 degrees)
    swap the two, so the size matches ``ImageOps.exif_transpose`` output.
    Plain JPEGs and PNGs are read by a small header parser (one 64 KiB read,
    :func:`_fast_size`, 5-10x faster than opening them with Pillow); anything
    it is not sure of goes through Pillow (:func:`_pil_size`), so sizes and
    errors are Pillow's in every case.

    Raises:
        MissingFileError: the file does not exist.
        MalformedFileError: Pillow cannot identify it as an image, or it is past
            Pillow's decompression-bomb limit (``kind="image_too_large"``).
    """
    fast = _fast_size(path)
    if fast is not None:
        w, h, orientation = fast
        if orientation in _TRANSPOSING_ORIENTATIONS:
            w, h = h, w
        return w, h
    return _pil_size(path)


def _pil_size(path: str | os.PathLike) -> tuple[int, int]:
    """:func:`image_size` by Pillow: every format it reads, and the named errors."""
    # Imported per call only on the error path: a relative ``from ._checks import`` costs
    # ~10 us, a tenth of reading a JPEG header (YOLO reads one per image).
    try:
        with _pil_image().open(path) as im:
            w, h = im.size
            orientation = exif_orientation(im)
    except Exception as err:  # every kind Pillow raises on a bad header (see image_error)
        from ._checks import image_error

        raise image_error(path, err, "image file (header)") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        w, h = h, w
    return int(w), int(h)


_HEAD_BYTES = 1 << 16  # one read covers the JPEG header of nearly every photo (EXIF thumbnail included)
_HEAD_MAX = 1 << 20  # past this the header is odd: Pillow reads it
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# (bit depth, colour type) pairs Pillow's PNG plugin knows (PngImagePlugin._MODES).
_PNG_MODES = frozenset({(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3), (8, 3),
                        (8, 4), (16, 4), (8, 6), (16, 6)})
# PNG chunks before IDAT whose Pillow handler cannot fail once its length is checked: min length.
_PNG_SIMPLE = {b"sRGB": 1, b"gAMA": 4, b"pHYs": 9, b"PLTE": 0}  # tRNS: by colour type
# TIFF field types Pillow loads, with their unit size (TiffImagePlugin._load_dispatch, classic TIFF).
_TIFF_UNIT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
# EXIF IFD0 tags Pillow reads while opening a JPEG (_read_dpi_from_exif) or we read: required (type, count).
_EXIF_READ = {0x0112: (3, 1), 0x0128: (3, 1), 0x011A: (5, 1)}


@functools.lru_cache(maxsize=1)
def _pil_imagefile():
    from PIL import ImageFile

    return ImageFile


def _fast_size(path) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` from the first bytes of a plain JPEG or PNG, or None.

    None means "let Pillow decide": anything this parser is not sure Pillow reads
    the same way (other formats, truncation, unusual markers or chunks, EXIF it
    would warn about, XMP orientation, MPO, sizes near the bomb limit) goes the
    Pillow path, so sizes and errors are Pillow's exactly.
    """
    try:
        fd = os.open(path, _O_RDONLY)
    except Exception:  # missing or unreadable: the Pillow path raises the named error
        return None
    try:
        buf = os.read(fd, _HEAD_BYTES)
        if buf[:3] == b"\xff\xd8\xff":
            r = _jpeg_head(buf)
            while r is _MORE and len(buf) < _HEAD_MAX:
                more = os.read(fd, 4 * len(buf))
                if not more:
                    return None
                buf += more
                r = _jpeg_head(buf)
        elif buf[:8] == _PNG_MAGIC:
            r = _png_head(buf)
        else:
            return None
    except Exception:
        return None
    finally:
        os.close(fd)
    if r is None or r is _MORE:
        return None
    w, h, _ = r
    if w <= 0 or h <= 0 or _pil_imagefile().LOAD_TRUNCATED_IMAGES:
        return None
    limit = _pil_image().MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:  # Pillow warns or raises: let it
        return None
    return r


_MORE = object()
_O_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
# markers Pillow reads without a length (SOI, EOI, RSTn, JPG, JPGn): we let Pillow walk those files
_NO_LENGTH = frozenset({0xC8, 0xD8, 0xD9, *range(0xD0, 0xD8), *range(0xF0, 0xFE)})


def _jpeg_head(b: bytes):
    """Walk JPEG marker segments as Pillow's JpegImageFile._open does, up to SOS."""
    n = len(b)
    i = 2
    size = None
    exif = None
    xmp = False
    while True:
        if i + 4 > n:
            return _MORE
        if b[i] != 0xFF:
            return None  # junk between segments: Pillow skips it, we don't guess
        m = b[i + 1]
        if m == 0xFF:
            i += 1  # fill byte
            continue
        if m < 0xC0 or m in _NO_LENGTH:
            return None
        seg_len = (b[i + 2] << 8) | b[i + 3]
        if seg_len < 2:
            return None
        j = i + 4  # the segment's data: b[j:end]
        end = i + 2 + seg_len
        if end > n:
            return _MORE
        if m in _SOF:
            if size is not None or end - j < 6 or b[j] != 8 or b[j + 5] not in (1, 3, 4):
                return None
            size = ((b[j + 3] << 8) | b[j + 4], (b[j + 1] << 8) | b[j + 2])
        elif m == 0xDB:  # DQT: Pillow raises on a short table
            while j < end:
                j += 65 if b[j] < 16 else 129
            if j > end:
                return None
        elif m == 0xDA:  # SOS: the header ends here
            break
        elif m >= 0xE0 and m != 0xFE:
            if m == 0xE0:
                if b.startswith(b"JFIF", j, end) and end - j < 12:
                    return None
            elif m == 0xE1:
                if b.startswith(b"Exif\0\0", j, end):
                    if exif is not None:
                        return None  # Pillow joins several: rare, let it
                    exif = b[j:end]
                elif b.startswith(b"http://ns.adobe.com/xap/1.0/\x00", j, end):
                    xmp = True
            elif m == 0xE2:
                if b.startswith(b"MPF\0", j, end) or (b.startswith(b"ICC_PROFILE\0", j, end) and end - j < 14):
                    return None
            elif m == 0xED:
                if b.startswith(b"Photoshop 3.0\x00", j, end) and not _photoshop_ok(b[j:end]):
                    return None
            elif m == 0xEE:
                if b.startswith(b"Adobe", j, end) and end - j < 7:
                    return None
        i = end
    if size is None:
        return None
    if exif is None:
        return size[0], size[1], 1
    tags = _exif_ifd0(exif)
    if tags is None:
        return None
    if 0x0112 not in tags and xmp:
        return None  # Pillow reads tiff:Orientation from XMP then
    o = tags.get(0x0112, 1)
    return size[0], size[1], (o if 1 <= o <= 8 else 1)


def _photoshop_ok(s: bytes) -> bool:
    """False where Pillow's APP13 resource walk would raise (it only catches ``struct.error``)."""
    off = 14
    while s[off:off + 4] == b"8BIM":
        off += 6
        if off > len(s):
            return True  # struct.error reading the code: Pillow stops there
        if off >= len(s):
            return False  # IndexError reading the name length
        off += 1 + s[off]
        off += off & 1
        if off + 4 > len(s):
            return True
        off += 4 + int.from_bytes(s[off:off + 4], "big")
        off += off & 1
    return True


def _exif_ifd0(s: bytes) -> dict[int, int] | None:
    """IFD0 of an ``Exif\\0\\0`` block as ``{tag: value}`` for the tags of _EXIF_READ, or None when
    anything in it would make Pillow warn, skip or fail (then Pillow reads it)."""
    t = s[6:]
    if t.startswith(b"Exif\0\0") or len(t) < 8:
        return None
    if t[:4] == b"II*\0":
        e = "<"
    elif t[:4] == b"MM\0*":
        e = ">"
    else:
        return None
    n = len(t)
    (off,) = struct.unpack(e + "L", t[4:8])
    if off + 2 > n:
        return None
    (count,) = struct.unpack(e + "H", t[off:off + 2])
    if off + 2 + 12 * count + 4 > n:
        return None
    out: dict[int, int] = {}
    seen = set()
    total = 0
    for k in range(count):
        p = off + 2 + 12 * k
        tag, typ, cnt = struct.unpack(e + "HHL", t[p:p + 8])
        unit = _TIFF_UNIT.get(typ)
        if unit is None or cnt == 0 or tag in seen:
            return None
        seen.add(tag)
        size = unit * cnt
        if size > 4:
            (doff,) = struct.unpack(e + "L", t[p + 8:p + 12])
            total += size
            if doff + size > n or total > n:
                return None
        want = _EXIF_READ.get(tag)
        if want is not None:
            if (typ, cnt) != want:
                return None
            if typ == 3:
                (out[tag],) = struct.unpack(e + "H", t[p + 8:p + 10])
            else:
                out[tag] = 0
    return out


def _png_head(b: bytes):
    """IHDR of a PNG whose chunks before IDAT are few and simple (CRCs checked, as Pillow does)."""
    n = len(b)
    i = 8
    size = None
    while True:
        if i + 8 > n:
            return None
        length = int.from_bytes(b[i:i + 4], "big")
        cid = b[i + 4:i + 8]
        if cid == b"IDAT":
            break
        end = i + 8 + length
        if end + 4 > n:
            return None
        data = b[i + 8:end]
        if zlib.crc32(data, zlib.crc32(cid)) != int.from_bytes(b[end:end + 4], "big"):
            return None
        if cid == b"IHDR":
            if size is not None or i != 8 or length != 13 or (data[8], data[9]) not in _PNG_MODES or data[11]:
                return None
            size = (int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big"))
            ctype = data[9]
        elif cid == b"tRNS" and size is not None:
            if length < {0: 2, 2: 6}.get(ctype, 0):
                return None
        elif size is None or length < _PNG_SIMPLE.get(cid, 1 << 40):
            return None
        i = end + 4
    if size is None:
        return None
    return size[0], size[1], 1


def place_image(src: Path, out: Path, rel: str, mode: str) -> bool:
    """Put the image ``src`` at ``out / rel`` by ``mode`` (``link``: symlink, ``copy``, ``none``).

    ``rel`` is checked by :func:`dsprep._paths.output_path` first (inside ``out``,
    never through a link placed earlier). Nothing already in ``out`` is replaced:
    placing the same source at the same name again is a no-op (two records of one
    file), a different one is an error. A hard link is not used: it would let a
    later edit of the output modify the input.

    Returns:
        False when ``src`` is missing or not a regular file (the caller counts and
        reports it); True otherwise (also for ``none``).

    Raises:
        PathEscapeError: ``rel`` leaves ``out`` or reaches through a placed link.
        InvalidAnnotationError: another image was already placed at ``rel``.
    """
    if mode == "none":
        return True
    if not os.path.isfile(src):
        return False
    dst = checked_output_path(out, rel, what="image", placing=True)
    if os.path.lexists(dst):
        if _placed_from(dst, src, mode):
            return True
        raise InvalidAnnotationError(str(rel), f"two different images would be placed at {dst} ({src} and "
                                               "one placed before); record paths must be distinct files")
    if mode == "link":
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copy2(src, dst)
    return True


def place_record_image(src: Path, out: Path, rel: str, mode: str, rec_id: str, only: str,
                       policy: Any = None) -> bool:
    """:func:`place_image` for a writer: a missing image is a ``MissingFileError`` naming the record
    and how to write the ``only`` part (``"labels"``, ``"annotations"``) without images; with an
    ``ErrorPolicy`` it goes through it (warn mode: counted, False returned), else it is raised."""
    if place_image(src, out, rel, mode):
        return True
    err = MissingFileError(str(src), f"image of record {rec_id!r} not found; cannot {mode} it to {rel} (use "
                                     f"--images none, images='none' in Python, to write {only} only)")
    if policy is None:
        raise err
    policy.handle(err)
    return False


def _placed_from(dst: str, src: Path, mode: str) -> bool:
    """Whether ``dst`` is ``src`` placed by ``mode`` already (a link to it, or its copy: copy2
    keeps size and modification time)."""
    if mode == "link":
        return os.path.islink(dst) and os.readlink(dst) == os.path.abspath(src)
    a, b = os.stat(src), os.lstat(dst)
    return not os.path.islink(dst) and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


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
    with process_pool(min(workers, len(chunks))) as pool:
        return list(progress(pool.map(fn, chunks), total=len(chunks), desc=desc, enabled=show_progress))


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers never outlive this process, nor an interrupted map.

    Each worker asks the kernel to kill it when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a thread that watches the
    parent pid), so a ``kill -9`` of dsprep does not leave workers running and
    holding the caller's pipes. Workers ignore SIGINT and die on SIGTERM: the
    parent owns clean-up. If the block raises (an error, Ctrl-C, SIGTERM turned
    into an exception by :mod:`dsprep._outdir`), pending work is cancelled and the
    workers are terminated instead of finishing every queued chunk first.
    """
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        # Python 3.14 has terminate_workers(); before it the processes are only in _processes
        stop = getattr(pool, "terminate_workers", None)
        if stop is not None:
            stop()
        else:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker_init(parent: int) -> None:
    """Pool-worker start-up: die with the parent (see :func:`process_pool`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked copy of the parent's handler would clean up OUT
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    if not armed:
        import threading

        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="dsprep-parent-watch").start()


def _watch_parent(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def check_images_mode(mode: str) -> str:
    return check_choice("--images mode", mode, IMAGE_MODES)


def relpath_posix(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()

