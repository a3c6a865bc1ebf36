"""Structure-aware fuzzing of dsprep's parsers, shared by tests/test_fuzz.py (hypothesis,
derandomised, a few hundred inputs per parser) and scripts/fuzz.py (long runs).

A *target* is one parser: a valid seed document (VOC XML, COCO JSON, COCO panoptic
JSON, Cityscapes polygons.json, LVIS JSON, KITTI label rows, an Ultralytics YOLO dataset
YAML written as JSON, YOLO label rows as JSON lists written out as text, a LabelMe JSON,
a CVAT for images 1.1 XML, a shards index.json beside real shards, one sample's JSON member
inside a real shard), how to lay it out
as a dataset tree, and the
formats a parsed dataset is written to. One fuzz input is the seed after a few
mutations drawn from a :class:`Draw`:

- on the structure (a JSON value or an XML element, chosen by walking the tree):
  replace it with an awkward value (NaN, inf, ``1e400``, 2^70, -1, 1e12, a
  string where a number goes, a list or object where a scalar goes, nesting
  thousands deep, invalid UTF-8, a 400-character name, a control character),
  drop it, duplicate it, turn a list into its first element...;
- on the bytes: truncate, flip a byte, insert invalid UTF-8 or garbage.

:func:`run_one` parses the input as ``dsprep info`` does, validates it as
``dsprep validate`` does and, where the parse succeeded, writes the dataset to
its own format and another (``images="none"``) and parses that back. Only
:class:`~dsprep.errors.DsprepError` may escape; anything else is a finding.
"""
from __future__ import annotations

import copy
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from dsprep.errors import DsprepError

__all__ = ["TARGETS", "Draw", "RandomDraw", "HypothesisDraw", "Outcome", "make_input", "run_one"]


# --------------------------------------------------------------------------- drawing

class Draw:
    """Where the choices come from: :class:`RandomDraw` (scripts/fuzz.py) or
    :class:`HypothesisDraw` (tests/test_fuzz.py, which shrinks a failure)."""

    def int(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, percent: int) -> bool:
        return self.int(1, 100) <= percent


class RandomDraw(Draw):
    def __init__(self, rng: Any):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisDraw(Draw):
    def __init__(self, data: Any):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))


class Raw:
    """JSON text (or bytes) put in a document as it is: NaN, 1e400, invalid UTF-8, deep nesting."""

    def __init__(self, text: bytes):
        self.text = text


# Awkward values, JSON side. Raw ones are not JSON that json.dumps would write.
_DEEP = 3000


# Plausible but awkward: what a sloppy tool writes, which a parser may well accept (so the
# writers and the round trip get exercised too).
_AWKWARD = [
    -0.5, 1e-300, 2, 3, 7.0, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -(2 ** 63), 2 ** 63 - 1, "a/b", "../x",
    " cat ", "cat:dog", "\n", "\u00e9", [[1, 2, 3, 4, 5]], [[1, "2", 3, 4, 5, 6]], [[0, 0, 100, 0, 100, 100]],
    [[-10, -10, 5, -10, 5, 5]], [[0, 0, 4, 0, 4, 4], [1, 1]], {"size": [24, 32], "counts": "0"},
    {"counts": [768]}, {"size": [24, 32], "counts": [768]}, {"size": [2, 2], "counts": [1, 2, 1]},
    [-5, -5, 10, 10], [0, 0, 0, 0], [30, 20, 100, 100], [1e300, 0, 1, 1], [0.25, 0.25, 0.5, 0.5],
]


