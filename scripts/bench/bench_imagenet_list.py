"""Listing an ImageNet-shaped tree: dsprep's imagenet.parse against a bare os.scandir walk.

Generates ``--classes`` folders x ``--per-class`` empty ``.JPEG`` files (1,000 x 100 by
default) in a temporary folder, then times, interleaved, best of ``--repeat``:

- floor: a bare ``os.scandir`` walk, the least any listing does: the sorted class
  folders, one ``scandir`` per folder, and a ``(path, class index)`` tuple per file
  (torchvision's ``make_dataset`` minus its extension check and sorting);
- ours: ``dsprep.formats.imagenet.parse(root)``: scans, filters (extensions, dot
  files, nested folders) and sorts every folder and returns a ``Dataset`` whose
  records are a compact listing (per folder: prefix, sorted names, label), built
  into ``Record`` objects on first use of ``ds.records`` (``LazyRecords``);
- ours+paths: parse, then ``ds.column("path")`` and ``ds.column("label")``: the
  floor's output (a path string and a label per file), as the loaders read it;
- ours+records: parse, then ``ds.records``: a ``Record`` per image built.

It also reports the memory the returned Dataset holds (``tracemalloc``), listed
and with its records built.

The page cache is warm for both (the tree was just written), so this measures
the CPU cost of listing, the part a library adds. parse pauses the cyclic
garbage collector while it builds records; the collection it defers (one
pass over the new objects) is timed too: each timing ends with
``gc.collect(1)``, for the floor as well.

Both wall time and this process's CPU time (``time.process_time``) are
reported; on a shared machine the CPU time is the steadier of the two, since
it does not count the time the process waited for a core. Run from the
repository root::

    python scripts/bench/bench_imagenet_list.py [--classes 1000] [--per-class 100] [--repeat 7]
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dsprep._io import gc_paused  # noqa: E402
from dsprep.formats import imagenet  # noqa: E402


def make_tree(root: Path, classes: int, per_class: int) -> None:
    for c in range(classes):
        wnid = f"n{c:08d}"
        d = root / "train" / wnid
        d.mkdir(parents=True)
        for k in range(per_class):
            open(d / f"{wnid}_{k + 1}.JPEG", "wb").close()


def floor(root: str) -> list:
    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir())
    samples = []
    for i, c in enumerate(classes):
        with os.scandir(os.path.join(root, c)) as it:
            for e in it:
                if e.is_file():
                    samples.append((e.path, i))
    return samples


def staged(root: str, stage: int) -> list:
    """A listing loop cut short, for ``--breakdown``: 1 = scandir, filter and sort the names
    (what parse does per folder); 2 = also build each record's id and path strings;
    3 = also the Record objects (2 and 3: what building ``ds.records`` adds)."""
    from dsprep.formats.imagenet import _COMMON_SUFFIXES, _ListedRecord

    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir())
    out: list = []
    ids: list = []
    new = object.__new__
    for label, c in enumerate(classes):
        rel = f"train/{c}/"
        with os.scandir(os.path.join(root, c)) as it:
            entries = list(it)
        names = [e.name for e in entries if not e.is_dir()]
        images = [n for n in names if n.endswith(_COMMON_SUFFIXES)]
        images.sort()
        if stage == 1:
            out += images
            continue
        paths = [rel + n for n in images]
        folder_ids = [p[:p.rfind(".")] for p in paths]
        ids += folder_ids
        if stage == 2:
            out += paths
            continue
        for rid, path in zip(folder_ids, paths):
            r = new(_ListedRecord)
            r.id, r.path, r.split, r.label = rid, path, "train", label
            out.append(r)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time parse's listing loop cut short after each stage (CPU time)")
    ap.add_argument("--dir", default=None, help="where to make the tree, kept afterwards and reused "
                                                "(default: a temporary folder, removed)")
    args = ap.parse_args()

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="dsprep-bench-imagenet-"))
    try:
        t0 = time.perf_counter()
        n = args.classes * args.per_class
        if (tmp / "train").is_dir():  # --dir with a tree from an earlier run
            print(f"tree: reusing {tmp}")
        else:
            make_tree(tmp, args.classes, args.per_class)
            print(f"tree: {args.classes} folders x {args.per_class} empty files = {n} in "
                  f"{time.perf_counter() - t0:.1f} s at {tmp}")
        train = str(tmp / "train")
        def with_paths():
            ds = imagenet.parse(tmp)
            return list(zip(ds.column("path"), ds.column("label")))

        def with_records():
            return imagenet.parse(tmp).records

        runs = {"floor": lambda: floor(train), "ours": lambda: imagenet.parse(tmp),
                "ours+paths": with_paths, "ours+records": with_records}
        wall: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for name, fn in runs.items():
                gc.collect()
                t, c = time.perf_counter(), time.process_time()
                out = fn()
                gc.collect(1)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                if len(out) != n:
                    raise SystemExit(f"{name} listed {len(out)} files, expected {n}")
                del out
        for label, times in (("wall", wall), ("cpu", cpu)):
            for name, ts in times.items():
                ratio = "" if name == "floor" else (
                    f"  {min(ts) / min(times['floor']):.2f}x best, "
                    f"{statistics.median(ts) / statistics.median(times['floor']):.2f}x median")
                print(f"{label:4s} {name:12s} best {min(ts) * 1e3:7.1f} ms  median "
                      f"{statistics.median(ts) * 1e3:7.1f} ms  ({n / min(ts) / 1e6:.2f} M files/s){ratio}")
        print("target: ours (the listing) <= 1.3x the floor")
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        ds = imagenet.parse(tmp)
        listed = tracemalloc.get_traced_memory()[0] - base
        ds.records
        built = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del ds
        print(f"memory held by the Dataset: {listed / 2**20:.1f} MiB listed, {built / 2**20:.1f} MiB with its "
              f"records built ({listed / n:.0f} / {built / n:.0f} bytes per image)")
        if args.breakdown:
            stages = {1: "scandir + filter + sort names", 2: "+ id and path strings", 3: "+ Record objects"}
            best = {k: float("inf") for k in stages}
            for _ in range(args.repeat):
                for k in stages:
                    gc.collect()
                    c = time.process_time()
                    with gc_paused():
                        out = staged(train, k)
                    gc.collect(1)
                    best[k] = min(best[k], time.process_time() - c)
                    del out
            for k, label in stages.items():
                print(f"cpu  stage {k} {label:32s} best {best[k] * 1e3:7.1f} ms  "
                      f"{best[k] / min(cpu['floor']):.2f}x the floor")
        print("load average (1, 5, 15 min):", os.getloadavg())
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
