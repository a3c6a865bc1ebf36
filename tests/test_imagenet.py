"""ImageNet / ILSVRC2012 and class-subfolder trees: parse, write, round trips, bad input."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import numpy as np
import pytest

from dsprep import parse as dsprep_parse
from dsprep.conversion import convert
from dsprep.errors import (InvalidAnnotationError, MalformedFileError, MissingFileError,
                           UnknownNameError)
from dsprep.formats import detect_format, imagenet
from dsprep.records import Instances, Record

from fakes_imagenet import (SORTED, SYNSETS, jpeg_bytes, loc_xml, make_flat_val, make_kaggle, make_tree,
                            write_devkit, write_meta_mat)

FORMATTER = "Imagenet-1K-Formatter"


# ----------------------------------------------------------------------------- class-subfolder trees
def test_generated_tree_sorted_classes_labels_and_no_image_reads(tmp_path):
    expected = make_tree(tmp_path)
    ds = imagenet.parse(tmp_path)
    assert [c.name for c in ds.categories] == SORTED and [c.id for c in ds.categories] == list(range(5))
    assert set(ds.splits) == {"train", "val"}
    for split, classes in expected.items():
        got = {r.path for r in ds.records if r.split == split}
        assert got == {f"{split}/{w}/{n}" for w, names in classes.items() for n in names}
    for r in ds.records:
        wnid = r.path.split("/")[1]
        assert r.label == SORTED.index(wnid)
        assert r.id == r.path[:-len(".JPEG")]
        assert (r.width, r.height) == (0, 0)  # parsing opens no image
        assert len(r.instances) == 0
    # records within a class are in sorted file order, as torchvision lists them
    train0 = [r.path for r in ds.records if r.split == "train" and r.label == 0]
    assert train0 == sorted(train0)


def test_read_sizes_reads_headers_grayscale_and_png_named_jpeg(tmp_path):
    make_tree(tmp_path, splits=("train",), size=16)
    ds = imagenet.parse(tmp_path, read_sizes=True, workers=1)
    assert {(r.width, r.height) for r in ds.records} == {(16, 16)}
    assert len(ds) == sum(2 + i % 2 for i in range(5))


def test_split_argument_and_unknown_split(tmp_path):
    make_tree(tmp_path)
    ds = imagenet.parse(tmp_path, split="val")
    assert list(ds.splits) == ["val"] and all(r.split == "val" for r in ds.records)
    with pytest.raises(UnknownNameError, match=r"Valid values are: train, val\. Did you mean 'val'\?"):
        imagenet.parse(tmp_path, split="vall")


def test_imagenette_fixture_matches_torchvision_order(fixtures):
    root = fixtures / "imagenette"
    ds = imagenet.parse(root)
    folders = sorted(os.listdir(root / "train"))
    assert [c.name for c in ds.categories] == folders and ds.categories[0].name == "n01440764"
    n = {s: sum(len(os.listdir(root / s / w)) for w in os.listdir(root / s)) for s in ("train", "val")}
    assert {k: len(v) for k, v in ds.splits.items()} == n
    for r in ds.records:
        assert ds.categories[r.label].name == r.path.split("/")[1]
    assert ds.info["stray_files"] == ds.info["non_image_files"] == ds.info["nested_images"] == 0
    # headers only, on real JPEGs (7 of them grayscale): Imagenette's short side is 224
    sized = imagenet.parse(root, split="val", read_sizes=True, workers=1)
    assert {min(r.width, r.height) for r in sized.records} == {224}
    assert detect_format(root) == "imagenet" or imagenet.detect(root)


def test_datumaro_stray_and_nested(fixtures, caplog):
    root = fixtures / "datumaro/tests/assets/imagenet_dataset"
    with caplog.at_level(logging.INFO, logger="dsprep.formats.imagenet"):
        ds = imagenet.parse(root)
    # nested label_1/label_1_1/label_1_1.jpg belongs to label_1 (torchvision/Keras walk
    # class folders recursively); the stray label_0_2.jpg at the root belongs to no class
    assert sorted((r.id, ds.categories[r.label].name) for r in ds.records) == [
        ("label_0/label_0_1", "label_0"), ("label_1/label_1_1", "label_1"),
        ("label_1/label_1_1/label_1_1", "label_1")]
    assert ds.info["stray_files"] == 1 and ds.info["nested_images"] == 1
    assert "label_0_2.jpg" in caplog.text


def test_datumaro_subsets(fixtures):
    ds = imagenet.parse(fixtures / "datumaro/tests/assets/imagenet_subsets_dataset")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3, "val": 3, "test": 3}
    assert ds.info["stray_files"] == 3 and ds.info["nested_images"] == 3


def test_non_image_hidden_and_stray_files_are_counted_not_fatal(tmp_path):
    make_tree(tmp_path, splits=("train",))
    cls = tmp_path / "train" / SORTED[0]
    (cls / "README.txt").write_text("not an image")
    (cls / ".DS_Store").write_bytes(b"\0")
    (cls / "._n01440764_1.JPEG").write_bytes(b"\0")  # macOS AppleDouble
    (cls / "UPPER.JpEg").write_bytes(jpeg_bytes())
    (tmp_path / "train" / "stray.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "train" / SORTED[1] / "deep" / "er").mkdir(parents=True)
    (tmp_path / "train" / SORTED[1] / "deep" / "er" / "x.png").write_bytes(jpeg_bytes())
    (tmp_path / "train" / SORTED[2] / "._n01751748_1.JPEG").write_bytes(b"\0")  # only images beside it
    (tmp_path / "train" / SORTED[2] / ".thumbs").mkdir()
    ds = imagenet.parse(tmp_path)
    assert ds.info["non_image_files"] == 1 and ds.info["hidden_files"] == 4
    assert not [r for r in ds.records if "/." in r.path]
    assert ds.info["stray_files"] == 1 and ds.info["nested_images"] == 1
    ids = {r.id for r in ds.records}
    assert f"train/{SORTED[0]}/UPPER" in ids and f"train/{SORTED[1]}/deep/er/x" in ids


def test_tree_without_splits_and_seeded_validation_split(tmp_path):
    make_tree(tmp_path, {w: 6 for w in SORTED}, splits=(None,))
    plain = imagenet.parse(tmp_path)
    assert plain.splits == {} and len(plain) == 30 and all(r.split is None for r in plain.records)
    a = imagenet.parse(tmp_path, validation_split=0.2, seed=123)
    b = imagenet.parse(tmp_path, validation_split=0.2, seed=123)
    c = imagenet.parse(tmp_path, validation_split=0.2, seed=7)
    assert len(a.splits["validation"]) == int(0.2 * 30) and len(a.splits["train"]) == 24
    assert a.splits == b.splits and set(a.splits["validation"]) != set(c.splits["validation"])
    # the documented algorithm: PCG64(seed) permutes the sorted ids; the last 20% validate
    ids = sorted(r.id for r in plain.records)
    perm = np.random.Generator(np.random.PCG64(123)).permutation(len(ids))
    assert set(a.splits["validation"]) == {ids[j] for j in perm[24:]}
    only = imagenet.parse(tmp_path, validation_split=0.2, seed=123, split="validation")
    assert sorted(r.id for r in only.records) == sorted(a.splits["validation"])
    with pytest.raises(ValueError, match="needs a seed"):
        imagenet.parse(tmp_path, validation_split=0.2)
    with pytest.raises(UnknownNameError, match="no split folders"):
        imagenet.parse(tmp_path, split="train")


def test_validation_split_refused_on_a_tree_with_splits(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(ValueError, match="already has train, val"):
        imagenet.parse(tmp_path, validation_split=0.2, seed=1)


# ----------------------------------------------------------------------------- devkit val (variant A)
def test_devkit_ground_truth_on_the_real_files(fixtures, tmp_path):
    """Imagenet-1K-Formatter's ground truth + map_clsloc.txt: val_00000001 is n01751748, index 65."""
    val = tmp_path / "val"
    val.mkdir()
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(jpeg_bytes())
    # and every real ILSVRC2012_val_* in the imagenette fixture, whose folder is its true class
    truth = {}
    for p in sorted((fixtures / "imagenette").glob("*/*/ILSVRC2012_val_*.JPEG")):
        os.symlink(p, val / p.name)
        truth[p.stem] = p.parent.name
    assert len(truth) >= 15
    ds = imagenet.parse(tmp_path, ground_truth=fixtures / FORMATTER / "ILSVRC2012_validation_ground_truth.txt",
                        mapping=fixtures / FORMATTER / "map_clsloc.txt")
    assert len(ds.categories) == 1000
    first = next(r for r in ds.records if r.id == "val/ILSVRC2012_val_00000001")
    assert first.label == 65 and ds.categories[65].name == "n01751748"
    assert ds.categories[65].extra["words"] == "sea_snake"
    for r in ds.records:
        if r.id != "val/ILSVRC2012_val_00000001":
            assert ds.categories[r.label].name == truth[r.id.split("/")[1]]
    assert ds.info["layout"] == {"val": "flat + ILSVRC2012_validation_ground_truth.txt"}


