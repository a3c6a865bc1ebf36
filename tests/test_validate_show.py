"""`validate` finds each planted problem and nothing in a clean dataset; `show` draws;
`info` counts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main
from dsprep.records import Category, Dataset, Instances
from dsprep.show import header_height, show
from dsprep.synth import make_shapes_dataset
from dsprep.validate import KINDS, validate_dataset


@pytest.fixture()
def clean(tmp_path) -> Dataset:
    return make_shapes_dataset(tmp_path / "shapes", images=8, seed=1, size=64)


def test_clean_dataset_has_no_problems(clean):
    # every synth category is used at least once with 8 images and seed 1
    assert validate_dataset(clean, workers=1) == []


def _plant(ds: Dataset, tmp_path: Path) -> Dataset:
    recs = ds.records
    root = Path(ds.root)
    (root / recs[0].path).unlink()                                        # missing_image
    (root / recs[1].path).write_bytes(b"not an image")                    # unreadable_image
    recs[2] = recs[2].replace(width=65)                                   # size_mismatch
    i3 = recs[3].instances
    recs[3] = recs[3].replace(instances=Instances(                        # outside, empty, short polygon
        boxes=[[-5, 0, 10, 10], [5, 5, 5, 9], [0, 0, 4, 4]], labels=[1, 1, 99],   # 99: unknown_category
        segmentation=[None, [[0, 0, 1, 1]], {"size": [32, 32], "counts": "PPYo1"}]))  # rle_size_mismatch
    recs[4] = recs[4].replace(instances=Instances())                      # no_annotations
    recs[6] = recs[6].replace(height=0)                                   # missing_size
    recs[5] = recs[5].replace(id=recs[6].id)                              # duplicate_id
    recs[7] = recs[7].replace(path=recs[6].path)                          # duplicate_file
    cats = ds.categories + [Category(42, "unicorn")]                      # unused_category
    del i3
    return Dataset(cats, recs, root=root, format="synth")


def test_validate_finds_each_planted_problem(clean, tmp_path):
    problems = validate_dataset(_plant(clean, tmp_path), workers=1)
    kinds = {p.kind for p in problems}
    expected = {"missing_image", "unreadable_image", "size_mismatch", "box_outside_image", "empty_box",
                "short_polygon", "rle_size_mismatch", "unknown_category", "unused_category", "duplicate_id",
                "duplicate_file", "no_annotations", "missing_size"}
    assert expected <= kinds, expected - kinds
    assert kinds <= set(KINDS)
    msg = {p.kind: str(p) for p in problems}
    assert "images/shapes_00002: annotation says 65x64, image is 64x64" in msg["size_mismatch"]
    assert "label 99 is not a category id" in msg["unknown_category"]
    assert "'unicorn'" in msg["unused_category"]


def test_validate_deep_finds_truncated_jpeg(clean):
    path = Path(clean.root) / clean.records[0].path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert [p.kind for p in validate_dataset(clean, workers=1, deep=False)] == []  # header still fine
    deep = validate_dataset(clean, workers=1, deep=True)
    assert [p.kind for p in deep] == ["unreadable_image"] and clean.records[0].id in deep[0].where


def test_validate_cli_exit_codes_and_json(clean, tmp_path, monkeypatch, capsys):
    import dsprep.formats as formats

    bad = _plant(clean, tmp_path)

    class Fake:
        @staticmethod
        def parse(root, **kw):
            return bad

    monkeypatch.setattr(formats, "get_format", lambda name: Fake)
    assert main(["validate", "voc", str(clean.root), "--json", "--workers", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["duplicate_id"] == 1 and report["problems"] == len(report["items"])
    assert main(["validate", "voc", str(clean.root), "--workers", "1"]) == 1
    text = capsys.readouterr().out
    assert "error: missing_image (1)" in text and "errors, " in text and "fails:" in text


def test_show_draws_boxes_where_the_objects_are(clean, tmp_path):
    out = show(clean, tmp_path / "grid.png", ids=[clean.records[0].id], cell=64)
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape == (64 + header_height(64), 64, 3)  # (pixels on the objects: tests/test_show.py)
    plain = show(clean, tmp_path / "a.png", n=4, seed=3)
    again = show(clean, tmp_path / "b.png", n=4, seed=3)
    assert Path(plain).read_bytes() == Path(again).read_bytes()


def test_show_unknown_id_is_a_clear_error(clean, tmp_path):
    from dsprep.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown record ids"):
        show(clean, tmp_path / "x.png", ids=["nope"])


def test_info_stats_buckets_and_ranges(clean):
    st = clean.stats()
    total = sum(st[s]["objects"] for s in st)
    assert total == clean.num_objects()
    for s in st:
        assert sum(st[s]["size_buckets"].values()) == st[s]["objects"]
        assert st[s]["image_size"] == {"width": [64, 64], "height": [64, 64]}
        assert st[s]["boxes_per_image"]["max"] <= 3


def test_show_augment_draws_what_the_pipeline_feeds(clean, tmp_path):
    a = show(clean, tmp_path / "a.png", n=4, seed=1, augment=True, cell=96)
    b = show(clean, tmp_path / "b.png", n=4, seed=1, augment=True, cell=96)
    plain = show(clean, tmp_path / "p.png", n=4, seed=1, cell=96)
    assert Path(a).read_bytes() == Path(b).read_bytes()          # seeded augmentation
    assert Path(a).read_bytes() != Path(plain).read_bytes()      # and it is applied


def test_show_cli_writes_png(clean, tmp_path, monkeypatch, capsys):
    import dsprep.formats as formats

    class Fake:
        @staticmethod
        def parse(root, **kw):
            return clean

    monkeypatch.setattr(formats, "get_format", lambda name: Fake)
    out = tmp_path / "grid.png"
    assert main(["show", "voc", str(clean.root), "--out", str(out), "-n", "3"]) == 0
    assert Image.open(out).size[0] > 0 and "wrote" in capsys.readouterr().out


def test_mask_only_dataset_does_not_flag_every_category_unused(clean):
    recs = [r.replace(instances=Instances(), mask_path=None, captions=["a picture"]) for r in clean.records]
    ds = Dataset(clean.categories, recs, root=clean.root, format="synth")
    assert [p for p in validate_dataset(ds, workers=1) if p.kind == "unused_category"] == []


def test_validate_finds_voc_mask_colours_outside_the_palette(clean):
    root = Path(clean.root)
    ok = np.zeros((64, 64, 3), np.uint8)
    ok[:8, :8] = (128, 0, 0)  # aeroplane: in the palette
    bad = ok.copy()
    bad[10:12, 10:12] = (1, 2, 3)
    Image.fromarray(ok).save(root / "ok.png")
    Image.fromarray(bad).save(root / "bad.png")
    recs = [clean.records[0].replace(mask_path="ok.png"), clean.records[1].replace(mask_path="bad.png")]
    ds = Dataset(clean.categories, recs, root=root, format="voc")
    found = [p for p in validate_dataset(ds, workers=1) if p.kind == "mask_colour_not_in_palette"]
    assert [p.where for p in found] == [recs[1].id] and "(1, 2, 3)" in found[0].message


def test_show_bad_or_missing_image_names_the_file_exit_2(clean, tmp_path, monkeypatch, capsys):
    """A corrupt or absent image is bad input: a FormatError naming the file (CLI exit 2), no traceback."""
    import dsprep.formats as formats
    from dsprep.errors import MalformedFileError, MissingFileError

    bad, gone = clean.records[0], clean.records[1]
    (clean.root / bad.path).write_bytes(b"not a JPEG at all")
    (clean.root / gone.path).unlink()
    with pytest.raises(MalformedFileError, match=rf"{bad.path}.*not a readable image"):
        show(clean, tmp_path / "x.png", ids=[bad.id])
    with pytest.raises(MissingFileError, match=rf"{gone.path}.*not found"):
        show(clean, tmp_path / "x.png", ids=[gone.id])
    with pytest.raises(MissingFileError, match=rf"{gone.path}.*not found"):
        show(clean, tmp_path / "x.png", ids=[gone.id], augment=True)

    class Fake:
        @staticmethod
        def parse(root, **kw):
            return clean

    monkeypatch.setattr(formats, "get_format", lambda name: Fake)
    for rec in (bad, gone):
        code = main(["show", "voc", str(clean.root), "--out", str(tmp_path / "g.png"), "--ids", rec.id])
        err = capsys.readouterr().err
        assert code == 2 and rec.path in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


def test_validate_deep_checks_every_panoptic_png(fixtures, tmp_path):
    """A PNG other than the first whose ids match nothing in segments_info is found by --deep
    (verify="all"), named as a parse problem, and the bad image is not loaded."""
    from dsprep.validate import validate

    src = fixtures / "panopticapi" / "sample_data"
    root = tmp_path / "pan"
    (root / "annotations").mkdir(parents=True)
    doc = json.loads((src / "panoptic_examples.json").read_text())
    (root / "annotations" / "panoptic_val.json").write_text(json.dumps(doc))
    import shutil

    shutil.copytree(src / "panoptic_examples", root / "annotations" / "panoptic_val")
    shutil.copytree(src / "input_images", root / "val")
    png = root / "annotations" / "panoptic_val" / "000000439180.png"
    rgb = np.asarray(Image.open(png).convert("RGB")).copy()
    rgb[..., 2] = 0
    Image.fromarray(rgb).save(png)
    _, shallow = validate("coco-panoptic", root, workers=1)
    assert not any(p.kind == "parse" for p in shallow)  # only the first PNG is checked by default
    ds, problems = validate("coco-panoptic", root, deep=True, workers=1)
    parse = [p for p in problems if p.kind == "parse"]
    assert len(parse) == 1 and "000000439180.png" in parse[0].where
    assert "do not match segments_info" in parse[0].message
    assert len(ds) == len(doc["images"]) - 1
    code = main(["validate", "coco-panoptic", str(root), "--deep", "--workers", "1"])
    assert code == 1


def test_validate_finds_masks_whose_size_is_not_the_image_size(tmp_path):
    """A 16x8 labelIds for a 32x16 Cityscapes frame, resized VOC SegmentationClass/Object PNGs: found
    from the PNG headers (the loader would fail on them later), nothing reported on clean trees."""
    from dsprep.validate import validate

    from fakes_cityscapes import make_cityscapes
    from fakes_voc import make_voc

    make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2, polygons=False)
    assert validate("cityscapes", tmp_path / "cs", workers=1)[1] == []
    small = sorted((tmp_path / "cs").rglob("*_gtFine_labelIds.png"))[0]
    Image.open(small).resize((16, 8)).save(small)
    problems = validate("cityscapes", tmp_path / "cs", workers=1)[1]
    assert [p.kind for p in problems] == ["mask_size_mismatch"]
    assert small.name in problems[0].message and "mask is 16x8 (width x height), its image " in problems[0].message
    assert problems[0].message.endswith(("is 32x16; expected the same size: a mask covers its image pixel for pixel "
                                         "(fix: regenerate or resize the mask)"))

    voc = make_voc(tmp_path / "voc", n=3, masks=True)
    assert [p for p in validate("voc", voc["root"], workers=1)[1] if p.kind == "mask_size_mismatch"] == []
    for sub in ("SegmentationClass", "SegmentationObject"):
        png = voc["root"] / sub / "2012_000001.png"
        Image.open(png).resize((8, 6)).save(png)
    found = [p for p in validate("voc", voc["root"], workers=1)[1] if p.kind == "mask_size_mismatch"]
    assert len(found) == 2 and all("mask is 8x6 (width x height), its image JPEGImages/2012_000001.jpg is 16x12"
                                   in p.message for p in found)


def test_validate_deep_reports_panoptic_areas_that_differ_from_the_pixels(fixtures, tmp_path):
    """datumaro's a.png stores area 20 for a segment of 25 pixels: kept as stored by the parser,
    reported by validate --deep (every PNG decoded) as area_mismatch naming the PNG and segment.
    Its PNG is 5x5 for a 10x5 image, reported as mask_size_mismatch; padded to 10x5 with void,
    its area is checked."""
    import shutil

    import numpy as np
    from PIL import Image

    from dsprep.validate import validate

    root = fixtures / "datumaro/tests/assets/coco_dataset/coco_panoptic"
    _, problems = validate("coco-panoptic", root, deep=True, workers=1)
    sizes = [p for p in problems if p.kind == "mask_size_mismatch"]
    assert len(sizes) == 1 and sizes[0].where.endswith("panoptic_train/a.png")
    assert "the PNG is 5x5, its image is 10x5" in sizes[0].message
    padded = tmp_path / "coco_panoptic"
    shutil.copytree(root, padded)
    png = padded / "annotations/panoptic_train/a.png"
    rgb = np.zeros((5, 10, 3), np.uint8)
    rgb[:, :5] = np.asarray(Image.open(png).convert("RGB"))
    Image.fromarray(rgb).save(png)
    ds, problems = validate("coco-panoptic", padded, deep=True, workers=1)
    found = [p for p in problems if p.kind == "area_mismatch"]
    assert found and all("segments_info area" in p.message for p in found)
    assert any("a.png" in p.where and "area 20, the PNG has 25 pixels" in p.message for p in found)
    rec = next(r for r in ds if r.instance_mask_path.endswith("/a.png"))
    assert 20.0 in rec.instances.area.tolist()  # the stored area is kept, not recomputed
