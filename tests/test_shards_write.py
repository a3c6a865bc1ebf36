"""Writing tar shards (issue 15): the format on disk, lossless round trips, determinism across
workers, job-array tasks and Ray, --max-side arithmetic, and bad input named."""
from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dsprep
from dsprep.cli import main
from dsprep.conversion import convert, merge_shards
from dsprep.errors import InvalidAnnotationError, MalformedFileError, MissingFileError, OutputExistsError, UnknownNameError
from dsprep.formats import shards
from dsprep.records import Category, Dataset, Instances, Record

from fakes_coco import make_coco
from fakes_imagenet import make_tree
from fakes_voc import make_voc


def _diff(a: Dataset, b: Dataset) -> list[str]:
    """Field-by-field differences between the records of two datasets, matched by id."""
    out = [] if len(a) == len(b) else [f"{len(a)} vs {len(b)} records"]
    other = b.record_by_id()
    for ra in a.records:
        rb = other.get(ra.id)
        if rb is None:
            out.append(f"{ra.id}: missing")
            continue
        for f in dataclasses.fields(ra):
            if getattr(ra, f.name) != getattr(rb, f.name):
                out.append(f"{ra.id}.{f.name}: {getattr(ra, f.name)!r} != {getattr(rb, f.name)!r}")
    return out


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every shard and the index, by relative path (the manifests may say how they were run)."""
    files = sorted(root.glob("shards/*")) + [p for p in [root / "index.json"] if p.exists()]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.fixture()
def voc_overlap(tmp_path):
    """VOC with masks and overlapping splits: trainval = train + val (VOC's own layout)."""
    return make_voc(tmp_path / "src", n=6, masks=True,
                    splits={"train": [0, 2, 4], "trainval": list(range(6)), "val": [1, 3, 5]})


# ----------------------------------------------------------------------------- the format on disk

def test_voc_shards_are_plain_ustar_with_json_first_and_index_offsets(voc_overlap, tmp_path):
    out = tmp_path / "s"
    convert("voc", voc_overlap["root"], "shards", out, workers=1)
    index = json.loads((out / "index.json").read_bytes())
    assert index["format"] == "dsprep-shards" and index["version"] == 1 and index["source_format"] == "voc"
    assert index["splits"] == {"train": 3, "trainval": 6, "val": 3} and index["images"] == "keep"
    # each record once, in the shards of its smallest split; trainval is listed sample by sample
    assert [e["split"] for e in index["shards"]] == ["train", "val"]
    assert [e["path"] for e in index["shards"]] == ["shards/train-00000-00000.tar", "shards/val-00000-00000.tar"]
    assert list(index["samples"]) == ["trainval"] and len(index["samples"]["trainval"]) == 6
    for e in index["shards"]:
        data = (out / e["path"]).read_bytes()
        assert len(data) == e["bytes"]
        with tarfile.open(out / e["path"], format=tarfile.USTAR_FORMAT) as tf:
            members = tf.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
                   and m.mode == 0o644 and m.isreg() for m in members)
        names = [m.name for m in members]
        for key, offset, length in e["members"]:
            assert "." not in key and "/" not in key
            group = [n for n in names if n.split(".", 1)[0] == key]
            assert group == [f"{key}.json", f"{key}.jpg", f"{key}.mask.png", f"{key}.inst.png"]
            # bytes[offset:offset+length] is a valid mini-tar of the sample
            with tarfile.open(fileobj=io.BytesIO(data[offset:offset + length] + b"\0" * 1024)) as one:
                assert one.getnames() == group
                doc = json.loads(one.extractfile(f"{key}.json").read())
            assert doc["splits"] == [e["split"], "trainval"]  # VOC lists train, val, trainval in this order
            assert doc["image"] == "jpg" and doc["files"] == {"mask.png": doc["mask_path"],
                                                             "inst.png": doc["instance_mask_path"]}


