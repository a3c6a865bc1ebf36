"""`dsprep synth | convert | info` end to end through the CLI entry point, and the
cross-format round trips (VOC -> COCO -> VOC, COCO -> VOC -> COCO)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

import dsprep
from dsprep.cli import main
from dsprep.synth import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes_voc(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "voc"
    assert main(["synth", "voc", str(out), "--num-images", "20", "--seed", "3", "--size", "64"]) == 0
    return out


def test_synth_is_deterministic_and_learnable_shaped(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", images=6, seed=5, size=64)
    b = make_shapes_dataset(tmp_path / "b", images=6, seed=5, size=64)
    assert [r.instances for r in a] == [r.instances for r in b]
    assert (tmp_path / "a/images/shapes_00000.jpg").read_bytes() == (tmp_path / "b/images/shapes_00000.jpg").read_bytes()
    for r in a:
        boxes = r.instances.boxes
        assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= 64) & (boxes[:, 0] < boxes[:, 2])).all()
        for box, (poly,) in zip(boxes, r.instances.segmentation):
            xs, ys = poly[0::2], poly[1::2]
            assert box.tolist() == [min(xs), min(ys), max(xs), max(ys)]


def test_synth_writes_only_formats_that_hold_its_objects(tmp_path, capsys):
    # imagenet would keep 0 of its images (no image label), cityscapes none of its objects
    for fmt in ("imagenet", "cityscapes"):
        with pytest.raises(SystemExit) as err:
            main(["synth", fmt, str(tmp_path / fmt), "--num-images", "4"])
        assert err.value.code == 2 and "choose from 'voc', 'coco', 'coco-panoptic'" in capsys.readouterr().err
        assert not (tmp_path / fmt).exists()
    assert main(["synth", "coco-panoptic", str(tmp_path / "pan"), "--num-images", "4", "--size", "32"]) == 0
    import dsprep
    assert dsprep.parse("coco-panoptic", tmp_path / "pan").num_objects() > 0


def test_synth_voc_then_convert_to_coco_loads_in_pycocotools(shapes_voc, tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["convert", "voc", str(shapes_voc), "--to", "coco", "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "converted voc -> coco: 20 images" in summary
    voc = dsprep.parse("voc", shapes_voc)
    for split in ("train", "val"):
        gt = COCO(str(out / "annotations" / f"instances_{split}.json"))
        assert len(gt.getImgIds()) == len(voc.splits[split])
        # every box survives exactly: xyxy -> COCO xywh
        by_name = {Path(im["file_name"]).stem: im["id"] for im in gt.dataset["images"]}
        names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
        for rid in voc.splits[split]:
            rec = voc.record_by_id()[rid]
            anns = gt.loadAnns(gt.getAnnIds(imgIds=[by_name[Path(rec.path).stem]]))
            got = sorted((names[a["category_id"]], *a["bbox"]) for a in anns)
            cat = voc.category_by_id()
            want = sorted((cat[int(l)].name, b[0], b[1], b[2] - b[0], b[3] - b[1])
                          for b, l in zip(rec.instances.boxes.tolist(), rec.instances.labels))
            assert [g[0] for g in got] == [w[0] for w in want]
            assert np.allclose([g[1:] for g in got], [w[1:] for w in want], rtol=0, atol=1e-9)
    cmap = json.loads((out / "category_map.json").read_text())
    assert cmap["policy"] == "preserve"


def test_convert_refuses_existing_output_and_overwrites_when_asked(shapes_voc, tmp_path, capsys):
    out = tmp_path / "exists"
    argv = ["convert", "voc", str(shapes_voc), "--to", "coco", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    (out / "annotations" / "stale.json").write_text("{}")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "annotations" / "stale.json").exists()
    assert main(argv + ["--overwrite"]) == 0  # dsprep wrote it (its manifest says so): replaced whole
    assert not (out / "annotations" / "stale.json").exists() and (out / "annotations").is_dir()
    # a folder dsprep did not write is never replaced (docs/cli.md, Safety; tests/test_safety_output.py)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(argv[:-2] + [str(other), "--quiet", "--overwrite"]) == 2
    assert "keep.txt" in capsys.readouterr().err and (other / "keep.txt").read_text() == "x"


def test_convert_never_writes_over_its_input(shapes_voc, capsys):
    before = sorted(p.name for p in shapes_voc.rglob("*"))
    assert main(["convert", "voc", str(shapes_voc), "--to", "coco", "--out", str(shapes_voc),
                 "--overwrite", "--quiet"]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert sorted(p.name for p in shapes_voc.rglob("*")) == before


def test_convert_failure_leaves_no_partial_output(tmp_path, capsys):
    bad = tmp_path / "VOC"
    (bad / "Annotations").mkdir(parents=True)
    (bad / "Annotations" / "a.xml").write_text("<annotation><size><width>8</width>")
    out = tmp_path / "out"
    assert main(["convert", "voc", str(bad), "--to", "coco", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a.xml" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_root_and_unknown_format(tmp_path, capsys):
    assert main(["convert", "voc", str(tmp_path / "nope"), "--to", "coco", "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    # FORMAT may be left out, so a misspelt one is checked after parsing: exit 2 with a suggestion
    assert main(["convert", "vocc", str(tmp_path), "--to", "coco", "--out", str(tmp_path / "o")]) == 2
    assert "Unknown format 'vocc'" in capsys.readouterr().err
    with pytest.raises(dsprep.UnknownNameError, match="Did you mean 'voc'"):
        dsprep.get_format("vocc")


@pytest.mark.parametrize("policy,first", [("contiguous0", 0), ("contiguous1", 1)])
def test_category_id_policy_written_beside_output(shapes_voc, tmp_path, policy, first):
    out = tmp_path / policy
    assert main(["convert", "voc", str(shapes_voc), "--to", "coco", "--out", str(out), "--quiet",
                 "--category-ids", policy]) == 0
    gt = json.loads((out / "annotations" / "instances_train.json").read_text())
    ids = [c["id"] for c in gt["categories"]]
    assert ids == list(range(first, first + len(ids)))
    cmap = json.loads((out / "category_map.json").read_text())
    assert cmap["policy"] == policy
    assert {c["id"] for c in cmap["categories"]} == set(ids)


def test_voc_coco_voc_round_trip_keeps_every_field(fixtures, tmp_path):
    src = fixtures / "datumaro/tests/assets/voc_dataset/voc_dataset1"
    a = dsprep.parse("voc", src)
    dsprep.convert("voc", src, "coco", tmp_path / "coco", images="none")
    dsprep.convert("coco", tmp_path / "coco", "voc", tmp_path / "voc", images="none")
    b = dsprep.parse("voc", tmp_path / "voc")
    by_stem = {Path(r.path).stem: r for r in b}
    assert len(b) == len(a)
    for ra in a:
        rb = by_stem[Path(ra.path).stem]
        ia, ib = ra.instances, rb.instances
        assert ib.boxes.tolist() == ia.boxes.tolist()
        assert ib.difficult.tolist() == ia.difficult.tolist()
        names_a = [a.category_by_id()[int(l)].name for l in ia.labels]
        names_b = [b.category_by_id()[int(l)].name for l in ib.labels]
        assert names_a == names_b
        assert (ib.extra or [None] * len(ib)) == (ia.extra or [None] * len(ia))


def test_coco_voc_coco_round_trip_keeps_boxes_names_crowd(fixtures, tmp_path):
    src = fixtures / "super-gradients/tests/data/tinycoco"
    a = dsprep.parse("coco", src)
    dsprep.convert("coco", src, "voc", tmp_path / "voc", images="none")
    dsprep.convert("voc", tmp_path / "voc", "coco", tmp_path / "coco", images="none")
    b = dsprep.parse("coco", tmp_path / "coco")
    assert a.num_objects() == b.num_objects()
    key = lambda ds: sorted(  # noqa: E731
        (Path(r.path).stem, ds.category_by_id()[int(l)].name, bool(c), *map(float, box))
        for r in ds for box, l, c in zip(r.instances.boxes, r.instances.labels, r.instances.iscrowd))
    assert key(a) == key(b)


def test_python_dash_m_and_help_do_not_import_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "dsprep", "convert", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--category-ids" in out.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()}


def test_convert_refuses_an_output_inside_the_input(shapes_voc, capsys):
    before = sorted(str(p) for p in shapes_voc.rglob("*"))
    for out in (shapes_voc / "JPEGImages", shapes_voc / "new-sub"):
        assert main(["convert", "voc", str(shapes_voc), "--to", "coco", "--out", str(out), "--overwrite",
                     "--quiet"]) == 2
        assert "is inside the input" in capsys.readouterr().err
    assert sorted(str(p) for p in shapes_voc.rglob("*")) == before
