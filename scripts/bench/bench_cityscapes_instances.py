"""Cityscapes instance extraction against the floor of decoding the PNGs alone.

Generates N 2048x1024 16-bit ``*_gtFine_instanceIds.png`` (default 500) in a
temporary Cityscapes tree: sky, buildings, vegetation, road, sidewalk, poles,
ego vehicle, 20-40 person/rider/car/truck/bicycle instances as jittered
polygons (24-48 vertices) and one car group, drawn with PIL as
cityscapesScripts' json2instanceImg draws. Then, single process, same files:

- floor: ``np.asarray(PIL.Image.open(path))`` (decode only);
- ours (extract): the per-frame work of ``parse(instances="things")``:
  decode + boxes, areas and compressed COCO RLE of every instance segment;
  timed per image right after the floor of the same image, each the best
  of ``--repeat``, summed over the images;
- ours (parse): ``dsprep.formats.cityscapes.parse(root, instances="things",
  workers=1)`` on the whole tree (listing, sizes, records included), each
  pass right after a floor pass, ratio = median over those pairs; and once
  with the default process pool (all cores; its ratio is wall time against
  the single-process floor pass before it).

Run from the repository root:

    python scripts/bench/bench_cityscapes_instances.py [--images 500] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dsprep.formats import cityscapes as cs  # noqa: E402

W, H = 2048, 1024


def _blob(rng, cx, cy, rx, ry, n):
    a = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.7, 1.15, n)
    return [(float(cx + rx * r[i] * np.cos(a[i])), float(cy + ry * r[i] * np.sin(a[i]))) for i in range(n)]


def make_instance_map(seed: int) -> np.ndarray:
    """A street-like instanceIds map (uint16) drawn with PIL in painter's order."""
    rng = np.random.default_rng(seed)
    img = Image.new("I", (W, H), 0)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, W, int(H * 0.4)], fill=23)  # sky
    for _ in range(10):  # buildings / vegetation / walls with ragged tops
        x = int(rng.integers(-200, W))
        top = [(x + i * 40, int(H * rng.uniform(0.05, 0.3))) for i in range(int(rng.integers(4, 12)))]
        d.polygon(top + [(top[-1][0], int(H * 0.55)), (x, int(H * 0.55))],
                  fill=int(rng.choice([11, 21, 21, 12, 13])))
    d.polygon([(0, int(H * 0.52)), (W, int(H * 0.5)), (W, H), (0, H)], fill=7)  # road
    d.polygon([(0, int(H * 0.6)), (int(W * 0.3), int(H * 0.52)), (int(W * 0.32), int(H * 0.56)), (0, int(H * 0.8))],
              fill=8)  # sidewalk
    for _ in range(10):  # poles, signs
        x = int(rng.integers(0, W))
        d.rectangle([x, int(H * 0.15), x + int(rng.integers(4, 12)), int(H * 0.6)], fill=17)
        d.rectangle([x - 10, int(H * 0.15), x + 20, int(H * 0.2)], fill=20)
    counters: dict[int, int] = {}
    for _ in range(int(rng.integers(20, 41))):
        cls = int(rng.choice([24, 24, 25, 26, 26, 26, 27, 33]))
        k = counters.get(cls, 0)
        counters[cls] = k + 1
        cx, cy = rng.integers(0, W), rng.integers(int(H * 0.42), int(H * 0.8))
        s = float(rng.uniform(15, 220))
        ry = s * (1.6 if cls in (24, 25) else 0.6)
        rx = s * (0.4 if cls in (24, 25) else 1.0)
        d.polygon(_blob(rng, cx, cy, rx, ry, int(rng.integers(24, 49))), fill=cls * 1000 + k)
    d.polygon(_blob(rng, 300, 620, 120, 50, 30), fill=26)  # a car group
    d.rectangle([0, int(H * 0.93), W, H], fill=1)  # ego vehicle
    return np.asarray(img).astype(np.uint16)


def generate(root: Path, n: int) -> list[Path]:
    city = root / "gtFine" / "val" / "benchcity"
    city.mkdir(parents=True)
    (root / "leftImg8bit" / "val" / "benchcity").mkdir(parents=True)
    paths = []
    for i in range(n):
        p = city / f"benchcity_{i // 100:06d}_{i % 100:06d}_gtFine_instanceIds.png"
        Image.fromarray(make_instance_map(i)).save(p)
        paths.append(p)
    return paths


def floor(paths):
    for p in paths:
        np.asarray(Image.open(p))


def extract(root, frames):
    n = 0
    for f in frames:
        inst, _, _ = cs._frame_instances(root, f, "things", True, None)
        n += len(inst)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to generate (default: a temporary directory)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = generate(root, args.images)
        gen_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        frames = [{"base": p.name.split("_gtFine_")[0], "city": "benchcity", "split": "val",
                   "image": "", "gt": {"instanceIds": os.path.relpath(p, root)}} for p in paths]
        floor(paths[:20])  # warm the page cache and imports
        extract(root, frames[:5])
        # Per image, floor and ours back to back, each the best of --repeat: the two see
        # the same machine load, and a pass disturbed by another process does not count.
        t_floor = np.full((len(paths), args.repeat), np.inf)
        t_ours = np.full((len(paths), args.repeat), np.inf)
        objects = 0
        for r in range(args.repeat):
            objects = 0
            for i, (p, f) in enumerate(zip(paths, frames)):
                t = time.perf_counter()
                np.asarray(Image.open(p))
                t_floor[i, r] = time.perf_counter() - t
                t = time.perf_counter()
                inst, _, _ = cs._frame_instances(root, f, "things", True, None)
                t_ours[i, r] = time.perf_counter() - t
                objects += len(inst)
        # Whole-tree parse: each pass right after a floor pass over the same files; the
        # ratio is taken per pair (median over pairs), so both halves share the load.
        pairs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            floor(paths)
            f_s = time.perf_counter() - t
            t = time.perf_counter()
            ds = cs.parse(root, instances="things", workers=1, progress=False)
            p_s = time.perf_counter() - t
            pairs.append((f_s, p_s))
            if ds.num_objects() != objects:
                raise SystemExit(f"parse found {ds.num_objects()} objects, extract {objects}")
        t = time.perf_counter()
        floor(paths)
        f_s = time.perf_counter() - t
        t = time.perf_counter()
        cs.parse(root, instances="things", progress=False)
        pool_pair = (f_s, time.perf_counter() - t)
        n = args.images
        fl, ours = t_floor.min(axis=1).sum(), t_ours.min(axis=1).sum()
        parse_best = min(p for _, p in pairs)
        rows = [("floor: PNG decode only", fl, 1.0),
                ("ours: decode + extract", ours, ours / fl),
                ("ours: parse(things), 1 process", parse_best, statistics.median(p / f for f, p in pairs)),
                (f"ours: parse(things), {os.cpu_count()} procs", pool_pair[1], pool_pair[1] / pool_pair[0])]
        print(f"{n} instanceIds PNGs {W}x{H} (16-bit, {size_mb / n * 1000:.0f} KB each), "
              f"{objects} objects ({objects / n:.1f}/image); generated in {gen_s:.0f} s")
        print(f"load: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cpus")
        print(f"{'':34s}{'images/s':>10s}{'ms/image':>10s}{'x floor':>9s}")
        for label, secs, ratio in rows:
            print(f"{label:34s}{n / secs:10.1f}{secs / n * 1000:10.2f}{ratio:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
