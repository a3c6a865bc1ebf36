"""`dsprep train` against a bare torch loop: same data, model, batch, optimizer and threads.

The data: an ImageFolder tree of small PNGs (default 3,000 at 32x32, 10 classes: five
shapes, filled or outlined, on noisy backgrounds; 80/20 train/val), generated once
into --data. The contestants, each a fresh subprocess of this one (so every run pays
its own start-up, as a user's does), alternated round by round:

- ``train``: ``python -m dsprep train imagenet DATA --image-size S --batch-size B
  --epochs E`` (validation on the val split included in its wall time); its
  images/s are the training loop's, per epoch, from ``metrics.json``;
- ``bare``: the floor. The training images decoded once into one uint8 tensor
  in memory (no loading, no augmentation), then per epoch a shuffled pass of
  ``(x / 255 - mean) / std``, ``create_model(MODEL, num_classes=10)``, cross-entropy,
  backward, ``AdamW(lr=2e-3, weight_decay=0.05)`` step: the loop of a tutorial.

Both run with torch's default thread count unless --threads sets OMP_NUM_THREADS for
both. Reported: each run's median images/s over epochs 2..E (epoch 1 pays worker
start-up and oneDNN's first-call costs), and the median over rounds of the paired
ratio train / bare (the two runs of a round ran back to back).

Usage (from the repository root):

    .venv/bin/python scripts/bench/bench_train.py --rounds 3 --epochs 3
    .venv/bin/python scripts/bench/bench_train.py --train-args "--workers 0"   # a variant
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ("circle", "square", "triangle", "diamond", "cross")


def make_data(root: Path, images: int, size: int, seed: int = 0, val_fraction: float = 0.2) -> None:
    """``root/{train,val}/<shape>_<filled|outline>/<n>.png``: one shape per image, the class."""
    from PIL import Image, ImageDraw

    sys.path.insert(0, str(ROOT))
    from dsprep.synth import _polygon

    rng = np.random.default_rng(seed)
    for k in range(images):
        c = int(rng.integers(2 * len(SHAPES)))
        shape, filled = SHAPES[c % len(SHAPES)], c < len(SHAPES)
        base = rng.integers(30, 226, 3)
        bg = np.clip(base + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(bg)
        draw = ImageDraw.Draw(im)
        r = rng.uniform(size * 0.25, size * 0.42)
        cx, cy = rng.uniform(r, size - r, 2)
        poly = _polygon(shape, cx, cy, r)
        pts = list(zip(poly[0::2], poly[1::2]))
        colour = tuple(int(v) for v in (255 - base + rng.integers(-40, 40, 3)) % 256)
        if filled:
            draw.polygon(pts, fill=colour)
        else:
            draw.polygon(pts, outline=colour, width=max(1, size // 16))
        split = "val" if k < images * val_fraction else "train"
        path = root / split / f"{shape}_{'filled' if filled else 'outline'}" / f"{k:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path)


def bare(args: argparse.Namespace) -> dict:
    """The floor: decoded tensors in memory, a plain training loop."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from dsprep.models import create_model

    classes = sorted(p.name for p in (args.data / "train").iterdir())
    files = sorted((args.data / "train").glob("*/*.png"))
    x_all = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).permute(0, 3, 1, 2)
    y_all = torch.tensor([classes.index(f.parent.name) for f in files])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    ips = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(files))
        n = 0
        for a in range(0, len(files) - args.batch_size + 1, args.batch_size):
            idx = perm[a:a + args.batch_size]
            x = (x_all[idx].float() / 255 - mean) / std
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(idx)
        ips.append(n / (time.perf_counter() - t0))
    return {"images_per_s": ips, "threads": torch.get_num_threads()}


def run_train(args: argparse.Namespace, src: Path = ROOT) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cmd = [sys.executable, "-m", "dsprep", "train", "imagenet", str(args.data), "--model", args.model,
           "--image-size", str(args.size), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--out", str(out / "run"), *args.train_args.split()]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=src, env=_env(args, src), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    shutil.rmtree(out)
    epochs = metrics["epochs"]
    return {"images_per_s": [e["train"]["images_per_s"] for e in epochs], "wall_s": wall,
            "val_top1": [e.get("val", {}).get("top1") for e in epochs]}


def run_bare(args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--bare", "--data", str(args.data), "--model", args.model,
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
    t0 = time.perf_counter()
    res = json.loads(subprocess.run(cmd, check=True, cwd=ROOT, env=_env(args), capture_output=True,
                                    text=True).stdout)
    res["wall_s"] = time.perf_counter() - t0
    return res


def _env(args: argparse.Namespace, src: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dsprep-bench-train")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both (default: torch's)")
    ap.add_argument("--train-args", default="", help="extra `dsprep train` arguments (a variant)")
    ap.add_argument("--before", type=Path, default=None,
                    help="another dsprep source tree (e.g. `git archive` of an older commit): its "
                         "`dsprep train` runs as a third contestant, 'before'")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bare:
        print(json.dumps(bare(args)))
        return 0
    if not (args.data / "train").is_dir():
        make_data(args.data, args.images, args.size)
    print(f"# uptime before: {_uptime()}", flush=True)
    names = ["train", "bare"] + (["before"] if args.before else [])
    contestants = [n for n in names if n != "bare"]  # each compared with the bare loop of its round
    rounds = []
    for r in range(args.rounds):
        pair: dict = {}
        for name in names[r % len(names):] + names[:r % len(names)]:  # the order rotates
            res = (run_bare(args) if name == "bare" else
                   run_train(args, args.before if name == "before" else ROOT))
            res["median_images_per_s"] = statistics.median(res["images_per_s"][1:] or res["images_per_s"])
            pair[name] = res
        line = f"round {r + 1}: " + " | ".join(
            f"{n} {pair[n]['median_images_per_s']:.1f} img/s ({pair[n]['wall_s']:.0f} s wall)" for n in names)
        for n in contestants:
            pair[f"ratio_{n}"] = pair[n]["median_images_per_s"] / pair["bare"]["median_images_per_s"]
            line += f" | {n} / bare {pair[f'ratio_{n}']:.2f}"
        rounds.append(pair)
        print(line + f" | val top1 {pair['train']['val_top1'][-1]}", flush=True)
    summary = {n: statistics.median(p[f"ratio_{n}"] for p in rounds) for n in contestants}
    summary.update(uptime_after=_uptime(), args={k: str(v) for k, v in vars(args).items()}, rounds=rounds)
    for n in contestants:
        print(f"median ratio {n} / bare: {summary[n]:.2f}")
    print(f"# uptime after: {summary['uptime_after']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
