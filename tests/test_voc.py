"""PASCAL VOC: parse, write, round trips, bad input, and the real third-party fixtures."""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from dsprep.errors import InvalidAnnotationError, MalformedFileError, MissingFileError
from dsprep.formats import voc
from dsprep.records import Category, Dataset, Instances, Record

from fakes_voc import VOC_CLASSES, make_voc

DATUMARO = "datumaro/tests/assets/voc_dataset"
LABELME = "labelme/examples"


def _diff(a: Dataset, b: Dataset) -> list[str]:
    """Human-readable differences between the records of two datasets (empty = equal)."""
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)} vs {len(b)} records")
    for ra, rb in zip(a.records, b.records):
        for f in dataclasses.fields(ra):
            if getattr(ra, f.name) != getattr(rb, f.name):
                out.append(f"{ra.id}.{f.name}: {getattr(ra, f.name)!r} != {getattr(rb, f.name)!r}")
    return out


def _roundtrip(ds: Dataset, tmp_path: Path, images: str = "copy", **parse_kw) -> tuple[Dataset, dict]:
    out = tmp_path / "out"
    out.mkdir()
    report = voc.write(ds, out, images=images)
    return voc.parse(out, workers=1, **parse_kw), report


# --------------------------------------------------------------------------- generated trees

def test_detect(tmp_path):
    info = make_voc(tmp_path, n=2)
    assert voc.detect(info["root"])
    assert voc.detect(tmp_path)  # a VOCdevkit-like folder holding exactly one VOC20XX
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not voc.detect(empty)


def test_parse_counts_boxes_categories(tmp_path):
    info = make_voc(tmp_path, n=5)
    ds = voc.parse(info["root"], workers=1)
    assert len(ds) == info["images"] and ds.num_objects() == info["objects"]
    assert {k: len(v) for k, v in ds.splits.items()} == info["splits"]
    assert [(c.id, c.name) for c in ds.categories] == [(i + 1, n) for i, n in enumerate(VOC_CLASSES)]
    names = {c.id: c.name for c in ds.categories}
    for r in ds.records:
        assert r.instances.boxes.tolist() == info["boxes"][r.id]
        assert [names[i] for i in r.instances.labels.tolist()] == info["names"][r.id]
        assert (r.width, r.height) == (16, 12)
        assert r.path == r.id + ".jpg"
    assert ds.records[1].instances.difficult.tolist() == [True, False]  # object 0 of odd images
    assert ds.records[2].instances.difficult.tolist() == [False, False, False]


def test_workers_give_identical_records(tmp_path):
    info = make_voc(tmp_path, n=150, images=False, extra_class="unicorn")
    one = voc.parse(info["root"], workers=1)
    two = voc.parse(info["root"], workers=2)
    assert not _diff(one, two)
    assert [c.name for c in one.categories] == [c.name for c in two.categories]
    assert one.splits == two.splits


def test_split_argument_and_unknown_split(tmp_path):
    info = make_voc(tmp_path, n=5)
    ds = voc.parse(info["root"], split="val", workers=1)
    assert len(ds) == info["splits"]["val"] and {r.split for r in ds.records} == {"val"}
    assert list(ds.splits) == ["val"]
    with pytest.raises(Exception, match="Did you mean 'val'"):
        voc.parse(info["root"], split="vall", workers=1)


def test_split_argument_without_split_lists(tmp_path):
    info = make_voc(tmp_path, n=2, splits={})
    with pytest.raises(Exception, match="has no ImageSets/Main/<split>.txt lists"):
        voc.parse(info["root"], split="train", workers=1)


def test_extra_class_is_appended(tmp_path):
    info = make_voc(tmp_path, n=3, extra_class="unicorn")
    ds = voc.parse(info["root"], workers=1)
    assert ds.categories[20] == Category(21, "unicorn")
    assert ds.records[0].instances.labels[0] == 21


def test_no_split_lists_gives_no_splits(tmp_path):
    info = make_voc(tmp_path, n=3, splits={})
    ds = voc.parse(info["root"], workers=1)
    assert ds.splits == {} and all(r.split is None for r in ds.records)
    out, _ = _roundtrip(ds, tmp_path, images="none")
    assert not (out.root / "ImageSets" / "Main").exists() and out.splits == {}


