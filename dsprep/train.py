"""``dsprep train``: sanity-train the bundled ResNet on any loaded dataset.

The point is to learn within minutes whether a dataset trains — or that
something is wrong with it (labels shuffled, boxes off their objects, masks
misaligned). One epoch loop, one validation pass, and everything written to
``out/``:

- ``last.pt``: ``{"model", "optimizer", "scheduler", "epoch", "config",
  "classes", "metrics"}`` (what ``--resume`` reads); ``best.pt``: the same
  without the optimizer state. Both load with
  ``dsprep.models.create_model(name, weights=path)``;
- ``metrics.json``: the config, the classes and every epoch's figures;
- ``confusion.csv`` and ``per_class.csv`` for the best epoch (classification);
- ``curves.png`` (loss and accuracy, train vs val) and ``predictions.png`` (a
  grid of validation samples with true and predicted labels). matplotlib draws
  the curves when installed (the ``plot`` extra), Pillow otherwise.

Under ``torchrun --nproc_per_node N`` it runs DistributedDataParallel (gloo on
CPU, nccl on CUDA); each rank trains on its shard, rank 0 validates and writes.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MissingFileError, OutputExistsError, UnknownNameError, check_choice
from .records import Dataset

__all__ = ["TrainConfig", "train", "TASKS"]

log = logging.getLogger(__name__)
TASKS = ("classification", "crops", "segmentation")
# What a run writes into OUT (its manifest lists them, so that --overwrite may replace them).
TRAIN_FILES = ("best.pt", "best.pt.tmp", "last.pt", "last.pt.tmp", "metrics.json", "metrics.json.tmp",
               "curves.png", "predictions.png", "confusion.csv", "per_class.csv")


@dataclass
class TrainConfig:
    """What ``dsprep train`` does. Defaults suit a first sanity run on a CPU."""

    task: str = "classification"   # classification | crops (one sample per object box) | segmentation
    model: str = "resnet18"
    weights: str | None = None     # a local torchvision/timm/dsprep .pth; never downloaded
    finetune: str = "all"          # all | last (layer4 + head) | head (frozen backbone)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3               # AdamW peak learning rate (cosine decay after a short warm-up)
    weight_decay: float = 0.05
    image_size: int = 224          # classification/crops: side of the square input; segmentation: crop side
    workers: int | None = None     # DataLoader processes (default: min(4, cores))
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda
    amp: bool | None = None        # mixed precision; default: on for CUDA, off on CPU
    channels_last: bool | None = None  # default: on (faster on CPU and CUDA for ResNets, docs/benchmarks.md)
    out: str = "dsprep-train"
    resume: bool = False           # continue OUT/last.pt
    overwrite: bool = False        # replace an existing OUT (only one dsprep wrote: its manifest says so)
    progress: bool | None = None   # a bar per epoch (default: when stderr is a terminal)
    extra: dict[str, Any] = field(default_factory=dict)  # loader options (e.g. mask_lut)


# -- distributed ----------------------------------------------------------------------------------

def _dist_setup(device: torch.device) -> tuple[int, int]:
    """Initialise torch.distributed under torchrun; returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _pick_device(name: str) -> torch.device:
    check_choice("device", name, ("auto", "cpu", "cuda"))
    if name == "cuda" and not torch.cuda.is_available():
        raise UnknownNameError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


# -- classes per task -----------------------------------------------------------------------------

def segmentation_classes(ds: Dataset) -> tuple[list[str], dict[str, Any]]:
    """Class names of the semantic masks and the loader options that produce them.

    Cityscapes: the 19 train ids (``mask_lut="train_id"``). VOC: background plus
    the categories in order (mask index 0 = background, i = i-th category).
    Otherwise the category names, masks taken as category positions.
    """
    names = ds.info.get("train_id_names")
    if names:
        return list(names), {"mask_lut": "train_id"}
    if ds.format == "voc":
        return ["background", *ds.class_names()], {}
    return ds.class_names(), {}


# -- metrics ----------------------------------------------------------------------------------------

def _seg_confusion(logits: torch.Tensor, mask: torch.Tensor, c: int) -> np.ndarray:
    pred = logits.argmax(1).flatten()
    gt = mask.flatten().long()
    keep = gt != 255
    idx = gt[keep] * c + pred[keep].clamp_(0, c - 1)
    # count on the device; only the c*c matrix crosses to the host, not one index per pixel
    return torch.bincount(idx, minlength=c * c).reshape(c, c).cpu().numpy()


