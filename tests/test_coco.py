"""COCO reader/writer: generated trees, the real fixtures, round trips, COCOeval, bad input."""
from __future__ import annotations

import contextlib
import io
import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from dsprep.errors import InvalidAnnotationError, MalformedFileError, MissingFileError
from dsprep.formats import coco
from dsprep.records import Category, Dataset, Instances, Record, decode_segmentation

from fakes_coco import KEYPOINT_NAMES, SKELETON, make_coco


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _load_gt(path):
    from pycocotools.coco import COCO

    return _quiet(COCO, str(path))


def self_eval_ap(gt_path: Path, iou_type: str) -> float:
    """AP of the ground truth evaluated against itself (every annotation as a score-1 result)."""
    from pycocotools.cocoeval import COCOeval

    gt = _load_gt(gt_path)
    dts = []
    for ann in gt.dataset["annotations"]:
        d = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0}
        if iou_type == "bbox":
            d["bbox"] = ann["bbox"]
        elif iou_type == "segm":
            rle = gt.annToRLE(ann)
            d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        else:
            if ann["num_keypoints"] == 0 or ann["iscrowd"]:  # ignored as ground truth; no detection either
                continue
            d["keypoints"] = ann["keypoints"]
        dts.append(d)
    dt = _quiet(gt.loadRes, dts)
    ev = COCOeval(gt, dt, iou_type)
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return float(ev.stats[0])


def _instances_by_source(ds: Dataset) -> dict:
    return {(r.split, r.source_id): r for r in ds.records}


# ----------------------------------------------------------------------------- generated trees

@pytest.mark.parametrize("image_root", ["", "images"])
@pytest.mark.parametrize("compressed", [False, True])
def test_parse_generated_tree(tmp_path, image_root, compressed):
    exp = make_coco(tmp_path, image_root=image_root, compressed_rle=compressed)
    ds = coco.parse(exp["root"])
    assert ds.format == "coco" and coco.detect(exp["root"])
    assert {s: len(ids) for s, ids in ds.splits.items()} == exp["images"]
    assert {s: v["objects"] for s, v in ds.stats().items()} == exp["objects"]
    assert [c.id for c in ds.categories] == [1, 3, 7]
    assert sum(int(r.instances.iscrowd.sum()) for r in ds) == exp["crowd"]
    assert ds.info["info"]["description"] == "dsprep fake" and ds.info["task"] == "instances"
    prefix = f"{image_root}/" if image_root else ""
    for r in ds:
        name = r.path.rsplit("/", 1)[1]
        assert r.path == f"{prefix}{r.split}/{name}" and r.id == r.path[:-4]
        assert (exp["root"] / r.path).is_file()
        assert r.source_id == int(name[:-4]) and r.extra["license"] == 1 and "coco_url" in r.extra
        xywh = np.array(exp["boxes"][(r.split, name)], np.float64).reshape(-1, 4)
        # x + w as decimals (issue 12: 64.09 + 267.21 is 331.3, not float64's 331.29999999999995)
        expected = np.array([[x, y, float(Decimal(repr(x)) + Decimal(repr(w))), float(Decimal(repr(y)) + Decimal(repr(h)))]
                             for x, y, w, h in xywh.tolist()], np.float64).reshape(-1, 4)
        assert np.array_equal(r.instances.boxes, expected)
        for segm, crowd in zip(r.instances.segmentation or [], r.instances.iscrowd):
            decoded = decode_segmentation(segm)
            if crowd:
                assert isinstance(decoded["counts"], str if compressed else list)
                assert decoded["size"] == [r.height, r.width]
            else:
                assert all(len(p) >= 6 for p in decoded)


def test_roundtrip_generated_with_images(tmp_path):
    exp = make_coco(tmp_path)
    ds = coco.parse(exp["root"])
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="copy")
    assert report["images"] == len(ds) and report["objects"] == ds.num_objects() and report["lost"] == {}
    assert sorted(report["files"]) == ["annotations/instances_train2017.json", "annotations/instances_val2017.json"]
    back = coco.parse(out)
    assert len(back) == len(ds)
    before, after = _instances_by_source(ds), _instances_by_source(back)
    for key, r in before.items():
        b = after[key]
        assert b.instances == r.instances  # boxes, ids, area, crowd, segmentation (same form)
        assert b.extra == r.extra and (b.width, b.height) == (r.width, r.height)
        assert (out / b.path).is_file() and b.path == f"{b.split}/{r.path.rsplit('/', 1)[1]}"
    for f in report["files"]:
        assert self_eval_ap(out / f, "bbox") == 1.0
        assert self_eval_ap(out / f, "segm") == 1.0


