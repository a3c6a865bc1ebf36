"""CVAT for images 1.1 (issue 14): a real CVAT export checked against CVAT's own COCO and YOLO
exports of the same task, datumaro's test files, masks, round trips and bad input."""
from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main
from dsprep.errors import (DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, PathEscapeError,
                           UnknownNameError)
from dsprep.formats import FORMATS, cvat, detect_format, get_format
from dsprep.masks import segmentation_mask
from dsprep.records import Category, Dataset, Instances, Record

from fakes_coco import make_coco

TWO = "2label/datasets"
DM = "datumaro/tests/assets/cvat_dataset/for_images"


def _by_name(ds):
    return {r.path.rsplit("/", 1)[-1]: r for r in ds}


# --------------------------------------------------------------------------- real exports

def test_2label_export_matches_cvats_own_coco_export(fixtures):
    """The same task exported by CVAT as COCO 1.0 is the oracle: 18 boxes and 3 polygons with the
    same numbers; CVAT's COCO drops the 2 polylines (we keep them in the record's extras) and
    rasterises the 2 ellipses (our 32-gons have the ellipse's area; CVAT's pixel count is close)."""
    ds = cvat.parse(fixtures / TWO / "cvat1.1")
    coco = json.loads((fixtures / TWO / "coco1.0/annotations/instances_default.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(ds) == 4 and ds.num_objects() == 23 and ds.info["skipped"] == 0
    ours = {c.id: c.name for c in ds.categories}
    for img in coco["images"]:
        rec = _by_name(ds)[img["file_name"]]
        assert (rec.width, rec.height) == (img["width"], img["height"])
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        assert [names[a["category_id"]] for a in anns] == [ours[int(i)] for i in rec.instances.labels]
        for k, a in enumerate(anns):
            kind = rec.instances.extra[k]["cvat"]["type"]
            if kind == "ellipse":
                cx, cy, rx, ry = rec.instances.extra[k]["cvat"]["geometry"]
                ring = rec.instances.segmentation[k][0]
                x, y = np.asarray(ring[0::2]), np.asarray(ring[1::2])
                assert 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) == pytest.approx(
                    math.pi * rx * ry, rel=1e-9)
                assert a["iscrowd"] == 1 and a["area"] == pytest.approx(math.pi * rx * ry, rel=0.02)
                continue
            x, y, w, h = a["bbox"]
            assert np.allclose(rec.instances.boxes[k], [x, y, x + w, y + h], atol=1e-9)
            if kind == "polygon":
                assert np.allclose(rec.instances.segmentation[k][0], a["segmentation"][0], atol=1e-9)
    crack = _by_name(ds)["crack.jpeg"]
    assert len(crack.instances) == 0 and crack.extra["cvat"]["shapes"][0]["type"] == "polyline"
    assert len(crack.extra["cvat"]["shapes"][0]["points"]) == 2 * 25


def test_2label_box_is_the_yolo_line(fixtures):
    """README §14: YOLO '0 0.235043 0.180498 0.314303 0.218538' is the box (45.80, 45.80)-(230.61, 186.32)."""
    rec = _by_name(cvat.parse(fixtures / TWO / "cvat1.1"))["shapes.jpg"]
    box = rec.instances.boxes[1]
    assert box.tolist() == [45.8, 45.8, 230.61, 186.32]
    cx, cy, w, h = (box[0] + box[2]) / 2 / 588, (box[1] + box[3]) / 2 / 643, (box[2] - box[0]) / 588, (box[3] - box[1]) / 643
    assert np.round([cx, cy, w, h], 6).tolist() == [0.235043, 0.180498, 0.314303, 0.218538]
    line = (fixtures / TWO / "yolo1.1/obj_train_data/shapes.txt").read_text().splitlines()
    assert "0 0.235043 0.180498 0.314303 0.218538" in line


def test_datumaro_project_and_task_exports(fixtures):
    proj = cvat.parse(fixtures / DM / "export_project")
    assert list(proj.splits) == ["Test", "Train", "Validation"] and len(proj) == 6
    rec = proj.record_by_id()["images/Train/img0"]
    assert rec.path == "images/Train/img0.jpg" and (root := proj.root / rec.path).is_file(), root
    assert rec.instances.boxes.tolist() == [[0.0, 2.0, 4.0, 4.0]]
    assert rec.instances.extra[0]["cvat"] == {"type": "box", "occluded": 1, "z_order": 1, "box": [0.0, 2.0, 4.0, 4.0],
                                              "attributes": {"a1": "true", "a2": "v3", "a3": "0003", "a4": "2.4"}}
    # each subset's task numbers its images from 0: repeated ids are no source ids (kept in extra)
    assert rec.source_id is None and rec.extra["cvat"]["id"] == "0" and rec.extra["cvat"]["task_id"] == "39"
    assert len(cvat.parse(fixtures / DM / "export_project", split="Train")) == 2
    with pytest.raises(UnknownNameError, match="Did you mean 'Train'"):
        cvat.parse(fixtures / DM / "export_project", split="train")
    # train.xml has two shapes with label="": refused by name, or skipped and counted
    with pytest.raises(InvalidAnnotationError, match=r"train\.xml:50: <polyline> has no label"):
        cvat.parse(fixtures / DM / "export_task")
    task = cvat.parse(fixtures / DM / "export_task", on_error="warn")
    assert task.info["skipped"] == 2 and task.num_objects() == 1
    assert task.categories[0].extra["cvat_xml"].count("<attribute>") == 4


def test_cvat_for_video_is_refused_by_name(fixtures):
    with pytest.raises(MalformedFileError, match="this is CVAT for video"):
        cvat.parse(fixtures / "datumaro/tests/assets/cvat_dataset/for_video")


def test_detect(fixtures, tmp_path):
    for sub in (f"{TWO}/cvat1.1", f"{DM}/export_project", f"{DM}/export_task"):
        # imagenet's detect matches any folder of image folders (images/): a weak match that
        # detect_format ranks below every other format's; no other format claims these
        others = [n for n in FORMATS if n not in ("cvat", "imagenet") and get_format(n).detect(fixtures / sub)]
        assert cvat.detect(fixtures / sub) and others == [] and detect_format(fixtures / sub) == "cvat"
    assert not cvat.detect(fixtures / "datumaro/tests/assets/voc_dataset/voc_dataset1")
    assert not cvat.detect(fixtures / "datumaro/tests/assets/voc_dataset/voc_dataset1/Annotations/2007_000001.xml")
    assert not cvat.detect(make_coco(tmp_path, splits=("val2017",))["root"])


@pytest.mark.parametrize("text", [b"<", b"<?xml version='1.0'?>  <", b"\xef\xbb\xbf<!-- x --><", b"", b"<>"])
def test_truncated_xml_is_not_cvat_and_names_no_traceback(tmp_path, text):
    # found by the fuzzer: a lone "<" at the end of the head raised IndexError in detect and parse
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "annotations.xml").write_bytes(text)
    assert not cvat.detect(folder) and not cvat.detect(folder / "annotations.xml")
    with pytest.raises(MalformedFileError):
        cvat.parse(folder / "annotations.xml")
    with pytest.raises(DatasetNotFoundError):
        cvat.parse(folder)


