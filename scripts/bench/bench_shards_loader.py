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
median is reported with the load average. Shards are written by
``tests/fakes_shards.py`` (which follows the shard format) unless
``--shards-keep`` / ``--shards-256`` name folders written by ``dsprep convert --to shards``.

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

from bench_loaders import MEAN, STD, _best_loop, _time_loader, dsprep_classification  # noqa: E402


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


def _write(ds, out: Path) -> Path:
    from fakes_shards import write_shards

    if not (out / "index.json").exists():
        write_shards(ds, out, per_shard=500, source_format="imagenet")
    return out


def prepare(data: Path, work: Path, keep: Path | None, small: Path | None) -> tuple[Path, Path, Path]:
    """(shards keeping the JPEGs, shards at max side 256, the 256 tree) under ``work``."""
    small_tree = _resized_tree(data, work / "tree-256", 256, 90)
    keep = keep or _write(dsprep_classification(data), work / "shards-keep")
    small = small or _write(dsprep_classification(small_tree), work / "shards-256")
    return keep, small, small_tree


def _rounds(pipes: dict, rounds: int, limit: int | None) -> dict[str, list[float]]:
    """Every pipeline once per round, in turn; images/s per run."""
    rates: dict[str, list[float]] = {k: [] for k in pipes}
    for r in range(rounds):
        for name, (make, post) in pipes.items():
            rate, n, cpu = _time_loader(make(), lambda b: len(b[0]), limit=limit, post=post)
            rates[name].append(rate)
            print(f"  round {r + 1}: {name:52s} {rate:6.0f} img/s  CPU {cpu:5.2f} ms/img  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/tmp/dsprep-bench", help="the tree of gen_imagenet_like.py")
    ap.add_argument("--work", default="/tmp/dsprep-bench-shards", help="where shards are prepared (reused)")
    ap.add_argument("--shards-keep", type=Path, help="shards written with --images keep (default: prepared)")
    ap.add_argument("--shards-256", type=Path, help="shards written with --max-side 256 (default: prepared)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="images per run (default: one epoch)")
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
    from fakes_shards import open_shards

    kw = dict(batch_size=64, task="classification", augment="default", num_workers=args.workers, pin_memory=False,
              persistent_workers=False)
    files = dsprep_classification(data)
    post = lambda b: to_device(b, "cpu")  # noqa: E731
    tv = torchvision.datasets.ImageFolder(str(data / "train"), transform=v2.Compose([
        v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]))
    pipes = {
        "shards --max-side 256 + to_device": (lambda: make_loader(open_shards(small, "train"), **kw), post),
        "torchvision ImageFolder + v2 -> float32 (originals)":
            (lambda: tud.DataLoader(tv, batch_size=64, shuffle=True, num_workers=args.workers), None),
        "shards --images keep + to_device": (lambda: make_loader(open_shards(keep, "train"), **kw), post),
        "dsprep file loader + to_device (same files)": (lambda: make_loader(files, **kw), post),
    }
    rates = _rounds(pipes, args.rounds, args.limit)
    names = list(pipes)
    res: dict = {"rates": rates, "load_after": os.getloadavg()}
    for a, b in ((names[0], names[1]), (names[2], names[3])):
        ratios = [x / y for x, y in zip(rates[a], rates[b])]
        res[f"{a} / {b}"] = {"median": float(np.median(ratios)), "ratios": ratios}
        print(f"{a} / {b}: median {np.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    for name, r in rates.items():
        print(f"  {name:52s} median {np.median(r):6.0f} img/s")
    print("floor (decode only, one process):")
    rng = np.random.default_rng(0)
    rels = sorted(p.relative_to(data) for p in (data / "train").rglob("*.JPEG"))
    rels = [rels[i] for i in rng.permutation(len(rels))[:args.floor_images]]
    for name, root in (("PIL decode, original JPEGs", data), ("PIL decode, max-side 256 JPEGs", small_tree)):
        blobs = [(root / r).read_bytes() for r in rels]
        import io

        _best_loop(name, lambda b: Image.open(io.BytesIO(b)).convert("RGB"), blobs, res)
    print(f"load after: {os.getloadavg()}  dsprep {dsprep.__file__}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