def test_roundtrip_generated_with_masks(tmp_path):
    info = make_voc(tmp_path, n=4, masks=True)
    ds = voc.parse(info["root"], workers=1, segmentation=True)
    assert all(r.mask_path and r.instance_mask_path for r in ds.records)
    assert all(s is not None for r in ds.records for s in r.instances.segmentation)
    back, report = _roundtrip(ds, tmp_path, segmentation=True)
    assert not _diff(ds, back)
    assert report["masks"] == 4 and report["lost"] == {}
    # the class mask is copied as a palette PNG and keeps its 255 border
    cls = Image.open(back.root / "SegmentationClass" / "2012_000000.png")
    assert cls.mode == "P" and np.array(cls)[0].tolist() == [255] * 16
    assert (back.root / "ImageSets/Segmentation/train.txt").read_text().split() == [
        f"2012_{i:06d}" for i in range(4)]


def test_convert_to_coco_shares_ids_across_split_files(tmp_path):
    """trainval = train + val: an image and its objects have the same ids in every file (ids
    unique within each); objects with a SegmentationObject mask carry it and its pixel area,
    objects of images without one are bbox-only."""
    import json

    from pycocotools.coco import COCO

    from dsprep.conversion import convert

    info = make_voc(tmp_path, n=6, masks=True,
                    splits={"train": [0, 2, 4], "val": [1, 3, 5], "trainval": list(range(6))})
    for stem in ("2012_000001", "2012_000004"):
        (info["root"] / "SegmentationObject" / f"{stem}.png").unlink()
    out = tmp_path / "coco"
    convert("voc", info["root"], "coco", out, images="none", workers=1)
    seen = {}
    for split in ("train", "val", "trainval"):
        path = out / f"annotations/instances_{split}.json"
        doc = json.loads(path.read_text())
        names = {im["id"]: im["file_name"] for im in doc["images"]}
        ann_ids = [a["id"] for a in doc["annotations"]]
        assert len(names) == len(doc["images"]) and len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
        seen[split] = {(names[a["image_id"]], a["image_id"], a["id"], tuple(a["bbox"]), a["difficult"])
                       for a in doc["annotations"]}
    assert seen["train"] | seen["val"] == seen["trainval"] and not seen["train"] & seen["val"]
    assert len(seen["trainval"]) == info["objects"]
    gt = COCO(str(out / "annotations/instances_trainval.json"))
    for a in gt.loadAnns(gt.getAnnIds()):
        name = gt.imgs[a["image_id"]]["file_name"]
        if name in ("2012_000001.jpg", "2012_000004.jpg"):
            assert a["segmentation"] == [] and a["area"] == a["bbox"][2] * a["bbox"][3]
        else:
            assert a["segmentation"] and a["area"] == gt.annToMask(a).sum() > 0


def test_convert_to_coco_writes_images_no_split_list_names(tmp_path, caplog):
    """VOC2012's Annotations hold 17,125 XMLs, Main/trainval lists 11,540: the rest are not dropped."""
    import json
    import logging

    from dsprep.conversion import convert

    info = make_voc(tmp_path, n=5, splits={"train": [0, 1], "val": [2]})
    with caplog.at_level(logging.WARNING):
        report = convert("voc", info["root"], "coco", tmp_path / "coco", images="none", workers=1)
    assert "2 image(s) in no split" in caplog.text
    files = {p.name: json.loads(p.read_text()) for p in (tmp_path / "coco" / "annotations").glob("*.json")}
    assert sorted(files) == ["instances_default.json", "instances_train.json", "instances_val.json"]
    assert sum(len(d["images"]) for d in files.values()) == 5 == report["images"]
    assert sum(len(d["annotations"]) for d in files.values()) == info["objects"]


def test_class_lists_devkit_format(tmp_path):
    info = make_voc(tmp_path, n=4)
    ds = voc.parse(info["root"], workers=1)
    out, _ = _roundtrip(ds, tmp_path, images="none")
    # image 1 (val) has object 0 (bicycle) difficult and nothing else of that class -> 0
    lines = (out.root / "ImageSets/Main/bicycle_val.txt").read_text().splitlines()
    assert lines[0] == "2012_000001  0"
    assert (out.root / "ImageSets/Main/aeroplane_train.txt").read_text().splitlines()[0] == "2012_000000  1"
    assert "2012_000002 -1" in (out.root / "ImageSets/Main/aeroplane_train.txt").read_text().splitlines()
    assert out.info["voc_class_list_mismatches"] == 0


