"""DataLoader throughput (and worker memory) of dsprep against torchvision and the decode floors.

Run with the torchvision bench venv so both pipelines share one torch (and one
Pillow), after ``gen_imagenet_like.py``::

    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_loaders.py \\
        --data /tmp/dsprep-bench --what cls det seg --workers 2 --rounds 5
    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_loaders.py --what stages
    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_loaders.py --what mem

Pipelines (same images, same worker count, the same interpolation with
antialiasing, one decode per image, each run one full epoch so that every
worker CPU second counted belongs to a delivered image):

- cls: RandomResizedCrop(224) + horizontal flip, batch 64. dsprep's loader
  ending in uint8 batches (normalisation belongs on the device), and the same
  followed by ``to_device(float32, normalise)`` on this CPU in the main
  process; torchvision ``ImageFolder`` + transforms.v2 ending in uint8
  (``PILToTensor``), and in float32 + Normalize. The one-process decode floors
  of the same files (Pillow; simplejpeg when installed) run in the same rounds.
- det: horizontal flip + resize shorter side to 512, batch 8. dsprep
  (records built from the generated COCO JSON) against ``CocoDetection`` +
  ``wrap_dataset_for_transforms_v2`` + v2 ending in uint8 and in float32
  (``ToDtype(scale=True)``).
- seg: random scale 0.5-2, 512 crop padded (255 in the mask), flip, batch 8:
  dsprep against a v2 pipeline over (Image, Mask) pairs; floor: Pillow decode
  of image + mask in one process.
- stages: one worker's classification sample path stage by stage (open,
  decode, plan, crop + resample, the rest of the sample, collate), dsprep
  against torchvision on the same ``--floor-images`` files in one process
  (CPU ms per image), and each loader's own cost (2 workers and the main
  process handing over constant pre-built samples).
- mem: 118k records x 7 boxes (COCO train2017-sized), 4 workers reading every
  record's targets (no pixels): dsprep's flat RecordTable against a
  list-of-dicts dataset; peak RSS, PSS and private (USS) memory of the workers.

Every pipeline runs once per round, ``--rounds`` rounds in a rotating order;
comparisons are medians of per-round ratios (images/s, and CPU per image
summed over workers and the main process), printed with the load average at
each round's start: on a shared machine those are the figures to read.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
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


EPOCH_IMAGES: int | None = None  # --epoch-images: every pipeline reads the same subset


def _keep(n: int) -> list[int]:
    """Indices (ascending) of the images every pipeline reads: all, or EPOCH_IMAGES drawn at random."""
    if EPOCH_IMAGES is None or EPOCH_IMAGES >= n:
        return list(range(n))
    return sorted(np.random.default_rng(1).permutation(n)[:EPOCH_IMAGES].tolist())


def dsprep_classification(data: Path):
    from dsprep.records import Category, Dataset, Record, record_id_from_path

    items = _ids_and_paths(data)
    items = [items[i] for i in _keep(len(items))]
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
    for i in _keep(len(coco["images"])):
        im = coco["images"][i]
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


@dataclass
class Run:
    """One timed run of a pipeline: wall rate after the first batch and CPU per image."""

    rate: float          # images/s, wall clock, after the first batch (worker start-up excluded)
    images: int          # images delivered in all
    cpu_ms: float        # CPU ms per image: workers (from fork to exit) + main process
    main_ms: float       # of which the main process (all its threads)
    load: float          # 1-minute load average when the run started


def _time_loader(loader, count_fn, post=None) -> Run:
    """Time one full epoch of ``loader`` (every image delivered, so every worker CPU second
    counted belongs to a delivered image).

    The CPU figure adds the workers' CPU time (from fork to their last batch;
    read after every batch, as workers exit when the epoch ends) and the main
    process's (all its threads) and divides by every image delivered: on a
    machine shared with other jobs it is the figure their load distorts least.
    """
    load = os.getloadavg()[0]
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
    dt = time.perf_counter() - t0
    main = time.process_time() - main0
    del it
    total = n + n_all
    return Run(n / dt, total, 1000 * (main + sum(seen.values())) / total, 1000 * main / total, load)


def _time_loop(fn, items) -> Run:
    """A floor: ``fn`` over ``items`` in this process, no framework."""
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    for x in items:
        fn(x)
    cpu = 1000 * (time.process_time() - c) / len(items)
    return Run(len(items) / (time.perf_counter() - t), len(items), cpu, cpu, load)


ROUNDS = 5


def _rounds(pipelines: dict, res: dict, pairs: list[tuple[str, str]]) -> None:
    """Run every pipeline once per round, ROUNDS rounds, the order rotating each round.

    Each pair ``(a, b)`` is reported as the median over rounds of the per-round
    ratios (a's images/s over b's, and b's CPU per image over a's): both runs
    of a round see about the same load from other jobs, so the ratio is the
    figure to read on a shared machine; the load average at each round's start
    is printed beside it.
    """
    names = list(pipelines)
    runs: dict[str, list[Run]] = {k: [] for k in names}
    loads = []
    for r in range(ROUNDS):
        loads.append(os.getloadavg()[0])
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            runs[name].append(pipelines[name]())
    for name in names:
        rates = [x.rate for x in runs[name]]
        cpu, main = float(np.median([x.cpu_ms for x in runs[name]])), float(np.median([x.main_ms for x in runs[name]]))
        res[name] = {"median": float(np.median(rates)), "best": max(rates), "runs": rates,
                     "cpu_ms_per_image": cpu, "main_ms_per_image": main}
        print(f"  {name:58s} median {np.median(rates):6.0f} (best {max(rates):6.0f}) img/s | CPU {cpu:5.2f} "
              f"ms/img, main process {main:4.2f} ({runs[name][0].images} images x {len(rates)})", flush=True)
    print(f"  load average at each round's start: {', '.join(f'{v:.1f}' for v in loads)}")
    for a, b in pairs:
        wall = [x.rate / y.rate for x, y in zip(runs[a], runs[b])]
        cpu = [y.cpu_ms / x.cpu_ms for x, y in zip(runs[a], runs[b])]
        key = f"{a} / {b}"
        res[key] = {"wall_ratio_median": float(np.median(wall)), "wall_ratios": wall,
                    "cpu_ratio_median": float(np.median(cpu)), "cpu_ratios": cpu, "loads": loads}
        print(f"  {a} / {b}:\n      images/s {np.median(wall):.2f}x (rounds {', '.join(f'{v:.2f}' for v in wall)}), "
              f"CPU per image {np.median(cpu):.2f}x (rounds {', '.join(f'{v:.2f}' for v in cpu)})", flush=True)


def _floor_items(data: Path, n: int) -> list[str]:
    """``n`` of the images the pipelines read (``--epoch-images``' subset), at random."""
    rels = [p for p, _ in _ids_and_paths(data)]
    rels = [rels[i] for i in _keep(len(rels))]
    return [rels[i] for i in np.random.default_rng(0).permutation(len(rels))[:n]]


def _floors(data: Path, n: int) -> dict:
    """Decode-only floors over ``n`` of the same files, one process: Pillow (open + convert("RGB")
    + array, as a loader needs it) and libjpeg-turbo through simplejpeg (read + decode)."""
    paths = [data / r for r in _floor_items(data, n)]
    pipes = {"floor: Pillow decode to an RGB array, one process":
             lambda: _time_loop(lambda p: np.asarray(Image.open(p).convert("RGB")), paths)}
    try:
        import simplejpeg
    except ImportError:
        print("  simplejpeg: not installed (no fast-decode floor)")
    else:
        pipes["floor: simplejpeg decode, one process"] = lambda: _time_loop(
            lambda p: simplejpeg.decode_jpeg(p.read_bytes(), colorspace="RGB"), paths)
    return pipes


def _loader_run(make, count, post=None):
    return lambda: _time_loader(make(), count, post)


def _count(batch) -> int:
    return len(batch[0])


def bench_cls(data: Path, workers: int, floor_images: int, res: dict) -> None:
    from dsprep.loading import make_loader, to_device

    print(f"classification, RandomResizedCrop(224) + flip, batch 64, {workers} workers:")
    ds = dsprep_classification(data)
    kw = dict(batch_size=64, task="classification", num_workers=workers, pin_memory=False,
              persistent_workers=False)
    ours, ours_f = "dsprep loader (uint8 batches)", "dsprep loader + to_device(float32, normalise) on CPU"
    pipes: dict = {
        ours: _loader_run(lambda: make_loader(ds, **kw), _count),
        ours_f: _loader_run(lambda: make_loader(ds, **kw), _count, lambda b: to_device(b, "cpu")),
    }
    pairs = []
    try:
        import torchvision
        from torchvision.transforms import v2
    except ImportError:
        print("  torchvision not installed: skipped")
    else:
        head = [v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()]
        tv_f, tv_u = "torchvision ImageFolder + v2 -> float32 + Normalize", "torchvision ImageFolder + v2 -> uint8"
        for name, tail in ((tv_f, [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]), (tv_u, [])):
            tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=v2.Compose(head + tail))
            tv = tud.Subset(tv, _keep(len(tv)))  # ImageFolder's order is _ids_and_paths'
            pipes[name] = _loader_run(
                lambda tv=tv: tud.DataLoader(tv, batch_size=64, shuffle=True, num_workers=workers), _count)
        pairs += [(ours, tv_u), (ours, tv_f), (ours_f, tv_f)]
    floors = _floors(data, floor_images)
    pipes.update(floors)
    pairs += [(ours, f) for f in floors]
    _rounds(pipes, res, pairs)