def _wild_json(d: Draw) -> Any:
    if d.chance(50):
        return copy.deepcopy(d.choice(_AWKWARD))
    k = d.int(0, 27)
    return [
        lambda: Raw(b"NaN"), lambda: Raw(b"Infinity"), lambda: Raw(b"1e400"), lambda: Raw(b"-1e400"),
        lambda: 2 ** 70, lambda: -(2 ** 70), lambda: 2 ** 63, lambda: 2 ** 64 - 1, lambda: -1, lambda: 0,
        lambda: 10 ** 12, lambda: 1e300, lambda: 0.5, lambda: "", lambda: "12", lambda: "x" * 400,
        lambda: None, lambda: True, lambda: [], lambda: {}, lambda: [[[[1, 2, 3, 4, 5, 6]]]],
        lambda: Raw(b"[" * _DEEP + b"]" * _DEEP), lambda: Raw(b'"\xff\xfe invalid utf-8"'),
        lambda: "a\u0001b", lambda: Raw(b'"\\udcff"'), lambda: [1, "2", None], lambda: {"size": [2, 2], "counts": "!!"},
        lambda: [[0, 0, 1e9, 0, 5, 5]],
    ][k]()


def _dump_json(doc: Any) -> bytes:
    """JSON text of ``doc`` with every :class:`Raw` spliced in as it is."""
    raws: list[bytes] = []

    def swap(x: Any) -> Any:
        if isinstance(x, Raw):
            raws.append(x.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(x, dict):
            return {str(k): swap(v) for k, v in x.items()}
        if isinstance(x, list):
            return [swap(v) for v in x]
        return x

    text = json.dumps(swap(doc), ensure_ascii=False).encode("utf-8")
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"'.encode(), raw)
    return text


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) to a value in a JSON document, the root included."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):  # a few items per list: enough, and bounded
            out += _paths(v, path + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate_json(doc: Any, d: Draw) -> Any:
    """One structural mutation of a JSON document (a copy)."""
    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    path = d.choice(paths[1:] or paths)
    if not path:
        return _wild_json(d)
    parent, key = _get(doc, path[:-1]), path[-1]
    op = d.int(0, 9)
    if op <= 4:  # replace with an awkward value
        parent[key] = _wild_json(d)
    elif op == 5:  # drop it
        del parent[key]
    elif op == 6:  # duplicate a list item (ids repeat) / a key under another name
        if isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[f"{key}_extra"] = copy.deepcopy(parent[key])
    elif op == 7:  # a container becomes its first item, a scalar a one-item list
        v = parent[key]
        if isinstance(v, list) and v:
            parent[key] = v[0]
        elif isinstance(v, dict) and v:
            parent[key] = next(iter(v.values()))
        else:
            parent[key] = [v]
    elif op == 8:  # a number as a string, a string as a number
        v = parent[key]
        parent[key] = str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 7
    else:  # a new key with an awkward value
        target = _get(doc, path) if isinstance(_get(doc, path), dict) else parent
        if isinstance(target, dict):
            target[d.choice(["id", "width", "segmentation", "bbox", "extra", "iscrowd", "objects"])] = _wild_json(d)
    return doc


def mutate_bytes(data: bytes, d: Draw) -> bytes:
    """One byte-level mutation."""
    if not data:
        return b"\xff"
    op = d.int(0, 4)
    i = d.int(0, len(data) - 1)
    if op == 0:
        return data[:i]  # truncated
    if op == 1:
        return data[:i] + bytes([data[i] ^ (1 << d.int(0, 7))]) + data[i + 1:]
    if op == 2:
        return data[:i] + d.choice([b"\xff", b"\xc3", b"\xed\xb3\xbf", b"\x00", b"]", b"}", b"<", b"&#0;"]) + data[i:]
    if op == 3:
        j = d.int(i, len(data))
        return data[:j] + data[i:j] + data[j:]  # a span twice
    return data + d.choice([b" xyz", b"1", b"{}", b"<a/>", b"\xff"])


# --------------------------------------------------------------------------- text rows (KITTI)

def mutate_rows(data: bytes, d: Draw) -> bytes:
    """One mutation of whitespace-separated rows: a token replaced by an awkward value,
    dropped or doubled, or a line dropped or doubled."""
    lines = data.decode("utf-8").split("\n")
    k = d.int(0, len(lines) - 1)
    tokens = lines[k].split(" ")
    op = d.int(0, 4)
    i = d.int(0, max(0, len(tokens) - 1))
    if op == 0:
        tokens[i] = d.choice(_WILD_TEXT)
    elif op == 1:
        del tokens[i]
    elif op == 2:
        tokens.insert(i, tokens[i] if tokens else "1")
    elif op == 3:
        del lines[k]
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    else:
        lines.insert(k, lines[k])
    lines[k] = " ".join(tokens)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- XML

_WILD_TEXT = ["nan", "inf", "-inf", "1e400", "1e12", "-5", "0", "2.5", "", "abc", "1" * 30, "x" * 400,
              "\u00e9t\u00e9", "1e-400", "+3", "0x10", "  12  ", "18446744073709551616", "33", "100", "0.5",
              "1.0", "2", " dog ", "cat:dog", "a/b", "24.5", "-0.5"]
_TAGS = ["object", "size", "width", "height", "depth", "bndbox", "xmin", "ymin", "xmax", "ymax", "name",
         "difficult", "truncated", "occluded", "iscrowd", "part", "point", "actions", "attributes",
         "attribute", "value", "filename", "segmented", "source", "x",
         "image", "box", "polygon", "polyline", "points", "mask", "tag", "ellipse", "label", "meta", "labels"]
# CVAT attribute values and names: point lists, RLE runs, rotations
_WILD_ATTR = ["1,1;2,2", "1,1;2,2;3", "0,0;1e400,1;2,2", "nan,1;2,2;3,3", "1,1;;2,2;3,3", "1;2;3",
              "-5,-5;1e9,0;3,3", "1, 2, 2, 1", "0, 99999999", "-1, 3", "1,2,3", "", "361", "-90", "1e308"]
_ATTRS = ["label", "xtl", "ytl", "xbr", "ybr", "points", "rle", "left", "top", "width", "height", "rotation",
          "occluded", "z_order", "group_id", "name", "id", "cx", "cy", "rx", "ry", "source", "subset"]


def mutate_xml(root: Any, d: Draw) -> None:
    """One structural mutation of an XML tree (an lxml element; elements and their text), in place."""
    from lxml import etree

    elements = list(root.iter())
    el = d.choice(elements)
    op = d.int(0, 8)
    if op <= 2:
        el.text = d.choice(_WILD_TEXT)
    elif op == 3 and el is not root:
        el.getparent().remove(el)
    elif op == 4 and el is not root:
        el.getparent().append(copy.deepcopy(el))
    elif op == 5:
        child = etree.SubElement(el, d.choice(_TAGS))
        child.text = d.choice(_WILD_TEXT)
    elif op == 6:  # nesting deeper than any reader expects
        cur = el
        for _ in range(d.choice([3, 300, 3000])):
            cur = etree.SubElement(cur, d.choice(_TAGS))
    elif op == 7 and el.attrib:  # an attribute (where CVAT keeps its values): awkward, dropped or added
        key = d.choice(sorted(el.attrib))
        what = d.int(0, 3)
        if what <= 1:
            el.set(key, d.choice(_WILD_TEXT + _WILD_ATTR))
        elif what == 2:
            del el.attrib[key]
        else:
            el.set(d.choice(_ATTRS), d.choice(_WILD_TEXT + _WILD_ATTR))
    else:
        el.tag = d.choice(_TAGS)


# --------------------------------------------------------------------------- targets

VOC_XML = b"""<annotation>
  <folder>VOC2012</folder>
  <filename>2012_000001.jpg</filename>
  <source><database>The VOC2012 Database</database></source>
  <size><width>32</width><height>24</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object>
    <name>dog</name><pose>Left</pose><truncated>0</truncated><occluded>1</occluded><difficult>0</difficult>
    <bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20.5</xmax><ymax>15</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>8</xmax><ymax>9</ymax></bndbox></part>
    <point><x>5</x><y>6</y></point>
    <actions><jumping>1</jumping><other>0</other></actions>
  </object>
  <object>
    <name>person</name><truncated>1</truncated><difficult>1</difficult><iscrowd>0</iscrowd>
    <bndbox><xmin>10</xmin><ymin>1</ymin><xmax>32</xmax><ymax>24</ymax></bndbox>
    <attributes><attribute><name>pose</name><value>standing</value></attribute></attributes>
  </object>
</annotation>
"""


def _coco_doc() -> dict:
    from dsprep.masks import encode_mask

    mask = np.zeros((12, 16), bool)
    mask[1:6, 1:6] = True
    return {
        "info": {"description": "fuzz seed", "year": 2024}, "licenses": [{"id": 1, "name": "L", "url": ""}],
        "images": [{"id": 1, "width": 32, "height": 24, "file_name": "a.jpg", "license": 1},
                   {"id": 2, "width": 16, "height": 12, "file_name": "sub/b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.5, 3.0, 10.0, 8.0], "area": 80.0, "iscrowd": 0,
             "segmentation": [[2.5, 3.0, 12.5, 3.0, 12.5, 11.0, 2.5, 11.0]]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 1,
             "segmentation": {"size": [24, 32], "counts": [0, 4, 20, 4, 20, 4, 20, 4, 692]}},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 20.0, "iscrowd": 1,
             "segmentation": encode_mask(mask), "attributes": {"occluded": True}},
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [4, 4, 3, 2], "area": 6.0, "iscrowd": 0,
             "segmentation": [], "keypoints": [5, 5, 2, 6, 5, 1], "num_keypoints": 2}],
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"},
                       {"id": 3, "name": "dog", "supercategory": "animal", "keypoints": ["a", "b"]}],
    }