def test_webdataset_reads_the_shards_unchanged(voc_overlap, tmp_path):
    import webdataset as wds

    out = tmp_path / "s"
    convert("voc", voc_overlap["root"], "shards", out, workers=1)
    urls = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == 6
    src = voc_overlap["root"]
    for s in samples:
        doc = json.loads(s["json"])
        assert set(s) >= {"__key__", "json", "jpg", "mask.png", "inst.png"}
        assert s["jpg"] == (src / doc["path"]).read_bytes()
        assert s["mask.png"] == (src / doc["mask_path"]).read_bytes()


def test_shard_size_closes_shards_between_samples(tmp_path):
    info = make_voc(tmp_path / "src", n=9, w=64, h=48)
    out = tmp_path / "s"
    one = next((info["root"] / "JPEGImages").glob("*.jpg")).stat().st_size
    limit = 3 * (one + 3000)  # about two or three samples a shard
    convert("voc", info["root"], "shards", out, workers=1, write_options={"shard_size": limit})
    index = json.loads((out / "index.json").read_bytes())
    assert len(index["shards"]) > 2
    assert sum(e["samples"] for e in index["shards"]) == 9
    for e in index["shards"]:
        assert e["bytes"] <= limit or e["samples"] == 1
        assert e["bytes"] == (out / e["path"]).stat().st_size
    assert shards.parse_size("1GB") == 10 ** 9 and shards.parse_size("64MiB") == 64 * 2 ** 20
    assert shards.parse_size("500MB") == 5 * 10 ** 8 and shards.parse_size(4096) == 4096


# ----------------------------------------------------------------------------- lossless round trips

def test_voc_to_shards_to_voc_gives_the_source_back(voc_overlap, tmp_path):
    src = voc_overlap["root"]
    convert("voc", src, "shards", tmp_path / "s", workers=1)
    convert("shards", tmp_path / "s", "voc", tmp_path / "back", images="copy")
    a = dsprep.parse("voc", src, segmentation=True)
    b = dsprep.parse("voc", tmp_path / "back", segmentation=True)
    assert not _diff(a, b)
    # the shards hold train, then val; parsing gives the source's record order back
    assert [r.id for r in shards.parse(tmp_path / "s").records] == [r.id for r in dsprep.parse("voc", src).records]
    assert list(a.splits.items()) == list(b.splits.items()) and a.categories == b.categories  # order too
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        for f in sorted((src / sub).iterdir()):
            assert (tmp_path / "back" / sub / f.name).read_bytes() == f.read_bytes(), f"{sub}/{f.name}"
    # and the whole tree is the one a direct VOC -> VOC conversion writes, file for file
    convert("voc", src, "voc", tmp_path / "direct", images="copy")
    direct = {p.relative_to(tmp_path / "direct"): p for p in (tmp_path / "direct").rglob("*") if p.is_file()}
    through = {p.relative_to(tmp_path / "back"): p for p in (tmp_path / "back").rglob("*") if p.is_file()}
    assert sorted(direct) == sorted(through)
    for rel, p in direct.items():
        if rel.name == "dsprep-manifest.json":  # its "created" second differs when the runs straddle one
            assert {**json.loads(through[rel].read_bytes()), "created": 0} == \
                {**json.loads(p.read_bytes()), "created": 0}, rel
            continue
        assert through[rel].read_bytes() == p.read_bytes(), rel