# --------------------------------------------------------------------------- masks, rotation

def _xml(tmp_path, body: str, meta: str = "<meta><task><labels><label><name>cat</name></label></labels></task></meta>",
         raw: bytes | None = None):
    root = tmp_path / "cv"
    root.mkdir(exist_ok=True)
    text = raw if raw is not None else (f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
                                        f"{meta}{body}</annotations>").encode()
    (root / "annotations.xml").write_bytes(text)
    return root


def _image(shapes: str, w: int = 5, h: int = 4, name: str = "a.jpg") -> str:
    return f'<image id="0" name="{name}" width="{w}" height="{h}">{shapes}</image>'


def test_mask_rle_is_row_by_row_and_starts_with_zeros(tmp_path):
    """CVAT's rle: runs over the width x height patch, row by row, 0s first (its exporter writes
    ``"{list}"[1:-1]``; datumaro decodes the same). "1, 2, 2, 1" on 3x2 at (1, 1): rows 011 / 001."""
    root = _xml(tmp_path, _image('<mask label="cat" rle="1, 2, 2, 1" left="1" top="1" width="3" height="2" '
                                 'occluded="0" z_order="0"/>'))
    rec = cvat.parse(root)[0]
    want = np.zeros((4, 5), np.uint8)
    want[1, 2:4] = 1
    want[2, 3] = 1
    assert segmentation_mask(rec.instances.segmentation[0], 4, 5).tolist() == want.tolist()
    assert rec.instances.boxes.tolist() == [[2.0, 1.0, 4.0, 3.0]]
    out = tmp_path / "out"
    out.mkdir()
    cvat.write(Dataset([Category(1, "cat")], [rec.replace(instances=Instances(
        boxes=[[0, 0, 1, 1]], labels=[1], segmentation=rec.instances.segmentation))]), out, images="none")
    text = (out / "annotations.xml").read_text()
    assert 'rle="0, 2, 1, 1" left="2" top="1" width="2" height="2"' in text  # the tight patch: 11 / 01
    back = cvat.parse(out)[0]
    assert segmentation_mask(back.instances.segmentation[0], 4, 5).tolist() == want.tolist()


