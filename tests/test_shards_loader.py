"""The shards stream: the file loader's samples, shuffling, ranks and workers, exact resume,
HTTP with retries, corrupt and truncated shards, and webdataset reading the same shards."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dsprep
from dsprep import _shardio as sio
from dsprep.errors import MalformedFileError, ReadError, UnknownNameError
from dsprep.loading import ShardStream, StreamLoader
from dsprep.loading.shards import buffer_order
from fakes_shards import corrupt_member, open_shards, write_shards
from fakes_voc import make_voc
from test_loaders import make_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """10 tiny JPEGs with boxes, polygons, RLE and masks, in shards of 3 (4 shards)."""
    root = tmp_path_factory.mktemp("shards")
    ds = make_dataset(root, n=10)
    index = write_shards(ds, root / "out", per_shard=3)
    return ds, root / "out", index


def _ids(loader):
    return [list(t["image_id"]) if isinstance(t, dict) else [x["image_id"] for x in t] for _, t in loader]


def _same_batches(a, b):
    assert len(a) == len(b)
    for (x, t), (y, u) in zip(a, b):
        assert torch.equal(x, y)
        if isinstance(t, dict):
            assert t.keys() == u.keys()
            for k in t:
                assert (torch.equal(t[k], u[k]) if isinstance(t[k], torch.Tensor) else t[k] == u[k]), k
        else:
            for p, q in zip(t, u):
                assert p.keys() == q.keys()
                for k in p:
                    assert (torch.equal(p[k], q[k]) if isinstance(p[k], torch.Tensor) else p[k] == q[k]), k


# --------------------------------------------------------------------------- same samples as files

@pytest.mark.parametrize("task,options", [("classification", {}), ("detection", {"masks": True}),
                                          ("segmentation", {"crop_size": 16})])
def test_stream_gives_the_file_loaders_batches_augmentation_included(shards, task, options):
    ds, out, _ = shards
    kw = dict(task=task, augment="default", shuffle=False, num_workers=0, seed=3, **options)
    files = list(ds.loader(4, **kw))
    stream = open_shards(out, "train").loader(4, **kw)
    assert isinstance(stream, StreamLoader) and len(stream) == 3
    _same_batches(files, list(stream))


def test_a_shuffled_sample_is_augmented_as_the_file_loader_augments_it(shards):
    ds, out, _ = shards
    tds = ds.torch(task="detection", augment="default", seed=5)
    index = {r.id: i for i, r in enumerate(ds.records)}
    loader = open_shards(out, "train").loader(3, task="detection", augment="default", seed=5, num_workers=0,
                                              shuffle_buffer=4)
    for epoch in (0, 1):
        seen = []
        for images, targets in loader:
            for k, t in enumerate(targets):
                image, want = tds[(epoch, index[t["image_id"]])]
                h, w = want["size"].tolist()
                assert torch.equal(images[k, :, :h, :w], image)
                assert torch.equal(t["boxes"], want["boxes"]) and torch.equal(t["labels"], want["labels"])
                seen.append(t["image_id"])
        assert sorted(seen) == sorted(index)  # each sample once an epoch
        assert seen != sorted(seen, key=index.get)  # and shuffled


def test_shuffling_is_seeded_by_seed_and_epoch(shards):
    _, out, _ = shards
    sds = open_shards(out, "train")
    a = sds.loader(2, task="classification", augment="default", seed=1, num_workers=0)
    b = sds.loader(2, task="classification", augment="default", seed=1, num_workers=0)
    c = sds.loader(2, task="classification", augment="default", seed=2, num_workers=0)
    ea, eb, ec = [_ids(a), _ids(a)], [_ids(b), _ids(b)], [_ids(c), _ids(c)]
    assert ea == eb
    assert ea[0] != ea[1] and ea[0] != ec[0]


def test_two_workers_read_disjoint_samples_of_whole_batches(shards):
    _, out, _ = shards
    loader = open_shards(out, "train").loader(2, task="classification", augment="default", seed=0, num_workers=2)
    batches = _ids(loader)
    assert [len(b) for b in batches] == [2] * 5
    assert sorted(i for b in batches for i in b) == sorted(f"img_{i}" for i in range(10))


# --------------------------------------------------------------------------- ranks

@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_gets_the_same_number_of_samples_and_batches(shards, drop_last):
    _, out, _ = shards
    sds = open_shards(out, "train")
    per_rank = []
    for rank in range(3):
        stream = ShardStream(sds, task="classification", batch_size=2, drop_last=drop_last, shuffle=True,
                             num_replicas=3, rank=rank, seed=4)
        loader = StreamLoader(stream, num_workers=0)
        per_rank.append([i for b in _ids(loader) for i in b])
        assert len(loader) == (1 if drop_last else 2)
    sizes = [len(p) for p in per_rank]
    everyone = [i for p in per_rank for i in p]
    if drop_last:  # 10 // 3 = 3 each, in whole batches of 2: 2; the remainder dropped
        assert sizes == [2, 2, 2] and len(set(everyone)) == 6
    else:  # ceil(10 / 3) = 4 each; 2 samples repeated from the start of the epoch's order
        assert sizes == [4, 4, 4] and set(everyone) == {f"img_{i}" for i in range(10)}
        assert len(everyone) - len(set(everyone)) == 2


def test_rank_positions_are_contiguous_runs_of_the_permuted_shards(shards):
    _, out, index = shards
    sds = open_shards(out, "train")
    one = ShardStream(sds, task="classification", shuffle=True, seed=9).rank_positions(0)
    seqs = [ShardStream(sds, task="classification", shuffle=True, num_replicas=3, rank=r, seed=9).rank_positions(0)
            for r in range(3)]
    # ranks take consecutive parts of the one epoch sequence; the last one's tail wraps to its start
    assert np.array_equal(np.concatenate(seqs), one[np.arange(12) % 10])
    plain = [ShardStream(sds, task="classification", num_replicas=3, rank=r).rank_positions(0) for r in range(3)]
    assert [p.tolist() for p in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    whole = one
    assert sorted(whole.tolist()) == list(range(10))
    sizes = [sh["samples"] for sh in index["shards"]]  # 3, 3, 3, 1: runs of a shard stay together
    shard_of = np.searchsorted(np.cumsum([0] + sizes), whole, side="right") - 1
    assert len(np.flatnonzero(np.diff(shard_of))) == 3  # 4 shards, each read in one run
    assert not np.array_equal(shard_of, np.sort(shard_of))  # in a permuted order


def test_buffer_order_is_a_seeded_permutation_within_reach():
    rng = np.random.default_rng(0)
    items = np.arange(100)
    out = buffer_order(items, 10, rng)
    assert sorted(out.tolist()) == list(range(100))
    # an item leaves no earlier than it entered minus the buffer: the k-th out was read by k + 10
    assert all(v <= k + 10 for k, v in enumerate(out.tolist()))
    assert np.array_equal(out, buffer_order(items, 10, np.random.default_rng(0)))


# --------------------------------------------------------------------------- resume

@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_remaining_batches(shards, workers):
    _, out, _ = shards
    sds = open_shards(out, "train")
    kw = dict(task="detection", augment="default", seed=7, num_workers=workers, shuffle=True, shuffle_buffer=3)
    full = sds.loader(2, **kw)
    list(full)  # epoch 0
    whole = list(full)  # epoch 1, uninterrupted
    first = sds.loader(2, **kw)
    list(first)
    it = iter(first)
    head = [next(it), next(it)]
    state = first.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 2)
    del it
    again = sds.loader(2, **kw)
    again.load_state_dict(json.loads(json.dumps(state)))  # a state survives JSON (a checkpoint)
    rest = list(again)
    _same_batches(head + rest, whole)
    assert again.state_dict()["epoch"] == 2 and again.state_dict()["batches"] == 0


def test_resume_refuses_a_state_from_other_settings(shards):
    _, out, _ = shards
    sds = open_shards(out, "train")
    state = sds.loader(2, task="classification", num_workers=0).state_dict()
    with pytest.raises(ValueError, match=r"num_workers=0 \(here 2\)"):
        sds.loader(2, task="classification", num_workers=2).load_state_dict(state)


DDP_SCRIPT = """
import json, sys
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from fakes_shards import open_shards
dist.init_process_group("gloo")
sds = open_shards({out!r}, "train")
kw = dict(task="classification", augment="default", seed=3, num_workers=0)
def ids(batches):
    return [list(t["image_id"]) for _, t in batches]