def test_coco_to_shards_to_coco_field_by_field(tmp_path):
    exp = make_coco(tmp_path / "src")  # polygons, uncompressed crowd RLE, licenses, info
    convert("coco", exp["root"], "shards", tmp_path / "s", workers=1)
    convert("shards", tmp_path / "s", "coco", tmp_path / "back", images="link")
    for split in ("train2017", "val2017"):
        before = json.loads(exp["json"][split].read_bytes())
        after = json.loads((tmp_path / "back" / "annotations" / f"instances_{split}.json").read_bytes())
        assert after == before, split
        for img in before["images"]:
            placed = tmp_path / "back" / split / img["file_name"]
            assert not placed.is_symlink()  # a file inside a tar cannot be linked to: placed as a file
            assert placed.read_bytes() == (exp["root"] / split / img["file_name"]).read_bytes()
    assert not (tmp_path / "back" / ".dsprep-unpacked").exists()
    # the JSON a direct COCO -> COCO conversion writes, key order included (the direct one passes the
    # source's polygon text through as it is, spaces and all: hence compared parsed, not as bytes)
    convert("coco", exp["root"], "coco", tmp_path / "direct", images="none")
    for split in ("train2017", "val2017"):
        name = f"annotations/instances_{split}.json"
        back, direct = (json.loads((tmp_path / d / name).read_bytes()) for d in ("back", "direct"))
        assert json.dumps(back) == json.dumps(direct)


def test_coco_keypoints_and_compressed_rle_survive(tmp_path):
    exp = make_coco(tmp_path / "kp", task="person_keypoints", splits=("val2017",), images_per_split=4)
    a = dsprep.parse("coco", exp["root"])
    convert("coco", exp["root"], "shards", tmp_path / "s", workers=1)
    b = shards.parse(tmp_path / "s")
    assert b.format == "coco" and not _diff(a, b) and a.categories == b.categories
    exp2 = make_coco(tmp_path / "rle", compressed_rle=True, splits=("val2017",))
    a = dsprep.parse("coco", exp2["root"])
    convert("coco", exp2["root"], "shards", tmp_path / "s2", workers=1)
    assert not _diff(a, shards.parse(tmp_path / "s2"))


def test_parse_one_split_and_the_files_table(voc_overlap, tmp_path):
    convert("voc", voc_overlap["root"], "shards", tmp_path / "s", workers=1)
    ds = shards.parse(tmp_path / "s", split="trainval")
    assert list(ds.splits) == ["trainval"] and len(ds) == 6
    val = shards.parse(tmp_path / "s", split="val")
    assert val.splits["val"] == dsprep.parse("voc", voc_overlap["root"]).splits["val"]
    shard, offset, size, kind = val.info["shard_files"][val.records[0].path]
    data = (tmp_path / "s" / shard).read_bytes()[offset:offset + size]
    assert kind == "image" and data == (voc_overlap["root"] / val.records[0].path).read_bytes()
    with pytest.raises(UnknownNameError, match="trainval"):  # a split the index lacks: named, not KeyError
        shards.parse(tmp_path / "s", split="test")
    make_tree(tmp_path / "flat", splits=("train",))
    convert("imagenet", tmp_path / "flat" / "train", "shards", tmp_path / "flat-s", workers=1)
    with pytest.raises(UnknownNameError, match="name no splits"):
        shards.parse(tmp_path / "flat-s", split="train")


# ----------------------------------------------------------------------------- determinism, backends

def _run(src, out, **opts):
    convert("voc", src, "shards", out, workers=opts.pop("workers", 1), overwrite=opts.pop("overwrite", False),
            write_options={"chunk_size": 2, **opts})
    return _tree_bytes(out)


def test_same_input_same_bytes_whatever_the_worker_count(voc_overlap, tmp_path):
    a = _run(voc_overlap["root"], tmp_path / "a")
    b = _run(voc_overlap["root"], tmp_path / "b")
    c = _run(voc_overlap["root"], tmp_path / "c", workers=2)
    assert len([k for k in a if k.startswith("shards/")]) == 3 + 3  # 3 chunks x (train, val)
    assert a == b == c


