"""Benchmark the shards stream against torchvision and dsprep's own file loader.

On the ImageNet-like tree (``gen_imagenet_like.py``), classification,
RandomResizedCrop(224) + flip, batch 64, 2 workers, uint8 batches through
``to_device(float32, normalise)`` (on this CPU):

- shards prepared at ``--max-side 256`` (quality 90) vs torchvision
  ``ImageFolder`` + v2 on the original JPEGs ending in float32 + Normalize;
- shards with ``--images keep`` (the original bytes) vs dsprep's file loader on
  the same files;
- the floor: decoding the same images, one process, nothing else.

Pipelines run in rounds, alternated; the ratios are taken per round and their
median is reported with the load average. Shards are written by dsprep's own
writer (``convert("imagenet", DATA/train, "shards", ...)``, ``--images keep`` and
``--max-side 256 --quality 90``) unless ``--shards-keep`` / ``--shards-256`` name
folders written by ``dsprep convert --to shards``, and read by ``dsprep.load(format="shards")``.

Usage:
    python scripts/bench/gen_imagenet_like.py --out /tmp/dsprep-bench --images 2000
    PYTHONPATH=. /work/bench-venvs/torchvision/bin/python scripts/bench/bench_shards_loader.py \\
        --data /tmp/dsprep-bench --work /tmp/dsprep-bench-shards --rounds 5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import bench_loaders  # noqa: E402
from bench_loaders import MEAN, STD, _count, _loader_run, _rounds, _time_loop, dsprep_classification  # noqa: E402


def _resized_tree(data: Path, out: Path, max_side: int, quality: int) -> Path:
    """The tree's JPEGs with the longer side at ``max_side`` (what ``--max-side`` stores)."""
    done = out / ".done"
    if done.exists():
        return out
    for src in sorted((data / "train").rglob("*.JPEG")):
        dst = out / src.relative_to(data)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im = Image.open(src).convert("RGB")
        s = max_side / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
        im.save(dst, quality=quality)
    done.write_text("")
    return out


def _write(data: Path, out: Path, max_side: int | None) -> Path:
    """``dsprep convert imagenet DATA/train --to shards`` (keep, or re-encoded at ``max_side``)."""
    from dsprep.conversion import convert

    if not (out / "index.json").exists():
        opts: dict = {"workers": 2}
        if max_side:
            opts.update(max_side=max_side, quality=90)
        convert("imagenet", data / "train", "shards", out, workers=2, progress=False,
                images="copy" if max_side else "keep", write_options=opts)
    return out


def prepare(data: Path, work: Path, keep: Path | None, small: Path | None) -> tuple[Path, Path, Path]:
    """(shards keeping the JPEGs, shards at max side 256, the 256 tree) under ``work``."""
    small_tree = _resized_tree(data, work / "tree-256", 256, 90)
    keep = keep or _write(data, work / "shards-keep", None)
    small = small or _write(data, work / "shards-256", 256)
    return keep, small, small_tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/tmp/dsprep-bench", help="the tree of gen_imagenet_like.py")
    ap.add_argument("--work", default="/tmp/dsprep-bench-shards", help="where shards are prepared (reused)")
    ap.add_argument("--shards-keep", type=Path, help="shards written with --images keep (default: prepared)")
    ap.add_argument("--shards-256", type=Path, help="shards written with --max-side 256 (default: prepared)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--floor-images", type=int, default=500)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    data, work = Path(args.data), Path(args.work)
    torch.set_num_threads(1)
    import dsprep
    from dsprep.loading import make_loader, to_device
    import torchvision
    from torchvision.transforms import v2

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, load {os.getloadavg()}", flush=True)
    t = time.perf_counter()
    keep, small, small_tree = prepare(data, work, args.shards_keep, args.shards_256)
    print(f"shards ready in {time.perf_counter() - t:.1f} s: {keep}, {small}", flush=True)

    def open_shards(root: Path, split: str | None):
        return dsprep.load(format="shards", root=str(root), split=split)

    kw = dict(batch_size=64, task="classification", augment="default", num_workers=args.workers, pin_memory=False,
              persistent_workers=False)
    files = dsprep_classification(data)
    post = lambda b: to_device(b, "cpu")  # noqa: E731
    tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=v2.Compose([
        v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]))
    pipes = {
        "shards --max-side 256 + to_device": _loader_run(lambda: make_loader(open_shards(small, None), **kw), _count, post),
        "torchvision ImageFolder + v2 -> float32 (originals)":
            _loader_run(lambda: tud.DataLoader(tv, batch_size=64, shuffle=True, num_workers=args.workers), _count),
        "shards --images keep + to_device": _loader_run(lambda: make_loader(open_shards(keep, None), **kw), _count, post),
        "dsprep file loader + to_device (same files)": _loader_run(lambda: make_loader(files, **kw), _count, post),
    }
    res: dict = {}
    bench_loaders.ROUNDS = args.rounds
    names = list(pipes)
    _rounds(pipes, res, [(names[0], names[1]), (names[2], names[3])])
    print("floor (decode only, one process):")
    rng = np.random.default_rng(0)
    rels = sorted(p.relative_to(data) for p in (data / "train").rglob("*.JPEG"))
    rels = [rels[i] for i in rng.permutation(len(rels))[:args.floor_images]]
    for name, root in (("PIL decode, original JPEGs", data), ("PIL decode, max-side 256 JPEGs", small_tree)):
        paths = [root / r for r in rels]
        run = _time_loop(lambda p: np.asarray(Image.open(p).convert("RGB")), paths)
        res[f"floor: {name}"] = {"rate": run.rate, "cpu_ms_per_image": run.cpu_ms}
        print(f"  floor: {name:44s} {run.rate:6.0f} img/s | CPU {run.cpu_ms:5.2f} ms/img", flush=True)
    res["load_after"] = os.getloadavg()
    print(f"load after: {os.getloadavg()}  dsprep {dsprep.__file__}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