def _epoch_metrics(task: str, c: int, names: list[str], ys: list, preds: list, cm: np.ndarray | None,
                   loss_sum: float, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"loss": loss_sum / max(n, 1)}
    if task == "segmentation":
        from .eval.segmentation import segmentation_metrics

        res = segmentation_metrics(cm, names)
        out.update(pixel_accuracy=res.pixel_accuracy, miou=res.miou,
                   per_class_iou={k: (None if math.isnan(v) else v) for k, v in zip(names, res.iou.tolist())})
        return out
    from .eval.classification import classification_metrics

    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    s = np.concatenate(preds) if preds else np.zeros((0, c), np.float32)
    labelled = y >= 0  # images without a label take no part in the accuracy
    y, s = y[labelled], s[labelled]
    res = classification_metrics(y, scores=s, num_classes=c, class_names=names)
    out.update(top1=res.top1, mean_class_accuracy=res.mean_class_accuracy)
    if c > 5:
        out["top5"] = res.top5
    out["_result"] = res
    return out


# -- plots ------------------------------------------------------------------------------------------

def _plot_curves(history: list[dict], path: Path, key: str) -> None:
    epochs = [h["epoch"] for h in history]
    series = {
        "train loss": [h["train"]["loss"] for h in history],
        "val loss": [h["val"]["loss"] for h in history if "val" in h],
        f"train {key}": [h["train"].get(key) for h in history],
        f"val {key}": [h["val"].get(key) for h in history if "val" in h],
    }
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _pillow_curves(epochs, series, path, key)
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, vals in series.items():
        if vals and all(v is not None for v in vals):
            (a if "loss" in name else b).plot(epochs[: len(vals)], vals, marker="o", label=name)
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.grid(alpha=0.3)
    b.set_xlabel("epoch"), b.set_ylabel(key), b.legend(), b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pillow_curves(epochs: list[int], series: dict[str, list], path: Path, key: str) -> None:
    from PIL import Image, ImageDraw

    w, h, pad = 420, 300, 40
    img = Image.new("RGB", (2 * w, h), "white")
    d = ImageDraw.Draw(img)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    for panel, want in enumerate(("loss", key)):
        x0 = panel * w
        d.rectangle([x0 + pad, 10, x0 + w - 10, h - pad], outline=(0, 0, 0))
        d.text((x0 + pad, h - pad + 15), f"epoch ({want})", fill=(0, 0, 0))
        items = [(n, v) for n, v in series.items() if (want in n) and v and all(x is not None for x in v)]
        vals = [x for _, v in items for x in v]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        hi = hi if hi > lo else lo + 1
        for k, (name, v) in enumerate(items):
            col = colours[k % len(colours)]
            n = max(len(epochs) - 1, 1)
            pts = [(x0 + pad + (w - pad - 10) * i / n, 10 + (h - pad - 10) * (1 - (y - lo) / (hi - lo)))
                   for i, y in enumerate(v)]
            if len(pts) > 1:
                d.line(pts, fill=col, width=2)
            for p in pts:
                d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=col)
            d.text((x0 + pad + 5, 14 + 12 * k), name, fill=col)
        d.text((x0 + 2, 10), f"{hi:.3g}", fill=(0, 0, 0))
        d.text((x0 + 2, h - pad - 10), f"{lo:.3g}", fill=(0, 0, 0))
    img.save(path)


def _prediction_grid(samples: list[tuple[torch.Tensor, int, int]], names: list[str], path: Path) -> None:
    """A grid of (uint8 image, true, predicted); green title when right, red when wrong."""
    from PIL import Image, ImageDraw

    cell = 112
    cols = 4
    rows = max(1, math.ceil(len(samples) / cols))
    grid = Image.new("RGB", (cols * cell, rows * (cell + 24)), (24, 24, 24))
    d = ImageDraw.Draw(grid)
    for k, (img, t, p) in enumerate(samples):
        im = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).resize((cell, cell))
        x, y = (k % cols) * cell, (k // cols) * (cell + 24)
        grid.paste(im, (x, y + 24))
        col = (80, 220, 80) if t == p else (240, 80, 80)
        d.text((x + 2, y + 1), f"true {names[t]}"[:20], fill=(230, 230, 230))
        d.text((x + 2, y + 12), f"pred {names[p]}"[:20], fill=col)
    grid.save(path)


def _seg_grid(samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], path: Path) -> None:
    from PIL import Image

    from .show import colour_for

    cell = 128
    lut = np.array([colour_for(i) for i in range(256)], np.uint8)
    lut[255] = 0
    grid = Image.new("RGB", (3 * cell, len(samples) * cell), (0, 0, 0))
    for k, (img, mask, pred) in enumerate(samples):
        tiles = [img.permute(1, 2, 0).contiguous().numpy(), lut[mask.numpy().astype(np.int64) % 256],
                 lut[pred.numpy().astype(np.int64) % 256]]
        for j, t in enumerate(tiles):
            grid.paste(Image.fromarray(t).resize((cell, cell), Image.NEAREST), (j * cell, k * cell))
    grid.save(path)


