"""LabelMe and CVAT parse (and convert to COCO) speed against the floor, in one run.

The trees are generated here (no images: both formats store the size): ``--images`` images of
640x480, each with 7 objects of 24-point polygons, like a VOC/COCO image. LabelMe: one JSON per
image; CVAT: one ``annotations.xml``.

floor, LabelMe: ``orjson.loads`` every JSON, each shape's points to a flat list and its extent
(numpy), COCO-style dicts, ``orjson.dumps`` to a file.
floor, CVAT: ``lxml`` parse, each ``<polygon>``'s ``points`` split into floats and its extent,
COCO-style dicts, ``orjson.dumps``.
ours: ``labelme.parse`` / ``cvat.parse`` (workers=1), and ``convert(..., 'coco', images='none')``.

Each timing is the best of ``--repeat`` runs, contenders round-robin; ratios are ours / floor.

Usage (from the repository root):
    python scripts/bench/bench_labelme_cvat.py [--images 5000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

OBJECTS, POINTS, W, H = 7, 24, 640, 480


def _polygons(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(OBJECTS):
        cx, cy, r = rng.uniform(60, 580), rng.uniform(60, 420), rng.uniform(10, 55)
        t = np.sort(rng.uniform(0, 2 * np.pi, POINTS))
        out.append(np.round(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1), 2))
    return out


def generate(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    (root / "labelme").mkdir(parents=True)
    (root / "cvat").mkdir()
    xml = ['<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><labels>']
    xml += [f"<label><name>c{k}</name></label>" for k in range(5)]
    xml.append("</labels></task></meta>")
    for i in range(n):
        polys = _polygons(rng)
        shapes = [{"label": f"c{k % 5}", "points": p.tolist(), "group_id": None, "description": "",
                   "shape_type": "polygon", "flags": {}, "mask": None} for k, p in enumerate(polys)]
        doc = {"version": "5.7.0", "flags": {}, "shapes": shapes, "imagePath": f"{i:06d}.jpg", "imageData": None,
               "imageHeight": H, "imageWidth": W}
        (root / "labelme" / f"{i:06d}.json").write_text(json.dumps(doc, indent=2))
        xml.append(f'<image id="{i}" name="{i:06d}.jpg" width="{W}" height="{H}">')
        xml += [f'<polygon label="c{k % 5}" occluded="0" source="manual" z_order="0" points="'
                + ";".join(f"{x:.2f},{y:.2f}" for x, y in p) + '"/>' for k, p in enumerate(polys)]
        xml.append("</image>")
    xml.append("</annotations>")
    (root / "cvat" / "annotations.xml").write_text("\n".join(xml))


def floor_labelme(root: Path, out: Path) -> None:
    import orjson

    images, anns = [], []
    for i, p in enumerate(sorted(root.glob("*.json"))):
        doc = orjson.loads(p.read_bytes())
        images.append({"id": i, "file_name": doc["imagePath"], "width": doc["imageWidth"],
                       "height": doc["imageHeight"]})
        for s in doc["shapes"]:
            a = np.asarray(s["points"], np.float64)
            x0, y0 = a.min(0)
            x1, y1 = a.max(0)
            anns.append({"image_id": i, "category": s["label"], "segmentation": [a.ravel().tolist()],
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})
    out.write_bytes(orjson.dumps({"images": images, "annotations": anns}, option=orjson.OPT_SERIALIZE_NUMPY))


def floor_cvat(path: Path, out: Path) -> None:
    import orjson
    from lxml import etree

    images, anns = [], []
    for i, im in enumerate(etree.parse(str(path)).getroot().iter("image")):
        images.append({"id": i, "file_name": im.get("name"), "width": int(im.get("width")),
                       "height": int(im.get("height"))})
        for s in im:
            flat = [float(v) for pair in s.get("points").split(";") for v in pair.split(",")]
            a = np.asarray(flat).reshape(-1, 2)
            x0, y0 = a.min(0)
            x1, y1 = a.max(0)
            anns.append({"image_id": i, "category": s.get("label"), "segmentation": [flat],
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})
    out.write_bytes(orjson.dumps({"images": images, "annotations": anns}, option=orjson.OPT_SERIALIZE_NUMPY))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from dsprep import convert
    from dsprep.formats import cvat, labelme

    tmp = Path(tempfile.mkdtemp(prefix="bench-lm-cvat-"))
    try:
        generate(tmp, args.images)
        lm, cv = tmp / "labelme", tmp / "cvat"
        outs = iter(range(10 ** 6))

        def conv(fmt: str, root: Path):
            return lambda: convert(fmt, root, "coco", tmp / f"out{next(outs)}", images="none", workers=1,
                                   progress=False)

        rows = [("floor: orjson + numpy + orjson.dumps (LabelMe)", lambda: floor_labelme(lm, tmp / "f1.json")),
                ("labelme.parse(workers=1)", lambda: labelme.parse(lm, workers=1, progress=False)),
                ("convert labelme -> coco, workers=1", conv("labelme", lm)),
                ("floor: lxml + float split + orjson.dumps (CVAT)", lambda: floor_cvat(cv / "annotations.xml",
                                                                                        tmp / "f2.json")),
                ("cvat.parse", lambda: cvat.parse(cv)),
                ("convert cvat -> coco, workers=1", conv("cvat", cv))]
        res = interleaved([f for _, f in rows], args.repeat)
        print(f"{args.images} images, {args.images * OBJECTS} polygons of {POINTS} points; best of {args.repeat}")
        print("| what | wall s | x floor | CPU s | x floor |\n| --- | ---: | ---: | ---: | ---: |")
        for k, ((name, _), (wall, cpu)) in enumerate(zip(rows, res)):
            base = res[0] if k < 3 else res[3]
            print(f"| {name} | {wall:.3f} | {wall / base[0]:.2f} | {cpu:.3f} | {cpu / base[1]:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