def test_trap_class_index_json_is_read_as_an_id_table(fixtures, tmp_path, caplog):
    """The 1-based ILSVRC2012_ID-ordered imagenet_class_index.json must not be read as Keras's."""
    make_flat_val(tmp_path / "val", ["x"] * 3)
    gt = fixtures / FORMATTER / "ILSVRC2012_validation_ground_truth.txt"
    with caplog.at_level(logging.INFO, logger="dsprep.formats.imagenet"):
        via_json = imagenet.parse(tmp_path, ground_truth=gt,
                                  mapping=fixtures / FORMATTER / "imagenet_class_index.json")
    assert "1-based in ILSVRC2012_ID order" in caplog.text
    via_map = imagenet.parse(tmp_path, ground_truth=gt, mapping=fixtures / FORMATTER / "map_clsloc.txt")
    assert [r.label for r in via_json.records] == [r.label for r in via_map.records]
    assert via_json.records[0].label == 65 and via_json.categories[65].name == "n01751748"


def test_keras_class_index_gives_words_and_unsorted_zero_based_is_refused(tmp_path):
    make_tree(tmp_path, splits=("train",))
    keras = {str(i): [w, SYNSETS[w][1].split(",")[0]] for i, w in enumerate(SORTED)}
    (tmp_path / "keras.json").write_text(json.dumps(keras))
    ds = imagenet.parse(tmp_path, mapping=tmp_path / "keras.json")
    assert [c.extra["words"] for c in ds.categories] == [keras[str(i)][1] for i in range(5)]
    bad = {str(i): [w, ""] for i, w in enumerate(reversed(SORTED))}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(MalformedFileError, match="refusing to guess"):
        imagenet.parse(tmp_path, mapping=tmp_path / "bad.json")


