"""Issue 13, validate and info as a new user runs them: severities and exit codes, what is
normal in real data (info), VOC's own classes, a box outside counted once, likely typos, the
mask-size message, an empty ImageNet folder; info's Cityscapes objects, folded categories and
size buckets."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main

from fakes_voc import make_voc
from test_validate_input import _coco  # make_coco's val2017 tree, its JSON changed by a function

TINYCOCO = "super-gradients/tests/data/tinycoco"


def _report(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["validate", *argv, "--json", "--workers", "1"])
    return code, json.loads(capsys.readouterr().out)


def _kinds(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in report["items"]:
        out.setdefault(p["kind"], []).append(p)
    return out


# ----------------------------------------------------------------------------- severities

def test_real_coco_with_unused_categories_and_empty_images_passes(fixtures, capsys):
    """tinycoco (real COCO 2017): 80 categories, 37 unused in its 38 images, 2 train images
    without objects. Normal in real COCO: info, counted and shown, exit 0."""
    code, report = _report(capsys, "coco", str(fixtures / TINYCOCO))
    assert code == 0 and report["exit_status"] == 0
    assert report["severities"] == {"error": 0, "warning": 0, "info": 39}
    assert report["kinds"] == {"unused_category": {"severity": "info", "count": 37},
                               "no_annotations": {"severity": "info", "count": 2}}
    assert main(["validate", "coco", str(fixtures / TINYCOCO), "--workers", "1", "--strict"]) == 0  # info never fails
    text = capsys.readouterr().out
    assert ": 0 errors, 0 warnings, 39 info" in text.splitlines()[0]
    assert "\ninfo: unused_category (37): " in text and "\ninfo: no_annotations (2): " in text
    assert text.rstrip().endswith("passes (--strict: warnings fail too): 0 errors, 0 warnings")


def test_errors_warnings_and_info_are_counted_apart_and_only_errors_fail(tmp_path, capsys):
    """One warning (iscrowd 2, read as crowd) and one error (an unknown category): counted
    apart; exit 1 for the error; without it, exit 0, and 1 again with --strict."""
    def both(d):
        d["annotations"][0]["iscrowd"] = 2
        d["annotations"][1]["category_id"] = 99

    code, report = _report(capsys, "coco", str(_coco(tmp_path / "a", both)))
    assert code == 1 and report["severities"]["error"] == 1 and report["severities"]["warning"] == 1
    by = {sev: [p for p in report["items"] if p["severity"] == sev] for sev in ("error", "warning")}
    assert [p["kind"] for p in by["warning"]] == ["bad_iscrowd"]
    assert len(by["error"]) == 1 and "99" in by["error"][0]["message"]  # the parser refuses the category
    warn_only = _coco(tmp_path / "b", lambda d: d["annotations"][0].update(iscrowd=2))
    assert _report(capsys, "coco", str(warn_only))[0] == 0
    assert _report(capsys, "coco", str(warn_only), "--strict")[0] == 1
    assert main(["validate", "coco", str(warn_only), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert ": 0 errors, 1 warning, 2 info" in text.splitlines()[0] and "\nwarning: bad_iscrowd (1): " in text
    assert text.rstrip().endswith("passes: 0 errors")


def test_voc_standard_classes_are_not_reported_unused(tmp_path, capsys):
    """Without labelmap.txt the parser supplies the 20 VOC classes; a tree using 5 of them has
    no unused category. With a labelmap, an unused class is the dataset's own: info."""
    root = make_voc(tmp_path, n=3)["root"]  # objects of aeroplane, bicycle, bird, boat, bottle
    code, report = _report(capsys, "voc", str(root))
    assert code == 0 and "unused_category" not in report["counts"]
    (root / "labelmap.txt").write_text("background:0,0,0::\naeroplane:1,1,1::\nbicycle:2,2,2::\nbird:3,3,3::\n"
                                       "boat:4,4,4::\nbottle:5,5,5::\nsofa:6,6,6::\n")
    code, report = _report(capsys, "voc", str(root))
    unused = _kinds(report)["unused_category"]
    assert code == 0 and [p["where"] for p in unused] == ["category 6 'sofa'"]  # background is no category
    assert unused[0]["severity"] == "info"


