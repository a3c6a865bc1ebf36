"""Issue 11: the one trusted record constructor (``Record._trusted``, ``Instances._trusted``).

Parsers build records without ``__init__`` for speed. Two things could go wrong, and these
tests catch both: a field added to ``Record``/``Instances`` missing from the records a parser
builds (the constructor is generated from the dataclass fields, so it cannot), and a parser
storing a value in another form than the checking constructors would (a float32 box, an
int32 label, a tuple for a list): every parser's records are checked against them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dsprep.formats import get_format
from dsprep.records import Instances, Record, _trusted_constructor

from fakes_cityscapes import make_cityscapes
from fakes_coco import make_coco
from fakes_imagenet import make_kaggle
from fakes_kitti import make_kitti
from fakes_lvis import make_lvis
from fakes_voc import make_voc

RECORD_FIELDS = [f.name for f in dataclasses.fields(Record)]
INSTANCE_FIELDS = [f.name for f in dataclasses.fields(Instances)]


def _arrays(n: int = 2) -> dict:
    return {"boxes": np.arange(4 * n, dtype=np.float64).reshape(n, 4), "labels": np.arange(n, dtype=np.int64),
            "iscrowd": np.zeros(n, bool), "difficult": np.ones(n, bool), "ids": np.arange(n, dtype=np.int64) + 5,
            "area": np.full(n, 3.5)}


def test_trusted_record_has_every_field_with_its_default():
    rec = Record._trusted(id="a", path="a.jpg", split="train")
    assert set(vars(rec)) == set(RECORD_FIELDS)
    assert rec == Record("a", "a.jpg", split="train")
    other = Record._trusted(id="b", path="b.jpg")
    assert rec.captions is not other.captions and rec.extra is not other.extra  # fresh default_factory values
    assert rec.instances is not other.instances and len(rec.instances) == 0


def test_trusted_instances_stores_what_it_is_given():
    values = _arrays()
    inst = Instances._trusted(**values, extra=[{"pose": "Left"}, {}])
    assert set(vars(inst)) == set(INSTANCE_FIELDS)
    assert all(getattr(inst, k) is v for k, v in values.items())  # no copy, no conversion
    assert inst == Instances(**values, extra=[{"pose": "Left"}, {}])
    assert inst.segmentation is None and inst.keypoints is None


@pytest.mark.parametrize("left_out", Instances._ARRAY_FIELDS)
def test_trusted_instances_refuses_a_missing_array(left_out):
    values = _arrays()
    del values[left_out]
    with pytest.raises(TypeError, match=left_out):
        Instances._trusted(**values)


def test_trusted_constructors_refuse_an_unknown_name():
    with pytest.raises(TypeError, match="mask"):
        Record._trusted(id="a", path="a.jpg", mask="m.png")
    with pytest.raises(TypeError, match="required"):
        Record._trusted(id="a")  # no path
    with pytest.raises(TypeError, match="nope"):
        _trusted_constructor(Record, required=("nope",))


def test_a_field_added_to_the_class_is_in_what_the_constructor_builds():
    @dataclasses.dataclass(eq=False)
    class Grown(Record):
        weather: str = "sunny"
        tags: list = dataclasses.field(default_factory=list)
        camera: int = dataclasses.field(default=0)

    make = _trusted_constructor(Grown)
    a, b = make(id="a", path="a.jpg", weather="rain"), make(id="b", path="b.jpg")
    assert (type(a), a.weather, b.weather, a.tags, b.camera) == (Grown, "rain", "sunny", [], 0)
    assert a.tags is not b.tags
    assert set(vars(b)) == set(RECORD_FIELDS) | {"weather", "tags", "camera"}
    with pytest.raises(TypeError, match="camera"):
        _trusted_constructor(Grown, required=("camera",))(id="c", path="c.jpg")


# ------------------------------------------------------------------ every parser's records

def _in_stored_form(rec: Record, where: str) -> None:
    """``rec`` holds every field, each in the form Record/Instances' checking constructors give it."""
    values = {name: getattr(rec, name) for name in RECORD_FIELDS}  # AttributeError: a field went missing
    if type(rec) is Record:
        assert set(vars(rec)) == set(RECORD_FIELDS), where
    assert Record(**values) == rec, where
    assert isinstance(rec.captions, list) and isinstance(rec.extra, dict), where
    assert isinstance(rec.id, str) and isinstance(rec.path, str), where
    assert type(rec.width) is int and type(rec.height) is int, where
    inst = rec.instances
    ivalues = {name: getattr(inst, name) for name in INSTANCE_FIELDS}
    checked = Instances(**ivalues)
    for name in INSTANCE_FIELDS:
        mine, theirs = ivalues[name], getattr(checked, name)
        if isinstance(theirs, np.ndarray):
            assert type(mine) is np.ndarray and (mine.dtype, mine.shape) == (theirs.dtype, theirs.shape), \
                f"{where}: Instances.{name} is {getattr(mine, 'dtype', type(mine))} {getattr(mine, 'shape', '')}"
        else:
            assert mine is None or type(mine) is list, f"{where}: Instances.{name} is {type(mine).__name__}"
    assert checked == inst, where