def test_keypoints_tree(tmp_path):
    exp = make_coco(tmp_path, task="person_keypoints", splits=("val2017",), images_per_split=4)
    ds = coco.parse(exp["root"])
    assert ds.info["task"] == "person_keypoints"
    (cat,) = ds.categories
    assert cat.extra["keypoints"] == KEYPOINT_NAMES and cat.extra["skeleton"] == SKELETON  # 1-based, untouched
    raw = json.loads(exp["json"]["val2017"].read_text())
    by_id = {a["id"]: a for a in raw["annotations"]}
    for r in ds:
        inst = r.instances
        assert inst.keypoints.shape == (len(inst), 3, 3)
        for j, aid in enumerate(inst.ids.tolist()):
            assert inst.keypoints[j].ravel().tolist() == by_id[aid]["keypoints"]
            assert inst.extra[j]["num_keypoints"] == by_id[aid]["num_keypoints"]
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="none")
    assert report["files"] == ["annotations/person_keypoints_val2017.json"]
    written = json.loads((out / report["files"][0]).read_text())
    assert written["categories"][0]["skeleton"] == SKELETON
    assert {a["id"]: (a["keypoints"], a["num_keypoints"]) for a in written["annotations"]} == \
        {a["id"]: (a["keypoints"], a["num_keypoints"]) for a in raw["annotations"]}


def test_captions_tree(tmp_path):
    exp = make_coco(tmp_path, task="captions", splits=("val2017",))
    ds = coco.parse(exp["root"])
    assert ds.info["task"] == "captions" and ds.num_objects() == 0
    assert sum(len(r.captions) for r in ds) == exp["captions"]
    r = ds.records[1]
    assert r.captions == [f"caption 0 of {r.path.rsplit('/', 1)[1]}", f"caption 1 of {r.path.rsplit('/', 1)[1]}"]
    assert len(r.extra["caption_ids"]) == 2
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="none")
    assert report["files"] == ["annotations/captions_val2017.json"]
    gt = _load_gt(out / report["files"][0])
    assert len(gt.dataset["annotations"]) == exp["captions"]
    assert sorted(a["id"] for a in gt.dataset["annotations"]) == sorted(
        i for r in ds for i in r.extra["caption_ids"])
    assert "caption_ids" not in gt.dataset["images"][0]


def test_unknown_annotation_keys_kept(tmp_path):
    exp = make_coco(tmp_path, extra_keys=True, splits=("val2017",))
    ds = coco.parse(exp["root"])
    objs = [e for r in ds for e in (r.instances.extra or [])]
    assert len(objs) == ds.num_objects() == exp["objects"]["val2017"]
    assert all(e["attributes"]["color"] == "red" for e in objs)
    out = tmp_path / "out"
    out.mkdir()
    coco.write(ds, out, images="none")
    back = coco.parse(out)
    assert [e for r in back for e in (r.instances.extra or [])] == objs


def test_single_json_with_image_dir(tmp_path):
    exp = make_coco(tmp_path, splits=("val2017",))
    ann = exp["json"]["val2017"]
    moved = tmp_path / "elsewhere.json"
    moved.write_bytes(ann.read_bytes())
    ds = coco.parse(moved, image_dir=exp["root"] / "val2017", check_images=True)
    assert ds.root == exp["root"] / "val2017" and all(r.path.endswith(".jpg") and "/" not in r.path for r in ds)
    assert len(ds) == exp["images"]["val2017"] and ds.splits == {}
    # the file inside a 2017 tree resolves to the tree root
    ds2 = coco.parse(ann)
    assert ds2.root == exp["root"] and ds2.records[0].path.startswith("val2017/")
    assert list(ds2.splits) == ["val2017"]


def test_split_selection_and_unknown_split(tmp_path):
    exp = make_coco(tmp_path)
    ds = coco.parse(exp["root"], split="val2017")
    assert list(ds.splits) == ["val2017"] and len(ds) == exp["images"]["val2017"]
    with pytest.raises(ValueError, match="Did you mean 'val2017'"):
        coco.parse(exp["root"], split="val207")