# -- the loop -------------------------------------------------------------------------------------

def train(train_ds: Dataset, val_ds: Dataset | None, cfg: TrainConfig,
          echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``train_ds``, validating on ``val_ds`` each epoch.

    Args:
        train_ds, val_ds: parsed datasets (``ds.subset("train")``...); ``val_ds`` may be None.
        cfg: the :class:`TrainConfig`.
        echo: where the per-epoch lines go (default: stdout on rank 0).

    Returns:
        ``{"best": {...}, "last": {...}, "out": path, "classes": [...], "seconds": s}``.

    Raises:
        OutputExistsError: ``cfg.out`` exists and neither ``resume`` nor ``overwrite`` is set,
            or ``overwrite`` meets a folder dsprep did not write, or OUT is, holds or lies
            inside a folder the datasets read from (docs/cli.md, Safety).
        OutputLockedError: another run is writing ``cfg.out``.

    Example:
        >>> ds = dsprep.parse("coco", "shapes-coco/")                             # doctest: +SKIP
        >>> train(ds.subset("train"), ds.subset("val"), TrainConfig(task="crops", image_size=64))  # doctest: +SKIP
    """
    from ._outdir import check_output, claim_output, clear_output, input_folders, write_manifest

    check_choice("task", cfg.task, TASKS)
    inputs = sorted({f for d in (train_ds, val_ds) if d is not None for f in input_folders(d)})
    # OUT is checked on every rank before any rank writes (docs/cli.md, Safety): an existing
    # OUT is continued with resume, replaced with overwrite only when dsprep wrote it
    check_output(cfg.out, inputs=inputs, overwrite=cfg.overwrite, keep_existing=cfg.resume)
    device = _pick_device(cfg.device)
    rank, world = _dist_setup(device)
    if rank != 0:
        return _train(train_ds, val_ds, cfg, echo, device, rank, world)
    with claim_output(cfg.out, inputs=inputs, overwrite=cfg.overwrite, keep_existing=cfg.resume) as out:
        if cfg.overwrite and not cfg.resume:
            clear_output(out)
        out.mkdir(exist_ok=True)
        write_manifest(out, "train", TRAIN_FILES)
        return _train(train_ds, val_ds, cfg, echo, device, rank, world)


def _train(train_ds: Dataset, val_ds: Dataset | None, cfg: TrainConfig, echo: Callable[[str], None] | None,
           device: torch.device, rank: int, world: int) -> dict[str, Any]:
    """The run itself (:func:`train` has checked and claimed OUT on rank 0)."""
    from .loading import TorchDataset, make_loader, to_device
    from ._io import progress
    from .models import create_model, trainable_parameters

    is_main = rank == 0
    if echo is None:
        echo = (lambda s: print(s, flush=True)) if is_main else (lambda s: None)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    channels_last = True if cfg.channels_last is None else bool(cfg.channels_last)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    out = Path(cfg.out)

    if cfg.task == "segmentation":
        names, seg_opts = segmentation_classes(train_ds)
        loader_opts = {**seg_opts, "crop_size": cfg.image_size, **cfg.extra}
        eval_opts = {**seg_opts, **cfg.extra}
    else:
        names = train_ds.class_names()
        loader_opts = {"size": cfg.image_size, **cfg.extra}
        eval_opts = dict(loader_opts)
    c = len(names)
    if c < 2:
        raise UnknownNameError(f"training needs at least 2 classes; the dataset has {c} ({names})")
    workers = cfg.workers if cfg.workers is not None else min(4, os.cpu_count() or 1)
    train_tds = TorchDataset(train_ds, task=cfg.task, augment="default", seed=cfg.seed, **loader_opts)
    if len(train_tds) == 0:
        raise UnknownNameError(f"the training split has no samples for task {cfg.task!r}"
                               + (" (no object boxes)" if cfg.task == "crops" else ""))
    # Counted in samples (crops: objects, not images), per rank. A last batch of one
    # sample cannot train BatchNorm ("Expected more than 1 value per channel"): drop it.
    per_rank = math.ceil(len(train_tds) / world)
    if per_rank < 2:
        raise UnknownNameError(f"the training split has {len(train_tds)} sample(s) for task {cfg.task!r}"
                               f" ({world} process(es)): BatchNorm needs at least 2 per batch")
    drop_last = per_rank > cfg.batch_size * 2 or (per_rank > 1 and per_rank % cfg.batch_size == 1)
    train_loader = make_loader(train_tds, cfg.batch_size, task=cfg.task, augment="default", seed=cfg.seed,
                               num_workers=workers, drop_last=drop_last)
    val_loader = None
    if val_ds is not None and is_main:
        val_loader = make_loader(val_ds, cfg.batch_size, task=cfg.task, augment="eval", seed=cfg.seed,
                                 num_workers=workers, distributed=False, shuffle=False,
                                 persistent_workers=False, **eval_opts)

    model = create_model(cfg.model, num_classes=c, weights=cfg.weights,
                         task="segmentation" if cfg.task == "segmentation" else "classification",
                         finetune=cfg.finetune)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_loader))
    total = cfg.epochs * steps_per_epoch
    warm = min(steps_per_epoch, max(1, total // 20))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    history: list[dict] = []
    start_epoch = 0
    best_key = "miou" if cfg.task == "segmentation" else "top1"
    best: dict[str, Any] = {}
    if cfg.resume:
        ckpt_path = out / "last.pt"
        if not ckpt_path.exists():
            raise MissingFileError(str(ckpt_path), "--resume: no checkpoint here; run without --resume first")
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = ck.get("config") or {}
        differs = [f"{k} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in ("task", "model", "image_size")
                   if k in saved and saved[k] != getattr(cfg, k)]
        if ck.get("classes") is not None and list(ck["classes"]) != list(names):
            differs.append(f"classes {len(ck['classes'])} -> {len(names)}")
        if differs:
            raise OutputExistsError(f"--resume: {ckpt_path} was written by another run ({'; '.join(differs)}); "
                                    f"resume with the same settings, or write to another --out")
        model.load_state_dict(ck["model"])
        if ck.get("torch_rng") is not None:
            torch.set_rng_state(ck["torch_rng"].cpu())
        if ck.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all([t.cpu() for t in ck["cuda_rng"]])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch = int(ck["epoch"]) + 1
        prev = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
        history = prev.get("epochs", [])[:start_epoch]
        best = prev.get("best", {})
        echo(f"resuming from {ckpt_path} at epoch {start_epoch + 1}")

    autocast_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    t_run = time.perf_counter()
    last_val_samples: list = []
    if val_loader is None and is_main and cfg.task != "segmentation":
        log.info("no validation split: no per-class report will be written")
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        ddp_model.train()
        t0 = time.perf_counter()
        loss_sum, n_seen, ys, ps = 0.0, 0, [], []
        cm = np.zeros((c, c), np.int64) if cfg.task == "segmentation" else None
        for images, targets in progress(train_loader, total=len(train_loader), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                        enabled=cfg.progress if is_main else False, unit="batch"):
            x = to_device(images, device, dtype=torch.float32, channels_last=channels_last)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=amp):
                logits = ddp_model(x)
                if cfg.task == "segmentation":
                    y = targets["mask"].to(device, non_blocking=True).long()
                    loss = F.cross_entropy(logits.float(), y, ignore_index=255)
                else:
                    y = targets["label"].to(device, non_blocking=True)
                    loss = F.cross_entropy(logits.float(), y, ignore_index=-1)  # -1: image without a label
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            b = x.shape[0]
            loss_sum += float(loss.detach()) * b
            n_seen += b
            if cfg.task == "segmentation":
                cm += _seg_confusion(logits.detach().float(), y, c)
            else:
                ys.append(y.cpu().numpy())
                ps.append(logits.detach().float().cpu().numpy())
        seconds = time.perf_counter() - t0
        tr = _epoch_metrics(cfg.task, c, names, ys, ps, cm, loss_sum, n_seen)
        tr.pop("_result", None)
        tr.update(images_per_s=n_seen * world / seconds, seconds=seconds)
        entry: dict[str, Any] = {"epoch": epoch + 1, "lr": sched.get_last_lr()[0], "train": tr}
        if val_loader is not None:
            va, samples = _validate(model, val_loader, cfg.task, c, names, device, channels_last, amp,
                                    autocast_dtype)
            res = va.pop("_result", None)
            entry["val"] = va
            last_val_samples = samples
        if is_main:
            history.append(entry)
            score_src = entry.get("val", entry["train"])
            score = score_src.get(best_key) or 0.0
            is_best = not best or score >= best.get(best_key, -1.0)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "config": dataclasses.asdict(cfg), "classes": names, "metrics": entry,
                     # the generator dropout draws from: a resumed run continues as an uninterrupted one
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}
            _atomic_save(state, out / "last.pt")
            if is_best:
                best = {"epoch": epoch + 1, best_key: score}
                # best.pt holds the weights only (no optimizer state: a third of the size)
                _atomic_save({k: v for k, v in state.items()
                              if k not in ("optimizer", "scheduler", "torch_rng", "cuda_rng")},
                             out / "best.pt")
                if val_loader is not None and cfg.task != "segmentation":
                    _write_class_report(res, out)
                _write_grids(cfg.task, last_val_samples, names, out)
            _write_metrics(out, cfg, names, history, best)
            _plot_curves(history, out / "curves.png", best_key)
            echo(_epoch_line(entry, cfg.epochs, best_key))
        if world > 1:
            torch.distributed.barrier()
    summary = {"best": best, "last": history[-1] if history else {}, "out": str(out), "classes": names,
               "seconds": time.perf_counter() - t_run}
    if world > 1:
        torch.distributed.barrier()
    return summary


@torch.no_grad()
def _validate(model: torch.nn.Module, loader: Any, task: str, c: int, names: list[str], device: torch.device,
              channels_last: bool, amp: bool, autocast_dtype: torch.dtype) -> tuple[dict, list]:
    from .loading import to_device

    model.eval()
    loss_sum, n, ys, ps = 0.0, 0, [], []
    cm = np.zeros((c, c), np.int64) if task == "segmentation" else None
    samples: list = []
    for images, targets in loader:
        x = to_device(images, device, dtype=torch.float32, channels_last=channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=amp):
            logits = model(x).float()
        if task == "segmentation":
            y = targets["mask"].to(device).long()
            loss = F.cross_entropy(logits, y, ignore_index=255)
            cm += _seg_confusion(logits, y, c)
            if len(samples) < 4:
                pred = logits.argmax(1).cpu()
                for k in range(min(4 - len(samples), x.shape[0])):
                    samples.append((images[k].contiguous(), targets["mask"][k], pred[k]))
        else:
            y = targets["label"].to(device)
            loss = F.cross_entropy(logits, y, ignore_index=-1)
            ys.append(y.cpu().numpy())
            ps.append(logits.cpu().numpy())
            if len(samples) < 16:
                pred = logits.argmax(1).cpu().tolist()
                for k in range(min(16 - len(samples), x.shape[0])):
                    samples.append((images[k].contiguous(), int(targets["label"][k]), pred[k]))
        loss_sum += float(loss) * x.shape[0]
        n += x.shape[0]
    model.train()
    return _epoch_metrics(task, c, names, ys, ps, cm, loss_sum, n), samples


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_metrics(out: Path, cfg: TrainConfig, names: list[str], history: list, best: dict) -> None:
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "classes": names, "epochs": history,
                               "best": best}, indent=1, default=float) + "\n")
    os.replace(tmp, out / "metrics.json")


def _write_class_report(res: Any, out: Path) -> None:
    with open(out / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *res.class_names])
        for name, row in zip(res.class_names, res.confusion.tolist()):
            w.writerow([name, *row])
    with open(out / "per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        for row in zip(res.class_names, res.precision.tolist(), res.recall.tolist(), res.f1.tolist(),
                       res.support.tolist()):
            w.writerow([row[0], *(f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else "" for v in row[1:4]),
                        row[4]])


def _write_grids(task: str, samples: list, names: list[str], out: Path) -> None:
    if not samples:
        return
    if task == "segmentation":
        _seg_grid(samples, out / "predictions.png")
    else:
        _prediction_grid(samples, names, out / "predictions.png")


def _epoch_line(e: dict, epochs: int, key: str) -> str:
    tr = e["train"]
    parts = [f"epoch {e['epoch']}/{epochs}", f"train loss {tr['loss']:.4f}"]
    if key in tr and tr[key] is not None:
        parts.append(f"{key} {tr[key]:.3f}")
    if "val" in e:
        va = e["val"]
        parts.append(f"val loss {va['loss']:.4f}")
        if key == "top1":
            parts.append(f"val top1 {va['top1']:.3f}")
            if va.get("top5") is not None:
                parts.append(f"top5 {va['top5']:.3f}")
            parts.append(f"mean class acc {va['mean_class_accuracy']:.3f}")
        else:
            parts.append(f"val pixel acc {va['pixel_accuracy']:.3f}")
            parts.append(f"mIoU {va['miou']:.3f}")
    parts.append(f"{tr['images_per_s']:.0f} img/s")
    parts.append(f"{tr['seconds']:.1f} s")
    return " | ".join(parts)