def test_decimal_coordinates_survive(tmp_path):
    info = make_voc(tmp_path, n=1)
    xml = info["root"] / "Annotations/2012_000000.xml"
    text = xml.read_text().replace("<xmin>1</xmin>", "<xmin>1.5</xmin>").replace(
        "<xmax>6</xmax>", "<xmax>6.384615384615385</xmax>")
    xml.write_text(text)
    ds = voc.parse(info["root"], workers=1)
    assert ds.records[0].instances.boxes[0].tolist() == [0.5, 0.0, 6.384615384615385, 5.0]
    out, _ = _roundtrip(ds, tmp_path, images="none")
    written = (out.root / "Annotations/2012_000000.xml").read_text()
    assert "<xmin>1.5</xmin>" in written and "<xmax>6.384615384615385</xmax>" in written
    assert "<ymin>1</ymin>" in written  # integral values are written as integers


def _foreign_dataset(root: Path) -> Dataset:
    """A COCO-like dataset: ids with gaps, polygons, a crowd RLE, keypoints, a name clash."""
    from pycocotools import mask as mask_utils

    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for sub in ("a", "b"):
        Image.new("RGB", (20, 10)).save(root / sub / "0001.jpg")
    m = np.zeros((10, 20), np.uint8, order="F")
    m[2:6, 10:18] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle = {"size": [10, 20], "counts": rle["counts"].decode()}
    inst_a = Instances(boxes=[[1.5, 1.0, 8.25, 9.0], [10, 2, 18, 6]], labels=[1, 90], iscrowd=[False, True],
                       ids=[7, 8], area=[40.0, 32.0],
                       segmentation=[[[1.5, 1, 8.25, 1, 8.25, 9, 1.5, 9]], rle],
                       keypoints=np.array([[[2, 2, 2]], [[0, 0, 0]]], float))
    inst_b = Instances(boxes=[[0, 0, 20, 10]], labels=[3])
    recs = [Record("a/0001", "a/0001.jpg", 20, 10, "val", instances=inst_a, source_id=1, captions=["x"]),
            Record("b/0001", "b/0001.jpg", 20, 10, "val", instances=inst_b, source_id=2)]
    cats = [Category(1, "person"), Category(3, "car"), Category(90, "toothbrush")]
    return Dataset(cats, recs, root=root, format="coco")


