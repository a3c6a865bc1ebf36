"""Generate a VOC2007-sized tree for the VOC -> COCO benchmark.

5,011 images (VOC2007 trainval) with XMLs shaped like the real ones (tab
indentation, source/owner blocks, pose/truncated/difficult, integer 1-based
boxes), about 3.1 objects per image as in VOC2007 trainval (15,662 objects),
ImageSets/Main train/val/trainval and the 60 per-class lists. Images are not
written by default (parsing reads annotations only); ``--images`` writes
8x8 JPEGs.

Usage:
    python scripts/bench/gen_voc.py /tmp/bench/VOC2007 [--images-count 5011] [--seed 0] [--images]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
# VOC2007 trainval object counts per class (devkit doc table), used as sampling weights.
WEIGHTS = (306, 353, 486, 290, 505, 229, 1250, 376, 798, 259, 215, 510, 362, 339, 4690, 514, 257, 248, 297, 324)
POSES = ("Unspecified", "Left", "Right", "Frontal", "Rear")

TEMPLATE_HEAD = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>{stem}.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t\t<flickrid>{flickr}</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>{owner}</flickrid>
\t\t<name>?</name>
\t</owner>
\t<size>
\t\t<width>{w}</width>
\t\t<height>{h}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>{seg}</segmented>
"""
TEMPLATE_OBJ = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>{pose}</pose>
\t\t<truncated>{trunc}</truncated>
\t\t<difficult>{diff}</difficult>
\t\t<bndbox>
\t\t\t<xmin>{x0}</xmin>
\t\t\t<ymin>{y0}</ymin>
\t\t\t<xmax>{x1}</xmax>
\t\t\t<ymax>{y1}</ymax>
\t\t</bndbox>
\t</object>
"""


def generate(root: Path, n: int = 5011, seed: int = 0, images: bool = False) -> dict:
    rng = random.Random(seed)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    stems = [f"{2 * i + 5:06d}" for i in range(n)]  # VOC2007-like 6-digit ids, not contiguous
    flags: dict[str, dict[str, int]] = {}
    n_obj = 0
    for stem in stems:
        w, h = rng.choice([(500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (486, 500)])
        k = min(42, max(1, int(rng.expovariate(1 / 3.1)) + 1)) if rng.random() < 0.9 else 1
        parts = [TEMPLATE_HEAD.format(stem=stem, flickr=rng.randrange(10 ** 8, 10 ** 9),
                                      owner=f"user{rng.randrange(10000)}", w=w, h=h,
                                      seg=int(rng.random() < 0.08))]
        f: dict[str, int] = {}
        for _ in range(k):
            name = rng.choices(CLASSES, WEIGHTS)[0]
            x0, y0 = rng.randint(1, w - 10), rng.randint(1, h - 10)
            x1, y1 = rng.randint(x0 + 1, w), rng.randint(y0 + 1, h)
            diff = int(rng.random() < 0.12)
            parts.append(TEMPLATE_OBJ.format(name=name, pose=rng.choice(POSES), trunc=int(rng.random() < 0.3),
                                             diff=diff, x0=x0, y0=y0, x1=x1, y1=y1))
            f[name] = max(f.get(name, -1), 0 if diff else 1)
        parts.append("</annotation>\n")
        (root / "Annotations" / f"{stem}.xml").write_text("".join(parts), encoding="utf-8")
        flags[stem] = f
        n_obj += k
        if images:
            from PIL import Image

            Image.new("RGB", (8, 8), (rng.randrange(256), 80, 120)).save(root / "JPEGImages" / f"{stem}.jpg")
    half = n // 2
    splits = {"train": stems[:half], "val": stems[half:], "trainval": stems}
    for split, ids in splits.items():
        (root / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids), encoding="utf-8")
        for c in CLASSES:
            (root / "ImageSets/Main" / f"{c}_{split}.txt").write_text(
                "".join(f"{s} {flags[s].get(c, -1):2d}\n" for s in ids), encoding="utf-8")
    return {"images": n, "objects": n_obj}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the VOC2007 directory to create")
    ap.add_argument("--images-count", type=int, default=5011)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", action="store_true", help="also write 8x8 JPEGs")
    args = ap.parse_args()
    report = generate(args.out, args.images_count, args.seed, args.images)
    print(f"wrote {report['images']} XMLs with {report['objects']} objects under {args.out}")


if __name__ == "__main__":
    main()
