"""VOC parse speed against the floor (bare lxml + orjson), in one run.

floor: parse every Annotations/*.xml with lxml, pull filename, size and every
object's name/difficult/bndbox into COCO-style dicts (boxes shifted to 0-based
as they must be), ``orjson.dumps`` the result to a file. Single process, and
2 processes (a Pool over chunks of files, results joined in the parent).
ours: ``dsprep.formats.voc.parse(root, workers=1)`` and ``workers=2``; and, when
``dsprep.formats.coco.write`` is implemented, the whole
``dsprep.convert('voc', root, 'coco', out, images='none')``.

Each timing is the best of ``--repeat`` runs (the XMLs are in the page cache
after the first), the contenders run round-robin so that a change in the
machine's load reaches all of them; ratios are ours / single-process floor.

Usage (from the repository root):
    python scripts/bench/gen_voc.py /tmp/bench/VOC2007
    python scripts/bench/bench_voc_parse.py /tmp/bench/VOC2007 [--repeat 5]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _floor_chunk(paths: list[str]) -> tuple[list, list]:
    from lxml import etree

    images, anns = [], []
    for p in paths:
        root = etree.parse(p).getroot()
        size = root.find("size")
        images.append({"file_name": root.findtext("filename"), "width": int(size.findtext("width")),
                       "height": int(size.findtext("height"))})
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            x0, y0 = float(bb.findtext("xmin")) - 1, float(bb.findtext("ymin")) - 1
            x1, y1 = float(bb.findtext("xmax")), float(bb.findtext("ymax"))
            anns.append({"image": len(images), "name": obj.findtext("name"),
                         "difficult": int(obj.findtext("difficult") or 0),
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return images, anns


def floor(paths: list[str], out: Path, procs: int) -> None:
    import orjson

    if procs <= 1:
        parts = [_floor_chunk(paths)]
    else:
        step = (len(paths) + procs * 4 - 1) // (procs * 4)
        with mp.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_floor_chunk, [paths[i:i + step] for i in range(0, len(paths), step)])
    images = [im for p in parts for im in p[0]]
    anns = [a for p in parts for a in p[1]]
    out.write_bytes(orjson.dumps({"images": images, "annotations": anns}))


def best(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over ``repeat`` runs."""
    return interleaved([fn], repeat)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a VOC20XX directory (e.g. from gen_voc.py)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from dsprep.formats import voc

    paths = sorted(str(p) for p in (args.root / "Annotations").glob("*.xml"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-voc-"))
    try:
        ds = voc.parse(args.root, workers=1)
        contenders = [
            ("floor: lxml + orjson, 1 process", lambda: floor(paths, tmp / "floor.json", 1)),
            ("floor: lxml + orjson, 2 processes", lambda: floor(paths, tmp / "floor.json", 2)),
            ("dsprep voc.parse, workers=1", lambda: voc.parse(args.root, workers=1)),
            ("dsprep voc.parse, workers=2", lambda: voc.parse(args.root, workers=2)),
            ("dsprep voc.parse, workers=1, class_lists='skip'",
             lambda: voc.parse(args.root, workers=1, class_lists="skip")),
        ]
        try:
            from dsprep.conversion import convert
            from dsprep.formats import coco

            out = tmp / "coco"

            def run(workers: int) -> None:
                convert("voc", args.root, "coco", out, images="none", workers=workers, overwrite=True,
                        progress=False)

            run(1)  # raises NotImplementedError while coco.write is a placeholder
            contenders += [("dsprep convert voc -> coco, workers=1", lambda: run(1)),
                           ("dsprep convert voc -> coco, workers=2", lambda: run(2))]
            del coco
        except NotImplementedError:
            print("(convert voc -> coco skipped: dsprep.formats.coco.write is not implemented here)")
        # round-robin, so that the floor and ours see the same load (the machine is shared)
        timings = interleaved([fn for _, fn in contenders], args.repeat)
        rows = [(name, t) for (name, _), t in zip(contenders, timings)]
        f1 = rows[0][1]
        print(f"{len(paths)} XMLs, {ds.num_objects()} objects; load: {os.getloadavg()}; best of {args.repeat}, "
              "contenders interleaved")
        print(f"{'what':50s} {'wall s':>7s} {'x floor':>8s} {'CPU s':>7s} {'x floor':>8s}")
        for name, (t, c) in rows:
            print(f"{name:50s} {t:7.3f} {t / f1[0]:8.2f} {c:7.3f} {c / f1[1]:8.2f}")
        print("(CPU = this process only: for the 2-process rows it is the parent's share)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
