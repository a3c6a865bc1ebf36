"""Issue 10 item 5: every bad input is a named error (CLI: exit 2, one message naming the file and
place, what was expected and found), never a raw traceback. One case per class the issue lists,
plus the classes found by looking (and fuzzing) further. Each builds the smallest tree that shows
it and runs the CLI as a user would."""
from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsprep.cli import main
from dsprep.errors import InvalidAnnotationError, MalformedFileError

from fakes_cityscapes import make_cityscapes
from fakes_coco import make_coco
from fakes_voc import make_voc


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, *args: str, match: str) -> str:
    """Run the CLI; it must exit 2 with one ``dsprep CMD: error: ...`` line matching ``match``."""
    import re

    code, _, err = _cli(capsys, *args)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err and re.search(match, lines[0]), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- VOC XML numbers and text

@pytest.mark.parametrize("value, match", [
    ("nan", r"2012_000000.xml:5: <width> must be a finite number, found 'nan'"),
    ("inf", r"<width> must be a finite number, found 'inf'"),
    ("1e400", r"<width> must be a finite number, found '1e400'"),
    ("1e12", r"<width> must be 0..2147483647 pixels .*found 1000000000000.0 \(fix: "),
    ("-5", r"<width> must be 0..2147483647 pixels"),
])
def test_voc_size_that_is_no_size(tmp_path, capsys, value, match):
    root = make_voc(tmp_path, n=2)["root"]
    xml = root / "Annotations/2012_000000.xml"
    xml.write_text(xml.read_text().replace("<width>16</width>", f"<width>{value}</width>"))
    _refused(capsys, "info", "voc", root, match=match)
    # the same XML converts to nothing (never into an OUT that dsprep refuses: issue 10 item 6)
    _refused(capsys, "convert", "voc", root, "--to", "coco", "--out", tmp_path / "out", "--images", "none",
             match=match)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("element, value, match", [
    ("<truncated>0</truncated>", "<truncated>18446744073709551616</truncated>", r"<truncated> must be an integer"),
    ("<difficult>0</difficult>", "<difficult>inf</difficult>", r"<difficult> must be an integer"),
    ("<xmin>1</xmin>", "<xmin>1e400</xmin>", r"<xmin> must be a finite number"),
])
def test_voc_object_numbers(tmp_path, capsys, element, value, match):
    root = make_voc(tmp_path, n=1)["root"]
    xml = root / "Annotations/2012_000000.xml"
    xml.write_text(xml.read_text().replace(element, value, 1))
    _refused(capsys, "info", "voc", root, match=match)


def test_voc_invalid_utf8_in_file_names_lists_labelmap_and_xml(tmp_path, capsys):
    root = make_voc(tmp_path, n=2)["root"]
    bad = os.fsencode(root / "Annotations") + b"/2012_\xff.xml"
    shutil.copy(root / "Annotations/2012_000000.xml", bad)
    _refused(capsys, "info", "voc", root, match=r"Annotations/2012_\\udcff.xml: file name b'2012_\\xff' is not "
                                                  r"valid UTF-8; expected a UTF-8 name .*fix: rename it")
    os.unlink(bad)
    lst = root / "ImageSets/Main/train.txt"
    lst.write_bytes(lst.read_bytes() + b"2012_\xe9t\xe9\n")
    _refused(capsys, "info", "voc", root, match=r"ImageSets/Main/train.txt:2: not UTF-8 text: bytes b'\\xe9t\\xe9"
                                                  r".*fix: re-save the file as UTF-8")
    lst.write_text("2012_000000\n")
    (root / "labelmap.txt").write_bytes(b"background:0,0,0::\ncat\xff:1,2,3::\n")
    _refused(capsys, "info", "voc", root, match=r"labelmap.txt:2: not UTF-8 text")
    (root / "labelmap.txt").unlink()
    xml = root / "Annotations/2012_000000.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<filename>2012_000000.jpg", b"<filename>2012_\xff.jpg"))
    _refused(capsys, "info", "voc", root, match=r"2012_000000.xml: holds bytes that are not valid in its encoding")