loader = sds.loader(3, **kw)
whole = ids(loader)
part = sds.loader(3, **kw)
it = iter(part)
head = [next(it)]
state = part.state_dict()
resumed = sds.loader(3, **kw)
resumed.load_state_dict(state)
rest = ids(resumed)
result = {{"rank": dist.get_rank(), "len": len(loader), "whole": whole, "resumed": ids(head) + rest}}
with open({results!r} + f"/rank{{dist.get_rank()}}.json", "w") as f:  # not stdout: two ranks' lines interleave
    json.dump(result, f)
dist.barrier()
dist.destroy_process_group()
"""


def test_two_ranks_under_torchrun_read_disjoint_equal_parts_and_resume(shards, tmp_path):
    _, out, _ = shards
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests"), out=str(out), results=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    results = {r["rank"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob("rank*.json"))}
    assert sorted(results) == [0, 1]
    assert results[0]["len"] == results[1]["len"] == 2  # 5 samples each, batches of 3
    ids = [i for r in results.values() for b in r["whole"] for i in b]
    assert sorted(ids) == sorted(f"img_{i}" for i in range(10))  # disjoint, all of them
    for r in results.values():
        assert r["resumed"] == r["whole"]


# --------------------------------------------------------------------------- over HTTP

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range requests; fails or cuts short the first requests when told."""

    plan: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        plan = self.server.plan
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data)
        rng = self.headers.get("Range")
        if rng:
            a, _, b = rng.split("=", 1)[1].partition("-")
            start, end = int(a), min(len(data), int(b) + 1 if b else len(data))
        with plan["lock"]:
            plan["requests"] += 1
            fail = plan["fail"] > 0 and path.suffix == ".tar"
            cut = not fail and plan["cut"] > 0 and path.suffix == ".tar"
            plan["fail"] -= fail
            plan["cut"] -= cut
        if fail:
            self.send_error(503)
            return
        body = data[start:end]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if cut else body)
        if cut:
            self.close_connection = True