def test_rotated_box_and_ellipse(tmp_path):
    root = _xml(tmp_path, _image('<box label="cat" xtl="10" ytl="10" xbr="30" ybr="20" rotation="90" occluded="0"/>'
                                 '<ellipse label="cat" cx="50" cy="50" rx="20" ry="10" rotation="90"/>', 100, 100))
    rec = cvat.parse(root)[0]
    assert np.allclose(rec.instances.boxes[0], [15, 5, 25, 25]) and np.allclose(rec.instances.boxes[1], [40, 30, 60, 70])
    out = tmp_path / "out"
    out.mkdir()
    cvat.write(cvat.parse(root), out, images="none")
    text = (out / "annotations.xml").read_text()
    assert 'xtl="10" ytl="10" xbr="30" ybr="20"' in text and 'rotation="90"' in text and 'rx="20" ry="10"' in text


# --------------------------------------------------------------------------- round trips and conversions

def test_cvat_round_trip_and_via_coco(fixtures, tmp_path):
    for sub in (f"{TWO}/cvat1.1", f"{DM}/export_project"):
        ds = cvat.parse(fixtures / sub)
        out = tmp_path / sub.replace("/", "-")
        out.mkdir()
        report = cvat.write(ds, out, images="none")
        back = cvat.parse(out)
        assert report["lost"] == {}
        assert [(r.path, r.split, r.source_id, r.extra, r.instances) for r in back] == \
               [(r.path, r.split, r.source_id, r.extra, r.instances) for r in ds]
        assert [c.extra for c in back.categories] == [c.extra for c in ds.categories]
        (tmp_path / "c").mkdir(exist_ok=True)
        coco = get_format("coco")
        c_out = tmp_path / f"c/{sub.replace('/', '-')}"
        c_out.mkdir()
        coco.write(ds, c_out, images="none")
        v_out = tmp_path / f"v-{sub.replace('/', '-')}"
        v_out.mkdir()
        cvat.write(coco.parse(c_out), v_out, images="none")
        again = cvat.parse(v_out)
        assert [(r.instances.boxes.tolist(), r.instances.extra) for r in again] == \
               [(r.instances.boxes.tolist(), r.instances.extra) for r in ds]


