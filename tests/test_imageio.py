"""Decoding rules of dsprep.loading.decode: by content, EXIF orientation, modes, draft, bad files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dsprep._io import image_size
from dsprep.errors import MalformedFileError, MissingFileError
from dsprep.loading.decode import ImageSource, decode_image, decode_mask


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 77)], -1).astype(np.uint8)


def test_png_named_jpeg_decodes_by_content(tmp_path):
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


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no black, full magenta+yellow = red
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    out = decode_image(tmp_path / "cmyk.jpg")
    assert out.shape == (8, 8, 3)
    r, g, b = out[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_draft_shrinks_by_powers_of_two_at_the_asked_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(_gradient(64, 48)).save(path, quality=95)
    im, f = ImageSource(path).decode(0.25)
    assert f == 0.25 and im.size == (16, 12)
    im, f = ImageSource(path).decode(0.3)  # 1/2 still leaves >= 0.3 of the size, 1/4 would not
    assert f == 0.5 and im.size == (32, 24)
    im, f = ImageSource(path).decode(0.6)
    assert f == 1.0 and im.size == (64, 48)
    # PNGs have no draft: full size whatever the scale
    Image.fromarray(_gradient(64, 48)).save(tmp_path / "big.png")
    im, f = ImageSource(tmp_path / "big.png").decode(0.125)
    assert f == 1.0 and im.size == (64, 48)


def test_truncated_image_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # header intact, scan data cut
    with pytest.raises(MalformedFileError, match="(?i)cut.jpg.*truncated"):
        decode_image(path)


def test_not_an_image_and_missing_file(tmp_path):
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
