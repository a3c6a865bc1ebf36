"""LabelMe (issue 14): labelme's own example files, generated trees, round trips, bad input."""
from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main
from dsprep.errors import (DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, MissingFileError,
                           PathEscapeError, UnknownNameError)
from dsprep.formats import detect_format, get_format
from dsprep.formats import labelme
from dsprep.masks import segmentation_mask
from dsprep.records import Category, Dataset, Instances, Record, decode_segmentation

from fakes_coco import make_coco
from fakes_labelme import document, make_labelme, shape

EX = "labelme/examples"


def _polygon_area(flat) -> float:
    x, y = np.asarray(flat[0::2]), np.asarray(flat[1::2])
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# --------------------------------------------------------------------------- labelme's own files

def test_instance_segmentation_matches_labelmes_own_coco_export(fixtures):
    """labelme2coco's output for these JSONs (§5) is the oracle: the same instances per image (its
    converter skips __ignore__), each with the same polygons, group_id 0 joining person/sofa parts."""
    ds = labelme.parse(fixtures / EX / "instance_segmentation/data_annotated", workers=1)
    coco = json.loads((fixtures / EX / "instance_segmentation/data_dataset_coco/annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    ours = {c.id: c.name for c in ds.categories}
    assert len(ds) == 3 and ds.num_objects() == 14
    for img in coco["images"]:
        rec = ds.record_by_id()[img["file_name"].split("/")[-1].rsplit(".", 1)[0]]
        assert (rec.width, rec.height) == (img["width"], img["height"])
        theirs = [(names[a["category_id"]], a["segmentation"]) for a in coco["annotations"]
                  if a["image_id"] == img["id"]]
        mine = [(ours[int(lab)], seg) for lab, seg in zip(rec.instances.labels, rec.instances.segmentation)
                if ours[int(lab)] != "__ignore__"]
        assert [n for n, _ in mine] == [n for n, _ in theirs]
        for (_, a), (_, b) in zip(mine, theirs):
            assert len(a) == len(b) and all(np.allclose(p, q, atol=1e-9) for p, q in zip(a, b))
    sofa = [s for r in ds for s, lab in zip(r.instances.segmentation, r.instances.labels) if ours[int(lab)] == "sofa"]
    assert [len(s) for s in sofa] == [4]


def test_rectangles_are_boxes_of_their_two_corners(fixtures):
    ds = labelme.parse(fixtures / EX / "bbox_detection/data_annotated", workers=1)
    doc = json.loads((fixtures / EX / "bbox_detection/data_annotated/2011_000006.json").read_text())
    rec = ds.record_by_id()["2011_000006"]
    want = [[min(p[0] for p in s["points"]), min(p[1] for p in s["points"]),
             max(p[0] for p in s["points"]), max(p[1] for p in s["points"])] for s in doc["shapes"]]
    assert rec.instances.boxes.tolist() == want and rec.instances.segmentation is None
    assert ds.num_objects() == 9 and [c.name for c in ds.categories] == ["person", "bus", "car"]


def test_primitives_every_shape_type(fixtures):
    """One shape of each type (labelme 5.7.0): circle -> box c +- r and a 32-gon of area pi r^2;
    mask -> RLE whose box is the PNG's pixels placed at int(points); line/point/linestrip -> kept."""
    ds = labelme.parse(fixtures / EX / "primitives", workers=1)
    rec = ds[0]
    names = [ds.category_by_id()[int(i)].name for i in rec.instances.labels]
    assert names == ["rectangle", "circle", "rectangle", "polygon", "octagon"] and (rec.width, rec.height) == (560, 450)
    r = math.hypot(225 - 195, 125 - 84)
    assert rec.instances.boxes[1].tolist() == [195 - r, 84 - r, 195 + r, 84 + r]
    ring = rec.instances.segmentation[1][0]
    assert len(ring) == 64 and _polygon_area(ring) == pytest.approx(math.pi * r * r, rel=1e-9)
    assert ds.info["labelme_circles_approximated"] == 1
    doc = json.loads((fixtures / EX / "primitives/primitives.json").read_text())
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["shapes"][7]["mask"])))).astype(bool)
    ys, xs = np.nonzero(png)
    assert rec.instances.boxes[4].tolist() == [417 + xs.min(), 305 + ys.min(), 417 + xs.max() + 1, 305 + ys.max() + 1]
    full = segmentation_mask(rec.instances.segmentation[4], 450, 560)
    assert int(full.sum()) == int(png.sum()) and full[305:405, 417:517].astype(bool).tolist() == png.tolist()
    loose = rec.extra["labelme"]["shapes"]
    assert [(s["label"], s["shape_type"], len(s["points"])) for s in loose] == [
        ("line", "line", 2), ("point", "point", 1), ("line_strip", "linestrip", 3)]
    assert labelme.parse(fixtures / EX / "primitives", workers=1, circles="box")[0].instances.segmentation[1] is None