def test_a_box_outside_its_image_is_counted_once_under_its_own_kind(tmp_path, capsys):
    """VOC image 0 (16x12) with xmax 40: one box_outside_image problem naming the XML and the
    object; not under "parse", and no second copy in a warning line on stderr."""
    root = make_voc(tmp_path, n=3)["root"]
    xml = root / "Annotations" / "2012_000000.xml"
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>40</xmax>", xml.read_text(), count=1))
    code = main(["validate", "voc", str(root), "--json", "--workers", "1"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    errors = [p for p in report["items"] if p["severity"] == "error"]
    assert code == 1 and [p["kind"] for p in errors] == ["box_outside_image"]
    assert "parse" not in report["counts"] and report["counts"]["box_outside_image"] == 1
    found = errors[0]
    assert found["where"] == "Annotations/2012_000000.xml" and found["severity"] == "error"
    assert "object 1 ('aeroplane')" in found["message"] and "lies outside the 16x12 image" in found["message"]
    assert "outside" not in captured.err


def _with_names(tmp_path, names: dict[int, str]):
    def rename(d):
        for c in d["categories"]:
            c["name"] = names.get(c["id"], c["name"])
    return _coco(tmp_path, rename)


@pytest.mark.parametrize("names, flagged", [
    ({1: "person", 3: "persn"}, ("persn", "person")),  # one letter dropped
    ({1: "bottle", 3: "botlte"}, ("botlte", "bottle")),  # two letters swapped
    ({1: "traffic light", 3: "traffic_light"}, ("traffic_light", "traffic light")),  # separators
    ({1: "Car", 7: "car"}, ("Car", "car")),  # case, however short
    ({1: "horse", 3: "house"}, None),  # a substituted letter: real vocabularies are full of these
    ({1: "cat", 3: "cap"}, None),  # short names are one edit from many real ones
])
def test_a_category_name_one_edit_from_another_is_a_likely_typo(tmp_path, capsys, names, flagged):
    code, report = _report(capsys, "coco", str(_with_names(tmp_path, names)))
    found = _kinds(report).get("similar_category_names", [])
    if flagged is None:
        assert found == []
        return
    assert code == 0 and len(found) == 1 and found[0]["severity"] == "warning"
    named = {n for n in flagged if f"{n!r}" in found[0]["where"] or f"category" in found[0]["message"]
             and f"{n!r}" in found[0]["message"]}
    assert named == set(flagged)
    assert "a likely typo" in found[0]["message"]


def test_the_typo_named_first_is_the_rarer_name(tmp_path, capsys):
    """make_coco's val2017 holds cats (id 1) and dogs (id 3); the rarer of the pair is named as the typo."""
    root = _with_names(tmp_path, {1: "kitten", 3: "kiten"})
    doc = json.loads((root / "annotations/instances_val2017.json").read_text())
    used = {c: sum(a["category_id"] == c for a in doc["annotations"]) for c in (1, 3)}
    rare, common = (1, 3) if used[1] < used[3] else (3, 1)
    assert used[rare] != used[common]
    _, report = _report(capsys, "coco", str(root))
    (found,) = _kinds(report)["similar_category_names"]
    assert found["where"].startswith(f"category {rare} ")
    assert f"used {used[rare]} times;" in found["message"] and f"(used {used[common]} times)" in found["message"]


def test_mask_size_message_names_the_side_that_is_wrong(tmp_path):
    """The image file decides: a mask of the image file's size is right (the XML's <size> is
    what is wrong: size_mismatch only); a mask of another size is named against the file."""
    from dsprep.validate import validate

    voc = make_voc(tmp_path, n=3, masks=True)
    root = voc["root"]
    stem = "2012_000001"
    Image.open(root / "JPEGImages" / f"{stem}.jpg").resize((8, 6)).save(root / "JPEGImages" / f"{stem}.jpg")
    for sub in ("SegmentationClass", "SegmentationObject"):
        Image.open(root / sub / f"{stem}.png").resize((8, 6)).save(root / sub / f"{stem}.png")
    problems = validate("voc", root, workers=1)[1]
    assert [p.kind for p in problems] == ["size_mismatch"]
    assert problems[0].message == "annotation says 16x12, image is 8x6"
    Image.new("RGB", (16, 12)).save(root / "JPEGImages" / f"{stem}.jpg")  # the XML is right again
    found = [p for p in validate("voc", root, workers=1)[1] if p.kind == "mask_size_mismatch"]
    assert len(found) == 2
    assert all(f"mask is 8x6 (width x height), its image JPEGImages/{stem}.jpg is 16x12" in p.message
               for p in found)


def test_an_empty_imagenet_folder_is_unusable_input(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", "imagenet", str(empty)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main(["convert", "imagenet", str(empty), "--to", "coco", "--out", str(tmp_path / "out")]) == 2
    assert "no images found" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- info

def test_info_counts_cityscapes_objects(tmp_path, capsys):
    from fakes_cityscapes import make_cityscapes

    cs = make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2)
    assert main(["info", "cityscapes", str(cs["root"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objects"] == cs["things_per_frame"] * 2 == report["splits"]["val"]["objects"]


def test_info_on_unreadable_cityscapes_instances_names_the_flag_that_reads_without_them(fixtures, capsys):
    """datumaro's Cityscapes sample holds 8-bit instanceIds: info (which counts objects) refuses
    them naming --instances none, and that flag reads the semantic labels alone."""
    root = str(fixtures / "datumaro/tests/assets/cityscapes_dataset/dataset")
    assert main(["info", "cityscapes", root]) == 2
    err = capsys.readouterr().err
    assert "8-bit instanceIds PNG" in err and "--instances none" in err and "instances=" not in err
    assert main(["info", "cityscapes", root, "--instances", "none", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 4 and report["objects"] == 0


def test_info_folds_categories_without_objects_into_one_line(fixtures, capsys):
    assert main(["info", "coco", str(fixtures / TINYCOCO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    folded = [line for line in lines if "with 0 objects" in line]
    assert len(folded) == 1 and folded[0].startswith("  + 37 categories with 0 objects: fire hydrant, stop sign, ")
    assert folded[0].endswith(", ... (--json lists them)")
    rows = [line for line in lines if line.startswith("  ") and "/" in line and "with 0" not in line]
    assert len(rows) == 80 - 37 and not any(re.search(r"\s0/0\s+0/0$", line) for line in rows)


def test_size_buckets_are_the_same_for_the_same_objects_in_every_format(tmp_path, capsys):
    """Objects at COCO's thresholds, as COCO (stored areas: polygons smaller than their boxes),
    converted to VOC and to shards: the same buckets, by the box area."""
    from dsprep.records import size_buckets

    assert size_buckets(np.array([[0, 0, 31.9, 32], [0, 0, 32, 32], [0, 0, 95.9, 96], [0, 0, 96, 96]])) == \
        {"small": 1, "medium": 2, "large": 1}
    assert main(["synth", "coco", str(tmp_path / "coco"), "--num-images", "30", "--size", "96", "--seed", "2"]) == 0
    buckets = {}
    for fmt in ("coco", "voc", "shards"):
        root = tmp_path / fmt
        if fmt != "coco":
            assert main(["convert", "coco", str(tmp_path / "coco"), "--to", fmt, "--out", str(root), "--quiet"]) == 0
        capsys.readouterr()
        assert main(["info", fmt, str(root), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        buckets[fmt] = {s: v["size_buckets"] for s, v in report["splits"].items()}
    assert buckets["coco"] == buckets["voc"] == buckets["shards"]
    train = buckets["coco"]["train"]
    assert train["small"] and train["medium"]  # two buckets used: the rule is exercised


def test_cityscapes_coarse_annotations_by_flag(tmp_path, capsys):
    """The parser's hint for an unlabelled split says annotations='gtCoarse': in the CLI that
    is --annotations gtCoarse, and the flag reads gtCoarse's objects."""
    from dsprep.commands._common import cli_text
    from fakes_cityscapes import make_cityscapes

    assert cli_text("pass split=... to read one as unlabelled images, or annotations='gtCoarse' for train_extra") == \
        "pass --split to read one as unlabelled images, or --annotations gtCoarse for train_extra"
    cs = make_cityscapes(tmp_path / "cs", splits=("train_extra",), cities=("bochum",), frames=2, annotations="gtCoarse")
    assert main(["info", "cityscapes", str(cs["root"]), "--annotations", "gtCoarse", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == cs["things_per_frame"] * 2
    assert main(["info", "cityscapes", str(cs["root"]), "--annotations", "gtX"]) == 2
    assert "gtFine, gtCoarse" in capsys.readouterr().err


def test_eval_takes_the_cityscapes_instances_flag_beside_its_own_options(tmp_path, capsys):
    """eval detection reads Cityscapes' things itself; --instances given too is one option, not two."""
    from fakes_cityscapes import make_cityscapes

    cs = make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2)
    (tmp_path / "p.json").write_text("[]")
    assert main(["eval", "detection", "cityscapes", str(cs["root"]), str(tmp_path / "p.json"),
                 "--instances", "things", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["ground_truth"] == cs["things_per_frame"] * 2