def test_voc_writes_a_400_character_class_name_and_reads_it_back(tmp_path, capsys):
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    doc = json.loads(path.read_text())
    long_name = "x" * 400
    doc["categories"][0]["name"] = long_name
    path.write_text(json.dumps(doc))
    code, _, err = _cli(capsys, "convert", "coco", coco["root"], "--to", "voc", "--out", tmp_path / "voc",
                        "--images", "none")
    assert code == 0 and "cannot name a file" in err  # no <class>_<split>.txt for it, said so
    import dsprep

    back = dsprep.parse("voc", tmp_path / "voc")
    assert long_name in back.class_names() and back.num_objects() == coco["objects"]["val2017"]


@pytest.mark.parametrize("name, match", [("a\u0001b", "cannot be written as VOC XML"),
                                         (" cat ", "without them"), ("", "without them")])
def test_voc_refuses_a_class_name_it_cannot_write_back(tmp_path, capsys, name, match):
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    doc = json.loads(path.read_text())
    for c in doc["categories"]:
        c["name"] = name if c["id"] == 1 else c["name"]
    path.write_text(json.dumps(doc))
    _refused(capsys, "convert", "coco", coco["root"], "--to", "voc", "--out", tmp_path / "voc", "--images", "none",
             match=match)
    assert not (tmp_path / "voc").exists()


# --------------------------------------------------------------------------- COCO JSON

def _coco_json(tmp_path: Path, mutate) -> tuple[Path, Path]:
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    doc = json.loads(path.read_text())
    text = mutate(doc)
    path.write_bytes(text if isinstance(text, bytes) else json.dumps(doc).encode())
    return coco["root"], path


BIG = 2 ** 70


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["annotations"][0].__setitem__("id", BIG), r"annotation id 1180591620717411303424: invalid "
                                                           r"annotation: Expected `int` <= 9223372036854775807"),
    (lambda d: d["images"][1].__setitem__("id", BIG), r"images\[1\]: expected an int image 'id' \(64-bit\)"),
    (lambda d: d["images"][0].__setitem__("width", BIG), r"image id 100: expected int 'width' and 'height' in "
                                                         r"0..2147483647"),
    (lambda d: d["categories"][0].__setitem__("id", BIG), r"categories\[0\]: expected an int 'id' \(64-bit\)"),
    (lambda d: d["annotations"][1].__setitem__("category_id", -BIG), r"Expected `int` >= -9223372036854775808"),
])
def test_coco_integers_beyond_64_bits_in_ids_and_sizes(tmp_path, capsys, mutate, match):
    root, _ = _coco_json(tmp_path, mutate)
    _refused(capsys, "info", "coco", root, match=match)


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["images"][0].__setitem__("license", BIG), "images[0].license"),
    (lambda d: d["info"].__setitem__("year", -BIG), "info.year"),
    (lambda d: d["annotations"][0].__setitem__("score", [1, {"x": BIG}]), "annotations[0].score[1].x"),
    (lambda d: d["categories"][0].__setitem__("code", BIG), "categories[0].code"),
])
def test_coco_passthrough_integers_beyond_64_bits(tmp_path, capsys, mutate, path):
    """They parse (pycocotools reads them too); the COCO writer names the value instead of crashing,
    and validate reports it before any convert is tried."""
    root, _ = _coco_json(tmp_path, mutate)
    assert _cli(capsys, "info", "coco", root)[0] == 0
    line = _refused(capsys, "convert", "coco", root, "--to", "coco", "--out", tmp_path / "out", "--images", "none",
                    match=r"does not fit in 64 bits.*fix: correct the value, or write it as a string")
    assert path in line
    code, out, _ = _cli(capsys, "validate", "coco", root, "--json")
    items = [p for p in json.loads(out)["items"] if p["kind"] == "unwritable_value"]
    assert code == 1 and len(items) == 1 and "does not fit in 64 bits" in items[0]["message"]