def _panoptic_doc() -> dict:
    return {
        "info": {"description": "fuzz seed"}, "licenses": [],
        "images": [{"id": 7, "width": 8, "height": 6, "file_name": "a.jpg"},
                   {"id": 8, "width": 8, "height": 6, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 7, "file_name": "a.png", "segments_info": [
                {"id": 1, "category_id": 1, "area": 12, "bbox": [0, 0, 4, 3], "iscrowd": 0},
                {"id": 460551, "category_id": 2, "area": 12, "bbox": [4, 3, 4, 3], "iscrowd": 1}]},
            {"image_id": 8, "file_name": "b.png", "segments_info": [
                {"id": 5, "category_id": 2, "area": 48, "bbox": [0, 0, 8, 6], "iscrowd": 0}]}],
        "categories": [{"id": 1, "name": "thing", "supercategory": "", "isthing": 1, "color": [1, 2, 3]},
                       {"id": 2, "name": "stuff", "supercategory": "", "isthing": 0}],
    }


def _panoptic_pngs() -> dict[str, bytes]:
    def png(ids: np.ndarray) -> bytes:
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

    a = np.zeros((6, 8), np.int64)
    a[0:3, 0:4] = 1
    a[3:6, 4:8] = 460551
    return {"a.png": png(a), "b.png": png(np.full((6, 8), 5, np.int64))}