def test_devkit_autodiscovery_and_meta_mat(tmp_path):
    labels = [SORTED[i % 5] for i in range(9)]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels, with_map=False)
    write_meta_mat(tmp_path / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    ds = imagenet.parse(tmp_path)
    assert [c.name for c in ds.categories] == SORTED  # the non-leaf n00001740 is dropped
    assert [ds.categories[r.label].name for r in ds.records] == labels
    assert ds.categories[SORTED.index("n01440764")].extra["words"] == "tench, Tinca tinca"


def test_meta_mat_without_scipy_names_the_extra(tmp_path, monkeypatch):
    labels = [SORTED[0]]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels, with_map=False)
    write_meta_mat(tmp_path / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match=r"dsprep\[meta\]"):
        imagenet.parse(tmp_path)


def test_devkit_map_clsloc_autodiscovered_and_missing_table_is_named(tmp_path):
    labels = [SORTED[(3 * i) % 5] for i in range(6)]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels, with_map=False)
    with pytest.raises(MissingFileError, match="meta.mat or map_clsloc.txt"):
        imagenet.parse(tmp_path)
    write_devkit(tmp_path, labels)
    ds = imagenet.parse(tmp_path)
    assert [ds.categories[r.label].name for r in ds.records] == labels


def test_flat_val_folder_as_the_root_finds_the_devkit_beside_it(tmp_path):
    labels = [SORTED[(4 * i) % 5] for i in range(5)]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels)
    ds = imagenet.parse(tmp_path / "val")
    assert ds.splits == {} and [r.id for r in ds.records][0] == "ILSVRC2012_val_00000001"
    assert [ds.categories[r.label].name for r in ds.records] == labels
    # a class tree beside those files does not pick up their table
    make_tree(tmp_path / "flowers", {"rose": 1, "tulip": 1}, splits=(None,))
    assert [c.name for c in imagenet.parse(tmp_path / "flowers").categories] == ["rose", "tulip"]


def test_bad_ground_truth_names_file_and_line(tmp_path):
    make_flat_val(tmp_path / "val", [SORTED[0]] * 3)
    write_devkit(tmp_path, [SORTED[0]] * 3)
    gt = tmp_path / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("449\nfoo\n449\n")
    with pytest.raises(MalformedFileError, match=r"ground_truth.txt:2: expected one ILSVRC2012_ID"):
        imagenet.parse(tmp_path)
    gt.write_text("449\n")  # shorter than the val folder
    with pytest.raises(InvalidAnnotationError, match="val image 2, but the file has 1 lines"):
        imagenet.parse(tmp_path)
    ds = imagenet.parse(tmp_path, on_error="warn")
    assert len(ds) == 1 and ds.info["skipped"] == 2


# ----------------------------------------------------------------------------- Kaggle (variant B) and LOC boxes
def test_kaggle_layout_labels_boxes_and_words(tmp_path, monkeypatch):
    exp = make_kaggle(tmp_path)
    reads = []
    real_read = imagenet._read_loc_csv
    monkeypatch.setattr(imagenet, "_read_loc_csv", lambda path: reads.append(path) or real_read(path))
    ds = imagenet.parse(tmp_path)
    assert len(reads) == len(set(reads)) == 1  # LOC_val_solution.csv: labels and boxes from one read
    assert set(ds.splits) == {"train", "val", "test"}
    assert ds.categories[0].extra["words"] == "tench, Tinca tinca"
    val = {r.id.rsplit("/", 1)[1]: r for r in ds.records if r.split == "val"}
    assert {k: ds.categories[r.label].name for k, r in val.items()} == exp["val_labels"]
    for stem, objs in exp["val_boxes"].items():
        inst = val[stem].instances
        assert inst.boxes.tolist() == [[float(v) for v in b] for _, b in objs]  # kept as they are
        assert [ds.categories[i].name for i in inst.labels] == [w for w, _ in objs]
    assert val[next(iter(val))].path.startswith("ILSVRC/Data/CLS-LOC/val/")
    boxed = [r for r in ds.records if r.split == "train" and len(r.instances)]
    assert [r.id.rsplit("/", 1)[1] for r in boxed] == [exp["xml_stem"]]
    assert boxed[0].instances.boxes.tolist() == [[0.0, 1.0, 7.0, 8.0]] and (boxed[0].width, boxed[0].height) == (8, 8)
    assert boxed[0].instances.labels.tolist() == [1]
    assert ds.info["unlabeled"] == 1  # the test image
    assert imagenet.detect(tmp_path)
    no_boxes = imagenet.parse(tmp_path, boxes=False)
    assert no_boxes.num_objects() == 0


