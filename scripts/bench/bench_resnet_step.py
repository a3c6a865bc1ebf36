"""Training-step throughput of dsprep's ResNets against torchvision's, same run, same torch.

One step = forward + cross-entropy + backward + SGD (momentum 0.9, weight decay 1e-4)
on a fixed batch (default 32 x 3 x 224 x 224, CPU float32), in NCHW and in
channels_last. torchvision's model gets the same weights as ours (its state dict
is loaded into ours, which also checks key compatibility and equal outputs).

Load on a shared machine drifts, so the contestants (ours/torchvision x NCHW/
channels_last) run interleaved: each round times one step of each, in an order
that rotates from round to round; warm-up steps are excluded. Reported: median
images/s per contestant and the median over rounds of the paired ratio
ours/torchvision (the two steps of a pair ran seconds apart).

Run with the torchvision venv so both models use the same torch:

    PYTHONPATH=/path/to/dsprep /work/bench-venvs/torchvision/bin/python \\
        scripts/bench/bench_resnet_step.py --models resnet18 resnet50 --rounds 6

Without torchvision importable only ours is timed.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

from dsprep.models import create_model

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def make_contestants(name: str, num_classes: int):
    """[(label, model)]: ours and (when importable) torchvision's, with identical weights."""
    ours = create_model(name, num_classes=num_classes)
    try:
        import torchvision
    except ImportError:
        return [("dsprep", ours)], None
    theirs = getattr(torchvision.models, name)(num_classes=num_classes)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # no remapping
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    return [("dsprep", ours), ("torchvision", theirs)], diff


def train_step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def bench_model(name: str, args) -> dict:
    torch.manual_seed(0)
    models, diff = make_contestants(name, args.num_classes)
    x_base = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.num_classes, (args.batch_size,))
    runs = []
    for label, model in models:
        for fmt_name, fmt in FORMATS.items():
            # each contestant trains its own copy (same starting weights)
            m = model if fmt_name == "nchw" else copy.deepcopy(model)
            m = m.train().to(memory_format=fmt)
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            runs.append({"impl": label, "format": fmt_name, "model": m, "opt": opt,
                         "x": x_base.contiguous(memory_format=fmt), "times": [], "cpu": []})
    for run in runs:  # warm-up (allocator, oneDNN primitive caches), not timed
        for _ in range(args.warmup):
            train_step(run["model"], run["opt"], run["x"], y)
    for r in range(args.rounds):
        order = runs[r % len(runs):] + runs[:r % len(runs)]
        for run in order:
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(run["model"], run["opt"], run["x"], y)
            run["times"].append(time.perf_counter() - t0)
            run["cpu"].append(time.process_time() - c0)
    result = {"model": name, "max_abs_logit_diff_vs_torchvision": diff, "runs": []}
    for run in runs:
        ips = [args.batch_size / t for t in run["times"]]
        result["runs"].append({"impl": run["impl"], "format": run["format"],
                               "images_per_s_median": statistics.median(ips),
                               "images_per_s_min": min(ips), "images_per_s_max": max(ips),
                               "cpu_s_per_image_median": statistics.median(run["cpu"]) / args.batch_size,
                               "step_s": run["times"], "step_cpu_s": run["cpu"]})
    by = {(r["impl"], r["format"]): r for r in runs}
    result["ratio_ours_over_torchvision"] = {}
    result["cpu_ratio_ours_over_torchvision"] = {}
    for fmt_name in FORMATS:
        if ("torchvision", fmt_name) in by:
            ours, theirs = by[("dsprep", fmt_name)], by[("torchvision", fmt_name)]
            # throughput ratio = their step time / ours, paired within a round
            result["ratio_ours_over_torchvision"][fmt_name] = statistics.median(
                t / o for o, t in zip(ours["times"], theirs["times"]))
            # the same from process CPU time, which being descheduled on a
            # shared machine inflates much less than wall time
            result["cpu_ratio_ours_over_torchvision"][fmt_name] = statistics.median(
                t / o for o, t in zip(ours["cpu"], theirs["cpu"]))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per contestant")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per contestant")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        import torchvision
        tv_version = torchvision.__version__
    except ImportError:
        tv_version = None
    meta = {"torch": torch.__version__, "torchvision": tv_version, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
            "batch_size": args.batch_size, "image_size": args.image_size, "warmup": args.warmup,
            "rounds": args.rounds, "uptime_before": uptime()}
    print(f"# torch {meta['torch']}, torchvision {tv_version}, {meta['threads']} threads; "
          f"batch {args.batch_size}x3x{args.image_size}x{args.image_size} float32")
    print(f"# uptime before: {meta['uptime_before']}")
    results = []
    t0 = time.perf_counter()
    for name in args.models:
        res = bench_model(name, args)
        results.append(res)
        if res["max_abs_logit_diff_vs_torchvision"] is not None:
            print(f"{name}: torchvision state dict loaded strict; "
                  f"max |logit diff| = {res['max_abs_logit_diff_vs_torchvision']:.2e}")
        print("| model | impl | format | images/s (median) | min-max | CPU s/image |")
        print("|---|---|---|---|---|---|")
        for r in res["runs"]:
            print(f"| {name} | {r['impl']} | {r['format']} | {r['images_per_s_median']:.1f} "
                  f"| {r['images_per_s_min']:.1f}-{r['images_per_s_max']:.1f} "
                  f"| {r['cpu_s_per_image_median']:.3f} |")
        for fmt, ratio in res["ratio_ours_over_torchvision"].items():
            cpu = res["cpu_ratio_ours_over_torchvision"][fmt]
            print(f"{name} {fmt}: ours / torchvision throughput = {ratio:.3f} wall, {cpu:.3f} CPU time "
                  "(median of paired rounds)")
        ours = {r["format"]: r["images_per_s_median"] for r in res["runs"] if r["impl"] == "dsprep"}
        print(f"{name}: faster memory format for ours = {max(ours, key=ours.get)}")
    meta["uptime_after"] = uptime()
    meta["wall_s"] = time.perf_counter() - t0
    print(f"# uptime after: {meta['uptime_after']}; wall {meta['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