def _polygons_doc() -> dict:
    return {"imgHeight": 16, "imgWidth": 32, "objects": [
        {"label": "road", "polygon": [[0, 10], [31, 10], [31, 14], [0, 14]], "deleted": 0},
        {"label": "car", "polygon": [[2, 8], [7, 8], [7, 12], [2, 12]], "deleted": 0, "id": 1},
        {"label": "car", "polygon": [[10, 9], [14, 9], [14, 13]], "deleted": 0},
        {"label": "cargroup", "polygon": [[24, 10], [29, 10], [29, 13], [24, 13]]},
        {"label": "license plate", "polygon": [[3, 11], [5, 11], [5, 12]]},
        {"label": "person", "polygon": [[20, 4], [22, 4], [22, 12], [20, 12]], "deleted": 1}]}


def _lvis_doc() -> dict:
    doc = _coco_doc()
    for k, im in enumerate(doc["images"]):
        im["coco_url"] = "http://images.cocodataset.org/val2017/" + im.pop("file_name").replace("/", "_")
        im["neg_category_ids"], im["not_exhaustive_category_ids"] = ([3], []) if k == 0 else ([], [1])
    for a in doc["annotations"]:
        a.pop("iscrowd"), a.pop("keypoints", None), a.pop("num_keypoints", None)
    for c in doc["categories"]:
        c.update({"synset": f"{c['name']}.n.01", "synonyms": [c["name"]], "def": "an animal", "frequency": "r",
                  "image_count": 1, "instance_count": 2})
        c.pop("keypoints", None)
    return doc