def test_embedded_image_data_is_written_back(fixtures, tmp_path):
    """The tutorial JSON's imagePath names the JSON itself: its image exists only as imageData,
    which the size comes from and which write() embeds again."""
    src = fixtures / EX / "tutorial"
    ds = labelme.parse(src, workers=1)
    assert (ds[0].width, ds[0].height) == (1210, 907) and ds.num_objects() == 4
    assert ds[0].extra["labelme"]["image_data_in"] == "apc2016_obj3.json"
    labelme.write(ds, tmp_path, images="copy")
    out = json.loads((tmp_path / "apc2016_obj3.json").read_text())
    assert out["imageData"] == json.loads((src / "apc2016_obj3.json").read_text())["imageData"]


def test_image_flags_and_the_2label_file(fixtures):
    cls = labelme.parse(fixtures / EX / "classification/data_annotated", workers=1)
    assert [r.extra["labelme"]["flags"] for r in cls] == [{"__ignore__": False, "cat": True, "dog": False},
                                                          {"__ignore__": False, "cat": False, "dog": True}]
    assert cls.num_objects() == 0
    two = labelme.parse(fixtures / "2label/datasets/labelme", workers=1)[0]
    pts = json.loads((fixtures / "2label/datasets/labelme/shapes.json").read_text())["shapes"][0]["points"]
    assert two.instances.boxes[0].tolist() == [pts[0][0], pts[0][1], pts[1][0], pts[1][1]]
    assert np.round(two.instances.boxes[0], 2).tolist() == [46.99, 45.75, 230.57, 187.54]  # fixtures README
    assert (two.width, two.height) == (588, 643) and len(two.extra["labelme"]["shapes"]) == 1  # the linestrip


def test_detect(fixtures, tmp_path):
    for sub in ("instance_segmentation/data_annotated", "primitives", "tutorial"):
        assert labelme.detect(fixtures / EX / sub) and detect_format(fixtures / EX / sub) == "labelme"
    coco = make_coco(tmp_path, splits=("val2017",))
    assert not labelme.detect(coco["root"]) and not labelme.detect(coco["json"]["val2017"])
    assert labelme.detect(make_labelme(tmp_path, layout="folder")["root"])
    # dsprep's own output: side files at the top (beside), annotations/<split>/*.json (folder)
    for layout in ("beside", "folder"):
        out = tmp_path / f"out-{layout}"
        assert main(["convert", "coco", str(coco["root"]), "--to", "labelme", "--out", str(out), "--images", "none",
                     "--layout", layout]) == 0
        assert (out / "dsprep-manifest.json").is_file() and detect_format(out) == "labelme"


# --------------------------------------------------------------------------- generated trees