def test_write_foreign_dataset_keeps_boxes_names_crowd(tmp_path):
    ds = _foreign_dataset(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    report = voc.write(ds, out, images="link")
    assert report["renamed"] == 2  # two 0001.jpg in different folders
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == ["a_0001.xml", "b_0001.xml"]
    assert report["lost"] == {"keypoints (objects)": 1, "captions": 1, "annotation ids": 2,
                              "stored areas": 2, "source image ids": 2,
                              # car 3 and toothbrush 90 come back as 2 and 3: VOC holds names
                              "category ids (VOC stores names; re-read ids are 1..N in category order)": 2,
                              "image file names (shared with another image, or not a VOC name: renamed)": 2}
    back = voc.parse(out, workers=1)
    names = {c.id: c.name for c in back.categories}
    assert [c.name for c in back.categories] == ["person", "car", "toothbrush"]  # labelmap.txt order
    a = back.records[0].instances
    assert a.boxes.tolist() == [[1.5, 1.0, 8.25, 9.0], [10.0, 2.0, 18.0, 6.0]]
    assert [names[i] for i in a.labels.tolist()] == ["person", "toothbrush"]
    assert a.iscrowd.tolist() == [False, True]
    assert back.splits == {"val": ["JPEGImages/a_0001", "JPEGImages/b_0001"]}
    xml = (out / "Annotations/a_0001.xml").read_text()
    assert "<pose>Unspecified</pose>" in xml and "<iscrowd>1</iscrowd>" in xml
    # polygons and RLE became palette masks: object k = value k+1, class = category position + 1
    obj = np.array(Image.open(out / "SegmentationObject/a_0001.png"))
    cls = Image.open(out / "SegmentationClass/a_0001.png")
    assert cls.mode == "P" and cls.getpalette()[255 * 3:256 * 3] == [224, 224, 192]
    assert obj[3, 12] == 2 and np.array(cls)[3, 12] == 3 and obj[4, 4] == 1 and obj[0, 19] == 0
    assert (out / "ImageSets/Segmentation/val.txt").read_text().split() == ["a_0001"]


def test_boxes_invert_exactly_across_binades(tmp_path):
    # x + 1 then - 1 in float is not exact when it crosses a power of two (127.62 -> 128.62)
    # or starts below 1 (0.62 -> 1.62 -> 0.6200000000000001); the writer and parser do it in decimal.
    tricky = [0.62, 0.96, 127.62, 1.9999999999999998, 255.71203455771783, 0.1, 63.99999999999999, 3.0]
    boxes = [[x, y, x + 5.25, y + 7.0] for x, y in zip(tricky, reversed(tricky))]
    ds = Dataset([Category(1, "cat")], [Record("a", "a.jpg", 300, 300, instances=Instances(
        boxes=boxes, labels=[1] * len(boxes)))], format="coco")
    out = tmp_path / "out"
    out.mkdir()
    voc.write(ds, out, images="none")
    assert voc.parse(out, workers=1).records[0].instances.boxes.tolist() == boxes
    assert "<xmin>1.62</xmin>" in (out / "Annotations/a.xml").read_text()


def test_writer_missing_image(tmp_path):
    ds = _foreign_dataset(tmp_path / "src")
    (tmp_path / "src/b/0001.jpg").unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MissingFileError, match=r"b/0001\.jpg.*not found"):
        voc.write(ds, out, images="copy")
    out2 = tmp_path / "out2"
    out2.mkdir()
    assert voc.write(ds, out2, images="copy", on_error="warn")["missing_images"] == 1
    out3 = tmp_path / "out3"
    out3.mkdir()
    assert voc.write(ds, out3, images="none")["missing_images"] == 0


# --------------------------------------------------------------------------- bad input

_OBJ = "<object><name>cat</name><bndbox><xmin>{}</xmin><ymin>2</ymin><xmax>{}</xmax><ymax>5</ymax></bndbox></object>"
_SIZE = "<size><width>16</width><height>12</height><depth>3</depth></size>"


@pytest.mark.parametrize("xml, error, match", [
    # not XML at all: the line of the syntax error is named
    ("<annotation>\n<size>\n</annotation>", MalformedFileError, r"bad\.xml:3: not well-formed"),
    # not a VOC annotation
    ("<records/>", MalformedFileError, r"bad\.xml:1: expected root element <annotation>"),
    # no <size> and no image to read it from
    ("<annotation>\n" + _OBJ.format(1, 4) + "</annotation>", InvalidAnnotationError, r"bad\.xml: no <size>"),
    # non-numeric coordinate, with its line
    ("<annotation>" + _SIZE + "\n\n" + _OBJ.format("ten", 4) + "</annotation>", InvalidAnnotationError,
     r"bad\.xml:3: <xmin> must be a number, found 'ten'"),
    # xmax < xmin
    ("<annotation>" + _SIZE + "\n" + _OBJ.format(9, 4) + "</annotation>", InvalidAnnotationError,
     r"bad\.xml:2: <bndbox> has xmax=4 < xmin=9"),
    # a box outside the 16x12 image (1 px tolerance: xmax 17 would pass)
    ("<annotation>" + _SIZE + _OBJ.format(1, 18) + "</annotation>", InvalidAnnotationError,
     r"bad\.xml: object 1 \('cat'\) .*outside the 16x12 image"),
    # an object without a name
    ("<annotation>" + _SIZE + "\n<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
     "</bndbox></object></annotation>", InvalidAnnotationError, r"bad\.xml:2: <object> has no <name>"),
    # an object without a box
    ("<annotation>" + _SIZE + "<object><name>cat</name></object></annotation>", InvalidAnnotationError,
     r"<object> 'cat' has no <bndbox>"),
])
def test_bad_input(tmp_path, xml, error, match):
    info = make_voc(tmp_path, n=2, images=False)
    (info["root"] / "Annotations/bad.xml").write_text(xml)
    with pytest.raises(error, match=match):
        voc.parse(info["root"], workers=1)
    # warn mode: the bad object (or file) is skipped and counted, the rest is read
    ds = voc.parse(info["root"], workers=1, on_error="warn")
    assert ds.info["skipped"] == 1
    assert ds.num_objects() == info["objects"]


