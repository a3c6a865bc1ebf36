"""Issue 13, the CLI as a new user meets it: messages name flags (not Python options), one
meaning per flag name, COCO split names in dsprep.load, a loose COCO JSON's --image-dir,
--on-error warn for missing images, and FORMAT detected when left out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import dsprep
from dsprep.cli import main
from dsprep.commands._common import cli_text
from dsprep.formats import detect_format, detect_formats

from fakes_coco import make_coco
from fakes_voc import make_voc

TINYCOCO = "super-gradients/tests/data/tinycoco"
DATUMARO_COCO = "datumaro/tests/assets/coco_dataset"


def _voc_without_size(tmp_path: Path) -> Path:
    """A VOC tree whose first XML has no <size> and whose image is missing."""
    root = make_voc(tmp_path, n=3)["root"]
    xml = root / "Annotations" / "2012_000000.xml"
    text = xml.read_text()
    start, end = text.index("<size>"), text.index("</size>") + len("</size>")
    xml.write_text(text[:start] + text[end:])
    (root / "JPEGImages" / "2012_000000.jpg").unlink()
    return root


# ----------------------------------------------------------------------------- messages speak CLI

def test_a_message_suggesting_a_python_option_names_the_flag(tmp_path, capsys):
    root = _voc_without_size(tmp_path)
    assert main(["info", "voc", str(root)]) == 2
    err = capsys.readouterr().err
    assert "2012_000000.xml: no <size>" in err and "(pass --missing-size zero to accept an unknown size)" in err
    assert "missing_size" not in err
    with pytest.raises(dsprep.InvalidAnnotationError, match=r"pass missing_size='zero'"):  # Python speaks Python
        dsprep.parse("voc", root)
    # the flag exists and does what the message says
    assert main(["info", "voc", str(root), "--missing-size", "zero", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3
    _, report = main(["validate", "voc", str(root), "--json"]), json.loads(capsys.readouterr().out)
    assert all("missing_size=" not in p["message"] for p in report["items"])
    assert "--missing-size zero" in next(p["message"] for p in report["items"] if p["kind"] == "parse")


def test_a_format_flag_for_another_format_is_refused(tmp_path, capsys):
    root = make_voc(tmp_path, n=2)["root"]
    assert main(["info", "voc", str(root), "--image-dir", str(root)]) == 2
    assert "--image-dir applies to coco sources; found format voc" in capsys.readouterr().err


def test_path_escape_hint_names_the_flag_once(tmp_path, capsys):
    root = tmp_path / "coco"
    Image.new("RGB", (8, 6)).save((root / "train").mkdir(parents=True) or root / "train" / "a.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "../../x.jpg", "width": 8, "height": 6}], "annotations": [],
        "categories": [{"id": 1, "name": "thing"}]}))
    assert main(["info", "coco", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("--allow-outside-root") == 1 and "allow_outside_root" not in err and "in Python" not in err


@pytest.mark.parametrize("python, cli", [
    ("(pass root=, or set $DSPREP_DATA to the folder holding coco/)",
     "(pass --data-root, or set $DSPREP_DATA to the folder holding coco/)"),
    ("split 'x' has no samples; cannot tell the task: pass task=", "split 'x' has no samples; cannot tell the "
                                                                    "task: pass --task"),
    ("(use --images none, images='none' in Python, to write annotations only)",
     "(use --images none to write annotations only)"),
    ("none found in ImageNet/; pass mapping=", "none found in ImageNet/; pass --mapping"),
    ("box xmin,ymin,xmax,ymax=1,2,3,4 lies outside", "box xmin,ymin,xmax,ymax=1,2,3,4 lies outside"),  # no option
])
def test_cli_text(python, cli):
    assert cli_text(python) == cli


def test_a_missing_known_dataset_names_the_data_root_flag(tmp_path, monkeypatch, capsys):
    """dsprep.load says root=; train --dataset, which calls it, says --data-root."""
    monkeypatch.setenv("DSPREP_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["train", "--dataset", "coco", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "(pass --data-root, or set $DSPREP_DATA to the folder holding coco/)" in err and "root=" not in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- one meaning per flag

def test_synth_count_is_num_images_and_the_old_flag_says_so(tmp_path, capsys):
    assert main(["synth", "voc", str(tmp_path / "a"), "--num-images", "5", "--size", "32"]) == 0
    assert len(list((tmp_path / "a" / "JPEGImages").iterdir())) == 5
    assert main(["synth", "voc", str(tmp_path / "b"), "--images", "5", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "synth's image count is --num-images (--num-images 5)" in err and "link, copy, none" in err
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- sources

def test_load_accepts_cocos_own_split_names(fixtures):
    ds = dsprep.load("coco", root=fixtures / TINYCOCO, split="val2017")
    assert list(ds.splits) == ["val2017"] and len(ds) == len(dsprep.load("coco", root=fixtures / TINYCOCO,
                                                                        split="val"))


def test_a_loose_coco_json_takes_image_dir(tmp_path, capsys):
    coco = make_coco(tmp_path, splits=("val2017",))
    loose = tmp_path / "loose" / "ann.json"
    loose.parent.mkdir()
    loose.write_bytes(coco["json"]["val2017"].read_bytes())
    n = coco["images"]["val2017"]
    code = main(["validate", "coco", str(loose), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["counts"].get("missing_image") == n
    code = main(["validate", "coco", str(loose), "--image-dir", str(coco["root"] / "val2017"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and "missing_image" not in report["counts"] and report["images"] == n
    out = tmp_path / "voc"
    assert main(["convert", "coco", str(loose), "--image-dir", str(coco["root"] / "val2017"), "--to", "voc",
                 "--out", str(out), "--images", "copy", "--quiet"]) == 0
    assert len(list((out / "JPEGImages").iterdir())) == n


def test_on_error_warn_skips_records_whose_image_is_missing(tmp_path, capsys):
    coco = make_coco(tmp_path, splits=("val2017",))
    first = sorted((coco["root"] / "val2017").iterdir())[0]
    first.unlink()
    out = tmp_path / "voc"
    argv = ["convert", "coco", str(coco["root"]), "--to", "voc", "--out", str(out), "--quiet"]
    assert main(argv) == 2 and "not found" in capsys.readouterr().err
    assert main([*argv, "--on-error", "warn", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    n = coco["images"]["val2017"]
    assert summary["images"] == n - 1 and summary["missing_images"] == 1 and summary["skipped"] == 1
    assert "skipped 1 records whose image file is missing" in captured.err and first.name in captured.err
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == sorted(
        p.name for p in (coco["root"] / "val2017").iterdir())
    assert len(dsprep.parse("voc", out)) == n - 1


def test_split_on_error_warn_skips_records_whose_image_is_missing(tmp_path, capsys):
    root = make_voc(tmp_path / "src", n=6)["root"]
    (root / "JPEGImages" / "2012_000002.jpg").unlink()
    out = tmp_path / "split"
    argv = ["split", "voc", str(root), "--ratios", "train=0.5,val=0.5", "--seed", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 2 and "2012_000002.jpg" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--on-error", "warn", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["images"] == 5 and summary["missing_images"] == 1
    assert "skipped 1 records whose image file is missing" in captured.err and "2012_000002" in captured.err
    ds = dsprep.parse("voc", out)
    assert len(ds) == 5 and "JPEGImages/2012_000002" not in {r.id for r in ds.records}
    assert "JPEGImages/2012_000001" in {r.id for r in ds.records}


# ----------------------------------------------------------------------------- format detection

def test_info_validate_and_convert_detect_the_format(tmp_path, capsys):
    root = make_voc(tmp_path, n=3)["root"]
    assert main(["info", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["format"] == "voc" and "detected format voc" in captured.err
    assert main(["validate", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "voc"
    out = tmp_path / "coco"
    assert main(["convert", str(root), "--to", "coco", "--out", str(out), "--images", "none", "--quiet"]) == 0
    assert "converted voc -> coco: 3 images" in capsys.readouterr().out
    assert len(dsprep.parse("coco", out)) == 3


def test_show_and_train_detect_the_format_and_train_dataset_still_needs_none(tmp_path, capsys):
    root = make_voc(tmp_path, n=3)["root"]
    grid = tmp_path / "grid.png"
    assert main(["show", str(root), "--out", str(grid), "-n", "2"]) == 0
    assert "detected format voc" in capsys.readouterr().err and grid.stat().st_size > 0
    (tmp_path / "notes").mkdir()
    assert main(["train", str(tmp_path / "notes"), "--out", str(tmp_path / "t")]) == 2
    assert "no format recognises this path" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "t2")]) == 2  # neither ROOT nor --dataset: named, no traceback
    assert "give FORMAT ROOT, or --dataset NAME" in capsys.readouterr().err


def test_an_ambiguous_tree_names_the_candidates(fixtures, capsys):
    """datumaro's coco/ holds instances_*.json and panoptic_*.json: COCO or COCO panoptic."""
    root = fixtures / DATUMARO_COCO / "coco"
    assert detect_formats(root) == ["coco", "coco-panoptic"]
    with pytest.raises(dsprep.UnknownNameError, match=r"more than one format \(coco, coco-panoptic\)"):
        detect_format(root)
    assert main(["info", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"{root} looks like more than one format: coco, coco-panoptic; name the one to read, e.g. " \
           f"dsprep info coco {root}" in err
    assert main(["info", "coco-panoptic", str(root), "--json"]) == 0  # named: read as asked


def test_an_unknown_tree_says_so_and_how_to_name_the_format(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert detect_formats(tmp_path) == []
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no format recognises this path (tried {', '.join(dsprep.FORMATS)})" in err  # every format, named
    assert f"name the format: dsprep validate FORMAT {tmp_path}" in err
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_a_generic_image_folder_format_yields_to_a_specific_one(fixtures):
    """Roboflow's COCO export (train/ with _annotations.coco.json beside the images) is also a
    folder of image folders: ImageNet's detect matches it, but COCO recognises it."""
    root = fixtures / DATUMARO_COCO / "coco_roboflow"
    assert dsprep.FORMATS["imagenet"].detect(root) and dsprep.FORMATS["coco"].detect(root)
    assert detect_formats(root) == ["coco"]
    imagenette = fixtures / "imagenette"
    assert detect_formats(imagenette) == ["imagenet"]  # alone, the generic format is the candidate


def test_a_python_only_option_is_said_as_the_cli_command_that_does_it(tmp_path, capsys):
    from fakes_imagenet import make_tree

    make_tree(tmp_path, splits=(None,))
    assert main(["info", "imagenet", str(tmp_path), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "no split folders" in err and "so --split train cannot be chosen" in err
    assert "make splits with dsprep split (--ratios train=0.8,val=0.2 --seed S --out OUT)" in err and "=" not in \
        err.split("dsprep split")[0].split("chosen")[1]


def test_imagenet_class_table_by_flag(fixtures, tmp_path, capsys):
    """A flat val with ILSVRC2012_IDs and no table beside it: the error names --mapping, and
    --mapping reads the labels through the table given."""
    import shutil

    from fakes_imagenet import make_flat_val

    formatter = fixtures / "Imagenet-1K-Formatter"
    make_flat_val(tmp_path / "val", ["x"] * 3)
    shutil.copy(formatter / "ILSVRC2012_validation_ground_truth.txt", tmp_path)
    assert main(["info", "imagenet", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "need a table (meta.mat or map_clsloc.txt)" in err and err.rstrip().endswith("pass --mapping")
    assert main(["info", "imagenet", str(tmp_path), "--mapping", str(formatter / "map_clsloc.txt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and sum(report["splits"]["val"]["images_per_label"].values()) == 3


def test_the_demo_script_uses_the_flags_as_they_are_now():
    """Every dsprep command in scripts/demo.sh parses, and synth's count is --num-images (the
    old --images N parses but is refused when run)."""
    import shlex

    from dsprep.cli import build_parser

    text = (Path(__file__).parent.parent / "scripts" / "demo.sh").read_text().replace("\\\n", " ")
    commands = [shlex.split(line.split("$D ", 1)[1].split("#")[0].split("||")[0].split("&&")[0])
                for line in text.splitlines() if line.lstrip().startswith("$D ")]
    assert any(c[0] == "synth" for c in commands)
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        if argv[0] == "synth":
            assert args.old_images is None, f"demo.sh: synth {' '.join(argv[1:])}: the count is --num-images"