def test_coco_to_cvat_polygons_masks_and_lost(tmp_path):
    exp = make_coco(tmp_path, splits=("val2017",))
    ds = get_format("coco").parse(exp["root"], workers=1)
    out = tmp_path / "cv"
    out.mkdir()
    report = cvat.write(ds, out, images="link")
    assert report["lost"]["crowd flags (objects; CVAT has no crowd)"] == exp["crowd"] > 0
    back = cvat.parse(out)
    assert back.num_objects() >= ds.num_objects() and list(back.splits) == ["val2017"]
    assert all((out / r.path).is_file() for r in back)
    by_id = back.record_by_id()
    for rec in ds:
        got = by_id[f"images/{rec.id}"]
        for k in np.flatnonzero(rec.instances.iscrowd):
            j = [i for i, e in enumerate(got.instances.extra) if e["cvat"]["type"] == "mask"][0]
            assert np.array_equal(segmentation_mask(got.instances.segmentation[j], rec.height, rec.width),
                                  segmentation_mask(rec.instances.segmentation[k], rec.height, rec.width))


def test_what_cvat_cannot_hold_is_reported(tmp_path):
    inst = Instances(boxes=[[1, 1, 5, 5]], labels=[3], keypoints=np.ones((1, 2, 3)), extra=[{"pose": "Left"}],
                     segmentation=[[[0, 0, 4, 0, 4, 4], [5, 5, 7, 5, 7, 7]]])
    ds = Dataset([Category(3, "cat", "animal")], [Record("a", "a.jpg", 8, 8, "train", label=3, instances=inst,
                                                         captions=["x"])],
                 splits={"train": ["a"], "trainval": ["a"]})
    report = cvat.write(ds, tmp_path, images="none")
    assert report["lost"] == {
        "splits (images in several: CVAT keeps one subset, the record's split)": 1,
        "category supercategories (CVAT stores names only)": 1,
        "boxes of objects with a mask (CVAT derives them from the shape; these differed)": 1,
        "keypoints (objects)": 1, "object fields (pose)": 1, "captions": 1,
        "category ids (CVAT stores names; re-read ids are 1..N in <meta> order)": 1}
    back = cvat.parse(tmp_path)
    # one object of two polygons: one <mask> of their pixels (a CVAT polygon is one ring)
    assert len(back[0].instances) == 1 and back[0].instances.extra[0]["cvat"]["type"] == "mask"
    assert np.array_equal(segmentation_mask(back[0].instances.segmentation[0], 8, 8),
                          segmentation_mask(inst.segmentation[0], 8, 8))
    assert back[0].label == 1  # the image label became a <tag>


def test_cli_convert_cvat_to_coco(fixtures, tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["convert", "cvat", str(fixtures / TWO / "cvat1.1"), "--to", "coco", "--out", str(out),
                 "--images", "none"]) == 0
    assert main(["info", "coco", str(out)]) == 0
    assert "23 objects" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad input (docs/formats/cvat.md)

