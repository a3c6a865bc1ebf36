"""Ultralytics YOLO: the hub's coco8 / coco8-seg / coco8-pose / dota8 / coco8-human files, the
package's dataset YAMLs, Roboflow exports, generated trees, the bad-input table and writing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsprep.errors import (DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, MissingFileError,
                           PathEscapeError, UnknownNameError)
from dsprep.formats import FORMATS, detect_format, yolo
from dsprep.records import Category, Dataset, Instances, Record

from fakes_yolo import DETECT, POSE, SEGMENT, image, make_yolo, write_yaml

HUB = "ultralytics-hub/example_datasets"
# README §12: sizes (W, H) of the hub images that were not copied
POSE_SIZES = {"000000000036": (481, 640), "000000000049": (381, 500), "000000000077": (500, 375),
              "000000000086": (512, 640), "000000000110": (640, 480), "000000000113": (416, 640),
              "000000000136": (500, 374), "000000000151": (480, 640)}
COCO8_SIZES = {"000000000009": (640, 480), "000000000025": (640, 426), "000000000030": (640, 428),
               "000000000034": (640, 425), "000000000036": (481, 640), "000000000042": (640, 478),
               "000000000049": (381, 500), "000000000061": (640, 488)}


def _rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in ln.split()] for ln in path.read_text().splitlines() if ln.strip()]


def _tree(tmp: Path, fixtures: Path, name: str, sizes: dict, images_from: str | None = None) -> Path:
    """A hub dataset in ``tmp``: its YAML and labels copied, images linked from coco8 or made at the
    README's sizes (the hub's other images were not copied into the fixtures)."""
    src = fixtures / HUB / name
    root = tmp / name
    shutil.copytree(src / "labels", root / "labels")
    shutil.copy(src / f"{name}.yaml", root / f"{name}.yaml")
    for lab in (root / "labels").rglob("*.txt"):
        rel = lab.relative_to(root / "labels").with_suffix(".jpg")
        dst = root / "images" / rel
        if images_from:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(fixtures / HUB / images_from / "images" / rel)
        else:
            image(dst, *sizes[lab.stem])
    return root


# --------------------------------------------------------------------------- real files

def test_coco8_counts_sizes_and_boxes_against_the_files(fixtures):
    root = fixtures / HUB / "coco8"
    ds = yolo.parse(root, workers=1)
    assert len(ds) == 8 and ds.num_objects() == 30
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 4, "val": 4}
    assert len(ds.categories) == 80 and ds.categories[0].name == "person" and ds.categories[79].name == "toothbrush"
    for r in ds:
        stem = Path(r.path).stem
        assert (r.width, r.height) == COCO8_SIZES[stem]
        rows = np.array(_rows(root / yolo.label_path(r.path)))
        assert r.instances.labels.tolist() == rows[:, 0].astype(int).tolist()
        w, h = r.width, r.height
        want = np.stack([w * (rows[:, 1] - rows[:, 3] / 2), h * (rows[:, 2] - rows[:, 4] / 2),
                         w * (rows[:, 1] + rows[:, 3] / 2), h * (rows[:, 2] + rows[:, 4] / 2)], 1)
        np.testing.assert_allclose(r.instances.boxes, want, rtol=0, atol=1e-9)
    # the shortest decimal of the exact product: 640 * (0.479492 - 0.955609 / 2) is 1.080000... in decimal
    assert ds.records[0].instances.boxes[0].tolist() == [1.08, 187.69008, 612.66976, 473.53008]


def test_coco8_seg_polygons_and_their_extent_match_coco8_boxes(fixtures, tmp_path):
    root = _tree(tmp_path, fixtures, "coco8-seg", {}, images_from="coco8")
    seg = yolo.parse(root, workers=1)
    det = yolo.parse(fixtures / HUB / "coco8", workers=1)
    assert len(seg) == 8 and seg.num_objects() == 30
    for s, d in zip(seg, det):
        assert s.instances.labels.tolist() == d.instances.labels.tolist()
        # README §12: each polygon's bbox equals the coco8 box to 1e-6 (normalised)
        np.testing.assert_allclose(s.instances.boxes / ([s.width, s.height] * 2),
                                   d.instances.boxes / ([d.width, d.height] * 2), atol=2e-6)
        rows = _rows(root / yolo.label_path(s.path))
        for k, row in enumerate(rows):
            poly = np.array(s.instances.segmentation[k][0]).reshape(-1, 2)
            np.testing.assert_allclose(poly / [s.width, s.height], np.array(row[1:]).reshape(-1, 2), atol=1e-12)


def test_coco8_pose_keypoints_flip_idx_and_zero_points(fixtures, tmp_path):
    root = _tree(tmp_path, fixtures, "coco8-pose", POSE_SIZES)
    ds = yolo.parse(root, workers=1)
    assert len(ds) == 8 and ds.num_objects() == 21  # 1+2+3+1 + 8+3+2+1 rows
    assert ds.info["yolo"]["kpt_shape"] == [17, 3]
    assert ds.info["yolo"]["flip_idx"] == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    kps = np.concatenate([r.instances.keypoints for r in ds])
    assert kps.shape == (21, 17, 3)
    assert set(np.unique(kps[..., 2]).tolist()) <= {0.0, 1.0, 2.0}
    zero = kps[..., 2] == 0
    assert zero.sum() == 149 and (kps[zero][:, :2] == 0).all()  # README §12: all 149 v=0 have x=y=0
    r = next(r for r in ds if r.path.endswith("000000000086.jpg"))
    row = _rows(root / yolo.label_path(r.path))[0]
    np.testing.assert_allclose(r.instances.keypoints[0, :, 0], np.array(row[5::3]) * 512, atol=1e-9)


def test_dota8_obb_rows_are_polygons_and_past_the_tolerance_is_named(fixtures, tmp_path):
    root = _tree(tmp_path, fixtures, "dota8", {p.stem: (1024, 1024) for p in
                                               (fixtures / HUB / "dota8" / "labels").rglob("*.txt")})
    with pytest.raises(InvalidAnnotationError, match=r"\.txt:\d+: coordinate -?[\d.]+ lies outside \[0, 1\]"):
        yolo.parse(root, workers=1)
    ds = yolo.parse(root, workers=1, on_error="warn")
    total = sum(len(_rows(p)) for p in (root / "labels").rglob("*.txt"))
    outside = sum(1 for p in (root / "labels").rglob("*.txt") for row in _rows(p)
                  if min(row[1:]) < -0.01 or max(row[1:]) > 1.01)
    assert outside > 0 and ds.info["skipped"] == outside and ds.num_objects() == total - outside
    assert all(len(s[0]) == 8 for r in ds for s in r.instances.segmentation)  # 4 corners, as polygons


def test_coco8_human_extra_columns_are_refused_naming_file_and_line(fixtures, tmp_path):
    sizes = {"000000000113": (416, 640), "000000000294": (640, 427), "000000000326": (640, 427),
             "000000542449": (479, 640), "000000000241": (480, 640), "000000000589": (640, 480),
             "000000000897": (640, 427), "000000001592": (425, 640)}
    root = _tree(tmp_path, fixtures, "coco8-human", sizes)
    with pytest.raises(InvalidAnnotationError, match=r"labels/train/000000000113\.txt:1: 10 columns"):
        yolo.parse(root, workers=1)


@pytest.mark.parametrize("name, n, kpt", [
    ("coco8.yaml", 80, None), ("coco8-seg.yaml", 80, None), ("coco8-pose.yaml", 1, (17, 3)),
    ("tiger-pose.yaml", 1, (12, 2)), ("dog-pose.yaml", 1, (24, 3)), ("hand-keypoints.yaml", 1, (21, 3)),
    ("dota8.yaml", 15, None), ("signature.yaml", 1, None), ("kitti.yaml", 8, None),
    ("coco8-grayscale.yaml", 80, None), ("coco8-multispectral.yaml", 80, None),
])
def test_package_yamls_names_and_kpt_shape(fixtures, name, n, kpt):
    path = fixtures / "ultralytics/ultralytics/cfg/datasets" / name
    doc = yolo._read_yaml(path)
    names = yolo._class_names(doc, name)
    assert len(names) == n
    assert yolo._kpt_shape(doc, name) == kpt
    assert yolo.detect(path)


def test_legacy_flow_list_names_with_nc(fixtures):
    doc = yolo._read_yaml(fixtures / "ultralytics-hub/coco6/coco6.yaml")
    names = yolo._class_names(doc, "coco6.yaml")
    assert len(names) == 80 and names[:2] == ["person", "bicycle"]


def test_roboflow_dot_dot_paths_read_inside_the_export(fixtures, tmp_path):
    src = fixtures / "cone_cube_detect_test_1.0"
    root = tmp_path / "cones"
    shutil.copytree(src / "test" / "labels", root / "test" / "labels")
    shutil.copy(src / "data.yaml", root / "data.yaml")
    for lab in (root / "test" / "labels").glob("*.txt"):
        image(root / "test" / "images" / f"{lab.stem}.jpg", 640, 640)
    for d in ("train", "valid"):
        (root / d / "images").mkdir(parents=True)
    ds = yolo.parse(root, workers=1)  # train: ../train/images is read as train/images (Ultralytics' retry)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 0, "val": 0, "test": 3}
    assert sorted(len(r.instances) for r in ds) == [1, 2, 3]
    assert [c.name for c in ds.categories] == ["cone", "cube"]
    assert ds.info["yolo"]["other_keys"]["roboflow"]["project"] == "conesandcubes"


def test_roboflow_absolute_colab_paths_are_escapes(fixtures, tmp_path):
    root = tmp_path / "footfall"
    root.mkdir()
    shutil.copy(next((fixtures / "footfall-taskAI").rglob("data.yaml")), root / "data.yaml")
    with pytest.raises(PathEscapeError, match=r"data\.yaml: train: 'train' path '/content/drive/"):
        yolo.parse(root, workers=1)


# --------------------------------------------------------------------------- generated trees

def test_generated_detect_tree_with_missing_and_empty_labels(tmp_path):
    want = make_yolo(tmp_path / "d")
    ds = yolo.parse(tmp_path / "d", workers=1)
    assert len(ds) == want["images"] and ds.num_objects() == want["objects"]
    assert {k: len(v) for k, v in ds.splits.items()} == want["splits"]
    assert ds.info["missing_labels"] == want["missing"] == 1 and ds.info["empty_labels"] == want["empty"] == 1
    a = ds.record_by_id()["images/train/a"]
    assert a.instances.boxes.tolist() == [[5.0, 3.0, 15.0, 7.0], [4.0, 1.5, 6.0, 3.5]]
    assert a.instances.labels.tolist() == [0, 1]
    assert [c.name for c in ds.categories] == ["cat", "dog"]
    assert len(ds.record_by_id()["images/train/c"].instances) == 0


def test_workers_give_the_same_records(tmp_path):
    rows = [("train", f"i{k:03d}", 8 + k % 5, 9, f"{k % 2} 0.5 0.5 0.25 0.5\n") for k in range(700)]
    make_yolo(tmp_path / "d", rows)
    one = yolo.parse(tmp_path / "d", workers=1)
    two = yolo.parse(tmp_path / "d", workers=2)
    assert one.records == two.records and len(one) == 700


def test_label_file_past_one_read_keeps_every_row(tmp_path):
    # 3,000 rows, ~75 KiB: more than the 64 KiB a single os.read returns (_io.read_bytes loops)
    text = "".join(f"{k % 2} 0.5 0.5 0.{k % 9 + 1}00000000000 0.25\n" for k in range(3000))
    assert len(text.encode()) > 1 << 16
    make_yolo(tmp_path / "d", [("train", "big", 40, 20, text)])
    inst = yolo.parse(tmp_path / "d", workers=1).records[0].instances
    assert len(inst) == 3000 and inst.labels[-1] == 2999 % 2
    assert inst.boxes[-1].tolist() == [20 - 40 * (2999 % 9 + 1) / 20, 7.5, 20 + 40 * (2999 % 9 + 1) / 20, 12.5]


def test_exif_rotated_image_size(tmp_path):
    make_yolo(tmp_path / "d", [("train", "r", 20, 10, "0 0.5 0.5 1 1\n")])
    (tmp_path / "d/images/train/r.png").unlink()
    image(tmp_path / "d/images/train/r.jpg", 20, 10, exif_orientation=6)  # rotated 90 degrees: 10 x 20
    r = yolo.parse(tmp_path / "d", workers=1).records[0]
    assert (r.width, r.height) == (10, 20) and r.instances.boxes.tolist() == [[0.0, 0.0, 10.0, 20.0]]


def test_pairing_rule_is_ultralytics_img2label_paths():
    assert yolo.label_path("images/train/a.jpg") == "labels/train/a.txt"
    assert yolo.label_path("images/train/sub/a.b.PNG") == "labels/train/sub/a.b.txt"
    assert yolo.label_path("train/images/x.jpg") == "train/labels/x.txt"  # Roboflow
    assert yolo.label_path("images/a/images/b.jpg") == "images/a/labels/b.txt"  # the last /images/ only
    assert yolo.label_path("imgs/x.jpg") == "imgs/x.txt"  # no images folder: beside the image
    assert yolo.label_path("myimages/x.jpg") == "myimages/x.txt"  # a whole component, not a substring


def test_list_file_and_list_of_folders(tmp_path):
    root = tmp_path / "d"
    make_yolo(root)
    (root / "extra").mkdir()
    (root / "lists").mkdir()
    # out of order: Ultralytics' get_img_files sorts the paths
    (root / "lists" / "sel.txt").write_text("./../images/val/d.png\n\n../images/train/a.png\n", encoding="utf-8")
    write_yaml(root, "train: [images/train, images/val]\nval: lists/sel.txt\nnames: [cat, dog]\n")
    ds = yolo.parse(root, workers=1)
    assert len(ds.splits["train"]) == 4 and ds.splits["val"] == ["images/train/a", "images/val/d"]
    assert len(ds) == 4  # one record per image; the splits overlap


def test_nested_images_are_found_recursively(tmp_path):
    root = tmp_path / "d"
    make_yolo(root, [("train", "sub/deep", 10, 10, "0 0.5 0.5 0.2 0.2\n")])
    ds = yolo.parse(root, workers=1)
    assert [r.path for r in ds] == ["images/train/sub/deep.png"] and ds.num_objects() == 1


def test_classification_tree(tmp_path):
    for split, cls, n in (("train", "ant", 2), ("train", "bee", 1), ("val", "bee", 1)):
        for k in range(n):
            image(tmp_path / "c" / split / cls / f"{k}.jpg", 8, 8)
    ds = yolo.parse(tmp_path / "c")
    assert [c.name for c in ds.categories] == ["ant", "bee"]
    assert [(r.split, r.label) for r in ds] == [("train", 0), ("train", 0), ("train", 1), ("val", 1)]


def test_detect(tmp_path, fixtures):
    make_yolo(tmp_path / "d")
    assert yolo.detect(tmp_path / "d") and yolo.detect(tmp_path / "d" / "data.yaml")
    assert detect_format(tmp_path / "d") == "yolo"
    assert detect_format(fixtures / HUB / "coco8") == "yolo"
    image(tmp_path / "c" / "train" / "ant" / "0.jpg", 8, 8)
    assert not yolo.detect(tmp_path / "c")  # a bare class tree is imagenet's
    assert "yolo" in FORMATS


# --------------------------------------------------------------------------- bad input

LABEL = "labels/train/a.txt"


@pytest.mark.parametrize("text, error, match", [
    # non-numeric value
    ("0 0.5 abc 0.2 0.2\n", InvalidAnnotationError, r"'abc' is not a number"),
    # wrong column count (6: neither a box nor a polygon)
    ("0 0.5 0.5 0.2 0.2 0.1\n", InvalidAnnotationError, rf"{LABEL}:1: 6 columns; expected 5"),
    # even column count (a polygon needs x y pairs)
    ("0 0.1 0.1 0.5 0.1 0.5 0.9 0.1\n", InvalidAnnotationError, rf"{LABEL}:1: 8 columns"),
    # class id out of range
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", InvalidAnnotationError, rf"{LABEL}:2: class 2 is not a class index"),
    # negative class
    ("-1 0.5 0.5 0.2 0.2\n", InvalidAnnotationError, r"class -1 is not a class index"),
    # non-integer class
    ("0.5 0.5 0.5 0.2 0.2\n", InvalidAnnotationError, r"class 0.5 is not a class index"),
    # NaN
    ("0 nan 0.5 0.2 0.2\n", InvalidAnnotationError, r"not finite"),
    # inf
    ("0 0.5 inf 0.2 0.2\n", InvalidAnnotationError, r"not finite"),
    # huge
    ("0 1e300 0.5 0.2 0.2\n", InvalidAnnotationError, r"coordinate 1e\+300 lies outside \[0, 1\]"),
    # coordinates outside [0, 1] beyond the tolerance (pixels, not normalised)
    ("\n0 320 240 20 10\n", InvalidAnnotationError, rf"{LABEL}:2: coordinate 320 lies outside"),
    # a polygon point outside [0, 1]
    ("0 0.1 0.1 1.5 0.1 0.5 0.9\n", InvalidAnnotationError, r"coordinate 1.5 lies outside"),
    # negative size
    ("0 0.5 0.5 -0.005 0.2\n", InvalidAnnotationError, r"negative box size"),
    # detection and polygon rows mixed (Ultralytics refuses it too)
    ("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.5 0.1 0.5 0.9\n", InvalidAnnotationError, rf"{LABEL}:1: a detection row"),
    # invalid UTF-8
    (b"0 0.5 0.5 0.2 0.2\n\xff\xfe\n", MalformedFileError, rf"{LABEL}:2: not UTF-8"),
])
def test_bad_label_rows(tmp_path, text, error, match):
    make_yolo(tmp_path / "d", [("train", "a", 20, 10, "")])
    lab = tmp_path / "d" / LABEL
    lab.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(error, match=match):
        yolo.parse(tmp_path / "d", workers=1)


def test_bad_row_skipped_with_warn_keeps_the_others(tmp_path):
    make_yolo(tmp_path / "d", [("train", "a", 20, 10, "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.4 0.4\n")])
    ds = yolo.parse(tmp_path / "d", workers=1, on_error="warn")
    assert ds.records[0].instances.labels.tolist() == [0, 1] and ds.info["skipped"] == 1


@pytest.mark.parametrize("yaml_text, error, match", [
    # missing names (and nc)
    ("train: images/train\n", InvalidAnnotationError, r"no 'names' \(or 'nc'\)"),
    # names dict not covering 0..n-1
    ("train: images/train\nnames: {0: a, 2: b}\n", InvalidAnnotationError, r"keys must be the class indices 0..1"),
    # names and nc disagree
    ("train: images/train\nnames: [a, b]\nnc: 3\n", InvalidAnnotationError, r"'names' has 2 entries but 'nc: 3'"),
    # names of another type
    ("train: images/train\nnames: cat\n", InvalidAnnotationError, r"must be a list or a \{index: name\}"),
    # path leaving the dataset folder
    ("path: ../..\ntrain: images/train\nnames: [a]\n", PathEscapeError, r"data\.yaml: path: path '\.\./\.\.'"),
    # a split path climbing out
    ("train: ../../etc\nnames: [a]\n", PathEscapeError, r"'train' path '\.\./\.\./etc' resolves to"),
    # an absolute split path
    ("train: /etc\nnames: [a]\n", PathEscapeError, r"'train' path '/etc'"),
    # a split folder that does not exist
    ("train: images/nope\nnames: [a]\n", MissingFileError, r"'images/nope' resolves to"),
    # a split name the OS refuses (too long: ENAMETOOLONG, found by tests/fuzzing.py)
    ("train: " + "x" * 400 + "\nnames: [a]\n", MissingFileError, r"'x{50,}.* which does not exist"),
    # no split at all
    ("names: [a]\nnc: 1\n", InvalidAnnotationError, r"no split"),
    # not YAML
    ("train: [images/train\nnames: [a]\n", MalformedFileError, r"data\.yaml:\d+: not valid YAML"),
    # not a mapping
    ("- train\n- val\n", MalformedFileError, r"expected a mapping"),
    # bad kpt_shape
    ("train: images/train\nnames: [a]\nkpt_shape: [17, 4]\n", InvalidAnnotationError, r"'kpt_shape: \[17, 4\]'"),
    # flip_idx not a permutation
    ("train: images/train\nnames: [a]\nkpt_shape: [3, 3]\nflip_idx: [0, 0, 1]\n", InvalidAnnotationError,
     r"'flip_idx' must be a permutation"),
    # a Python object tag (safe_load builds none)
    ("train: !!python/object/apply:os.system [echo]\nnames: [a]\n", MalformedFileError, r"not valid YAML"),
])
def test_bad_yaml(tmp_path, yaml_text, error, match):
    make_yolo(tmp_path / "d", [("train", "a", 20, 10, "0 0.5 0.5 0.2 0.2\n")])
    write_yaml(tmp_path / "d", yaml_text)
    with pytest.raises(error, match=match):
        yolo.parse(tmp_path / "d", workers=1)


def test_yaml_not_utf8(tmp_path):
    make_yolo(tmp_path / "d", [("train", "a", 20, 10, "")])
    (tmp_path / "d" / "data.yaml").write_bytes(b"train: images/train\nnames: [caf\xe9]\n")
    with pytest.raises(MalformedFileError, match=r"data\.yaml:2: not UTF-8"):
        yolo.parse(tmp_path / "d", workers=1)


def test_pose_row_with_wrong_columns(tmp_path):
    make_yolo(tmp_path / "d", [("train", "a", 20, 10, "0 0.5 0.5 0.2 0.2 0.1 0.1\n")], names="[a]",
              extra_yaml="kpt_shape: [3, 3]\n")
    with pytest.raises(InvalidAnnotationError, match=r"a\.txt:1: 7 columns; expected pose rows .* = 14"):
        yolo.parse(tmp_path / "d", workers=1)


def test_list_line_leaving_the_root_and_allow_outside_root(tmp_path):
    make_yolo(tmp_path / "d")
    (tmp_path / "d" / "sel.txt").write_text("../../outside.jpg\n", encoding="utf-8")
    write_yaml(tmp_path / "d", "train: sel.txt\nnames: [a, b]\n")
    with pytest.raises(PathEscapeError, match=r"sel\.txt:1: image path '\.\./\.\./outside\.jpg'"):
        yolo.parse(tmp_path / "d", workers=1)
    with pytest.raises(MissingFileError):  # allowed out: then the image is simply not there
        yolo.parse(tmp_path / "d", workers=1, allow_outside_root=True)


def test_missing_dataset_and_unknown_split(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        yolo.parse(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no dataset YAML"):
        yolo.parse(tmp_path / "empty")
    make_yolo(tmp_path / "d")
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        yolo.parse(tmp_path / "d", split="vall")
    assert len(yolo.parse(tmp_path / "d", split="val", workers=1)) == 1


def test_unreadable_image_is_named(tmp_path):
    make_yolo(tmp_path / "d")
    (tmp_path / "d/images/train/a.png").write_bytes(b"not an image")
    with pytest.raises(MalformedFileError, match=r"a\.png"):
        yolo.parse(tmp_path / "d", workers=1)
    assert len(yolo.parse(tmp_path / "d", workers=1, on_error="warn")) == 3


# --------------------------------------------------------------------------- write

@pytest.mark.parametrize("rows, kw", [(DETECT, {}), (SEGMENT, {}), (POSE, {"extra_yaml": "kpt_shape: [3, 3]\n"
                                                                             "flip_idx: [1, 0, 2]\n"})])
def test_yolo_round_trip_is_exact(tmp_path, rows, kw):
    make_yolo(tmp_path / "src", rows, **kw)
    ds = yolo.parse(tmp_path / "src", workers=1)
    (tmp_path / "out").mkdir()
    report = yolo.write(ds, tmp_path / "out")
    assert report["lost"] == {} and report["objects"] == ds.num_objects()
    back = yolo.parse(tmp_path / "out", workers=1)
    assert back.records == ds.records and back.splits == ds.splits and back.info["yolo"] == ds.info["yolo"]
    for lab in (tmp_path / "src" / "labels").rglob("*.txt"):
        if lab.read_text().strip():
            assert _rows(tmp_path / "out" / lab.relative_to(tmp_path / "src")) == _rows(lab)


def test_coco8_labels_written_back_byte_for_byte(fixtures, tmp_path):
    ds = yolo.parse(fixtures / HUB / "coco8", workers=1)
    (tmp_path / "o").mkdir()
    yolo.write(ds, tmp_path / "o", images="none")
    for lab in (fixtures / HUB / "coco8" / "labels").rglob("*.txt"):
        assert (tmp_path / "o" / lab.relative_to(fixtures / HUB / "coco8")).read_text() == lab.read_text()


def _coco_like(tmp_path: Path) -> Dataset:
    image(tmp_path / "src" / "img" / "x.png", 481, 377)
    image(tmp_path / "src" / "img" / "y.png", 640, 480)
    from dsprep.records import decimal_sum

    # COCO's reader gives x + w as the decimal sum (473.07 + 7.65 = 480.72): boxes as COCO would give them
    b = np.array([[473.07, 295.93, decimal_sum(473.07, 7.65), decimal_sum(295.93, 28.67)], [0.0, 0.0, 12.5, 377.0],
                  [1.08, 187.69, decimal_sum(1.08, 611.59), decimal_sum(187.69, 285.84)]])
    recs = [Record("x", "img/x.png", 481, 377, "train", instances=Instances(
                boxes=b[:2], labels=[3, 90], iscrowd=[False, True], ids=[11, 12])),
            Record("y", "img/y.png", 640, 480, "val", instances=Instances(
                boxes=b[2:], labels=[90], segmentation=[{"size": [480, 640], "counts": [96000, 20, 460, 20, 210700]}]))]
    return Dataset([Category(3, "car"), Category(90, "toothbrush")], recs, root=tmp_path / "src", format="coco")


def test_write_from_coco_like_records_reads_back_the_same_boxes(tmp_path):
    ds = _coco_like(tmp_path)
    (tmp_path / "o").mkdir()
    report = yolo.write(ds, tmp_path / "o", task="detect")
    lost = report["lost"]
    assert lost["crowd flags (crowd objects written as ordinary ones; crowd='drop' leaves them out)"] == 1
    assert lost["category ids (YOLO classes are 0..C-1 in category order; see category_map.json)"] == 2
    assert lost["object segmentations (objects; boxes kept)"] == 1 and lost["annotation ids"] == 2
    back = yolo.parse(tmp_path / "o", workers=1)
    for a, b in zip(ds, back):
        assert b.instances.boxes.tolist() == a.instances.boxes.tolist()  # exact, float for float
    assert back.records[0].instances.labels.tolist() == [0, 1]
    text = (tmp_path / "o/labels/train/x.txt").read_text().split()
    assert max(len(t) for t in text) < 20  # short decimals, not 17-digit noise


def test_crowd_drop_and_rle_traced_to_polygon(tmp_path):
    ds = _coco_like(tmp_path)
    (tmp_path / "o").mkdir()
    report = yolo.write(ds, tmp_path / "o", task="segment", crowd="drop")
    lost = report["lost"]
    assert report["objects"] == 2
    assert lost["crowd objects (dropped: YOLO has no crowd; crowd='keep' writes them as ordinary ones)"] == 1
    assert lost["RLE masks traced to polygons (objects; approximate: pixel-edge outlines)"] == 1
    assert lost["objects without a mask, written as their box's rectangle (segment)"] == 1
    back = yolo.parse(tmp_path / "o", workers=1)
    poly = back.record_by_id()["images/val/y"].instances.segmentation[0][0]
    # counts [96000, 20, 460, 20, ...]: column-major runs: columns 200 and 201, rows 0..19
    assert sorted(zip(poly[0::2], poly[1::2])) == [(200, 0), (200, 20), (202, 0), (202, 20)]


def test_write_rejects_unknown_task_and_crowd_option(tmp_path):
    ds = _coco_like(tmp_path)
    with pytest.raises(UnknownNameError, match="YOLO task"):
        yolo.write(ds, tmp_path, task="obb")
    with pytest.raises(UnknownNameError, match="crowd option"):
        yolo.write(ds, tmp_path, crowd="ignore")


def test_write_record_without_size_or_image_is_named(tmp_path):
    ds = Dataset([Category(0, "a")], [Record("r", "gone.jpg", 0, 0, "train",
                                             instances=Instances(boxes=[[0, 0, 1, 1]], labels=[0]))], root=tmp_path)
    with pytest.raises(InvalidAnnotationError, match="has no image size"):
        yolo.write(ds, tmp_path, images="none")


def test_overlapping_splits_become_lists_and_txt_files(tmp_path):
    make_yolo(tmp_path / "src")
    ds = yolo.parse(tmp_path / "src", workers=1)
    ds.splits = {**ds.splits, "trainval": ds.splits["train"] + ds.splits["val"], "some": ds.splits["train"][:1]}
    (tmp_path / "o").mkdir()
    yolo.write(ds, tmp_path / "o")
    doc = yolo._read_yaml(tmp_path / "o" / "data.yaml")
    assert doc["dsprep_splits"] == {"trainval": ["images/train", "images/val"], "some": "some.txt"}
    assert yolo.parse(tmp_path / "o", workers=1).splits == ds.splits


def test_pose_from_coco_keypoint_names_gets_flip_idx(tmp_path):
    image(tmp_path / "p.png", 10, 10)
    kp = np.array([[[1, 2, 2], [3, 4, 1], [5, 6, 0]]], np.float64)
    kp[0, 2, :2] = 0
    ds = Dataset([Category(1, "person", extra={"keypoints": ["nose", "left_eye", "right_eye"]})],
                 [Record("p", "p.png", 10, 10, "train", instances=Instances(boxes=[[1, 1, 8, 9]], labels=[1],
                                                                             keypoints=kp))], root=tmp_path)
    (tmp_path / "o").mkdir()
    assert yolo.write(ds, tmp_path / "o")["task"] == "pose"
    doc = yolo._read_yaml(tmp_path / "o" / "data.yaml")
    assert doc["kpt_shape"] == [3, 3] and doc["flip_idx"] == [0, 2, 1]
    assert doc["kpt_names"] == {0: ["nose", "left_eye", "right_eye"]}
    back = yolo.parse(tmp_path / "o", workers=1)
    assert back.records[0].instances.keypoints.tolist() == kp.tolist()
    assert back.categories[0].extra["keypoints"] == ["nose", "left_eye", "right_eye"]


def test_classification_write_and_read_back(tmp_path):
    for split, cls in (("train", "ant"), ("train", "bee"), ("val", "bee")):
        image(tmp_path / "c" / split / cls / "0.jpg", 8, 8)
    ds = yolo.parse(tmp_path / "c")
    (tmp_path / "o").mkdir()
    assert yolo.write(ds, tmp_path / "o")["task"] == "classify"
    back = yolo.parse(tmp_path / "o")
    assert [(r.path, r.split, r.label) for r in back] == [(r.path, r.split, r.label) for r in ds]


# --------------------------------------------------------------------------- convert / CLI

def test_convert_coco_to_yolo_writes_the_category_map(tmp_path):
    from dsprep.conversion import convert, write_dataset

    ds = _coco_like(tmp_path)
    report = write_dataset(ds, "yolo", tmp_path / "out" / "a", images="none")
    cmap = json.loads((tmp_path / "out" / "a" / "category_map.json").read_text())
    assert cmap["policy"] == "contiguous0"
    assert [(c["source_id"], c["id"]) for c in cmap["categories"]] == [(3, 0), (90, 1)]
    assert report["lost"].get("category ids (YOLO classes are 0..C-1 in category order; see category_map.json)") \
        is None  # renumbered before writing: nothing lost, the map says it
    with pytest.raises(UnknownNameError, match="--category-ids contiguous1: --to yolo"):
        write_dataset(ds, "yolo", tmp_path / "out" / "b", category_ids="contiguous1")
    make_yolo(tmp_path / "y")
    summary = convert("yolo", tmp_path / "y", "coco", tmp_path / "coco", images="none", workers=1)
    assert summary["images"] == 4 and summary["objects"] == 3


def test_cli_yolo_flags(tmp_path, capsys):
    from dsprep.cli import main

    make_yolo(tmp_path / "y")
    assert main(["convert", "yolo", str(tmp_path / "y"), "--to", "coco", "--out", str(tmp_path / "c"),
                 "--task", "detect"]) == 2
    assert "--task: only with --to yolo" in capsys.readouterr().err
    assert main(["convert", "yolo", str(tmp_path / "y"), "--to", "yolo", "--out", str(tmp_path / "o"),
                 "--task", "segment", "--crowd", "drop", "--images", "copy"]) == 0
    assert (tmp_path / "o" / "labels" / "train" / "a.txt").read_text().startswith("0 0.25 0.3 0.75 0.3 0.75 0.7")


def test_mask_polygons():
    from dsprep.masks import mask_polygons, segmentation_mask

    m = np.zeros((10, 10), np.uint8)
    m[1:8, 1:8] = 1
    m[3:5, 3:5] = 0
    m[9, 9] = 1
    rings, holes = mask_polygons(m)
    assert holes == 1 and len(rings) == 2 and rings[0] == [1.0, 1.0, 1.0, 8.0, 8.0, 8.0, 8.0, 1.0]
    blob = np.zeros((12, 10), np.uint8)
    blob[2:9, 3:5] = 1
    blob[6:9, 3:9] = 1
    (ring,), _ = mask_polygons(blob)
    assert len(ring) == 12  # an L: 6 corners
    # pycocotools rasterises the outline back onto the same pixels, up to its edge rule
    back = segmentation_mask([ring], 12, 10)
    assert abs(int(back.sum()) - int(blob.sum())) <= 12


# --------------------------------------------------------------------------- what the round-trip matrix needs

def test_source_category_ids_come_back_from_the_category_map(tmp_path):
    from dsprep.conversion import write_dataset

    ds = _coco_like(tmp_path)
    ds.categories = [Category(3, "car", "vehicle"), Category(90, "toothbrush", "indoor")]
    report = write_dataset(ds, "yolo", tmp_path / "out", images="link")
    assert (tmp_path / "out/data.yaml").read_text().count("0: car") == 1  # the file itself says 0..C-1
    back = yolo.parse(tmp_path / "out", workers=1)
    assert [(c.id, c.name, c.supercategory) for c in back.categories] == [(3, "car", "vehicle"),
                                                                           (90, "toothbrush", "indoor")]
    assert [r.instances.labels.tolist() for r in back] == [[3, 90], [90]]
    # the map (written before the writer) holds the supercategories: kept, so not counted lost
    assert not any("supercategor" in k for k in report["lost"])
    # a map that no longer names the classes (the YAML edited after) is ignored: 0..C-1
    doc = json.loads((tmp_path / "out/category_map.json").read_text())
    doc["categories"][0]["name"] = "bus"
    (tmp_path / "out/category_map.json").write_text(json.dumps(doc))
    assert [c.id for c in yolo.parse(tmp_path / "out", workers=1).categories] == [0, 1]
    (tmp_path / "out/category_map.json").write_text("not json")
    assert [c.id for c in yolo.parse(tmp_path / "out", workers=1).categories] == [0, 1]


def test_a_map_with_supercategories_restores_them_and_they_are_not_counted(tmp_path):
    ds = _coco_like(tmp_path)
    ds.categories = [Category(3, "car", "vehicle"), Category(90, "toothbrush", "indoor")]
    (tmp_path / "o").mkdir()
    (tmp_path / "o/category_map.json").write_text(json.dumps({"categories": [
        {"name": "car", "source_id": 3, "id": 0, "supercategory": "vehicle"},
        {"name": "toothbrush", "source_id": 90, "id": 1, "supercategory": "indoor"}]}))
    lost = yolo.write(ds.remap_categories("contiguous0")[0], tmp_path / "o")["lost"]
    assert not any("supercategor" in k for k in lost)
    back = yolo.parse(tmp_path / "o", workers=1)
    assert [(c.id, c.supercategory) for c in back.categories] == [(3, "vehicle"), (90, "indoor")]


def test_image_labels_outside_classify_are_counted_lost(tmp_path):
    ds = _coco_like(tmp_path)
    ds.records = [r.replace(label=3) for r in ds.records]
    (tmp_path / "o").mkdir()
    lost = yolo.write(ds, tmp_path / "o", task="detect", images="none")["lost"]
    assert lost["image-level labels (only --task classify writes them: class folders)"] == 2


def test_a_dataset_without_val_reads_back_without_one(tmp_path):
    make_yolo(tmp_path / "src")
    ds = yolo.parse(tmp_path / "src", split="train", workers=1)
    ds.splits = {"train": ds.splits["train"]}
    (tmp_path / "o").mkdir()
    yolo.write(ds, tmp_path / "o")
    doc = yolo._read_yaml(tmp_path / "o" / "data.yaml")
    assert doc["val"] == doc["train"] == "images/train" and doc["dsprep_val_is_train"] is True  # Ultralytics needs val
    assert yolo.parse(tmp_path / "o", workers=1).splits == ds.splits
    # a user's YAML whose val is its train folder keeps both splits
    write_yaml(tmp_path / "o", "train: images/train\nval: images/train\nnames: [cat, dog]\n")
    assert set(yolo.parse(tmp_path / "o", workers=1).splits) == {"train", "val"}


def test_no_other_format_claims_a_yolo_tree_and_yolo_claims_no_other(tmp_path, fixtures):
    """detect_formats (validate-cli) refuses a path two formats claim: YOLO trees must be only YOLO's."""
    from dsprep.conversion import write_dataset
    from fakes_coco import make_coco
    from fakes_voc import make_voc

    make_yolo(tmp_path / "y")
    write_dataset(_coco_like(tmp_path), "yolo", tmp_path / "w", images="link")  # with manifest and category map
    yolo_trees = [tmp_path / "y", tmp_path / "w", fixtures / HUB / "coco8"]
    for root in yolo_trees:
        claims = [n for n in FORMATS if n != "yolo" and _claims(n, root)]
        assert claims == [], (root, claims)
    others = [make_coco(tmp_path / "c")["root"], make_voc(tmp_path / "v")["root"], tmp_path / "c2"]
    image(tmp_path / "c2" / "train" / "ant" / "0.jpg", 8, 8)
    for root in others:
        assert not yolo.detect(root), root


