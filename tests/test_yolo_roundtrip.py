"""YOLO <-> COCO and YOLO <-> VOC through dsprep.convert: boxes come back bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsprep.conversion import convert
from dsprep.formats import coco, voc, yolo

from fakes_coco import make_coco
from fakes_voc import make_voc
from fakes_yolo import make_yolo


def _coco_bboxes(path: Path) -> dict[str, list]:
    doc = json.loads(path.read_text())
    names = {im["id"]: im["file_name"].rsplit("/", 1)[-1] for im in doc["images"]}
    out: dict[str, list] = {}
    for a in doc["annotations"]:
        out.setdefault(names[a["image_id"]], []).append(a["bbox"])
    return out


def test_coco_to_yolo_to_coco_keeps_every_bbox(tmp_path):
    src = make_coco(tmp_path / "src")
    convert("coco", src["root"], "yolo", tmp_path / "y", workers=1, write_options={"task": "detect"})
    back = yolo.parse(tmp_path / "y", workers=1)
    first = coco.parse(src["root"], workers=1)
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in first}
    for r in back:
        assert r.instances.boxes.tolist() == by_name[r.path.rsplit("/", 1)[-1]].instances.boxes.tolist()
    convert("yolo", tmp_path / "y", "coco", tmp_path / "c", workers=1)
    for split in ("train2017", "val2017"):
        want = _coco_bboxes(src["json"][split])
        got = _coco_bboxes(tmp_path / "c" / "annotations" / f"instances_{split}.json")
        assert got == want  # the JSON numbers themselves, crowd objects included (written as ordinary)
    cmap = json.loads((tmp_path / "y" / "category_map.json").read_text())
    assert [(c["source_id"], c["id"]) for c in cmap["categories"]] == [(1, 0), (3, 1), (7, 2)]
    # by default COCO's masks make segment rows: polygons as they are, crowd RLEs traced
    summary = convert("coco", src["root"], "yolo", tmp_path / "s", workers=1)
    assert summary["lost"]["RLE masks traced to polygons (objects; approximate: pixel-edge outlines)"] == src["crowd"]
    seg = yolo.parse(tmp_path / "s", workers=1)
    assert seg.num_objects() == first.num_objects()
    assert all(s is not None for r in seg if len(r.instances) for s in r.instances.segmentation)


def test_voc_to_yolo_to_voc_keeps_every_box(tmp_path):
    src = make_voc(tmp_path / "src", n=5)
    convert("voc", src["root"], "yolo", tmp_path / "y", workers=1)
    back = yolo.parse(tmp_path / "y", workers=1)
    assert back.num_objects() == src["objects"]
    want = {rid.rsplit("/", 1)[-1]: boxes for rid, boxes in src["boxes"].items()}
    for r in back:
        assert r.instances.boxes.tolist() == want[Path(r.path).stem]
    convert("yolo", tmp_path / "y", "voc", tmp_path / "v", workers=1)
    again = voc.parse(tmp_path / "v", workers=1)
    for r in again:
        assert r.instances.boxes.tolist() == want[Path(r.path).stem]


def test_yolo_to_coco_to_yolo_and_voc_to_yolo_give_the_same_rows(tmp_path):
    make_yolo(tmp_path / "src", [("train", f"i{k}", 17 + k, 13 + 2 * k,
                                  f"{k % 2} 0.{k + 3}1 0.4{k} 0.2{k} 0.3\n1 0.5 0.5 0.25 0.125\n") for k in range(5)]
              + [("val", "v", 10, 10, "0 0.5 0.5 1 1\n")])
    convert("yolo", tmp_path / "src", "coco", tmp_path / "c", workers=1)
    convert("coco", tmp_path / "c", "yolo", tmp_path / "y", workers=1)
    convert("yolo", tmp_path / "src", "voc", tmp_path / "v", workers=1)
    convert("voc", tmp_path / "v", "yolo", tmp_path / "vy", workers=1)
    for lab in sorted((tmp_path / "src" / "labels").rglob("*.txt")):
        rel = lab.relative_to(tmp_path / "src")
        want = [[float(v) for v in ln.split()] for ln in lab.read_text().splitlines()]
        for out in ("y", "vy"):  # the same numbers (0.40 comes back as 0.4)
            assert [[float(v) for v in ln.split()] for ln in (tmp_path / out / rel).read_text().splitlines()] == want
    ds = yolo.parse(tmp_path / "src", workers=1)
    assert np.concatenate([r.instances.boxes for r in ds]).shape == (11, 4)


def test_keypoints_of_zero_points_are_no_pose_data(tmp_path):
    """Found by the fuzzer: records whose keypoints hold 0 points an object (a shards sample may)
    were written as pose with 'kpt_shape: [0, 3]', which the YOLO reader then refused."""
    import numpy as np

    from dsprep.formats import yolo
    from dsprep.records import Category, Dataset, Instances, Record

    rec = Record("a", "a.jpg", 8, 6, split="train",
                 instances=Instances([[1, 1, 4, 5]], [1], keypoints=np.zeros((1, 0, 3))))
    out = tmp_path / "out"
    out.mkdir()
    yolo.write(Dataset([Category(1, "cat")], [rec], splits={"train": ["a"]}), out, images="none")
    assert "kpt_shape" not in (out / "data.yaml").read_text()
    (label,) = (out / "labels").rglob("a.txt")
    assert [len(row.split()) for row in label.read_text().splitlines()] == [5]  # a detect row