KITTI_ROWS = (b"Car 0.00 0 -1.58 2.50 3.00 12.50 11.00 1.47 1.60 3.69 -3.12 1.72 30.15 -1.67\n"
              b"DontCare -1 -1 -10 0.00 0.00 4.00 3.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
              b"Pedestrian 0.31 3 0.21 20.00 1.00 31.99 23.50 1.72 0.50 0.80 1.23 1.61 12.03 0.30 0.97\n")


def _labelme_doc() -> dict:
    """A LabelMe JSON with every shape type, a group and an embedded mask."""
    import base64

    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 1, 1], [1, 1, 0]], np.uint8) * 255).convert("1").save(buf, format="PNG")
    mask = base64.b64encode(buf.getvalue()).decode()

    def shape(label: str, points: list, kind: str, group_id: Any = None, **more: Any) -> dict:
        return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": kind,
                "flags": {}, "mask": None, **more}

    return {"version": "5.7.0", "flags": {"sunny": True}, "imagePath": "a.png", "imageData": None,
            "imageHeight": 12, "imageWidth": 16, "shapes": [
                shape("cat", [[1, 1], [6.5, 1], [6.5, 5]], "polygon"),
                shape("dog", [[14, 10], [8, 2]], "rectangle"),
                shape("cat", [[0, 8], [3, 8], [3, 11]], "polygon", 7),
                shape("cat", [[10, 0], [15, 0], [15, 1.25]], "polygon", 7),
                shape("ball", [[5, 5], [7, 5]], "circle"),
                shape("rope", [[0, 0], [4, 4]], "line"),
                shape("rope", [[0, 0], [4, 4], [8, 0]], "linestrip"),
                shape("dog", [[5, 5]], "point"),
                shape("blob", [[2, 3], [4, 4]], "mask", mask=mask)]}


def _labelme_tree(root: Path, data: bytes) -> Path:
    root.mkdir(parents=True)
    Image.new("RGB", (16, 12), (90, 120, 30)).save(root / "a.png")
    (root / "a.json").write_bytes(data)
    return root


CVAT_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>fuzz</name><size>2</size><labels>
    <label><name>cat</name><color>#ff0000</color><type>any</type><attributes>
      <attribute><name>pose</name><mutable>False</mutable><input_type>select</input_type>
        <default_value>sit</default_value><values>sit
run</values></attribute></attributes></label>
    <label><name>dog</name><color>#00ff00</color><type>any</type><attributes/></label>
  </labels></task></meta>
  <image id="0" name="a.jpg" width="32" height="24" subset="train">
    <box label="cat" source="manual" occluded="0" xtl="2.5" ytl="3" xbr="20" ybr="15" z_order="0" group_id="1">
      <attribute name="pose">run</attribute></box>
    <polygon label="cat" occluded="1" points="1,1;6.5,1;6.5,5" z_order="1" group_id="1"/>
    <polyline label="dog" occluded="0" points="0,0;4,4;8,0" z_order="0"/>
    <points label="dog" occluded="0" points="5,5;6,7" z_order="0"/>
    <mask label="dog" source="manual" occluded="0" rle="1, 2, 2, 1" left="1" top="1" width="3" height="2" z_order="0"/>
    <box label="dog" occluded="0" xtl="10" ytl="10" xbr="30" ybr="20" rotation="45" z_order="0"/>
    <ellipse label="cat" occluded="0" cx="16" cy="12" rx="4" ry="2" rotation="0" z_order="0"/>
    <tag label="dog" source="manual"/>
  </image>
  <image id="1" name="sub/b.jpg" width="16" height="12" subset="val"/>
