"""KITTI and LVIS parse speed against a bare floor, in one run (issue 14).

KITTI tree: ``--kitti-images`` label files shaped like KITTI object training
(7,481 files and ~6.9 rows each, DontCare rows included, 2-decimal columns) with a
1242x375 PNG per label file (hard links to one file: the reader opens each image
for its header), and ImageSets train/val lists.
  floor: list ``label_2``, read each file, split the rows, ``float`` every numeric
  column into flat lists, and ``PIL.Image.open(png).size`` per image; one process.
  ours: ``kitti.parse(root, workers=1)`` and ``workers=2``.

LVIS file: the lvis-api fixture (``../shared/fixtures/lvis-api/data/lvis_val_100.json``,
100 images, 977 annotations, 1,230 categories) repeated ``--lvis-copies`` times
with new image and annotation ids.
  floor: ``orjson.loads`` the file, then per annotation the xyxy box and per image
  its ``coco_url`` folder/name; one process.
  ours: ``lvis.parse(file)``.

The contenders run round-robin, best of ``--repeat``; ratios are ours / floor
(wall, and CPU of this process for the single-process contenders).

Usage (from the repository root):
    python scripts/bench/bench_lvis_kitti_parse.py [--repeat 3] [--kitti-images 7481] [--lvis-copies 50]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TYPES = ["Car"] * 29 + ["Pedestrian"] * 5 + ["Cyclist"] * 2 + ["Van"] * 3 + ["Truck", "Misc", "Tram"] + ["DontCare"] * 11


def make_kitti(root: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    rng = random.Random(seed)
    for d in ("training/label_2", "training/image_2", "ImageSets"):
        (root / d).mkdir(parents=True, exist_ok=True)
    png = root / "one.png"
    Image.new("RGB", (1242, 375), (90, 90, 90)).save(png)
    for i in range(n):
        rows = []
        for _ in range(max(1, int(rng.gauss(6.9, 3)))):
            t = rng.choice(TYPES)
            x0, y0 = rng.uniform(0, 1100), rng.uniform(100, 300)
            box = f"{x0:.2f} {y0:.2f} {x0 + rng.uniform(5, 140):.2f} {y0 + rng.uniform(5, 70):.2f}"
            if t == "DontCare":
                rows.append(f"DontCare -1 -1 -10 {box} -1 -1 -1 -1000 -1000 -1000 -10")
            else:
                rows.append(f"{t} {rng.choice(['0.00', '0.00', '0.31'])} {rng.randint(0, 3)} {rng.uniform(-3, 3):.2f} "
                            f"{box} {rng.uniform(1, 3):.2f} {rng.uniform(1, 2):.2f} {rng.uniform(1, 5):.2f} "
                            f"{rng.uniform(-20, 20):.2f} {rng.uniform(1, 2):.2f} {rng.uniform(5, 60):.2f} "
                            f"{rng.uniform(-3, 3):.2f}")
        (root / f"training/label_2/{i:06d}.txt").write_text("\n".join(rows) + "\n")
        os.link(png, root / f"training/image_2/{i:06d}.png")
    png.unlink()
    ids = [f"{i:06d}" for i in range(n)]
    (root / "ImageSets/train.txt").write_text("\n".join(ids[: n // 2]) + "\n")
    (root / "ImageSets/val.txt").write_text("\n".join(ids[n // 2:]) + "\n")


def kitti_floor(root: Path) -> int:
    from PIL import Image

    folder = root / "training/label_2"
    types, nums, sizes = [], [], []
    for name in sorted(os.listdir(folder)):
        with open(folder / name, encoding="utf-8") as f:
            for line in f.read().splitlines():
                cols = line.split()
                if cols:
                    types.append(cols[0])
                    nums.append([float(c) for c in cols[1:15]])
        with Image.open(root / "training/image_2" / (name[:-4] + ".png")) as im:
            sizes.append(im.size)
    return len(types)


def make_lvis(src: Path, out: Path, copies: int) -> None:
    doc = json.loads(src.read_text())
    images, anns = [], []
    for k in range(copies):
        for im in doc["images"]:
            e = dict(im, id=im["id"] + k * 10_000_000)
            e["coco_url"] = e["coco_url"].replace(".jpg", f"_{k}.jpg")
            images.append(e)
        for a in doc["annotations"]:
            anns.append(dict(a, id=a["id"] + k * 10_000, image_id=a["image_id"] + k * 10_000_000))
    out.write_text(json.dumps({**doc, "images": images, "annotations": anns}))


def lvis_floor(path: Path) -> int:
    import orjson

    doc = orjson.loads(path.read_bytes())
    boxes = [[x, y, x + w, y + h] for a in doc["annotations"] for x, y, w, h in (a["bbox"],)]
    paths = ["/".join(im["coco_url"].split("/")[-2:]) for im in doc["images"]]
    return len(boxes) + len(paths) * 0


def timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kitti-images", type=int, default=7481)
    ap.add_argument("--lvis-copies", type=int, default=50)
    args = ap.parse_args()
    from dsprep.formats import kitti, lvis

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_kitti(tmp / "kitti", args.kitti_images)
        lv = tmp / "lvis_v1_val.json"
        make_lvis(REPO.parent / "shared/fixtures/lvis-api/data/lvis_val_100.json", lv, args.lvis_copies)
        n_obj = kitti_floor(tmp / "kitti")
        assert kitti.parse(tmp / "kitti", workers=1).num_objects() == n_obj
        n_ann = lvis_floor(lv)
        assert lvis.parse(lv).num_objects() == n_ann
        contenders = {
            "kitti floor (1 process)": lambda: kitti_floor(tmp / "kitti"),
            "kitti.parse(workers=1)": lambda: kitti.parse(tmp / "kitti", workers=1, progress=False),
            "kitti.parse(workers=2)": lambda: kitti.parse(tmp / "kitti", workers=2, progress=False),
            "lvis floor (orjson + boxes)": lambda: lvis_floor(lv),
            "lvis.parse(file)": lambda: lvis.parse(lv, progress=False),
        }
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                w, c = timed(fn)
                old = best.get(name)
                best[name] = (min(w, old[0]), min(c, old[1])) if old else (w, c)
    print(f"KITTI: {args.kitti_images} label files, {n_obj} rows; LVIS: {args.lvis_copies * 100} images, "
          f"{n_ann} annotations, 1230 categories; best of {args.repeat}; load {os.getloadavg()}")
    print("| what | wall s | x floor | CPU s (this process) | x floor |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (w, c) in best.items():
        base = best["kitti floor (1 process)" if name.startswith("kitti") else "lvis floor (orjson + boxes)"]
        print(f"| {name} | {w:.3f} | {w / base[0]:.2f} | {c:.3f} | {c / base[1]:.2f} |")


if __name__ == "__main__":
    main()