def _parsed(kind: str, tmp_path, fixtures) -> list:
    if kind == "coco":
        make_coco(tmp_path, extra_keys=True)
        return [get_format("coco").parse(tmp_path / "coco", workers=1)]
    if kind == "coco-keypoints-captions":
        out = []
        for task in ("person_keypoints", "captions"):
            make_coco(tmp_path / task, task=task)
            out.append(get_format("coco").parse(tmp_path / task / "coco", workers=1))
        return out
    if kind == "voc":
        make_voc(tmp_path, n=4, masks=True)
        return [get_format("voc").parse(tmp_path / "VOC2012", workers=1, masks=True)]
    if kind == "imagenet":
        make_kaggle(tmp_path)
        return [get_format("imagenet").parse(tmp_path, workers=1)]
    if kind == "cityscapes":
        make_cityscapes(tmp_path / "png")
        make_cityscapes(tmp_path / "poly", pngs=False)  # objects drawn from polygons.json
        return [get_format("cityscapes").parse(tmp_path / "png", instances="panoptic", masks=True, workers=1),
                get_format("cityscapes").parse(tmp_path / "poly", instances="things", workers=1)]
    if kind == "coco-panoptic":
        sample = fixtures / "panopticapi" / "sample_data"
        return [get_format("coco-panoptic").parse(sample / "panoptic_examples.json", images_dir="input_images")]
    if kind == "shards":
        make_coco(tmp_path / "src", task="person_keypoints")
        ds = get_format("coco").parse(tmp_path / "src" / "coco", workers=1)
        get_format("shards").write(ds, tmp_path / "shards")
        return [get_format("shards").parse(tmp_path / "shards")]
    if kind == "lvis":
        return [get_format("lvis").parse(make_lvis(tmp_path)["root"])]
    if kind == "kitti":
        return [get_format("kitti").parse(make_kitti(tmp_path)["root"], workers=1)]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["coco", "coco-keypoints-captions", "voc", "imagenet", "cityscapes",
                                  "coco-panoptic", "shards", "lvis", "kitti"])
def test_every_parser_builds_records_in_stored_form(kind, tmp_path, request):
    fixtures = request.getfixturevalue("fixtures") if kind == "coco-panoptic" else None
    datasets = _parsed(kind, tmp_path, fixtures)
    objects = 0
    for ds in datasets:
        assert len(ds) > 0
        for rec in ds.records:
            _in_stored_form(rec, f"{kind}: {rec.id}")
            objects += len(rec.instances)
    assert objects > 0  # the objects' arrays were checked, not only empty ones


def test_the_shard_sample_json_holds_every_field():
    """The other place a record's fields are listed by hand: the shards writer's sample JSON.
    A field added to Record or Instances must be added there (and to _shardio's reader),
    or shards would drop it without a word."""
    import orjson

    from dsprep._shardio import record_from_sample
    from dsprep.formats.shards import _dumps, sample_doc

    values = _arrays()
    rec = Record._trusted(id="a", path="a.jpg", width=4, height=3, split="train", label=1, source_id=7,
                          instances=Instances._trusted(**values), mask_path="m.png", instance_mask_path="o.png",
                          captions=["c"], extra={"k": 1})
    doc = sample_doc(rec, ["train"], "jpg", {})
    assert set(RECORD_FIELDS) <= set(doc) and set(INSTANCE_FIELDS) <= set(doc["instances"])
    assert record_from_sample(orjson.loads(_dumps(doc)), "a.json") == rec
