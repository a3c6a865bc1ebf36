"""KITTI object format: the real kitti_object_vis labels, generated trees, the box convention,
round trips with COCO and VOC, and one test per row of docs/formats/kitti.md's bad-input table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsprep import convert
from dsprep.cli import main
from dsprep.errors import (DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, MissingFileError,
                           PathEscapeError, UnknownNameError)
from dsprep.formats import detect_format, kitti, voc

from fakes_kitti import ROWS, SIZE, make_kitti


@pytest.fixture()
def fixture_root(fixtures) -> Path:
    return fixtures / "kitti_object_vis/data/object"


def _rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- the real files

def test_fixture_counts_boxes_and_3d_fields_match_the_files(fixture_root):
    ds = kitti.parse(fixture_root, workers=1)
    label_dir = fixture_root / "training/label_2"
    files = sorted(label_dir.glob("*.txt"))
    assert [r.id for r in ds.records] == [f"training/image_2/{p.stem}" for p in files]
    assert ds.num_objects() == sum(len(_rows(p)) for p in files) == 10
    names = {c.id: c.name for c in ds.categories}
    # the nine types are categories whatever the files use (Van, Tram... are not in them): validate's builtins
    assert [names[i] for i in ds.info["builtin_categories"]] == list(kitti.KITTI_CLASSES)
    for rec, path in zip(ds.records, files):
        rows = _rows(path)
        inst = rec.instances
        assert [names[int(v)] for v in inst.labels] == [r[0] for r in rows]
        # the box is the row's left top right bottom, unshifted (docs/formats/kitti.md)
        assert inst.boxes.tolist() == [[float(v) for v in r[4:8]] for r in rows]
        assert inst.iscrowd.tolist() == [r[0] == "DontCare" for r in rows]
        for ex, r in zip(inst.extra, rows):
            k = ex["kitti"]
            assert k["dimensions"] == [float(v) for v in r[8:11]]
            assert k["location"] == [float(v) for v in r[11:14]]
            assert (k["truncated"], k["occluded"], k["alpha"], k["rotation_y"]) == (
                float(r[1]), int(r[2]), float(r[3]), float(r[14]))
        assert rec.extra["kitti_calib"] == f"training/calib/{path.stem}.txt"
        assert (rec.width, rec.height) == (0, 0)  # the fixture has no images: KITTI labels hold no size
    dontcare = ds.records[1].instances
    assert int(dontcare.iscrowd.sum()) == 4 and names[int(dontcare.labels[3])] == "DontCare"
    assert ds.splits == {"training": [r.id for r in ds.records]}


def test_fixture_round_trip_is_byte_identical(fixture_root, tmp_path):
    (tmp_path / "out").mkdir()
    report = kitti.write(kitti.parse(fixture_root, workers=1), tmp_path / "out", images="none")
    assert report == {"images": 3, "objects": 10, "lost": {}, "files": 3}
    for sub in ("label_2", "calib"):
        for src in sorted((fixture_root / "training" / sub).glob("*.txt")):
            assert (tmp_path / "out/training" / sub / src.name).read_bytes() == src.read_bytes()
    assert not (tmp_path / "out/ImageSets").exists()  # the source had no lists


def test_fixture_to_coco_boxes_are_kitti_corners(fixture_root, tmp_path):
    convert("kitti", fixture_root, "coco", tmp_path / "coco", images="none", workers=1)
    doc = json.loads((tmp_path / "coco/annotations/instances_training.json").read_text())
    first = _rows(fixture_root / "training/label_2/000000.txt")[0]
    x0, y0, x1, y1 = (float(v) for v in first[4:8])
    ann = doc["annotations"][0]
    assert ann["bbox"][:2] == [x0, y0] and ann["bbox"][0] + ann["bbox"][2] == x1
    assert abs(ann["bbox"][1] + ann["bbox"][3] - y1) < 1e-9
    assert sum(a["iscrowd"] for a in doc["annotations"]) == 4


# --------------------------------------------------------------------------- generated trees

def test_generated_tree_lists_sizes_and_testing(tmp_path):
    exp = make_kitti(tmp_path)
    ds = kitti.parse(exp["root"], workers=2)
    assert list(ds.splits) == ["train", "val", "test"]
    assert ds.splits["train"] == [f"training/image_2/{s}" for s in exp["train"]]
    assert ds.splits["val"] == [f"training/image_2/{s}" for s in exp["val"]]
    assert ds.splits["test"] == [f"testing/image_2/{s}" for s in exp["test"]]
    assert len(ds) == len(exp["labels"]) + len(exp["test"])
    assert ds.num_objects() == exp["objects"]
    assert all((r.width, r.height) == SIZE for r in ds.records)
    testing = [r for r in ds.records if r.path.startswith("testing/")]
    assert all(len(r.instances) == 0 and r.extra["kitti_no_label_file"] for r in testing)
    names = [c.name for c in ds.categories]
    assert names[:9] == list(kitti.KITTI_CLASSES) and names[9:] == ["traffic_sign"]
    assert [r.split for r in ds.records] == ["train", "val"] * (len(exp["labels"]) // 2) + ["test"] * len(exp["test"])


def test_generated_round_trip_keeps_everything(tmp_path):
    exp = make_kitti(tmp_path, score=True)
    ds = kitti.parse(exp["root"], workers=1)
    out = tmp_path / "out"
    out.mkdir()
    report = kitti.write(ds, out, images="copy")
    assert report["lost"] == {} and report["images"] == len(ds) and report["objects"] == exp["objects"]
    for stem, rows in exp["labels"].items():
        assert (out / f"training/label_2/{stem}.txt").read_text() == "".join(r + "\n" for r in rows)
        assert (out / f"training/image_2/{stem}.png").read_bytes() == (
            exp["root"] / f"training/image_2/{stem}.png").read_bytes()
    assert not list((out / "testing").glob("label_2/*"))  # testing images had no labels
    for name in ("train", "val", "test"):
        assert (out / f"ImageSets/{name}.txt").read_text() == (exp["root"] / f"ImageSets/{name}.txt").read_text()
    again = kitti.parse(out, workers=1)
    assert again.splits == ds.splits and again.categories == ds.categories
    assert [r.instances for r in again.records] == [r.instances for r in ds.records]
    assert [r.instances.extra for r in again.records] == [r.instances.extra for r in ds.records]
    assert again.records[0].instances.extra[0]["kitti"]["score"] == 0.9


def test_split_reads_one_list_and_names_unknown_ones(tmp_path):
    exp = make_kitti(tmp_path)
    val = kitti.parse(exp["root"], split="val", workers=1)
    assert [r.id for r in val.records] == [f"training/image_2/{s}" for s in exp["val"]]
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        kitti.parse(exp["root"], split="vall", workers=1)


def test_training_folder_alone_and_detection(tmp_path):
    exp = make_kitti(tmp_path, lists=False)
    assert kitti.detect(exp["root"]) and kitti.detect(exp["root"] / "training")
    assert detect_format(exp["root"]) == detect_format(exp["root"] / "training") == "kitti"
    alone = kitti.parse(exp["root"] / "training", workers=1)
    assert [r.id for r in alone.records][:1] == ["image_2/000000"] and alone.splits == {}
    assert alone.num_objects() == exp["objects"]
    assert not kitti.detect(tmp_path / "nothing") and not kitti.detect(exp["root"] / "ImageSets")


def test_types_option_refuses_other_types(tmp_path):
    exp = make_kitti(tmp_path)
    with pytest.raises(InvalidAnnotationError, match=r"000003.txt: object type 'traffic_sign' is not one of types="):
        kitti.parse(exp["root"], types=kitti.KITTI_CLASSES, workers=1)
    ds = kitti.parse(exp["root"], types=[*kitti.KITTI_CLASSES, "traffic_sign"], workers=1)
    assert ds.num_objects() == exp["objects"]


def test_warn_skips_a_bad_file_and_counts_it(tmp_path):
    exp = make_kitti(tmp_path)
    (exp["root"] / "training/label_2/000001.txt").write_text("Car 0 0 0 1 2 3\n")
    ds = kitti.parse(exp["root"], on_error="warn", workers=1)
    assert ds.info["skipped"] == 1  # once, though ImageSets/val.txt names it too
    assert "training/image_2/000001" not in {r.id for r in ds.records} | set(ds.splits["val"])
    assert ds.num_objects() == exp["objects"] - len(exp["labels"]["000001"])


# --------------------------------------------------------------------------- other formats

def test_coco_round_trip_gives_back_the_label_files(tmp_path):
    exp = make_kitti(tmp_path)
    convert("kitti", exp["root"], "coco", tmp_path / "coco", images="none", workers=1)
    report = convert("coco", tmp_path / "coco", "kitti", tmp_path / "back", images="none", workers=1)
    for stem, rows in exp["labels"].items():
        assert (tmp_path / f"back/training/label_2/{stem}.txt").read_text() == "".join(r + "\n" for r in rows)
    assert report["lost"]["calibration files (not found beside the source)"] == len(exp["labels"])


def test_lvis_round_trip_gives_back_the_label_files_and_splits(tmp_path):
    exp = make_kitti(tmp_path)
    src = kitti.parse(exp["root"], workers=1)
    convert("kitti", exp["root"], "lvis", tmp_path / "lvis", images="none", workers=1)
    convert("lvis", tmp_path / "lvis", "kitti", tmp_path / "back", images="none", workers=1)
    for stem, rows in exp["labels"].items():
        assert (tmp_path / f"back/training/label_2/{stem}.txt").read_text() == "".join(r + "\n" for r in rows)
    back = kitti.parse(tmp_path / "back", workers=1)
    assert {s: [i.rpartition("/")[2] for i in ids] for s, ids in back.splits.items()} == \
        {s: [i.rpartition("/")[2] for i in ids] for s, ids in src.splits.items()}


def test_voc_keeps_boxes_and_reports_the_3d_fields_lost(tmp_path):
    exp = make_kitti(tmp_path, lists=False, n_test=0)  # testing/000000 would share training/000000's VOC name
    ds = kitti.parse(exp["root"], workers=1)
    report = convert("kitti", exp["root"], "voc", tmp_path / "voc", images="none", workers=1)
    assert report["lost"]["object fields (kitti)"] == exp["objects"]
    back = voc.parse(tmp_path / "voc", workers=1)
    by_stem = {r.id.rpartition("/")[2]: r for r in back.records}
    for rec in ds.records:
        got = by_stem[rec.path.rpartition("/")[2][:-4]].instances
        assert np.array_equal(got.boxes, rec.instances.boxes)  # VOC xmin = left + 1, read back - 1
        assert got.iscrowd.tolist() == rec.instances.iscrowd.tolist()


def test_objects_of_other_formats_get_kittis_unknown_markers(tmp_path):
    from fakes_coco import make_coco

    exp = make_coco(tmp_path, splits=("val2017",), images_per_split=3)
    report = convert("coco", exp["root"], "kitti", tmp_path / "k", images="none", workers=1)
    assert report["lost"]["segmentation (polygons, RLE)"] == sum(exp["objects"].values())
    assert exp["crowd"] > 0
    assert report["lost"]["crowd objects (written as DontCare regions: their class is lost)"] == exp["crowd"]
    rows = [r for p in sorted((tmp_path / "k/training/label_2").glob("*.txt")) for r in _rows(p)]
    assert len(rows) == sum(exp["objects"].values())
    assert all(r[1:4] == ["-1", "-1", "-10"] or r[0] == "DontCare" for r in rows)
    assert all(r[8:15] == ["-1", "-1", "-1", "-1000", "-1000", "-1000", "-10"] for r in rows)
    assert (tmp_path / "k/ImageSets/val2017.txt").read_text().count("\n") == exp["images"]["val2017"]


def test_names_keep_stems_rename_the_images_sharing_one_and_renumber_on_request(tmp_path):
    from PIL import Image

    from dsprep.records import Category, Dataset, Instances, Record
    for d in ("train", "val", "test"):
        (tmp_path / "src" / d).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(tmp_path / "src" / d / "x.jpg")
    Image.new("RGB", (8, 6)).save(tmp_path / "src/train/y.jpg")
    recs = [Record(f"{d}/{n}", f"{d}/{n}.jpg", 8, 6, d, instances=Instances(boxes=[[1, 1, 4, 4]], labels=[1]))
            for d, n in (("train", "x"), ("val", "x"), ("test", "x"), ("train", "y"))]
    ds = Dataset([Category(1, "Car")], recs, splits={"train": ["train/x", "train/y"], "val": ["val/x"],
                                                     "test": ["test/x"]}, root=tmp_path / "src")
    (tmp_path / "o").mkdir()
    report = kitti.write(ds, tmp_path / "o", images="link")
    assert report["lost"]["file names (shared with another image of the folder, or not a plain name: written as the "
                          "record id)"] == 3
    assert sorted(p.name for p in (tmp_path / "o/training/image_2").iterdir()) == ["test_x.jpg", "train_x.jpg",
                                                                                   "val_x.jpg", "y.jpg"]
    back = kitti.parse(tmp_path / "o", workers=1)
    assert {s: [r.rpartition("/")[2] for r in ids] for s, ids in back.splits.items()} == \
        {"train": ["train_x", "y"], "val": ["val_x"], "test": ["test_x"]}
    assert all(r.width == 8 for r in back.records)
    (tmp_path / "n").mkdir()
    report = kitti.write(ds, tmp_path / "n", images="none", renumber=True)
    assert report["lost"]["file names (renumber=True: 000000...)"] == 4
    assert sorted(p.name for p in (tmp_path / "n/training/label_2").iterdir()) == ["000000.txt", "000001.txt",
                                                                                  "000002.txt", "000003.txt"]


# --------------------------------------------------------------------------- bad input (docs table)

def _label(tmp_path: Path, row: str) -> Path:
    exp = make_kitti(tmp_path, lists=False, images=False)
    (exp["root"] / "training/label_2/000002.txt").write_text(ROWS[0] + "\n" + row + "\n")
    return exp["root"]


@pytest.mark.parametrize("row, error, match", [
    ("Car 0.00 0 -1.58 1 2 3", InvalidAnnotationError, r"000002.txt:2: expected 15 columns .* found 7"),
    (ROWS[0] + " 0.5 7", InvalidAnnotationError, r"000002.txt:2: expected 15 columns .* found 17"),
    (ROWS[0].replace("-1.58", "abc"), InvalidAnnotationError, r"000002.txt:2: column 'alpha' must be a number, "
                                                              r"found 'abc'"),
    (ROWS[0].replace("30.15", "nan"), InvalidAnnotationError, r"column 'z' must be a finite number, found 'nan'"),
    (ROWS[0].replace("30.15", "1e400"), InvalidAnnotationError, r"column 'z' must be a finite number"),
    (ROWS[0].replace("10.75", "1e12"), InvalidAnnotationError, r"column 'right' must be a pixel coordinate within"),
    (ROWS[0].replace("Car ", "0.00 "), InvalidAnnotationError, r"first column is the object type .* found the "
                                                               r"number '0.00'"),
    (ROWS[0].replace("0.00 0 ", "0.00 0.5 ", 1), InvalidAnnotationError, r"column 'occluded' must be 0, 1, 2, 3"),
    (ROWS[0].replace("0.00 0 ", "0.00 7 ", 1), InvalidAnnotationError, r"column 'occluded' must be 0, 1, 2, 3 "
                                                                        r"\(3: unknown\) or -1 \(DontCare\); found '7'"),
    (ROWS[0].replace("10.75", "0.50"), InvalidAnnotationError, r"right >= left and bottom >= top"),
    (ROWS[0].replace("8.00", "2.00"), InvalidAnnotationError, r"000002.txt:2: box left top right bottom must have "
                                                              r"right >= left and bottom >= top"),
])
def test_bad_rows_are_named(tmp_path, row, error, match):
    root = _label(tmp_path, row)
    with pytest.raises(error, match=match):
        kitti.parse(root, workers=1)


def test_bad_row_through_the_cli_is_one_line_and_exit_2(tmp_path, capsys):
    root = _label(tmp_path, "Car 1 2")
    code = main(["convert", "kitti", str(root), "--to", "coco", "--out", str(tmp_path / "o"), "--images", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "000002.txt:2: expected 15 columns" in err
    assert not (tmp_path / "o").exists()


def test_label_file_not_utf8(tmp_path):
    exp = make_kitti(tmp_path, lists=False, images=False)
    (exp["root"] / "training/label_2/000001.txt").write_bytes(b"Caf\xe9 0 0 0 1 1 2 2 1 1 1 1 1 1 1\n")
    with pytest.raises(MalformedFileError, match=r"000001.txt:1: not UTF-8 text"):
        kitti.parse(exp["root"], workers=1)


def test_imagesets_id_escaping_or_missing(tmp_path):
    exp = make_kitti(tmp_path)
    lists = exp["root"] / "ImageSets"
    (lists / "val.txt").write_text("../../../etc/passwd\n")
    with pytest.raises(PathEscapeError, match=r"ImageSets/val.txt: image id '../../../etc/passwd' resolves to"):
        kitti.parse(exp["root"], workers=1)
    (lists / "val.txt").write_text("x/../000001\n")  # climbs and comes back: that image
    assert kitti.parse(exp["root"], workers=1).splits["val"] == ["training/image_2/000001"]
    (lists / "val.txt").write_text("000001\n123456\n")
    with pytest.raises(MissingFileError, match=r"ImageSets/val.txt: id '123456' has neither training/label_2/"
                                               r"123456.txt nor an image"):
        kitti.parse(exp["root"], workers=1)


def test_imagesets_list_not_utf8_and_absolute_ids(tmp_path):
    exp = make_kitti(tmp_path)
    lists = exp["root"] / "ImageSets"
    (lists / "val.txt").write_bytes(b"00000\xe9\n")
    with pytest.raises(MalformedFileError, match=r"ImageSets/val.txt:1: not UTF-8 text"):
        kitti.parse(exp["root"], workers=1)
    (lists / "val.txt").write_text("/etc/passwd\n")
    with pytest.raises(PathEscapeError, match=r"ImageSets/val.txt: image id '/etc/passwd' resolves to /etc/passwd, "
                                              r"outside .*training/image_2"):
        kitti.parse(exp["root"], workers=1)


def test_allow_outside_root_passes_the_check_but_reads_only_the_kitti_folders(tmp_path):
    exp = make_kitti(tmp_path)
    (exp["root"] / "other").mkdir()
    (exp["root"] / "other/000009.txt").write_text(ROWS[0] + "\n")
    (exp["root"] / "ImageSets/val.txt").write_text("../../other/000009\n")
    with pytest.raises(PathEscapeError, match=r"image id '../../other/000009' resolves to"):
        kitti.parse(exp["root"], workers=1)
    with pytest.raises(MissingFileError, match=r"id '../../other/000009' has neither training/label_2/"):
        kitti.parse(exp["root"], workers=1, allow_outside_root=True)


def test_no_tree(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"not a KITTI object tree; expected .*training/label_2"):
        kitti.parse(tmp_path, workers=1)


def test_the_fast_canonical_row_check_keeps_exactly_the_texts_the_column_check_would():
    import random

    from dsprep.formats.kitti import COLUMNS, _canonical, _parse_row

    rng = random.Random(3)
    odd = ["-0.00", "0.0", "1.5", "01.00", "12345678901234.00", "1234567890123.99", "1e2", "-1", "-10", "7.125",
           "-1000", "3.10", "+1.00", "0.10",
           "123456789012345678.91"]
    for _ in range(3000):
        cols = [rng.choice([f"{rng.uniform(-50, 50):.2f}", rng.choice(odd)]) for _ in COLUMNS]
        cols[1] = rng.choice(["0", "1", "3", "-1", "2.0", "00"])
        left, top = rng.uniform(0, 100), rng.uniform(0, 100)
        cols[3:7] = [f"{left:.2f}", f"{top:.2f}", f"{left + 5:.2f}", rng.choice([f"{top + 5:.2f}", "500", "500.5"])]
        tokens = ["Car", *cols[:14 + rng.randint(0, 1)]]
        _, _, kitti = _parse_row(tokens, "x")
        values = [float(t) for t in tokens[1:]]
        want = {c: t for c, t, v in zip(COLUMNS, tokens[1:], values) if t != _canonical(c, v)}
        assert kitti.get("text", {}) == want, tokens


def test_the_cli_detects_a_kitti_tree_when_the_format_is_left_out(tmp_path, capsys):
    exp = make_kitti(tmp_path, images=False)
    code = main(["convert", str(exp["root"]), "--to", "coco", "--out", str(tmp_path / "o"), "--images", "none"])
    err = capsys.readouterr().err
    assert code == 0 and "detected format kitti" in err
    assert len(json.loads((tmp_path / "o/annotations/instances_val.json").read_text())["images"]) == len(exp["val"])


def test_stems_past_255_bytes_are_written_as_short_ids(tmp_path):
    # a 300-character image name (sizes from a COCO JSON, images="none") was written as label_2/<it>.txt:
    # OSError "File name too long"; now it goes the renaming path and is counted
    from dsprep.records import Category, Dataset, Instances, Record

    rec = Record("x" * 300, "x" * 300 + ".png", 8, 8, instances=Instances([[1, 1, 3, 3]], [1]))
    out = tmp_path / "out"
    out.mkdir()
    report = kitti.write(Dataset([Category(1, "Car")], [rec]), out, images="none")
    assert sum(v for k, v in report["lost"].items() if k.startswith("file names")) == 1
    (label,) = (out / "training" / "label_2").iterdir()
    assert len(label.name.encode()) <= 255 and label.read_text().startswith("Car ")
