"""LVIS format: lvis-api's real v0.5 sample, generated v1 trees, LVIS -> LVIS field for field,
the LVIS fields through COCO and VOC, and one test per row of docs/formats/lvis.md's bad-input table."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dsprep import convert, convert_boxes
from dsprep.cli import main
from dsprep.errors import (DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, MissingFileError,
                           PathEscapeError, UnknownNameError)
from dsprep.formats import coco, detect_format, get_format, lvis

from fakes_lvis import make_lvis


@pytest.fixture()
def lvis_file(fixtures) -> Path:
    return fixtures / "lvis-api/data/lvis_val_100.json"


def _by_id(items: list[dict]) -> dict[int, dict]:
    return {x["id"]: x for x in items}


# --------------------------------------------------------------------------- the real sample

def test_fixture_counts_and_fields_match_the_file(lvis_file):
    doc = json.loads(lvis_file.read_text())
    ds = lvis.parse(lvis_file)
    assert len(ds) == len(doc["images"]) == 100
    assert ds.num_objects() == len(doc["annotations"]) == 977
    assert len(ds.categories) == len(doc["categories"]) == 1230
    with_objects = {a["image_id"] for a in doc["annotations"]}
    assert sum(len(r.instances) == 0 for r in ds.records) == len(doc["images"]) - len(with_objects) == 7
    assert Counter(c.extra["frequency"] for c in ds.categories) == {"r": 454, "c": 461, "f": 315}
    cats = _by_id(doc["categories"])
    for c in ds.categories:
        src = cats[c.id]
        assert {k: c.extra[k] for k in ("synset", "synonyms", "def", "image_count", "instance_count")} == {
            k: src[k] for k in ("synset", "synonyms", "def", "image_count", "instance_count")}
    images = _by_id(doc["images"])
    anns = _by_id(doc["annotations"])
    for r in ds.records:
        src = images[r.source_id]
        # the file is the coco_url's split folder and name (detectron2's rule), not v0.5's 2014 file_name
        assert r.path == "/".join(src["coco_url"].split("/")[-2:]) and r.path.startswith("val2017/")
        assert r.extra["file_name"] == src["file_name"]
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            assert r.extra[key] == src[key]
        for box, aid in zip(r.instances.boxes.tolist(), r.instances.ids.tolist()):
            assert box == convert_boxes(np.array([anns[aid]["bbox"]]), "xywh", "xyxy")[0].tolist()
        assert not r.instances.iscrowd.any()  # LVIS has no iscrowd


def test_fixture_lvis_to_lvis_gives_back_every_entry(lvis_file, tmp_path):
    doc = json.loads(lvis_file.read_text())
    report = lvis.write(lvis.parse(lvis_file), tmp_path, images="none")
    assert report == {"images": 100, "objects": 977, "lost": {}, "files": ["lvis_v1_val_100.json"]}
    out = json.loads((tmp_path / "lvis_v1_val_100.json").read_text())
    for key in ("images", "annotations", "categories"):
        assert _by_id(out[key]) == _by_id(doc[key]), key
    assert out["info"] == doc["info"] and out["licenses"] == doc["licenses"]


def test_fixture_to_coco_reports_the_2014_file_name_lost(lvis_file, tmp_path):
    report = convert("lvis", lvis_file, "coco", tmp_path / "coco", images="none")
    assert report["lost"]["image fields named like COCO's (file_name, id, width, height)"] == 100
    doc = json.loads((tmp_path / "coco/annotations/instances_val_100.json").read_text())
    assert all(im["file_name"] == im["coco_url"].rpartition("/")[2] for im in doc["images"])
    assert all("neg_category_ids" in im for im in doc["images"])  # COCO keeps the other LVIS keys


def test_detection_tells_lvis_from_coco(lvis_file, fixtures, tmp_path):
    assert lvis.detect(lvis_file) and detect_format(lvis_file) == "lvis"
    assert not coco.detect(lvis_file)
    renamed = tmp_path / "val.json"
    renamed.write_bytes(lvis_file.read_bytes())
    assert lvis.detect(renamed) and not coco.detect(renamed)  # by content: neg_category_ids, synset + frequency
    plain = fixtures / "mmdetection/tests/data/coco_sample.json"
    assert coco.detect(plain) and not lvis.detect(plain)


# --------------------------------------------------------------------------- generated trees

def test_generated_tree_splits_paths_and_images(tmp_path):
    exp = make_lvis(tmp_path)
    ds = lvis.parse(exp["root"], check_images=True)
    assert list(ds.splits) == ["train", "val"]
    for split, doc in exp["docs"].items():
        recs = [r for r in ds.records if r.split == split]
        assert [r.source_id for r in recs] == [i["id"] for i in doc["images"]]
        assert [r.path for r in recs] == [f"{split}2017/{i['id']:012d}.jpg" for i in doc["images"]]
        assert sum(len(r.instances) for r in recs) == len(doc["annotations"])
    val = lvis.parse(exp["root"], split="val")
    assert [r.source_id for r in val.records] == [20, 21]
    assert lvis.parse(exp["files"]["val"]).records[0].path == "val2017/000000000020.jpg"  # root above annotations/
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        lvis.parse(exp["root"], split="vall")


def test_generated_round_trip_and_placed_images(tmp_path):
    exp = make_lvis(tmp_path)
    ds = lvis.parse(exp["root"])
    out = tmp_path / "out"
    out.mkdir()
    report = lvis.write(ds, out, images="copy")
    assert report["lost"] == {} and report["files"] == ["lvis_v1_train.json", "lvis_v1_val.json"]
    for split, doc in exp["docs"].items():
        got = json.loads((out / f"lvis_v1_{split}.json").read_text())
        for key in ("images", "annotations", "categories"):
            assert _by_id(got[key]) == _by_id(doc[key])
        for im in doc["images"]:
            name = f"{split}2017/{im['id']:012d}.jpg"
            assert (out / name).read_bytes() == (exp["root"] / name).read_bytes()
    again = lvis.parse(out)
    assert again.categories == ds.categories
    assert [(r.path, r.extra, r.instances) for r in again.records] == [(r.path, r.extra, r.instances)
                                                                       for r in ds.records]


def test_lvis_fields_survive_coco_and_are_reported_lost_by_voc(tmp_path):
    exp = make_lvis(tmp_path)
    convert("lvis", exp["root"], "coco", tmp_path / "coco", images="none")
    convert("coco", tmp_path / "coco", "lvis", tmp_path / "back", images="none")
    for split, doc in exp["docs"].items():
        got = json.loads((tmp_path / f"back/lvis_v1_{split}.json").read_text())
        assert _by_id(got["images"]) == _by_id(doc["images"])
        assert _by_id(got["categories"]) == _by_id(doc["categories"])
        assert _by_id(got["annotations"]) == _by_id(doc["annotations"])
    report = convert("lvis", exp["root"], "voc", tmp_path / "voc", images="none")
    lost = [k for k in report["lost"] if k.startswith("image fields")]
    assert lost and all("neg_category_ids" in k and "not_exhaustive_category_ids" in k for k in lost)
    assert sum(report["lost"][k] for k in lost) == 4
    fields = "category fields (def, frequency, image_count, instance_count, synonyms, synset)"
    assert report["lost"][fields] == 3  # every category
    ds = lvis.parse(exp["root"])
    ds.records = [r.replace(label=1) for r in ds.records]  # a class tree holds labelled images
    (tmp_path / "inet").mkdir()
    assert get_format("imagenet").write(ds, tmp_path / "inet", images="none")["lost"][fields] == 3


def test_coco_to_lvis_fills_what_lvis_eval_reads_and_reports_crowds(tmp_path):
    from fakes_coco import make_coco

    exp = make_coco(tmp_path, splits=("val2017",), images_per_split=3)
    src = coco.parse(exp["root"])
    report = convert("coco", exp["root"], "lvis", tmp_path / "l", images="copy")
    doc = json.loads((tmp_path / "l/lvis_v1_val2017.json").read_text())
    assert report["lost"].get("crowd flags (LVIS has no iscrowd)", 0) == exp["crowd"]
    assert all("iscrowd" not in a for a in doc["annotations"]) and len(doc["annotations"]) == src.num_objects()
    per_cat = Counter(int(v) for r in src.records for v in r.instances.labels)
    for c in doc["categories"]:
        assert c["instance_count"] == per_cat[c["id"]] and c["frequency"] == "r" and c["synonyms"] == [c["name"]]
    for im, rec in zip(doc["images"], src.records):
        assert im["neg_category_ids"] == [] and im["not_exhaustive_category_ids"] == []
        assert im["coco_url"] == rec.extra["coco_url"]  # it names the file: kept, and the image placed by it
        assert (tmp_path / "l" / "/".join(im["coco_url"].split("/")[-2:])).is_file()
    back = lvis.parse(tmp_path / "l")
    assert [r.instances.boxes.tolist() for r in back.records] == [r.instances.boxes.tolist() for r in src.records]


def test_an_image_in_two_splits_is_one_record_in_both_after_a_round_trip(tmp_path):
    exp = make_lvis(tmp_path)
    ds = lvis.parse(exp["root"])
    ds.splits = {**ds.splits, "trainval": [r.id for r in ds.records]}
    (tmp_path / "o").mkdir()
    report = lvis.write(ds, tmp_path / "o", images="link")
    assert report["files"] == ["lvis_v1_train.json", "lvis_v1_val.json", "lvis_v1_trainval.json"]
    assert report["lost"] == {} and (report["images"], report["objects"]) == (4, 6)  # each once, in two files
    back = lvis.parse(tmp_path / "o")
    assert len(back) == len(ds) == 4
    by_name = {r.path.rpartition("/")[2]: r.id for r in back.records}
    for split, ids in ds.splits.items():
        names = [ds.record_by_id()[i].path.rpartition("/")[2] for i in ids]
        assert back.splits[split] == [by_name[n] for n in names], split
    assert [(r.source_id, r.extra["neg_category_ids"], r.instances.ids.tolist()) for r in back.records] == \
        [(r.source_id, r.extra["neg_category_ids"], r.instances.ids.tolist()) for r in ds.records]


def test_entries_of_one_image_that_disagree_stay_two_records(tmp_path):
    exp = make_lvis(tmp_path, images=False)
    doc = json.loads(exp["files"]["val"].read_text())
    doc["images"][0]["neg_category_ids"] = [1]  # image 20 in trainval, but with other negatives
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == 20]
    doc["images"] = doc["images"][:1]
    (exp["root"] / "annotations/lvis_v1_trainval.json").write_text(json.dumps(doc))
    ds = lvis.parse(exp["root"])
    assert sum(r.source_id == 20 for r in ds.records) == 2
    doc["images"][0]["neg_category_ids"] = [7]  # now the same entry: one record, in val and trainval
    (exp["root"] / "annotations/lvis_v1_trainval.json").write_text(json.dumps(doc))
    ds = lvis.parse(exp["root"])
    [rec] = [r for r in ds.records if r.source_id == 20]
    assert rec.id in ds.splits["val"] and ds.splits["trainval"] == [rec.id]


def test_ids_that_cannot_be_kept_and_clashing_names_are_said(tmp_path):
    from dsprep.records import Category, Dataset, Instances, Record
    from PIL import Image
    for d in ("a", "b"):
        (tmp_path / "src" / d).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(tmp_path / "src" / d / "x.jpg")
    recs = [Record(f"{d}/x", f"{d}/x.jpg", 8, 6, "train", source_id="s" + d,
                   instances=Instances(boxes=[[1, 1, 4, 4]], labels=[1], ids=[5]),
                   extra={"color_path": f"{d}/x_color.png"}) for d in ("a", "b")]
    ds = Dataset([Category(1, "thing")], recs, splits={"train": ["a/x", "b/x"]}, root=tmp_path / "src")
    (tmp_path / "o").mkdir()
    report = lvis.write(ds, tmp_path / "o")
    assert report["lost"] == {
        "source image ids (LVIS's are unique ints >= 0; numbered 1..N)": 2,
        "annotation ids (LVIS's are unique over the dataset and >= 1; numbered 1..N)": 2,
        "file names (two images of one split with one name: written as their relative path, / as __)": 1,
        "files named by image fields (Cityscapes color, polygons...: not carried)": 2}
    doc = json.loads((tmp_path / "o/lvis_v1_train.json").read_text())
    assert [im["coco_url"] for im in doc["images"]] == ["train/x.jpg", "train/b__x.jpg"]
    assert all("color_path" not in im for im in doc["images"])
    back = lvis.parse(tmp_path / "o", check_images=True)
    assert [r.path for r in back.records] == ["train/x.jpg", "train/b__x.jpg"]


def test_a_coco_url_naming_another_file_is_rewritten_and_said(tmp_path):
    from fakes_coco import make_coco

    exp = make_coco(tmp_path, splits=("val2017",), images_per_split=2)
    ds = coco.parse(exp["root"])
    ds.records[0].extra["coco_url"] = "http://images.cocodataset.org/val2017/another.jpg"
    (tmp_path / "l").mkdir()
    report = lvis.write(ds, tmp_path / "l", images="link")
    doc = json.loads((tmp_path / "l/lvis_v1_val2017.json").read_text())
    assert doc["images"][0]["coco_url"] == "val2017/" + ds.records[0].path.rpartition("/")[2]
    assert (tmp_path / "l" / doc["images"][0]["coco_url"]).is_file()
    assert report["lost"] == {"coco_url values not naming the image's place (written as its relative path)": 1}


# --------------------------------------------------------------------------- bad input (docs table)

def _edit(tmp_path: Path, change) -> Path:
    exp = make_lvis(tmp_path, images=False)
    doc = exp["docs"]["val"]
    change(doc)
    exp["files"]["val"].write_text(json.dumps(doc))
    return exp["files"]["val"]


def _set(path: list, value):
    def change(doc):
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return change


@pytest.mark.parametrize("change, error, match", [
    (_set(["categories", 0, "frequency"], "x"), MalformedFileError, r"category id 1: 'frequency' must be one of "
                                                                     r"'r', 'c', 'f'"),
    (_set(["categories", 1, "synonyms"], "spray_can"), MalformedFileError, r"'synonyms' must be a list of strings"),
    (_set(["categories", 2, "synset"], 5), MalformedFileError, r"'synset' must be a string"),
    (_set(["categories", 0, "image_count"], -1), MalformedFileError, r"'image_count' must be an integer >= 0"),
    (_set(["images", 0, "neg_category_ids"], "7"), InvalidAnnotationError, r"image id 20: 'neg_category_ids' must "
                                                                            r"be a list of 64-bit integer"),
    (_set(["images", 0, "neg_category_ids"], [2 ** 70]), InvalidAnnotationError, r"'neg_category_ids' must be a "
                                                                                  r"list of 64-bit"),
    (_set(["images", 1, "not_exhaustive_category_ids"], [99]), InvalidAnnotationError,
     r"image id 21: 'not_exhaustive_category_ids' names category id\(s\) \[99\] that are not in 'categories'"),
    (_set(["images", 0, "coco_url"], None), InvalidAnnotationError, r"image id 20: expected a 'coco_url' string "
                                                                     r"\(or 'file_name'\)"),
    (_set(["images", 0, "coco_url"], "../../x.jpg"), PathEscapeError, r"image id 20: file_name '../x.jpg' "
                                                                       r"resolves to"),
    (_set(["annotations", 0, "id"], 2 ** 70), InvalidAnnotationError, r"annotation id 1180591620717411303424: invalid annotation: Expected `int` <= 9223372036854775807"),
    (_set(["annotations", 0, "category_id"], 99), InvalidAnnotationError, r"unknown category_id 99"),
    (_set(["annotations", 0, "segmentation"], [[1, 2, 3, 4]]), InvalidAnnotationError, r"polygon with 4 "
                                                                                         r"coordinates"),
    (_set(["categories", 0, "def"], 3), MalformedFileError, r"category id 1: 'def' must be a string; found 3"),
    (_set(["categories", 0, "instance_count"], 1.5), MalformedFileError, r"category id 1: 'instance_count' must be "
                                                                          r"an integer >= 0; found 1.5"),
    (_set(["images", 0, "id"], 2 ** 70), InvalidAnnotationError, r"images\[0\]: expected an int image 'id' "
                                                                  r"\(64-bit\)"),
    (_set(["annotations", 0, "bbox"], [1, 2, -3, 4]), InvalidAnnotationError, r"annotation id 5: bbox \[x, y, "
                                                                               r"width, height\] must be finite"),
    (_set(["annotations", 0, "segmentation"], {"counts": "zz!", "size": [24, 32]}), InvalidAnnotationError,
     r"annotation id 5: RLE counts string is not COCO's compressed form"),
    (_set(["annotations", 0, "segmentation"], {"counts": [5, 3], "size": [24, 32]}), InvalidAnnotationError,
     r"annotation id 5: RLE counts sum to 8, but size \[24, 32\] has 768 pixels"),
    (lambda doc: doc.pop("images"), MalformedFileError, r"lvis_v1_val.json: not a COCO file: expected the keys "
                                                        r"'images'.* \(no 'images'\)"),
])
def test_bad_entries_are_named(tmp_path, change, error, match):
    path = _edit(tmp_path, change)
    with pytest.raises(error, match=match):
        lvis.parse(path)


def test_a_json_array_is_refused_and_named(tmp_path):
    exp = make_lvis(tmp_path, images=False)
    exp["files"]["val"].write_text(json.dumps([exp["docs"]["val"]]))
    with pytest.raises(MalformedFileError, match=r"lvis_v1_val.json: expected a COCO JSON object .* found a JSON "
                                                 r"array"):
        lvis.parse(exp["files"]["val"])


def test_allow_outside_root_accepts_a_climbing_coco_url(tmp_path):
    path = _edit(tmp_path, _set(["images", 0, "coco_url"], "../../x.jpg"))
    ds = lvis.parse(path, allow_outside_root=True)
    assert [r.path for r in ds.records if r.source_id == 20] == ["../x.jpg"]


def test_a_category_error_stops_the_parse_even_under_warn(tmp_path):
    path = _edit(tmp_path, _set(["categories", 0, "frequency"], "x"))
    with pytest.raises(MalformedFileError, match=r"category id 1: 'frequency' must be one of"):
        lvis.parse(path, on_error="warn")


def test_not_json_through_the_cli_is_one_line_and_exit_2(tmp_path, capsys):
    exp = make_lvis(tmp_path, images=False)
    exp["files"]["val"].write_text('{"images": [}')
    code = main(["convert", "lvis", str(exp["files"]["val"]), "--to", "coco", "--out", str(tmp_path / "o"),
                 "--images", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "lvis_v1_val.json: invalid JSON at line 1, column 13" in err
    assert not (tmp_path / "o").exists()


def test_warn_skips_an_image_with_a_bad_list(tmp_path):
    path = _edit(tmp_path, _set(["images", 0, "neg_category_ids"], [99]))
    ds = lvis.parse(path, on_error="warn")
    assert [r.source_id for r in ds.records] == [21] and ds.info["skipped"] == 1


def test_missing_images_and_no_dataset(tmp_path):
    exp = make_lvis(tmp_path, images=False)
    with pytest.raises(MissingFileError, match=r"val2017/000000000020.jpg: image file of image id 20 not found"):
        lvis.parse(exp["files"]["val"], check_images=True)
    with pytest.raises(DatasetNotFoundError, match=r"no LVIS annotations found; looked for"):
        lvis.parse(tmp_path / "lvis/train2017")


def test_the_cli_detects_an_lvis_tree_when_the_format_is_left_out(tmp_path, capsys):
    exp = make_lvis(tmp_path, images=False)
    code = main(["convert", str(exp["root"]), "--to", "kitti", "--out", str(tmp_path / "o"), "--images", "none"])
    err = capsys.readouterr().err
    assert code == 0 and "detected format lvis" in err
    assert len(list((tmp_path / "o/training/label_2").glob("*.txt"))) == 4
