"""Paths read from a dataset stay inside it; paths written stay inside OUT (issue 10, items 1-2).

Each test builds a hostile input by hand (a ``..`` or absolute path in a field that
names a file) beside a ``victim`` file outside the dataset, and checks that dsprep
names the entry and neither reads the victim into OUT nor touches it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dsprep
from dsprep.cli import main
from dsprep.errors import PathEscapeError
from dsprep.records import Dataset, Instances, Record


def _jpeg(path: Path, colour=(200, 30, 30), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")
    return path


def _coco_json(path: Path, file_names: list[str], size=(8, 6)) -> Path:
    w, h = size
    doc = {"images": [{"id": i + 1, "file_name": fn, "width": w, "height": h} for i, fn in enumerate(file_names)],
           "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 3, 2], "area": 6,
                            "iscrowd": 0, "segmentation": []} for i in range(len(file_names))],
           "categories": [{"id": 1, "name": "thing", "supercategory": ""}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _coco_tree(tmp_path: Path, file_names: list[str]) -> Path:
    """``tmp/coco/annotations/instances_train.json`` + ``tmp/coco/train/a.jpg``; ``tmp/outside/secret.jpg``."""
    root = tmp_path / "coco"
    _jpeg(root / "train" / "a.jpg")
    _jpeg(tmp_path / "outside" / "secret.jpg", colour=(1, 2, 3))
    _coco_json(root / "annotations" / "instances_train.json", file_names)
    return root


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(path.rglob("*"))}


# ------------------------------------------------------------------------------ reading: COCO

@pytest.mark.parametrize("bad", ["../../outside/secret.jpg", "sub/../../../outside/secret.jpg"])
def test_coco_file_name_climbing_out_of_its_image_folder_is_a_named_error(tmp_path, bad):
    root = _coco_tree(tmp_path, ["a.jpg", bad])
    with pytest.raises(PathEscapeError) as info:
        dsprep.parse("coco", root)
    msg = str(info.value)
    assert "instances_train.json" in msg and "image id 2" in msg and repr(bad) in msg
    assert str(tmp_path / "outside" / "secret.jpg") in msg  # where it resolved to
    assert "--allow-outside-root" in msg


def test_coco_absolute_file_name_is_a_named_error(tmp_path):
    secret = _jpeg(tmp_path / "elsewhere" / "secret.jpg")
    root = _coco_tree(tmp_path, ["a.jpg", str(secret)])
    with pytest.raises(PathEscapeError, match="image id 2"):
        dsprep.parse("coco", root)


def test_a_name_that_climbs_but_stays_inside_is_normalised(tmp_path):
    root = _coco_tree(tmp_path, ["a.jpg", "sub/../a.jpg"])
    ds = dsprep.parse("coco", root)
    assert [r.path for r in ds] == ["train/a.jpg", "train/a.jpg"]


def test_convert_refuses_a_coco_escape_and_copies_nothing(tmp_path, capsys):
    root = _coco_tree(tmp_path, ["a.jpg", "../../outside/secret.jpg"])
    out = tmp_path / "out"
    assert main(["convert", "coco", str(root), "--to", "coco", "--out", str(out), "--images", "copy",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "PathEscape" not in err and "outside" in err and "image id 2" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_allow_outside_root_reads_it_and_writes_it_inside_out(tmp_path):
    root = _coco_tree(tmp_path, ["a.jpg", "../../outside/secret.jpg"])
    out = tmp_path / "out"
    assert main(["convert", "coco", str(root), "--to", "coco", "--out", str(out), "--images", "copy",
                 "--allow-outside-root", "--quiet"]) == 0
    doc = json.loads((out / "annotations" / "instances_train.json").read_text())
    names = sorted(im["file_name"] for im in doc["images"])
    assert names == ["a.jpg", "secret.jpg"]
    assert (out / "train" / "secret.jpg").read_bytes() == (tmp_path / "outside" / "secret.jpg").read_bytes()


def test_two_image_entries_of_one_file_are_placed_once(tmp_path):
    root = _coco_tree(tmp_path, ["a.jpg", "a.jpg"])
    for mode in ("link", "copy"):
        assert main(["convert", "coco", str(root), "--to", "coco", "--out", str(tmp_path / mode), "--images", mode,
                     "--quiet"]) == 0
        placed = [p for p in (tmp_path / mode / "train").rglob("*") if not p.is_dir()]
        assert [p.name for p in placed] == ["a.jpg"]  # one file for both entries (named by its path)


def test_validate_reports_every_escape_by_kind(tmp_path, capsys):
    root = _coco_tree(tmp_path, ["a.jpg", "../../outside/secret.jpg", "/etc/passwd"])
    assert main(["validate", "coco", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"].get("path_escape") == 2
    wheres = sorted(p["where"] for p in report["items"] if p["kind"] == "path_escape")
    assert all("instances_train.json" in w for w in wheres)


def test_loose_coco_json_names_are_relative_to_its_folder(tmp_path):
    # a loose JSON's images are in its own folder (or a sibling images/): a name may not climb out
    _jpeg(tmp_path / "ann" / "a.jpg")
    _jpeg(tmp_path / "outside" / "secret.jpg")
    js = _coco_json(tmp_path / "ann" / "mine.json", ["a.jpg", "../outside/secret.jpg"])
    with pytest.raises(PathEscapeError, match=r"mine\.json: image id 2"):
        dsprep.parse("coco", js)
    ds = dsprep.parse("coco", js, allow_outside_root=True)
    assert sorted(r.path for r in ds) == ["../outside/secret.jpg", "a.jpg"]


def test_on_error_warn_skips_the_escaping_image_and_counts_it(tmp_path):
    root = _coco_tree(tmp_path, ["a.jpg", "../../outside/secret.jpg"])
    ds = dsprep.parse("coco", root, on_error="warn")
    assert [r.path for r in ds] == ["train/a.jpg"] and ds.info["skipped"] == 1


def test_a_symlinked_image_folder_inside_the_root_is_followed(tmp_path):
    # documented: a symlink inside the dataset is the user's own arrangement (images on another disk)
    real = tmp_path / "disk2" / "train"
    _jpeg(real / "a.jpg")
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    os.symlink(real, root / "train")
    _coco_json(root / "annotations" / "instances_train.json", ["a.jpg"])
    ds = dsprep.parse("coco", root, check_images=True)
    assert [r.path for r in ds] == ["train/a.jpg"]


# ------------------------------------------------------------------------------ reading: panoptic

def _panoptic(tmp_path: Path, image_name: str, png_name: str) -> Path:
    root = tmp_path / "pano"
    _jpeg(root / "val" / "a.jpg")
    png_dir = root / "annotations" / "panoptic_val"
    png_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8) + np.array([1, 0, 0], np.uint8)).save(png_dir / "a.png")
    _jpeg(tmp_path / "outside" / "secret.jpg")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "outside" / "secret.png")
    doc = {"images": [{"id": 1, "file_name": image_name, "width": 8, "height": 6}],
           "annotations": [{"image_id": 1, "file_name": png_name,
                            "segments_info": [{"id": 1, "category_id": 1, "area": 48, "bbox": [0, 0, 8, 6],
                                               "iscrowd": 0}]}],
           "categories": [{"id": 1, "name": "thing", "isthing": 1}]}
    (root / "annotations" / "panoptic_val.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("image_name,png_name,what", [
    ("../../outside/secret.jpg", "a.png", "file_name"),
    ("a.jpg", "../../../outside/secret.png", "segment PNG"),
])
def test_panoptic_names_may_not_leave_their_folders(tmp_path, image_name, png_name, what):
    root = _panoptic(tmp_path, image_name, png_name)
    with pytest.raises(PathEscapeError) as info:
        dsprep.parse("coco-panoptic", root, verify="none")
    assert "panoptic_val.json" in str(info.value) and what in str(info.value)
    assert "outside" in str(info.value)


def test_validate_reports_a_panoptic_png_escape(tmp_path, capsys):
    root = _panoptic(tmp_path, "a.jpg", "../../../outside/secret.png")
    assert main(["validate", "coco-panoptic", str(root), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["counts"].get("path_escape") == 1


# ------------------------------------------------------------------------------ reading: VOC

def _voc(tmp_path: Path, ids: list[str], filename: str | None = None) -> Path:
    root = tmp_path / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    fn = f"<filename>{filename}</filename>" if filename else ""
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation>{fn}<size><width>8</width><height>6</height><depth>3</depth></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>3</ymax></bndbox>"
        "</object></annotation>")
    _jpeg(root / "JPEGImages" / "a.jpg")
    _jpeg(tmp_path / "outside" / "secret.jpg", colour=(1, 2, 3))
    (root / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_imagesets_line_climbing_out_is_a_named_error(tmp_path, capsys):
    root = _voc(tmp_path, ["a", "../../outside/secret"])
    with pytest.raises(PathEscapeError) as info:
        dsprep.parse("voc", root)
    assert "ImageSets/Main/train.txt" in str(info.value) and "'../../outside/secret'" in str(info.value)
    out = tmp_path / "out"
    assert main(["convert", "voc", str(root), "--to", "coco", "--out", str(out), "--images", "copy",
                 "--quiet"]) == 2
    assert not out.exists()
    assert main(["validate", "voc", str(root), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["counts"].get("path_escape") == 1


def test_voc_filename_element_cannot_move_the_image(tmp_path):
    # only <filename>'s extension is used: the image is JPEGImages/<xml stem><ext>, always
    root = _voc(tmp_path, ["a"], filename="../../outside/secret.jpg")
    ds = dsprep.parse("voc", root)
    assert [r.path for r in ds] == ["JPEGImages/a.jpg"]


def test_imagenet_loc_csv_rows_are_names_not_paths(tmp_path):
    # a LOC CSV ImageId only labels an image listed from the folder; it never opens a path
    from tests.fakes_imagenet import jpeg_bytes

    val = tmp_path / "imnet" / "val"
    val.mkdir(parents=True)
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(jpeg_bytes())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.JPEG").write_bytes(jpeg_bytes())
    (tmp_path / "imnet" / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 1 4 4\n../../outside/secret,n01 1 1 4 4\n")
    (tmp_path / "imnet" / "LOC_synset_mapping.txt").write_text("n01 thing\n")
    ds = dsprep.parse("imagenet", tmp_path / "imnet")
    assert [r.path for r in ds] == ["val/ILSVRC2012_val_00000001.JPEG"]


# ------------------------------------------------------------------------------ writing

def _hostile_dataset(tmp_path: Path) -> tuple[Dataset, Path]:
    """Records built in Python: one path climbs to ``tmp/v/victim.jpg``, and its basename collides
    with another record's, so the COCO writer names it by its path. From ``tmp/work/.out.tmp-*/
    train/`` that raw path reaches the victim too (the issue's reproduction)."""
    root = tmp_path / "d1" / "d2" / "src"
    _jpeg(root / "a" / "victim.jpg", colour=(10, 20, 30))
    victim = _jpeg(tmp_path / "v" / "victim.jpg", colour=(250, 250, 250))
    inst = Instances(boxes=[[1, 1, 4, 3]], labels=[1])
    recs = [Record(id="a/victim", path="a/victim.jpg", width=8, height=6, split="train", instances=inst),
            Record(id="up/victim", path="../../../v/victim.jpg", width=8, height=6, split="train", instances=inst)]
    ds = Dataset([dsprep.Category(1, "thing")], recs, splits={"train": ["a/victim", "up/victim"]}, root=root,
                 format="coco")
    return ds, victim


@pytest.mark.parametrize("images", ["copy", "link"])
def test_coco_writer_collision_names_stay_inside_out(tmp_path, images):
    # issue 10: the collision renaming used the raw record path and placed OUT/train/../../victim.jpg,
    # unlinking what was there first
    from dsprep.conversion import write_dataset

    ds, victim = _hostile_dataset(tmp_path)
    before = victim.read_bytes()
    out = tmp_path / "work" / "out"
    write_dataset(ds, "coco", out, images=images)
    assert victim.read_bytes() == before and not victim.is_symlink()
    doc = json.loads((out / "annotations" / "instances_train.json").read_text())
    names = sorted(im["file_name"] for im in doc["images"])
    assert names == ["__/__/__/v/victim.jpg", "a/victim.jpg"]
    assert (out / "train" / "__/__/__/v/victim.jpg").read_bytes() == before
    assert (out / "train" / "a/victim.jpg").read_bytes() == (tmp_path / "d1/d2/src/a/victim.jpg").read_bytes()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["out"]


@pytest.mark.parametrize("fmt", ["coco", "voc", "coco-panoptic", "cityscapes", "imagenet"])
def test_a_split_name_that_climbs_is_refused_before_anything_is_written(tmp_path, fmt):
    from dsprep.conversion import write_dataset

    root = tmp_path / "src"
    _jpeg(root / "a.jpg")
    split = "../../../../evil"
    rec = Record(id="a", path="a.jpg", width=8, height=6, split=split, label=0,
                 instances=Instances(boxes=[[1, 1, 4, 3]], labels=[0], segmentation=[[[1, 1, 4, 1, 4, 3]]]))
    ds = Dataset([dsprep.Category(0, "thing")], [rec], splits={split: ["a"]}, root=root, format="x")
    with pytest.raises(dsprep.DsprepError):
        write_dataset(ds, fmt, tmp_path / "a" / "b" / "c" / "d" / "out", images="copy")
    assert not any("evil" in p.name for p in tmp_path.rglob("*"))


def test_cityscapes_writer_keeps_a_hostile_city_name_inside_out(tmp_path):
    from dsprep.conversion import write_dataset

    root = tmp_path / "src"
    _jpeg(root / "a.png")
    rec = Record(id="a", path="a.png", width=8, height=6, split="train",
                 extra={"city": "../../../evil", "sequence": "000000", "frame": "000001"})
    ds = Dataset([], [rec], splits={"train": ["a"]}, root=root, format="coco")
    with pytest.raises(PathEscapeError):
        write_dataset(ds, "cityscapes", tmp_path / "w" / "out", images="copy")
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))


