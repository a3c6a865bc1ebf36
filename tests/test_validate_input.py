"""Issue 10 item 7: ``validate`` sees what ``convert`` and the loader would refuse, and also
duplicate annotation ids, polygons of odd length or with string coordinates, ``iscrowd`` other
than 0/1, a VOC class missing from ``labelmap.txt``. Each check on the smallest tree that shows it,
with the problem's kind and where it names, through the CLI's --json report."""
from __future__ import annotations

import json

import pytest

from dsprep.cli import main

from fakes_coco import make_coco
from fakes_voc import make_voc


def _validate(capsys, fmt: str, root, *extra: str) -> tuple[int, dict[str, list[dict]]]:
    code = main(["validate", fmt, str(root), "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    by_kind: dict[str, list[dict]] = {}
    for p in report["items"]:
        by_kind.setdefault(p["kind"], []).append(p)
    return code, by_kind


def _coco(tmp_path, mutate):
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return coco["root"]


def test_a_clean_tree_has_none_of_the_new_kinds(tmp_path, capsys):
    code, kinds = _validate(capsys, "coco", _coco(tmp_path, lambda d: None))
    new = {"duplicate_annotation_id", "odd_polygon", "bad_polygon", "bad_iscrowd", "invalid_segmentation",
           "unwritable_value", "image_too_large"}
    assert not new & set(kinds), kinds


def test_duplicate_annotation_ids(tmp_path, capsys):
    def mutate(d):
        d["annotations"][2]["id"] = d["annotations"][0]["id"]

    code, kinds = _validate(capsys, "coco", _coco(tmp_path, mutate))
    found = kinds["duplicate_annotation_id"]
    assert code == 1 and len(found) == 1
    assert found[0]["where"] == "split val2017: annotation id 1" and "2 objects share this id" in found[0]["message"]


def test_duplicate_ids_in_two_split_files_are_not_a_problem(tmp_path, capsys):
    """COCO ids are file-wide: datumaro numbers each split's file 1..N, and pycocotools reads one file."""
    coco = make_coco(tmp_path, splits=("train2017", "val2017"))
    for split in ("train2017", "val2017"):
        path = coco["json"][split]
        doc = json.loads(path.read_text())
        for i, a in enumerate(doc["annotations"], 1):
            a["id"] = i
        path.write_text(json.dumps(doc))
    _, kinds = _validate(capsys, "coco", coco["root"])
    assert "duplicate_annotation_id" not in kinds


@pytest.mark.parametrize("polygon, kind, message", [
    ([1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0], "odd_polygon", "polygon 0 has 7 coordinates; expected x, y pairs"),
    ([1.0, 1.0, "9", 1.0, 9.0, 9.0], "bad_polygon", "polygon 0: expected a flat list of numbers"),
    ([1.0, 1.0, None, 1.0, 9.0, 9.0], "bad_polygon", "polygon 0: expected a flat list of numbers"),
    ([1.0, 1.0, [9.0], 1.0, 9.0, 9.0], "parse", "a polygon needs at least 3 (x, y) points"),  # parse refuses it
    ([0.0, 0.0, 1e9, 0.0, 5.0, 5.0], "invalid_segmentation", "has a vertex far outside"),
])
def test_polygons_of_odd_length_string_coordinates_or_far_outside(tmp_path, capsys, polygon, kind, message):
    def mutate(d):
        ann = next(a for a in d["annotations"] if isinstance(a["segmentation"], list))
        ann["segmentation"] = [polygon]

    code, kinds = _validate(capsys, "coco", _coco(tmp_path, mutate))
    warning = kind == "odd_polygon"  # read as pycocotools reads it (the last number dropped): a warning
    assert code == (0 if warning else 1) and len(kinds[kind]) == 1 and message in kinds[kind][0]["message"]
    assert kinds[kind][0]["severity"] == ("warning" if warning else "error")
    assert kinds[kind][0]["where"].endswith(("(id 1)", "annotation id 1"))


@pytest.mark.parametrize("value", [2, -1])
def test_iscrowd_other_than_0_or_1(tmp_path, capsys, value):
    def mutate(d):
        d["annotations"][0]["iscrowd"] = value

    root = _coco(tmp_path, mutate)
    code, kinds = _validate(capsys, "coco", root)
    found = kinds["bad_iscrowd"]
    assert code == 0 and len(found) == 1 and found[0]["severity"] == "warning"  # read as crowd, as pycocotools does
    assert _validate(capsys, "coco", root, "--strict")[0] == 1
    assert found[0]["where"].endswith("annotation id 1") and f"iscrowd is {value!r}" in found[0]["message"]
    import dsprep

    ds = dsprep.parse("coco", root)  # accepted as pycocotools accepts it: read as crowd
    assert bool(ds[1].instances.iscrowd[0]) is True


def test_iscrowd_true_or_false_is_fine(tmp_path, capsys):
    def mutate(d):
        d["annotations"][0]["iscrowd"] = False

    _, kinds = _validate(capsys, "coco", _coco(tmp_path, mutate))
    assert "bad_iscrowd" not in kinds


def test_voc_class_missing_from_labelmap(tmp_path, capsys):
    root = make_voc(tmp_path, n=3)["root"]
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\naeroplane:1,2,3::\n"
                                       "bicycle:4,5,6::\n")
    code, kinds = _validate(capsys, "voc", root)
    found = kinds["class_not_in_labelmap"]
    # image 1 holds bicycle (in the labelmap), bird; image 2 bird, boat, bottle
    assert code == 0 and {p["severity"] for p in found} == {"warning"} and [p["message"].split("'")[1] for p in found] == ["bird", "boat", "bottle"]
    assert found[0]["where"] == "Annotations/2012_000001.xml" and "fix: add it to labelmap.txt" in found[0]["message"]
    import dsprep

    ds = dsprep.parse("voc", root)  # read after the labelmap's classes, in order of appearance
    assert ds.class_names() == ["aeroplane", "bicycle", "bird", "boat", "bottle"]


def test_what_convert_and_the_loader_refuse_is_reported(tmp_path, capsys):
    """A tree that info reads: validate reports every item convert or the loader would stop at,
    each under its own kind, naming the object."""
    def mutate(d):
        crowd = next(a for a in d["annotations"] if a["iscrowd"])
        crowd["segmentation"]["counts"] = [5] * 3  # sums to 15, not h * w
        poly = next(a for a in d["annotations"] if isinstance(a["segmentation"], list))
        poly["segmentation"] = [[0, 0, 2 ** 40, 0, 5, 5]]

    root = _coco(tmp_path, mutate)
    code, kinds = _validate(capsys, "coco", root)
    assert code == 1
    assert "RLE counts sum to 15" in kinds["parse"][0]["message"]  # the parser itself refuses it
    assert "far outside" in kinds["invalid_segmentation"][0]["message"]
    out = tmp_path / "voc"
    assert main(["convert", "coco", str(root), "--to", "voc", "--out", str(out), "--images", "none",
                 "--on-error", "warn"]) == 2  # the polygon: convert stops where validate said
    assert "has a vertex far outside" in capsys.readouterr().err