def test_box_tolerance_and_full_image_box(tmp_path):
    info = make_voc(tmp_path, n=1, images=False)
    xml = "<annotation>" + _SIZE + _OBJ.format(1, 16).replace("<ymax>5", "<ymax>12") + \
          _OBJ.format(0, 17) + "</annotation>"
    (info["root"] / "Annotations/edge.xml").write_text(xml)
    ds = voc.parse(info["root"], workers=1)
    edge = [r for r in ds.records if r.id.endswith("edge")][0]
    assert edge.instances.boxes.tolist() == [[0.0, 1.0, 16.0, 12.0], [-1.0, 1.0, 17.0, 5.0]]


def test_split_id_without_xml_or_image(tmp_path):
    info = make_voc(tmp_path, n=2)
    (info["root"] / "ImageSets/Main/val.txt").write_text("2012_000001\n2012_000777\n")
    with pytest.raises(MissingFileError, match=r"JPEGImages/2012_000777\.\*: listed in ImageSets but has neither"):
        voc.parse(info["root"], workers=1)
    ds = voc.parse(info["root"], workers=1, on_error="warn")
    assert ds.info["skipped"] == 1 and ds.splits["val"] == ["JPEGImages/2012_000001"]


def test_rgb_mask_outside_palette(tmp_path):
    info = make_voc(tmp_path, n=1, masks=True)
    Image.new("RGB", (16, 12), (1, 2, 3)).save(info["root"] / "SegmentationObject/2012_000000.png")
    with pytest.raises(InvalidAnnotationError, match=r"2012_000000\.png: RGB mask has colours outside the VOC palette"):
        voc.parse(info["root"], workers=1, segmentation=True)


def test_missing_size_read_from_image_header(tmp_path):
    info = make_voc(tmp_path, n=1)
    xml = info["root"] / "Annotations/2012_000000.xml"
    xml.write_text(re.sub(r"<size>.*</size>", "", xml.read_text()))
    r = voc.parse(info["root"], workers=1).records[0]
    assert (r.width, r.height) == (16, 12)


# --------------------------------------------------------------------------- real fixtures

def _leaves(path: Path) -> Counter:
    """(tag, value) of every leaf element, numbers normalised, ``difficult`` 0 or empty dropped
    (the writer always writes it; a missing one means 0)."""
    out: Counter = Counter()
    for el in etree.parse(str(path)).getroot().iter():
        if not isinstance(el.tag, str) or len(el):
            continue
        t = (el.text or "").strip()
        try:
            t = float(t)
        except ValueError:
            pass
        if el.tag == "difficult" and t in (0, ""):
            continue
        out[(el.tag, t)] += 1
    return out