@pytest.mark.parametrize("text, match", [
    (lambda t: t.replace(b'"dsprep fake"', b'"dsprep \xff fake"'), r"'info': invalid JSON at line 1, column "
                                                                   r"\d+: Invalid UTF-8"),
    (lambda t: t.replace(b"000000000101.jpg", b"0000000\xff0101.jpg", 1), r"invalid JSON at line 1, column \d+: "
                                                                         r"Invalid UTF-8"),
    (lambda t: b"1 xyz", r"invalid JSON at line 1, column \d+: JSON is malformed: trailing characters"),
    (lambda t: b'"a" xyz', r"invalid JSON at line 1, column \d+: JSON is malformed: trailing characters"),
    (lambda t: t + b" xyz", r"invalid JSON at line 1, column \d+: JSON is malformed: trailing characters"),
    (lambda t: t.replace(b'"segmentation": [[', b'"segmentation": ' + b"[" * 5000 + b"[[", 1).replace(
        b"]]", b"]]" + b"]" * 5000, 1), r"invalid JSON: nested deeper than Python's recursion limit"),
    (lambda t: t.replace(b'"year": 2017', b'"year": 1e400'), r"'info': invalid JSON: Number out of range"),
])
def test_coco_json_text(tmp_path, capsys, text, match):
    coco = make_coco(tmp_path, splits=("val2017",))
    path = coco["json"]["val2017"]
    path.write_bytes(text(path.read_bytes()))
    _refused(capsys, "info", "coco", coco["root"], match=match)


@pytest.mark.parametrize("counts, match", [
    ("!!!!", r"RLE counts string is not COCO's compressed form: character b'!' at 0"),
    ("0Y", r"the last count is cut off"),
    ("9", r"RLE counts sum to 9, but size \[\d+, \d+\] has \d+ pixels"),
    ([-5, 10 ** 6], r"RLE counts must be ints >= 0"),
])
def test_coco_invalid_rle_counts_are_refused_at_parse(tmp_path, capsys, counts, match):
    """info and validate said clean and convert crashed (pycocotools writes past the mask buffer
    when counts run past it): now all three name the annotation."""
    def mutate(d):
        crowd = next(a for a in d["annotations"] if a["iscrowd"])
        crowd["segmentation"]["counts"] = counts

    root, _ = _coco_json(tmp_path, mutate)
    assert "annotation id 3: " in _refused(capsys, "info", "coco", root, match=match)  # the first crowd one
    _refused(capsys, "convert", "coco", root, "--to", "voc", "--out", tmp_path / "out", "--images", "none",
             match=match)
    code, out, _ = _cli(capsys, "validate", "coco", root, "--json")
    assert code == 1 and any(re_search(match, p["message"]) for p in json.loads(out)["items"])


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_coco_rle_mask_past_the_pixel_limit(tmp_path, capsys):
    def mutate(d):
        d["images"][0]["width"] = d["images"][0]["height"] = 0  # unknown size: the RLE's own is drawn
        d["annotations"].append({"id": 99, "image_id": d["images"][0]["id"], "category_id": 1, "iscrowd": 1,
                                 "bbox": [0, 0, 1, 1], "area": 1,
                                 "segmentation": {"size": [10 ** 6, 10 ** 6], "counts": [10 ** 12]}})

    root, _ = _coco_json(tmp_path, mutate)
    _refused(capsys, "info", "coco", root, match=r"annotation id 99: RLE mask 1000000x1000000 of "
                                                  r"1,000,000,000,000 pixels is past Pillow's decompression-bomb limit")


# --------------------------------------------------------------------------- Cityscapes

