#!/usr/bin/env python
"""The CUDA paths, checked and timed on a GPU machine (CI has none: this is a script, not a test).

    python scripts/bench/gpu_check.py --json gpu.json --reference ../shared/reference

Checks (each PASS/FAIL with its figures; exit 1 if any failed):

1. ``to_device``: a pinned uint8 batch copied ``non_blocking`` and normalised on the GPU equals
   the float64 computation on the CPU (float32, float16, bfloat16; NCHW and channels_last, the
   memory format asked for). Timed: uint8 across the bus + normalise there, against normalising
   to float32 on the CPU and copying 4x the bytes; pinned against pageable copies.
2. The loader on CUDA: ``pin_memory`` on by default, batches arrive pinned; ``DeviceLoader``
   (copy of batch n+1 on a side stream while n is used) gives the same tensors as ``to_device``
   batch by batch, detection targets included. Timed: images/s of the loader alone and through
   ``DeviceLoader``.
3. The bundled ResNets on CUDA reproduce torchvision's reference logits in float32 (rtol 1e-3),
   and stay close under autocast (float16, bfloat16) and channels_last.
4. Training-step throughput of our ResNet-50 against torchvision's on the same GPU (AMP bf16,
   channels_last, batch 128, 224 px), rounds alternated; ratio ours/torchvision.
5. ``dsprep train`` on CUDA (AMP and channels_last on by default): runs, loss finite, accuracy
   above chance; its images/s.
6. Shards: ``convert --to shards`` then the streaming loader through ``DeviceLoader`` on CUDA.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
RESULTS: dict[str, dict] = {}


def check(name):
    def wrap(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                figures = fn(*a, **k) or {}
                RESULTS[name] = {"ok": True, **figures}
            except Exception as err:  # a failed check is reported, the others still run
                RESULTS[name] = {"ok": False, "error": f"{type(err).__name__}: {err}",
                                 "trace": traceback.format_exc()[-2000:]}
            RESULTS[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"[{'PASS' if RESULTS[name]['ok'] else 'FAIL'}] {name}: "
                  f"{json.dumps({k: v for k, v in RESULTS[name].items() if k != 'trace'})}", flush=True)
        return run
    return wrap


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat=20):
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@check("1 to_device")
def check_to_device(device, small):
    from dsprep.loading.device import IMAGENET_MEAN, IMAGENET_STD, to_device
    n, side = (8, 64) if small else (128, 224)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)
    pinned = x.pin_memory() if device.type == "cuda" else x
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    want = (x.double() / 255 - mean) / std
    errs = {}
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 8e-2)):
        for cl in (False, True):
            y = to_device(pinned, device, dtype=dtype, channels_last=cl)
            assert y.device.type == device.type and y.dtype == dtype, (y.device, y.dtype)
            fmt = torch.channels_last if cl else torch.contiguous_format
            assert y.is_contiguous(memory_format=fmt), f"{dtype} channels_last={cl}: wrong memory format"
            err = (y.double().cpu() - want).abs().max().item()
            errs[f"{str(dtype)[6:]}{'_cl' if cl else ''}"] = err
            assert err <= tol, f"{dtype} channels_last={cl}: max error {err} > {tol}"
    figures = {"max_abs_error": errs}
    if device.type == "cuda":
        t_dev = timed(lambda: to_device(pinned, device, dtype=torch.float32, channels_last=True), device)
        t_host = timed(lambda: (((x.float() / 255 - mean.float()) / std.float()).pin_memory()
                                .to(device, non_blocking=True)), device, repeat=5)
        t_pinned = timed(lambda: pinned.to(device, non_blocking=True), device)
        t_pageable = timed(lambda: x.to(device), device)
        figures.update({
            "batch": list(x.shape),
            "ms_uint8_bus_then_normalise_on_gpu": round(t_dev * 1e3, 3),
            "ms_normalise_on_cpu_then_float_bus": round(t_host * 1e3, 3),
            "speedup_device_normalisation": round(t_host / t_dev, 1),
            "GBps_pinned_h2d": round(x.numel() / t_pinned / 1e9, 1),
            "GBps_pageable_h2d": round(x.numel() / t_pageable / 1e9, 1),
        })
    return figures


def make_data(work: Path, small: bool, workers: int) -> dict[str, Path]:
    """An ImageNet-like tree of ~500x375 JPEGs (scripts/bench/gen_imagenet_like.py) and a synth COCO."""
    from dsprep.synth import synth
    n = 96 if small else 2048
    out = {"imagenet": work / "imagenet-like", "coco": work / "synth-coco"}
    if not out["imagenet"].exists():
        subprocess.run([sys.executable, str(ROOT / "scripts/bench/gen_imagenet_like.py"), "--out", str(out["imagenet"]),
                        "--images", str(n), "--workers", str(workers)], check=True, capture_output=True)
    if not out["coco"].exists():
        synth("coco", out["coco"], images=n // 4, seed=1, size=128, progress=False)
    return out


def _batches_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.device == b.device and a.dtype == b.dtype, (a.device, b.device)
        assert torch.equal(a, b), "tensors differ"
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _batches_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _batches_equal(u, v)
    else:
        assert a == b


@check("2 loader on the device")
def check_loader(device, data, workers, small):
    import dsprep
    from dsprep.loading.device import DeviceLoader, to_device
    figures = {}
    for fmt, task in (("imagenet", "classification"), ("coco", "detection")):
        ds = dsprep.parse(fmt, data[fmt], progress=False)
        loader = ds.loader(batch_size=64, task=task, num_workers=workers, shuffle=False, seed=0,
                           augment="eval", size=224) if task == "classification" else \
            ds.loader(batch_size=16, task=task, num_workers=workers, shuffle=False, seed=0, augment="none")
        if device.type == "cuda":
            assert loader.pin_memory, "pin_memory is not on by default on CUDA"
        first = next(iter(loader))
        if device.type == "cuda":
            assert first[0].is_pinned(), "batch images are not in pinned memory"
        opts = dict(dtype=torch.bfloat16, channels_last=True)
        direct = [to_device(b, device, **opts) for b in loader]
        via = list(DeviceLoader(loader, device, **opts))
        assert len(direct) == len(via) > 0
        for a, b in zip(direct, via):
            _batches_equal(a, b)
        # throughput: the loader alone, then through DeviceLoader into a tiny GPU op
        def epoch(it):
            t0 = time.perf_counter()
            n = 0
            for b in it:
                n += b[0].shape[0]
                if isinstance(b[0], torch.Tensor) and b[0].device.type == device.type:
                    b[0].float().mean()
            sync(device)
            return n / (time.perf_counter() - t0)
        rates_plain, rates_dev = [], []
        for _ in range(2):
            rates_plain.append(epoch(loader))
            rates_dev.append(epoch(DeviceLoader(loader, device, **opts)))
        figures[f"{task}_images_per_s_loader"] = round(max(rates_plain), 1)
        figures[f"{task}_images_per_s_device_loader"] = round(max(rates_dev), 1)
        figures[f"{task}_batches"] = len(direct)
    figures["workers"] = workers
    return figures


def _deterministic_state(model):
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        n, shape = value.numel(), tuple(value.shape)
        base = np.sin(0.37 * np.arange(n, dtype=np.float64) + len(key))
        if key.endswith("running_var"):
            filled = np.linspace(0.5, 1.5, n)
        elif key.endswith("running_mean") or key.endswith("bias"):
            filled = 0.1 * base
        elif len(shape) == 1:
            filled = 1 + 0.1 * base
        else:
            filled = base * math.sqrt(3 / (n / shape[0]))
        state[key] = torch.from_numpy(filled.astype(np.float32)).reshape(shape)
    return state


@check("3 reference logits on the device")
def check_logits(device, reference: Path):
    from dsprep.models import create_model
    ref = json.loads((reference / "torchvision_resnet_reference_outputs.json").read_text())["models"]
    i = torch.arange(3 * 64 * 64, dtype=torch.float64)
    x = torch.stack([torch.cos(0.01 * (b + 1) * i).reshape(3, 64, 64) for b in range(2)]).float().to(device)
    figures = {}
    for name in ref:
        model = create_model(name, num_classes=1000)
        model.load_state_dict(_deterministic_state(model))
        model = model.to(device).eval()
        with torch.no_grad():
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            logits = model(x).float().cpu()
            np.testing.assert_allclose(logits[:, :8].numpy(), ref[name]["logits_first8"], rtol=1e-3, atol=1e-4)
            assert logits.argmax(1).tolist() == ref[name]["argmax"]
            cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
            rel = {"channels_last": (cl.float().cpu() - logits).abs().max().item() / logits.abs().max().item()}
            if device.type == "cuda":
                for dt in (torch.float16, torch.bfloat16):
                    with torch.autocast("cuda", dtype=dt):
                        y = model(x.contiguous(memory_format=torch.channels_last)).float().cpu()
                    rel[str(dt)[6:]] = (y - logits).abs().max().item() / logits.abs().max().item()
                    assert y.argmax(1).tolist() == ref[name]["argmax"], f"{name} {dt}: argmax changed"
            assert rel["channels_last"] < 1e-4, rel
            figures[name] = {k: float(f"{v:.2e}") for k, v in rel.items()}
    return {"relative_error": figures}


@check("4 training step: ours vs torchvision")
def check_step(device, small):
    from dsprep.models import create_model
    try:
        import torchvision
    except ImportError:
        return {"skipped": "torchvision not importable"}
    import torch.nn.functional as F
    bs, side = (8, 64) if small else (128, 224)
    ours = create_model("resnet50", num_classes=1000)
    theirs = torchvision.models.resnet50(weights=None)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(bs, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (bs,), device=device)
    steps = {}
    for name, m in (("ours", ours), ("torchvision", theirs)):
        m = m.to(device).to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def step(m=m, opt=opt):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steps[name] = step
    for s in steps.values():
        for _ in range(3):
            s()
    sync(device)
    times = {k: [] for k in steps}
    order = list(steps)
    for r in range(6 if small else 12):
        for k in (order if r % 2 == 0 else order[::-1]):
            times[k].append(timed(steps[k], device, repeat=3 if small else 10))
    ratio = statistics.median(t / o for t, o in zip(times["torchvision"], times["ours"]))
    return {"batch": bs, "side": side, "amp": "bf16" if device.type == "cuda" else "off",
            "images_per_s_ours": round(bs / statistics.median(times["ours"]), 1),
            "images_per_s_torchvision": round(bs / statistics.median(times["torchvision"]), 1),
            "ratio_ours_over_torchvision": round(ratio, 3)}


@check("5 dsprep train on the device")
def check_train(device, data, work: Path, workers, small):
    out = work / "train-run"
    cmd = [sys.executable, "-m", "dsprep", "train", "imagenet", str(data["imagenet"]), "--model", "resnet18",
           "--image-size", "64", "--batch-size", "128", "--epochs", "2" if small else "6",
           "--workers", str(workers), "--device", device.type, "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    wall = time.perf_counter() - t0
    tail = (p.stdout + p.stderr)[-1500:]
    assert p.returncode == 0, f"exit {p.returncode}: {tail}"
    m = json.loads((out / "metrics.json").read_text())
    epochs = [e["train"] for e in m["epochs"]]
    assert all(math.isfinite(e["loss"]) for e in epochs), [e["loss"] for e in epochs]
    assert epochs[-1]["top1"] > 2 / len(m["classes"]), f"train top1 {epochs[-1]['top1']}: not above chance"
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "output_tail": tail[-400:],
            "train_loss": [round(e["loss"], 4) for e in epochs], "train_top1": [round(e["top1"], 3) for e in epochs],
            "images_per_s": [round(e["images_per_s"], 1) for e in epochs]}


@check("6 shards streamed to the device")
def check_shards(device, data, work: Path, workers, small):
    import dsprep
    from dsprep.loading.device import DeviceLoader
    shards = work / "shards"
    p = subprocess.run([sys.executable, "-m", "dsprep", "convert", "imagenet", str(data["imagenet"]), "--to",
                        "shards", "--out", str(shards), "--max-side", "256", "--overwrite", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-1500:]
    ds = dsprep.parse("shards", shards, progress=False)
    loader = ds.loader(batch_size=64, num_workers=workers, size=224, seed=0)
    n, t0 = 0, time.perf_counter()
    for images, targets in DeviceLoader(loader, device, dtype=torch.bfloat16, channels_last=True):
        assert images.device.type == device.type and images.dtype == torch.bfloat16
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert torch.isfinite(images.float()).all()
        n += images.shape[0]
    sync(device)
    return {"images": n, "images_per_s": round(n / (time.perf_counter() - t0), 1), "workers": workers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--small", action="store_true", help="tiny sizes (a dry run on a CPU)")
    ap.add_argument("--only", nargs="*", default=None, help="check numbers to run (default: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="dsprep-gpu-"))
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "cpus": os.cpu_count(), "load": os.getloadavg()}
    print(json.dumps(info), flush=True)
    want = set(args.only or "123456")
    if "1" in want:
        check_to_device(device, args.small)
    data = make_data(work, args.small, args.workers) if want & set("256") else {}
    if "2" in want:
        check_loader(device, data, args.workers, args.small)
    if "3" in want:
        check_logits(device, args.reference)
    if "4" in want:
        check_step(device, args.small)
    if "5" in want:
        check_train(device, data, work, args.workers, args.small)
    if "6" in want:
        check_shards(device, data, work, args.workers, args.small)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": RESULTS}, indent=1))
    return 0 if all(r["ok"] for r in RESULTS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
