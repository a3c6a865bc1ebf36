"""dsprep.load: root resolution, the known-dataset table, errors, and the ImageNet path end to end.

The COCO, VOC and Cityscapes parsers are written elsewhere; here their entries
are checked for root resolution, error messages and the arguments handed to
``parse`` (through a recording stand-in for the format module).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import dsprep
from dsprep import catalog
from dsprep.catalog import KNOWN, candidate_roots, load
from dsprep.errors import DatasetNotFoundError, UnknownNameError
from dsprep.records import Dataset, Record

from fakes_imagenet import SORTED, make_flat_val, make_kaggle, make_tree, write_devkit


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty $DSPREP_DATA and an empty home, so nothing on this machine is found by accident."""
    env, home = tmp_path / "env", tmp_path / "home"
    env.mkdir()
    home.mkdir()
    monkeypatch.setenv("DSPREP_DATA", str(env))
    monkeypatch.setenv("HOME", str(home))
    return SimpleNamespace(env=env, home=home, tmp=tmp_path)


class Recorder:
    """Stands in for a format module: records what ``load`` passes to ``parse``."""

    def __init__(self):
        self.calls = []

    def __call__(self, name):
        def parse(root, **kw):
            self.calls.append((name, Path(root), kw))
            # one labelled image that exists: not an empty or partial copy
            Path(root, "x.jpg").touch()
            return Dataset([], [Record("x", "x.jpg", mask_path="x.png")], root=Path(root), format=name)
        return SimpleNamespace(parse=parse)


def test_load_is_exported():
    assert dsprep.load is load and "load" in dsprep.__all__


# ----------------------------------------------------------------------------- root resolution
def test_root_argument_then_env_then_home(places):
    assert candidate_roots("coco", places.tmp / "x") == [places.tmp / "x"]
    assert candidate_roots("coco") == [places.env / "coco", places.home / "datasets" / "coco"]
    make_tree(places.home / "datasets" / "imagenet", {SORTED[0]: 1})
    assert load("imagenet").root == places.home / "datasets" / "imagenet"
    make_tree(places.env / "imagenet", {SORTED[1]: 2})
    ds = load("imagenet")
    assert ds.root == places.env / "imagenet" and len(ds) == 4  # train + val of the env copy
    make_tree(places.tmp / "mine", {SORTED[2]: 3})
    assert load("imagenet", root=places.tmp / "mine").root == places.tmp / "mine"


def test_no_env_var_means_home_only(places, monkeypatch):
    monkeypatch.delenv("DSPREP_DATA")
    assert candidate_roots("voc") == [places.home / "datasets" / "voc"]


# ----------------------------------------------------------------------------- imagenet end to end
def test_imagenet_split_and_devkit_val(places):
    root = places.env / "imagenet"
    make_tree(root, splits=("train",))
    labels = [SORTED[i % 5] for i in range(6)]
    make_flat_val(root / "val", labels)
    write_devkit(root, labels)
    val = load("imagenet", split="val")
    assert list(val.splits) == ["val"]
    assert [val.categories[r.label].name for r in val.records] == labels
    train = load("imagenet", "train")
    assert {r.split for r in train.records} == {"train"}


def test_imagenet_task_localization_reads_boxes(places):
    make_kaggle(places.env / "imagenet")
    assert load("imagenet", split="val").num_objects() == 0  # classification: boxes not read
    assert load("imagenet", split="val", task="localization").num_objects() == 8


def test_imagenet_flat_val_without_labels_is_partial(places):
    make_flat_val(places.env / "imagenet" / "val", SORTED)
    with pytest.raises(DatasetNotFoundError) as err:
        load("imagenet", split="val")
    msg = str(err.value)
    assert "ILSVRC2012_validation_ground_truth.txt" in msg and "LOC_val_solution.csv" in msg
    assert "https://image-net.org/download.php" in msg


def test_load_any_folder_by_format(places):
    make_tree(places.tmp / "tree", splits=(None,))
    ds = load(format="imagenet", root=places.tmp / "tree", validation_split=0.5, seed=0)
    assert set(ds.splits) == {"train", "validation"}
    with pytest.raises(UnknownNameError, match="Did you mean 'imagenet'"):
        load(format="imagenett", root=places.tmp / "tree")
    with pytest.raises(UnknownNameError, match="format= and root="):
        load()
    with pytest.raises(DatasetNotFoundError, match="nope"):
        load(format="imagenet", root=places.tmp / "nope")