def test_datumaro_voc_dataset1(fixtures, tmp_path):
    root = fixtures / DATUMARO / "voc_dataset1"
    ds = voc.parse(root, workers=1)
    assert len(ds) == 2 and ds.num_objects() == 2
    assert ds.splits == {"train": ["JPEGImages/2007_000001"], "test": ["JPEGImages/2007_000002"]}
    r = ds.records[0]
    names = {c.id: c.name for c in ds.categories}
    assert [names[i] for i in r.instances.labels.tolist()] == ["cat", "person"]
    assert r.instances.boxes.tolist() == [[0.0, 1.0, 3.0, 4.0], [3.0, 4.0, 6.0, 7.0]]
    person = r.instances.extra[1]
    assert person["parts"] == [{"name": "head", "box": [4.5, 5.0, 7.5, 8.0]}]  # part xmin 5.5
    assert person["actions"]["phoning"] == 1 and person["actions"]["jumping"] == 0
    assert r.instances.extra[0] == {"pose": "Unspecified", "truncated": 1}
    assert r.extra["segmented"] == 1 and r.extra["folder"] == "VOC2007"
    assert r.mask_path == "SegmentationClass/2007_000001.png"
    # 2007_000002 is listed in test.txt and has an image but no XML: an image without objects
    assert ds.records[1].split == "test" and len(ds.records[1].instances) == 0
    assert (ds.records[1].width, ds.records[1].height) == (20, 10)
    # the per-class lists of this fixture do not match its objects; counted, not fatal
    assert ds.info["voc_class_list_mismatches"] > 0
    back, report = _roundtrip(ds, tmp_path)
    assert not _diff(ds, back) and report["lost"] == {}
    assert _leaves(root / "Annotations/2007_000001.xml") == _leaves(back.root / "Annotations/2007_000001.xml")
    # datumaro's RGB masks are written as palette PNGs with the same class indices
    src_idx = voc._read_mask(root / "SegmentationClass/2007_000001.png")
    out_png = Image.open(back.root / "SegmentationClass/2007_000001.png")
    assert out_png.mode == "P" and np.array_equal(np.array(out_png), src_idx)
    assert Image.open(root / "SegmentationClass/2007_000001.png").mode == "RGB"


def test_datumaro_voc_dataset2(fixtures, tmp_path):
    root = fixtures / DATUMARO / "voc_dataset2"
    with pytest.raises(InvalidAnnotationError, match=r"@\.xml: no <size>"):
        voc.parse(root, workers=1)
    ds = voc.parse(root, workers=1, missing_size="zero")
    assert len(ds) == 5 and ds.num_objects() == 4 and list(ds.splits) == ["trainval"]
    # labelmap.txt order; its "ignored" and the XML's "background" are extra classes
    assert [c.name for c in ds.categories[:20]] == list(VOC_CLASSES)
    assert [(c.id, c.name) for c in ds.categories[20:]] == [(21, "ignored"), (22, "background")]
    a = ds.records[1]
    assert a.instances.boxes.tolist() == [[0.0, 1.0, 4.0, 6.0]]  # 1.0 2.0 4.0 6.0
    assert a.instances.extra == [{"truncated": 0, "occluded": 1}]
    back, _ = _roundtrip(ds, tmp_path, images="none", missing_size="zero")
    assert not _diff(ds, back) and [c.name for c in back.categories] == [c.name for c in ds.categories]
    for src in sorted((root / "Annotations").glob("*.xml")):
        assert _leaves(src) == _leaves(back.root / "Annotations" / src.name), src.name


def test_datumaro_voc_dataset3_comment_line(fixtures):
    ds = voc.parse(fixtures / DATUMARO / "voc_dataset3", workers=1)
    assert ds.splits == {"train": ["JPEGImages/2007_000001"]} and ds.num_objects() == 1


def test_labelme_bbox_detection(fixtures, tmp_path):
    root = fixtures / LABELME / "bbox_detection/data_dataset_voc"
    ds = voc.parse(root, workers=1)
    assert len(ds) == 3 and ds.num_objects() == 9 and ds.splits == {}
    r = ds.records[0]
    assert (r.width, r.height) == (500, 338)  # <height> before <width>
    assert r.instances.boxes.tolist()[0] == [190.0, 106.36900369003689, 313.0, 329.36900369003695]
    assert r.instances.extra[0] == {"pose": "", "truncated": None}  # empty elements kept as empty
    assert r.extra["source"] == {"database": "", "annotation": "", "image": ""}  # <database> at top level
    back, _ = _roundtrip(ds, tmp_path)
    assert not _diff(ds, back)
    for src in sorted((root / "Annotations").glob("*.xml")):
        assert _leaves(src) == _leaves(back.root / "Annotations" / src.name), src.name