@contextlib.contextmanager
def _serve(folder):
    """``folder`` on http://127.0.0.1:<a free port>, in a thread."""
    handler = lambda *a, **k: _Handler(*a, directory=str(folder), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.plan = {"fail": 0, "cut": 0, "requests": 0, "lock": threading.Lock()}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def server(shards):
    with _serve(shards[1]) as served:
        yield served


def test_http_stream_equals_the_local_one(shards, server):
    ds, out, _ = shards
    _, url = server
    kw = dict(task="detection", augment="default", seed=2, num_workers=0, shuffle=True, retry_wait=0.01)
    _same_batches(list(open_shards(out, "train").loader(4, **kw)), list(open_shards(url, "train").loader(4, **kw)))


@pytest.mark.parametrize("kind", ["fail", "cut"])
def test_failed_and_cut_short_reads_are_retried(shards, server, kind):
    _, out, _ = shards
    httpd, url = server
    sds = open_shards(url, "train")
    kw = dict(task="classification", augment="none", num_workers=0, retry_wait=0.01)
    loader = sds.loader(5, **kw)
    httpd.plan[kind] = 3
    got = list(loader)
    assert httpd.plan[kind] == 0  # the three bad answers were met and retried
    _same_batches(got, list(open_shards(out, "train").loader(5, **kw)))


def test_a_shard_that_keeps_failing_is_named_with_its_url_and_last_error(shards, server):
    httpd, url = server
    loader = open_shards(url, "train").loader(5, task="classification", num_workers=0, shuffle=False, retries=2,
                                              retry_wait=0.01)
    httpd.plan["fail"] = 10**6
    with pytest.raises(ReadError) as err:
        list(loader)
    msg = str(err.value)
    assert "shard shards/train-00000-00000.tar" in msg and f"{url}/shards/train-00000-00000.tar" in msg
    assert "after 3 tries" in msg and "503" in msg


def test_a_url_without_fsspec_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setattr(sio, "_FS", {})
    with pytest.raises(ReadError, match=r"dsprep\[remote\]"):
        sio.read_bytes("http://127.0.0.1:9/x.tar", 0, 10)


# --------------------------------------------------------------------------- bad data

def test_a_corrupt_sample_is_skipped_and_counted_or_named(shards, tmp_path):
    ds, _, _ = shards
    index = write_shards(ds, tmp_path / "out", per_shard=3)
    corrupt_member(tmp_path / "out", index, shard=1, member=1)  # img_4
    sds = open_shards(tmp_path / "out", "train")
    loader = sds.loader(4, task="classification", num_workers=0, on_error="skip")
    ids = [i for b in _ids(loader) for i in b]
    assert len(ids) == 9 and "img_4" not in ids
    assert [(s.index, s.image_id) for s in loader.skipped] == [(4, "000004_img_4")]
    with pytest.raises(MalformedFileError, match=r"train-00000-00001\.tar/000004_img_4\.json: not valid JSON"):
        list(sds.loader(4, task="classification", num_workers=0))


def test_a_truncated_shard_skips_its_lost_samples_or_names_them(shards, tmp_path):
    ds, _, _ = shards
    out = tmp_path / "out"
    index = write_shards(ds, out, per_shard=3)
    tar = out / index["shards"][0]["path"]
    _, off, _ = index["shards"][0]["members"][2]
    tar.write_bytes(tar.read_bytes()[:off + 700])  # the third sample is cut in its image
    with _serve(out) as (_, url):
        for root in (out, url):
            kw = dict(task="classification", num_workers=0, retries=1, retry_wait=0.01)
            loader = open_shards(root, "train").loader(4, on_error="skip", **kw)
            ids = [i for b in _ids(loader) for i in b]
            assert len(ids) == 9 and "img_2" not in ids and len(loader.skipped) == 1
            with pytest.raises(MalformedFileError, match=r"train-00000-00000\.tar: sample '000002_img_2'.*cut short"):
                list(open_shards(root, "train").loader(4, **kw))


def test_crops_is_refused_with_the_reason(shards):
    _, out, _ = shards
    with pytest.raises(UnknownNameError, match="crops"):
        open_shards(out, "train").loader(2, task="crops")


# --------------------------------------------------------------------------- index and splits

@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_an_overlapping_split_reads_its_listed_samples(tmp_path, task):
    tree = make_voc(tmp_path, n=5, splits={"train": [0, 1, 2], "val": [3, 4], "trainval": [0, 1, 2, 3, 4]},
                    masks=True)
    ds = dsprep.load(format="voc", root=tree["root"])
    index = write_shards(ds, tmp_path / "out", per_shard=2, source_format="voc")
    assert list(index["samples"]) == ["trainval"] and len(index["shards"]) == 3
    kw = dict(task=task, augment="default", seed=1, num_workers=0, shuffle=False)
    loader = open_shards(tmp_path / "out", "trainval").loader(2, **kw)
    _same_batches(list(ds.subset("trainval").loader(2, **kw)), list(loader))


def test_read_index_refuses_what_is_not_a_shards_index(tmp_path):
    (tmp_path / "index.json").write_text('{"format": "coco"}')
    with pytest.raises(MalformedFileError, match="expected a dsprep shards index"):
        sio.read_index(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "dsprep-shards", "version": 2}')
    with pytest.raises(MalformedFileError, match="version 2"):
        sio.read_index(tmp_path)


def _edit(index, what):
    """A crafted or hand-edited index (found by hand: a negative offset reached the reader as
    OSError, a string length as TypeError)."""
    i = json.loads(json.dumps(index))
    sh = i["shards"][0]
    if what == "negative offset":
        sh["members"][1][1] = -512
    elif what == "string length":
        sh["members"][1][2] = "12"
    elif what == "member pair":
        sh["members"][1] = sh["members"][1][:2]
    elif what == "float bytes":
        sh["bytes"] = 1.5
    elif what == "negative split":
        i["splits"]["train"] = -3
    elif what == "duplicate category":
        i["categories"].append(dict(i["categories"][0]))
    elif what == "string category id":
        i["categories"][0]["id"] = "1"
    elif what == "info a list":
        i["info"] = [["a", 1, 2]]
    elif what == "shard name too long":
        sh["path"] = "shards/" + "x" * 300 + ".tar"
    elif what == "no path":
        del sh["path"]
    elif what == "member past the shard":
        sh["members"][1][2] = 2 ** 40
    elif what == "sample past the shard":
        i["samples"] = {"train": [[0, 99]]}
    return i


@pytest.mark.parametrize("what,match", [
    ("negative offset", r"each member must be \[key, offset, length\] with whole numbers >= 0, found \['"),
    ("string length", r"each member must be \[key, offset, length\]"),
    ("member pair", r"each member must be \[key, offset, length\]"),
    ("float bytes", r"'bytes' must be a whole number >= 0, found 1\.5"),
    ("negative split", r"split 'train': the count must be a whole number >= 0, found -3"),
    ("duplicate category", r"category ids must be unique"),  # was ValueError from Dataset
    ("string category id", r"each category must be \{\"id\": integer"),
    ("info a list", r"\"info\" must be a JSON object"),  # was TypeError / ValueError (fuzzer)
    ("shard name too long", r"(cannot read the shard named by index.json|File name too long)"),  # was OSError
    ("no path", r"shard 0: expected an object with a 'path' string and a 'members' list"),
    ("member past the shard", r"shard 0: a member reaches past the shard's \d+ bytes, found \['"),
    ("sample past the shard", r"expected \[shard, member\] of a listed member, found \[0, 99\]"),
])
def test_a_crafted_index_is_a_named_error_for_parse_and_stream(shards, tmp_path, what, match):
    import shutil

    _, out, index = shards
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "index.json").write_text(json.dumps(_edit(index, what)))
    with pytest.raises(MalformedFileError, match=match):
        dsprep.parse("shards", bad)
    with pytest.raises(MalformedFileError, match=match):
        list(dsprep.load(format="shards", root=bad, split="train").loader(2, num_workers=0))