@pytest.mark.parametrize("layout", ["beside", "folder"])
def test_generated_tree_groups_and_boxes(tmp_path, layout):
    exp = make_labelme(tmp_path, layout=layout)
    ds = labelme.parse(exp["root"], workers=2)
    assert len(ds) == exp["images"] and ds.num_objects() == exp["objects"]
    assert {r.id: r.instances.boxes.tolist() for r in ds} == exp["boxes"]
    rec = ds.record_by_id()["images/img1" if layout == "folder" else "img1"]
    assert rec.instances.segmentation[2] == [[0.0, 8.0, 3.0, 8.0, 3.0, 11.0], [10.0, 0.0, 15.0, 0.0, 15.0, 1.25]]
    assert rec.instances.segmentation[1] is None  # the rectangle
    assert [c.name for c in ds.categories] == ["cat", "dog"]
    assert rec.extra["labelme"]["shapes"][0]["shape_type"] == "point"


@pytest.mark.parametrize("layout", ["beside", "folder"])
def test_labelme_round_trip_writes_the_same_shapes(fixtures, tmp_path, layout):
    for sub in ("instance_segmentation/data_annotated", "primitives"):
        src = fixtures / EX / sub
        ds = labelme.parse(src, workers=1)
        out = tmp_path / f"{layout}-{sub.replace('/', '-')}"
        out.mkdir()
        report = labelme.write(ds, out, images="copy" if sub == "primitives" else "none", layout=layout)
        assert report["lost"] == {} and report["objects"] == ds.num_objects()
        back = labelme.parse(out, workers=1)
        assert [r.instances for r in back] == [r.instances for r in ds]
        assert [c.name for c in back.categories] == [c.name for c in ds.categories]
        for path in sorted(src.glob("*.json")):
            name = path.name if layout == "beside" else f"annotations/{path.name}"
            want, got = json.loads(path.read_text()), json.loads((out / name).read_text())
            assert got["shapes"] == want["shapes"]
            placed = (out / ("" if layout == "beside" else "annotations")).joinpath(got["imagePath"])
            assert placed.is_file() == (sub == "primitives")


def test_labelme_to_coco_and_back_keeps_the_shapes(fixtures, tmp_path):
    ds = labelme.parse(fixtures / EX / "primitives", workers=1)
    coco = get_format("coco")
    (tmp_path / "c").mkdir()
    (tmp_path / "l").mkdir()
    coco.write(ds, tmp_path / "c", images="none")
    report = labelme.write(coco.parse(tmp_path / "c", workers=1), tmp_path / "l", images="none")
    assert report["lost"] == {"annotation ids": 5, "stored areas": 5, "source image ids": 1,  # COCO's split name:
                              "splits (LabelMe keeps a split only as a first folder train/, val/, valid/ or test/)": 1}
    back = json.loads(next((tmp_path / "l").rglob("primitives.json")).read_text())
    assert back["shapes"] == json.loads((fixtures / EX / "primitives/primitives.json").read_text())["shapes"]


def test_coco_to_labelme_masks_crowds_and_reports(tmp_path):
    """COCO polygons become polygon shapes, crowd RLEs mask shapes with the same pixels; what
    LabelMe cannot hold (crowd flags, ids, areas) is counted lost."""
    exp = make_coco(tmp_path, splits=("val2017",))
    ds = get_format("coco").parse(exp["root"], workers=1)
    out = tmp_path / "lm"
    out.mkdir()
    report = labelme.write(ds, out, images="link")
    assert report["lost"]["crowd flags (objects; LabelMe has no crowd)"] == exp["crowd"] > 0
    back = labelme.parse(out, workers=1)
    assert back.num_objects() == ds.num_objects() and len(back) == len(ds)
    by_id = back.record_by_id()
    for rec in ds:
        got = by_id[rec.id]
        for k in np.flatnonzero(~rec.instances.iscrowd):  # LabelMe's box is the extent of its polygons
            segm = None if rec.instances.segmentation is None else decode_segmentation(rec.instances.segmentation[k])
            pts = np.concatenate(segm).reshape(-1, 2) if segm else None
            want = rec.instances.boxes[k].tolist() if pts is None else [*pts.min(0), *pts.max(0)]
            assert got.instances.boxes[k].tolist() == want
        for k in np.flatnonzero(rec.instances.iscrowd):
            want = segmentation_mask(rec.instances.segmentation[k], rec.height, rec.width)
            assert np.array_equal(segmentation_mask(got.instances.segmentation[k], rec.height, rec.width), want)