# ----------------------------------------------------------------------------- missing / partial: every name
@pytest.mark.parametrize("name,kwargs,expected", [
    ("imagenet", {"split": "train"}, ["train", "ILSVRC/Data/CLS-LOC/train"]),
    ("coco", {"split": "val", "task": "keypoints"}, ["annotations/person_keypoints_val2017.json", "val2017"]),
    ("coco", {"split": "val", "task": "panoptic"}, ["annotations/panoptic_val2017.json",
                                                    "annotations/panoptic_val2017"]),
    ("voc", {"split": "test", "year": 2007}, ["Annotations", "JPEGImages", "ImageSets/Main/test.txt"]),
    ("cityscapes", {"split": "val"}, ["leftImg8bit/val", "gtFine/val"]),
])
def test_missing_dataset_lists_places_expected_folders_and_url(places, name, kwargs, expected):
    with pytest.raises(DatasetNotFoundError) as err:
        load(name, **kwargs)
    msg = str(err.value)
    assert str(places.env / name) in msg and str(places.home / "datasets" / name) in msg
    for sub in expected:
        assert sub in msg
    assert KNOWN[name].url.split()[0] in msg and "Nothing is downloaded" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_partial_copies_name_what_is_missing(places, monkeypatch):
    coco = places.env / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(DatasetNotFoundError, match=r"coco: missing val2017\b"):
        load("coco", split="val")
    (coco / "images" / "val2017").mkdir(parents=True)  # the other common tree is accepted
    rec = Recorder()
    monkeypatch.setattr(catalog, "get_format", rec)
    load("coco", split="val")
    assert rec.calls == [("coco", coco, {"split": "val2017", "task": "instances"})]
    voc = places.home / "datasets" / "voc" / "VOCdevkit" / "VOC2012"
    (voc / "Annotations").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as err:
        load("voc", split="val")
    msg = str(err.value)
    assert f"(as {voc})" in msg and "missing JPEGImages, ImageSets/Main/val.txt" in msg
    assert f"{places.env / 'voc'}: does not exist" in msg


# ----------------------------------------------------------------------------- unknown names
@pytest.mark.parametrize("args,kwargs,match", [
    (("imagnet",), {}, r"Unknown dataset 'imagnet'. Valid values are: imagenet, coco, voc, cityscapes. "
                       r"Did you mean 'imagenet'\?"),
    (("coco", "vall"), {}, r"Unknown coco split 'vall'. Valid values are: train, val. Did you mean 'val'\?"),
    (("coco",), {"task": "keypoint"}, r"Valid values are: instances, keypoints, captions, panoptic. "
                                      r"Did you mean 'keypoints'\?"),
    (("voc",), {"year": "2010"}, r"Unknown voc year '2010'. Valid values are: 2012, 2007"),
    (("cityscapes",), {"year": 2012}, r"cityscapes has no years"),
    (("cityscapes", "trian"), {}, r"Valid values are: train, val, test, train_extra\. Did you mean 'train'"),
])
def test_unknown_names_list_valid_ones(places, args, kwargs, match):
    with pytest.raises(UnknownNameError, match=match):
        load(*args, **kwargs)