def test_labels_that_are_no_category_of_the_index_are_named_or_skipped(shards, tmp_path):
    """Found by the fuzzer: an index whose categories lost an id the samples use parsed, and the
    COCO written from it was refused when read back ('unknown category_id')."""
    import shutil

    _, out, index = shards
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    i = json.loads(json.dumps(index))
    used = {c["id"] for c in i["categories"]} & {int(v) for r in dsprep.parse("shards", out).records
                                                  for v in r.instances.labels}
    gone = min(used)
    i["categories"] = [c for c in i["categories"] if c["id"] != gone]
    (bad / "index.json").write_text(json.dumps(i))
    with pytest.raises(dsprep.InvalidAnnotationError, match=rf"labels \[{gone}\] are not category ids of the index"):
        dsprep.parse("shards", bad)
    ds = dsprep.parse("shards", bad, on_error="warn")
    whole = dsprep.parse("shards", out)
    assert 0 < ds.info["skipped"] == sum(gone in r.instances.labels.tolist() for r in whole.records)
    assert len(ds) == len(whole) - ds.info["skipped"]
    assert all(gone not in r.instances.labels.tolist() for r in ds.records)


_SAMPLE = {"id": "a/x", "path": "a/x.jpg", "width": 8, "height": 6, "split": "train", "label": None,
           "instances": {"boxes": [[1, 1, 4, 5]], "labels": [1], "iscrowd": [False], "difficult": [False], "ids": [-1],
                         "area": [None], "segmentation": None, "keypoints": None, "extra": None}}