def test_kaggle_csv_passed_as_ground_truth(tmp_path):
    exp = make_kaggle(tmp_path / "k")
    moved = tmp_path / "elsewhere.csv"
    (tmp_path / "k" / "LOC_val_solution.csv").rename(moved)
    unlabeled = imagenet.parse(tmp_path / "k", split="val")
    assert unlabeled.info["unlabeled"] == len(unlabeled) == 7
    ds = imagenet.parse(tmp_path / "k", split="val", ground_truth=moved)
    assert {r.id.rsplit("/", 1)[1]: ds.categories[r.label].name for r in ds.records} == exp["val_labels"]
    # saved again by Excel: a byte-order mark before the header, in the CSV and the synset table
    moved.write_bytes(b"\xef\xbb\xbf" + moved.read_bytes())
    table = tmp_path / "k" / "LOC_synset_mapping.txt"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    again = imagenet.parse(tmp_path / "k", split="val", ground_truth=moved)
    assert [r.label for r in again.records] == [r.label for r in ds.records]
    assert again.categories == ds.categories
    moved.write_bytes(b"ImageId,PredictionString\n\xff\xfe,x\n")
    with pytest.raises(MalformedFileError, match="elsewhere.csv: expected UTF-8 text"):
        imagenet.parse(tmp_path / "k", split="val", ground_truth=moved)


