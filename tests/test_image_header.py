"""image_size's fast JPEG/PNG header reader gives exactly what the Pillow path gives.

Every real image under ../shared/fixtures, generated JPEGs and PNGs of each kind the
reader handles (EXIF orientations 1-8, progressive, greyscale, CMYK, palette PNGs...),
files it must hand to Pillow (XMP orientation, a PNG named .jpg, odd EXIF), truncated
files and byte-level mutations of real headers: same size, or the same named error.
"""
from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import pytest
from PIL import Image

from dsprep._io import _fast_size, _pil_size, image_size

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"


def _outcome(fn, path):
    """The size, or (error class, message) — what the caller sees."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(path)
        except Exception as err:  # compared, not swallowed
            return type(err).__name__, str(err), getattr(err, "kind", None)


def _same(path):
    fast, slow = _outcome(image_size, path), _outcome(_pil_size, path)
    assert fast == slow, path
    return fast


def _jpeg(path, size=(40, 30), mode="RGB", orientation=None, **kw):
    im = Image.new(mode, size, 128 if mode == "L" else (10, 200, 30, 0)[:len(mode)])
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x011A] = 72.0
        exif[0x0128] = 2
        kw["exif"] = exif
    im.save(path, "JPEG", **kw)
    return path


def test_every_fixture_image_matches_pillow_and_most_take_the_fast_path():
    paths = sorted(p for ext in ("jpg", "jpeg", "png", "JPG", "JPEG", "PNG") for p in FIXTURES.rglob(f"*.{ext}"))
    assert len(paths) > 100
    fast = 0
    for p in paths:
        _same(p)
        fast += _fast_size(p) is not None
    # the real JPEGs (COCO, VOC, Cityscapes, LabelMe...) and PNG masks are plain: the fast path reads them
    assert fast >= 0.9 * len(paths), (fast, len(paths))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_swaps_exactly_as_pillow_decides(tmp_path, orientation):
    p = _jpeg(tmp_path / "o.jpg", orientation=orientation)
    assert _fast_size(p) is not None  # the fast reader decided, not Pillow
    want = (30, 40) if orientation in (5, 6, 7, 8) else (40, 30)
    assert _same(p) == want


@pytest.mark.parametrize("kind", ["progressive", "grey", "cmyk", "optimize", "subsampling", "big-exif",
                                  "icc", "comment", "orientation-0", "orientation-9"])
def test_jpeg_kinds(tmp_path, kind):
    p = tmp_path / "k.jpg"
    if kind == "progressive":
        _jpeg(p, orientation=6, progressive=True)
    elif kind == "grey":
        _jpeg(p, mode="L", orientation=8)
    elif kind == "cmyk":
        _jpeg(p, mode="CMYK", orientation=5)
    elif kind == "optimize":
        _jpeg(p, optimize=True, quality=30)
    elif kind == "subsampling":
        _jpeg(p, subsampling=0, orientation=3)
    elif kind == "big-exif":  # an EXIF block past the first 64 KiB read
        exif = Image.Exif()
        exif[0x0112] = 6
        exif[0x010E] = "x" * 60000  # ImageDescription
        Image.new("RGB", (40, 30)).save(p, exif=exif, comment=b"c" * 30000)
    elif kind == "icc":
        Image.new("RGB", (40, 30)).save(p, icc_profile=b"\0" * 200000)
    elif kind == "comment":
        _jpeg(p, comment=b"hello", orientation=7)
    else:
        _jpeg(p, orientation=int(kind.split("-")[1]))
    assert _same(p) in ((40, 30), (30, 40))
    assert _fast_size(p) is not None


def test_xmp_orientation_is_pillows_decision(tmp_path):
    # EXIF without an orientation + XMP tiff:Orientation: Pillow takes XMP's
    exif = Image.Exif()
    exif[0x010E] = "d"
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    p = tmp_path / "x.jpg"
    Image.new("RGB", (40, 30)).save(p, exif=exif, xmp=xmp)
    assert _same(p) == (30, 40)


@pytest.mark.parametrize("mode,extra", [("RGB", {}), ("RGBA", {}), ("L", {}), ("1", {}), ("I;16", {}),
                                        ("P", {"transparency": 3}), ("L", {"transparency": 7}),
                                        ("RGB", {"transparency": (1, 2, 3)}), ("RGB", {"dpi": (300, 300)})])
def test_png_kinds(tmp_path, mode, extra):
    p = tmp_path / "k.png"
    Image.new(mode, (41, 29)).save(p, **extra)
    assert _same(p) == (41, 29)
    assert _fast_size(p) is not None


def test_png_exif_orientation_and_png_named_jpg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30)).save(tmp_path / "r.png", exif=exif)
    assert _same(tmp_path / "r.png") == (30, 40)  # eXIf chunk: Pillow reads it
    Image.new("RGB", (40, 30)).save(tmp_path / "png.jpg", "PNG")
    assert _same(tmp_path / "png.jpg") == (40, 30)
    Image.new("RGB", (40, 30)).save(tmp_path / "jpeg.png", "JPEG")
    assert _same(tmp_path / "jpeg.png") == (40, 30)
    Image.new("RGB", (40, 30)).save(tmp_path / "g.gif")
    assert _same(tmp_path / "g.gif") == (40, 30)


def test_missing_empty_and_truncated_files_raise_the_same_named_error(tmp_path):
    assert _same(tmp_path / "nope.jpg")[0] == "MissingFileError"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _same(tmp_path / "empty.jpg")[0] == "MalformedFileError"
    for name, fmt in (("t.jpg", "JPEG"), ("t.png", "PNG")):
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.new("RGB", (40, 30)).save(buf, fmt, exif=exif)
        data = buf.getvalue()
        for cut in list(range(0, 200)) + list(range(200, len(data), 37)):
            (tmp_path / name).write_bytes(data[:cut])
            _same(tmp_path / name)


def test_decompression_bomb_headers_keep_pillows_error(tmp_path, monkeypatch):
    p = _jpeg(tmp_path / "b.jpg", size=(400, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 300 // 3)  # past twice the limit: Pillow raises
    out = _same(p)
    assert out[0] == "MalformedFileError" and out[2] == "image_too_large"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 300 - 1)  # past the limit: Pillow warns, reads it
    assert _same(p) == (400, 300)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert _same(p) == (400, 300)


def _mutants(data: bytes, rng: random.Random, n: int, span: int):
    for _ in range(n):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(min(span, len(b)))
            b[i] = rng.choice([0, 1, 2, 5, 6, 8, 0x12, 0x7F, 0xFF, rng.randrange(256)])
        yield bytes(b)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_mutated_headers_match_pillow(tmp_path, fmt):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x011A] = 72.0
    exif[0x0128] = 2
    kw = {"exif": exif, "comment": b"c"} if fmt == "JPEG" else {"transparency": (1, 2, 3), "dpi": (72, 72)}
    Image.new("RGB", (40, 30)).save(buf, fmt, **kw)
    data = buf.getvalue()
    rng = random.Random(14)
    p = tmp_path / ("m.jpg" if fmt == "JPEG" else "m.png")
    sizes = set()
    for m in _mutants(data, rng, 600, 400):
        p.write_bytes(m)
        out = _same(p)
        sizes.add(out if isinstance(out[0], int) else out[0])
    assert (30, 40) in sizes or (40, 30) in sizes
    assert "MalformedFileError" in sizes  # the mutations reach the error paths too


def _png_chunk(cid: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + cid + data + zlib.crc32(data, zlib.crc32(cid)).to_bytes(4, "big")


@pytest.mark.parametrize("trns", [b"\0\1", b"\0\1\0\2\0\3"])
def test_png_short_trns_chunk_is_pillows_error(tmp_path, trns):
    buf = io.BytesIO()
    Image.new("RGB", (41, 29)).save(buf, "PNG")
    data = buf.getvalue()
    i = data.index(b"IDAT") - 4
    p = tmp_path / "t.png"
    p.write_bytes(data[:i] + _png_chunk(b"tRNS", trns) + data[i:])
    out = _same(p)
    assert (out[0] == "MalformedFileError") == (len(trns) < 6)


@pytest.mark.parametrize("resources,ok", [(b"8BIM\x04\x04", False),  # name length past the end: IndexError
                                          (b"8BIM\x04", True),  # code cut: struct.error, Pillow goes on
                                          (b"8BIM\x03\xed\x00\x00" + (16).to_bytes(4, "big") + b"\0" * 16, True)])
def test_jpeg_photoshop_block_is_pillows_decision(tmp_path, resources, ok):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, "JPEG")
    data = buf.getvalue()
    s = b"Photoshop 3.0\x00" + resources
    p = tmp_path / "ps.jpg"
    p.write_bytes(data[:2] + b"\xff\xed" + (len(s) + 2).to_bytes(2, "big") + s + data[2:])
    out = _same(p)
    assert (out == (40, 30)) == ok