@pytest.mark.parametrize("change,match", [
    ({"id": 7}, r"id must be a string, found 7"),
    ({"path": ["a"]}, r"path must be a string"),
    ({"width": 2 ** 70}, r"width must be an integer 0\.\.2\^31 - 1"),  # was OverflowError in stats
    ({"height": -1}, r"height must be an integer"),
    ({"label": {"a": 1}}, r"label must be an integer or null"),  # was TypeError (unhashable)
    ({"split": ["train"]}, r"split must be a string or null"),  # was TypeError in the YOLO writer
    ({"source_id": [1]}, r"source_id must be an integer, a string or null"),
    ({"extra": 3}, r"extra must be an object"),
    ({"files": "mask.png"}, r"files must be an object of strings"),  # was AttributeError
    ({"mask_path": 5}, r"mask_path must be a string or null"),  # was TypeError in the path check
    ({"instances": {"boxes": [[1, 1, 4, 5]], "labels": [2 ** 64]}}, r"instances\.labels must be a list of integers"),
    ({"instances": {"boxes": [[1, 1, 4, 5]], "labels": [1], "extra": [3]}}, r"instances\.extra must be a list"),
    ({"instances": {"boxes": [[1e300, 0, -1e300, 1]], "labels": [1]}}, r"boxes must be finite \[x1, y1, x2, y2\]"),
    ({"instances": {"boxes": [[18, 2 ** 31, 31, 30]], "labels": [1]}}, r"within \+-2\^31 - 1"),
])
def test_a_sample_json_of_the_wrong_shape_is_named(change, match):
    """Found by the fuzzer (shards-sample: one sample's JSON member inside a real shard): each of these
    reached a reader or writer as a foreign exception, or was written and then refused back."""
    doc = {**json.loads(json.dumps(_SAMPLE)), **change}
    assert sio.record_from_sample(_SAMPLE, "s.json").instances.boxes.tolist() == [[1, 1, 4, 5]]
    with pytest.raises(dsprep.InvalidAnnotationError, match=match):
        sio.record_from_sample(doc, "shard.tar: member k.json")