</annotations>
"""


def _cvat_tree(root: Path, data: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "annotations.xml").write_bytes(data)
    return root


_SHARDS: dict[str, Any] = {}


def _shards_seed() -> dict[str, Any]:
    """A real shards folder (3 generated VOC images with masks, 2 shards), made once per process:
    ``{"index": the index.json document, "files": {relative path: bytes}}``."""
    if not _SHARDS:
        import tempfile

        from dsprep.conversion import convert
        from dsprep.synth import synth

        with tempfile.TemporaryDirectory(prefix="dsprep-fuzz-shards-") as tmp:
            synth("voc", Path(tmp) / "voc", images=3, seed=5, size=32, progress=False)
            convert("voc", Path(tmp) / "voc", "shards", Path(tmp) / "sh", images="keep", progress=False,
                    write_options={"shard_size": 2 ** 14})
            root = Path(tmp) / "sh"
            _SHARDS["files"] = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.tar")}
            _SHARDS["index"] = json.loads((root / "index.json").read_text())
    return copy.deepcopy(_SHARDS["index"])


def _shards_tree(root: Path, data: bytes) -> Path:
    _shards_seed()
    for rel, content in _SHARDS["files"].items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    (root / "index.json").write_bytes(data)
    return root


def _shards_sample_seed() -> dict[str, Any]:
    """The JSON member of the first sample of :func:`_shards_seed`'s first shard."""
    import tarfile

    _shards_seed()
    first = _SHARDS["index"]["shards"][0]
    with tarfile.open(fileobj=io.BytesIO(_SHARDS["files"][first["path"]])) as tf:
        member = tf.getmembers()[0]
        return json.loads(tf.extractfile(member).read())


def _shards_sample_tree(root: Path, data: bytes) -> Path:
    """The seed shards with the first sample's JSON member replaced by ``data``: the first shard
    rewritten (plain ustar, members in order) and its index entry's offsets, lengths and bytes
    made to match, so that the reader gets as far as the JSON."""
    import tarfile

    _shards_tree(root, _dump_json(_SHARDS["index"]))
    index = copy.deepcopy(_SHARDS["index"])
    entry = index["shards"][0]
    src = io.BytesIO(_SHARDS["files"][entry["path"]])
    out = io.BytesIO()
    with tarfile.open(fileobj=src) as tin, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tout:
        for k, m in enumerate(tin.getmembers()):
            body = data if k == 0 else tin.extractfile(m).read()
            info = tarfile.TarInfo(m.name)
            info.size, info.mtime, info.mode = len(body), m.mtime, m.mode
            tout.addfile(info, io.BytesIO(body))
    blob = out.getvalue()
    spans: dict[str, list[int]] = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        for m in tf.getmembers():
            key = m.name.split(".", 1)[0]
            end = m.offset_data + (m.size + 511) // 512 * 512
            spans.setdefault(key, [m.offset, end])[1] = end
    entry["members"] = [[key, a, b - a] for key, (a, b) in spans.items()]
    entry["bytes"] = len(blob)
    (root / entry["path"]).write_bytes(blob)
    (root / "index.json").write_text(json.dumps(index))
    return root


@dataclass(frozen=True)
class Target:
    """One parser under fuzz."""

    name: str            # scripts/fuzz.py --parser NAME
    fmt: str             # the dsprep format
    seed: Callable[[], Any]
    kind: str            # "json", "xml" or "rows" (KITTI text): which structural mutator
    lay_out: Callable[[Path, bytes], Path]  # writes the input into a tree, returns the root to parse
    options: dict        # parse options (as convert asks for them)
    write_to: tuple[str, ...]


def _lvis_tree(root: Path, data: bytes) -> Path:
    root.mkdir(parents=True)
    path = root / "lvis_v1_val.json"
    path.write_bytes(data)
    return path


