"""Cityscapes: label table, parse (labelIds/instanceIds/polygons.json), instances as COCO RLE,
the test split's dummies, labelTrainIds writing, conversion to COCO panoptic, datumaro fixtures."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dsprep.conversion import convert
from dsprep.errors import DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, UnknownNameError
from dsprep.formats import _cityscapes_labels as L
from dsprep.formats import cityscapes as cs
from dsprep.masks import segments_from_id_map

from fakes_cityscapes import H, THINGS_PER_FRAME, W, make_cityscapes, scene


def _decode(rle: dict) -> np.ndarray:
    assert isinstance(rle["counts"], str)  # JSON-ready, what a COCO writer dumps as is
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


# --------------------------------------------------------------------------- label table

def test_label_table_matches_labels_py():
    assert len(L.LABELS) == 35
    assert len({lab.id for lab in L.LABELS}) == 35
    train = sorted(lab.trainId for lab in L.LABELS if 0 <= lab.trainId < 255)
    assert train == list(range(19))
    assert L.BY_NAME["license plate"].id == -1 and L.BY_NAME["license plate"].trainId == -1
    assert L.BY_NAME["polegroup"].id == 18 and L.BY_NAME["polegroup"].ignoreInEval
    assert sorted(L.BY_ID[i].trainId for i in L.EVAL_INSTANCE_CLASS_IDS) == list(range(11, 19))
    assert L.BY_NAME["caravan"].hasInstances and L.BY_NAME["caravan"].trainId == 255
    assert L.BY_NAME["dynamic"].color == (111, 74, 0)
    assert L.id_to_train_id_lut()[7] == 0 and L.id_to_train_id_lut()[33] == 18
    assert L.id_to_train_id_lut()[1] == 255 and L.id_to_train_id_lut()[200] == 255
    # inverse: the first label of a trainId wins (labels.py builds it over reversed(labels))
    assert L.train_id_to_id_lut()[255] == 0 and L.train_id_to_id_lut()[13] == 26


def test_categories_carry_the_table():
    cats = cs.categories()
    assert [c.id for c in cats] == [lab.id for lab in L.LABELS]
    car = {c.name: c for c in cats}["car"]
    assert (car.id, car.supercategory) == (26, "vehicle")
    assert car.extra == {"trainId": 13, "catId": 7, "hasInstances": True, "ignoreInEval": False,
                         "color": [0, 0, 142]}


# --------------------------------------------------------------------------- parse

def test_detect_and_parse_generated_tree(tmp_path):
    exp = make_cityscapes(tmp_path, test=True)
    assert cs.detect(tmp_path) and not cs.detect(tmp_path / "leftImg8bit")
    ds = cs.parse(tmp_path, workers=1)
    assert len(ds) == exp["images"] == 12
    assert {k: len(v) for k, v in ds.splits.items()} == exp["splits"]
    assert ds.num_objects() == 0  # parsing decodes no pixels by default
    r = ds.record_by_id()["leftImg8bit/val/bremen/bremen_000101_000038_leftImg8bit"]
    assert r.path == "leftImg8bit/val/bremen/bremen_000101_000038_leftImg8bit.png"
    assert (r.width, r.height, r.split) == (W, H, "val")
    assert r.source_id == "bremen_000101_000038"
    assert (r.extra["city"], r.extra["sequence"], r.extra["frame"]) == ("bremen", "000101", "000038")
    assert r.mask_path == "gtFine/val/bremen/bremen_000101_000038_gtFine_labelIds.png"
    assert r.instance_mask_path == "gtFine/val/bremen/bremen_000101_000038_gtFine_instanceIds.png"
    assert ds.info["instance_mask_encoding"] == "id" and len(ds.categories) == 35


def test_things_instances_match_the_instance_pixels(tmp_path):
    exp = make_cityscapes(tmp_path, splits=("train",))
    ds = cs.parse(tmp_path, instances="things", workers=1)
    assert ds.num_objects() == THINGS_PER_FRAME * exp["images"]
    for r in ds:
        inst = r.instances
        ids = exp["instance_maps"][r.source_id]
        # group 26 (cargroup) is a crowd car; 24000 person, 26000/26001 cars; stuff and ego vehicle are no objects
        assert inst.ids.tolist() == [26, 24000, 26000, 26001]
        assert inst.labels.tolist() == [26, 24, 26, 26]
        assert inst.iscrowd.tolist() == [True, False, False, False]
        assert inst.boxes.dtype == np.float64
        for k, value in enumerate(inst.ids):
            truth = ids == value
            assert np.array_equal(_decode(inst.segmentation[k]), truth)
            ys, xs = np.nonzero(truth)
            assert inst.boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert inst.area[k] == truth.sum()
            assert mask_utils.area({"size": inst.segmentation[k]["size"],
                                    "counts": inst.segmentation[k]["counts"].encode()}) == truth.sum()


def test_first_car_box_is_exact(tmp_path):
    # car 26000 is drawn over x 2..7, y 8..12 (inclusive corners) and the license plate
    # inside it is not drawn, so the car keeps those pixels: box [2, 8, 8, 13], area 30
    make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    inst = cs.parse(tmp_path, instances=True, workers=1)[0].instances
    k = inst.ids.tolist().index(26000)
    assert inst.boxes[k].tolist() == [2.0, 8.0, 8.0, 13.0] and inst.area[k] == 30


def test_polygons_are_rasterised_as_json2instanceImg(tmp_path):
    objects, expected = scene(shift=1)
    got = cs.instance_map_from_polygons({"imgWidth": W, "imgHeight": H, "objects": objects})
    assert np.array_equal(got, expected)
    assert 26000 in got and 26001 in got and 26002 not in got  # the deleted car bumps no counter
    assert 26 in got  # cargroup: plain class id, no instance
    assert not (got == 0).all() and got[12, 4] == 26000  # license plate (id -1) not drawn over the car


def test_polygon_rules_group_and_unknown_label():
    doc = {"imgWidth": 8, "imgHeight": 8, "objects": [
        {"label": "persongroup", "polygon": [[0, 0], [3, 0], [3, 3], [0, 3]]},
        {"label": "person", "polygon": [[2, 2], [5, 2], [5, 5], [2, 5]]},
    ]}
    got = cs.instance_map_from_polygons(doc, "x_gtFine_polygons.json")
    assert got[0, 0] == 24 and got[2, 2] == 24000 and got[7, 7] == 0  # later object on top
    doc["objects"].append({"label": "spaceship", "polygon": [[0, 0], [1, 0], [1, 1]]})
    with pytest.raises(InvalidAnnotationError, match=r"x_gtFine_polygons.json: object 2.*'spaceship'"):
        cs.instance_map_from_polygons(doc, "x_gtFine_polygons.json")


def test_instances_from_polygons_when_pngs_are_absent(tmp_path, monkeypatch):
    make_cityscapes(tmp_path / "png", splits=("val",), polygons=False)
    make_cityscapes(tmp_path / "poly", splits=("val",), pngs=False)
    a = cs.parse(tmp_path / "png", instances="things", workers=1)
    reads = []
    real_read = cs._io.read_json_object
    monkeypatch.setattr(cs._io, "read_json_object", lambda path: reads.append(path) or real_read(path))
    b = cs.parse(tmp_path / "poly", instances="things", workers=1)
    assert len(reads) == len(set(reads)) == len(b)  # each polygons.json read once: size and objects
    assert [r.instances for r in a] == [r.instances for r in b]
    # no label PNG: polygons.json is the semantic source (read_semantic_mask draws labelIds from it)
    assert all(r.mask_path is None and r.instance_mask_path is None for r in b)
    assert all(r.extra["semantic_source"] == r.extra["polygons_path"] for r in b)
    assert all((r.width, r.height) == (W, H) for r in b)  # from polygons.json imgWidth/imgHeight


def test_test_split_dummy_labels_are_flagged_not_turned_into_objects(tmp_path, caplog):
    make_cityscapes(tmp_path, splits=("val",), test=True)
    ds = cs.parse(tmp_path, instances="things", workers=1)
    test = [r for r in ds if r.split == "test"]
    assert test and all(r.extra.get("dummy_labels") and len(r.instances) == 0 for r in test)
    assert ds.info["dummy_label_splits"] == ["test"]
    assert "dummies" in caplog.text
    assert all(len(r.instances) == THINGS_PER_FRAME for r in ds if r.split == "val")


def test_panoptic_mode_lists_createPanopticImgs_segments(tmp_path):
    make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    inst = cs.parse(tmp_path, instances="panoptic", workers=1)[0].instances
    # every value present except 0 (unlabeled) and 1 (ego vehicle): ignoreInEval
    assert inst.ids.tolist() == [7, 11, 23, 26, 24000, 26000, 26001]
    assert inst.iscrowd.tolist() == [False, False, False, True, False, False, False]


def test_workers_give_the_same_records(tmp_path):
    make_cityscapes(tmp_path, splits=("train", "val"), frames=3)
    one = cs.parse(tmp_path, instances="things", workers=1)
    two = cs.parse(tmp_path, instances="things", workers=2)
    assert one.records == two.records


def test_label_space_train_id(tmp_path):
    make_cityscapes(tmp_path, splits=("val",))
    ds = cs.parse(tmp_path, label_space="trainId", workers=1)
    lut = ds.info["mask_luts"][ds[0].extra["mask_kind"]]
    assert ds.info["cityscapes_label_space"] == "trainId" and ds.info["mask_ignore_index"] == 255
    assert lut[26] == 13 and lut[1] == 255 and ds.info["train_id_names"][13] == "car"


# --------------------------------------------------------------------------- write

def test_write_makes_label_train_ids_like_createTrainIdLabelImgs(tmp_path):
    exp = make_cityscapes(tmp_path / "src", splits=("val",))
    ds = cs.parse(tmp_path / "src", workers=1)
    (tmp_path / "out").mkdir()
    report = cs.write(ds, tmp_path / "out", images="copy")
    assert report["images"] == exp["images"] and report["lost"] == {}
    for split, city, base in exp["frames"]:
        gt = tmp_path / "out" / "gtFine" / split / city
        train = np.asarray(Image.open(gt / f"{base}_gtFine_labelTrainIds.png"))
        ids = np.asarray(Image.open(gt / f"{base}_gtFine_labelIds.png"))
        assert train.dtype == np.uint8
        expected = np.full(ids.shape, 255, np.uint8)  # ego vehicle, unlabeled: ignore
        for name, tid in (("road", 0), ("building", 2), ("sky", 10), ("person", 11), ("car", 13)):
            expected[ids == L.BY_NAME[name].id] = tid
        assert np.array_equal(train, expected)
        assert (tmp_path / "out" / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png").is_file()
    # and parsing it again with trainIds picks the generated files
    back = cs.parse(tmp_path / "out", label_space="trainId", workers=1)
    assert all(r.mask_path.endswith("_gtFine_labelTrainIds.png") for r in back)
    assert [(r.id, r.width, r.height, r.instance_mask_path) for r in back] == \
        [(r.id, r.width, r.height, r.instance_mask_path) for r in ds]


def test_write_from_polygons_only_draws_label_ids(tmp_path):
    make_cityscapes(tmp_path / "src", splits=("val",), cities=("bochum",), frames=1, pngs=False)
    ds = cs.parse(tmp_path / "src", workers=1)
    (tmp_path / "out").mkdir()
    cs.write(ds, tmp_path / "out", images="none")
    gt = tmp_path / "out" / "gtFine" / "val" / "bochum"
    ids = np.asarray(Image.open(next(gt.glob("*_labelIds.png"))))
    _, inst = scene(0)
    assert np.array_equal(ids, np.where(inst < 1000, inst, inst // 1000))


# --------------------------------------------------------------------------- conversion

def test_convert_to_coco_panoptic_as_createPanopticImgs(tmp_path):
    exp = make_cityscapes(tmp_path / "cs", splits=("val",), cities=("frankfurt",), frames=1)
    summary = convert("cityscapes", tmp_path / "cs", "coco-panoptic", tmp_path / "out", workers=1)
    assert summary["images"] == 1
    doc = json.loads((tmp_path / "out" / "annotations" / "panoptic_val.json").read_text())
    base = exp["frames"][0][2]
    assert doc["images"] == [{"id": base, "width": W, "height": H, "file_name": f"{base}_leftImg8bit.png"}]
    ann = doc["annotations"][0]
    assert ann["image_id"] == base and ann["file_name"] == f"{base}_gtFine_panoptic.png"
    assert len(doc["categories"]) == 19  # ignoreInEval classes dropped
    assert sum(c["isthing"] for c in doc["categories"]) == 8
    segs = {s["id"]: s for s in ann["segments_info"]}
    assert segs[26]["iscrowd"] == 1 and segs[26]["category_id"] == 26  # a group on a thing class
    assert segs[26000] == {"id": 26000, "category_id": 26, "area": 30, "bbox": [2, 8, 6, 5], "iscrowd": 0}
    rgb = np.asarray(Image.open(tmp_path / "out" / "annotations" / "panoptic_val" / ann["file_name"])).astype(int)
    pan = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    inst = exp["instance_maps"][base].astype(int)
    kept = np.isin(inst, list(segs))
    assert np.array_equal(pan[kept], inst[kept]) and (pan[~kept] == 0).all()  # ego vehicle -> void
    for sid, s in segs.items():
        assert s["area"] == int((pan == sid).sum())


def test_polygons_only_tree_converts_to_coco_panoptic_as_its_png_tree(tmp_path):
    """No instanceIds PNG: the segments are rasterised from polygons.json (json2instanceImg), so
    the panoptic output is the one the PNG tree of the same scene gives, not void PNGs."""
    make_cityscapes(tmp_path / "png", splits=("val",), frames=2, polygons=False)
    make_cityscapes(tmp_path / "poly", splits=("val",), frames=2, pngs=False)
    a = convert("cityscapes", tmp_path / "png", "coco-panoptic", tmp_path / "a", workers=1)
    b = convert("cityscapes", tmp_path / "poly", "coco-panoptic", tmp_path / "b", workers=1)
    assert b["objects"] == a["objects"] > 0
    # the same loss, but for the gt files each tree has (a labelIds PNG only in the PNG tree; the
    # polygons tree's semantic source is reported among its image fields)
    assert {k: v for k, v in b["lost"].items() if not k.startswith("image fields")} == \
        {k: v for k, v in a["lost"].items() if not k.startswith(("image fields", "semantic mask PNGs"))}
    assert b["lost"]["image fields (city, frame, mask_kind, polygons_path, semantic_source, sequence)"] == 4
    assert a["lost"]["semantic mask PNGs (mask_path)"] == 4
    ja = json.loads((tmp_path / "a/annotations/panoptic_val.json").read_text())
    jb = json.loads((tmp_path / "b/annotations/panoptic_val.json").read_text())
    assert jb["annotations"] == ja["annotations"] and jb["images"] == ja["images"]
    assert all(ann["segments_info"] for ann in jb["annotations"])
    for ann in ja["annotations"]:
        pa = np.asarray(Image.open(tmp_path / "a/annotations/panoptic_val" / ann["file_name"]))
        pb = np.asarray(Image.open(tmp_path / "b/annotations/panoptic_val" / ann["file_name"]))
        assert pa.any() and np.array_equal(pa, pb)
    # masks=False cannot leave such objects without pixels: there is no PNG to read them from later
    poly = cs.parse(tmp_path / "poly", instances="things", masks=False, workers=1)
    assert all(s is not None for r in poly for s in r.instances.segmentation)


def test_cityscapes_records_carry_what_a_coco_writer_needs(tmp_path):
    make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    # what `convert --to coco` asks the parser for
    ds = cs.parse(tmp_path, **cs.parse_options_for("coco"), workers=1)
    inst = ds[0].instances
    assert ds.info["instances"] == "things"
    assert inst.boxes.dtype == np.float64 and inst.labels.dtype == np.int64
    assert all(set(s) == {"size", "counts"} and s["size"] == [H, W] for s in inst.segmentation)
    json.dumps(inst.segmentation)  # serialisable as is
    assert set(inst.labels.tolist()) <= {c.id for c in ds.categories}


# --------------------------------------------------------------------------- datumaro fixtures

def test_datumaro_nonconformant_8bit_instance_ids(fixtures):
    root = fixtures / "datumaro/tests/assets/cityscapes_dataset/dataset"
    # semantic labels only (the default): an 8-bit instanceIds holds label ids, read as such
    ds = cs.parse(root, dummy_test_labels=False, workers=1)
    assert {k: len(v) for k, v in ds.splits.items()} == {"test": 2, "train": 1, "val": 1}
    # no labelIds there: instanceIds is the semantic source (decode_instance_ids); mask_path stays None
    assert all(r.mask_path is None and r.extra["semantic_source"] == r.instance_mask_path
               and r.extra["mask_kind"] == "instanceIds" for r in ds)
    by_id = {r.source_id: r for r in ds}
    train = by_id["defaultcity_000002_000045"]
    assert cs.read_semantic_mask(root / train.instance_mask_path, "instanceIds").tolist() == [[3, 3, 24, 3, 3]]
    # instances: 8 bits cannot hold id * 1000 + k, so 24 (person) is no instance of ours to guess at
    # (a group? datumaro's person 1?): a named error, not a crowd object made up
    with pytest.raises(InvalidAnnotationError, match="8-bit instanceIds PNG holding values \\[24\\]") as info:
        cs.parse(root, split="train", instances="things", workers=1)
    assert info.value.where.endswith("defaultcity_000002_000045_gtFine_instanceIds.png")
    # a frame whose 8-bit map holds no class with instances (1 ego vehicle, 3 out of roi) reads as before
    val = cs.parse(root, split="val", instances="things", workers=1)
    assert len(val) == 1 and len(val[0].instances) == 0
    skipped = cs.parse(root, instances="things", dummy_test_labels=False, on_error="warn", workers=1)
    assert skipped.info["skipped"] == 3 and [r.split for r in skipped] == ["val"]


def test_datumaro_train_dataset_16bit_and_train_ids(fixtures):
    root = fixtures / "datumaro/tests/assets/cityscapes_dataset/train_dataset"
    ds = cs.parse(root, instances="things", dummy_test_labels=False, workers=1)
    by_id = {r.source_id: r for r in ds}
    t = by_id["defaultcity_000001_000031"].instances
    assert t.ids.tolist() == [27001, 27002] and t.labels.tolist() == [27, 27]
    assert t.boxes.tolist() == [[2.0, 0.0, 3.0, 1.0], [3.0, 0.0, 5.0, 1.0]]
    assert t.area.tolist() == [1.0, 2.0]
    # 1024 decodes to "ego vehicle, instance 24": ego vehicle has no instances, so no object
    assert len(by_id["defaultcity_000001_000019"].instances) == 0
    r = by_id["defaultcity_000002_000045"]
    assert r.mask_path.endswith("_gtFine_labelTrainIds.png") and r.extra["mask_kind"] == "labelTrainIds"
    # datumaro writes 19 for background: outside the 19 classes -> ignore (trainId) / unlabeled (id)
    train_ds = cs.parse(root, label_space="trainId", workers=1)
    assert train_ds.info["mask_luts"]["labelTrainIds"][19] == 255
    assert ds.info["mask_luts"]["labelTrainIds"][19] == 0 and ds.info["mask_luts"]["labelTrainIds"][11] == 24
    # default: test labels are dummies
    assert all(len(x.instances) == 0 for x in cs.parse(root, instances="things", workers=1) if x.split == "test")


# --------------------------------------------------------------------------- bad input

def test_empty_or_one_point_polygon_is_a_named_bad_annotation(tmp_path, caplog):
    """PIL cannot draw fewer than 2 points (a raw TypeError); it must be a FormatError naming the
    file and object, which on_error="warn" skips (the frame) and counts."""
    base = {"imgWidth": 8, "imgHeight": 8, "objects": [{"label": "road", "polygon": [[0, 0], [7, 0], [7, 7]]}]}
    for poly in ([], [[1, 1]], [[1, "x"]], None, [[1, float("nan")]]):
        doc = {**base, "objects": [*base["objects"], {"label": "car", "polygon": poly}]}
        with pytest.raises(InvalidAnnotationError, match=r"a_gtFine_polygons.json: object 1 \('car'\).*polygon"):
            cs.instance_map_from_polygons(doc, "a_gtFine_polygons.json")
    assert cs.instance_map_from_polygons({**base, "objects": [{"label": "car", "polygon": [[1, 1], [3, 3]]}]}
                                         )[1, 1] == 26000  # two points: PIL's line, as json2instanceImg
    make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=2, pngs=False)
    bad = sorted((tmp_path / "gtFine/val/bochum").glob("*_polygons.json"))[0]
    doc = json.loads(bad.read_text())
    doc["objects"][3]["polygon"] = []
    bad.write_text(json.dumps(doc))
    with pytest.raises(InvalidAnnotationError, match=rf"{bad.name}: object 3"):
        cs.parse(tmp_path, instances="things", workers=1)
    ds = cs.parse(tmp_path, instances="things", workers=1, on_error="warn")
    assert len(ds) == 1 and ds.info["skipped"] == 1 and bad.name in caplog.text
    (tmp_path / "out").mkdir()  # the writer draws labelIds from the polygons: same error, not a TypeError
    with pytest.raises(InvalidAnnotationError, match=rf"{bad.name}: object 3"):
        cs.write(cs.parse(tmp_path, workers=1), tmp_path / "out", images="none")


def test_missing_root_and_unknown_split(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit/<split>/<city>"):
        cs.parse(tmp_path / "nothing")
    make_cityscapes(tmp_path / "cs", splits=("val",))
    with pytest.raises(UnknownNameError, match="Valid values are: val"):
        cs.parse(tmp_path / "cs", split="vall")
    with pytest.raises(UnknownNameError, match="instances mode"):
        cs.parse(tmp_path / "cs", instances="all")


def test_corrupt_instance_png_is_named_or_skipped(tmp_path):
    exp = make_cityscapes(tmp_path, splits=("val",))
    split, city, base = exp["frames"][1]
    bad = tmp_path / "gtFine" / split / city / f"{base}_gtFine_instanceIds.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(MalformedFileError, match=f"{base}_gtFine_instanceIds.png"):
        cs.parse(tmp_path, instances="things", workers=1)
    ds = cs.parse(tmp_path, instances="things", workers=1, on_error="warn")
    assert len(ds) == exp["images"] - 1 and ds.info["skipped"] == 1


def test_rgb_instance_ids_are_rejected(tmp_path):
    exp = make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    split, city, base = exp["frames"][0]
    path = tmp_path / "gtFine" / split / city / f"{base}_gtFine_instanceIds.png"
    Image.new("RGB", (W, H)).save(path)
    with pytest.raises(MalformedFileError, match="single-channel label PNG.*found mode RGB"):
        cs.parse(tmp_path, instances="things", workers=1)


def test_stray_files_are_reported_not_crashed_on(tmp_path, caplog):
    make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    (tmp_path / "gtFine" / "val" / "bochum" / "notes.txt").write_text("x")
    shutil.copy(next((tmp_path / "leftImg8bit/val/bochum").glob("*.png")),
                tmp_path / "leftImg8bit/val/bochum/extra.png")
    ds = cs.parse(tmp_path, workers=1)
    assert len(ds) == 1 and "do not follow the Cityscapes naming" in caplog.text


def test_gt_file_in_another_city_folder_is_a_stray(tmp_path, caplog):
    """bremen_..._labelIds.png inside gtFine/val/bochum/ must not become a phantom frame (no image,
    duplicate source_id) while the real bremen frame loses its mask: it is a stray."""
    exp = make_cityscapes(tmp_path, splits=("val",), cities=("bochum", "bremen"), frames=1)
    bremen = [b for _, c, b in exp["frames"] if c == "bremen"][0]
    src = tmp_path / "gtFine/val/bremen" / f"{bremen}_gtFine_labelIds.png"
    shutil.move(src, tmp_path / "gtFine/val/bochum" / src.name)
    ds = cs.parse(tmp_path, workers=1)
    assert len(ds) == 2 and len({r.source_id for r in ds}) == 2
    assert all((tmp_path / r.path).is_file() for r in ds)
    assert ds.info["stray_files"] == 1
    assert f"(first: gtFine/val/bochum/{src.name})" in caplog.text
    by_city = {r.extra["city"]: r for r in ds}
    assert by_city["bremen"].extra["mask_kind"] == "instanceIds"  # its labelIds is not in its folder


def test_misnamed_files_are_strays_not_frames(tmp_path, caplog):
    """A file that does not follow <city>_<seq>_<frame>_ (seq and frame numbers) is no frame: a
    garbage one must not abort the parse, and the warning names it under its own folder."""
    exp = make_cityscapes(tmp_path, splits=("val",), cities=("bochum",), frames=1)
    gt = tmp_path / "gtFine" / "val" / "bochum"
    (gt / "bochum_foo_gtFine_labelIds.png").write_bytes(b"garbage")
    (gt / "bochum_000000_abc_gtFine_instanceIds.png").write_bytes(b"garbage")
    shutil.copy(next((tmp_path / "leftImg8bit/val/bochum").glob("*.png")),
                tmp_path / "leftImg8bit/val/bochum/bochum_x_leftImg8bit.png")
    ds = cs.parse(tmp_path, instances="things", workers=1)
    assert [r.source_id for r in ds] == [exp["frames"][0][2]]
    assert len(ds[0].instances) == THINGS_PER_FRAME
    assert ds.info["stray_files"] == 3
    warnings = [r.getMessage() for r in caplog.records if "Cityscapes naming" in r.getMessage()]
    assert len(warnings) == 1 and "3 file(s)" in warnings[0]
    assert "(first: leftImg8bit/val/bochum/bochum_x_leftImg8bit.png)" in warnings[0]
    shutil.rmtree(tmp_path / "leftImg8bit")
    (gt / "bochum_foo_gtFine_labelIds.png").unlink()
    caplog.clear()
    assert cs.parse(tmp_path, workers=1).info["stray_files"] == 1
    assert "(first: gtFine/val/bochum/bochum_000000_abc_gtFine_instanceIds.png)" in caplog.text


def test_segments_helper_agrees_with_pycocotools_on_random_maps():
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = rng.integers(1, 25, 2)
        m = rng.integers(0, 4, (h, w))
        seg = segments_from_id_map(m)
        for v, rle in zip(seg.values, seg.rles):
            ref = mask_utils.encode(np.asfortranarray((m == v).astype(np.uint8)))
            assert rle["counts"] == ref["counts"].decode()


def test_gtcoarse_train_extra_and_write_keeps_the_annotation_type(tmp_path):
    exp = make_cityscapes(tmp_path / "src", splits=("train_extra",), annotations="gtCoarse")
    ds = cs.parse(tmp_path / "src", annotations="gtCoarse", instances="things", workers=1)
    assert list(ds.splits) == ["train_extra"] and len(ds) == exp["images"]
    assert ds[0].mask_path.endswith("_gtCoarse_labelIds.png") and len(ds[0].instances) == THINGS_PER_FRAME
    with pytest.raises(DatasetNotFoundError):
        cs.parse(tmp_path / "src" / "gtCoarse")  # a sub-folder is not a root
    (tmp_path / "out").mkdir()
    cs.write(ds, tmp_path / "out", images="none")
    assert len(list((tmp_path / "out" / "gtCoarse" / "train_extra").rglob("*_gtCoarse_labelTrainIds.png"))) == 4


def test_cli_convert_to_coco_panoptic(tmp_path, capsys):
    from dsprep.cli import main

    make_cityscapes(tmp_path / "cs", splits=("val",))
    code = main(["convert", "cityscapes", str(tmp_path / "cs"), "--to", "coco-panoptic",
                 "--out", str(tmp_path / "out"), "--quiet", "--workers", "1"])
    assert code == 0 and "4 images, 28 objects" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "annotations" / "panoptic_val").glob("*_gtFine_panoptic.png"))) == 4


def test_write_foreign_records_reports_what_is_lost(tmp_path):
    from dsprep.records import Category, Dataset, Instances, Record

    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rec = Record("a", "a.jpg", 8, 8, "train", instances=Instances(boxes=[[0, 0, 2, 2]], labels=[1]),
                 mask_path="a_mask.png")
    ds = Dataset([Category(1, "cat")], [rec], root=tmp_path, format="coco")
    (tmp_path / "out").mkdir()
    report = cs.write(ds, tmp_path / "out", images="copy")
    assert report == {"images": 1, "objects": 0, "lost": {"objects": 1, "semantic masks": 1,
                                                          "categories (Cityscapes has a fixed label table)": 1,
                                                          "image file names (named default_<index>_000000: Cityscapes names frames <city>_<seq>_<frame>)": 1}}
    assert (tmp_path / "out/leftImg8bit/train/default/default_000000_000000_leftImg8bit.jpg").is_file()
    back = cs.parse(tmp_path / "out", workers=1)
    assert [(r.path, r.width, r.height) for r in back] == \
        [("leftImg8bit/train/default/default_000000_000000_leftImg8bit.jpg", 8, 8)]


def test_write_counts_image_labels_captions_and_instance_pngs_it_cannot_hold(tmp_path, caplog):
    """Cityscapes holds no image-level label or caption: an ImageNet tree converted to it must
    say so ("cannot hold"), as the coco and voc writers do; nothing is dropped silently."""
    from dsprep.records import Category, Dataset, Record

    from fakes_imagenet import make_tree

    tree = make_tree(tmp_path / "inet", splits=("train",))
    n = sum(len(v) for v in tree["train"].values())
    summary = convert("imagenet", tmp_path / "inet", "cityscapes", tmp_path / "out", workers=1, images="link")
    assert summary["lost"] == {"image-level labels": n,
                               "categories (Cityscapes has a fixed label table)": len(tree["train"]),
                               "image file names (named default_<index>_000000: Cityscapes names frames <city>_<seq>_<frame>)": n}
    assert f"cityscapes cannot hold image-level labels: {n} dropped" in caplog.text
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rec = Record("a", "a.jpg", 8, 8, "train", captions=["a cat", "the cat"], instance_mask_path="a_pan.png")
    (tmp_path / "out2").mkdir()
    report = cs.write(Dataset([Category(1, "cat")], [rec], root=tmp_path, format="coco-panoptic"),
                      tmp_path / "out2", images="link")
    assert report["lost"] == {"captions": 2, "instance mask PNGs": 1,
                              "categories (Cityscapes has a fixed label table)": 1, "image file names (named default_<index>_000000: Cityscapes names frames <city>_<seq>_<frame>)": 1}
    # without images a Cityscapes tree of another format's records would be empty: refused, named
    (tmp_path / "out3").mkdir()
    with pytest.raises(InvalidAnnotationError, match="images='none' places none: nothing would be written"):
        cs.write(Dataset([Category(1, "cat")], [rec], root=tmp_path, format="coco-panoptic"), tmp_path / "out3",
                 images="none")
    assert not any((tmp_path / "out3").iterdir())


def test_frames_without_label_ids_get_the_semantic_map_of_their_png_tree(tmp_path):
    """polygons.json only (drawn as json2labelImg) or instanceIds only (datumaro; decode_instance_ids):
    the torch layer, validate and --to voc see the same labelIds the PNG tree holds."""
    import dsprep
    from dsprep.validate import validate

    make_cityscapes(tmp_path / "png", splits=("val",), frames=2, polygons=False)
    make_cityscapes(tmp_path / "poly", splits=("val",), frames=2, pngs=False)
    make_cityscapes(tmp_path / "inst", splits=("val",), frames=2, polygons=False)
    for f in (tmp_path / "inst").rglob("*_gtFine_*.png"):
        if not f.name.endswith("instanceIds.png"):
            f.unlink()
    ref = dsprep.parse("cityscapes", tmp_path / "png", workers=1)
    want = [ref.torch(task="segmentation")[i][1]["mask"] for i in range(len(ref))]
    assert all(bool((m == 23).any()) for m in want)  # sky is there
    for name, kind in (("poly", "polygons"), ("inst", "instanceIds")):
        ds = dsprep.parse("cityscapes", tmp_path / name, workers=1)
        assert [r.extra["mask_kind"] for r in ds] == [kind] * len(ds)
        got = [ds.torch(task="segmentation")[i][1]["mask"] for i in range(len(ds))]
        assert all(np.array_equal(g.numpy(), w.numpy()) for g, w in zip(got, want)), name
        assert ds.torch().task == "segmentation"  # inferred from the semantic sources too
        tid = ds.torch(task="segmentation", mask_lut="train_id")[0][1]["mask"]
        assert np.array_equal(tid.numpy(), ref.torch(task="segmentation", mask_lut="train_id")[0][1]["mask"].numpy())
        _, problems = validate("cityscapes", tmp_path / name, workers=1)
        assert problems == [], (name, problems[:3])
        report = convert("cityscapes", tmp_path / name, "voc", tmp_path / f"voc_{name}", workers=1, images="none")
        assert not any("mask PNGs" in k for k in report["lost"]), report["lost"]
    convert("cityscapes", tmp_path / "png", "voc", tmp_path / "voc_png", workers=1, images="none")
    for png in (tmp_path / "voc_png/SegmentationClass").glob("*.png"):
        for name in ("poly", "inst"):
            assert np.array_equal(np.asarray(Image.open(png)),
                                  np.asarray(Image.open(tmp_path / f"voc_{name}/SegmentationClass" / png.name)))
    # instanceIds alone written back to Cityscapes: labelIds decoded from it, not dropped
    inst = cs.parse(tmp_path / "inst", workers=1)
    (tmp_path / "back").mkdir()
    cs.write(inst, tmp_path / "back", images="none")
    back = sorted((tmp_path / "back").rglob("*_gtFine_labelIds.png"))
    assert len(back) == 4 and np.array_equal(np.asarray(Image.open(back[0])),
                                             np.asarray(Image.open(sorted((tmp_path / "png").rglob(
                                                 "*_gtFine_labelIds.png"))[0])))
    # an unknown label in a polygons-only frame is named by validate, not found later by a loader
    doc_path = sorted((tmp_path / "poly").rglob("*_polygons.json"))[0]
    doc = json.loads(doc_path.read_text())
    doc["objects"][5]["label"] = "carx"
    doc_path.write_text(json.dumps(doc))
    _, problems = validate("cityscapes", tmp_path / "poly", workers=1)
    assert [p.kind for p in problems] == ["parse"] and "unknown label 'carx'" in problems[0].message
    assert doc_path.name in problems[0].where + problems[0].message


def test_image_split_without_annotation_folder_is_skipped_with_a_warning(tmp_path, caplog):
    """leftImg8bit/train_extra beside gtFine (its labels are in gtCoarse) is not labelled data for a
    gtFine parse: skipped with one warning naming it; split= still reads it; convert writes no
    empty gtFine/train_extra nor an annotation-less JSON."""
    make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=1)
    make_cityscapes(tmp_path / "cs", splits=("train_extra",), cities=("bochum",), frames=1,
                    annotations="gtCoarse")
    ds = cs.parse(tmp_path / "cs", workers=1)
    assert list(ds.splits) == ["val"] and len(ds) == 1
    warned = [r.getMessage() for r in caplog.records if "train_extra" in r.getMessage()]
    assert len(warned) == 1 and "no gtFine/ folder: skipped" in warned[0]
    assert len(cs.parse(tmp_path / "cs", split="train_extra", workers=1)) == 1  # asked for: read
    assert list(cs.parse(tmp_path / "cs", annotations="gtCoarse", workers=1).splits) == ["train_extra"]
    convert("cityscapes", tmp_path / "cs", "coco", tmp_path / "coco", workers=1, images="none")
    assert sorted(p.name for p in (tmp_path / "coco/annotations").iterdir()) == ["instances_val.json"]
