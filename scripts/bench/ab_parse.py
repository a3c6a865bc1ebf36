"""Parse speed of two versions of dsprep, A (before) and B (after), alternated in one process tree.

The workloads of ``bench_voc_parse.py`` (``voc.parse(root, workers=1)``),
``bench_coco_read.py`` (``coco.parse`` of a train2017-shaped JSON) and
``bench_imagenet_list.py`` (``imagenet.parse`` of a 1,000 x 100 tree, listed, and with
its records built). Each run is a fresh child process that imports one version (its
folder first on ``sys.path``) and times the parse alone (imports excluded); A and B
alternate, A B A B ..., so a change in the machine's load reaches both alike. Reported:
median and best wall and CPU seconds per version, and B / A. CPU time (the child's own)
is the steadier figure on a shared machine.

Usage (A: an export of the older commit, e.g. ``git archive <commit> dsprep | tar -x -C /tmp/a``)::

    python scripts/bench/gen_voc.py /tmp/bench/VOC2007
    python scripts/bench/gen_coco_train2017.py /tmp/bench/instances_train2017.json
    python scripts/bench/ab_parse.py /tmp/a . --voc /tmp/bench/VOC2007 \\
        --coco /tmp/bench/instances_train2017.json --imagenet /tmp/bench/imagenet [--repeat 5]

``--imagenet DIR`` makes the tree there on first use and reuses it after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
import dsprep
assert dsprep.__file__.startswith(sys.argv[1]), dsprep.__file__
from dsprep.formats import get_format
what, arg = sys.argv[2], sys.argv[3]
if what == "voc":
    run = lambda: get_format("voc").parse(arg, workers=1)
elif what == "coco":
    run = lambda: get_format("coco").parse(arg, workers=1)
elif what == "imagenet-listed":
    run = lambda: get_format("imagenet").parse(arg, workers=1)
elif what == "imagenet-records":
    run = lambda: get_format("imagenet").parse(arg, workers=1).records
gc.collect()
t, c = time.perf_counter(), time.process_time()
out = run()
gc.collect(1)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c, "n": len(out)}))
"""


def make_imagenet(root: Path, classes: int = 1000, per_class: int = 100) -> None:
    if (root / "train").is_dir():
        return
    for c in range(classes):
        d = root / "train" / f"n{c:08d}"
        d.mkdir(parents=True)
        for k in range(per_class):
            open(d / f"n{c:08d}_{k + 1}.JPEG", "wb").close()


def child(tree: Path, what: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), what, arg], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    if out.returncode:
        raise SystemExit(f"{tree} {what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="folder holding version A's dsprep/ (before)")
    ap.add_argument("b", type=Path, help="folder holding version B's dsprep/ (after)")
    ap.add_argument("--voc", help="a VOC20XX folder (gen_voc.py)")
    ap.add_argument("--coco", help="an instances JSON (gen_coco_train2017.py)")
    ap.add_argument("--imagenet", type=Path, help="a folder for (or holding) the 1,000 x 100 tree")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    work = []
    if args.voc:
        work.append(("voc", args.voc))
    if args.coco:
        work.append(("coco", args.coco))
    if args.imagenet:
        make_imagenet(args.imagenet)
        work += [("imagenet-listed", str(args.imagenet)), ("imagenet-records", str(args.imagenet))]
    res = {(w, v): [] for w, _ in work for v in trees}
    loads = []
    for r in range(args.repeat):
        loads.append(os.getloadavg()[0])
        for what, arg in work:
            for v in (("A", "B") if r % 2 == 0 else ("B", "A")):  # who goes first alternates too
                res[(what, v)].append(child(trees[v], what, arg))
        print(f"round {r + 1}/{args.repeat} done, load {loads[-1]:.2f}", file=sys.stderr)
    print(f"A = {trees['A']}\nB = {trees['B']}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"1-min load average at each round's start: {', '.join(f'{x:.1f}' for x in loads)}")
    print(f"{args.repeat} fresh processes per version and workload, A and B alternated\n")
    print("| workload | items | A CPU median (s) | B CPU median (s) | B / A CPU median | B / A CPU best "
          "| B / A wall median |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for what, _ in work:
        a, b = res[(what, "A")], res[(what, "B")]
        med = {k: (statistics.median(x[k] for x in a), statistics.median(x[k] for x in b)) for k in ("cpu", "wall")}
        best = (min(x["cpu"] for x in a), min(x["cpu"] for x in b))
        print(f"| {what} | {a[0]['n']} | {med['cpu'][0]:.3f} | {med['cpu'][1]:.3f} | {med['cpu'][1] / med['cpu'][0]:.3f} "
              f"| {best[1] / best[0]:.3f} | {med['wall'][1] / med['wall'][0]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
