"""The shared segmentation decoders of dsprep.masks, checked against pycocotools' own COCO.annToRLE/annToMask."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from dsprep.errors import InvalidAnnotationError
from dsprep.masks import segmentation_area, segmentation_mask, segmentation_rle

H, W = 24, 32

POLYGONS = [[2.5, 3.0, 20.0, 4.0, 18.0, 15.5, 3.0, 12.0], [22.0, 2.0, 30.0, 2.0, 26.0, 10.0]]


def _random_mask(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((H, W)) > 0.6).astype(np.uint8)


def _compressed() -> dict:
    rle = mask_utils.encode(np.asfortranarray(_random_mask()))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _uncompressed() -> dict:
    flat = _random_mask(1).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [H, W], "counts": counts}


FORMS = {"polygons": POLYGONS, "rle": _compressed(), "uncompressed_rle": _uncompressed()}


def _coco_of(segm) -> tuple[COCO, dict]:
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": segm, "area": 0.0,
           "bbox": [0, 0, 1, 1], "iscrowd": 0}
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": H, "width": W, "file_name": "a.jpg"}],
                    "annotations": [ann], "categories": [{"id": 1, "name": "x"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, ann


@pytest.mark.parametrize("form", sorted(FORMS))
def test_matches_pycocotools_ann_to_mask_and_rle(form):
    segm = FORMS[form]
    coco, ann = _coco_of(json.loads(json.dumps(segm)))
    expected_mask = coco.annToMask(ann)
    expected_rle = coco.annToRLE(ann)
    got = segmentation_mask(segm, H, W)
    assert got.dtype == np.uint8 and got.shape == (H, W)
    np.testing.assert_array_equal(got, expected_mask)
    assert expected_mask.any()
    rle = segmentation_rle(segm, H, W)
    exp_counts = expected_rle["counts"]
    assert rle == {"size": [H, W], "counts": exp_counts.decode("ascii") if isinstance(exp_counts, bytes)
                   else exp_counts}
    assert segmentation_area(segm, H, W) == float(mask_utils.area(
        {"size": expected_rle["size"], "counts": rle["counts"].encode("ascii")}))
    assert segmentation_area(segm, H, W) == float(expected_mask.sum())


@pytest.mark.parametrize("form", sorted(FORMS))
def test_raw_json_bytes_read_as_the_decoded_form(form):
    segm = FORMS[form]
    raw = json.dumps(segm).encode()
    np.testing.assert_array_equal(segmentation_mask(raw, H, W), segmentation_mask(segm, H, W))
    assert segmentation_rle(raw, H, W) == segmentation_rle(segm, H, W)
    assert segmentation_area(raw, H, W) == segmentation_area(segm, H, W)


def test_bytes_counts_and_array_polygons():
    rle = _compressed()
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    np.testing.assert_array_equal(segmentation_mask(as_bytes, H, W), _random_mask())
    # a polygon as an (N, 2) array of points counts its numbers, not its points
    arr = [np.asarray(POLYGONS[1]).reshape(-1, 2)]
    np.testing.assert_array_equal(segmentation_mask(arr, H, W), segmentation_mask([POLYGONS[1]], H, W))


@pytest.mark.parametrize("segm", [None, [], b"null", b"[]"])
def test_no_segmentation(segm):
    assert segmentation_rle(segm, H, W) is None
    assert segmentation_mask(segm, H, W) is None
    assert segmentation_area(segm, H, W) is None


@pytest.mark.parametrize("segm", [[[2.0, 2.0, 7.0, 7.0]], [[5.0, 5.0]], [[]], [[1, 1, 8, 1, 8]]])
def test_polygons_of_fewer_than_three_points_are_dropped(segm):
    # pycocotools' frPyObjects would read the 4-number one as a box, and refuse the 2-number one
    assert segmentation_rle(segm, H, W) is None
    assert segmentation_mask(segm, H, W) is None
    assert segmentation_area(segm, H, W) == 0.0
    mixed = [POLYGONS[0], *segm]
    np.testing.assert_array_equal(segmentation_mask(mixed, H, W), segmentation_mask([POLYGONS[0]], H, W))
    assert segmentation_area(mixed, H, W) == segmentation_area([POLYGONS[0]], H, W)


def test_rle_size_mismatch():
    rle = _compressed()
    with pytest.raises(ValueError, match=r"RLE of size \(24, 32\) on an image of size \(20, 32\)"):
        segmentation_mask(rle, 20, W)
    assert segmentation_mask(rle, 20, W, on_size_mismatch="none") is None
    # an RLE keeps its own size for the RLE and the area
    assert segmentation_rle(rle, 20, W)["size"] == [H, W]
    assert segmentation_area(rle, 20, W) == float(_random_mask().sum())


def test_rle_without_size_takes_the_image_size():
    rle = _compressed()
    np.testing.assert_array_equal(segmentation_mask({"counts": rle["counts"]}, H, W), _random_mask())


@pytest.mark.parametrize("segm, match", [
    ({"size": [H, W]}, "without 'counts'"),
    ({"size": [H, W], "counts": 3}, "'counts' must be a string or a list of ints"),
    (7, "list of polygons or an RLE dict"),
    (b"{not json", "not valid JSON"),
    (b'[[1, 2, "\xff"]]', "not valid JSON"),  # raw text that is not UTF-8
    ({"size": [H, W], "counts": "!!!!"}, "not COCO's compressed form"),
    ({"size": [H, W], "counts": [H * W + 5]}, "sum to"),
    ({"size": [H, W], "counts": [-1, H * W + 1]}, "ints >= 0"),
    ({"size": [10 ** 6, 10 ** 6], "counts": [10 ** 12]}, "decompression-bomb limit"),
    ([[0, 0, "a", 1, 2, 2]], "flat list of numbers"),
    ([[0, 0, 1e12, 0, 1, 1]], "far outside"),
    ([[0, 0, float("inf"), 0, 1, 1]], "not finite"),
])
def test_malformed_entries_raise_a_named_error(segm, match):
    # a named error (a ValueError too) before pycocotools sees the entry: pycocotools would crash,
    # write past its buffer (counts past the mask) or allocate gigabytes (a vertex at 1e12)
    with pytest.raises(InvalidAnnotationError, match=match) as info:
        segmentation_mask(segm, H, W, where="x.json: object 3")
    assert info.value.where == "x.json: object 3"


def test_area_with_unknown_image_size_uses_a_canvas_holding_the_polygons():
    poly = [[10.0, 10.0, 50.0, 10.0, 50.0, 30.0, 10.0, 30.0]]
    assert segmentation_area(poly, 0, 0) == segmentation_area(poly, 100, 100) == 800.0


def test_voc_object_masks_match_per_value_encoding(tmp_path):
    from PIL import Image

    from dsprep.formats import voc

    rng = np.random.default_rng(3)
    obj = rng.choice([0, 1, 2, 3, 255], size=(H, W)).astype(np.uint8)
    cls = rng.choice([0, 5, 7, 255], size=(H, W)).astype(np.uint8)
    cls[obj == 3] = 0  # object 3 has no class pixel: class 0
    for sub, arr in (("SegmentationObject", obj), ("SegmentationClass", cls)):
        (tmp_path / sub).mkdir()
        Image.fromarray(arr, mode="L").save(tmp_path / sub / "a.png")
    got = voc._mask_rles(tmp_path, "a", "SegmentationObject/a.png")
    assert sorted(got) == [1, 2, 3]
    for k, (rle, box, c) in got.items():
        m = obj == k
        ys, xs = np.nonzero(m)
        assert box == [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        assert rle["counts"] == mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        vals = cls[m]
        vals = vals[(vals != 0) & (vals != 255)]
        assert c == (int(np.bincount(vals).argmax()) if vals.size else 0)
    assert got[3][2] == 0


# --------------------------------------------------------------------------- label PNGs

def _save(path, arr, mode=None, palette=False):
    from PIL import Image

    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette:
        im.putpalette([255 - (i % 256) for i in range(768)])
    im.save(path)
    return path


def test_read_label_png_keeps_stored_values(tmp_path):
    from dsprep.eval.segmentation import read_label_image
    from dsprep.loading.decode import decode_mask
    from dsprep.masks import read_id_png, read_label_png

    ids = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 60 + 7  # up to 46087: needs 16 bits
    grey = (np.arange(H * W) % 256).astype(np.uint8).reshape(H, W)
    p16 = _save(tmp_path / "i16.png", ids)
    pl = _save(tmp_path / "l.png", grey, "L")
    pp = _save(tmp_path / "p.png", grey, "P", palette=True)
    p1 = _save(tmp_path / "one.png", grey > 100)
    got = read_label_png(p16)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ids)
    for path in (pl, pp):  # a palette PNG gives its indices, not its colours
        got = read_label_png(path)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, grey)
    got = read_label_png(p1)
    assert got.dtype == np.uint8 and set(np.unique(got).tolist()) == {0, 1}
    np.testing.assert_array_equal(got, (grey > 100).astype(np.uint8))
    # the other readers are this one: decode_mask widens 16-bit values to int32
    assert decode_mask(p16).dtype == np.int32
    np.testing.assert_array_equal(decode_mask(p16), ids)
    np.testing.assert_array_equal(decode_mask(pp), grey)
    np.testing.assert_array_equal(read_label_image(p16), ids)
    np.testing.assert_array_equal(read_id_png(p16), ids)


def test_read_label_png_errors_name_the_file(tmp_path):
    from dsprep.errors import MalformedFileError, MissingFileError
    from dsprep.masks import read_id_png, read_label_png

    rgb = _save(tmp_path / "colour.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MalformedFileError, match=r"colour\.png.*single-channel label PNG.*found mode RGB"):
        read_label_png(rgb)
    with pytest.raises(MalformedFileError, match=r"colour\.png.*single-channel"):
        read_id_png(rgb)
    with pytest.raises(MissingFileError, match=r"nothere\.png.*instance map not found"):
        read_label_png(tmp_path / "nothere.png", "instance map")
    noise = np.random.default_rng(0).integers(0, 65535, (64, 64), dtype=np.uint16)
    good = _save(tmp_path / "good.png", noise)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(MalformedFileError, match=r"cut\.png.*truncated or corrupt"):
        read_label_png(cut)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(MalformedFileError, match=r"junk\.png"):
        read_label_png(junk)
