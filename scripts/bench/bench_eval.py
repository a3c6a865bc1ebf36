"""Benchmark: `dsprep eval detection` (COCO bbox AP) against pycocotools' own time.

A val2017-sized case is generated (nothing is downloaded): 5,000 images,
~36k ground-truth boxes over COCO's 80 category ids (1..90 with gaps), ~100
detections per image (jittered true boxes plus false positives).

- ours: ``dsprep.eval.detection.coco_evaluate(records, results.json)``, the
  whole call: records -> COCO dict -> COCO index, reading and checking the
  results JSON, loadRes, evaluate, accumulate, summarize.
- floor: pycocotools with the ground truth already loaded (``COCO(gt.json)``
  not timed): ``loadRes(results.json)`` + ``evaluate`` + ``accumulate`` +
  ``summarize``, as its README runs it.

Runs alternate (floor, ours, floor, ours, ...); the best wall and CPU
(process) time of each is reported, with the 12 stats checked equal. On a
shared machine the CPU figures are the steadier ones.

    python scripts/bench/bench_eval.py                   # val2017-sized
    python scripts/bench/bench_eval.py --images 500      # quick
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dsprep.eval.detection import COCO_STAT_NAMES, coco_evaluate  # noqa: E402
from dsprep.records import Category, Dataset, Instances, Record  # noqa: E402

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def generate(n_images: int, gt_per_image: float, dets_per_image: int, seed: int):
    rng = np.random.default_rng(seed)
    images, anns, dets, records = [], [], [], []
    ann_id = 0
    for k in range(n_images):
        img_id = 100000 + 7 * k
        w, h = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": img_id, "width": w, "height": h, "file_name": f"{img_id:012d}.jpg"})
        n = int(rng.poisson(gt_per_image))
        # COCO-like sizes: many small, some large (log-uniform side)
        bw = np.exp(rng.uniform(np.log(4), np.log(w * 0.9), n))
        bh = np.clip(bw * np.exp(rng.normal(0, 0.4, n)), 2, h * 0.95)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        cats = rng.choice(COCO_IDS, n)
        crowd = rng.random(n) < 0.01
        boxes = np.round(np.stack([x, y, bw, bh], 1), 2)
        img_anns = []
        for j in range(n):
            ann_id += 1
            a = {"id": ann_id, "image_id": img_id, "category_id": int(cats[j]), "bbox": boxes[j].tolist(),
                 "area": float(boxes[j, 2] * boxes[j, 3] * 0.7), "iscrowd": int(crowd[j]), "segmentation": []}
            img_anns.append(a)
        anns.extend(img_anns)
        # detections: jittered true boxes, then false positives up to dets_per_image
        for a in img_anns:
            if rng.random() < 0.8:
                bx = np.array(a["bbox"]) + rng.normal(0, 0.08, 4) * ([a["bbox"][2], a["bbox"][3]] * 2)
                bx[2:] = np.maximum(bx[2:], 1)
                dets.append({"image_id": img_id, "category_id": a["category_id"],
                             "bbox": np.round(bx, 2).tolist(), "score": round(float(rng.random()), 4)})
        n_fp = max(0, dets_per_image - len(img_anns))
        fw = np.exp(rng.uniform(np.log(4), np.log(w * 0.9), n_fp))
        fh = np.clip(fw * np.exp(rng.normal(0, 0.4, n_fp)), 2, h * 0.95)
        fx, fy = rng.uniform(0, w - fw), rng.uniform(0, h - fh)
        fc = rng.choice(COCO_IDS, n_fp)
        fs = rng.random(n_fp) * 0.7
        for j in range(n_fp):
            dets.append({"image_id": img_id, "category_id": int(fc[j]),
                         "bbox": [round(float(fx[j]), 2), round(float(fy[j]), 2), round(float(fw[j]), 2),
                                  round(float(fh[j]), 2)], "score": round(float(fs[j]), 4)})
        b = boxes.copy()
        b[:, 2:] += b[:, :2]
        records.append(Record(f"val2017/{img_id:012d}", f"val2017/{img_id:012d}.jpg", w, h, split="val",
                              source_id=img_id,
                              instances=Instances(boxes=b, labels=cats, iscrowd=crowd,
                                                  ids=[a["id"] for a in img_anns],
                                                  area=[a["area"] for a in img_anns],
                                                  segmentation=[[] for _ in img_anns])))
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_IDS]
    gt = {"info": {"description": "bench"}, "licenses": [], "images": images, "annotations": anns,
          "categories": categories}
    ds = Dataset([Category(c, f"class{c}", "thing") for c in COCO_IDS], records, format="coco")
    return gt, dets, ds


def floor(gt_path: str, res_path: str) -> tuple[float, np.ndarray]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_path)  # setup, not timed
        t0, c0 = time.perf_counter(), time.process_time()
        dt = coco.loadRes(res_path)
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t, c = time.perf_counter() - t0, time.process_time() - c0
    return t, c, np.asarray(ev.stats)


def ours(ds: Dataset, res_path: str) -> tuple[float, float, np.ndarray]:
    t0, c0 = time.perf_counter(), time.process_time()
    r = coco_evaluate(ds, res_path, iou_type="bbox")
    t, c = time.perf_counter() - t0, time.process_time() - c0
    return t, c, np.array([r.stats[k] for k in COCO_STAT_NAMES])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--gt-per-image", type=float, default=7.3)
    ap.add_argument("--dets-per-image", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt, dets, ds = generate(args.images, args.gt_per_image, args.dets_per_image, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "res.json")
        Path(gt_path).write_text(json.dumps(gt))
        Path(res_path).write_text(json.dumps(dets))
        print(f"case: {len(gt['images'])} images, {len(gt['annotations'])} GT boxes, {len(dets)} detections "
              f"({Path(res_path).stat().st_size / 1e6:.0f} MB results JSON); generated in "
              f"{time.perf_counter() - t0:.1f} s")
        del gt, dets
        t_floor, t_ours, c_floor, c_ours = [], [], [], []
        for rep in range(args.repeat):
            tf, cf, sf = floor(gt_path, res_path)
            to, co, so = ours(ds, res_path)
            t_floor.append(tf)
            t_ours.append(to)
            c_floor.append(cf)
            c_ours.append(co)
            same = np.array_equal(sf, so)
            print(f"run {rep + 1}: pycocotools {tf:.2f} s wall / {cf:.2f} s CPU, "
                  f"dsprep {to:.2f} s wall / {co:.2f} s CPU, stats equal: {same}")
            if not same:
                print("  pycocotools:", sf.round(6).tolist(), "\n  dsprep:     ", so.round(6).tolist())
                return 1
        bf, bo = min(t_floor), min(t_ours)
        cf, co = min(c_floor), min(c_ours)
        print(f"best wall: pycocotools {bf:.2f} s, dsprep {bo:.2f} s, ratio {bo / bf:.3f} (target <= 1.10)")
        print(f"best CPU:  pycocotools {cf:.2f} s, dsprep {co:.2f} s, ratio {co / cf:.3f}; AP {so[0]:.4f}")
        print(f"python {platform.python_version()}, numpy {np.__version__}, load: "
              f"{open('/proc/loadavg').read().split()[:3] if os.path.exists('/proc/loadavg') else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