def _kitti_tree(root: Path, data: bytes) -> Path:
    (root / "training" / "label_2").mkdir(parents=True)
    (root / "training" / "label_2" / "000000.txt").write_bytes(data)
    (root / "training" / "label_2" / "000001.txt").write_bytes(KITTI_ROWS)
    return root


def _voc_tree(root: Path, data: bytes) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "2012_000001.xml").write_bytes(data)
    return root


def _coco_tree(root: Path, data: bytes) -> Path:
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "instances_val.json"
    path.write_bytes(data)
    return path


def _panoptic_tree(root: Path, data: bytes, pngs: dict[str, bytes] | None = None) -> Path:
    png_dir = root / "annotations" / "panoptic_val"
    png_dir.mkdir(parents=True)
    for name, content in (pngs or _PANOPTIC_PNGS).items():
        (png_dir / name).write_bytes(content)
    (root / "annotations" / "panoptic_val.json").write_bytes(data)
    return root


def _cityscapes_tree(root: Path, data: bytes) -> Path:
    gt = root / "gtFine" / "train" / "bochum"
    gt.mkdir(parents=True)
    (gt / "bochum_000000_000019_gtFine_polygons.json").write_bytes(data)
    return root


def _yolo_yaml_doc() -> dict:
    """An Ultralytics dataset YAML, as JSON (JSON is YAML): the YAML parser and its checks."""
    return {"path": ".", "train": "images/train", "val": ["images/val"], "test": None,
            "names": ["cat", "dog"], "nc": 2, "download": "https://example.com/x.zip"}


def _yolo_labels_doc() -> dict:
    """Label rows, one list per row, written as text by :func:`_yolo_labels_tree`: a.txt detect,
    b.txt polygons."""
    return {"a": [[0, 0.5, 0.5, 0.25, 0.5], [1, 0.25, 0.3, 0.1, 0.2]],
            "b": [[1, 0.1, 0.1, 0.5, 0.1, 0.5, 0.9], [0, 0, 0, 1, 0, 1, 1, 0, 1]]}


def _yolo_images(root: Path) -> None:
    for rel, (w, h) in (("images/train/a.png", (16, 12)), ("images/train/b.png", (20, 10)),
                        ("images/val/c.png", (8, 8))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(root / rel)


def _yolo_yaml_tree(root: Path, data: bytes) -> Path:
    _yolo_images(root)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.25 0.3 0.1 0.2\n")
    (root / "data.yaml").write_bytes(data)
    return root


def _row_text(v: Any) -> str:
    return " ".join(_row_text(x) for x in v) if isinstance(v, list) else str(v)


def _yolo_labels_tree(root: Path, data: bytes) -> Path:
    """The mutated rows as label text (numbers as Python writes them, nan and inf included);
    input that is no longer JSON is written as a.txt's bytes as it is."""
    _yolo_images(root)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        (labels / "a.txt").write_bytes(data)
        return root
    files = doc if isinstance(doc, dict) else {"a": doc}
    for stem, rows in list(files.items())[:2]:
        name = "a" if stem not in ("a", "b") else stem
        rows = rows if isinstance(rows, list) else [rows]
        (labels / f"{name}.txt").write_text("".join(_row_text(r) + "\n" for r in rows), encoding="utf-8",
                                            errors="surrogatepass")
    return root


_PANOPTIC_PNGS = _panoptic_pngs()

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("voc", "voc", lambda: VOC_XML, "xml", _voc_tree, {"segmentation": True}, ("voc", "coco")),
    Target("coco", "coco", _coco_doc, "json", _coco_tree, {}, ("coco", "voc")),
    Target("panoptic", "coco-panoptic", _panoptic_doc, "json", _panoptic_tree, {"masks": True, "verify": "all"},
           ("coco-panoptic", "coco")),
    Target("cityscapes", "cityscapes", _polygons_doc, "json", _cityscapes_tree, {"instances": "things"},
           ("cityscapes", "coco", "voc")),
    Target("lvis", "lvis", _lvis_doc, "json", _lvis_tree, {}, ("lvis", "coco")),
    Target("kitti", "kitti", lambda: KITTI_ROWS, "rows", _kitti_tree, {}, ("kitti", "coco")),
    Target("yolo-yaml", "yolo", _yolo_yaml_doc, "json", _yolo_yaml_tree, {}, ("yolo", "coco")),
    Target("yolo-labels", "yolo", _yolo_labels_doc, "json", _yolo_labels_tree, {}, ("yolo", "coco")),
    Target("labelme", "labelme", _labelme_doc, "json", _labelme_tree, {}, ("labelme", "coco")),
    Target("cvat", "cvat", lambda: CVAT_XML, "xml", _cvat_tree, {}, ("cvat", "coco")),
    Target("shards-index", "shards", _shards_seed, "json", _shards_tree, {}, ("coco", "yolo")),
    Target("shards-sample", "shards", _shards_sample_seed, "json", _shards_sample_tree, {}, ("coco", "yolo")),
)}


