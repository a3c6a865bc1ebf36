"""OUT: what --overwrite may replace, where OUT may be, interrupted and concurrent runs
(issue 10, items 3-4).

The process tests run ``python -m dsprep`` for real and synchronise on files, never on
sleeps: a named pipe (FIFO) in the input makes a run block at a known point (opening a
FIFO for reading waits for a writer), and the test polls for the marker it waits on
(the temporary folder, the pool's worker processes) with a generous deadline.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dsprep
from dsprep.cli import main
from dsprep.synth import synth

MANIFEST = "dsprep-manifest.json"  # dsprep._outdir.MANIFEST, spelled out: the name is a promise to users
ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 60.0  # seconds a poll may wait for a marker (only reached when something is broken)


@pytest.fixture(scope="module")
def shapes_voc(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("src") / "voc"
    synth("voc", out, images=6, seed=2, size=32)
    return out


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted(path.rglob("*"))}


def _convert(src: Path, out: Path | str, *extra: str, fmt: str = "voc", to: str = "coco") -> list[str]:
    return ["convert", fmt, str(src), "--to", to, "--out", str(out), "--quiet", *extra]


# ------------------------------------------------------------------------------ --overwrite and the manifest

def test_a_run_leaves_a_manifest_naming_what_it_wrote(shapes_voc, tmp_path):
    out = tmp_path / "out"
    assert main(_convert(shapes_voc, out)) == 0
    m = json.loads((out / MANIFEST).read_text())
    assert m["tool"] == "dsprep" and m["command"] == "convert" and m["version"] == dsprep.__version__
    assert m["entries"] == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    assert m["entries"] == ["annotations", "category_map.json", "train", "val"]
    assert dsprep.parse("coco", out).num_objects() == dsprep.parse("voc", shapes_voc).num_objects()


def test_overwrite_refuses_a_folder_dsprep_did_not_write(shapes_voc, tmp_path, capsys):
    home = tmp_path / "home"  # a home-like folder
    (home / "Documents").mkdir(parents=True)
    (home / ".bashrc").write_text("export X=1\n")
    (home / "notes.txt").write_text("mine")
    before = _snapshot(home)
    assert main(_convert(shapes_voc, home, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "3 entries (.bashrc, Documents, notes.txt)" in err and MANIFEST in err
    assert _snapshot(home) == before


def test_overwrite_refuses_a_dsprep_folder_holding_something_else(shapes_voc, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_convert(shapes_voc, out)) == 0
    (out / "my-notes.txt").write_text("mine")
    assert main(_convert(shapes_voc, out, "--overwrite")) == 2
    assert "my-notes.txt" in capsys.readouterr().err
    assert (out / "my-notes.txt").read_text() == "mine"


def test_overwrite_replaces_what_dsprep_wrote_for_convert_split_and_synth(shapes_voc, tmp_path):
    for argv in (_convert(shapes_voc, tmp_path / "c"),
                 ["split", "voc", str(shapes_voc), "--ratios", "a=0.5,b=0.5", "--out", str(tmp_path / "s"),
                  "--quiet"],
                 ["synth", "coco", str(tmp_path / "y"), "--num-images", "4", "--size", "16"]):
        assert main(argv) == 0
        assert main(argv) == 2  # exists
        assert main(argv + ["--overwrite"]) == 0
    assert json.loads((tmp_path / "s" / MANIFEST).read_text())["command"] == "split"
    assert json.loads((tmp_path / "y" / MANIFEST).read_text())["command"] == "synth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "s", "y"]  # no temporary or lock left


def test_a_file_or_a_symlink_as_out_is_refused(shapes_voc, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(_convert(shapes_voc, tmp_path / "file", "--overwrite")) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(_convert(shapes_voc, tmp_path / "real")) == 0
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert main(_convert(shapes_voc, tmp_path / "link", "--overwrite")) == 2
    assert "is a symlink" in capsys.readouterr().err and (tmp_path / "link").is_symlink()


def test_an_empty_existing_folder_is_used_without_overwrite(shapes_voc, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(_convert(shapes_voc, tmp_path / "empty")) == 0
    assert (tmp_path / "empty" / MANIFEST).is_file()


# ------------------------------------------------------------------------------ where OUT may be

def _coco_tree(tmp_path: Path) -> Path:
    """``d/annotations/instances_train.json`` with its images in ``d/train/``."""
    root = tmp_path / "d"
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (8, 6), (9, 9, 9)).save(root / "train" / "a.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 2], "area": 6,
                            "iscrowd": 0, "segmentation": []}],
           "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    return root


def test_out_may_not_be_the_image_folder_a_json_points_at(tmp_path, capsys):
    # issue 10: `convert coco ann/instances_train.json --to coco --out <its image folder> --overwrite`
    # exited 0 with the images gone
    from dsprep._outdir import write_manifest

    root = _coco_tree(tmp_path)
    js = root / "annotations" / "instances_train.json"
    before = _snapshot(root)
    assert main(["convert", "coco", str(js), "--to", "coco", "--out", str(root / "train"), "--overwrite",
                 "--quiet"]) == 2
    assert "no dsprep-manifest.json" in capsys.readouterr().err
    write_manifest(root / "train", "convert")  # as if dsprep had written the image folder: still an input
    before = _snapshot(root)
    assert main(["convert", "coco", str(js), "--to", "coco", "--out", str(root / "train"), "--overwrite",
                 "--quiet"]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert _snapshot(root) == before
    # a loose JSON: its folder holds its images; OUT inside it is refused before anything is read
    (tmp_path / "ann").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "ann" / "a.jpg")
    (tmp_path / "ann" / "x.json").write_text(js.read_text())
    assert main(["convert", "coco", str(tmp_path / "ann" / "x.json"), "--to", "coco", "--out",
                 str(tmp_path / "ann" / "out"), "--quiet"]) == 2
    assert "is inside the input" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "ann")) == ["a.jpg", "x.json"]


def test_out_may_not_be_another_split_of_the_input(tmp_path, capsys):
    # issue 10: `convert imagenet ds/val --to imagenet --out ds/train --overwrite` replaced the train split
    from tests.fakes_imagenet import make_tree

    make_tree(tmp_path / "ds")
    before = _snapshot(tmp_path / "ds")
    assert main(["convert", "imagenet", str(tmp_path / "ds" / "val"), "--to", "imagenet", "--out",
                 str(tmp_path / "ds" / "train"), "--overwrite", "--quiet"]) == 2
    assert "no dsprep-manifest.json" in capsys.readouterr().err
    assert _snapshot(tmp_path / "ds") == before


def test_out_may_not_hold_the_input_nor_be_the_working_directory(shapes_voc, tmp_path, monkeypatch, capsys):
    before = _snapshot(shapes_voc)
    assert main(_convert(shapes_voc, shapes_voc.parent, "--overwrite")) == 2  # a parent of the input
    assert "would replace the input" in capsys.readouterr().err
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", str(work)):
        assert main(_convert(shapes_voc, out, "--overwrite")) == 2
        assert "current directory" in capsys.readouterr().err
    assert main(["synth", "voc", ".", "--overwrite"]) == 2
    assert "current directory" in capsys.readouterr().err
    assert os.listdir(work) == [] and _snapshot(shapes_voc) == before


def test_out_inside_the_input_through_a_symlink_is_refused(shapes_voc, tmp_path, capsys):
    os.symlink(shapes_voc, tmp_path / "alias")
    for out in (tmp_path / "alias" / "new", tmp_path / "alias"):
        assert main(_convert(shapes_voc, out, "--overwrite")) == 2
        assert "input" in capsys.readouterr().err
    assert not (shapes_voc / "new").exists()
    # and the other way round: a link inside the input that leads out is still a path in the input
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", shapes_voc / "exit")
    try:
        assert main(_convert(shapes_voc, shapes_voc / "exit" / "new")) == 2
        assert "is inside the input" in capsys.readouterr().err
    finally:
        (shapes_voc / "exit").unlink()
    assert os.listdir(tmp_path / "elsewhere") == []


def test_out_may_not_be_a_folder_that_linked_images_point_into(shapes_voc, tmp_path, capsys):
    # A (copies) -> B (links into A): B's images live in A, so A is an input of a B conversion
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_convert(shapes_voc, a, "--images", "copy")) == 0
    assert main(_convert(a, b, "--images", "link", fmt="coco", to="voc")) == 0
    before = _snapshot(a)
    assert main(_convert(b, a, "--overwrite", "--images", "copy")) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert _snapshot(a) == before


def test_train_refuses_an_existing_out_unless_resume_or_overwrite(shapes_voc, tmp_path, monkeypatch):
    # issue 10: `train` wrote into an existing folder silently. The epochs are stubbed out: what is
    # tested is train()'s handling of OUT (tests/test_train.py trains for real)
    import dsprep.train as T

    def fake_run(train_ds, val_ds, cfg, echo, device, rank, world):
        for name in ("last.pt", "curves.png"):
            (Path(cfg.out) / name).write_bytes(b"x")
        return {"out": cfg.out}

    monkeypatch.setattr(T, "_train", fake_run)
    ds = dsprep.parse("voc", shapes_voc)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(dsprep.OutputExistsError, match="thesis.tex" if kw else "already exists"):
            T.train(ds, None, T.TrainConfig(task="crops", out=str(mine), **kw))
    assert os.listdir(mine) == ["thesis.tex"]
    with pytest.raises(dsprep.OutputExistsError, match="inside the input"):
        T.train(ds, None, T.TrainConfig(task="crops", out=str(shapes_voc / "run")))
    assert not (shapes_voc / "run").exists()
    out = tmp_path / "run"
    T.train(ds, None, T.TrainConfig(task="crops", out=str(out)))
    assert json.loads((out / MANIFEST).read_text())["command"] == "train"
    with pytest.raises(dsprep.OutputExistsError, match="already exists"):
        T.train(ds, None, T.TrainConfig(task="crops", out=str(out)))
    T.train(ds, None, T.TrainConfig(task="crops", out=str(out), resume=True))  # continued in place
    (out / "curves.png").unlink()  # what a run wrote is replaced whole, partial or not
    (out / "confusion.csv").write_text("an earlier run's")
    T.train(ds, None, T.TrainConfig(task="crops", out=str(out), overwrite=True))
    assert sorted(os.listdir(out)) == ["curves.png", MANIFEST, "last.pt"]
    # refused before parsing
    assert main(["train", "voc", str(shapes_voc), "--task", "crops", "--out", str(mine), "--quiet"]) == 2
    # under torchrun every rank checks OUT before any rank writes (rank 0 alone claims it)
    monkeypatch.setattr(T, "_dist_setup", lambda device: (1, 2))
    with pytest.raises(dsprep.OutputExistsError, match="already exists"):
        T.train(ds, None, T.TrainConfig(task="crops", out=str(mine)))
    assert os.listdir(mine) == ["thesis.tex"]


# ------------------------------------------------------------------------------ interrupted and concurrent runs

def _blocking_voc(tmp_path: Path) -> Path:
    """A VOC tree whose first SegmentationClass mask is a FIFO: a VOC -> VOC conversion copies
    masks while writing OUT, so it blocks there, holding OUT, until the FIFO gets a writer."""
    src = tmp_path / "src"
    synth("voc", src, images=4, seed=1, size=16)
    first = sorted((src / "SegmentationClass").iterdir())[0]
    first.unlink()
    os.mkfifo(first)
    return src


def _start(argv: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "dsprep", *argv], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)


def _wait_for(cond, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _temps(parent: Path, name: str = "out") -> list[str]:
    return sorted(p for p in os.listdir(parent) if p.startswith(f".{name}."))


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text()


pytestmark_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")


@pytestmark_fifo
def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    src = _blocking_voc(tmp_path)
    run = _start(["convert", "voc", str(src), "--to", "voc", "--out", "out", "--quiet"], tmp_path, "run")
    try:
        _wait_for(lambda: any(".tmp-" in t for t in _temps(tmp_path)), "the temporary folder")
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=DEADLINE) == 128 + signal.SIGTERM
    finally:
        run.kill()
        run.wait()
    assert _temps(tmp_path) == [] and not (tmp_path / "out").exists()  # no .out.tmp-*, no .out.lock
    assert "terminated" in _log(tmp_path, "run")


@pytestmark_fifo
def test_a_killed_runs_temporary_folder_is_removed_by_the_next_run(tmp_path):
    src = _blocking_voc(tmp_path)
    argv = ["convert", "voc", str(src), "--to", "voc", "--out", "out", "--quiet"]
    run = _start(argv, tmp_path, "killed")
    try:
        _wait_for(lambda: any((tmp_path / t / MANIFEST).is_file() for t in _temps(tmp_path)),
                  "the temporary folder and its manifest")
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait()
    stale = [t for t in _temps(tmp_path) if ".tmp-" in t]
    assert len(stale) == 1 and (tmp_path / stale[0] / MANIFEST).is_file()
    # a folder that only looks like one, without a manifest, is not ours to remove; an empty one
    # (a run killed between its mkdir and its manifest) is
    (tmp_path / ".out.tmp-0123abcd").mkdir()
    (tmp_path / ".out.tmp-0123abcd" / "precious.txt").write_text("x")
    (tmp_path / ".out.tmp-feedf00d").mkdir()
    old = tmp_path / ".out.old-00c0ffee"  # a previous OUT moved aside by a run killed before it deleted it
    old.mkdir()
    (old / MANIFEST).write_text(json.dumps({"tool": "dsprep", "command": "convert", "entries": []}))
    fifo = sorted((src / "SegmentationClass").iterdir())[0]
    fifo.unlink()
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="P").save(fifo)
    run = _start(argv, tmp_path, "next")
    assert run.wait(timeout=DEADLINE) == 0
    text = _log(tmp_path, "next")
    assert f"removed {tmp_path / stale[0]}, left by an interrupted dsprep run" in text
    assert f"removed {tmp_path / '.out.tmp-feedf00d'}, left by an interrupted dsprep run" in text
    assert f"removed {old}, left by an interrupted dsprep run" in text
    assert "0123abcd looks like an interrupted run's temporary folder but holds no" in text
    assert _temps(tmp_path) == [".out.tmp-0123abcd"] and (tmp_path / "out" / MANIFEST).is_file()


@pytestmark_fifo
def test_two_runs_on_one_out_one_proceeds_the_other_gets_a_named_error(tmp_path):
    src = _blocking_voc(tmp_path)
    argv = ["convert", "voc", str(src), "--to", "voc", "--out", "out", "--quiet"]
    first = _start(argv, tmp_path, "first")
    second = None
    try:
        _wait_for(lambda: any(".tmp-" in t for t in _temps(tmp_path)), "the first run's temporary folder")
        second = _start(argv + ["--overwrite"], tmp_path, "second")
        assert second.wait(timeout=DEADLINE) == 2
        text = _log(tmp_path, "second")
        assert "is being written by another dsprep run right now" in text and f"pid {first.pid}" in text
        assert first.poll() is None  # the first run still holds OUT
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=DEADLINE) == 128 + signal.SIGTERM
    finally:
        for run in (first, second):
            if run is not None:
                run.kill()
                run.wait()
    assert _temps(tmp_path) == [] and not (tmp_path / "out").exists()


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "mkfifo"),
                    reason="reads the process table from /proc")
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    # 130 VOC XMLs parse in three chunks over two workers; the first XML of each of the first
    # two chunks is a FIFO, so each worker blocks opening it: the parent waits on the pool
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    for i in range(130):
        (root / "Annotations" / f"{i:04d}.xml").write_text(
            "<annotation><size><width>8</width><height>6</height></size></annotation>")
    fifos = [root / "Annotations" / "0000.xml", root / "Annotations" / "0064.xml"]
    for f in fifos:
        f.unlink()
        os.mkfifo(f)
    run = _start(["info", "voc", str(root), "--workers", "2", "--json"], tmp_path, "info")
    workers: list[int] = []
    try:
        _wait_for(lambda: len(_children(run.pid)) >= 2, "two pool workers")
        workers = _children(run.pid)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=DEADLINE)
        _wait_for(lambda: not any(_alive(w) for w in workers), "the workers to die with their parent")
    finally:
        run.kill()
        run.wait()
        for w in workers:  # only on failure: free the blocked workers this test started
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_show_and_eval_never_write_into_the_dataset(shapes_voc, tmp_path, capsys):
    before = _snapshot(shapes_voc)
    image = sorted((shapes_voc / "JPEGImages").iterdir())[0]
    assert main(["show", "voc", str(shapes_voc), "--out", str(image), "-n", "2"]) == 2  # would overwrite an image
    assert "inside the input" in capsys.readouterr().err
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    assert main(["eval", "detection", "voc", str(shapes_voc), str(dets), "--out", str(shapes_voc / "pr")]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert _snapshot(shapes_voc) == before
    assert main(["show", "voc", str(shapes_voc), "--out", str(tmp_path / "grid.png"), "-n", "2"]) == 0


def test_a_writer_called_again_on_a_deleted_and_remade_folder_writes_everything(shapes_voc, tmp_path):
    # In one process (a notebook, a test): write, delete the output, write to the same path
    # again. Remembered output folders must not be trusted once they are gone (the fuzzer found
    # the second write failing with a raw FileNotFoundError).
    import shutil

    from dsprep.formats import get_format
    ds = dsprep.parse("voc", shapes_voc, progress=False)
    dest = tmp_path / "again"
    for _ in range(2):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir()
        get_format("voc").write(ds, dest, images="none", progress=False)
        assert len(list((dest / "Annotations").glob("*.xml"))) == len(ds.records)


def test_an_output_name_past_255_bytes_is_a_named_error(tmp_path):
    """The backstop under every writer: no OSError 'File name too long' from a name the data gave."""
    from dsprep._paths import output_path
    from dsprep.errors import InvalidAnnotationError

    assert output_path(tmp_path, "a/" + "x" * 251 + ".txt").parent.is_dir()  # 255 bytes: fine
    with pytest.raises(InvalidAnnotationError, match=r"is 256 bytes; a file system holds 255 bytes a name"):
        output_path(tmp_path, "a/" + "x" * 252 + ".txt", what="label file")
    with pytest.raises(InvalidAnnotationError, match=r"is 260 bytes"):  # bytes, not characters: 130 x 2
        output_path(tmp_path, "\u00e9" * 130 + "/a.txt", folder=False)