# ----------------------------------------------------------------------------- what reaches the other parsers
def test_arguments_handed_to_coco_voc_cityscapes_parsers(places, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(catalog, "get_format", rec)
    coco = places.env / "coco"
    for sub in ("annotations/panoptic_val2017", "val2017"):
        (coco / sub).mkdir(parents=True)
    for f in ("person_keypoints_val2017.json", "panoptic_val2017.json"):
        (coco / "annotations" / f).write_text("{}")
    load("coco", split="val", task="keypoints", on_error="warn")
    load("coco", split="val", task="panoptic")
    voc = places.env / "voc" / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    load("voc", split="test", year="2007")
    city = places.env / "cityscapes"
    for sub in ("leftImg8bit/val", "gtFine/val"):
        (city / sub).mkdir(parents=True)
    load("cityscapes", split="val", task="instance")
    assert rec.calls == [
        ("coco", coco, {"split": "val2017", "task": "person_keypoints", "on_error": "warn"}),
        ("coco-panoptic", coco, {"split": "val2017"}),
        ("voc", voc, {"split": "test", "segmentation": False}),
        ("cityscapes", city, {"split": "val", "instances": "things"}),
    ]
    # the VOC2007 folder itself is accepted as root too
    load("voc", split="test", year="2007", root=voc)
    assert rec.calls[-1][1] == voc
    load("voc", split="test", root=voc)  # no year asked: the folder's own
    assert rec.calls[-1][1] == voc
    with pytest.raises(DatasetNotFoundError, match=r"VOC2007 is the VOC2007 folder, but year='2012' was asked; "
                                                   r"pass year='2007'"):
        load("voc", split="test", year="2012", root=voc)


def test_voc_segmentation_task_uses_the_segmentation_lists(tmp_path):
    """VOC2012 val is 5,823 images in ImageSets/Main but 1,449 in ImageSets/Segmentation."""
    import dsprep
    from dsprep.synth import synth

    root = tmp_path / "VOC2012"
    synth("voc", root, images=10, seed=1, size=32)
    main_val = (root / "ImageSets/Main/val.txt").read_text().split()
    seg_dir = root / "ImageSets/Segmentation"
    seg_dir.mkdir(parents=True, exist_ok=True)
    others = [p.stem for p in sorted((root / "JPEGImages").iterdir()) if p.stem not in main_val][:3]
    (seg_dir / "val.txt").write_text("\n".join(others) + "\n")
    (seg_dir / "train.txt").write_text("\n".join(main_val) + "\n")
    ds = dsprep.load("voc", split="val", task="segmentation", root=root)
    assert sorted(r.id.split("/")[-1] for r in ds) == sorted(others)
    assert all(r.mask_path for r in ds) and list(ds.splits) == ["val"]
    det = dsprep.load("voc", split="val", root=root)
    assert sorted(r.id.split("/")[-1] for r in det) == sorted(main_val)


def test_partial_copies_raise_not_found(places):
    """Folders present but empty, or images without their labels, are not a dataset."""
    from fakes_cityscapes import make_cityscapes

    make_tree(places.tmp / "inet", splits=("train",))
    (places.tmp / "inet" / "val").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"inet: the expected folders hold no images"):
        load("imagenet", split="val", root=places.tmp / "inet")
    city = places.tmp / "city"
    make_cityscapes(city, splits=("train", "val"), frames=1)
    for f in (city / "gtFine" / "train").rglob("*"):
        if f.is_file():
            f.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"image\(s\) have no gtFine labels .*unpack gtFine"):
        load("cityscapes", split="train", root=city)
    assert len(load("cityscapes", split="val", root=city)) == 2
    coco = places.tmp / "coco"  # the annotations without their images
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2017").mkdir()
    (coco / "annotations" / "instances_val2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}], "annotations": [],
        "categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(DatasetNotFoundError, match=r"the annotations are there but not the images \(e\.g\. .*a\.jpg"):
        load("coco", split="val", root=coco)
    (coco / "val2017" / "a.jpg").write_bytes(b"")
    assert len(load("coco", split="val", root=coco)) == 1
    a_file = places.tmp / "file"
    a_file.write_text("x")
    with pytest.raises(DatasetNotFoundError, match=r"file: is a file, not a folder"):
        load("imagenet", root=a_file)


def test_cityscapes_train_extra_and_gtcoarse(places):
    from fakes_cityscapes import make_cityscapes

    city = places.tmp / "city"
    make_cityscapes(city, splits=("train_extra",), frames=1, annotations="gtCoarse")
    ds = load("cityscapes", split="train_extra", root=city)
    assert len(ds) == 2 and ds.info["annotations"] == "gtCoarse"
    with pytest.raises(DatasetNotFoundError, match=r"missing leftImg8bit/train, gtFine/train"):
        load("cityscapes", split="train", root=city)
    make_cityscapes(city / "coarse", splits=("train",), frames=1, annotations="gtCoarse")
    assert len(load("cityscapes", split="train", root=city / "coarse", annotations="gtCoarse")) == 2
