"""Write a COCO train2017-sized instances JSON (synthetic, deterministic).

Sizes follow the real ``instances_train2017.json``: 118,287 images, 860,001
annotations, about 22.5 M polygon vertices (polygons carry two decimals, as the
real file does), ~1 % crowd annotations with uncompressed (list) RLE, the 80
categories with ids 1..90 and their real gaps, ``info`` and ``licenses``.
Annotations are not grouped by image (as in the real file), so a reader has to
group them.

Usage::

    python scripts/bench/gen_coco_train2017.py /tmp/coco_bench/instances_train2017.json [--seed 0] [--scale 1.0]

The output is written to the given path (never into the repository). Same
seed and scale -> byte-identical file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import orjson

N_IMAGES = 118_287
N_ANNS = 860_001
CROWD_FRACTION = 0.01
MEAN_VERTICES = 22_500_000 / (N_ANNS * (1 - CROWD_FRACTION))  # ~26.4 per polygon annotation
# The 80 detection ids of COCO 2017: 1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83.
CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
OPT = orjson.OPT_SERIALIZE_NUMPY


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output JSON path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (for quick tries)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_img = max(1, int(N_IMAGES * args.scale))
    n_ann = max(1, int(N_ANNS * args.scale))
    args.out.parent.mkdir(parents=True, exist_ok=True)

    image_ids = np.sort(rng.choice(581_929, size=n_img, replace=False) + 1)
    widths = rng.choice([640, 480, 427, 500, 612], size=n_img)
    heights = rng.choice([480, 640, 427, 375, 333], size=n_img)
    licenses = rng.integers(1, 9, size=n_img)
    ann_img = rng.integers(0, n_img, size=n_ann)  # index into images, not grouped
    crowd = rng.random(n_ann) < CROWD_FRACTION
    n_vertices = 0
    with open(args.out, "wb") as f:
        f.write(b'{"info":')
        f.write(orjson.dumps({"description": "COCO 2017 Dataset (synthetic, dsprep benchmark)",
                              "url": "http://cocodataset.org", "version": "1.0", "year": 2017,
                              "contributor": "COCO Consortium", "date_created": "2017/09/01"}))
        f.write(b',"licenses":')
        f.write(orjson.dumps([{"url": f"http://creativecommons.org/licenses/{i}/2.0/", "id": i,
                               "name": f"License {i}"} for i in range(1, 9)]))
        f.write(b',"images":[')
        for i in range(n_img):
            iid = int(image_ids[i])
            name = f"{iid:012d}.jpg"
            img = {"license": int(licenses[i]), "file_name": name,
                   "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                   "height": int(heights[i]), "width": int(widths[i]),
                   "date_captured": f"2013-11-{1 + i % 28:02d} 11:{i % 60:02d}:45",
                   "flickr_url": f"http://farm{1 + i % 9}.staticflickr.com/{i}/{iid}_z.jpg", "id": iid}
            if i:
                f.write(b",")
            f.write(orjson.dumps(img))
        f.write(b'],"annotations":[')
        chunk = 20_000
        for start in range(0, n_ann, chunk):
            stop = min(n_ann, start + chunk)
            parts = []
            for j in range(start, stop):
                k = int(ann_img[j])
                w_img, h_img = int(widths[k]), int(heights[k])
                x = round(float(rng.uniform(0, w_img * 0.8)), 2)
                y = round(float(rng.uniform(0, h_img * 0.8)), 2)
                bw = round(float(rng.uniform(1, w_img - x)), 2)
                bh = round(float(rng.uniform(1, h_img - y)), 2)
                ann = {"segmentation": None, "area": 0.0, "iscrowd": int(crowd[j]),
                       "image_id": int(image_ids[k]), "bbox": [x, y, bw, bh],
                       "category_id": CATEGORY_IDS[j % 80], "id": j + 1 if not crowd[j] else 900100000000 + j}
                if crowd[j]:
                    runs = rng.integers(1, (w_img * h_img) // 200, size=200)  # sums to about half the image
                    runs[-1] = w_img * h_img - int(runs[:-1].sum())  # counts must sum to h*w
                    ann["segmentation"] = {"counts": runs, "size": [h_img, w_img]}
                    ann["area"] = float(runs[1::2].sum())
                else:
                    n_poly = 1 if rng.random() < 0.9 else int(rng.integers(2, 4))
                    total = max(3 * n_poly, int(rng.poisson(MEAN_VERTICES)))
                    sizes = np.full(n_poly, total // n_poly)
                    sizes[0] += total - sizes.sum()
                    polys = []
                    for m in sizes:
                        pts = np.empty(2 * int(m))
                        pts[0::2] = np.round(rng.uniform(x, x + bw, size=int(m)), 2)
                        pts[1::2] = np.round(rng.uniform(y, y + bh, size=int(m)), 2)
                        polys.append(pts)
                        n_vertices += int(m)
                    ann["segmentation"] = polys
                    ann["area"] = round(bw * bh * 0.6, 3)
                parts.append(orjson.dumps(ann, option=OPT))
            if start:
                f.write(b",")
            f.write(b",".join(parts))
        f.write(b'],"categories":')
        f.write(orjson.dumps([{"supercategory": "thing", "id": c, "name": f"class_{c}"} for c in CATEGORY_IDS]))
        f.write(b"}")
    print(f"{args.out}: {n_img} images, {n_ann} annotations ({int(crowd.sum())} crowd), "
          f"{n_vertices} polygon vertices, {args.out.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