def test_loc_xml_with_unknown_wnid_and_bad_csv(tmp_path):
    make_tree(tmp_path, splits=("train",))
    ann = tmp_path / "Annotations" / "train" / SORTED[0]
    ann.mkdir(parents=True)
    (ann / f"{SORTED[0]}_1.xml").write_text(loc_xml(f"{SORTED[0]}_1", SORTED[0], [("n99999999", 0, 0, 2, 2)], 8, 8))
    with pytest.raises(InvalidAnnotationError, match="unknown wnid 'n99999999'"):
        imagenet.parse(tmp_path)
    assert imagenet.parse(tmp_path, on_error="warn").info["skipped"] == 1
    (ann / f"{SORTED[0]}_1.xml").write_text("<annotation><object>")
    with pytest.raises(MalformedFileError, match=r"n01440764_1\.xml: cannot parse XML"):
        imagenet.parse(tmp_path)
    kag = tmp_path / "k"
    make_kaggle(kag)
    (kag / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2\n")
    with pytest.raises(MalformedFileError, match=r"LOC_val_solution.csv:2: expected groups"):
        imagenet.parse(kag)


# ----------------------------------------------------------------------------- write
def test_write_round_trip_of_a_tree(tmp_path):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "LOC_synset_mapping.txt").write_text("\n".join(f"{w} {SYNSETS[w][1]}" for w in SORTED))
    src = imagenet.parse(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    report = imagenet.write(src, out, images="copy")
    assert report == {"images": len(src), "objects": 0, "lost": {}}
    back = imagenet.parse(out)
    assert [(r.id, r.label, r.split) for r in back.records] == [(r.id, r.label, r.split) for r in src.records]
    assert back.categories == src.categories
    assert (out / src.records[0].path).read_bytes() == (tmp_path / "src" / src.records[0].path).read_bytes()


def test_convert_sorts_flat_devkit_val_into_synset_folders(tmp_path):
    labels = [SORTED[(2 * i) % 5] for i in range(8)]
    make_flat_val(tmp_path / "ILSVRC2012" / "val", labels)
    write_devkit(tmp_path / "ILSVRC2012", labels)
    summary = convert("imagenet", tmp_path / "ILSVRC2012", "imagenet", tmp_path / "sorted")
    assert summary["images"] == 8 and summary["lost"] == {}
    for i, w in enumerate(labels, 1):
        p = tmp_path / "sorted" / "val" / w / f"ILSVRC2012_val_{i:08d}.JPEG"
        assert p.is_symlink() and p.resolve() == (tmp_path / "ILSVRC2012" / "val" / p.name).resolve()
    back = imagenet.parse(tmp_path / "sorted")
    assert back.info["layout"] == {"val": "class folders"}
    assert [back.categories[r.label].name for r in back.records] == [
        w for _, w in sorted(zip([f"{i:08d}" for i in range(1, 9)], labels), key=lambda t: (t[1], t[0]))]


def test_write_kaggle_boxes_round_trip_and_unlabeled_reported(tmp_path):
    make_kaggle(tmp_path / "k")
    src = imagenet.parse(tmp_path / "k")
    out = tmp_path / "out"
    out.mkdir()
    report = imagenet.write(src, out, images="link")
    assert report["lost"] == {"images without a label": 1}  # the test image
    assert report["objects"] == src.num_objects()
    back = imagenet.parse(out)
    by_stem = {r.id.rsplit("/", 1)[1]: r for r in back.records}
    for r in src.records:
        if r.label is None:
            continue
        b = by_stem[r.id.rsplit("/", 1)[1]]
        assert b.label == r.label and b.instances.boxes.tolist() == r.instances.boxes.tolist()
        assert b.instances.labels.tolist() == r.instances.labels.tolist()


def test_write_reports_what_a_class_tree_cannot_hold(tmp_path):
    from dsprep.records import Category, Dataset

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    recs = [Record("a", "a.jpg", 8, 8, "train", label=3, captions=["a cat"], mask_path="m.png",
                   instances=Instances(boxes=[[0, 0, 2.5, 2]], labels=[3], iscrowd=[True],
                                       segmentation=[[[0, 0, 2, 0, 2, 2]]])),
            Record("b", "missing.jpg", 8, 8, "train", label=3)]
    ds = Dataset([Category(3, "traffic light", extra={"words": "x"})], recs, root=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    rep = imagenet.write(ds, out, images="copy")
    assert rep["lost"] == {"captions": 1, "semantic masks": 1, "object segmentations": 1, "crowd flags": 1,
                           "images missing at the source": 1,
                           "category ids (a class tree numbers its folders 0..N-1 in sorted order)": 1,
                           "category words and original names (names with spaces cannot go in "
                           "LOC_synset_mapping.txt)": 1}
    xml = (out / "Annotations" / "train" / "traffic light" / "a.xml").read_text()
    assert "<xmax>2.5</xmax>" in xml and "<filename>a</filename>" in xml


def test_write_turns_class_names_with_slashes_into_folders_the_table_agrees_with(tmp_path):
    from dsprep.records import Category, Dataset

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    cats = [Category(1, "tv/monitor"), Category(2, "cat", extra={"words": "house cat"}), Category(3, "tv_monitor")]
    recs = [Record(f"r{k}", "a.jpg", 8, 8, "train", label=k) for k in (1, 2, 3)]
    out = tmp_path / "out"
    out.mkdir()
    rep = imagenet.write(Dataset(cats, recs, root=tmp_path), out, images="copy")
    assert rep["images"] == 3 and sum(v for k, v in rep["lost"].items() if k.startswith("category names")) == 2
    back = imagenet.parse(out)
    assert [(c.name, c.extra.get("words")) for c in back.categories] == [
        ("cat", "house cat"), ("tv_monitor", "tv/monitor"), ("tv_monitor_3", "tv_monitor")]
    assert sorted(back.categories[r.label].name for r in back.records) == ["cat", "tv_monitor", "tv_monitor_3"]


# ----------------------------------------------------------------------------- detect and the cheap records
def test_detect(tmp_path, fixtures):
    assert imagenet.detect(fixtures / "datumaro/tests/assets/imagenet_dataset")
    assert not imagenet.detect(tmp_path)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "x.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "Annotations").mkdir()
    assert not imagenet.detect(tmp_path)  # a VOC root is not a class tree
    flat = tmp_path / "flat"
    make_flat_val(flat, ["x"])
    assert imagenet.detect(flat)


def test_listed_records_behave_like_records(tmp_path):
    make_tree(tmp_path, splits=("train",))
    ds = imagenet.parse(tmp_path)
    r = ds.records[0]
    plain = Record(r.id, r.path, 0, 0, "train", r.label)
    assert r == plain and plain == r and repr(r) == repr(plain)
    assert r.replace(width=5).width == 5 and r.width == 0
    r.extra["note"] = 1
    assert ds.records[1].extra == {}  # not shared
    with pytest.raises(AttributeError, match="read-only"):
        r.instances.boxes = np.zeros((1, 4))
    with pytest.raises(ValueError):
        r.instances.boxes.resize((1, 4))
    with pytest.raises(ValueError):
        r.instances.labels[...] = 1
    r.instances = Instances(boxes=[[0, 0, 1, 1]], labels=[0])
    assert len(ds.records[1].instances) == 0
    import pickle
    assert pickle.loads(pickle.dumps(ds.records[2])) == ds.records[2]


def test_write_renames_same_named_files_of_one_class(fixtures, tmp_path):
    """datumaro's label_1/label_1_1.jpg and label_1/label_1_1/label_1_1.jpg land in one folder."""
    src = imagenet.parse(fixtures / "datumaro/tests/assets/imagenet_dataset")
    out = tmp_path / "out"
    out.mkdir()
    assert imagenet.write(src, out, images="copy")["images"] == 3
    assert sorted(p.name for p in (out / "label_1").iterdir()) == ["label_1_1.jpg",
                                                                   "label_1__label_1_1__label_1_1.jpg"]
    back = imagenet.parse(out)
    assert sorted(r.label for r in back.records) == sorted(r.label for r in src.records)


def test_listing_builds_no_records_until_asked_and_its_columns_are_the_records(tmp_path, monkeypatch):
    make_tree(tmp_path, splits=("train",))
    nested = tmp_path / "train" / SORTED[1] / "extra"
    nested.mkdir()
    (nested / "deep.JPEG").write_bytes(jpeg_bytes())
    labels = [SORTED[(2 * i) % 5] for i in range(4)]
    make_flat_val(tmp_path / "val", labels)  # flat val labelled by the devkit: records built as read
    write_devkit(tmp_path, labels)
    (tmp_path / "val" / "extra_photo.JPEG").write_bytes(jpeg_bytes())  # not in the ground truth
    builds = []
    real_build = imagenet._Listing.build
    monkeypatch.setattr(imagenet._Listing, "build", lambda self: builds.append(1) or real_build(self))

    ds = imagenet.parse(tmp_path)
    from dsprep.loading import RecordTable
    n, splits, table = len(ds), ds.splits, RecordTable(ds)
    fields = [f.name for f in dataclasses.fields(Record)]
    cols = {f: ds.column(f) for f in fields}
    assert builds == [] and "objects=0" in repr(ds)  # len, splits, repr, columns, the loaders' table

    recs = ds.records
    assert builds == [1] and ds.records is recs and len(recs) == n == 12 + 1 + 5
    for f in fields:
        assert cols[f] == [getattr(r, f) for r in recs], f
    assert splits == {s: [r.id for r in recs if r.split == s] for s in ("train", "val")}
    assert f"train/{SORTED[1]}/extra/deep" in splits["train"]
    assert [r.label for r in recs if r.split == "val"] == [SORTED.index(w) for w in labels] + [None]
    assert ds.records[0] is recs[0] and ds[0] is recs[0]  # built once, then an ordinary list
    recs[0].width = 7
    assert ds.column("width")[0] == 7 and builds == [1]
    again = RecordTable(ds)
    for name in ("ids", "paths", "mask_paths"):
        assert [getattr(again, name)[i] for i in range(n)] == [getattr(table, name)[i] for i in range(n)]
    assert np.array_equal(again.label, table.label) and np.array_equal(again.obj_start, table.obj_start)
    with pytest.raises(AttributeError, match="no field 'paths'"):
        ds.column("paths")


def test_listing_keeps_an_empty_split_folder_and_builds_when_boxes_change_records(tmp_path):
    make_tree(tmp_path, splits=("train",))
    (tmp_path / "val").mkdir()
    ds = imagenet.parse(tmp_path)
    assert ds.splits["val"] == [] and len(ds.splits["train"]) == len(ds)
    kaggle = tmp_path / "kaggle"
    make_kaggle(kaggle)
    ds = imagenet.parse(kaggle)
    boxed = [r for r in ds.records if len(r.instances)]
    assert boxed and ds.column("instances") == [r.instances for r in ds.records]


def test_subset_of_a_listing_stays_unbuilt_and_equals_the_subset_of_built_records(tmp_path, monkeypatch):
    make_tree(tmp_path, splits=("train",))
    labels = [SORTED[i % 5] for i in range(3)]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels)
    built = imagenet.parse(tmp_path)
    assert len(built.records) == 15  # built, then subset: the ordinary path
    expected = {s: built.subset(s) for s in ("train", "val")}
    builds = []
    real_build = imagenet._Listing.build
    monkeypatch.setattr(imagenet._Listing, "build", lambda self: builds.append(1) or real_build(self))
    ds = imagenet.parse(tmp_path)
    for s, want in expected.items():
        part = ds.subset(s)
        assert len(part) == len(want) and part.splits == want.splits and builds == []
        assert part.records == want.records and builds == [1]
        builds.clear()
        part.records[0].width = 9  # the subset shares no record with its parent
    assert {r.width for r in ds.records} == {0}
    # as for built records: an edited ds.splits is what subset follows, and a subset's
    # splits are fixed when it is made
    for build_first in (False, True):
        ds = imagenet.parse(tmp_path)
        if build_first:
            ds.records
        ds.splits["train"] = ds.splits["train"][:3]
        sub = ds.subset("train")
        assert len(sub) == 3 and sub.splits == {"train": ds.splits["train"]}
        full = imagenet.parse(tmp_path)
        if build_first:
            full.records
        sub = full.subset("train")
        sub.records[0].split = "val"
        assert list(sub.splits) == ["train"] and len(sub.subset("train")) == len(sub) == 12


def test_folders_beside_the_split_folders_are_reported_not_made_classes(tmp_path, caplog):
    make_tree(tmp_path, splits=("train", "val"))
    (tmp_path / "__MACOSX" / "train").mkdir(parents=True)  # what unzipping a macOS archive leaves
    (tmp_path / "scripts").mkdir()
    (tmp_path / "train" / "__MACOSX").mkdir()
    with caplog.at_level(logging.WARNING):
        ds = imagenet.parse(tmp_path)
    assert [c.name for c in ds.categories] == SORTED and set(ds.splits) == {"train", "val"}
    assert ds.info["stray_folders"] == ["__MACOSX", "scripts", "train/__MACOSX"]
    assert "neither splits nor classes" in caplog.text and "__MACOSX" in caplog.text
    import dsprep
    assert len(dsprep.load("imagenet", split="val", root=tmp_path)) == len(ds.splits["val"])
    # a class tree whose classes include "train" holds its images directly: still a class tree
    vehicles = tmp_path / "vehicles"
    make_tree(vehicles, {"bus": 1, "train": 2}, splits=(None,))
    (vehicles / "Annotations").mkdir()  # a metadata folder at a class-tree root is no class either
    (vehicles / "Annotations" / "x.xml").write_text("<annotation/>")
    ds = imagenet.parse(vehicles)
    assert [c.name for c in ds.categories] == ["bus", "train"] and len(ds) == 3 and ds.splits == {}


def test_files_differing_only_by_extension_are_two_records_everywhere(tmp_path):
    root = tmp_path / "tree"
    for name in ("1.jpg", "1.png", "2.jpg"):
        (root / "train" / "cat").mkdir(parents=True, exist_ok=True)
        (root / "train" / "cat" / name).write_bytes(jpeg_bytes())
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "3.jpg").write_bytes(jpeg_bytes())
    want = ["train/cat/1.jpg", "train/cat/1.png", "train/cat/2", "train/dog/3"]
    lazy = imagenet.parse(root)
    assert lazy.column("id") == lazy.splits["train"] == want
    assert [r.id for r in lazy.subset("train").records] == want
    built = imagenet.parse(root)
    assert [r.id for r in built.records] == want and [r.id for r in built.subset("train")] == want
    out = tmp_path / "coco"
    convert("imagenet", root, "coco", out, images="none")
    images = json.loads((out / "annotations" / "instances_train.json").read_text())["images"]
    assert sorted(i["file_name"] for i in images) == ["1.jpg", "1.png", "2.jpg", "3.jpg"]  # unique basenames
    assert len({i["id"] for i in images}) == 4
    # and read back from COCO (and COCO panoptic): still four records, four ids
    back = dsprep_parse("coco", out)
    assert sorted(r.id for r in back) == ["train/1.jpg", "train/1.png", "train/2", "train/3"]
    assert len(back.subset("train")) == 4
    convert("imagenet", root, "coco-panoptic", tmp_path / "pan", images="none")
    assert len({r.id for r in dsprep_parse("coco-panoptic", tmp_path / "pan")}) == 4