BAD = [
    (b"<annotations><image", MalformedFileError, r"annotations\.xml:1: not well-formed XML"),
    (b'<?xml version="1.0" encoding="utf-8"?><annotations><image id="0" name="\xff" width="1" height="1"/>'
     b"</annotations>", MalformedFileError, r"annotations\.xml: holds bytes that are not valid in its encoding; expected UTF-8"),
    (b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotations><image id="0" name="&x;" width="1" '
     b'height="1"/></annotations>', MalformedFileError, r"not well-formed XML \(Attribute references external "
                                                        r"entity 'x'"),
    (b'<!DOCTYPE a [<!ENTITY x "yy"><!ENTITY y "&x;&x;&x;&x;">]><annotations><image id="0" name="a.jpg" '
     b'width="1" height="1"><tag label="&y;"/></image></annotations>', MalformedFileError,
     r"annotations\.xml: declares entities in a <!DOCTYPE>"),
    (b"<annotation><object/></annotation>", MalformedFileError, r"expected root element <annotations>"),
    (_image('<polygon label="cat" points="1,1;2,2"/>'), InvalidAnnotationError,
     r"annotations\.xml:2: a <polygon> needs at least 3 points, found 2"),
    (_image('<polyline label="cat" points="1,1"/>'), InvalidAnnotationError, r"a <polyline> needs at least 2 points"),
    (_image('<polygon label="cat" points="1,1;2;3,3"/>'), InvalidAnnotationError, r"points must be 'x,y;x,y;\.\.\.'"),
    (_image('<polygon label="cat" points="1,1;2,nan;3,3"/>'), InvalidAnnotationError, r"points must be finite"),
    (_image('<polygon label="cat" points="1,1;2,1e12;3,3"/>'), InvalidAnnotationError, r"within \+-2147483647"),
    (_image('<box label="cat" xtl="1" ytl="1" xbr="inf" ybr="3"/>'), InvalidAnnotationError,
     r"<box> xbr must be a finite pixel coordinate"),
    (_image('<box label="cat" xtl="1" ytl="1" ybr="3"/>'), InvalidAnnotationError, r"<box> xbr must be a number"),
    (_image('<box label="cat" xtl="4" ytl="1" xbr="2" ybr="3"/>'), InvalidAnnotationError, r"xbr < xtl"),
    (_image('<box label="" xtl="1" ytl="1" xbr="2" ybr="3"/>'), InvalidAnnotationError, r"<box> has no label"),
    (_image('<ellipse label="cat" cx="1" cy="1" rx="-2" ry="3"/>'), InvalidAnnotationError, r"radii must be >= 0"),
    (_image('<mask label="cat" rle="1, x" left="0" top="0" width="2" height="1"/>'), InvalidAnnotationError,
     r"rle must be comma-separated run lengths"),
    (_image('<mask label="cat" rle="1, 2" left="0" top="0" width="2" height="2"/>'), InvalidAnnotationError,
     r"add up to width x height = 4, found a sum of 3"),
    (_image('<mask label="cat" rle="1, -1, 4" left="0" top="0" width="2" height="2"/>'), InvalidAnnotationError,
     r"runs must be >= 0"),
    (_image('<mask label="cat" rle="18446744073709551616" left="0" top="0" width="2" height="1"/>'),
     InvalidAnnotationError, r"rle must be comma-separated run lengths"),  # past 64 bits
    # int64 runs summing to 2^64 + 2 wrapped round to 2 = width x height: found by the fuzzer's cousin
    (_image('<mask label="cat" rle="9223372036854775807, 9223372036854775807, 4" left="0" top="0" width="2" '
            'height="1"/>'), InvalidAnnotationError, r"found a sum of 18446744073709551618"),
    (_image('<box label="cat" xtl="1" ytl="1" xbr="2" ybr="3" rotation="1;2;3"/>'), InvalidAnnotationError,
     r"<box> rotation must be a number, found '1;2;3'"),
    (_image('<ellipse label="cat" cx="1" cy="1" rx="2" ry="3" rotation="nan"/>'), InvalidAnnotationError,
     r"<ellipse> rotation must be a finite number"),
    (_image('<mask label="cat" rle="6" left="2" top="0" width="6" height="1"/>'), InvalidAnnotationError,
     r"patch 2,0 \+6x1 reaches past the 5x4 image"),
    (_image('<mask label="cat" rle="4" left="0" top="0" width="two" height="2"/>'), InvalidAnnotationError,
     r"width must be an integer"),
    (_image("", name="../../etc/passwd"), PathEscapeError, r"image id 0: name '\.\./\.\./etc/passwd' resolves to"),
    (_image("", name="/etc/passwd"), PathEscapeError, r"name '/etc/passwd'"),
    (_image("", w=-1), InvalidAnnotationError, r"width must be 0\.\.2147483647"),
    ('<image id="0" name="gone.jpg"/>', InvalidAnnotationError, r"no width/height and no image images/gone\.jpg"),
    ('<track id="0" label="cat"><box frame="0" xtl="1" ytl="1" xbr="2" ybr="2"/></track>', MalformedFileError,
     r"this is CVAT for video"),
]