def bench_det(data: Path, workers: int, res: dict) -> None:
    from dsprep.loading import make_loader

    print(f"detection, flip + resize shorter side 512, batch 8, {workers} workers:")
    ds = dsprep_coco(data)
    ours = "dsprep detection loader (uint8, padded batch)"
    pipes: dict = {ours: _loader_run(
        lambda: make_loader(ds, batch_size=8, task="detection", min_size=512, max_size=None, num_workers=workers,
                            pin_memory=False, persistent_workers=False), _count)}
    pairs = []
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
            tv = tud.Subset(tv, _keep(len(tv)))  # CocoDetection reads images by ascending id, as listed
            pipes[name] = _loader_run(lambda tv=tv: tud.DataLoader(tv, batch_size=8, shuffle=True,
                                                                   num_workers=workers, collate_fn=_tuple_collate),
                                      _count)
            pairs.append((ours, name))
    _rounds(pipes, res, pairs)


def _tuple_collate(batch):
    return tuple(zip(*batch))


class _TVSeg(tud.Dataset):
    def __init__(self, data: Path, tf):
        self.data = data
        images = json.loads((data / "instances.json").read_text())["images"]
        keep = {images[i]["file_name"] for i in _keep(len(images))}
        self.items = sorted((k, v) for k, v in json.loads((data / "masks.json").read_text()).items() if k in keep)
        self.tf = tf

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from torchvision import tv_tensors

        img, mask = self.items[i]
        image = Image.open(self.data / img).convert("RGB")
        m = tv_tensors.Mask(torch.from_numpy(np.array(Image.open(self.data / mask))))
        return self.tf(image, m)