def test_write_without_splits_and_voc_like_records(tmp_path):
    """VOC-style records: difficult, per-object extras, decimals, no areas, no ids, a semantic mask."""
    inst = Instances(
        boxes=[[0.1, 0.2, 0.30000000000000004, 10.0], [4.0, 5.0, 20.0, 12.5], [1.0, 1.0, 9.0, 9.0]],
        labels=[1, 2, 1], difficult=[False, True, False],
        segmentation=[None, None, [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0, 9.0]]],
        extra=[{"pose": "Left", "truncated": 1}, {"pose": "Unspecified", "parts": [{"name": "head"}]}, {}])
    rec = Record("JPEGImages/000005", "JPEGImages/000005.jpg", 32, 24, None, instances=inst,
                 mask_path="SegmentationClass/000005.png", extra={"segmented": 1})
    ds = Dataset([Category(1, "cat"), Category(2, "dog")], [rec], format="voc")
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="none")
    assert report["files"] == ["annotations/instances_all.json"]
    assert report["lost"] == {"semantic mask PNGs (mask_path)": 1}
    doc = json.loads((out / report["files"][0]).read_text())
    assert doc["info"] and doc["licenses"] == []
    anns = doc["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert anns[0]["bbox"] == [0.1, 0.2, 0.2, 9.8]  # shortest decimals that give back x2, y2
    assert [a["difficult"] for a in anns] == [0, 1, 0]
    assert anns[0]["area"] == pytest.approx(0.2 * 9.8) and anns[2]["area"] == 64.0  # polygon area (pycocotools)
    assert anns[0]["segmentation"] == [] and anns[0]["pose"] == "Left" and anns[1]["parts"] == [{"name": "head"}]
    assert doc["images"][0]["segmented"] == 1 and doc["images"][0]["file_name"] == "000005.jpg"
    back = coco.parse(out)
    b = back.records[0].instances
    # x2 = 0.1 + 0.2 read as decimals: 0.3 (the record's 0.30000000000000004 is float's sum of the same two)
    assert b.boxes[0].tolist() == [0.1, 0.2, 0.3, 10.0] and np.array_equal(b.boxes[1:], inst.boxes[1:])
    assert b.difficult.tolist() == [False, True, False]
    assert b.extra == inst.extra
    assert self_eval_ap(out / report["files"][0], "bbox") == 1.0


def test_write_renumbers_duplicate_basenames(tmp_path):
    recs = [Record("a/x", "a/x.jpg", 8, 8, "train", instances=Instances([[0, 0, 4, 4]], [1])),
            Record("b/x", "b/x.jpg", 8, 8, "train", instances=Instances([[1, 1, 4, 4]], [1]))]
    out = tmp_path / "out"
    out.mkdir()
    coco.write(Dataset([Category(1, "a")], recs), out, images="none")
    doc = json.loads((out / "annotations/instances_train.json").read_text())
    assert [im["file_name"] for im in doc["images"]] == ["a/x.jpg", "b/x.jpg"]
    assert [im["id"] for im in doc["images"]] == [1, 2]


def test_shared_image_entry_takes_each_splits_file_name(tmp_path):
    """An image whose basename collides in one split (train: a/x, b/x) but not in another (val: a/x
    alone) is written once, with the same id, yet named per file: a/x.jpg in train, x.jpg in val."""
    recs = [Record("a/x", "a/x.jpg", 8, 8, instances=Instances([[0, 0, 4, 4]], [1])),
            Record("b/x", "b/x.jpg", 8, 8, instances=Instances([[1, 1, 4, 4]], [1]))]
    out = tmp_path / "out"
    out.mkdir()
    coco.write(Dataset([Category(1, "a")], recs, splits={"train": ["a/x", "b/x"], "val": ["a/x"]}), out,
               images="none")
    train = json.loads((out / "annotations/instances_train.json").read_text())["images"]
    val = json.loads((out / "annotations/instances_val.json").read_text())["images"]
    assert [(im["id"], im["file_name"]) for im in train] == [(1, "a/x.jpg"), (2, "b/x.jpg")]
    assert [(im["id"], im["file_name"]) for im in val] == [(1, "x.jpg")]


def test_caption_ids_numbered_when_the_source_has_none_or_repeats_them(tmp_path):
    recs = [Record("a", "a.jpg", 8, 8, captions=["one", "two"]),
            Record("b", "b.jpg", 8, 8, captions=["three"], extra={"caption_ids": [5]}),
            Record("c", "c.jpg", 8, 8, captions=["four"], extra={"caption_ids": [7]})]
    out = tmp_path / "out"
    out.mkdir()
    coco.write(Dataset([], recs), out, images="none")
    anns = json.loads((out / "annotations/captions_all.json").read_text())["annotations"]
    assert [(a["id"], a["caption"]) for a in anns] == [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
    out2 = tmp_path / "out2"
    out2.mkdir()
    coco.write(Dataset([], recs[1:]), out2, images="none")  # valid and unique: kept
    anns = json.loads((out2 / "annotations/captions_all.json").read_text())["annotations"]
    assert [a["id"] for a in anns] == [5, 7]


def _split_dataset(image_ids=(None,) * 4, ann_ids=None) -> Dataset:
    """Four records, train = 0, 1; val = 2, 3; trainval = all four, interleaved (as VOC lists them)."""
    recs = []
    for i in range(4):
        boxes = [[1.0 + k, 1.0 + i, 6.0 + k, 7.0 + i] for k in range(i % 2 + 1)]
        ids = None if ann_ids is None else ann_ids[i]
        recs.append(Record(f"JPEGImages/{i:06d}", f"JPEGImages/{i:06d}.jpg", 16, 16, source_id=image_ids[i],
                           instances=Instances(boxes, [1 + i % 2] * len(boxes), ids=ids,
                                               extra=[{"pose": "Left"}] * len(boxes))))
    names = [r.id for r in recs]
    splits = {"train": names[:2], "val": names[2:], "trainval": [names[0], names[2], names[1], names[3]]}
    return Dataset([Category(1, "cat"), Category(2, "dog")], recs, splits=splits, format="voc")


def _written_ids(ds: Dataset, out: Path) -> dict:
    """{split: ({file_name: image id}, {(file_name, bbox): annotation id})}, after checking each file."""
    out.mkdir()
    coco.write(ds, out, images="none")
    got = {}
    for split in ds.splits:
        path = out / f"annotations/instances_{split}.json"
        doc = json.loads(path.read_text())
        img = {im["id"]: im["file_name"] for im in doc["images"]}
        ann_ids = [a["id"] for a in doc["annotations"]]
        assert len(img) == len(doc["images"]) and len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
        assert self_eval_ap(path, "bbox") == 1.0
        got[split] = ({name: i for i, name in img.items()},
                      {(img[a["image_id"]], tuple(a["bbox"])): a["id"] for a in doc["annotations"]})
    return got


def test_split_files_share_ids_when_the_source_has_none(tmp_path):
    """No source ids: one dataset-wide numbering, so an image and its objects have the same ids
    in train and trainval (the writer builds them once for both files)."""
    ds = _split_dataset()
    got = _written_ids(ds, tmp_path / "out")
    train, val, trainval = got["train"], got["val"], got["trainval"]
    assert {**train[0], **val[0]} == trainval[0] and {**train[1], **val[1]} == trainval[1]
    assert sorted(trainval[0].values()) == [1, 2, 3, 4] and sorted(trainval[1].values()) == [1, 2, 3, 4, 5, 6]
    assert train[0] == {"000000.jpg": 1, "000001.jpg": 2}  # numbered in order of first appearance
    parsed = coco.parse(tmp_path / "out")
    assert len(parsed) == 4  # one record per image, listed in each of its splits (issue 12)
    by_id = parsed.record_by_id()
    back = {by_id[i].path.rpartition("/")[2]: by_id[i] for i in parsed.splits["trainval"]}
    assert len(back) == 4 and set(parsed.splits["train"]) | set(parsed.splits["val"]) == set(parsed.splits["trainval"])
    for r in ds.records:
        b = back[r.path.rpartition("/")[2]].instances
        assert np.array_equal(b.boxes, r.instances.boxes) and b.extra == r.instances.extra


def test_split_files_keep_dataset_wide_source_ids(tmp_path):
    ds = _split_dataset(image_ids=(10, 0, 12, 13), ann_ids=[[7], [3, 4], [20], [5, 6]])
    got = _written_ids(ds, tmp_path / "out")
    assert got["trainval"][0] == {"000000.jpg": 10, "000001.jpg": 0, "000002.jpg": 12, "000003.jpg": 13}
    assert sorted(got["trainval"][1].values()) == [3, 4, 5, 6, 7, 20]
    assert {**got["train"][1], **got["val"][1]} == got["trainval"][1]


def test_split_files_keep_per_split_source_ids(tmp_path):
    """Ids unique only within each split (Datumaro numbers every JSON 1..N): each file keeps its own,
    and a file where they collide (trainval) is numbered 1..N."""
    ds = _split_dataset(image_ids=(1, 2, 1, 2), ann_ids=[[1], [2, 3], [1], [2, 3]])
    got = _written_ids(ds, tmp_path / "out")
    assert got["train"][0] == {"000000.jpg": 1, "000001.jpg": 2}
    assert got["val"][0] == {"000002.jpg": 1, "000003.jpg": 2}
    assert sorted(got["val"][1].values()) == [1, 2, 3]
    assert sorted(got["trainval"][0].values()) == [1, 2, 3, 4]
    assert sorted(got["trainval"][1].values()) == [1, 2, 3, 4, 5, 6]


# ----------------------------------------------------------------------------- bad input

def _tree_with(tmp_path, mutate) -> Path:
    exp = make_coco(tmp_path, splits=("val2017",), images_per_split=3)
    path = exp["json"]["val2017"]
    doc = json.loads(path.read_text())
    text = mutate(doc)
    path.write_text(text if isinstance(text, str) else json.dumps(doc))
    return path


def _first_ann(doc, crowd=None):
    return next(a for a in doc["annotations"] if crowd is None or a["iscrowd"] == crowd)


BAD = [
    # (name, mutation, error class, text in message)
    ("not an object", lambda d: json.dumps([d["annotations"][0]]), MalformedFileError, "found a JSON array"),
    ("no images", lambda d: json.dumps({"annotations": [], "categories": []}), MalformedFileError, "no 'images'"),
    ("json syntax", lambda d: json.dumps(d, indent=1)[:-30], MalformedFileError, "invalid JSON"),
    ("missing image id", lambda d: _first_ann(d).update(image_id=999999), InvalidAnnotationError,
     "image_id 999999 is not in 'images'"),
    ("duplicate image id", lambda d: d["images"][1].update(id=d["images"][0]["id"]), InvalidAnnotationError,
     "duplicate image id"),
    ("short polygon", lambda d: _first_ann(d, 0).update(segmentation=[[1, 2, 3, 4]]), InvalidAnnotationError,
     "at least 3"),
    ("rle size", lambda d: _first_ann(d, 1)["segmentation"].update(size=[3, 3]), InvalidAnnotationError,
     "disagrees with the image"),
    ("unknown category", lambda d: _first_ann(d).update(category_id=42), InvalidAnnotationError,
     "unknown category_id 42"),
    ("non-numeric bbox", lambda d: _first_ann(d).update(bbox=[1, "a", 3, 4]), InvalidAnnotationError,
     "bbox"),
]


@pytest.mark.parametrize("name,mutate,error,text", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises(tmp_path, name, mutate, error, text):
    path = _tree_with(tmp_path, mutate)
    with pytest.raises(error) as info:
        coco.parse(path.parent.parent)
    msg = str(info.value)
    assert text in msg and str(path) in msg
    if error is InvalidAnnotationError and "image id" not in text and "duplicate" not in text:
        assert "annotation id" in msg


def test_json_syntax_error_names_line(tmp_path):
    path = _tree_with(tmp_path, lambda d: json.dumps(d, indent=1).replace('"iscrowd"', 'iscrowd', 1))
    with pytest.raises(MalformedFileError, match=r"line \d+, column \d+"):
        coco.parse(path)


@pytest.mark.parametrize("name,mutate,error,text", BAD[3:], ids=[b[0] for b in BAD[3:]])
def test_bad_input_warn_skips_and_counts(tmp_path, name, mutate, error, text):
    exp_objects = make_coco(tmp_path / "ref", splits=("val2017",), images_per_split=3)["objects"]["val2017"]
    path = _tree_with(tmp_path, mutate)
    ds = coco.parse(path.parent.parent, on_error="warn")
    if name == "duplicate image id":  # the image is dropped, and so is its one annotation (its image id is gone)
        assert ds.info["skipped"] == 2 and len(ds) == 2
    else:
        assert ds.info["skipped"] == 1 and len(ds) == 3
    assert ds.num_objects() == exp_objects - 1


def test_missing_image_file(tmp_path):
    exp = make_coco(tmp_path, splits=("val2017",))
    victim = next((exp["root"] / "val2017").iterdir())
    victim.unlink()
    ds = coco.parse(exp["root"])  # annotations only: not checked
    assert len(ds) == exp["images"]["val2017"]
    with pytest.raises(MissingFileError, match=victim.name):
        coco.parse(exp["root"], check_images=True)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MissingFileError, match=victim.name):
        coco.write(ds, out, images="link")
    assert len(coco.parse(exp["root"], check_images=True, on_error="warn")) == exp["images"]["val2017"] - 1


def test_results_files_are_not_ground_truth(fixtures):
    for path in sorted((fixtures / "cocoapi" / "results").glob("*.json")):
        assert not coco.detect(path)
        with pytest.raises(MalformedFileError, match="results"):
            coco.parse(path)


def test_detect(tmp_path, fixtures):
    d = fixtures / "datumaro/tests/assets/coco_dataset"
    assert coco.detect(d / "coco") and coco.detect(d / "coco_roboflow") and coco.detect(d / "mmdet_coco")
    assert coco.detect(fixtures / "mmdetection/tests/data/coco_sample.json")
    assert not coco.detect(d / "coco_panoptic") and not coco.detect(tmp_path)
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert not coco.detect(tmp_path / "x.json")


# ----------------------------------------------------------------------------- real fixtures

def test_tinycoco(tmp_path, fixtures):
    root = fixtures / "super-gradients/tests/data/tinycoco"
    raw = {s: json.loads((root / f"annotations/instances_{s}.json").read_text()) for s in ("train2017", "val2017")}
    ds = coco.parse(root)
    assert {s: len(v) for s, v in ds.splits.items()} == {s: len(d["images"]) for s, d in raw.items()}
    assert ds.num_objects() == sum(len(d["annotations"]) for d in raw.values())
    records = _instances_by_source(ds)
    all_anns = [(s, a) for s, d in raw.items() for a in d["annotations"]]
    crowd = [a for _, a in all_anns if a["iscrowd"]]
    assert len(crowd) == 5 and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    assert sum(1 for _, a in all_anns if not a["iscrowd"] and len(a["segmentation"]) > 1) == 22
    empty = [im for s, d in raw.items() for im in d["images"]
             if not any(a["image_id"] == im["id"] for a in d["annotations"])]
    assert len(empty) == 2 and all(len(records[(s, im["id"])].instances) == 0
                                   for s in raw for im in empty if (s, im["id"]) in records)
    for split, a in all_anns:
        inst = records[(split, a["image_id"])].instances
        j = inst.ids.tolist().index(a["id"])
        x, y, w, h = a["bbox"]
        assert inst.boxes[j].tolist() == [x, y, float(Decimal(repr(x)) + Decimal(repr(w))),
                                          float(Decimal(repr(y)) + Decimal(repr(h)))]  # decimals, not float's sum
        assert inst.area[j] == a["area"] and inst.labels[j] == a["category_id"]
        assert bool(inst.iscrowd[j]) == bool(a["iscrowd"])
        assert decode_segmentation(inst.segmentation[j]) == a["segmentation"]
    assert max(a["id"] for a in crowd) > 2**31  # ids past int32 survive as int64
    r = records[("val2017", raw["val2017"]["images"][0]["id"])]
    assert r.path.startswith("images/val2017/") and r.extra["flickr_url"]

    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="link")
    for split, d in raw.items():
        written = json.loads((out / f"annotations/instances_{split}.json").read_text())
        assert [(a["id"], a["bbox"], a["area"], a["iscrowd"], a["category_id"], a["segmentation"])
                for a in written["annotations"]] == \
            [(a["id"], a["bbox"], a["area"], a["iscrowd"], a["category_id"], a["segmentation"])
             for a in sorted(d["annotations"], key=lambda a: [i["id"] for i in d["images"]].index(a["image_id"]))]
        assert written["categories"] == d["categories"]
        assert self_eval_ap(out / f"annotations/instances_{split}.json", "bbox") == 1.0
        assert self_eval_ap(out / f"annotations/instances_{split}.json", "segm") == 1.0
    assert (out / "val2017" / raw["val2017"]["images"][0]["file_name"]).is_file()
    assert report["objects"] == ds.num_objects()


def test_pose_minicoco(tmp_path, fixtures):
    root = fixtures / "super-gradients/tests/data/pose_minicoco"
    raw = json.loads((root / "annotations/person_keypoints_val2017.json").read_text())
    assert "info" not in raw and "licenses" not in raw
    ds = coco.parse(root)
    assert ds.info["task"] == "person_keypoints" and len(ds) == len(raw["images"])
    assert ds.categories[0].extra["skeleton"] == raw["categories"][0]["skeleton"]  # 1-based as stored
    kp = {a["id"]: a for a in raw["annotations"]}
    zero = 0
    for r in ds:
        for j, aid in enumerate(r.instances.ids.tolist()):
            assert r.instances.keypoints[j].ravel().tolist() == kp[aid]["keypoints"]
            zero += r.instances.extra[j]["num_keypoints"] == 0
    assert zero == sum(a["num_keypoints"] == 0 for a in raw["annotations"]) == 25
    out = tmp_path / "out"
    out.mkdir()
    coco.write(ds, out, images="none")
    f = out / "annotations/person_keypoints_val2017.json"
    written = json.loads(f.read_text())
    assert "info" in written and "licenses" in written  # pycocotools 2.0.9/2.0.10 loadRes needs 'info'
    assert self_eval_ap(f, "keypoints") == 1.0
    assert self_eval_ap(f, "bbox") == 1.0


def test_datumaro_variants(tmp_path, fixtures):
    base = fixtures / "datumaro/tests/assets/coco_dataset"
    for variant in ("coco", "coco_instances", "coco_roboflow", "mmdet_coco"):
        ds = coco.parse(base / variant)
        assert [c.id for c in ds.categories] == [1, 2, 4], variant  # non-contiguous, kept
        assert sorted(ds.splits) == ["train", "val"] and ds.num_objects() == 3
        r = next(r for r in ds if r.split == "train")
        assert r.path in ("train/a.jpg", "images/train/a.jpg") and (base / variant / r.path).is_file()
        assert r.instances.boxes.tolist() == [[2.0, 2.0, 5.0, 3.0]]
        assert r.instances.segmentation is None  # "segmentation": [] on a bbox-only object
        out = tmp_path / variant
        out.mkdir()
        coco.write(ds, out, images="none")
        back = coco.parse(out)
        assert [(r.source_id, r.instances) for r in back] == [(r.source_id, r.instances) for r in ds]
        written = json.loads((out / "annotations/instances_train.json").read_text())
        assert written["annotations"][0]["segmentation"] == []
    val = next(r for r in coco.parse(base / "coco") if r.split == "val")
    crowd = val.instances.iscrowd.tolist().index(True)
    assert isinstance(decode_segmentation(val.instances.segmentation[crowd])["counts"], list)
    assert val.instances.extra is not None  # the non-standard 'attributes' dict
    kp = coco.parse(base / "coco_person_keypoints")
    assert kp.categories[0].extra["skeleton"] == [[0, 1], [1, 2]]  # Datumaro's 0-based pairs, not renumbered
    caps = coco.parse(base / "coco_captions")
    assert caps.info["task"] == "captions" and [r.captions for r in caps if r.split == "train"] == [["hello"]]


def test_labelme_ids_zero(tmp_path, fixtures):
    path = fixtures / "labelme/examples/instance_segmentation/data_dataset_coco/annotations.json"
    raw = json.loads(path.read_text())
    ds = coco.parse(path, check_images=True)
    assert ds.records[0].path == raw["images"][0]["file_name"]  # 'JPEGImages/...' relative to the JSON folder
    assert ds.records[0].source_id == 0 and 0 in ds.records[0].instances.ids.tolist()
    assert ds.info["top_level"] == {"type": "instances"}
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="link")
    written = json.loads((out / report["files"][0]).read_text())
    assert sorted(a["id"] for a in written["annotations"]) == list(range(1, len(raw["annotations"]) + 1))
    assert [im["id"] for im in written["images"]] == [im["id"] for im in raw["images"]]  # image id 0 is safe
    assert self_eval_ap(out / report["files"][0], "bbox") == 1.0
    assert self_eval_ap(out / report["files"][0], "segm") == 1.0


