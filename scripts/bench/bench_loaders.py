"""DataLoader throughput (and worker memory) of dsprep against torchvision and the floors.

Run with the torchvision bench venv so both pipelines share one torch, after
``gen_imagenet_like.py``::

    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_loaders.py \\
        --data /tmp/dsprep-bench --what floor cls det seg --workers 2
    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_loaders.py --what mem

Pipelines (same images, same worker count, one epoch each after a warm-up):

- cls: RandomResizedCrop(224) + horizontal flip, batch 64. dsprep's loader
  (uint8 batches; normalisation belongs on the device) and the same followed
  by ``to_device(float32, normalise)`` on this CPU in the main process;
  torchvision ``ImageFolder`` + transforms.v2 ending in float32 + Normalize,
  and ending in uint8 (``PILToTensor``).
- det: horizontal flip + resize shorter side to 512, batch 8. dsprep
  (records built from the generated COCO JSON) against ``CocoDetection`` +
  ``wrap_dataset_for_transforms_v2`` + v2 ending in float32 (``ToDtype(scale=True)``)
  and in uint8.
- seg: random scale 0.5-2, 512 crop padded (255 in the mask), flip, batch 8:
  dsprep against a v2 pipeline over (Image, Mask) pairs.
- floor: one process, no framework: PIL full decode (``convert("RGB")``),
  simplejpeg when installed, PIL decode of image + mask.
- mem: 118k records x 7 boxes (COCO train2017-sized), 4 workers reading every
  record's targets (no pixels): dsprep's flat RecordTable against a
  list-of-dicts dataset; peak RSS, PSS and private (USS) memory of the workers.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _ids_and_paths(data: Path) -> list[tuple[str, int]]:
    root = data / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    out = []
    for k, c in enumerate(classes):
        out += [(f"train/{c}/{f}", k) for f in sorted(os.listdir(root / c))]
    return out


def dsprep_classification(data: Path):
    from dsprep.records import Category, Dataset, Record, record_id_from_path

    items = _ids_and_paths(data)
    cats = [Category(k, f"c{k}") for k in range(max(i[1] for i in items) + 1)]
    return Dataset(cats, [Record(record_id_from_path(p), p, 0, 0, "train", label=k) for p, k in items], root=data)


def dsprep_coco(data: Path, masks: bool = False):
    from dsprep.records import Category, Dataset, Instances, Record, record_id_from_path

    coco = json.loads((data / "instances.json").read_text())
    mask_of = json.loads((data / "masks.json").read_text()) if masks else {}
    by_img: dict[int, list] = {}
    for a in coco["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    recs = []
    for im in coco["images"]:
        anns = by_img.get(im["id"], [])
        boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        inst = Instances(boxes=boxes, labels=[a["category_id"] for a in anns],
                         iscrowd=[bool(a["iscrowd"]) for a in anns])
        recs.append(Record(record_id_from_path(im["file_name"]), im["file_name"], im["width"], im["height"],
                           "train", instances=inst, mask_path=mask_of.get(im["file_name"]), source_id=im["id"]))
    cats = [Category(c["id"], c["name"]) for c in coco["categories"]]
    return Dataset(cats, recs, root=data)


def _time_loader(loader, count_fn, limit: int | None = None, post=None) -> tuple[float, int]:
    """Images per second after the first batch (worker start-up excluded)."""
    it = iter(loader)
    first = next(it)
    if post is not None:
        post(first)
    n = 0
    t0 = time.perf_counter()
    for batch in it:
        if post is not None:
            batch = post(batch)
        n += count_fn(batch)
        if limit and n >= limit:
            break
    dt = time.perf_counter() - t0
    del it
    return n / dt, n


def _report(name: str, rate: float, n: int, ref: dict) -> None:
    ref[name] = rate
    print(f"  {name:58s} {rate:8.0f} img/s  ({n} images)", flush=True)


def bench_floor(data: Path, n: int, res: dict) -> None:
    print("floor (one process):")
    paths = [data / p for p, _ in _ids_and_paths(data)][:n]
    for p in paths[:50]:
        Image.open(p).convert("RGB")
    t = time.perf_counter()
    for p in paths:
        Image.open(p).convert("RGB")
    _report("PIL full decode", len(paths) / (time.perf_counter() - t), len(paths), res)
    try:
        import simplejpeg
    except ImportError:
        print("  simplejpeg: not installed")
    else:
        t = time.perf_counter()
        for p in paths:
            simplejpeg.decode_jpeg(p.read_bytes(), colorspace="RGB")
        _report("simplejpeg decode", len(paths) / (time.perf_counter() - t), len(paths), res)
    masks = json.loads((data / "masks.json").read_text())
    rels = [p for p, _ in _ids_and_paths(data)][:n]
    t = time.perf_counter()
    for r in rels:
        Image.open(data / r).convert("RGB")
        np.asarray(Image.open(data / masks[r]))
    _report("PIL decode image + mask (segmentation floor)", len(rels) / (time.perf_counter() - t), len(rels), res)


def bench_cls(data: Path, workers: int, res: dict) -> None:
    from dsprep.loaders import make_loader, to_device

    print(f"classification, RandomResizedCrop(224) + flip, batch 64, {workers} workers:")
    ds = dsprep_classification(data)
    kw = dict(batch_size=64, task="classification", num_workers=workers, pin_memory=False,
              persistent_workers=False)
    count = lambda b: len(b[0])  # noqa: E731
    _report("dsprep loader (uint8 batches)", *_time_loader(make_loader(ds, **kw), count), res)
    _report("dsprep loader + to_device(float32, normalise) on CPU",
            *_time_loader(make_loader(ds, **kw), count, post=lambda b: to_device(b, "cpu")), res)
    try:
        import torchvision
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
        return
    head = [v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()]
    for name, tail in (("torchvision ImageFolder + v2 -> float32 + Normalize",
                        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]),
                       ("torchvision ImageFolder + v2 -> uint8", [])):
        tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=v2.Compose(head + tail))
        loader = tud.DataLoader(tv, batch_size=64, shuffle=True, num_workers=workers)
        _report(name, *_time_loader(loader, count), res)


def bench_det(data: Path, workers: int, res: dict) -> None:
    from dsprep.loaders import make_loader

    print(f"detection, flip + resize shorter side 512, batch 8, {workers} workers:")
    ds = dsprep_coco(data)
    count = lambda b: len(b[0])  # noqa: E731
    loader = make_loader(ds, batch_size=8, task="detection", min_size=512, max_size=None, num_workers=workers,
                         pin_memory=False, persistent_workers=False)
    _report("dsprep detection loader (uint8, padded batch)", *_time_loader(loader, count), res)
    try:
        import torchvision
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
        return
    for name, tail in (("torchvision CocoDetection + v2 -> float32", [v2.ToDtype(torch.float32, scale=True)]),
                       ("torchvision CocoDetection + v2 -> uint8", [])):
        tf = v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(512, antialias=True), v2.ToImage()] + tail)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
            tv = torchvision.datasets.CocoDetection(str(data), str(data / "instances.json"), transforms=tf)
            tv = torchvision.datasets.wrap_dataset_for_transforms_v2(tv, target_keys=("boxes", "labels", "image_id"))
        loader = tud.DataLoader(tv, batch_size=8, shuffle=True, num_workers=workers,
                                collate_fn=lambda b: tuple(zip(*b)))
        _report(name, *_time_loader(loader, count), res)


class _TVSeg(tud.Dataset):
    def __init__(self, data: Path, tf):
        self.data = data
        self.items = sorted(json.loads((data / "masks.json").read_text()).items())
        self.tf = tf

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from torchvision import tv_tensors

        img, mask = self.items[i]
        image = Image.open(self.data / img).convert("RGB")
        m = tv_tensors.Mask(torch.from_numpy(np.array(Image.open(self.data / mask))))
        return self.tf(image, m)


def bench_seg(data: Path, workers: int, res: dict) -> None:
    from dsprep.loaders import make_loader

    print(f"segmentation, random scale 0.5-2 + crop 512 (pad 255) + flip, batch 8, {workers} workers:")
    ds = dsprep_coco(data, masks=True)
    count = lambda b: len(b[0])  # noqa: E731
    loader = make_loader(ds, batch_size=8, task="segmentation", num_workers=workers, pin_memory=False,
                         persistent_workers=False)
    _report("dsprep segmentation loader (uint8)", *_time_loader(loader, count), res)
    try:
        from torchvision import tv_tensors
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
        return
    for name, tail in (("torchvision v2 (Image, Mask) -> float32",
                        [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]),
                       ("torchvision v2 (Image, Mask) -> uint8", [])):
        tf = v2.Compose([v2.ToImage(), v2.RandomResize(187, 751, antialias=True),
                         v2.RandomCrop(512, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}),
                         v2.RandomHorizontalFlip()] + tail)
        loader = tud.DataLoader(_TVSeg(data, tf), batch_size=8, shuffle=True, num_workers=workers)
        _report(name, *_time_loader(loader, count), res)


# ----------------------------------------------------------------------------- memory

def _mem(pid: int) -> tuple[int, int, int]:
    """(rss, pss, uss) in bytes from /proc."""
    rss = pss = uss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                kb = int(rest.split()[0]) * 1024 if rest.strip() else 0
                if key == "Rss":
                    rss = kb
                elif key == "Pss":
                    pss = kb
                elif key in ("Private_Clean", "Private_Dirty"):
                    uss += kb
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return rss, pss, uss


class _ListOfDicts(tud.Dataset):
    """What a hand-written COCO dataset holds: a list of per-image dicts of per-annotation dicts."""

    def __init__(self, dicts):
        self.dicts = dicts

    def __len__(self) -> int:
        return len(self.dicts)

    def __getitem__(self, i):
        d = self.dicts[i]
        boxes = torch.tensor([a["bbox"] for a in d["annotations"]], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([a["category_id"] for a in d["annotations"]], dtype=torch.int64)
        return d["file_name"], boxes, labels


class _FlatTable(tud.Dataset):
    """dsprep's RecordTable read the way TorchDataset reads it (targets only, no pixels)."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i):
        t = self.table
        s = t.objects(i)
        return t.paths[i], torch.from_numpy(t.boxes[s].copy()), torch.from_numpy(t.labels[s].copy())