def bench_seg(data: Path, workers: int, floor_images: int, res: dict) -> None:
    from dsprep.loading import make_loader

    print(f"segmentation, random scale 0.5-2 + crop 512 (pad 255) + flip, batch 8, {workers} workers:")
    ds = dsprep_coco(data, masks=True)
    ours = "dsprep segmentation loader (uint8)"
    pipes: dict = {ours: _loader_run(
        lambda: make_loader(ds, batch_size=8, task="segmentation", num_workers=workers, pin_memory=False,
                            persistent_workers=False), _count)}
    pairs = []
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
            pipes[name] = _loader_run(lambda tf=tf: tud.DataLoader(_TVSeg(data, tf), batch_size=8, shuffle=True,
                                                                   num_workers=workers), _count)
            pairs.append((ours, name))
    masks = json.loads((data / "masks.json").read_text())
    rels = _floor_items(data, floor_images)

    def image_and_mask(r: str) -> None:
        np.asarray(Image.open(data / r).convert("RGB"))
        np.asarray(Image.open(data / masks[r]))

    floor = "floor: Pillow decode of image + mask, one process"
    pipes[floor] = lambda: _time_loop(image_and_mask, rels)
    pairs.append((ours, floor))
    _rounds(pipes, res, pairs)


# ----------------------------------------------------------------------------- sample path, stage by stage