def test_labelme_instance_segmentation_masks_only(fixtures, tmp_path):
    root = fixtures / LABELME / "instance_segmentation/data_dataset_voc"
    assert voc.detect(root)
    ds = voc.parse(root, workers=1)
    # no Annotations/: objects come from SegmentationObject, classes from SegmentationClass
    assert len(ds) == 3 and ds.num_objects() == 12
    names = {c.id: c.name for c in ds.categories}
    r = ds.records[1]  # 2011_000006: object values 1,2,3,4,5,7 (6 is fully covered)
    assert [names[i] for i in r.instances.labels.tolist()] == [
        "person", "person", "person", "chair", "person", "sofa"]
    assert r.instances.boxes.tolist()[0] == [92.0, 108.0, 241.0, 330.0]
    obj = np.array(Image.open(root / "SegmentationObject/2011_000006.png"))
    from pycocotools import mask as mask_utils
    m = mask_utils.decode({"size": [375, 500], "counts": r.instances.segmentation[5]["counts"].encode()})
    assert np.array_equal(m.astype(bool), obj == 7)
    back, report = _roundtrip(ds, tmp_path, segmentation=True)
    assert not _diff(ds, back) and report["masks"] == 3
    # SegmentationClass is copied as is (255 void borders kept)
    assert np.array_equal(np.array(Image.open(back.root / "SegmentationClass/2011_000006.png")),
                          np.array(Image.open(root / "SegmentationClass/2011_000006.png")))


def test_mmdetection_voc2007_xml(fixtures, tmp_path):
    root = fixtures / "mmdetection/tests/data/VOCdevkit"  # the VOCdevkit holding VOC2012
    ds = voc.parse(root, workers=1)
    r = ds.records[0]
    assert r.id == "JPEGImages/000001" and r.path == "JPEGImages/000001.jpg"
    assert r.instances.boxes.tolist() == [[138.0, 199.0, 207.0, 301.0]]  # xmin 139 -> 138.0
    assert ds.categories[r.instances.labels[0] - 1].name == "train"
    assert r.extra["filename"] == "000002.jpg" and r.extra["owner"]["name"] == "Hiroyuki Mori"
    back, _ = _roundtrip(ds, tmp_path, images="none")
    assert not _diff(ds, back)
    src = root / "VOC2012/Annotations/000001.xml"
    assert _leaves(src) == _leaves(back.root / "Annotations/000001.xml")


def test_write_counts_masks_hidden_by_overlap_and_skips_foreign_mask_pngs(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("L", (20, 10), 26).save(src / "ids.png")  # e.g. a Cityscapes labelIds PNG
    inst = Instances(boxes=[[0, 0, 10, 10], [2, 2, 8, 8]], labels=[1, 1],
                     segmentation=[[[0, 0, 10, 0, 10, 10, 0, 10]], [[2, 2, 8, 2, 8, 8, 2, 8]]])
    recs = [Record("a", "a.jpg", 20, 10, "train", instances=inst),
            Record("b", "b.jpg", 20, 10, "train", mask_path="ids.png")]
    ds = Dataset([Category(1, "person")], recs, root=src, format="cityscapes")
    out = tmp_path / "out"
    out.mkdir()
    report = voc.write(ds, out, images="none")
    # the second square covers the middle of the first: the first loses pixels
    assert report["lost"]["object mask pixels hidden by later, overlapping objects (objects)"] == 1
    assert report["lost"]["cityscapes mask PNGs (semantic)"] == 1
    assert not (out / "SegmentationClass" / "b.png").exists()


def test_cityscapes_to_voc_writes_a_class_mask_for_every_segmented_image(tmp_path):
    """Cityscapes labelIds hold category ids: they become SegmentationClass = category position + 1,
    pixel by pixel, for every image listed in ImageSets/Segmentation and marked <segmented>1;
    objects come rasterised from their RLE into SegmentationObject."""
    from dsprep.conversion import convert
    from dsprep.formats import _cityscapes_labels as L

    from fakes_cityscapes import make_cityscapes

    exp = make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2)
    report = convert("cityscapes", tmp_path / "cs", "voc", tmp_path / "v", workers=1, images="none")
    assert not any("mask PNGs" in k for k in report["lost"])
    out = voc.parse(tmp_path / "v", workers=1)
    listed = (tmp_path / "v/ImageSets/Segmentation/val.txt").read_text().split()
    assert sorted(listed) == sorted(Path(r.path).stem for r in out) and len(listed) == 2
    position = {c.name: i + 1 for i, c in enumerate(out.categories)}  # labelmap.txt keeps the order
    by_id = {lab.id: lab.name for lab in L.LABELS}
    for rec in out:
        assert rec.extra["segmented"] == 1 and rec.mask_path and rec.instance_mask_path
        base = Path(rec.path).stem[: -len("_leftImg8bit")]
        inst = exp["instance_maps"][base].astype(int)
        label_ids = np.where(inst < 1000, inst, inst // 1000)
        want = np.vectorize(lambda v: position[by_id[v]])(label_ids)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "v" / rec.mask_path)), want)
        objects = np.asarray(Image.open(tmp_path / "v" / rec.instance_mask_path))
        assert sorted(np.unique(objects).tolist()) == list(range(len(rec.instances) + 1))
    # renumbered categories (--category-ids contiguous1) leave the pixels' meaning alone
    convert("cityscapes", tmp_path / "cs", "voc", tmp_path / "v1", workers=1, images="none",
            category_ids="contiguous1")
    for rec in out:
        assert (tmp_path / "v1" / rec.mask_path).read_bytes() == (tmp_path / "v" / rec.mask_path).read_bytes()