def test_what_labelme_cannot_hold_is_reported(tmp_path):
    inst = Instances(boxes=[[1, 1, 5, 5], [0, 0, 4, 4]], labels=[3, 3], keypoints=np.ones((2, 2, 3)),
                     extra=[{"pose": "Left"}, {}], segmentation=[None, [[0, 0, 4, 0, 4, 3.5]]])
    ds = Dataset([Category(3, "cat")], [Record("a", "a.jpg", 8, 8, label=3, instances=inst, captions=["x"])])
    report = labelme.write(ds, tmp_path, images="none")
    assert report["lost"] == {"keypoints (objects)": 2, "object fields (pose)": 1, "captions": 1,
                              "boxes of objects with a mask (LabelMe derives them from the shape; these differed)": 1,
                              "image-level labels": 1, "category ids (LabelMe stores names; re-read ids are 1..N "
                                                       "in labels.txt order)": 1}
    back = labelme.parse(tmp_path, workers=1)
    assert back[0].instances.boxes.tolist() == [[1, 1, 5, 5], [0, 0, 4, 3.5]]
    assert (tmp_path / "labels.txt").read_text() == "cat\n"


def test_labels_txt_fixes_the_category_order(tmp_path):
    exp = make_labelme(tmp_path)
    (exp["root"] / "labels.txt").write_text("dog\nbird\ncat\n")
    ds = labelme.parse(exp["root"], workers=1)
    assert [(c.id, c.name) for c in ds.categories] == [(1, "dog"), (2, "bird"), (3, "cat")]
    (exp["root"] / "labels.txt").write_text("dog\n")
    policy = __import__("dsprep.errors", fromlist=["ErrorPolicy"]).ErrorPolicy("raise")
    ds = labelme.parse(exp["root"], workers=1, on_error=policy)
    assert [c.name for c in ds.categories] == ["dog", "cat"] and policy.note_count["class_not_in_labels"] == 1