def test_mmdet_sample_without_iscrowd(tmp_path, fixtures):
    path = fixtures / "mmdetection/tests/data/coco_sample.json"
    raw = json.loads(path.read_text())
    assert all("iscrowd" not in a for a in raw["annotations"])
    ds = coco.parse(path)
    assert ds.num_objects() == len(raw["annotations"])
    assert [e["score"] for r in ds for e in (r.instances.extra or [])] == [a["score"] for a in raw["annotations"]]
    out = tmp_path / "out"
    out.mkdir()
    report = coco.write(ds, out, images="none")
    written = json.loads((out / report["files"][0]).read_text())
    assert all(a["iscrowd"] == 0 and "area" in a for a in written["annotations"])
    assert self_eval_ap(out / report["files"][0], "bbox") == 1.0
    assert math.isclose(written["annotations"][0]["area"], raw["annotations"][0]["area"])


def test_gc_left_enabled_and_no_annotations_key(tmp_path):
    import gc

    path = tmp_path / "image_info_test.json"
    path.write_text(json.dumps({"images": [{"id": 3, "file_name": "a.jpg", "width": 8, "height": 8}],
                                "categories": [{"id": 1, "name": "x"}]}))
    assert gc.isenabled()
    ds = coco.parse(path)
    assert gc.isenabled()
    assert len(ds) == 1 and ds.num_objects() == 0 and ds.records[0].source_id == 3