def test_task_array_then_merge_equals_local(voc_overlap, tmp_path):
    local = _run(voc_overlap["root"], tmp_path / "local")
    out = tmp_path / "tasks"
    for i in (2, 0):
        _run(voc_overlap["root"], out, num_tasks=3, task_index=i)
    assert not (out / "index.json").exists()
    with pytest.raises(MissingFileError, match=r"chunks 1\): task\(s\) 1 of --num-tasks 3"):
        merge_shards(out)
    _run(voc_overlap["root"], out, num_tasks=3, task_index=1)
    (out / "shards" / "train-00007-00000.tar").write_bytes(b"an older run's")  # no manifest names it
    merge_shards(out, verify=True)
    assert _tree_bytes(out) == local
    # a task re-run after a crash replaces its own shards and leaves the others as they were
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    with pytest.raises(OutputExistsError, match="is complete"):
        _run(voc_overlap["root"], out, num_tasks=3, task_index=1)
    _run(voc_overlap["root"], out, num_tasks=3, task_index=1, overwrite=True)
    assert not (out / "index.json").exists()
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert {n for n in after if after[n] != before[n]} == {"train-00001-00000.tar", "val-00001-00000.tar"}
    merge_shards(out)
    assert _tree_bytes(out) == local
    # the merge marks OUT as dsprep's, so that a later run may replace it with --overwrite
    manifest = json.loads((out / "dsprep-manifest.json").read_text())
    assert manifest["command"] == "shards merge"
    assert manifest["entries"] == ["category_map.json", "index.json", "manifests", "shards"]
    assert _run(voc_overlap["root"], out, overwrite=True) == local


def test_task_array_out_inside_the_input_is_refused(voc_overlap):
    with pytest.raises(OutputExistsError, match="inside the input"):
        _run(voc_overlap["root"], voc_overlap["root"] / "shards", num_tasks=2, task_index=0)
    assert not (voc_overlap["root"] / "shards").exists()


def test_task_of_another_conversion_is_refused_and_merge_names_it(voc_overlap, tmp_path):
    out = tmp_path / "tasks"
    _run(voc_overlap["root"], out, num_tasks=2, task_index=0)
    with pytest.raises(OutputExistsError, match="another conversion"):
        _run(voc_overlap["root"], out, num_tasks=2, task_index=1, shard_size=10 ** 6)
    # --overwrite lets task 1 replace the plan: then task 0's manifest is of another conversion
    _run(voc_overlap["root"], out, num_tasks=2, task_index=1, shard_size=10 ** 6, overwrite=True)
    with pytest.raises(MalformedFileError, match=r"manifests/00000\.json: written by another conversion"):
        merge_shards(out)
    with pytest.raises(OutputExistsError, match="holds stray"):
        (out / "stray").write_text("x")
        _run(voc_overlap["root"], out, num_tasks=2, task_index=1)