def _peak_during(loader) -> dict:
    peak = {"rss": 0, "pss": 0, "uss": 0}
    stop = threading.Event()
    pids: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            tot = [0, 0, 0]
            for pid in pids:
                for k, v in enumerate(_mem(pid)):
                    tot[k] += v
            for k, name in enumerate(("rss", "pss", "uss")):
                peak[name] = max(peak[name], tot[k])
            time.sleep(0.1)

    it = iter(loader)
    pids.extend(w.pid for w in it._workers)
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    n = 0
    for _ in it:
        n += 1
    time.sleep(0.3)
    stop.set()
    th.join()
    return peak


def bench_mem(n_images: int, boxes_per_image: int, workers: int, res: dict) -> None:
    from dsprep.loaders import RecordTable
    from dsprep.records import Category, Dataset, Instances, Record

    print(f"memory: {n_images} records x {boxes_per_image} boxes, {workers} workers reading every record:")
    rng = np.random.default_rng(0)
    cats = [Category(i, f"c{i}") for i in range(1, 81)]

    def collate(b):
        return len(b)

    for kind in ("list of dicts", "dsprep RecordTable"):
        gc.collect()
        if kind == "list of dicts":
            dicts = []
            for i in range(n_images):
                xy = rng.uniform(0, 400, (boxes_per_image, 2))
                wh = rng.uniform(5, 200, (boxes_per_image, 2))
                dicts.append({"file_name": f"train2017/{i:012d}.jpg", "height": 480, "width": 640, "image_id": i,
                              "annotations": [{"bbox": [float(v) for v in (*xy[k], *wh[k])],
                                               "category_id": int(rng.integers(1, 81)), "iscrowd": 0,
                                               "area": float(wh[k].prod()), "id": i * 10 + k}
                                              for k in range(boxes_per_image)]})
            ds = _ListOfDicts(dicts)
        else:
            recs = []
            for i in range(n_images):
                xy = rng.uniform(0, 400, (boxes_per_image, 2))
                wh = rng.uniform(5, 200, (boxes_per_image, 2))
                recs.append(Record(f"train2017/{i:012d}", f"train2017/{i:012d}.jpg", 640, 480, "train",
                                   instances=Instances(boxes=np.concatenate([xy, xy + wh], 1),
                                                       labels=rng.integers(1, 81, boxes_per_image))))
            dataset = Dataset(cats, recs)  # kept alive in the parent, as a user's script would
            ds = _FlatTable(RecordTable(dataset))
        parent = _mem(os.getpid())
        loader = tud.DataLoader(ds, batch_size=256, num_workers=workers, collate_fn=collate, shuffle=True)
        peak = _peak_during(loader)
        mb = 1 / 2**20
        print(f"  {kind:22s} parent RSS {parent[0] * mb:6.0f} MB | workers peak: RSS {peak['rss'] * mb:6.0f} MB, "
              f"PSS {peak['pss'] * mb:6.0f} MB, private {peak['uss'] * mb:6.0f} MB", flush=True)
        res[f"mem {kind}"] = {"parent_rss_mb": parent[0] * mb, **{k: v * mb for k, v in peak.items()}}
        del ds, loader
        if kind == "list of dicts":
            del dicts
        else:
            del dataset, recs
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/tmp/dsprep-bench")
    ap.add_argument("--what", nargs="+", default=["floor", "cls", "det", "seg"],
                    choices=["floor", "cls", "det", "seg", "mem"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--floor-images", type=int, default=1000)
    ap.add_argument("--mem-images", type=int, default=118_287)
    ap.add_argument("--mem-boxes", type=int, default=7)
    ap.add_argument("--mem-workers", type=int, default=4)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, load {os.getloadavg()}", flush=True)
    res: dict = {}
    for what in args.what:
        if what == "floor":
            bench_floor(data, args.floor_images, res)
        elif what == "cls":
            bench_cls(data, args.workers, res)
        elif what == "det":
            bench_det(data, args.workers, res)
        elif what == "seg":
            bench_seg(data, args.workers, res)
        elif what == "mem":
            bench_mem(args.mem_images, args.mem_boxes, args.mem_workers, res)
    print(f"load after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
