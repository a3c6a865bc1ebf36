"""Generate an ImageNet-like tree of JPEGs for the loader benchmarks.

Writes, under OUT:

- ``train/<class>/<n>.JPEG``: ``--images`` JPEGs (quality 90) of about
  500x375 (ImageNet's median), mostly landscape, some portrait, with smooth
  shapes and mild noise so that they compress like photos (~75 KB);
- ``masks/<class>/<n>.png``: a palette mask per image (class index per shape,
  255 on the shape borders: VOC's convention), for the segmentation loader;
- ``instances.json``: COCO instances for the same images (1-7 boxes each,
  the shapes' boxes), for the detection loaders.

Nothing is downloaded. Deterministic for a given ``--seed``.

Usage:
    python scripts/bench/gen_imagenet_like.py --out /tmp/dsprep-bench --images 2000
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZES = [(500, 375)] * 6 + [(500, 333), (375, 500), (500, 400), (333, 500), (480, 360), (500, 353)]
CLASSES = [f"n{10000000 + 1111 * k:08d}" for k in range(10)]


def _one(args: tuple[int, int, str]) -> dict:
    n, seed, out = args
    rng = np.random.default_rng([seed, n])
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    cls = CLASSES[n % len(CLASSES)]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    grad = rng.uniform(-0.25, 0.25, (3, 2))
    img = np.stack([base[c] + grad[c, 0] * x + grad[c, 1] * y for c in range(3)], -1)
    im = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    mask = Image.new("P", (w, h), 0)
    draw, mdraw = ImageDraw.Draw(im), ImageDraw.Draw(mask)
    objects = []
    for k in range(int(rng.integers(1, 8))):
        bw, bh = rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.6) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = [float(x0), float(y0), float(x0 + bw), float(y0 + bh)]
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        label = int(rng.integers(1, 21))
        if k % 2:
            draw.ellipse(box, fill=colour)
            mdraw.ellipse(box, fill=label, outline=255, width=3)
        else:
            draw.rectangle(box, fill=colour)
            mdraw.rectangle(box, fill=label, outline=255, width=3)
        objects.append((box, label))
    im = im.filter(ImageFilter.GaussianBlur(1.5))
    arr = np.asarray(im).astype(np.int16) + rng.normal(0, 14, (h, w, 3)).astype(np.int16)
    im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    rel = f"train/{cls}/{cls}_{n}.JPEG"
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)
    mrel = f"masks/{cls}/{cls}_{n}.png"
    (Path(out) / mrel).parent.mkdir(parents=True, exist_ok=True)
    mask.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    mask.save(Path(out) / mrel)
    return {"id": n + 1, "file_name": rel, "width": w, "height": h, "mask": mrel, "objects": objects}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/dsprep-bench")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, args.seed, str(out)) for n in range(args.images)]
    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            infos = list(pool.map(_one, jobs, chunksize=32))
    else:
        infos = [_one(j) for j in jobs]
    images, anns = [], []
    for info in infos:
        images.append({k: info[k] for k in ("id", "file_name", "width", "height")})
        for box, label in info["objects"]:
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": info["id"], "category_id": label,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                         "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    coco = {"info": {"description": "dsprep benchmark images"}, "licenses": [], "images": images,
            "annotations": anns,
            "categories": [{"id": i, "name": f"class{i}", "supercategory": ""} for i in range(1, 21)]}
    (out / "instances.json").write_text(json.dumps(coco))
    (out / "masks.json").write_text(json.dumps({i["file_name"]: i["mask"] for i in infos}))
    sizes = [os.path.getsize(out / i["file_name"]) for i in images]
    print(f"wrote {len(images)} JPEGs ({np.mean(sizes) / 1024:.0f} KB mean), {len(anns)} boxes to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
