"""The atomic writer's cleanup after a failure, and the GC pause around record building."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest

import dsprep
from dsprep import _io, _outdir
from dsprep.conversion import convert
from dsprep.errors import FormatError
from dsprep.synth import synth


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# --------------------------------------------------------------------------- atomic_output
@pytest.mark.parametrize("error", [FormatError("x", "a writer failed"), KeyboardInterrupt()])
def test_atomic_output_removes_its_temporary_directory_on_failure(tmp_path, error):
    out = tmp_path / "out"
    with pytest.raises(type(error)):
        with _outdir.atomic_output(out) as tmp:
            (tmp / "half.json").write_text("{")
            (tmp / "sub").mkdir()
            raise error
    assert not out.exists() and _leftovers(tmp_path, "out") == []


def test_atomic_output_keeps_the_old_output_when_an_overwrite_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    _outdir.write_manifest(out, "convert")  # --overwrite replaces only what dsprep wrote (docs/cli.md, Safety)
    with pytest.raises(FormatError):
        with _outdir.atomic_output(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("half")
            raise FormatError("x", "a writer failed")
    assert sorted(p.name for p in out.iterdir()) == [_outdir.MANIFEST, "old.txt"]
    assert (out / "old.txt").read_text() == "kept"
    assert _leftovers(tmp_path, "out") == []
    with _outdir.atomic_output(out, overwrite=True) as tmp:  # success replaces it, leaving nothing beside
        (tmp / "new.txt").write_text("whole")
    assert sorted(p.name for p in out.iterdir()) == [_outdir.MANIFEST, "new.txt"]
    assert _leftovers(tmp_path, "out") == []


def test_a_conversion_whose_writer_fails_leaves_nothing(tmp_path, monkeypatch):
    synth("voc", tmp_path / "voc", images=4, seed=0, size=32)
    from dsprep.formats import coco

    real_write = coco.write

    def failing_write(dataset, dest, **kw):
        real_write(dataset, dest, **kw)  # everything written, then a failure
        raise FormatError(str(dest), "disk full")

    monkeypatch.setattr(coco, "write", failing_write)
    with pytest.raises(FormatError, match="disk full"):
        convert("voc", tmp_path / "voc", "coco", tmp_path / "coco", images="none")
    assert not (tmp_path / "coco").exists() and _leftovers(tmp_path, "coco") == []


# --------------------------------------------------------------------------- gc_paused
@pytest.fixture()
def gc_seen(monkeypatch):
    """``watch(module, name)`` wraps a function to record ``gc.isenabled()`` at each call."""
    seen: dict[str, list[bool]] = {}

    def watch(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.setdefault(name, []).append(gc.isenabled())
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    assert gc.isenabled()
    yield seen, watch
    assert gc.isenabled()  # every pause was lifted


def test_coco_parse_and_write_build_records_with_the_gc_paused(gc_seen, fixtures, tmp_path):
    from dsprep.formats import coco

    seen, watch = gc_seen
    watch(coco, "_parse_file")
    watch(coco, "_shared_ids")
    frozen = gc.get_freeze_count()
    ds = coco.parse(fixtures / "super-gradients/tests/data/tinycoco")
    assert seen["_parse_file"] and not any(seen["_parse_file"])
    assert gc.isenabled() and gc.get_freeze_count() > frozen  # freeze=True: parsed objects left out of collections
    gc.unfreeze()
    coco.write(ds, tmp_path, images="none")
    assert seen["_shared_ids"] == [False]


def test_the_pause_is_lifted_after_an_error_and_kept_if_it_was_off(gc_seen, fixtures, monkeypatch):
    from dsprep.formats import coco

    seen, watch = gc_seen

    def broken(*args, **kwargs):
        seen.setdefault("broken", []).append(gc.isenabled())
        raise FormatError("x.json", "broken")

    monkeypatch.setattr(coco, "_parse_file", broken)
    with pytest.raises(FormatError):
        coco.parse(fixtures / "super-gradients/tests/data/tinycoco")
    assert seen["broken"] == [False] and gc.isenabled()
    gc.disable()
    try:
        with _io.gc_paused():
            pass
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()


def test_imagenet_listing_and_record_building_run_with_the_gc_paused(gc_seen, tmp_path):
    from dsprep.formats import imagenet

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "1.jpg").write_bytes(b"")
    seen, watch = gc_seen
    watch(imagenet, "_list_class_tree")
    ds = imagenet.parse(tmp_path)
    assert seen["_list_class_tree"] == [False, False]
    watch(imagenet, "_ids")
    assert len(ds.records) == 4  # built now, from the listing
    assert seen["_ids"] and not any(seen["_ids"])


def test_voc_parse_runs_with_the_gc_paused_in_the_parent_and_in_each_worker_chunk(gc_seen, tmp_path):
    from dsprep.formats import voc

    synth("voc", tmp_path / "voc", images=4, seed=0, size=32)
    seen, watch = gc_seen
    watch(_io, "parallel_map")
    watch(voc, "_parse_chunk")
    ds = voc.parse(tmp_path / "voc", workers=1)
    assert len(ds) == 4 and seen["parallel_map"] == [False]
    # a worker process does not inherit the parent's pause: the chunk function pauses itself
    seen.clear()
    with pytest.raises(TypeError):
        voc._parse_chunk_gc_paused([])  # the options are missing: only the pause is looked at
    assert seen["_parse_chunk"] == [False]


def test_coco_evaluation_runs_with_the_gc_paused(gc_seen, fixtures):
    from dsprep.eval import detection

    seen, watch = gc_seen
    watch(detection, "_coco_evaluate")
    ds = dsprep.parse("coco", fixtures / "super-gradients/tests/data/tinycoco")
    detection.coco_evaluate(ds, [])
    assert seen["_coco_evaluate"] == [False]


@pytest.mark.parametrize("on_error", ["raise", "warn"])
@pytest.mark.parametrize("fmt", ["coco", "lvis"])
def test_a_refused_json_leaves_no_open_file_and_no_frozen_traceback(tmp_path, fmt, on_error):
    """Found by the fuzzer (100k LVIS inputs ended in 'Too many open files'): an error's traceback
    (its frames, and the memory-mapped JSON their locals hold: one descriptor each) sat in a cycle
    (the policy re-raising its own argument; in warn mode, the policy keeping the error), and the
    next parse's gc.freeze() kept that cycle for good; parse also froze while an error propagated.
    A long-running process reading bad files ran out of descriptors."""
    import json
    import os

    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("counts open files through /proc (Linux)")
    path = tmp_path / "bad.json"
    doc = {"images": [{"id": 1, "width": 8, "height": 8, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "c"}],
           # an unknown key sends the annotation the one-by-one path, whose bad bbox is then refused
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": 3.5, "area": 1, "iscrowd": 0, "x": 1}]}
    if fmt == "lvis":
        doc["images"][0]["coco_url"] = "http://images.cocodataset.org/val2017/" + doc["images"][0].pop("file_name")
        doc["images"][0].update(neg_category_ids=[], not_exhaustive_category_ids=[])
        doc["annotations"][0].pop("iscrowd")
        path = tmp_path / "lvis_v1_val.json"
    path.write_text(json.dumps(doc))
    parse = dsprep.formats.get_format(fmt).parse
    good = tmp_path / "good"
    good.mkdir()
    good_doc = dict(doc, annotations=[])
    (good / path.name).write_text(json.dumps(good_doc))
    before = len(os.listdir(fd_dir))
    try:
        for _ in range(20):
            if on_error == "raise":
                with pytest.raises(FormatError, match="bbox"):
                    parse(path, workers=1, progress=False)
            else:  # skipped and kept as an example by the policy: the parse succeeds, and freezes
                assert parse(path, workers=1, progress=False, on_error="warn").info["skipped"] == 1
            parse(good / path.name, workers=1, progress=False)  # succeeds: gc.freeze()
        gc.collect()
        assert len(os.listdir(fd_dir)) - before < 3  # was 20: one leaked memory map per refused file
    finally:
        gc.unfreeze()


def test_gc_paused_freezes_nothing_when_its_block_fails():
    """An error leaving the block is not frozen with everything else: its traceback's frames (and
    any cycle they sit in) stay collectable."""
    frozen = gc.get_freeze_count()
    with pytest.raises(ValueError):
        with _io.gc_paused(freeze=True):
            raise ValueError("bad file")
    assert gc.isenabled() and gc.get_freeze_count() == frozen