def test_convert_to_formats_that_store_sizes_reads_the_headers(tmp_path):
    make_tree(tmp_path / "tree", splits=("train",), size=16)
    convert("imagenet", tmp_path / "tree", "coco", tmp_path / "coco", images="none", workers=1)
    images = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())["images"]
    assert len(images) == 12 and {(i["width"], i["height"]) for i in images} == {(16, 16)}
    convert("imagenet", tmp_path / "tree", "imagenet", tmp_path / "copy", images="none")
    assert imagenet.parse_options_for("imagenet") == {}  # a class tree stores no sizes: none read


def test_nested_folders_are_listed_in_imagefolder_order(tmp_path):
    """torchvision's make_dataset walks sorted(os.walk(class folder)): by folder path string."""
    for rel in ("c/0.jpg", "c/a/1.jpg", "c/a/x/2.jpg", "c/a b/3.jpg", "c/a-b/4.jpg", "d/5.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(jpeg_bytes())
    (tmp_path / "c" / "__MACOSX").mkdir()
    (tmp_path / "c" / "__MACOSX" / "._0.jpg").write_bytes(b"junk")
    reference = [os.path.relpath(os.path.join(r, f), tmp_path)
                 for cls in ("c", "d") for r, _, fs in sorted(os.walk(tmp_path / cls)) for f in sorted(fs)
                 if "__MACOSX" not in r]
    assert reference == ["c/0.jpg", "c/a/1.jpg", "c/a b/3.jpg", "c/a-b/4.jpg", "c/a/x/2.jpg", "d/5.jpg"]
    assert [r.path for r in imagenet.parse(tmp_path).records] == reference


def test_split_folder_names_read_and_written(tmp_path, capsys):
    from dsprep.cli import main
    from dsprep.records import Category, Dataset

    make_tree(tmp_path / "roboflow", splits=("Train", "valid"))  # Roboflow/Kaggle spellings
    ds = imagenet.parse(tmp_path / "roboflow")
    assert list(ds.splits) == ["Train", "valid"] and [c.name for c in ds.categories] == SORTED
    # a split name the reader would take for a class is refused before anything is written
    rc = main(["split", "imagenet", str(tmp_path / "roboflow"), "--ratios", "a=0.5,holdout=0.5",
               "--seed", "1", "--out", str(tmp_path / "sp")])
    assert rc == 2 and "'a', 'holdout' would be read back as classes" in capsys.readouterr().err
    assert not (tmp_path / "sp").exists()
    # COCO's split names, and class names that are no plain folder name, round-trip inside OUT
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    cats = [Category(1, ".."), Category(2, "__MACOSX"), Category(3, "Annotations")]
    recs = [Record(f"r{k}", "a.jpg", 8, 8, "train2017" if k < 3 else "val2017", label=k) for k in (1, 2, 3)]
    out = tmp_path / "out" / "tree"
    out.mkdir(parents=True)
    imagenet.write(Dataset(cats, recs, root=tmp_path), out, images="copy")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tree"]  # nothing beside OUT
    back = imagenet.parse(out)
    assert list(back.splits) == ["train2017", "val2017"]
    assert sorted(c.name for c in back.categories) == ["_..", "_Annotations", "___MACOSX"]
    assert len(back) == 3


def test_a_class_tree_whose_classes_are_named_like_splits_reads_back_as_classes(tmp_path):
    from dsprep.records import Category, Dataset

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    cats = [Category(1, "train"), Category(2, "val"), Category(3, "traffic light"), Category(4, "tv/monitor")]
    recs = [Record(f"r{k}", "a.jpg", 8, 8, None, label=k) for k in (1, 2, 3, 4)]
    out = tmp_path / "out"
    out.mkdir()
    rep = imagenet.write(Dataset(cats, recs, root=tmp_path), out, images="copy")
    back = imagenet.parse(out)
    assert sorted(c.name for c in back.categories) == ["traffic light", "train", "tv_monitor", "val"]
    assert back.splits == {} and all(r.label is not None for r in back)
    # no table can hold "traffic light": the rename of tv/monitor is said lost, not claimed kept
    assert rep["lost"]["category words and original names (names with spaces cannot go in "
                       "LOC_synset_mapping.txt)"] == 1


# ----------------------------------------------------------------------------- one class numbering
def _labels_by_path(ds):
    return {r.path: r.label for r in ds.records}


def test_classes_are_numbered_over_the_whole_tree_whatever_split_asks(tmp_path):
    # val lacks the second class: ImageFolder(root/val) would number val's classes 0..3;
    # dsprep numbers over every split's class folders, so a val image's label does not
    # depend on whether split="val" was asked.
    make_tree(tmp_path, {w: 2 for w in SORTED}, splits=("train",))
    make_tree(tmp_path, {w: 1 for w in SORTED if w != SORTED[1]}, splits=("val",))
    (tmp_path / "val" / ".ipynb_checkpoints").mkdir()  # hidden and archiver folders: never classes
    (tmp_path / "val" / "__MACOSX").mkdir()
    whole = imagenet.parse(tmp_path)
    for split in ("val", "train"):
        part = imagenet.parse(tmp_path, split=split)
        assert part.categories == whole.categories and [c.name for c in part.categories] == SORTED
        labels = _labels_by_path(part)
        assert labels and labels == {p: v for p, v in _labels_by_path(whole).items() if p in labels}
    val_last = f"val/{SORTED[4]}/{SORTED[4]}_1.JPEG"
    assert _labels_by_path(imagenet.parse(tmp_path, split="val"))[val_last] == 4  # not 3, its rank in val/


def test_flat_val_tables_number_train_alike_with_or_without_split(tmp_path):
    # train holds two classes; the devkit's meta.mat (read for the flat val) knows all five:
    # train's labels are the same whether or not val is parsed beside it.
    make_tree(tmp_path, {w: 1 for w in SORTED[3:]}, splits=("train",))
    labels = [SORTED[i % 5] for i in range(5)]
    make_flat_val(tmp_path / "val", labels)
    write_devkit(tmp_path, labels, with_map=False)
    write_meta_mat(tmp_path / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    whole, train = imagenet.parse(tmp_path), imagenet.parse(tmp_path, split="train")
    assert [c.name for c in train.categories] == [c.name for c in whole.categories] == SORTED
    assert {r.label for r in train.records} == {3, 4}
    assert _labels_by_path(train) == {p: v for p, v in _labels_by_path(whole).items() if p.startswith("train/")}
    # without the ID table only the flat val needs it: train alone still parses, the whole tree names the gap
    (tmp_path / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    assert [c.name for c in imagenet.parse(tmp_path, split="train").categories] == SORTED[3:]
    with pytest.raises(MissingFileError, match="need a table"):
        imagenet.parse(tmp_path)