def test_cityscapes_8bit_instance_ids(fixtures, tmp_path, capsys):
    """validate overflowed (uint8 >= 1000) and convert kept a made-up crowd object per class value;
    now validate reports the file and convert names it."""
    root = fixtures / "datumaro/tests/assets/cityscapes_dataset/dataset"
    code, out, err = _cli(capsys, "validate", "cityscapes", root, "--json")
    assert code == 1 and "Traceback" not in err
    found = {p["where"].rpartition("/")[2]: p["message"] for p in json.loads(out)["items"]
             if p["kind"] == "instance_ids_8bit"}
    # the frames whose 8-bit map holds a class with instances (val holds only 1 and 3)
    assert sorted(found) == ["defaultcity_000001_000031_leftImg8bit", "defaultcity_000001_000032_leftImg8bit",
                             "defaultcity_000002_000045_leftImg8bit"]
    assert "values [24]" in found["defaultcity_000002_000045_leftImg8bit"]
    assert "values [27]" in found["defaultcity_000001_000031_leftImg8bit"]
    _refused(capsys, "convert", "cityscapes", root, "--to", "coco", "--out", tmp_path / "out",
             match=r"defaultcity_000002_000045_gtFine_instanceIds.png: 8-bit instanceIds PNG holding values \[24\] "
                   r"of classes with instances; expected a 16-bit PNG of id \* 1000 \+ k.*fix: regenerate it")


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["objects"].__setitem__(0, 5), r"object 0: expected a JSON object with 'label' and 'polygon', "
                                               r"found 5"),
    (lambda d: d["objects"].__setitem__(1, ["car"]), r"object 1: expected a JSON object"),
    (lambda d: d.__setitem__("objects", "abc"), r"'objects' must be a list of objects, found str"),
    (lambda d: d["objects"][0].__setitem__("label", ["road"]), r"object 0: 'label' must be a Cityscapes label name"),
    (lambda d: d.update(imgWidth=200000, imgHeight=200000), r"canvas \(imgWidth x imgHeight\) 200000x200000 of "
                                                            r"40,000,000,000 pixels is past Pillow's decompression-"
                                                            r"bomb limit of [\d,]+; expected at most that many"),
    (lambda d: d.update(imgWidth=0), r"imgWidth and imgHeight must be at least 1, found 0 x 16"),
    (lambda d: d.update(imgHeight="16"), r"imgHeight must be a number of pixels, found '16'"),
    (lambda d: d["objects"][1].__setitem__("polygon", [[0, 0], [1e300, 0], [5, 5]]), r"polygon must be a list of "
                                                                                    r"\[x, y\] points"),
])
def test_cityscapes_polygons_json(tmp_path, capsys, mutate, match):
    make_cityscapes(tmp_path / "cs", cities=("bochum",), splits=("train",), frames=1, pngs=False)
    path = next((tmp_path / "cs/gtFine").rglob("*_polygons.json"))
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    _refused(capsys, "convert", "cityscapes", tmp_path / "cs", "--to", "coco", "--out", tmp_path / "out",
             match=match)
    code, out, err = _cli(capsys, "validate", "cityscapes", tmp_path / "cs", "--json")
    assert code == 1 and "Traceback" not in err and json.loads(out)["counts"].get("parse") == 1


# --------------------------------------------------------------------------- images, files, links