def test_panoptic_writer_keeps_a_hostile_png_name_inside_out(tmp_path):
    from dsprep.conversion import write_dataset

    root = tmp_path / "src"
    _jpeg(root / "a.jpg")
    rec = Record(id="a", path="a.jpg", width=8, height=6, split="val",
                 instances=Instances(boxes=[[1, 1, 4, 3]], labels=[1], segmentation=[[[1, 1, 4, 1, 4, 3]]]),
                 extra={"panoptic_file_name": "../../../../evil.png"})
    ds = Dataset([dsprep.Category(1, "thing")], [rec], splits={"val": ["a"]}, root=root, format="coco")
    out = tmp_path / "w" / "out"
    write_dataset(ds, "coco-panoptic", out, images="copy")
    assert not any(p.name == "evil.png" and out not in p.parents for p in tmp_path.rglob("*"))
    doc = json.loads((out / "annotations" / "panoptic_val.json").read_text())
    png = doc["annotations"][0]["file_name"]
    assert (out / "annotations" / "panoptic_val" / png).is_file()


def test_place_image_never_writes_through_a_link_it_made(tmp_path):
    # record A is a directory of the input placed as a link; record B would then be written
    # *through* that link into the input (and unlink the input file first)
    from dsprep.conversion import write_dataset

    root = tmp_path / "src"
    _jpeg(root / "d" / "x" / "x.jpg", colour=(9, 9, 9))
    keep = (root / "d" / "x" / "x.jpg").read_bytes()
    _jpeg(root / "e" / "x", colour=(1, 1, 1))
    _jpeg(root / "f" / "x.jpg", colour=(2, 2, 2))
    # every basename collides, so the COCO writer names each by its path: d/x, d/x/x.jpg, ...
    recs = [Record(id="d/x", path="d/x", width=8, height=6, split="s"),
            Record(id="d/x/x", path="d/x/x.jpg", width=8, height=6, split="s"),
            Record(id="e/x", path="e/x", width=8, height=6, split="s"),
            Record(id="f/x", path="f/x.jpg", width=8, height=6, split="s")]
    ds = Dataset([], recs, splits={"s": [r.id for r in recs]}, root=root, format="x")
    with pytest.raises(dsprep.DsprepError):
        write_dataset(ds, "coco", tmp_path / "out", images="link")
    assert (root / "d" / "x" / "x.jpg").read_bytes() == keep
    assert not (root / "d" / "x" / "x.jpg").is_symlink()