def _claims(name: str, root: Path) -> bool:
    try:
        return bool(FORMATS[name].detect(root))
    except NotImplementedError:
        return False


def test_cvat_yolo11_darknet_export_gives_the_boxes_of_its_coco_export(fixtures, tmp_path):
    """README §14: one CVAT task exported as YOLO 1.1 (Darknet: data/train.txt lines relative to the
    Darknet folder, labels beside the images, 0-byte files for images without boxes) and as COCO 1.0.
    The YOLO rows are the task's boxes (polygons and ellipses are not in YOLO 1.1) to 6 decimals."""
    src = fixtures / "2label" / "datasets"
    root = tmp_path / "darknet"
    shutil.copytree(src / "yolo1.1", root / "data")
    sizes = {"birds.jpg": (1000, 666), "crack.jpeg": (1280, 720), "strawberry.jpg": (800, 800)}
    for name, (w, h) in sizes.items():
        image(root / "data" / "obj_train_data" / name, w, h)
    shutil.copy(src / "cvat1.1" / "images" / "shapes.jpg", root / "data" / "obj_train_data" / "shapes.jpg")
    names = (root / "data" / "obj.names").read_text().split()
    write_yaml(root, f"train: data/train.txt\nnames: {json.dumps(names)}\n")
    ds = yolo.parse(root, workers=1)
    assert len(ds) == 4 and ds.info["empty_labels"] == 2 and ds.num_objects() == 18
    coco = json.loads((src / "coco1.0" / "annotations" / "instances_default.json").read_text())
    file_of = {im["id"]: (im["file_name"], im["width"], im["height"]) for im in coco["images"]}
    cname = {c["id"]: c["name"] for c in coco["categories"]}
    want: dict[str, list] = {}
    for a in coco["annotations"]:
        if a["segmentation"] == []:  # CVAT's boxes (polygons and ellipses carry a segmentation)
            x, y, w, h = a["bbox"]
            want.setdefault(file_of[a["image_id"]][0], []).append((cname[a["category_id"]], [x, y, x + w, y + h]))
    for r in ds:
        name = Path(r.path).name
        assert (r.width, r.height) == file_of[next(k for k, v in file_of.items() if v[0] == name)][1:]
        got = sorted(((names[c], b) for c, b in zip(r.instances.labels.tolist(), r.instances.boxes.tolist())),
                     key=lambda t: (t[0], [round(v) for v in t[1]]))
        exp = sorted(want.get(name, []), key=lambda t: (t[0], [round(v) for v in t[1]]))
        assert [g[0] for g in got] == [e[0] for e in exp], name
        np.testing.assert_allclose([g[1] for g in got] or np.zeros((0, 4)), [e[1] for e in exp] or np.zeros((0, 4)),
                                   atol=0.01)  # COCO's 2 decimals vs YOLO's 6 at <= 1280 px