def test_foreign_semantic_mask_without_category_values_is_rasterised_or_not_listed(tmp_path):
    """A foreign mask whose values are not category ids is counted lost; the class mask is then drawn
    from the objects' shapes, and an image with neither is not listed nor marked segmented."""
    src = tmp_path / "src"
    src.mkdir()
    Image.new("L", (20, 10), 7).save(src / "m.png")
    inst = Instances(boxes=[[0, 0, 10, 10]], labels=[2], segmentation=[[[0, 0, 10, 0, 10, 10, 0, 10]]])
    recs = [Record("a", "a.jpg", 20, 10, "train", instances=inst, mask_path="m.png", instance_mask_path="m.png"),
            Record("b", "b.jpg", 20, 10, "train", mask_path="m.png")]
    ds = Dataset([Category(1, "x"), Category(2, "y")], recs, root=src, format="other",
                 splits={"train": ["a", "b"]})
    out = tmp_path / "out"
    out.mkdir()
    report = voc.write(ds, out, images="none")
    assert report["lost"]["other mask PNGs (semantic)"] == 2 and report["masks"] == 1
    assert (out / "ImageSets/Segmentation/train.txt").read_text() == "a\n"
    cls = np.asarray(Image.open(out / "SegmentationClass/a.png"))
    assert (cls[:, :10] == 2).all() and (cls[:, 10:] == 0).all()  # y is category 2 (position + 1)
    assert not (out / "SegmentationClass/b.png").exists() and not (out / "SegmentationObject/b.png").exists()
    b = etree.parse(str(out / "Annotations/b.xml"))
    assert b.findtext("segmented") == "0" and etree.parse(str(out / "Annotations/a.xml")).findtext("segmented") == "1"


def test_cityscapes_dummy_test_labels_are_not_written_as_segmentation(tmp_path):
    """The Cityscapes test split's masks are dummies: --to voc must not write them as
    SegmentationClass nor list them in ImageSets/Segmentation; they are counted lost."""
    from dsprep.conversion import convert

    from fakes_cityscapes import make_cityscapes

    make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2, test=True)
    report = convert("cityscapes", tmp_path / "cs", "voc", tmp_path / "v", workers=1, images="none")
    assert report["lost"]["dummy label masks (Cityscapes test: not ground truth)"] == 2
    assert not (tmp_path / "v/ImageSets/Segmentation/test.txt").exists()
    assert len((tmp_path / "v/ImageSets/Segmentation/val.txt").read_text().split()) == 2
    assert len(list((tmp_path / "v/SegmentationClass").glob("*.png"))) == 2
    assert len((tmp_path / "v/ImageSets/Main/test.txt").read_text().split()) == 2  # the images stay
    # a polygons-only tree: the test frames' semantic source is a dummy polygons.json, not written either
    make_cityscapes(tmp_path / "poly", splits=("val",), cities=("bochum",), frames=2, test=True, pngs=False)
    report = convert("cityscapes", tmp_path / "poly", "voc", tmp_path / "vp", workers=1, images="none")
    assert report["lost"]["dummy label masks (Cityscapes test: not ground truth)"] == 2
    assert len(list((tmp_path / "vp/SegmentationClass").glob("*.png"))) == 2
