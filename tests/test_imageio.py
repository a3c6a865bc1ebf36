"""Decoding rules of dsprep.loading.decode: by content, EXIF orientation, modes, reduced decoding, the\nfast JPEG path against Pillow, bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dsprep._io import image_size
from dsprep.errors import MalformedFileError, MissingFileError
from dsprep.loading.decode import ImageSource, decode_image, decode_mask


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 77)], -1).astype(np.uint8)


def test_png_named_jpeg_decodes_by_content(tmp_path, decoder):
    arr = _gradient(16, 12)
    path = tmp_path / "n01440764_1.JPEG"
    Image.fromarray(arr).save(path, format="PNG")
    out = decode_image(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)  # PNG is lossless: exact pixels


def test_unicode_file_name(tmp_path):
    path = tmp_path / "chât_日本.png"
    Image.fromarray(_gradient(8, 8)).save(path)
    assert decode_image(path).shape == (8, 8, 3)


@pytest.mark.parametrize("orientation,expect", [
    (1, lambda a: a),
    (3, lambda a: a[::-1, ::-1]),
    (6, lambda a: np.rot90(a, k=-1)),  # "rotate 90 CW to view"
    (8, lambda a: np.rot90(a, k=1)),
])
def test_exif_orientation_applied(tmp_path, orientation, expect):
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :4] = 255  # a bright band on the left of the stored pixels
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    im.save(path, exif=exif.tobytes())
    src = ImageSource(path)
    out = decode_image(path)
    want = expect(arr)
    assert out.shape == want.shape
    assert src.size == (out.shape[1], out.shape[0]) == image_size(path)
    np.testing.assert_array_equal(out, want)


def test_modes_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    cases = {
        "L.png": Image.fromarray(grey, "L"),
        "LA.png": Image.fromarray(np.stack([grey, np.full_like(grey, 10)], -1), "LA"),
        "RGBA.png": Image.fromarray(np.stack([grey, grey, grey, np.zeros_like(grey)], -1), "RGBA"),
    }
    pal = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4, "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    cases["P.png"] = pal
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = decode_image(tmp_path / name)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8, name
        if name != "P.png":
            np.testing.assert_array_equal(out[..., 0], grey, err_msg=name)
    # palette: colours, not indices
    out = decode_image(tmp_path / "P.png")
    assert out[0, 1].tolist() == [255, 0, 0] and out[0, 2].tolist() == [0, 255, 0]


def test_sixteen_bit_grey_scaled_to_eight(tmp_path):
    vals = np.array([[0, 0x1234], [0x8000, 0xFFFF]], np.uint16)
    Image.fromarray(vals).save(tmp_path / "g16.png")
    out = decode_image(tmp_path / "g16.png")
    assert out[..., 0].tolist() == [[0, 0x12], [0x80, 0xFF]]
    assert (out[..., 0] == out[..., 2]).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path, decoder):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no black, full magenta+yellow = red
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    out = decode_image(tmp_path / "cmyk.jpg")
    assert out.shape == (8, 8, 3)
    r, g, b = out[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


# --------------------------------------------------------------------------- the two JPEG decoders

def _photo(w: int, h: int) -> np.ndarray:
    """Smooth colour gradients with some texture: compresses like a photo, chroma varies."""
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(0).integers(-20, 21, (h, w, 3))
    return (np.stack([x * 255 // w, y * 255 // h, (x + 2 * y) % 256], -1) + noise).clip(0, 255).astype(np.uint8)


def _jpeg(path, arr: np.ndarray, orientation: int = 0, **save) -> str:
    im = Image.fromarray(arr)
    if orientation:
        exif = im.getexif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
    im.save(path, "JPEG", **{"quality": 90, **save})
    return str(path)


def _pillow_reference(path, reduce: int = 1) -> np.ndarray:
    """What Pillow alone gives: draft at 1/reduce, EXIF transpose, convert("RGB")."""
    im = Image.open(path)
    if reduce > 1:
        w, h = im.size
        assert im.draft(None, (w // reduce, h // reduce))[1][2] == w / reduce  # exactly 1/reduce
    return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _kinds(tmp_path, fixtures) -> dict:
    arr = _photo(251, 190)  # odd sizes: partial blocks and partial reduced pixels
    return {
        "4:2:0": _jpeg(tmp_path / "420.jpg", arr),
        "4:2:2": _jpeg(tmp_path / "422.jpg", arr, subsampling=1),
        "4:4:4": _jpeg(tmp_path / "444.jpg", arr, subsampling=0),
        "progressive": _jpeg(tmp_path / "prog.jpg", arr, progressive=True),
        "grey (Imagenette)": str(fixtures / "imagenette/train/n02102040/n02102040_1408.JPEG"),
        "EXIF rotated": _jpeg(tmp_path / "rot.jpg", arr, orientation=6),
    }


def test_fast_path_takes_plain_jpegs_and_leaves_the_rest_to_pillow(tmp_path, fixtures, monkeypatch):
    kinds = _kinds(tmp_path, fixtures)
    for name, path in kinds.items():
        assert ImageSource(path).fast, name
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(_photo(16, 12)).save(tmp_path / "png.JPEG", format="PNG")
    assert not ImageSource(tmp_path / "cmyk.jpg").fast  # Pillow's CMYK -> RGB is the reference
    assert not ImageSource(tmp_path / "png.JPEG").fast  # by content, not by name
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 251 * 190 - 1)
    assert not ImageSource(kinds["4:2:0"]).fast  # past the decompression-bomb limit: Pillow's verdict
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 251 * 190)
    assert ImageSource(kinds["4:2:0"]).fast


def test_fast_path_opens_with_pillow_only_jpegs_with_exif_or_xmp(tmp_path, fixtures, monkeypatch):
    """Pillow reads the orientation of a JPEG with an EXIF or XMP segment; a plain JPEG (the
    common case: ImageNet's) never goes through Pillow on the fast path."""
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    kinds = _kinds(tmp_path, fixtures)
    xmp = Image.fromarray(_photo(32, 24))
    xmp.save(tmp_path / "xmp.jpg", xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6'
                                         b"</tiff:Orientation></x:xmpmeta>")
    for name in ("4:2:0", "4:2:2", "4:4:4", "progressive", "grey (Imagenette)"):
        ImageSource(kinds[name]).decode()
    assert opened == []
    for path, orientation in ((kinds["EXIF rotated"], 6), (tmp_path / "xmp.jpg", 1)):  # XMP's is not read (_io)
        src = ImageSource(path)
        assert src.fast and len(opened) == 1 and src.orientation == orientation
        opened.clear()


@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_fast_and_pillow_give_the_same_pixels(tmp_path, fixtures, reduce):
    """Bit-exact: both are libjpeg-turbo with the accurate integer IDCT and smooth chroma
    upsampling (also in the DCT-scaled decode), so the tolerance is 0. The likely mistakes
    differ by more: the fast IDCT by up to 3 levels, the fast upsampling by up to 2."""
    for name, path in _kinds(tmp_path, fixtures).items():
        src = ImageSource(path)
        assert src.fast and src.reduction(1 / reduce) == reduce, name
        got = src.decode(reduce)
        want = _pillow_reference(path, reduce)
        w, h = src.size
        assert got.shape == want.shape == (-(-h // reduce), -(-w // reduce), 3), name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_jpegs_every_value(tmp_path, decoder, orientation):
    arr = _photo(37, 20)  # the reference is Pillow's own ImageOps.exif_transpose
    path = _jpeg(tmp_path / "o.jpg", arr, orientation=orientation)
    src = ImageSource(path)
    assert src.fast == (decoder == "fast") and src.orientation == orientation
    out = src.decode()
    want = _pillow_reference(path)
    assert src.size == (want.shape[1], want.shape[0]) == image_size(path)
    np.testing.assert_array_equal(out, want)
    for s in (2, 4):
        np.testing.assert_array_equal(ImageSource(path).decode(s), _pillow_reference(path, s), err_msg=f"1/{s}")


def test_reduction_is_exactly_the_largest_that_keeps_the_output_size(tmp_path, decoder):
    path = _jpeg(tmp_path / "a.jpg", _photo(251, 190))
    src = ImageSource(path)
    got = {scale: src.reduction(scale) for scale in (1.0, 0.51, 0.5, 0.3, 0.25, 0.2, 0.125, 0.01)}
    assert got == {1.0: 1, 0.51: 1, 0.5: 2, 0.3: 2, 0.25: 4, 0.2: 4, 0.125: 8, 0.01: 8}
    assert src.decode(8).shape == (24, 32, 3)  # ceil(190 / 8), ceil(251 / 8)
    # not a JPEG, or too small to reduce: never
    Image.fromarray(_photo(64, 48)).save(tmp_path / "big.png")
    assert ImageSource(tmp_path / "big.png").reduction(0.01) == 1
    assert ImageSource(_jpeg(tmp_path / "thin.jpg", _photo(7, 64))).reduction(0.01) == 1
    with pytest.raises(ValueError, match="cannot decode at 1/2"):
        ImageSource(tmp_path / "big.png").decode(2)


def test_cmyk_jpeg_reduced_decode_by_pillow(tmp_path, decoder):
    cmyk = Image.new("CMYK", (40, 24), (0, 255, 255, 0))
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    src = ImageSource(tmp_path / "cmyk.jpg")
    assert not src.fast and src.reduction(0.25) == 4
    out = src.decode(4)
    assert out.shape == (6, 10, 3)
    np.testing.assert_array_equal(out, _pillow_reference(tmp_path / "cmyk.jpg", 4))


def test_jpeg_with_a_libjpeg_warning_decodes_as_pillow_does(tmp_path, decoder):
    """Bytes between two segments: libjpeg-turbo warns ("extraneous bytes before marker"), the
    fast path refuses it and hands it to Pillow, which decodes it as it always has."""
    data = Path(_jpeg(tmp_path / "ok.jpg", _photo(64, 48))).read_bytes()
    sos = data.index(b"\xff\xda")
    (tmp_path / "odd.jpg").write_bytes(data[:sos] + b"\x00\x00" + data[sos:])
    np.testing.assert_array_equal(decode_image(tmp_path / "odd.jpg"), _pillow_reference(tmp_path / "odd.jpg"))


def test_truncated_image_names_the_file(tmp_path, decoder):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # header intact, scan data cut
    with pytest.raises(MalformedFileError, match="(?i)cut.jpg.*truncated"):
        decode_image(path)


def test_not_an_image_and_missing_file(tmp_path, decoder):
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(MalformedFileError, match="notes.jpg"):
        decode_image(tmp_path / "notes.jpg")
    with pytest.raises(MissingFileError, match="absent.jpg"):
        decode_image(tmp_path / "absent.jpg")


def test_decode_mask_keeps_values(tmp_path):
    idx = np.array([[0, 1, 15], [20, 255, 0]], np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette(list(np.random.default_rng(0).integers(0, 255, 768)))  # colours unrelated to indices
    pal.save(tmp_path / "voc.png")
    m = decode_mask(tmp_path / "voc.png")
    assert m.dtype == np.uint8
    np.testing.assert_array_equal(m, idx)

    Image.fromarray(idx, "L").save(tmp_path / "labelIds.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "labelIds.png"), idx)

    inst = np.array([[0, 26000], [26001, 7]], np.uint16)
    Image.fromarray(inst).save(tmp_path / "instanceIds.png")
    m16 = decode_mask(tmp_path / "instanceIds.png")
    assert m16.dtype == np.int32 and m16.tolist() == [[0, 26000], [26001, 7]]


def test_decode_mask_refuses_colour_masks(tmp_path):
    Image.fromarray(_gradient(4, 4)).save(tmp_path / "color.png")
    with pytest.raises(MalformedFileError, match="color.png.*single-channel.*found mode RGB"):
        decode_mask(tmp_path / "color.png")
