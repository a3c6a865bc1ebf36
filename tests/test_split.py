"""Seeded N-way splitting: exact counts, disjoint, covering, deterministic, stratified; the command."""
from __future__ import annotations

import json
import types
from collections import Counter

import numpy as np
import pytest

import sys

import dsprep.conversion
import dsprep.formats
from dsprep.cli import main
from dsprep.errors import FormatError
from dsprep.records import Category, Dataset, Instances, Record
from dsprep.splitting import apply_split, parse_ratios, split_counts, split_ids, strata_for

IDS = [f"img_{i:04d}" for i in range(1001)]


def test_parse_ratios():
    assert parse_ratios("train=0.8,val=0.1,test=0.1") == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert parse_ratios("a=3,b=1") == {"a": 0.75, "b": 0.25}
    for bad, msg in [("train=0.8,val=0.1", "sum to 0.9"), ("train", "NAME=RATIO"), ("a=x", "expected a number"),
                     ("a=0.5,a=0.5", "named twice"), ("a=-1,b=2", "positive"), ("", "no split"),
                     ("../../evil=1", "plain name"), ("..=1", "plain name"), ("a\\b=1", "plain name")]:
        with pytest.raises(FormatError, match=msg):
            parse_ratios(bad)


@pytest.mark.parametrize("n,ratios,expected", [
    (1001, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 801, "val": 100, "test": 100}),
    (10, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 4, "b": 3, "c": 3}),
    (7, {"a": 0.5, "b": 0.5}, {"a": 4, "b": 3}),
    (0, {"a": 0.5, "b": 0.5}, {"a": 0, "b": 0}),
])
def test_counts_are_exact_to_rounding(n, ratios, expected):
    counts = split_counts(n, ratios)
    assert counts == expected and sum(counts.values()) == n
    assert all(abs(counts[s] - n * r) < 1 for s, r in ratios.items())


def test_disjoint_covering_and_sized():
    parts = split_ids(IDS, "train=0.8,val=0.1,test=0.1", seed=123)
    assert {k: len(v) for k, v in parts.items()} == {"train": 801, "val": 100, "test": 100}
    allocated = [i for v in parts.values() for i in v]
    assert sorted(allocated) == sorted(IDS) and len(set(allocated)) == len(IDS)
    # each list keeps the input order
    pos = {i: k for k, i in enumerate(IDS)}
    assert all(v == sorted(v, key=pos.get) for v in parts.values())


def test_deterministic_independent_of_input_order_and_seed_sensitive():
    a = split_ids(IDS, "train=0.8,val=0.2", seed=7)
    shuffled = list(reversed(IDS))
    b = split_ids(shuffled, "train=0.8,val=0.2", seed=7)
    assert {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}
    c = split_ids(IDS, "train=0.8,val=0.2", seed=8)
    assert sorted(a["val"]) != sorted(c["val"])
    # the assignment follows PCG64(seed)'s permutation of the sorted ids, dealt by the quota sequence:
    # with 80/20, every 5 consecutive ids of that order hold exactly one val id
    rng = np.random.Generator(np.random.PCG64(7))
    order = [sorted(IDS)[i] for i in rng.permutation(len(IDS))]
    # quota sequence with 80/20: within every 5 consecutive ids of the shuffled order, one goes to val
    val = set(a["val"])
    assert all(sum(i in val for i in order[k:k + 5]) == 1 for k in range(0, 1000, 5))


def test_duplicates_are_counted_once():
    parts = split_ids(["a", "b", "a", "c"], "x=0.5,y=0.5", seed=0)
    assert sorted(parts["x"] + parts["y"]) == ["a", "b", "c"]


def test_stratified_proportions():
    rng = np.random.default_rng(0)
    labels = {i: int(rng.choice(5, p=[0.5, 0.25, 0.15, 0.07, 0.03])) for i in IDS}
    parts = split_ids(IDS, "train=0.7,val=0.2,test=0.1", seed=3, strata=labels)
    assert {k: len(v) for k, v in parts.items()} == split_counts(len(IDS), {"train": 0.7, "val": 0.2, "test": 0.1})
    per_class = Counter(labels.values())
    for split, ratio in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
        got = Counter(labels[i] for i in parts[split])
        for cls, m in per_class.items():
            assert abs(got[cls] - m * ratio) <= 2, (split, cls, got[cls], m * ratio)
    assert sorted(i for v in parts.values() for i in v) == sorted(IDS)


def _det_records() -> list[Record]:
    # class 9 is in 2 images only; class 1 is everywhere
    recs = []
    for k in range(12):
        labels = [1, 1] + ([9] if k in (3, 8) else []) + ([2] if k % 3 == 0 else [])
        recs.append(Record(f"i{k}", f"i{k}.jpg", 8, 8, instances=Instances(boxes=np.zeros((len(labels), 4)),
                                                                          labels=labels)))
    recs.append(Record("empty", "empty.jpg", 8, 8))
    return recs