# ------------------------------------------------------------------------------ the helpers themselves

@pytest.mark.parametrize("rel,escapes", [
    ("a.jpg", False), ("sub/../a.jpg", False), ("./a.jpg", False), ("a..b.jpg", False), ("a:b.jpg", False),
    ("../a.jpg", True), ("sub/../../a.jpg", True), ("/etc/passwd", True), ("..\\a.jpg", True),
    ("C:\\x.jpg", True), ("C:/x.jpg", True), ("\\\\server\\x.jpg", True),
])
def test_escapes_reads_the_path_lexically(rel, escapes):
    from dsprep._paths import escapes as leaves

    assert leaves(rel) is escapes


@pytest.mark.parametrize("path,safe", [
    ("a/b.jpg", "a/b.jpg"), ("../x.jpg", "__/x.jpg"), ("../../v/x.jpg", "__/__/v/x.jpg"),
    ("/data/x.jpg", "data/x.jpg"), ("a/../b.jpg", "b.jpg"), ("..", "__"), ("", "_"), ("C:\\d\\x.jpg", "C/d/x.jpg"),
])
def test_safe_relpath_never_climbs(path, safe):
    from dsprep._paths import escapes, safe_relpath

    assert safe_relpath(path) == safe and not escapes(safe)


def test_output_path_refuses_escapes_links_and_the_folder_itself(tmp_path):
    from dsprep._paths import output_path

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "input").mkdir()
    os.symlink(tmp_path / "input", out / "linked-dir")
    (tmp_path / "input" / "x.jpg").write_bytes(b"input")
    os.symlink(tmp_path / "input" / "x.jpg", out / "linked.jpg")
    assert output_path(out, "a/b/c.json") == out / "a" / "b" / "c.json" and (out / "a" / "b").is_dir()
    for rel in ("../x.json", "a/../../x.json", str(tmp_path / "x.json"), "."):
        with pytest.raises(PathEscapeError, match="outside the output folder"):
            output_path(out, rel)
    with pytest.raises(PathEscapeError, match="outside the output folder"):
        output_path(out, ".", folder=True)
    for rel in ("linked-dir/new.json", "linked.jpg"):
        with pytest.raises(PathEscapeError, match="through a link"):
            output_path(out, rel)
    assert os.listdir(tmp_path / "input") == ["x.jpg"] and not (tmp_path / "x.json").exists()


def test_place_image_refuses_a_second_image_at_one_name_and_a_folder_as_source(tmp_path):
    from dsprep._io import place_image
    from dsprep.errors import InvalidAnnotationError

    a, b = _jpeg(tmp_path / "src" / "a.jpg", colour=(1, 1, 1)), _jpeg(tmp_path / "src" / "b.jpg", colour=(2, 2, 2))
    out = tmp_path / "out"
    out.mkdir()
    for mode in ("copy", "link"):
        assert place_image(a, out, f"{mode}/x.jpg", mode)
        assert place_image(a, out, f"{mode}/x.jpg", mode)  # the same image twice: one file
        with pytest.raises(InvalidAnnotationError, match="two different images"):
            place_image(b, out, f"{mode}/x.jpg", mode)
        assert (out / mode / "x.jpg").read_bytes() == a.read_bytes()
        assert place_image(tmp_path / "src", out, f"{mode}/dir", mode) is False  # not a file: not placed
        assert not os.path.lexists(out / mode / "dir")