@pytest.mark.parametrize("dump", [
    lambda d: json.dumps(d, separators=(",", ":")),  # compact, as the real files: the vectorized check
    lambda d: json.dumps(d, indent=2),  # pretty-printed: every polygon's commas are counted
], ids=["compact", "indented"])
@pytest.mark.parametrize("polygon", [[1, 2, 3, 4], [1, 2, 3, 4, 5], [], [1.123456789012345] * 5])
def test_short_polygon_in_any_json_layout(tmp_path, dump, polygon):
    def mutate(doc):
        ann = _first_ann(doc, 0)
        ann["segmentation"] = [[0, 0, 5, 0, 5, 5, 0, 5], polygon]
        return dump(doc)

    path = _tree_with(tmp_path, mutate)
    with pytest.raises(InvalidAnnotationError, match="at least 3") as info:
        coco.parse(path)
    assert f"annotation id {_first_ann(json.loads(path.read_text()), 0)['id']}" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "instances_val.json"
    path.write_text("")
    with pytest.raises(MalformedFileError, match="empty"):
        coco.parse(path)


def test_write_compress_rle(tmp_path, fixtures):
    from pycocotools import mask as mask_utils

    ds = coco.parse(fixtures / "super-gradients/tests/data/tinycoco", split="val2017")
    out = tmp_path / "out"
    out.mkdir()
    coco.write(ds, out, images="none", compress_rle=True)
    gt = _load_gt(out / "annotations/instances_val2017.json")
    crowd = [a for a in gt.dataset["annotations"] if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"]["counts"], str) for a in crowd)
    src = {int(i): s for r in ds for i, s, c in zip(r.instances.ids, r.instances.segmentation, r.instances.iscrowd)
           if c}
    for a in crowd:
        raw = decode_segmentation(src[a["id"]])
        before = mask_utils.decode(mask_utils.frPyObjects(raw, *raw["size"]))
        assert np.array_equal(gt.annToMask(a), before)


def test_benchmark_generator_small_scale(tmp_path):
    """The train2017-sized generator, at 0.2% scale: valid COCO with the counts it announces."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts/bench/gen_coco_train2017.py"
    out = tmp_path / "instances_train2017.json"
    proc = subprocess.run([sys.executable, str(script), str(out), "--scale", "0.002"], capture_output=True,
                          text=True, check=True)
    raw = json.loads(out.read_text())
    assert f"{len(raw['images'])} images, {len(raw['annotations'])} annotations" in proc.stderr
    ds = coco.parse(out)
    assert len(ds) == len(raw["images"]) and ds.num_objects() == len(raw["annotations"])
    assert sum(int(r.instances.iscrowd.sum()) for r in ds) == sum(a["iscrowd"] for a in raw["annotations"]) > 0
    gt = _load_gt(out)
    crowd = next(a for a in raw["annotations"] if a["iscrowd"])
    assert gt.annToMask(crowd).sum() == crowd["area"]  # RLE counts sum to h*w and decode


def test_renumbered_annotation_ids_are_named_by_record_and_object():
    # source ids 5, -1 (none) | none | 7, 9 | 9, written as 5, 6 | 8, 9 | 10: (b, 0) and (c, 0) lost theirs
    def rec(rid, ids):
        return Record(rid, f"{rid}.jpg", 8, 8, instances=Instances([[0, 0, 4, 4]] * len(ids), [1] * len(ids),
                                                                    ids=ids))
    recs = [rec("a", [5, -1]), rec("empty", []), rec("b", [7, 9]), rec("c", [9])]
    out: set = set()
    coco._count_renumbered(recs, [5, 6, 8, 9, 10], out)
    assert out == {("b", 0), ("c", 0)}