_MUTATIONS = (1, 1, 1, 2, 2, 3, 4)  # structural mutations per input: mostly few, so more inputs parse


def make_input(target: Target, d: Draw) -> bytes:
    """The seed after 1..4 structural mutations and, one time in four, a byte-level one."""
    doc = target.seed()
    if target.kind == "rows":
        data = doc
        for _ in range(d.choice(_MUTATIONS)):
            data = mutate_rows(data, d)
    elif target.kind == "xml":
        from lxml import etree

        root = etree.fromstring(doc)
        for _ in range(d.choice(_MUTATIONS)):
            mutate_xml(root, d)
        data = etree.tostring(root)
    else:
        for _ in range(d.choice(_MUTATIONS)):
            doc = mutate_json(doc, d)
        data = _dump_json(doc)
    if d.chance(25):
        data = mutate_bytes(data, d)
    return data


# --------------------------------------------------------------------------- running

@dataclass
class Outcome:
    """What one input did: ``parsed`` (parse succeeded), ``written`` (formats written), ``reread``
    (written and parsed back), ``refused_back`` (written, then refused when parsed back: what
    item 6 of issue 10 forbids; each as ``"format: message"``), ``error`` (a foreign exception)."""

    parsed: bool = False
    written: int = 0
    reread: int = 0
    refused_back: list | None = None
    error: BaseException | None = None
    stage: str = ""


def run_one(target: Target, data: bytes, work: Path) -> Outcome:
    """Parse ``data`` laid out as ``target`` says, validate it, write and re-parse it.

    ``work`` is an empty scratch folder, emptied again before returning.
    """
    from dsprep.formats import get_format
    from dsprep.validate import validate

    out = Outcome()
    fmt = get_format(target.fmt)
    try:
        root = target.lay_out(work / "in", data)
        out.stage = "validate"
        try:
            validate(target.fmt, root, workers=1)
        except DsprepError:
            pass
        out.stage = "parse"
        try:
            ds = fmt.parse(root, workers=1, progress=False, **target.options)
        except DsprepError:
            return out
        out.parsed = True
        out.stage = "stats"
        ds.stats()
        for i, to in enumerate(target.write_to):
            out.stage = f"write {to}"
            dest = work / f"out{i}"
            dest.mkdir()
            try:
                get_format(to).write(ds, dest, images="none", progress=False)
            except DsprepError:
                continue
            out.written += 1
            out.stage = f"re-parse {to}"
            try:
                back = get_format(to).parse(dest, workers=1, progress=False)
                back.stats()
                out.reread += 1
            except DsprepError as err:
                out.refused_back = (out.refused_back or []) + [f"{to}: {err}"]
    except Exception as err:  # a finding: anything but dsprep's own errors
        out.error = err
    finally:
        shutil.rmtree(work / "in", ignore_errors=True)
        for p in work.glob("out*"):
            shutil.rmtree(p, ignore_errors=True)
    return out


def describe(err: BaseException) -> str:
    """``Type: message`` and the innermost frames of ``err``'s traceback, for a report."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(err).__name__}: {str(err)[:300]} [{where}]"