def test_strata_rarest_most_frequent_and_label():
    recs = _det_records()
    rarest = strata_for(recs, "rarest")
    assert rarest["i3"] == 9 and rarest["i0"] == 2 and rarest["i1"] == 1 and rarest["empty"] is None
    frequent = strata_for(recs, "most_frequent")
    assert frequent["i3"] == 1 and frequent["empty"] is None
    labelled = [Record("a", "a.jpg", label=4), Record("b", "b.jpg", label=5)]
    assert strata_for(labelled) == {"a": 4, "b": 5}  # auto -> label
    parts = split_ids([r.id for r in recs], "a=0.5,b=0.5", 0, strata=rarest)
    assert {s: sum(i in ("i3", "i8") for i in v) for s, v in parts.items()} == {"a": 1, "b": 1}


def test_apply_split_sets_record_splits():
    ds = Dataset([Category(1, "x")], _det_records())
    new = apply_split(ds, split_ids([r.id for r in ds], "train=0.75,val=0.25", 1))
    assert {k: len(v) for k, v in new.splits.items()} == {"train": 10, "val": 3}
    assert all(r.split in ("train", "val") for r in new.records) and len(new) == len(ds)
    assert ds.records[0].split is None  # the input is untouched


# --- the command, with the format monkeypatched -------------------------------------------------

def _fake_format(ds: Dataset, written: dict):
    def write(dataset, dest, **kw):
        written["dataset"] = dataset
        for split, ids in dataset.splits.items():
            (dest / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        return {"images": len(dataset), "objects": dataset.num_objects(), "lost": {}}

    return types.SimpleNamespace(NAME="voc", parse=lambda root, **kw: ds, write=write)


def test_split_command_writes_through_the_format(tmp_path, monkeypatch, capsys):
    ds = Dataset([Category(1, "x"), Category(2, "y"), Category(9, "z")], _det_records(), format="voc")
    written: dict = {}
    fake = _fake_format(ds, written)
    monkeypatch.setattr(dsprep.formats, "get_format", lambda name: fake)
    monkeypatch.setattr(dsprep.conversion, "get_format", lambda name: fake)
    root = tmp_path / "VOC2012"
    root.mkdir()
    out = tmp_path / "out"
    argv = ["split", "voc", str(root), "--ratios", "train=0.5,val=0.25,test=0.25", "--seed", "5",
            "--stratify", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 7, "val": 3, "test": 3} and summary["stratified"]
    lists = {s: (out / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(lists.values(), [])) == sorted(r.id for r in ds)
    assert (out / "category_map.json").is_file()
    # same seed, same split; refuses to overwrite, and never writes inside the input
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(argv[:-3] + ["--out", str(tmp_path / "out2"), "--json"]) == 0
    capsys.readouterr()
    assert {s: (tmp_path / "out2" / f"{s}.txt").read_text().split() for s in lists} == lists
    assert main(argv[:-3] + ["--out", str(root / "sub")]) == 2
    assert "input is never written to" in capsys.readouterr().err
    assert not (root / "sub").exists()
    assert main(argv[:4] + ["train=0.5", "--out", str(tmp_path / "o3")]) == 2
    assert "sum to 0.5" in capsys.readouterr().err


def test_split_voc_rewrites_the_segmentation_lists_too(tmp_path):
    import dsprep
    from dsprep.cli import main
    from dsprep.synth import synth

    src = tmp_path / "VOC"
    synth("voc", src, images=12, seed=3, size=32)
    assert main(["split", "voc", str(src), "--ratios", "a=0.5,b=0.5", "--seed", "1", "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0
    out = tmp_path / "out"
    for name in ("a", "b"):
        main_ids = (out / "ImageSets/Main" / f"{name}.txt").read_text().split()
        seg_ids = (out / "ImageSets/Segmentation" / f"{name}.txt").read_text().split()
        assert sorted(seg_ids) == sorted(main_ids)
    assert not (out / "ImageSets/Segmentation/train.txt").exists()
    assert len(dsprep.parse("voc", out)) == 12


def test_split_leaves_dummy_labelled_frames_out(tmp_path, capsys):
    """The Cityscapes test split's gt files are dummies: dealt into new splits they would read back
    as real labels. They are left out of the split and the output, and the message says so."""
    from fakes_cityscapes import make_cityscapes

    make_cityscapes(tmp_path / "cs", splits=("val",), frames=2, test=True)  # 4 val + 4 test frames
    out = tmp_path / "out"
    assert main(["split", "cityscapes", str(tmp_path / "cs"), "--ratios", "a=0.5,b=0.5", "--out", str(out),
                 "--quiet", "--workers", "1", "--json"]) == 0
    io = capsys.readouterr()
    assert json.loads(io.out)["splits"] == {"a": 2, "b": 2}
    assert "left out 4 images whose labels are dummies" in io.err and "test" in io.err
    back = dsprep.formats.get_format("cityscapes").parse(out, workers=1)
    assert len(back) == 4 and not any("test" in r.path for r in back)
    assert not any(p.is_dir() and p.name == "test" for p in out.rglob("*"))
    assert main(["split", "cityscapes", str(tmp_path / "cs"), "--split", "test", "--ratios", "a=0.5,b=0.5",
                 "--out", str(tmp_path / "out2"), "--quiet", "--workers", "1"]) == 2
    assert "all 4 images have dummy labels" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