def test_absolute_paths_inside_the_dataset_folder_are_read(tmp_path):
    """Ultralytics writes absolute paths (``path: /data/coco8``); inside the YAML's folder they are
    the dataset itself, not an escape."""
    root = tmp_path / "d"
    make_yolo(root)
    write_yaml(root, f"path: {root}\ntrain: {root / 'images' / 'train'}\nval: images/val\nnames: [cat, dog]\n")
    ds = yolo.parse(root, workers=1)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3, "val": 1}
    write_yaml(root, f"path: {tmp_path}\ntrain: images/train\nnames: [cat, dog]\n")  # the folder above: out
    with pytest.raises(PathEscapeError, match=r"data\.yaml: path: path '/"):
        yolo.parse(root, workers=1)


def test_cli_detects_a_yolo_source_when_the_format_is_left_out(tmp_path, fixtures, capsys):
    from dsprep.cli import main
    from dsprep.formats import detect_formats

    make_yolo(tmp_path / "y")
    assert detect_formats(tmp_path / "y") == ["yolo"] and detect_formats(fixtures / HUB / "coco8") == ["yolo"]
    assert main(["convert", str(tmp_path / "y"), "--to", "coco", "--out", str(tmp_path / "c"), "--images", "none"]) == 0
    assert "detected format yolo" in capsys.readouterr().err
    docs = [json.loads(p.read_text()) for p in (tmp_path / "c" / "annotations").glob("*.json")]
    assert sum(len(d["images"]) for d in docs) == 4 and sum(len(d["annotations"]) for d in docs) == 3
