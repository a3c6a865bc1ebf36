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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0.0


def _children() -> list[int]:
    """Live child processes of this one (the loader's workers)."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _time_loader(loader, count_fn, limit: int | None = None, post=None) -> tuple[float, int, float]:
    """(images/s after the first batch, images, CPU ms per image over the whole run).

    Wall-clock rate excludes worker start-up. The CPU figure adds the
    workers' CPU time (from fork to the last batch; read after every batch,
    as workers exit when the epoch ends) and the main process's (all its
    threads) and divides by every image delivered: on a machine shared with
    other jobs it is the figure that their load does not distort.
    """
    main0 = time.process_time()
    it = iter(loader)
    first = next(it)
    pids = _children()
    if post is not None:
        post(first)
    n_all = count_fn(first)
    n = 0
    seen = {p: 0.0 for p in pids}  # last reading: workers exit as soon as the epoch ends
    t0 = time.perf_counter()
    for batch in it:
        if post is not None:
            batch = post(batch)
        n += count_fn(batch)
        for p in pids:
            seen[p] = max(seen[p], _cpu_seconds(p))
        if limit and n >= limit:
            break
    dt = time.perf_counter() - t0
    cpu = time.process_time() - main0 + sum(seen.values())
    del it
    return n / dt, n, 1000 * cpu / (n + n_all)


REPEATS = 3
LIMIT: int | None = None


def _interleaved(pipelines: dict, res: dict) -> None:
    """Run each pipeline REPEATS times, interleaved, and report the best and the median.

    On a shared machine the best of several runs is the least disturbed one;
    interleaving gives every pipeline the same chances.
    """
    runs: dict[str, list[float]] = {k: [] for k in pipelines}
    cpus: dict[str, list[float]] = {k: [] for k in pipelines}
    n_seen: dict[str, int] = {}
    for _ in range(REPEATS):
        for name, (make, count, post) in pipelines.items():
            rate, n, cpu_ms = _time_loader(make(), count, limit=LIMIT, post=post)
            runs[name].append(rate)
            cpus[name].append(cpu_ms)
            n_seen[name] = n
    for name, rates in runs.items():
        best, med = max(rates), float(np.median(rates))
        cpu = float(np.median(cpus[name]))
        res[name] = {"best": best, "median": med, "runs": rates, "cpu_ms_per_image": cpu}
        print(f"  {name:58s} best {best:6.0f}  median {med:6.0f} img/s | CPU {cpu:5.2f} ms/img "
              f"({n_seen[name]} images x {len(rates)})", flush=True)


def _best_loop(name: str, fn, items, res: dict) -> None:
    rates, cpus = [], []
    for _ in range(REPEATS):
        t, c = time.perf_counter(), time.process_time()
        for x in items:
            fn(x)
        rates.append(len(items) / (time.perf_counter() - t))
        cpus.append(1000 * (time.process_time() - c) / len(items))
    cpu = float(np.median(cpus))
    res[name] = {"best": max(rates), "median": float(np.median(rates)), "runs": rates, "cpu_ms_per_image": cpu}
    print(f"  {name:58s} best {max(rates):6.0f}  median {float(np.median(rates)):6.0f} img/s | CPU {cpu:5.2f} "
          f"ms/img ({len(items)} images x {len(rates)})", flush=True)


def bench_floor(data: Path, n: int, res: dict) -> None:
    print("floor (one process, no framework):")
    rels = [p for p, _ in _ids_and_paths(data)]
    rels = [rels[i] for i in np.random.default_rng(0).permutation(len(rels))[:n]]
    paths = [data / r for r in rels]
    for p in paths[:50]:
        Image.open(p).convert("RGB")
    _best_loop("PIL full decode", lambda p: Image.open(p).convert("RGB"), paths, res)
    _best_loop("PIL full decode + RandomResizedCrop-like resize to 224",
               lambda p: Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR, box=(20, 20, 320, 320)),
               paths, res)
    try:
        import simplejpeg
    except ImportError:
        print("  simplejpeg: not installed")
    else:
        _best_loop("simplejpeg decode", lambda p: simplejpeg.decode_jpeg(p.read_bytes(), colorspace="RGB"),
                   paths, res)
    masks = json.loads((data / "masks.json").read_text())

    def image_and_mask(r: str) -> None:
        Image.open(data / r).convert("RGB")
        np.asarray(Image.open(data / masks[r]))

    _best_loop("PIL decode image + mask (segmentation floor)", image_and_mask, rels, res)


def bench_cls(data: Path, workers: int, res: dict) -> None:
    from dsprep.loading import make_loader, to_device

    print(f"classification, RandomResizedCrop(224) + flip, batch 64, {workers} workers:")
    ds = dsprep_classification(data)
    kw = dict(batch_size=64, task="classification", num_workers=workers, pin_memory=False,
              persistent_workers=False)
    count = lambda b: len(b[0])  # noqa: E731
    pipes: dict = {
        "dsprep loader (uint8 batches)": (lambda: make_loader(ds, **kw), count, None),
        "dsprep loader + to_device(float32, normalise) on CPU":
            (lambda: make_loader(ds, **kw), count, lambda b: to_device(b, "cpu")),
    }
    try:
        import torchvision
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
    else:
        head = [v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()]
        for name, tail in (("torchvision ImageFolder + v2 -> float32 + Normalize",
                            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]),
                           ("torchvision ImageFolder + v2 -> uint8", [])):
            tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=v2.Compose(head + tail))
            pipes[name] = ((lambda tv=tv: tud.DataLoader(tv, batch_size=64, shuffle=True, num_workers=workers)),
                           count, None)
    _interleaved(pipes, res)


def bench_det(data: Path, workers: int, res: dict) -> None:
    from dsprep.loading import make_loader

    print(f"detection, flip + resize shorter side 512, batch 8, {workers} workers:")
    ds = dsprep_coco(data)
    count = lambda b: len(b[0])  # noqa: E731
    pipes: dict = {"dsprep detection loader (uint8, padded batch)": (
        lambda: make_loader(ds, batch_size=8, task="detection", min_size=512, max_size=None, num_workers=workers,
                            pin_memory=False, persistent_workers=False), count, None)}
    try:
        import torchvision
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
    else:
        import contextlib
        import io

        for name, tail in (("torchvision CocoDetection + v2 -> float32", [v2.ToDtype(torch.float32, scale=True)]),
                           ("torchvision CocoDetection + v2 -> uint8", [])):
            tf = v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(512, antialias=True), v2.ToImage()] + tail)
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
                tv = torchvision.datasets.CocoDetection(str(data), str(data / "instances.json"), transforms=tf)
                tv = torchvision.datasets.wrap_dataset_for_transforms_v2(tv, target_keys=("boxes", "labels",
                                                                                          "image_id"))
            pipes[name] = ((lambda tv=tv: tud.DataLoader(tv, batch_size=8, shuffle=True, num_workers=workers,
                                                         collate_fn=_tuple_collate)), count, None)
    _interleaved(pipes, res)


def _tuple_collate(batch):
    return tuple(zip(*batch))


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
    from dsprep.loading import make_loader

    print(f"segmentation, random scale 0.5-2 + crop 512 (pad 255) + flip, batch 8, {workers} workers:")
    ds = dsprep_coco(data, masks=True)
    count = lambda b: len(b[0])  # noqa: E731
    pipes: dict = {"dsprep segmentation loader (uint8)": (
        lambda: make_loader(ds, batch_size=8, task="segmentation", num_workers=workers, pin_memory=False,
                            persistent_workers=False), count, None)}
    try:
        from torchvision import tv_tensors
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
    else:
        for name, tail in (("torchvision v2 (Image, Mask) -> float32",
                            [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]),
                           ("torchvision v2 (Image, Mask) -> uint8", [])):
            tf = v2.Compose([v2.ToImage(), v2.RandomResize(187, 751, antialias=True),
                             v2.RandomCrop(512, pad_if_needed=True,
                                           fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}),
                             v2.RandomHorizontalFlip()] + tail)
            pipes[name] = ((lambda tf=tf: tud.DataLoader(_TVSeg(data, tf), batch_size=8, shuffle=True,
                                                         num_workers=workers)), count, None)
    _interleaved(pipes, res)


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


def bench_mem(n_images: int, boxes_per_image: int, workers: int, res: dict,
              kinds: tuple[str, ...] = ("list of dicts", "dsprep RecordTable")) -> None:
    from dsprep.loading import RecordTable
    from dsprep.records import Category, Dataset, Instances, Record

    print(f"memory: {n_images} records x {boxes_per_image} boxes, {workers} workers reading every record:")
    rng = np.random.default_rng(0)
    cats = [Category(i, f"c{i}") for i in range(1, 81)]

    def collate(b):
        return len(b)

    for kind in kinds:
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
    ap.add_argument("--mem-kind", choices=["dicts", "dsprep", "both"], default="both",
                    help="one kind per process gives each a clean parent")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per pipeline (best and median shown)")
    ap.add_argument("--limit", type=int, default=None, help="images per run (default: one epoch)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    global REPEATS, LIMIT
    REPEATS, LIMIT = args.repeats, args.limit
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
            kinds = {"dicts": ("list of dicts",), "dsprep": ("dsprep RecordTable",),
                     "both": ("list of dicts", "dsprep RecordTable")}[args.mem_kind]
            bench_mem(args.mem_images, args.mem_boxes, args.mem_workers, res, kinds)
    print(f"load after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