def test_split_folders(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for split in ("train", "val"):
        make_labelme(tmp_path / split, n=2)["root"].rename(root / split)
    ds = labelme.parse(tmp_path / "root", workers=1, split="val")
    assert len(ds) == 2 and {r.split for r in ds} == {"val"} and list(ds.splits) == ["val"]
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        labelme.parse(tmp_path / "root", split="vall")


def test_cli_convert_labelme_to_coco(fixtures, tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["convert", "labelme", str(fixtures / EX / "bbox_detection/data_annotated"), "--to", "coco",
                 "--out", str(out), "--images", "none"]) == 0
    assert main(["info", "coco", str(out)]) == 0
    assert "9 objects" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad input (docs/formats/labelme.md)

def _tree(tmp_path, doc=None, raw: bytes | None = None):
    root = tmp_path / "lm"
    root.mkdir(exist_ok=True)
    Image.new("RGB", (16, 12)).save(root / "a.png")
    data = raw if raw is not None else json.dumps(doc).encode()
    (root / "a.json").write_bytes(data)
    return root


def _png_b64(w: int, h: int, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("L", (w, h), 1).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _doc(**changes):
    shapes = changes.pop("shapes", [shape("cat", [[1, 1], [5, 1], [5, 5]])])
    return document("a.png", shapes, **changes)


BAD = [
    # (raw bytes or document, error class, message pattern)
    (b"{\"shapes\": [", MalformedFileError, r"a\.json: not valid JSON"),
    (b'{"shapes": [], "imagePath": "a.png", "version": "\xff"}', MalformedFileError, r"not valid JSON .*UTF-8"),
    (b"[1, 2]", MalformedFileError, r"expected a JSON object, found list"),
    ({"images": [], "annotations": []}, MalformedFileError, r"not a LabelMe file: expected \"shapes\""),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1]])]), InvalidAnnotationError,
     r"a\.json: shape 0: a polygon needs at least 3 points, found 2"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1], [2, 2]], "rectangle")]), InvalidAnnotationError,
     r"a rectangle needs 2 points, found 3"),
    (_doc(shapes=[shape("cat", [[1, 1]], "circle")]), InvalidAnnotationError, r"a circle needs 2 points"),
    (_doc(shapes=[shape("cat", [[1, 1], [2, 2], [3, 3]], "line")]), InvalidAnnotationError,
     r"a line needs 2 points, found 3"),
    (_doc(shapes=[shape("cat", [[1, 1], [2, 2]], "point")]), InvalidAnnotationError, r"a point needs 1 point"),
    (_doc(shapes=[shape("cat", [[1, 1]], "linestrip")]), InvalidAnnotationError, r"a linestrip needs at least 2"),
    (_doc(shapes=[shape("cat", [[1, 1]], "mask", mask=_png_b64(1, 1))]), InvalidAnnotationError,
     r"a mask needs 2 points, found 1"),
    (_doc(shapes=[shape("cat", [[1, 1, 3], [5, 1], [2, 2]])]), InvalidAnnotationError, r"list of \[x, y\] pairs"),
    (b'{"shapes": [{"label": "c", "points": [[NaN, 1], [5, 1], [5, 5]]}], "imagePath": "a.png"}',
     MalformedFileError, r"not valid JSON"),
    (b'{"shapes": [{"label": "c", "points": [[1e400, 1], [5, 1], [5, 5]]}], "imagePath": "a.png"}',
     MalformedFileError, r"not valid JSON .*infinity"),
    (_doc(shapes=[shape("cat", [[1e12, 1], [5, 1], [5, 5]])]), InvalidAnnotationError,
     r"x must be a finite pixel coordinate within \+-2147483647, found 1000000000000"),
    (_doc(shapes=[shape("cat", [["1", 1], [5, 1], [5, 5]])]), InvalidAnnotationError, r"x must be a number"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, True], [5, 5]])]), InvalidAnnotationError, r"y must be a number, found True"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1], [5, 5]], "ellipse")]), InvalidAnnotationError,
     r"unknown shape_type 'ellipse'; expected one of polygon"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1], [5, 5]], [[1, 2]])]), InvalidAnnotationError,
     r"unknown shape_type \[\[1, 2\]\]; expected one of polygon"),  # unhashable: was a TypeError (fuzzer)
    (_doc(shapes=[shape("", [[1, 1], [5, 1], [5, 5]])]), InvalidAnnotationError, r"label must be a non-empty"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1], [5, 5]], group_id="a")]), InvalidAnnotationError,
     r"group_id must be an integer or null"),
    (_doc(shapes=[shape("cat", [[1, 1], [5, 1], [5, 5]], flags=[1])]), InvalidAnnotationError,
     r"flags must be a JSON object"),
    (document("../a.png", []), PathEscapeError, r"imagePath '\.\./a\.png' resolves to .*outside"),
    (document("/etc/passwd", []), PathEscapeError, r"imagePath '/etc/passwd'"),
    (document("C:\\data\\a.png", []), PathEscapeError, r"imagePath 'C:/data/a\.png'"),
    (document("a.png", [], imageData="not base64!"), InvalidAnnotationError, r"imageData is not valid base64"),
    (document("a.png", [], imageData=base64.b64encode(b"not an image").decode()), MalformedFileError,
     r"imageData: not a readable embedded image"),
    (document("a.png", [], w=20, imageData=_png_b64(16, 12)), InvalidAnnotationError,
     r"imageWidth x imageHeight is 20x12 but imageData holds a 16x12 image"),
    (_doc(shapes=[shape("cat", [[1, 1], [4, 4]], "mask", mask="@@@")]), InvalidAnnotationError,
     r"shape 0: mask is not valid base64"),
    (_doc(shapes=[shape("cat", [[1, 1], [4, 4]], "mask", mask=_png_b64(3, 3))]), InvalidAnnotationError,
     r"mask PNG is 3x3 but its points span 4x4 pixels"),
    (_doc(shapes=[shape("cat", [[1, 1], [4, 4]], "mask", mask=base64.b64encode(b"xx").decode())]),
     InvalidAnnotationError, r"mask is not a readable PNG"),
    (_doc(w=-3), InvalidAnnotationError, r"imageWidth must be 0\.\.2147483647"),
    (_doc(h=1e12), InvalidAnnotationError, r"imageHeight must be 0\.\.2147483647"),
    (_doc(w=None, imagePath="gone.png"), InvalidAnnotationError, r"no imageWidth/imageHeight, no imageData and no "
                                                                 r"image gone\.png"),
]