def _cpu_ms(fn, items) -> float:
    c = time.process_time()
    for x in items:
        fn(x)
    return 1000 * (time.process_time() - c) / len(items)


class _Constant(tud.Dataset):
    """A loader's own cost: every sample the same pre-built (image, target)."""

    def __init__(self, n: int, sample):
        self.n, self.sample = n, sample

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return self.sample


def _dsprep_stages(data: Path, paths: list[Path], batch: int) -> dict:
    from dsprep.loading import Collate, TorchDataset
    from dsprep.loading import transforms as T
    from dsprep.loading.dataset import sample_rng
    from dsprep.loading.decode import ImageSource

    ds = dsprep_classification(data)
    tds = TorchDataset(ds, task="classification", augment="default")
    aug = tds.transform
    index = {os.fspath(tds.table.path(r)): r for r in range(len(tds))}
    keys = [(0, index[os.fspath(p)]) for p in paths]  # the same images, each with its own crop
    decoded = {p: ImageSource(p).decode() for p in paths}

    def plan(p):
        src = ImageSource(p)
        pl = T.Plan.identity(*src.size)
        rng = sample_rng(0, 0, index[os.fspath(p)])
        for op in aug.ops:
            pl = op.plan(pl, {}, rng)
        return T.fit(pl, src)

    plans = {p: plan(p) for p in paths}
    samples = [tds[k] for k in keys[:batch]]
    collate = Collate("classification", report_skips=True)
    return {
        "open (read file, header)": lambda: _cpu_ms(ImageSource, paths),
        "open + decode": lambda: _cpu_ms(lambda p: ImageSource(p).decode(), paths),
        "open + augmentation plan": lambda: _cpu_ms(plan, paths),
        "crop + resample (decoded image, planned crop)":
            lambda: _cpu_ms(lambda p: T.resized_crop_image(decoded[p], plans[p]), paths),
        "whole sample (dataset[i])": lambda: _cpu_ms(tds.__getitem__, keys),
        "collate, per image": lambda: _cpu_ms(collate, [samples] * 20) / batch,
    }


def _torchvision_stages(data: Path, paths: list[Path], batch: int) -> dict:
    import torchvision
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()])
    tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=tf)
    index = {os.fspath(p): i for i, (p, _) in enumerate(tv.samples)}
    idx = [index[os.fspath(p)] for p in paths]
    decoded = {p: Image.open(p).convert("RGB") for p in paths}
    samples = [tv[i] for i in idx[:batch]]
    return {
        "open (read file, header)": lambda: _cpu_ms(Image.open, paths),
        "open + decode": lambda: _cpu_ms(lambda p: Image.open(p).convert("RGB"), paths),
        "crop + resample (decoded image, planned crop)": lambda: _cpu_ms(lambda p: tf(decoded[p]), paths),
        "whole sample (dataset[i])": lambda: _cpu_ms(tv.__getitem__, idx),
        "collate, per image": lambda: _cpu_ms(tud.default_collate, [samples] * 20) / batch,
    }