def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header says ``w x h``: Pillow reads the size without decoding anything."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _imagenet(tmp_path: Path) -> Path:
    root = tmp_path / "inet"
    for cls in ("cls_a", "cls_b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / cls / f"{cls}.jpg")
    return root


def test_png_header_past_the_decompression_bomb_limit(tmp_path, capsys):
    root = _imagenet(tmp_path)
    (root / "cls_a" / "big.png").write_bytes(_png_header(100_000, 100_000))
    code, out, err = _cli(capsys, "validate", "imagenet", root, "--json")
    found = [p for p in json.loads(out)["items"] if p["kind"] == "image_too_large"]
    assert code == 1 and len(found) == 1 and "big.png" in found[0]["message"] and "Traceback" not in err
    _refused(capsys, "convert", "imagenet", root, "--to", "coco", "--out", tmp_path / "out",
             match=r"big.png: image file \(header\) is past Pillow's decompression-bomb limit of [\d,]+ pixels.*"
                   r"fix: if the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS")


def test_symlink_loop_as_an_imagenet_class_folder(tmp_path, capsys):
    root = _imagenet(tmp_path)
    os.symlink("cls_loop", root / "cls_loop")
    _refused(capsys, "info", "imagenet", root, match=r"cls_loop: cannot tell what it is \(Too many levels of "
                                                     r"symbolic links\).*fix: remove or repair the symbolic link")
    code, out, err = _cli(capsys, "validate", "imagenet", root, "--json")
    assert code == 1 and json.loads(out)["images"] == 2 and "Traceback" not in err


@pytest.mark.parametrize("where", ["cls_a/\udcff.jpg", "cls_\udcff/b.jpg"])
def test_imagenet_file_names_that_are_not_utf8(tmp_path, capsys, where):
    root = _imagenet(tmp_path)
    bad = root / where
    bad.parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(os.fsencode(bad), format="JPEG")
    _refused(capsys, "info", "imagenet", root, match=r"is not valid UTF-8; expected a UTF-8 name .*fix: rename it")
    code, out, _ = _cli(capsys, "convert", "imagenet", root, "--to", "coco", "--out", tmp_path / "out",
                        "--on-error", "warn")
    assert code == 0 and "converted imagenet -> coco: 2 images" in out


def test_loc_xml_size_that_is_no_size(tmp_path):
    from dsprep.formats import imagenet

    root = _imagenet(tmp_path)
    ann = root / "Annotations"
    ann.mkdir()
    (ann / "cls_a.xml").write_text("<annotation><size><width>nan</width><height>8</height></size></annotation>")
    with pytest.raises(InvalidAnnotationError, match=r"cls_a.xml: <width> expected a finite number, found 'nan'"):
        imagenet.parse(root, workers=1)


# --------------------------------------------------------------------------- panoptic

def _panoptic(fixtures, tmp_path: Path, mutate) -> Path:
    root = tmp_path / "pan"
    shutil.copytree(fixtures / "panopticapi" / "sample_data", root)
    path = root / "panoptic_examples.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["images"].__setitem__(0, "x.jpg"), r"images\[0\]: expected an object with an int or string 'id'"),
    (lambda d: d["images"][1].__setitem__("id", d["images"][0]["id"]), r"images\[1\]: image id \d+ repeats"),
    (lambda d: d["annotations"][0].__setitem__("image_id", [1]), r"annotations\[0\]: expected an object with an "
                                                                 r"int or string 'image_id'"),
    (lambda d: d["categories"].__setitem__(0, 3), r"categories\[0\]: expected an int 'id' \(64-bit\)"),
    (lambda d: d["annotations"][0]["segments_info"][0].__setitem__("bbox", [0, 0, 4, -1]),
     r"segments_info\[0\]: bbox must be \[x, y, width, height\], finite with width, height >= 0"),
    (lambda d: d["images"][0].__setitem__("width", 10 ** 12), r"width must be 0..2147483647 pixels"),
])
def test_panoptic_json_structure(fixtures, tmp_path, capsys, mutate, match):
    path = _panoptic(fixtures, tmp_path, mutate)
    _refused(capsys, "info", "coco-panoptic", path, match=match)


def test_panoptic_png_of_the_wrong_size(fixtures, tmp_path, capsys):
    """It converted to COCO with exit 0 into an OUT whose RLEs do not fit their images; now
    parse names the PNG (and validate reports it as mask_size_mismatch)."""
    path = _panoptic(fixtures, tmp_path, lambda d: None)
    png = sorted((path.parent / "panoptic_examples").glob("*.png"))[0]
    with Image.open(png) as im:
        im.crop((0, 0, im.width - 3, im.height)).save(png)
    _refused(capsys, "convert", "coco-panoptic", path, "--to", "coco", "--out", tmp_path / "out", "--images", "none",
             match=r"000000142238.png: the PNG is 637x427, its image is 640x427 \(width x height\); expected the "
                   r"same size.*fix: regenerate the PNG")
    assert not (tmp_path / "out").exists()
    code, out, _ = _cli(capsys, "validate", "coco-panoptic", path, "--deep", "--json")
    assert code == 1 and json.loads(out)["counts"].get("mask_size_mismatch") == 1


# --------------------------------------------------------------------------- masks and the loader

def test_masks_past_the_pixel_limit_are_named(tmp_path):
    from dsprep.masks import read_label_png

    (tmp_path / "m.png").write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(MalformedFileError, match=r"m.png: label PNG is past Pillow's decompression-bomb limit") as info:
        read_label_png(tmp_path / "m.png")
    assert info.value.kind == "image_too_large"
