"""The record model: box conventions, validation, category remapping, splits."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from dsprep import BoxFormat, Category, Dataset, Instances, Record, convert_boxes
from dsprep.errors import ErrorPolicy, InvalidAnnotationError, UnknownNameError, check_choice
from dsprep.records import LazyRecords, record_id_from_path


@pytest.mark.parametrize("src,box,xyxy", [
    ("xywh", [10, 20, 30, 40], [10, 20, 40, 60]),
    ("cxcywh", [25, 40, 30, 40], [10, 20, 40, 60]),
    ("xyxy", [10, 20, 40, 60], [10, 20, 40, 60]),
])
def test_convert_boxes_round_trip(src, box, xyxy):
    out = convert_boxes(np.array([box]), src, BoxFormat.XYXY)
    assert out.tolist() == [list(map(float, xyxy))]
    assert convert_boxes(out, "xyxy", src).tolist() == [list(map(float, box))]


def test_float64_keeps_coco_decimals_exactly():
    inst = Instances(boxes=[[473.07, 395.93, 473.07 + 38.65, 395.93 + 28.67]], labels=[18])
    back = convert_boxes(inst.boxes, "xyxy", "xywh")[0]
    assert back[0] == 473.07 and back[1] == 395.93


def test_convert_boxes_gives_back_the_source_decimals():
    x, w = 473.07, 38.65
    assert (x + w) - x == 38.64999999999998  # what a plain subtraction gives
    xyxy = np.array([[x, 395.93, x + w, 395.93 + 28.67]])
    assert convert_boxes(xyxy, "xyxy", "xywh").tolist() == [[473.07, 395.93, 38.65, 28.67]]
    assert convert_boxes(xyxy, "xyxy", "cxcywh")[0, 2:].tolist() == [38.65, 28.67]
    # COCO-like boxes of 2 decimals: xywh -> xyxy -> xywh is the identity, float for float
    rng = np.random.default_rng(0)
    xywh = np.round(rng.uniform(0, 1000, (20000, 4)), 2)
    back = convert_boxes(convert_boxes(xywh, "xywh", "xyxy"), "xyxy", "xywh")
    assert np.array_equal(back, xywh)
    plain = convert_boxes(xywh, "xywh", "xyxy")
    assert (plain[:, 2:] - plain[:, :2] != xywh[:, 2:]).sum() > 1000  # the case this guards


def test_instances_validates_shapes_with_expected_and_found():
    with pytest.raises(ValueError, match=r"shape \(N, 4\), but got shape \(3,\)"):
        Instances(boxes=[1, 2, 3], labels=[1])
    with pytest.raises(ValueError, match="labels has 2 rows, but boxes has 1"):
        Instances(boxes=[[0, 0, 1, 1]], labels=[1, 2])
    with pytest.raises(ValueError, match="segmentation has 2 entries"):
        Instances(boxes=[[0, 0, 1, 1]], labels=[1], segmentation=[None, None])


def test_instances_defaults_and_select():
    a = Instances(boxes=[[0, 0, 2, 2], [1, 1, 3, 3]], labels=[1, 2], difficult=[False, True],
                  extra=[{"pose": "Left"}, {"pose": "Right"}])
    assert a.iscrowd.tolist() == [False, False] and a.ids.tolist() == [-1, -1]
    assert np.isnan(a.area).all()
    b = a.select([False, True])
    assert b.labels.tolist() == [2] and b.extra == [{"pose": "Right"}] and b.difficult.tolist() == [True]


def test_raw_json_segmentation_equals_decoded():
    a = Instances(boxes=[[0, 0, 2, 2]], labels=[1], segmentation=[b"[[0,0,2,0,2,2]]"])
    b = Instances(boxes=[[0, 0, 2, 2]], labels=[1], segmentation=[[[0.0, 0.0, 2.0, 0.0, 2.0, 2.0]]])
    assert a == b


def test_record_id_keeps_folders():
    assert record_id_from_path("JPEGImages/000005.jpg") == "JPEGImages/000005"
    assert record_id_from_path("./a/0001.jpg") != record_id_from_path("./b/0001.jpg")
    assert record_id_from_path("x\\y.tar.png") == "x/y.tar"


def _toy() -> Dataset:
    cats = [Category(3, "cat"), Category(7, "dog"), Category(9, "cow")]
    recs = [Record("a", "a.jpg", 8, 8, "train", instances=Instances(boxes=[[0, 0, 1, 1]] * 2, labels=[7, 9])),
            Record("b", "b.jpg", 8, 8, "val", label=3)]
    return Dataset(cats, recs, format="toy")


@pytest.mark.parametrize("policy,expected", [
    ("preserve", {3: 3, 7: 7, 9: 9}), ("contiguous0", {3: 0, 7: 1, 9: 2}), ("contiguous1", {3: 1, 7: 2, 9: 3}),
])
def test_remap_categories(policy, expected):
    ds, mapping = _toy().remap_categories(policy)
    assert mapping == expected
    assert ds.records[0].instances.labels.tolist() == [expected[7], expected[9]]
    assert ds.records[1].label == expected[3]
    assert [c.name for c in ds.categories] == ["cat", "dog", "cow"]


def test_remap_categories_numbers_in_category_order_not_id_order():
    # Category order is the dataset's (a VOC labelmap's, a COCO file's), not id order:
    # contiguous ids follow it, and labels follow their category.
    cats = [Category(9, "cow"), Category(3, "cat"), Category(7, "dog")]
    recs = [Record("a", "a.jpg", 8, 8, instances=Instances(boxes=[[0, 0, 1, 1]] * 3, labels=[3, 7, 9])),
            Record("b", "b.jpg", 8, 8, label=9)]
    ds, mapping = Dataset(cats, recs).remap_categories("contiguous0")
    assert mapping == {9: 0, 3: 1, 7: 2}
    assert [(c.id, c.name) for c in ds.categories] == [(0, "cow"), (1, "cat"), (2, "dog")]
    assert ds.records[0].instances.labels.tolist() == [1, 2, 0] and ds.records[1].label == 0
    assert Dataset(cats, recs).remap_categories("contiguous1")[1] == {9: 1, 3: 2, 7: 3}


def test_splits_subset_and_stats():
    ds = _toy()
    assert ds.splits == {"train": ["a"], "val": ["b"]}
    assert [r.id for r in ds.subset("val")] == ["b"]
    sub = ds.subset("val")
    assert sub.records[0] == ds.records[1].replace(split="val") and sub.records[0] is not ds.records[1]
    sub.records[0].width = 99
    assert ds.records[1].width != 99
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        ds.subset("vall")
    st = ds.stats()
    assert st["train"]["objects_per_category"] == {"dog": 1, "cow": 1}
    assert st["val"]["images_per_label"] == {"cat": 1}


class _Counted(LazyRecords):
    """Three records, split train/val/none, counting how often they are built."""

    def __init__(self):
        self.builds = 0

    def __len__(self):
        return 3

    def build(self):
        self.builds += 1
        return [Record(i, f"{i}.jpg", split=s) for i, s in (("a", "train"), ("b", "val"), ("c", None))]


def test_lazy_records_are_built_once_on_first_use_and_splits_derive_from_them():
    lazy = _Counted()
    ds = Dataset([Category(1, "cat")], lazy)
    assert len(ds) == 3 and lazy.builds == 0
    assert ds.splits == {"train": ["a"], "val": ["b"]} and lazy.builds == 1  # no split_ids(): built
    first = ds.records
    assert ds.column("split") == ["train", "val", None] and [r.id for r in ds] == ["a", "b", "c"]
    assert ds.records is first and lazy.builds == 1
    ds.records = [first[2]]  # replacing the records keeps the splits of construction, as for a list
    assert ds.splits == {"train": ["a"], "val": ["b"]} and len(ds) == 1
    ds = Dataset([Category(1, "cat")], _Counted())
    ds.records[0].split = "val"  # built, then edited before .splits is read: as for a list,
    assert ds.splits == {"train": ["a"], "val": ["b"]}  # the splits are those of the records as given
    ds = Dataset([], _Counted(), splits={"all": ["c", "a"]})
    assert ds.splits == {"all": ["c", "a"]} and [r.id for r in ds.subset("all")] == ["c", "a"]


def test_duplicate_category_ids_rejected():
    with pytest.raises(ValueError, match="duplicate category ids"):
        Dataset([Category(1, "a"), Category(1, "b")], [])


def test_error_policy_warn_counts_and_raise_raises(caplog):
    err = InvalidAnnotationError("a.xml:3", "xmax=1 < xmin=4")
    with pytest.raises(InvalidAnnotationError, match=r"^a\.xml:3: xmax=1"):
        ErrorPolicy("raise").handle(err)
    pol = ErrorPolicy("warn")
    pol.handle(err)
    pol.handle(err)
    assert pol.count == 2 and "skipped 2 bad" in pol.summary("objects")
    with pytest.raises(UnknownNameError):
        check_choice("mode", "wern", ErrorPolicy.MODES)


def test_core_layers_do_not_import_torch():
    import subprocess
    code = "import sys, dsprep, dsprep.records, dsprep.formats, dsprep.conversion, dsprep.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_error_policy_passes_through_an_existing_policy():
    pol = ErrorPolicy("warn", show=100)
    assert ErrorPolicy(pol) is pol and pol.show == 100
    assert ErrorPolicy("warn").show == 5
    with pytest.raises(TypeError, match=r"show=3.*its own show \(100\)"):
        ErrorPolicy(pol, show=3)  # would be ignored: refused instead
    assert pol.show == 100


def test_image_size_applies_exif_rotation_for_jpeg_and_png(tmp_path):
    from PIL import Image

    from dsprep._io import image_size

    im = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the decoded image is 20x40
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    im.save(tmp_path / "r.png", exif=exif.tobytes())
    im.save(tmp_path / "plain.png")
    assert image_size(tmp_path / "r.jpg") == (20, 40)
    assert image_size(tmp_path / "r.png") == (20, 40)
    assert image_size(tmp_path / "plain.png") == (40, 20)


def test_record_replace_is_a_shallow_copy_and_refuses_unknown_fields():
    r = Record("a", "a.jpg", 8, 8, "train", instances=Instances(boxes=[[0, 0, 1, 1]], labels=[1]))
    c = r.replace(split="val", width=9)
    assert (c.split, c.width, c.height, r.split, r.width) == ("val", 9, 8, "train", 8)
    assert c.instances is r.instances and type(c) is Record and c == r.replace(split="val", width=9)
    with pytest.raises(TypeError, match="no field"):
        r.replace(widht=3)