def bench_stages(data: Path, n: int, workers: int, res: dict) -> None:
    """One worker's sample path, stage by stage, dsprep against torchvision on the same files
    (CPU ms per image, one process, medians over alternated rounds), and the loader's own
    cost: 2 workers, batch 64, every sample a pre-built one (collate, shared-memory
    hand-off, main process)."""
    from dsprep.loading.build import Loader
    from dsprep.loading.collate import Collate

    print(f"sample path stage by stage, {n} images, one process (CPU ms per image, median of {ROUNDS} rounds):")
    paths = [data / r for r in _floor_items(data, n)]
    stages = {"dsprep": _dsprep_stages(data, paths, 64), "torchvision": _torchvision_stages(data, paths, 64)}
    image = torch.zeros(224, 224, 3, dtype=torch.uint8).permute(2, 0, 1)  # HWC pixels, as both pipelines hold
    m = 640
    stages["dsprep"]["loader's own cost (constant samples, workers + main)"] = lambda: _time_loader(
        Loader(_Constant(m, (image, {"label": torch.tensor(1), "image_id": "x"})), batch_size=64,
               num_workers=workers, collate_fn=Collate("classification", report_skips=True)), _count).cpu_ms
    stages["torchvision"]["loader's own cost (constant samples, workers + main)"] = lambda: _time_loader(
        tud.DataLoader(_Constant(m, (image, 1)), batch_size=64,
                       num_workers=workers), _count).cpu_ms
    got: dict = {lib: {k: [] for k in st} for lib, st in stages.items()}
    for _ in range(ROUNDS):
        for lib, st in stages.items():
            for k, fn in st.items():
                got[lib][k].append(fn())
    table = {}
    for lib, st in got.items():
        med = {k: float(np.median(v)) for k, v in st.items()}
        res[f"stages {lib}"] = med
        table[lib] = _stage_table(med)
    print(f"  {'stage':58s} {'dsprep':>8s} {'torchvision':>12s}")
    for k in table["dsprep"]:
        print(f"  {k:58s} {table['dsprep'][k]:8.3f} {table['torchvision'].get(k, float('nan')):12.3f}")
    print(f"  load average: {os.getloadavg()[0]:.1f}")


def _stage_table(med: dict) -> dict:
    """The measured loops -> one cost per stage (differences of nested loops)."""
    opened = med["open (read file, header)"]
    decode = med["open + decode"] - opened
    plan = med["open + augmentation plan"] - opened if "open + augmentation plan" in med else 0.0
    resample = med["crop + resample (decoded image, planned crop)"]
    sample = med["whole sample (dataset[i])"]
    own = med["loader's own cost (constant samples, workers + main)"]
    out = {"open (read, header)": opened, "decode": decode,
           "augmentation plan (torchvision: inside crop + resample)": plan,
           "crop + resample (+ flip, to tensor)": resample,
           "the rest of the sample (rng, targets, glue)": sample - opened - decode - plan - resample,
           "loader: collate, shared-memory hand-off, main process": own,
           "  of which collate": med["collate, per image"]}
    out["total"] = sample + own
    return out


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
    ap.add_argument("--what", nargs="+", default=["cls", "det", "seg"],
                    choices=["cls", "det", "seg", "stages", "mem"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--floor-images", type=int, default=500, help="images the one-process decode floors read")
    ap.add_argument("--mem-images", type=int, default=118_287)
    ap.add_argument("--mem-boxes", type=int, default=7)
    ap.add_argument("--mem-workers", type=int, default=4)
    ap.add_argument("--mem-kind", choices=["dicts", "dsprep", "both"], default="both",
                    help="one kind per process gives each a clean parent")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds; each runs every pipeline once, in a rotating order (medians of per-round ratios)")
    ap.add_argument("--epoch-images", type=int, default=None,
                    help="images per epoch (a random subset, the same for every pipeline; default: all)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    global ROUNDS, EPOCH_IMAGES
    ROUNDS, EPOCH_IMAGES = args.rounds, args.epoch_images
    torch.set_num_threads(1)
    import PIL

    try:
        from dsprep.loading.decode import fast_jpeg_available
        fast = "with" if fast_jpeg_available() else "without"
    except ImportError:
        fast = "(an older dsprep)"
    print(f"torch {torch.__version__}, Pillow {PIL.__version__}, python {sys.version.split()[0]}, dsprep {fast} "
          f"the fast JPEG path; load {os.getloadavg()}", flush=True)
    res: dict = {}
    for what in args.what:
        if what == "cls":
            bench_cls(data, args.workers, args.floor_images, res)
        elif what == "det":
            bench_det(data, args.workers, res)
        elif what == "stages":
            bench_stages(data, args.floor_images, args.workers, res)
        elif what == "seg":
            bench_seg(data, args.workers, args.floor_images, res)
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
