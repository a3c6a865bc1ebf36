"""YOLO -> COCO on a COCO train2017-sized tree of label files, against the floor and the peers.

``gen ROOT [--scale S]``: write ROOT/data.yaml, ROOT/images/train2017/*.jpg (real JPEG headers
at COCO's common sizes; one small encoded file per size, its bytes written for every image)
and ROOT/labels/train2017/*.txt (118,287 images, ~860k rows ``class cx cy w h`` with 6
decimals, 80 classes, ~1 % of images without a label file). Deterministic.

``run ROOT [--repeat N]``: in one process tree, round-robin (so that a change of load reaches
every contender alike), best of N:

- floor: list the label files' images, read each header size (Pillow, no decode), parse the
  rows, build COCO image/annotation dicts, ``orjson.dumps`` to a file; 1 process and 2
  (a fork Pool over chunks);
- dsprep: ``dsprep.convert("yolo", ROOT, "coco", OUT, images="none", workers=1 / 2)``.

``peers ROOT [--limit N] [--repeat N]`` (run with the peers' virtualenv, dsprep not needed):
the floor (1 process), Ultralytics' label scan (``YOLODataset(...).labels``: it has no
YOLO -> COCO converter; its scan is the step a conversion starts from, the COCO JSON then
dumped with orjson) and supervision's ``DetectionDataset.from_yolo(...).as_coco(...)``,
round-robin on the first N images: each peer's ratio to the floor, which ``run`` relates to dsprep.

Usage (from the repository root)::

    python scripts/bench/bench_yolo.py gen /tmp/bench-yolo
    python scripts/bench/bench_yolo.py run /tmp/bench-yolo --repeat 3 [--limit 30000]
    /work/bench-venvs/yolo-peers/bin/python scripts/bench/bench_yolo.py peers /tmp/bench-yolo --limit 10000 [--with-dsprep]
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, print_rate_table  # noqa: E402

N_IMAGES = 118_287
N_ROWS = 860_001
SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (612, 612), (640, 426), (427, 640), (640, 360)]


def gen(root: Path, scale: float, seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    n_img, n_rows = max(1, int(N_IMAGES * scale)), max(1, int(N_ROWS * scale))
    jpeg = {}
    for w, h in SIZES:
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (120, 110, 100)).save(buf, format="JPEG", quality=30)
        jpeg[(w, h)] = buf.getvalue()
    img_dir, lab_dir = root / "images" / "train2017", root / "labels" / "train2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    owner = np.sort(rng.integers(0, n_img, n_rows))
    starts = np.searchsorted(owner, np.arange(n_img + 1))
    cls = rng.integers(0, 80, n_rows)
    cx, cy = rng.uniform(0.05, 0.95, n_rows), rng.uniform(0.05, 0.95, n_rows)
    bw = np.minimum(rng.uniform(0.01, 0.6, n_rows), 2 * np.minimum(cx, 1 - cx))
    bh = np.minimum(rng.uniform(0.01, 0.6, n_rows), 2 * np.minimum(cy, 1 - cy))
    no_label = rng.random(n_img) < 0.01
    which = rng.integers(0, len(SIZES), n_img)
    for i in range(n_img):
        stem = f"{i + 1:012d}"
        (img_dir / f"{stem}.jpg").write_bytes(jpeg[SIZES[which[i]]])
        if no_label[i]:
            continue
        a, b = starts[i], starts[i + 1]
        (lab_dir / f"{stem}.txt").write_text("".join(
            f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in
            zip(cls[a:b].tolist(), cx[a:b].tolist(), cy[a:b].tolist(), bw[a:b].tolist(), bh[a:b].tolist())))
    names = "".join(f"  {k}: class{k}\n" for k in range(80))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train2017\nval: images/train2017\nnames:\n{names}")
    print(f"wrote {n_img} images, {int(sum(starts[i + 1] - starts[i] for i in range(n_img) if not no_label[i]))} "
          f"rows under {root}")


# --------------------------------------------------------------------------- floor

def _floor_chunk(args: tuple[str, list[str]]) -> tuple[list, list]:
    from PIL import Image

    root, names = args
    images, anns = [], []
    for k, name in enumerate(names):
        with Image.open(f"{root}/images/train2017/{name}") as im:
            w, h = im.size
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        try:
            with open(f"{root}/labels/train2017/{name[:-4]}.txt") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            c, x, y, bw, bh = line.split()
            x, y, bw, bh = float(x) * w, float(y) * h, float(bw) * w, float(bh) * h
            anns.append({"image_id": k, "category_id": int(c), "bbox": [x - bw / 2, y - bh / 2, bw, bh],
                         "area": bw * bh, "iscrowd": 0})
    return images, anns


def floor(root: Path, out: Path, procs: int) -> None:
    import orjson

    names = sorted(os.listdir(root / "images" / "train2017"))
    if procs <= 1:
        parts = [_floor_chunk((str(root), names))]
    else:
        step = (len(names) + procs * 8 - 1) // (procs * 8)
        with mp.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_floor_chunk, [(str(root), names[i:i + step]) for i in range(0, len(names), step)])
    images = [im for p in parts for im in p[0]]
    anns = [dict(a, id=i) for i, a in enumerate(a for p in parts for a in p[1])]
    out.write_bytes(orjson.dumps({"images": images, "annotations": anns,
                                  "categories": [{"id": k, "name": f"class{k}"} for k in range(80)]}))


def _subset(root: Path, limit: int | None, tmp: Path) -> Path:
    """``root`` itself (no ``limit``, or one that takes every image: links would add a ``readlink``
    per file to every contender), or a tree of links to its first ``limit`` images and their labels."""
    names = sorted(os.listdir(root / "images" / "train2017"))
    if not limit or limit >= len(names):
        return root
    sub = tmp / "subset"
    names = names[:limit]
    for d in ("images", "labels"):
        (sub / d / "train2017").mkdir(parents=True)
    for name in names:
        os.symlink(root / "images" / "train2017" / name, sub / "images" / "train2017" / name)
        lab = root / "labels" / "train2017" / f"{name[:-4]}.txt"
        if lab.exists():
            os.symlink(lab, sub / "labels" / "train2017" / lab.name)
    shutil.copy(root / "data.yaml", sub / "data.yaml")
    return sub


def run(root: Path, repeat: int, limit: int | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from dsprep.conversion import convert

    tmp = Path(tempfile.mkdtemp(prefix="bench-yolo-"))
    root = _subset(root, limit, tmp)
    n = len(os.listdir(root / "images" / "train2017"))

    def ours(workers: int) -> None:
        convert("yolo", root, "coco", tmp / "coco", split="train", images="none", workers=workers, overwrite=True,
                progress=False)

    contenders = [("floor, 1 process", lambda: floor(root, tmp / "floor.json", 1)),
                  ("floor, 2 processes", lambda: floor(root, tmp / "floor.json", 2)),
                  ("dsprep convert yolo -> coco, workers=1", lambda: ours(1)),
                  ("dsprep convert yolo -> coco, workers=2", lambda: ours(2))]
    try:
        print(f"{n} images; load {os.getloadavg()}")
        results = interleaved([fn for _, fn in contenders], repeat)
        print_rate_table([name for name, _ in contenders], results, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- peers

def peers(root: Path, limit: int, repeat: int, with_dsprep: bool) -> None:
    import orjson

    tmp = Path(tempfile.mkdtemp(prefix="bench-yolo-peers-"))
    try:
        sub = _subset(root, limit, tmp)
        names = os.listdir(sub / "images" / "train2017")
        peers_yaml = tmp / "data.yaml"  # the tree's own, with an absolute path (supervision reads names only)
        peers_yaml.write_text((root / "data.yaml").read_text().replace("path: .", f"path: {sub}"))

        def ultralytics() -> None:
            from ultralytics.data.dataset import YOLODataset

            for cache in (sub / "labels").glob("*.cache"):
                cache.unlink()
            import yaml

            data = yaml.safe_load(peers_yaml.read_text())
            data["names"] = {int(k): v for k, v in data["names"].items()}
            data["nc"] = len(data["names"])
            data["channels"] = 3
            ds = YOLODataset(img_path=str(sub / "images" / "train2017"), data=data, task="detect", augment=False,
                             cache=False)
            images, anns = [], []
            for k, lb in enumerate(ds.labels):
                h, w = lb["shape"]
                images.append({"id": k, "file_name": lb["im_file"], "width": w, "height": h})
                for c, (x, y, bw, bh) in zip(lb["cls"][:, 0].tolist(), lb["bboxes"].tolist()):
                    anns.append({"image_id": k, "category_id": int(c), "bbox": [(x - bw / 2) * w, (y - bh / 2) * h,
                                                                                 bw * w, bh * h]})
            (tmp / "u.json").write_bytes(orjson.dumps({"images": images, "annotations": anns}))

        def supervision() -> None:
            import supervision as sv

            ds = sv.DetectionDataset.from_yolo(images_directory_path=str(sub / "images" / "train2017"),
                                               annotations_directory_path=str(sub / "labels" / "train2017"),
                                               data_yaml_path=str(peers_yaml))
            ds.as_coco(annotations_path=str(tmp / "sv.json"))

        contenders = [("floor, 1 process", lambda: floor(sub, tmp / "floor.json", 1)),
                      ("Ultralytics YOLODataset label scan + orjson", ultralytics),
                      ("supervision from_yolo().as_coco()", supervision)]
        if with_dsprep:  # the repository's dsprep, imported into the peers' virtualenv: one process tree
            sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
            from dsprep.conversion import convert

            for workers in (1, 2):
                contenders.append((f"dsprep convert yolo -> coco, workers={workers}", partial(
                    convert, "yolo", sub, "coco", tmp / "coco", split="train", images="none", workers=workers,
                    overwrite=True, progress=False)))
        print(f"{len(names)} images; load {os.getloadavg()}")
        results = interleaved([fn for _, fn in contenders], repeat)
        print_rate_table([name for name, _ in contenders], results, len(names))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("root", type=Path)
    g.add_argument("--scale", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("root", type=Path)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--limit", type=int, default=None, help="only the first N images (a tree of links to them)")
    p = sub.add_parser("peers")
    p.add_argument("root", type=Path)
    p.add_argument("--limit", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--with-dsprep", action="store_true", help="also run this repository's dsprep in the same rounds")
    args = ap.parse_args()
    if args.cmd == "gen":
        gen(args.root, args.scale, args.seed)
    elif args.cmd == "run":
        run(args.root, args.repeat, args.limit)
    else:
        peers(args.root, args.limit, args.repeat, args.with_dsprep)


if __name__ == "__main__":
    main()
