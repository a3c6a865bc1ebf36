"""COCO panoptic: panopticapi's real sample, datumaro's set, the 2-channel trap, round trips,
writing from per-object masks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dsprep.errors import DatasetNotFoundError, InvalidAnnotationError, MalformedFileError, MissingFileError
from dsprep.formats import coco_panoptic as cp
from dsprep.masks import encode_mask, id_to_rgb, read_id_png, rgb_to_id
from dsprep.records import Category, Dataset, Instances, Record


def _png_ids(path) -> np.ndarray:
    return rgb_to_id(np.asarray(Image.open(path).convert("RGB")))


@pytest.fixture()
def sample(fixtures):
    return fixtures / "panopticapi" / "sample_data"


def test_panopticapi_sample_records(sample):
    assert cp.detect(sample / "panoptic_examples.json") and cp.detect(sample)
    ds = cp.parse(sample / "panoptic_examples.json", images_dir="input_images")
    assert len(ds) == 2 and ds.num_objects() == 18 + 32 and len(ds.categories) == 133
    assert list(ds.splits) == ["examples"]
    r = ds.record_by_id()["input_images/000000142238"]
    assert (r.source_id, r.width, r.height, r.path) == (142238, 640, 427, "input_images/000000142238.jpg")
    assert r.instance_mask_path == "panoptic_examples/000000142238.png"
    assert ds.info["instance_mask_encoding"] == "rgb" and ds.info["info"]["year"] == 2018
    # first segment: {'area': 3528, 'category_id': 1, 'iscrowd': 0, 'id': 3937500, 'bbox': [282, 207, 48, 149]}
    inst = r.instances
    assert (inst.ids[0], inst.labels[0], inst.area[0]) == (3937500, 1, 3528.0)
    assert inst.boxes[0].tolist() == [282.0, 207.0, 330.0, 356.0]
    assert inst.segmentation is None  # pixels stay in the PNG until asked for
    person = ds.category_by_id()[1]
    assert person.extra["isthing"] == 1 and person.extra["color"] == [220, 20, 60]


def test_panopticapi_pngs_match_segments_info(sample):
    ds = cp.parse(sample / "panoptic_examples.json", masks=True, workers=1)
    all_ids = np.concatenate([r.instances.ids for r in ds])
    assert all_ids.max() > 256 ** 2 * 200  # ids up to 16.7 M: the blue channel is used
    assert any(r.instances.iscrowd.any() for r in ds)
    for r in ds:
        pan = _png_ids(sample / r.instance_mask_path)
        assert (pan == 0).any()  # void pixels
        for k, sid in enumerate(r.instances.ids):
            rle = r.instances.segmentation[k]
            m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert np.array_equal(m.astype(bool), pan == sid)
            assert m.sum() == r.instances.area[k]  # verified: stored areas are pixel counts
            x, y, w, h = mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()})
            assert [x, y, x + w, y + h] == r.instances.boxes[k].tolist()


def test_datumaro_full_rgb_decode(fixtures):
    root = fixtures / "datumaro/tests/assets/coco_dataset/coco_panoptic"
    assert cp.detect(root)
    # datumaro's a.png is 5x5 for a 10x5 image: a named error (its RLEs would not fit the image), skipped
    # with on_error="warn"; read without decoding PNGs it is a record like any other
    with pytest.raises(InvalidAnnotationError, match="the PNG is 5x5, its image is 10x5") as info:
        cp.parse(root, split="train", masks=True)
    assert info.value.where.endswith("panoptic_train/a.png")
    ds = cp.parse(root, masks=True, verify="all", on_error="warn")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 0, "val": 1} and ds.info["skipped"] == 1
    a = cp.parse(root, split="train", verify="none").record_by_id()["images/train/a"]
    assert a.path == "images/train/a.jpg" and a.instance_mask_path == "annotations/panoptic_train/a.png"
    assert a.instances.ids.tolist() == [460551]  # stored as RGB (7, 7, 7)
    assert np.asarray(Image.open(root / a.instance_mask_path))[0, 0].tolist() == [7, 7, 7]
    assert np.unique(read_id_png(root / a.instance_mask_path, "rgb")).tolist() == [460551]
    # the stored area (20) is kept as is (the PNG segment covers all 25 pixels)
    assert a.instances.area.tolist() == [20.0]
    b = ds.record_by_id()["images/val/b"]
    assert b.instances.iscrowd.tolist() == [False, True] and b.instances.labels.tolist() == [1, 2]
    assert all(s["size"] == [b.height, b.width] for s in b.instances.segmentation)


def _two_channel_tree(sample, tmp_path):
    ann = tmp_path / "annotations"
    (ann / "panoptic_val").mkdir(parents=True)
    shutil.copy(sample / "panoptic_examples.json", ann / "panoptic_val.json")
    for png in (sample / "panoptic_examples_2ch_format").glob("*.png"):
        (ann / "panoptic_val" / png.name).symlink_to(png)
    return tmp_path


def test_two_channel_pngs_are_rejected_clearly(sample, tmp_path):
    root = _two_channel_tree(sample, tmp_path)
    with pytest.raises(InvalidAnnotationError, match=r"000000142238\.png.*do not match segments_info"
                                                     r".*2-channel format"):
        cp.parse(root)
    ds = cp.parse(root, on_error="warn", verify="all")  # skip-and-count mode
    assert len(ds) == 0 and ds.info["skipped"] == 2


def test_round_trip_reproduces_pngs_and_segments_info(sample, tmp_path):
    ds = cp.parse(sample / "panoptic_examples.json", images_dir="input_images")
    out = tmp_path / "out"
    out.mkdir()
    report = cp.write(ds, out, images="link")
    assert report == {"images": 2, "objects": 50, "lost": {}}
    src = json.loads((sample / "panoptic_examples.json").read_text())
    dst = json.loads((out / "annotations" / "panoptic_examples.json").read_text())
    assert dst["annotations"] == src["annotations"]
    assert dst["categories"] == src["categories"] and dst["images"] == src["images"]
    for a in src["annotations"]:
        assert np.array_equal(np.asarray(Image.open(sample / "panoptic_examples" / a["file_name"])),
                              np.asarray(Image.open(out / "annotations" / "panoptic_examples" / a["file_name"])))
    back = cp.parse(out, verify="all")
    assert [r.instances for r in back] == [r.instances for r in ds]
    assert back[0].path == "examples/000000142238.jpg"  # COCO 2017 layout: images in <split>/
    assert (out / "examples" / "000000142238.jpg").is_symlink()


def _mask_dataset(segmentation, ids=None) -> Dataset:
    n = len(segmentation)
    inst = Instances(boxes=np.zeros((n, 4)), labels=[1] * n, ids=ids, segmentation=segmentation)
    rec = Record("img", "img.jpg", 6, 4, "val", instances=inst)
    return Dataset([Category(1, "thing", "", {"isthing": 1})], [rec])


def test_write_from_rle_and_polygons_paints_in_order(tmp_path):
    a = np.zeros((4, 6), bool)
    a[0:3, 0:4] = True
    b = np.zeros((4, 6), bool)
    b[1:4, 2:6] = True
    hidden = np.zeros((4, 6), bool)
    hidden[1:2, 3:4] = True
    poly = [[0.0, 3.0, 1.0, 3.0, 1.0, 4.0, 0.0, 4.0]]  # a polygon object (COCO style)
    ds = _mask_dataset([encode_mask(a), encode_mask(hidden), encode_mask(b), poly])
    out = tmp_path / "o"
    out.mkdir()
    report = cp.write(ds, out, images="none")
    # the records' boxes are all zeros: the three painted segments' extents differ, and say so
    assert report["lost"] == {"objects hidden by later objects": 1,
                              "boxes (the painted mask's extent is written instead)": 3}
    doc = json.loads((out / "annotations" / "panoptic_val.json").read_text())
    segs = doc["annotations"][0]["segments_info"]
    pan = _png_ids(out / "annotations" / "panoptic_val" / doc["annotations"][0]["file_name"])
    painted = np.zeros((4, 6), int)
    painted[a], painted[b] = 1, 3  # ids 1..N (the records carry none); b drawn over a
    expected_poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 4, 6))).astype(bool)
    painted[expected_poly] = 4
    assert np.array_equal(pan, painted)
    assert [s["id"] for s in segs] == [1, 3, 4]
    assert segs[0]["area"] == int((painted == 1).sum()) and segs[0]["bbox"] == [0, 0, 4, 3]
    assert doc["categories"] == [{"id": 1, "name": "thing", "supercategory": "", "isthing": 1}]


def test_write_uses_record_ids_when_valid(tmp_path):
    m = np.zeros((4, 6), bool)
    m[1, 1] = True
    ds = _mask_dataset([encode_mask(m)], ids=[5_000_000])
    out = tmp_path / "o"
    out.mkdir()
    cp.write(ds, out, images="none")
    rgb = np.asarray(Image.open(next((out / "annotations" / "panoptic_val").glob("*.png"))))
    assert rgb[1, 1].tolist() == id_to_rgb(np.array(5_000_000)).tolist() == [64, 75, 76]


def test_bad_inputs(fixtures, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="panoptic_<split>.json"):
        cp.parse(tmp_path)
    doc = json.loads((fixtures / "datumaro/tests/assets/coco_dataset/coco_panoptic/annotations/"
                                  "panoptic_val.json").read_text())
    doc["annotations"][0]["segments_info"][1]["category_id"] = 99
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "panoptic_val.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidAnnotationError, match="image_id 40: segment 20.*category_id 99"):
        cp.parse(tmp_path, verify="none")
    ds = cp.parse(tmp_path, verify="none", on_error="warn")
    assert len(ds) == 0 and ds.info["skipped"] == 1
    (tmp_path / "annotations" / "panoptic_val.json").write_text(
        json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}],
                    "categories": []}))
    with pytest.raises(MalformedFileError, match="no 'segments_info'.*use format 'coco'"):
        cp.parse(tmp_path)


def test_detect_rejects_other_trees(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text("{}")
    assert not cp.detect(tmp_path)


def test_writer_counts_every_field_it_cannot_hold(fixtures, tmp_path):
    """Nothing dropped silently: keypoints, difficult flags, semantic masks, foreign image and
    category fields are counted lost, in the coco/voc writers' wording; a panoptic round trip
    loses nothing."""
    from dsprep.conversion import convert

    from fakes_cityscapes import make_cityscapes
    from fakes_voc import make_voc

    pose = fixtures / "super-gradients" / "tests" / "data" / "pose_minicoco"
    lost = convert("coco", pose, "coco-panoptic", tmp_path / "pose", images="none")["lost"]
    assert lost["keypoints (objects)"] == 40
    assert lost["category fields (keypoints, skeleton)"] == 1
    cats = json.loads((tmp_path / "pose/annotations/panoptic_val2017.json").read_text())["categories"]
    assert "keypoints" not in cats[0]

    voc = make_voc(tmp_path / "voc", n=4, masks=True)  # images 1 and 3 have a difficult object
    lost = convert("voc", voc["root"], "coco-panoptic", tmp_path / "vp", images="none")["lost"]
    assert lost["difficult flags (objects)"] == 2
    assert lost["semantic mask PNGs (mask_path)"] == 4

    make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=1)
    lost = convert("cityscapes", tmp_path / "cs", "coco-panoptic", tmp_path / "cp", workers=1)["lost"]
    assert lost["semantic mask PNGs (mask_path)"] == 1
    assert lost["category fields (catId, trainId)"] == 19 and lost["categories flagged ignoreInEval"] == 16
    assert lost["image fields (city, color_path, frame, labelIds_path, mask_kind, polygons_path, "
                "sequence)"] == 1

    back = convert("coco-panoptic", tmp_path / "cp", "coco-panoptic", tmp_path / "again", images="none")
    assert back["lost"] == {}


# --------------------------------------------------------------------------- panoptic -> detection: things
@pytest.fixture()
def no_isthing(sample, tmp_path):
    """panopticapi's sample with 'isthing' stripped from its categories (PNGs linked, not copied)."""
    doc = json.loads((sample / "panoptic_examples.json").read_text())
    for c in doc["categories"]:
        del c["isthing"]
    src = tmp_path / "src"  # its own folder: a conversion's OUT may not lie inside the input's (docs/cli.md)
    src.mkdir()
    (src / "panoptic_examples.json").write_text(json.dumps(doc))
    (src / "panoptic_examples").symlink_to(sample / "panoptic_examples", target_is_directory=True)
    return src / "panoptic_examples.json", doc


