"""Issue 10 item 6: whatever ``convert`` writes, ``dsprep info`` on OUT reads back.

The issue's three cases (a COCO box outside its image -> VOC, a panoptic PNG of the wrong size ->
COCO, a VOC width of 1e12 -> COCO) are in tests/test_bad_input.py (the last two are now refused at
parse, with the fix). Here, the generic check: one dataset of awkward records that parsers accept
(boxes outside the image or narrower than a pixel, a 400-character class name, names with spaces,
a ``#`` or 246 characters, decimal coordinates, crowd RLEs, odd polygons, repeated annotation ids,
string image ids, 64-bit passthrough values), written by every writer and parsed back by its reader.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main
from dsprep.formats import get_format
from dsprep.records import Category, Dataset, Instances, Record

from fakes_coco import make_coco

LONG_CLASS = "x" * 400


def _awkward(root) -> Dataset:
    def image(rel: str, w: int, h: int) -> str:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (90, 120, 30)).save(path, format="JPEG")
        return rel

    crowd = np.zeros((30, 40), np.uint8)
    crowd[2:8, 3:9] = 1
    counts, flat = [], crowd.ravel(order="F")
    run, cur = 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            run, cur = 0, v
        run += 1
    counts.append(run)
    a = Instances(
        boxes=[[-50, -50, -20, -20],  # wholly outside
               [30, 20, 60, 45],  # partly outside
               [10, 10, 10.5, 13],  # narrower than a pixel
               [5, 5, 5, 5],  # empty
               [0.1, 0.2, 0.30000000000000004, 10.0],  # decimals that need their exact text
               [3, 2, 9, 8]],  # a crowd region
        labels=[1, 2, 1, 2, 1, 2], iscrowd=[0, 0, 0, 0, 0, 1], ids=[7, 7, 8, 9, 10, 11],
        segmentation=[None, None, None, None, [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0]],
                      {"size": [30, 40], "counts": counts}])
    b = Instances(boxes=[[1, 1, 5, 5]], labels=[2], segmentation=[[[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]])
    records = [
        Record("imgs/a b", image("imgs/a b.jpg", 40, 30), 40, 30, "train", label=1, instances=a, source_id="s1"),
        Record("imgs/long", image("imgs/" + "y" * 246 + ".jpg", 20, 10), 20, 10, "train", label=2, instances=b,
               source_id="s2", extra={"license": 2 ** 63 - 1, "meta": {"a": [1, None, True]}}),
        Record("imgs/#3", image("imgs/#3.jpg", 16, 12), 16, 12, "val", label=1, source_id="s3"),
        Record("imgs/sub/a b", image("imgs/sub/a b.jpg", 16, 12), 16, 12, "val", label=2, source_id="s4"),
    ]
    cats = [Category(1, LONG_CLASS), Category(2, "\u00e9:\u00fc")]
    return Dataset(cats, records, root=root, format="test")


@pytest.mark.parametrize("to, objects", [("coco", 7), ("voc", 7), ("coco-panoptic", 3), ("cityscapes", 0),
                                         ("imagenet", 7)])
def test_every_writer_reads_back_what_it_wrote(tmp_path, to, objects):
    ds = _awkward(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    fmt = get_format(to)
    report = fmt.write(ds, out, images="copy")
    back = fmt.parse(out, workers=1)
    assert len(back) == len(ds) and back.num_objects() == objects, report
    back.stats()  # what `dsprep info` prints
    if to == "imagenet":  # two "a b.jpg" in two splits: each gets its own LOC XML's boxes back
        assert sorted(len(r.instances) for r in back) == [0, 0, 1, 6]
    if to == "voc":  # the two boxes outside the image are clipped to it, and said so
        assert report["lost"]["boxes outside the image (objects; clipped to it: VOC readers refuse them)"] == 2
        assert LONG_CLASS in back.class_names()
        boxes = {tuple(b) for r in back for b in r.instances.boxes.tolist()}
        assert {(0.0, 0.0, 0.0, 0.0), (30.0, 20.0, 40.0, 30.0), (10.0, 10.0, 10.5, 13.0),
                (0.1, 0.2, 0.30000000000000004, 10.0)} <= boxes


def test_the_cli_round_trip_of_a_coco_box_outside_its_image_to_voc(tmp_path, capsys):
    """The issue's first case: COCO accepts the box (pycocotools does); VOC readers refuse a box
    past the image, so the VOC writer clips it, counts it lost, and `info` reads OUT back."""
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"] = [-50, -50, 30, 30]
    path.write_text(json.dumps(doc))
    out = tmp_path / "voc"
    assert main(["convert", "coco", str(coco["root"]), "--to", "voc", "--out", str(out), "--images", "none"]) == 0
    assert "boxes outside the image" in capsys.readouterr().err
    assert main(["info", "voc", str(out)]) == 0
    assert f"{coco['objects']['val2017']} objects" in capsys.readouterr().out


def test_voc_names_an_image_whose_name_no_file_system_holds(tmp_path):
    """A 300-character COCO file_name (no file of that name can exist, so images='none'): the VOC
    id is cut to fit with a hash, reads back, and says it renamed it."""
    rec = Record("a", "x" * 300 + ".jpg", 16, 12, "train",
                 instances=Instances(boxes=[[1, 1, 5, 5]], labels=[1]))
    ds = Dataset([Category(1, "cat")], [rec], root=tmp_path, format="coco")
    out = tmp_path / "voc"
    out.mkdir()
    report = get_format("voc").write(ds, out, images="none")
    back = get_format("voc").parse(out, workers=1)
    name = back[0].id.split("/")[1]
    assert report["renamed"] == 1 and len(name.encode()) <= 200 and name.startswith("xxx") and "~" in name
    assert back.num_objects() == 1


def test_voc_names_what_an_imagesets_line_can_hold(tmp_path):
    """Whitespace separates an ImageSets line's fields and a leading '#' makes it a comment: such
    image names become '_' (the fuzz found ' cat ' read back as 'cat', listed but missing)."""
    recs = [Record(n, f"{n}.jpg", 16, 12, "train", instances=Instances(boxes=[[1, 1, 5, 5]], labels=[1]))
            for n in (" cat ", "#3", "a\tb")]
    ds = Dataset([Category(1, "cat")], recs, root=tmp_path, format="coco")
    out = tmp_path / "voc"
    out.mkdir()
    assert get_format("voc").write(ds, out, images="none")["renamed"] == 3
    back = get_format("voc").parse(out, workers=1)
    assert sorted(r.id for r in back) == ["JPEGImages/_3", "JPEGImages/_cat_", "JPEGImages/a_b"]
    assert sorted(back.splits["train"]) == sorted(r.id for r in back) and back.num_objects() == 3


@pytest.mark.parametrize("to", ["coco", "voc"])
def test_one_file_listed_twice_is_two_records_written_and_read_back(tmp_path, to):
    """Two `images` entries of one COCO file naming the same file_name (the fuzz found it: the COCO
    writer gave both the same image id, which its reader refuses): two records, ids x and x#2."""
    from dsprep.formats import coco

    ex = make_coco(tmp_path, splits=("val2017",))
    path = ex["json"]["val2017"]
    doc = json.loads(path.read_text())
    doc["images"][2]["file_name"] = doc["images"][1]["file_name"]
    path.write_text(json.dumps(doc))
    ds = coco.parse(path)
    ids = [r.id for r in ds]
    assert len(set(ids)) == 3 and ids[2] == ids[1] + "#2"
    out = tmp_path / "out"
    out.mkdir()
    get_format(to).write(ds, out, images="none")
    back = get_format(to).parse(out, workers=1)
    assert len(back) == 3 and back.num_objects() == ds.num_objects()