@pytest.mark.parametrize("bad, error, match", BAD, ids=[f"row{i}" for i in range(len(BAD))])
def test_bad_input_is_a_named_error(tmp_path, bad, error, match):
    root = _tree(tmp_path, raw=bad) if isinstance(bad, bytes) else _tree(tmp_path, bad)
    with pytest.raises(error, match=match):
        labelme.parse(root, workers=1)


def test_bad_input_from_the_cli_and_warn_mode(tmp_path, capsys):
    root = _tree(tmp_path, document("../a.png", []))
    make_labelme(root)  # three good files below it
    code = main(["convert", "labelme", str(root), "--to", "coco", "--out", str(tmp_path / "o"), "--images", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "a.json: imagePath '../a.png' resolves to" in err and "Traceback" not in err
    ds = labelme.parse(root, workers=1, on_error="warn")
    assert len(ds) == 3 and ds.info["skipped"] == 1
    assert labelme.parse(root, workers=1, allow_outside_root=True, on_error="warn").info["skipped"] == 0


def test_missing_images_and_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no LabelMe JSON found"):
        labelme.parse(tmp_path)
    ds = labelme.parse(_tree(tmp_path, _doc(imagePath="gone.png")), workers=1)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MissingFileError, match="image of record 'gone' not found"):
        labelme.write(ds, out, images="copy")
    assert labelme.write(ds, out, images="copy", on_error="warn")["missing_images"] == 1


def test_cli_convert_to_labelme_folder_layout_with_image_data(fixtures, tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["convert", "labelme", str(fixtures / EX / "primitives"), "--to", "labelme", "--out", str(out),
                 "--layout", "folder", "--image-data", "--images", "copy"]) == 0
    doc = json.loads((out / "annotations/primitives.json").read_text())
    assert doc["imagePath"] == "../images/primitives.jpg"
    assert base64.b64decode(doc["imageData"]) == (fixtures / EX / "primitives/primitives.jpg").read_bytes()
    assert main(["convert", "labelme", str(fixtures / EX / "primitives"), "--to", "coco", "--out",
                 str(tmp_path / "c"), "--layout", "folder"]) == 2
    assert "--layout: only with --to labelme" in capsys.readouterr().err


def test_labelme_output_of_convert_reads_back_beside_dsprep_side_files(tmp_path, capsys):
    """OUT holds dsprep-manifest.json (and category_map.json once ids are kept): not LabelMe files."""
    exp = make_coco(tmp_path, splits=("val2017",))
    out = tmp_path / "lm"
    assert main(["convert", "coco", str(exp["root"]), "--to", "labelme", "--out", str(out), "--images", "none"]) == 0
    (out / "category_map.json").write_text("{}")
    assert (out / "dsprep-manifest.json").is_file()
    ds = labelme.parse(out, workers=1)
    assert len(ds) == exp["images"]["val2017"] and ds.num_objects() == exp["objects"]["val2017"]


def test_an_edited_object_is_written_from_its_geometry(fixtures, tmp_path):
    """parse() keeps each object's shapes with the box they gave; a record whose box was changed
    (a transform, an edit) is written from its geometry, not from the stale shapes."""
    ds = labelme.parse(fixtures / EX / "primitives", workers=1)
    rec = ds[0]
    boxes = rec.instances.boxes.copy()
    boxes[0] = [40, 45, 140, 145]  # the first rectangle, moved
    boxes[1] += 1e-13  # the circle: only float rounding (a COCO reader's shortest x + w), not an edit
    rec.instances.boxes = boxes
    labelme.write(ds, tmp_path, images="none")
    shapes = json.loads((tmp_path / "primitives.json").read_text())["shapes"]
    assert shapes[0]["label"] == "rectangle" and shapes[0]["points"] == [[40.0, 45.0], [140.0, 145.0]]
    assert shapes[1]["points"] == [[195.0, 84.0], [225.0, 125.0]]  # the circle, as it was


def test_generated_tree_round_trip_keeps_groups_flags_and_does_not_embed(tmp_path):
    """Shapes with group_id, flags, description and the non-object shapes come back key for key;
    imageData stays null unless asked for, and then holds the image file's bytes."""
    exp = make_labelme(tmp_path)
    src = exp["root"] / "img1.json"
    doc = json.loads(src.read_text())
    doc["shapes"][0].update(flags={"occluded": True}, description="front paw")
    doc["flags"] = {"blurred": True}
    src.write_text(json.dumps(doc))
    ds = labelme.parse(exp["root"], workers=1)
    out = tmp_path / "out"
    out.mkdir()
    assert labelme.write(ds, out, images="copy")["lost"] == {}
    for k in range(exp["images"]):
        want = json.loads((exp["root"] / f"img{k}.json").read_text())
        got = json.loads((out / f"img{k}.json").read_text())
        assert got["shapes"] == want["shapes"] and got["flags"] == want["flags"] and got["imageData"] is None
        assert (got["imagePath"], got["imageWidth"], got["imageHeight"]) == (f"img{k}.png", 16, 12)
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    labelme.write(ds, embedded, images="none", image_data=True)
    got = json.loads((embedded / "img2.json").read_text())
    assert base64.b64decode(got["imageData"]) == (exp["root"] / "img2.png").read_bytes()
    assert [r.instances for r in labelme.parse(embedded, workers=1)] == [r.instances for r in ds]


def test_cli_detects_labelme_when_the_format_is_left_out(fixtures, capsys):
    assert main(["info", str(fixtures / EX / "bbox_detection/data_annotated")]) == 0
    out = capsys.readouterr()
    assert "detected format labelme" in out.err and "9 objects" in out.out


def test_image_names_past_255_bytes_are_shortened_and_counted(tmp_path):
    # found by the fuzzer: a 400-character imagePath (sizes in the JSON, no image needed) parsed,
    # and the writer's <name>.json then raised OSError "File name too long"
    long_x, long_e = "x" * 300 + ".jpg", "sub/" + "\u00e9" * 200 + ".jpg"  # 304 characters; 400 bytes
    recs = [Record(p.rsplit(".", 1)[0], p, 8, 8, instances=Instances([[1, 1, 3, 3]], [1])) for p in (long_x, long_e)]
    out = tmp_path / "out"
    out.mkdir()
    report = labelme.write(Dataset([Category(1, "cat")], recs), out, images="none")
    assert report["lost"]["image file names (longer than a file system holds: shortened)"] == 2
    back = labelme.parse(out)
    assert len(back) == 2 and back.num_objects() == 2
    assert all(len(part.encode()) <= 255 for r in back.records for part in (r.path + ".json").split("/"))
    assert sorted(r.path.split("/")[0][:3] for r in back.records) == ["sub", "xxx"]
