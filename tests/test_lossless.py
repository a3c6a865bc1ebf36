"""Issue 12, the cases a new user met: each one named, on a plain tree, through `dsprep convert`.

The round-trip matrix (tests/test_roundtrip_matrix.py) covers every pair generically; these pin
the reported cases down with exact values.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsprep.cli import main
from dsprep.conversion import convert
from dsprep.formats import coco, get_format, voc
from dsprep.records import box_extents, convert_boxes, decimal_sum

from fakes_voc import make_voc


def _voc_with_overlapping_splits(tmp_path: Path) -> Path:
    """Four images in train or val and all in trainval; one named straße_0007, with a box at 58.04."""
    ex = make_voc(tmp_path, n=4, w=200, h=150, splits={"train": [0, 1], "val": [2, 3], "trainval": [0, 1, 2, 3]})
    root = ex["root"]
    old = root / "Annotations/2012_000001.xml"
    text = old.read_text().replace("2012_000001", "straße_0007")
    text = text.replace("<xmin>1</xmin>", "<xmin>59.04</xmin>").replace("<xmax>6</xmax>", "<xmax>97.69</xmax>")
    text = text.replace("<ymin>1</ymin>", "<ymin>65.09</ymin>").replace("<ymax>5</ymax>", "<ymax>331.30</ymax>")
    text = text.replace("<height>150</height>", "<height>400</height>")
    (root / "Annotations/straße_0007.xml").write_text(text)
    old.unlink()
    (root / "JPEGImages/2012_000001.jpg").rename(root / "JPEGImages/straße_0007.jpg")
    for lst in (root / "ImageSets/Main").glob("*.txt"):
        lst.write_text(lst.read_text().replace("2012_000001", "straße_0007"))
    return root


def test_voc_to_coco_to_voc_keeps_names_splits_objects_and_decimals(tmp_path):
    root = _voc_with_overlapping_splits(tmp_path)
    convert("voc", root, "coco", tmp_path / "coco", images="copy")
    back_coco = coco.parse(tmp_path / "coco")
    assert len(back_coco) == 4  # one record per image, though listed in two split files
    assert {k: len(v) for k, v in back_coco.splits.items()} == {"train": 2, "trainval": 4, "val": 2}
    convert("coco", tmp_path / "coco", "voc", tmp_path / "voc", images="copy")
    src, back = voc.parse(root), voc.parse(tmp_path / "voc")
    assert sorted(p.name for p in (tmp_path / "voc/Annotations").iterdir()) == \
        ["2012_000000.xml", "2012_000002.xml", "2012_000003.xml", "straße_0007.xml"]
    assert back.splits == src.splits
    for a, b in zip(src, back):
        assert a.id == b.id and np.array_equal(a.instances.boxes, b.instances.boxes)
        assert a.instances.labels.tolist() == b.instances.labels.tolist()
        assert a.instances.difficult.tolist() == b.instances.difficult.tolist()
    text = (tmp_path / "voc/Annotations/straße_0007.xml").read_text()
    assert "<xmin>59.04</xmin>" in text and "<ymax>331.3</ymax>" in text  # not 331.30000000000007


def test_coco_keeps_distinct_entries_of_one_image_id_apart(tmp_path):
    """Same id and file_name in two split files but different annotations: two records, as before."""
    root = _voc_with_overlapping_splits(tmp_path)
    convert("voc", root, "coco", tmp_path / "coco", images="none")
    path = tmp_path / "coco/annotations/instances_val.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"][0] += 1
    path.write_text(json.dumps(doc))
    ds = coco.parse(tmp_path / "coco")
    assert len(ds) == 5 and sum(len(v) for v in ds.splits.values()) == 8


def test_decimal_sums_and_extents():
    assert 64.09 + 267.21 == 331.29999999999995  # what float64 gives
    assert decimal_sum(np.array([64.09]), np.array([267.21])).tolist() == [331.3]
    assert box_extents(np.array([[64.09, 0, 331.3, 1]])).tolist() == [[267.21, 1.0]]
    assert convert_boxes(np.array([[64.09, 1, 267.21, 4]]), "xywh", "xyxy").tolist() == [[64.09, 1.0, 331.3, 5.0]]
    assert convert_boxes(np.array([[473.07, 0, 511.72, 1]]), "xyxy", "xywh").tolist() == [[473.07, 0.0, 38.65, 1.0]]
    # long decimals, NaN and huge values are left to float
    assert decimal_sum(np.array([0.1, np.nan, 1e300]), np.array([0.20000000000000004, 1, 1e300])).tolist()[0] == \
        0.30000000000000004


def test_coco_to_voc_to_coco_restores_category_ids_and_supercategories(tmp_path, fixtures):
    tiny = fixtures / "super-gradients/tests/data/tinycoco"
    report = convert("coco", tiny, "voc", tmp_path / "voc", images="none")
    convert("voc", tmp_path / "voc", "coco", tmp_path / "coco", images="none")
    # the per-class lists written agree with the XMLs (they were checked against restored ids: every
    # line of a class whose COCO id is not its rank disagreed)
    assert voc.parse(tmp_path / "voc").info["voc_class_list_mismatches"] == 0
    src, back = coco.parse(tiny), coco.parse(tmp_path / "coco")
    assert [(c.id, c.name, c.supercategory) for c in back.categories] == \
        [(c.id, c.name, c.supercategory) for c in src.categories]
    assert max(c.id for c in back.categories) == 90 and len(back.categories) == 80
    assert not any(k.startswith(("category ids", "category supercategories")) for k in report["lost"])
    labels = sorted(int(x) for r in back for x in r.instances.labels)
    assert labels == sorted(int(x) for r in src for x in r.instances.labels)


def test_voc_written_without_a_category_map_says_ids_and_supercategories_are_lost(tmp_path, fixtures):
    ds = coco.parse(fixtures / "super-gradients/tests/data/tinycoco")
    out = tmp_path / "voc"
    out.mkdir()
    lost = get_format("voc").write(ds, out, images="none")["lost"]
    assert lost["category ids (VOC stores names; re-read ids are 1..N in category order)"] == 69  # 12..90
    assert lost["category supercategories (VOC stores names only)"] == 80
    assert [c.id for c in voc.parse(out).categories] == list(range(1, 81))


def test_the_summary_counts_what_was_written(tmp_path, capsys):
    ex = make_voc(tmp_path, n=6)
    assert main(["convert", "voc", str(ex["root"]), "--to", "imagenet", "--out", str(tmp_path / "in"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "converted voc -> imagenet: 0 of 6 images, 0 of 12 objects written" in out
    assert "images without a label 6" in out
    assert main(["convert", "voc", str(ex["root"]), "--to", "coco", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "converted voc -> coco: 6 images, 12 objects, 20 categories" in capsys.readouterr().out


def test_labelme_background_category_is_voc_background_not_class_1(tmp_path, fixtures):
    """labelme's COCO output has category 0 `_background_` first; written as VOC it must be index 0
    (background), so that person stays VOC class 15 in SegmentationClass, as in labelme's own VOC."""
    from PIL import Image

    base = fixtures / "labelme/examples/instance_segmentation"
    report = convert("coco", base / "data_dataset_coco/annotations.json", "voc", tmp_path / "voc", images="copy")
    assert report["lost"]["categories named as background (VOC's index 0, not a class)"] == 1
    ours = voc.parse(tmp_path / "voc")
    theirs = voc.parse(base / "data_dataset_voc")
    assert [(c.id, c.name) for c in ours.categories][:2] == [(1, "aeroplane"), (2, "bicycle")]
    for a, b in zip(ours, theirs):
        assert a.instances.labels.tolist() == b.instances.labels.tolist()
        mine = np.unique(np.array(Image.open(tmp_path / "voc" / a.mask_path)))
        labelme = np.unique(np.array(Image.open(base / "data_dataset_voc" / b.mask_path)))
        assert mine.tolist() == [v for v in labelme.tolist() if v != 255]  # labelme draws 255 borders


def test_coco_writes_no_paths_to_another_trees_files(tmp_path):
    """Cityscapes records name their colour/polygons PNGs and JSON in extra (color_path...): COCO does
    not write those paths (it carries no such file; shards then failed on them) and counts them lost."""
    from fakes_cityscapes import make_cityscapes

    root = make_cityscapes(tmp_path / "cs", cities=("bochum",), frames=1)["root"]
    report = convert("cityscapes", root, "coco", tmp_path / "coco", images="link")
    n = report["lost"]["files named by image fields (Cityscapes color, polygons...: not carried)"]
    assert n >= 2
    for f in (tmp_path / "coco/annotations").iterdir():
        assert not any(k.endswith("_path") for im in json.loads(f.read_text())["images"] for k in im)
    assert convert("coco", tmp_path / "coco", "shards", tmp_path / "shards")["written"]["images"] == 2