def _things_by_panopticapi_rule(doc, categories_file) -> list[tuple[int, int]]:
    """(image_id, segment id) of the segments panoptic2detection_coco_format.py --things_only keeps:
    categories[segm_info['category_id']]['isthing'] == 1, from the categories file."""
    isthing = {c["id"]: c["isthing"] for c in json.loads(categories_file.read_text())}
    return sorted((a["image_id"], s["id"]) for a in doc["annotations"] for s in a["segments_info"]
                  if isthing[s["category_id"]] == 1)


def test_things_only_takes_isthing_from_a_categories_file(fixtures, no_isthing):
    from dsprep.errors import FormatError

    path, doc = no_isthing
    cats_file = fixtures / "panopticapi" / "panoptic_coco_categories.json"
    everything = cp.parse(path)
    assert everything.num_objects() == 50 and all("isthing" not in c.extra for c in everything.categories)
    with pytest.raises(FormatError, match=r"things_only needs 'isthing' on every category; 133 have none"):
        cp.parse(path, things_only=True)
    filled = cp.parse(path, categories_file=cats_file)
    assert sum(c.extra["isthing"] for c in filled.categories) == 80 and filled.num_objects() == 50
    things = cp.parse(path, categories_file=cats_file, things_only=True)
    expected = _things_by_panopticapi_rule(doc, cats_file)
    assert len(expected) == 43  # 50 segments, 7 of stuff classes (125, 184, 187, 193)
    assert sorted((r.source_id, int(i)) for r in things for i in r.instances.ids) == expected
    assert len(things) == 2 and len(things.categories) == 80 and max(c.id for c in things.categories) == 90
    assert things.info["things_only"] == {"stuff_segments_dropped": 7, "stuff_categories": 53}
    # the JSON's own isthing wins over the file's: tree-merged (184) declared a thing keeps its 2 segments
    next(c for c in doc["categories"] if c["id"] == 184)["isthing"] = 1
    path.write_text(json.dumps(doc))
    assert cp.parse(path, categories_file=cats_file, things_only=True).num_objects() == 45
    # a file that names an id otherwise is refused
    wrong = json.loads(cats_file.read_text())
    wrong[0]["name"] = "human"
    (path.parent / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(InvalidAnnotationError, match=r"category 1.*named 'human' there but 'person'"):
        cp.parse(path, categories_file=path.parent / "wrong.json")
    # a categories file that is not there is named (it was a NameError)
    with pytest.raises(MissingFileError, match=r"absent\.json: categories file not found"):
        cp.parse(path, categories_file=path.parent / "absent.json")


def test_things_only_on_a_json_with_isthing_and_through_the_cli(sample, fixtures, no_isthing, tmp_path, capsys):
    from dsprep.cli import main

    ds = cp.parse(sample / "panoptic_examples.json", things_only=True)  # the JSON has isthing itself
    assert ds.num_objects() == 43 and len(ds.categories) == 80
    path, doc = no_isthing
    cats_file = str(fixtures / "panopticapi" / "panoptic_coco_categories.json")
    preds = [{"image_id": a["image_id"], "category_id": s["category_id"], "bbox": s["bbox"], "score": 1.0}
             for a in doc["annotations"] for s in a["segments_info"] if s["category_id"] <= 90]
    (tmp_path / "things.json").write_text(json.dumps(preds))
    capsys.readouterr()
    base = ["eval", "detection", "coco-panoptic", str(path), str(tmp_path / "things.json"), "--json"]
    assert main(base + ["--things-only", "--categories-file", cats_file]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["ground_truth"] == 43 and out["stats"]["AP"] == pytest.approx(1.0)
    assert len(out["per_class"]) == 80
    assert main(base) == 0  # every segment is an object: the stuff ones are missed
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["ground_truth"] == 50 and out["stats"]["AP"] < 0.7
    assert main(["eval", "detection", "voc", str(tmp_path), str(tmp_path / "things.json"), "--things-only"]) == 2
    assert "--things-only: applies to coco-panoptic sources" in capsys.readouterr().err
    assert main(["convert", "coco-panoptic", str(path), "--to", "coco", "--out", str(tmp_path / "coco"),
                 "--things-only", "--categories-file", cats_file, "--images", "none"]) == 0
    coco = json.loads(next((tmp_path / "coco" / "annotations").glob("instances_*.json")).read_text())
    assert len(coco["annotations"]) == 43 and len(coco["categories"]) == 80
