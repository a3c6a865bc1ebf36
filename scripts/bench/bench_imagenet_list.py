"""Listing an ImageNet-shaped tree: dsprep's imagenet.parse against a bare os.scandir walk.

Generates ``--classes`` folders x ``--per-class`` empty ``.JPEG`` files (1,000 x 100 by
default) in a temporary folder, then times, interleaved, best of ``--repeat``:

- floor: a bare ``os.scandir`` walk, the least any listing does: the sorted class
  folders, one ``scandir`` per folder, and a ``(path, class index)`` tuple per file
  (torchvision's ``make_dataset`` minus its extension check and sorting);
- ours: ``dsprep.formats.imagenet.parse(root)``, which returns a ``Dataset`` with one
  ``Record`` per image (id, path, label, split), sorted per folder, extensions checked.

The page cache is warm for both (the tree was just written), so this measures
the CPU cost of listing, the part a library adds. parse pauses the cyclic
garbage collector while it builds records; the collection it defers (one
pass over the new objects) is timed too: each timing ends with
``gc.collect(1)``, for the floor as well. Run from the repository root::

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where to make the tree (default: a temporary folder)")
    args = ap.parse_args()

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="dsprep-bench-imagenet-"))
    try:
        t0 = time.perf_counter()
        make_tree(tmp, args.classes, args.per_class)
        n = args.classes * args.per_class
        print(f"tree: {args.classes} folders x {args.per_class} empty files = {n} in "
              f"{time.perf_counter() - t0:.1f} s at {tmp}")
        train = str(tmp / "train")
        times: dict[str, list[float]] = {"floor": [], "ours": []}
        for _ in range(args.repeat):
            for name, fn in (("floor", lambda: floor(train)), ("ours", lambda: imagenet.parse(tmp))):
                gc.collect()
                t = time.perf_counter()
                out = fn()
                gc.collect(1)
                times[name].append(time.perf_counter() - t)
                assert len(out) == n, (name, len(out))  # a benchmark sanity check, not input validation
                del out
        for name, ts in times.items():
            print(f"{name:6s} best {min(ts) * 1e3:7.1f} ms  median {statistics.median(ts) * 1e3:7.1f} ms  "
                  f"({n / min(ts) / 1e6:.2f} M files/s)")
        ratio_best = min(times["ours"]) / min(times["floor"])
        ratio_med = statistics.median(times["ours"]) / statistics.median(times["floor"])
        print(f"ours / floor: best {ratio_best:.2f}x, median {ratio_med:.2f}x (target <= 1.3x)")
        print("load:", os.getloadavg())
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