def test_ray_backend_writes_the_same_bytes(voc_overlap, tmp_path):
    ray = pytest.importorskip("ray")  # the [ray] extra is installed by scripts/setup.sh
    local = _run(voc_overlap["root"], tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _run(voc_overlap["root"], tmp_path / "ray", backend="ray") == local
        # bad input in a Ray task is the local backend's error, raised once (not retried)
        (voc_overlap["root"] / "JPEGImages" / "2012_000003.jpg").unlink()
        with pytest.raises(MissingFileError, match=r"2012_000003\.jpg: image of record 'JPEGImages/2012_000003'"):
            _run(voc_overlap["root"], tmp_path / "ray-missing", backend="ray")
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- --max-side

def _exif_jpeg(path: Path, size: tuple[int, int], orientation: int) -> None:
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", exif=exif.tobytes())


def test_max_side_scales_every_annotation_by_the_arithmetic(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    # stored 60x40 with EXIF orientation 6 (rotate 90): decodes as 40x60
    _exif_jpeg(root / "a.jpg", (60, 40), 6)
    Image.new("RGB", (50, 21)).save(root / "b.png")
    mask = np.zeros((21, 50), np.uint8)
    mask[4:12, 10:30] = 7
    Image.fromarray(mask, "L").save(root / "b_mask.png")
    rle = {"size": [21, 50], "counts": _counts_of(mask > 0)}  # uncompressed, as COCO crowd ground truth
    recs = [
        Record("a", "a.jpg", 40, 60, "train", instances=Instances(
            boxes=[[1.5, 3.0, 21.0, 45.25]], labels=[1],
            keypoints=[[[10.0, 30.0, 2.0], [0.0, 0.0, 0.0]]], segmentation=[[[1.5, 3.0, 21.0, 3.0, 21.0, 45.25]]],
            area=[100.0])),
        Record("b", "b.png", 50, 21, "train", mask_path="b_mask.png", instances=Instances(
            boxes=[[10.0, 4.0, 30.0, 12.0]], labels=[2], iscrowd=[True], segmentation=[rle], area=[160.0])),
    ]
    ds = Dataset([Category(1, "x"), Category(2, "y")], recs, root=root, format="coco")
    out = tmp_path / "s"
    out.mkdir()
    shards.write(ds, out, images="copy", max_side=30, quality=95, workers=1)
    back = {r.id: r for r in shards.parse(out).records}
    a, b = back["a"], back["b"]
    # a: oriented 40x60 -> 20x30 (scale 0.5 each way)
    assert (a.width, a.height) == (20, 30) and a.extra["scale"] == [0.5, 0.5]
    assert (a.extra["orig_width"], a.extra["orig_height"]) == (40, 60)
    assert a.instances.boxes.tolist() == [[0.75, 1.5, 10.5, 22.625]]
    assert a.instances.keypoints.tolist() == [[[5.0, 15.0, 2.0], [0.0, 0.0, 0.0]]]
    assert a.instances.segmentation == [[[0.75, 1.5, 10.5, 1.5, 10.5, 22.625]]]
    assert a.instances.area.tolist() == [25.0]
    info = shards.parse(out).info["shard_files"]
    shard, off, n, _ = info["a.jpg"]
    im = Image.open(io.BytesIO((out / shard).read_bytes()[off:off + n]))
    assert im.format == "JPEG" and im.size == (20, 30)  # stored upright, no EXIF rotation left
    # b: 50x21 -> 30x13 (21 * 0.6 = 12.6 rounds to 13: sx 0.6, sy 13/21); PNG stays PNG; the mask
    # is nearest-resized, the RLE too
    sx, sy = 30 / 50, 13 / 21
    assert (b.width, b.height) == (30, 13) and b.extra["scale"] == [sx, sy]
    assert b.instances.boxes.tolist() == [[10.0 * sx, 4.0 * sy, 30.0 * sx, 12.0 * sy]]
    shard, off, n, _ = info["b_mask.png"]
    small = np.array(Image.open(io.BytesIO((out / shard).read_bytes()[off:off + n])))
    expect = np.array(Image.fromarray(mask).resize((30, 13), Image.Resampling.NEAREST))
    assert small.shape == (13, 30) and (small == expect).all() and set(np.unique(small)) == {0, 7}
    (seg,) = b.instances.segmentation
    assert seg["size"] == [13, 30] and isinstance(seg["counts"], list)  # uncompressed stays uncompressed
    from dsprep.masks import segmentation_mask

    assert (segmentation_mask(seg, 13, 30) == (expect > 0)).all()
    assert b.instances.area.tolist() == [float((expect > 0).sum())]
    # predictions map back to the original image by the recorded scale
    for r, orig in ((a, recs[0]), (b, recs[1])):
        sx, sy = r.extra["scale"]
        np.testing.assert_allclose(r.instances.boxes / [sx, sy, sx, sy], orig.instances.boxes, rtol=0, atol=1e-12)


def _counts_of(mask: np.ndarray) -> list[int]:
    flat = mask.ravel(order="F")
    counts, cur, run = [], False, 0
    for v in flat:
        if bool(v) != cur:
            counts.append(run)
            cur, run = bool(v), 0
        run += 1
    counts.append(run)
    return counts


def test_max_side_refuses_a_record_whose_size_is_not_its_image(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    Image.new("RGB", (50, 20)).save(root / "b.jpg")
    ds = Dataset([Category(1, "x")], [Record("b", "b.jpg", 20, 50, "train")], root=root)
    out = tmp_path / "s"
    out.mkdir()
    with pytest.raises(InvalidAnnotationError, match=r"says 20x50, the image decodes to 50x20"):
        shards.write(ds, out, max_side=10, images="copy", workers=1)


# ----------------------------------------------------------------------------- bad input named

@pytest.fixture()
def written(voc_overlap, tmp_path):
    out = tmp_path / "s"
    convert("voc", voc_overlap["root"], "shards", out, workers=1)
    return out, json.loads((out / "index.json").read_bytes())


def test_corrupt_tar_header_is_named(written):
    out, index = written
    e = index["shards"][1]
    path = out / e["path"]
    data = bytearray(path.read_bytes())
    data[e["members"][1][1] + 3] ^= 0x55  # a byte of the second sample's JSON member name
    path.write_bytes(bytes(data))
    with pytest.raises(MalformedFileError, match=r"val-00000-00000\.tar.*(no valid tar header|expected member)"):
        shards.parse(out)


def test_index_that_does_not_match_its_shards_is_named(written):
    out, index = written
    # offsets of another conversion: a valid header, but another sample's member there
    members = index["shards"][0]["members"]
    members[0][1], members[1][1] = members[1][1], members[0][1]
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(MalformedFileError, match=r"expected member '000000_JPEGImages_2012_000000\.json', found "
                                                 r"'000002_JPEGImages_2012_000002\.json'"):
        shards.parse(out)
    members[0][1], members[1][1] = members[1][1], members[0][1]
    (out / "index.json").write_text(json.dumps(index))
    path = out / index["shards"][0]["path"]
    path.write_bytes(path.read_bytes()[:-1024])  # cut short
    with pytest.raises(MalformedFileError, match=r"train-00000-00000\.tar: \d+ bytes, index.json says"):
        shards.parse(out)
    path.unlink()
    with pytest.raises(MissingFileError, match="shard named by index.json not found"):
        shards.parse(out)


def test_invalid_member_json_is_named_or_skipped(written):
    out, index = written
    e = index["shards"][0]
    key, offset, _ = e["members"][0]
    path = out / e["path"]
    data = bytearray(path.read_bytes())
    data[offset + 512:offset + 514] = b"{{"  # same length: headers still match, the JSON does not
    path.write_bytes(bytes(data))
    with pytest.raises(MalformedFileError, match=rf"member {key}\.json: not valid JSON"):
        shards.parse(out)
    ds = shards.parse(out, on_error="warn")
    assert len(ds) == 5 and ds.info["skipped"] == 1


def test_cli_convert_to_shards_and_merge(voc_overlap, tmp_path, capsys):
    out = tmp_path / "s"
    base = ["convert", "voc", str(voc_overlap["root"]), "--to", "shards", "--out", str(out), "--quiet",
            "--chunk-size", "2", "--workers", "1"]
    for i in range(2):
        assert main(base + ["--num-tasks", "2", "--task-index", str(i)]) == 0
    assert "dsprep shards merge" in capsys.readouterr().out
    assert main(["shards", "merge", str(out), "--verify"]) == 0
    assert "merged 6 shards (6 samples: train 3, val 3, trainval 6)" in capsys.readouterr().out
    assert main(["convert", "voc", str(voc_overlap["root"]), "--to", "coco", "--out", str(tmp_path / "c"),
                 "--max-side", "10"]) == 2
    assert "--max-side: only with --to shards" in capsys.readouterr().err
    assert main(["convert", "voc", str(voc_overlap["root"]), "--to", "shards", "--out", str(tmp_path / "k"),
                 "--images", "keep", "--max-side", "8"]) == 2
    assert "give one of the two" in capsys.readouterr().err
    assert main(["shards", "merge", str(tmp_path / "nowhere")]) == 2


def test_a_sample_path_that_climbs_out_is_refused(tmp_path):
    root = tmp_path / "src" / "root"
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "outside.jpg")
    ds = Dataset([Category(1, "x")], [Record("a", "../outside.jpg", 8, 8, "train")], root=root)
    out = tmp_path / "s"
    out.mkdir()
    shards.write(ds, out, workers=1)  # a writer takes what it is given; a reader checks what it reads
    with pytest.raises(InvalidAnnotationError, match=r"path '../outside.jpg' is absolute or climbs out"):
        shards.parse(out)


def test_merge_refuses_while_a_task_runs_and_a_task_runs_once(voc_overlap, tmp_path):
    from dsprep.conversion import _held, _task_lock

    out = tmp_path / "tasks"
    _run(voc_overlap["root"], out, num_tasks=2, task_index=0)
    with _held(_task_lock(out, 2, 1), "task 1 of 2"):  # as task 1 holds it while it writes
        with pytest.raises(OutputExistsError, match=r"task-00001-of-00002 still running"):
            merge_shards(out)
        with pytest.raises(OutputExistsError, match=r"task 1 of 2 writing .* is running right now"):
            _run(voc_overlap["root"], out, num_tasks=2, task_index=1)
    _run(voc_overlap["root"], out, num_tasks=2, task_index=1)
    assert merge_shards(out)["records"] == 6
    assert not list((out / "manifests").glob(".task-*.lock"))


def test_tar_headers_are_the_ones_tarfile_writes():
    from dsprep._tar import _tarfile_header, header

    names = ("a.json", "000001_JPEGImages_2012_000001.mask.png", "x" * 100, "é" * 40 + ".jpg", "d" * 60 + "/" + "y" * 60)
    for name in names:
        for size in (0, 1, 511, 512, 513, 10 ** 6, 8 ** 11 - 1):
            assert header(name, size) == _tarfile_header(name, size), (name, size)


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_the_stream_reads_what_the_writer_wrote_as_the_file_loader_reads_the_source(voc_overlap, tmp_path, task):
    torch = pytest.importorskip("torch")  # the torch layer (installed by scripts/setup.sh)

    convert("voc", voc_overlap["root"], "shards", tmp_path / "s", workers=1, write_options={"chunk_size": 4})
    kw = dict(task=task, augment="default", seed=1, num_workers=0, shuffle=False)
    files = list(dsprep.load(format="voc", root=voc_overlap["root"]).subset("trainval").loader(2, **kw))
    stream = list(dsprep.load(format="shards", root=tmp_path / "s", split="trainval").loader(2, **kw))
    assert len(files) == len(stream) == 3
    for (x, t), (y, u) in zip(files, stream):
        assert torch.equal(x, y)
        for p, q in zip(t, u) if isinstance(t, list) else [(t, u)]:
            assert p.keys() == q.keys()
            for k in p:
                assert torch.equal(p[k], q[k]) if isinstance(p[k], torch.Tensor) else p[k] == q[k], k


def test_shards_at_a_url_load_lazily_and_stream_as_the_local_ones(voc_overlap, tmp_path):
    torch = pytest.importorskip("torch")
    from test_shards_loader import _serve  # a local HTTP server on 127.0.0.1 with Range requests

    out = tmp_path / "s"
    convert("voc", voc_overlap["root"], "shards", out, workers=1)
    kw = dict(task="detection", augment="default", seed=2, num_workers=0, shuffle=False, retry_wait=0.01)
    with _serve(out) as (_, url):
        remote = dsprep.load(format="shards", root=url, split="trainval")
        assert len(remote) == 0 and remote.info["shards"]["root"] == url  # index.json only: nothing else read
        got = list(remote.loader(2, **kw))
    local = list(dsprep.load(format="shards", root=out, split="trainval").loader(2, **kw))
    assert len(got) == len(local) == 3
    for (x, t), (y, u) in zip(got, local):
        assert torch.equal(x, y) and [d["boxes"].tolist() for d in t] == [d["boxes"].tolist() for d in u]