@pytest.mark.parametrize("bad, error, match", BAD, ids=[f"row{i}" for i in range(len(BAD))])
def test_bad_input_is_a_named_error(tmp_path, bad, error, match):
    root = _xml(tmp_path, "", raw=bad) if isinstance(bad, bytes) else _xml(tmp_path, bad)
    with pytest.raises(error, match=match):
        cvat.parse(root / "annotations.xml")


def test_bad_input_from_the_cli_and_warn_mode(tmp_path, capsys):
    root = _xml(tmp_path, _image('<polygon label="cat" points="1,1;2,2"/><box label="cat" xtl="1" ytl="1" xbr="2" '
                                 'ybr="3"/>'))
    code = main(["convert", "cvat", str(root), "--to", "coco", "--out", str(tmp_path / "o"), "--images", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "a <polygon> needs at least 3 points" in err and "Traceback" not in err
    ds = cvat.parse(root, on_error="warn")
    assert ds.num_objects() == 1 and ds.info["skipped"] == 1
    with pytest.raises(DatasetNotFoundError, match="no CVAT XML found"):
        cvat.parse(tmp_path / "nothing")


def test_a_stored_shape_is_written_only_with_its_kind_of_segmentation(tmp_path):
    """A polygon read from CVAT whose segmentation another format re-derived as an RLE (COCO
    panoptic does) is written as a mask of those pixels, not as a polygon of an RLE's keys."""
    rle = {"size": [8, 8], "counts": [9, 3, 5, 3, 44]}
    ex = {"cvat": {"type": "polygon", "occluded": 1, "box": [1.0, 1.0, 4.0, 4.0]}}
    inst = Instances(boxes=[[1, 1, 4, 4]], labels=[1], segmentation=[rle], extra=[ex])
    ds = Dataset([Category(1, "cat")], [Record("a", "a.jpg", 8, 8, instances=inst)])
    cvat.write(ds, tmp_path, images="none")
    back = cvat.parse(tmp_path)[0]
    assert back.instances.extra[0]["cvat"]["type"] == "mask"
    assert np.array_equal(segmentation_mask(back.instances.segmentation[0], 8, 8), segmentation_mask(rle, 8, 8))


def test_every_element_and_shape_attribute_round_trips(tmp_path):
    """A generated export with each shape CVAT for images writes: <meta> labels in their order,
    box/polygon/polyline/points/mask/tag, attributes, occluded, z_order, group_id and source;
    parse gives them, write gives the same elements and attributes back."""
    meta = ("<meta><task><labels><label><name>dog</name><attributes><attribute><name>pose</name>"
            "</attribute></attributes></label><label><name>cat</name></label></labels></task></meta>")
    shapes = ('<box label="cat" source="manual" occluded="1" z_order="2" group_id="5" xtl="1.5" ytl="2" xbr="10.25" '
              'ybr="9"><attribute name="color">black</attribute></box>'
              '<polygon label="dog" source="auto" occluded="0" z_order="-1" group_id="5" points="20,2;30,2;30,12.5">'
              '<attribute name="pose">sitting</attribute></polygon>'
              '<polyline label="cat" source="manual" occluded="0" z_order="0" points="1,15;5,18;9,15"/>'
              '<points label="dog" source="manual" occluded="0" z_order="3" group_id="5" points="22,5;25,6"/>'
              '<mask label="cat" source="semi-auto" occluded="0" z_order="1" rle="0, 2, 1, 1" left="12" top="14" '
              'width="2" height="2"/>'
              '<tag label="dog" source="manual"/>')
    root = _xml(tmp_path, _image(shapes, w=40, h=20, name="frame 1.png"), meta=meta)
    ds = cvat.parse(root)
    assert [c.name for c in ds.categories] == ["dog", "cat"]
    rec = ds[0]
    assert rec.path == "images/frame 1.png" and rec.label == 1 and rec.source_id == 0
    assert rec.instances.labels.tolist() == [2, 1, 2]
    assert rec.instances.boxes.tolist() == [[1.5, 2.0, 10.25, 9.0], [20.0, 2.0, 30.0, 12.5], [12.0, 14.0, 14.0, 16.0]]
    box, poly, mask = (e["cvat"] for e in rec.instances.extra)
    assert (box["type"], box["occluded"], box["z_order"], box["group_id"], box["source"], box["attributes"]) == \
           ("box", 1, 2, 5, "manual", {"color": "black"})
    assert (poly["type"], poly["z_order"], poly["group_id"], poly["attributes"]) == ("polygon", -1, 5, {"pose": "sitting"})
    assert (mask["type"], mask["source"]) == ("mask", "semi-auto")
    assert rec.instances.segmentation[0] is None and rec.instances.segmentation[1] == [[20, 2, 30, 2, 30, 12.5]]
    m = segmentation_mask(rec.instances.segmentation[2], 20, 40)
    assert m.sum() == 3 and m[14, 12:14].tolist() == [1, 1] and m[15, 12:14].tolist() == [0, 1]
    loose = rec.extra["cvat"]["shapes"]
    assert [(s["type"], s["label"], s["points"]) for s in loose] == [
        ("polyline", "cat", [1, 15, 5, 18, 9, 15]), ("points", "dog", [22, 5, 25, 6])]
    out = tmp_path / "out"
    out.mkdir()
    assert cvat.write(ds, out, images="none")["lost"] == {}
    back = cvat.parse(out)
    flat = [re.sub(r">\s+<", "><", c.extra["cvat_xml"]) for c in back.categories]  # written indented
    assert flat == [c.extra["cvat_xml"] for c in ds.categories]
    assert (back[0].path, back[0].label, back[0].extra, back[0].instances) == \
           (rec.path, rec.label, rec.extra, rec.instances)

    from lxml import etree

    def elements(path):
        image = etree.parse(str(path)).getroot().find("image")
        return sorted((e.tag, dict(e.attrib), [(a.get("name"), a.text) for a in e]) for e in image)
    assert elements(out / "annotations.xml") == elements(root / "annotations.xml")


def test_a_box_off_by_float_rounding_keeps_its_stored_shape(fixtures, tmp_path):
    """A COCO reader that rounds x + w to its shortest decimal gives the ellipse's box back a bit
    off (396.7 for 396.70000000000005): still the shape parse() read, written as the ellipse; a box
    really moved (0.01 px) is an edit, written from the record's geometry."""
    ds = cvat.parse(fixtures / TWO / "cvat1.1")
    rec = _by_name(ds)["shapes.jpg"]
    k = [e["cvat"]["type"] for e in rec.instances.extra].index("ellipse")
    for nudge, kind in ((1e-13, "ellipse"), (0.01, "polygon")):
        boxes = rec.instances.boxes.copy()
        boxes[k, 3] += nudge
        one = Dataset(ds.categories, [rec.replace(instances=dataclasses.replace(rec.instances, boxes=boxes))])
        out = tmp_path / kind
        out.mkdir()
        cvat.write(one, out, images="none")
        back = cvat.parse(out)[0]
        assert back.instances.extra[k]["cvat"]["type"] == kind
        if kind == "ellipse":
            assert back.instances.boxes[k].tolist() == rec.instances.boxes[k].tolist()


def test_cli_detects_cvat_when_the_format_is_left_out(fixtures, capsys):
    assert main(["info", str(fixtures / TWO / "cvat1.1")]) == 0
    out = capsys.readouterr()
    assert "detected format cvat" in out.err and "4 images, 23 objects" in out.out