def test_split_members_checks_the_counts(shards):
    _, _, index = shards
    assert sio.split_members(index, "train") == [(0, [0, 1, 2]), (1, [0, 1, 2]), (2, [0, 1, 2]), (3, [0])]
    bad = {**index, "splits": {"train": 11}}
    with pytest.raises(MalformedFileError, match="counts 11 samples, its shards hold 10"):
        sio.split_members(bad, "train")
    with pytest.raises(UnknownNameError, match="Did you mean 'train'"):
        sio.split_members(index, "trian")


# --------------------------------------------------------------------------- webdataset

def test_webdataset_reads_the_shards_unchanged(shards):
    import webdataset as wds

    ds, out, index = shards
    urls = [str(out / sh["path"]) for sh in index["shards"]]
    got = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in got] == [m[0] for sh in index["shards"] for m in sh["members"]]
    for s, r in zip(got, ds.records):
        assert s["json"]["id"] == r.id and s["json"]["instances"]["boxes"] == r.instances.boxes.tolist()
        assert np.array_equal(s["jpg"], np.asarray(Image.open(Path(ds.root) / r.path).convert("RGB")))
        assert np.array_equal(s["mask.png"], np.asarray(Image.open(Path(ds.root) / r.mask_path).convert("RGB")))


def test_load_hands_a_url_root_to_the_format_as_it_is(monkeypatch):
    seen = {}

    class Format:
        @staticmethod
        def parse(root, **options):
            seen.update(root=root, **options)
            return "parsed"

    monkeypatch.setattr(dsprep.catalog, "get_format", lambda name: Format)
    assert dsprep.load(format="shards", root="http://127.0.0.1:9/data", split="val") == "parsed"
    assert seen == {"root": "http://127.0.0.1:9/data", "split": "val"}
    with pytest.raises(dsprep.DatasetNotFoundError):  # a path is still looked for
        dsprep.load(format="shards", root="/no/such/folder")


def test_a_state_taken_after_the_last_batch_points_at_the_next_epoch(shards):
    _, out, _ = shards
    loader = open_shards(out, "train").loader(4, task="classification", num_workers=0)
    it = iter(loader)
    for _ in range(len(loader)):  # every batch taken, the epoch's iterator not yet at its end
        next(it)
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 0)


def test_a_dataset_whose_records_were_read_from_shards_streams_its_split(shards):
    ds, out, _ = shards
    # what formats.shards.parse returns: the records read, info["shard_files"], root = the folder
    parsed = dsprep.Dataset(ds.categories, ds.records, info={"shard_files": {}}, root=out, format="coco")
    kw = dict(task="classification", augment="default", seed=1, num_workers=0, shuffle=False)
    _same_batches(list(ds.loader(4, **kw)), list(parsed.subset("train").loader(4, **kw)))


def test_an_error_in_a_worker_reaches_the_user_as_the_same_dsprep_error(shards, tmp_path):
    ds, _, _ = shards
    index = write_shards(ds, tmp_path / "out", per_shard=3)
    corrupt_member(tmp_path / "out", index, shard=1, member=1)
    loader = open_shards(tmp_path / "out", "train").loader(2, task="classification", num_workers=2)
    with pytest.raises(MalformedFileError, match=r"000004_img_4\.json: not valid JSON"):
        list(loader)
