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
  grid of validation samples, one per class, mistakes first, with true and predicted labels). matplotlib draws
  the curves when installed (the ``plot`` extra), Pillow otherwise.

Under ``torchrun --nproc_per_node N`` it runs DistributedDataParallel (gloo on
CPU, nccl on CUDA); each rank trains on its shard, rank 0 validates and writes.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MissingFileError, OutputExistsError, UnknownNameError, check_choice
from .loading.luts import segmentation_classes
from .records import Dataset

__all__ = ["TrainConfig", "train", "TASKS", "check_task", "segmentation_classes"]

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
    workers: int | None = None     # DataLoader processes (default: see cpu_plan: 0 on a CPU of <= 4 cores)
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda
    amp: bool | None = None        # mixed precision; default: on for CUDA, off on CPU
    channels_last: bool | None = None  # default: on (faster on CPU and CUDA for ResNets, docs/benchmarks.md)
    out: str = "dsprep-train"
    resume: bool = False           # continue OUT/last.pt
    overwrite: bool = False        # replace an existing OUT (only one dsprep wrote: its manifest says so)
    progress: bool | None = None   # True: a bar per epoch; None: a bar on a terminal, else a line per 10% of
                                   # a long epoch (LONG_EPOCH_S); False: only the epoch lines
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


# -- loader processes and CPU threads --------------------------------------------------------------

def cpu_plan(workers: int | None, device: torch.device, cores: int | None = None) -> tuple[int, int | None]:
    """``(DataLoader processes, torch intra-op threads)`` for a run; threads None: leave torch's.

    On CUDA the model runs on the GPU and ``min(4, cores)`` loader processes feed it.
    On a CPU the model's own threads keep every core busy: a loader process competes
    with them, and an OpenMP team one of whose threads is descheduled waits for it at
    every barrier (a ResNet step is hundreds of short parallel regions). So with 4
    cores or fewer, the default loads in the training process (0 processes), and on
    bigger machines takes a quarter of the cores (at most 4) and leaves the model the
    rest. Asked-for ``workers`` are kept, and the model gets the cores they leave
    (at least 1). ``OMP_NUM_THREADS`` set in the environment is never overridden.
    """
    from ._io import default_workers

    cores = default_workers() if cores is None else cores
    if device.type != "cpu":
        return (min(4, cores) if workers is None else workers), None
    if workers is None:
        workers = 0 if cores <= 4 else min(4, cores // 4)
    if workers == 0 or os.environ.get("OMP_NUM_THREADS"):
        return workers, None
    return workers, max(1, min(torch.get_num_threads(), cores - workers))


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged) for the block, restored after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- classes per task -----------------------------------------------------------------------------

def check_task(ds: Dataset, task: str) -> None:
    """Refuse a task the records hold no annotations for, naming the tasks they do support.

    Raises:
        UnknownNameError: e.g. classification on VOC (objects and masks, no image labels).
    """
    from .loading.dataset import dataset_tasks

    check_choice("task", task, TASKS)
    have = [t for t in dataset_tasks(ds) if t in TASKS]
    if task not in have:
        need = {"classification": "image-level labels", "crops": "object boxes", "segmentation": "semantic masks"}
        raise UnknownNameError(f"task {task!r} needs {need[task]}, and none of these {len(ds)} images has any; "
                               + (f"it supports: --task {'|'.join(have)}" if have
                                  else "it has no annotations that dsprep train can use"))


# -- metrics ----------------------------------------------------------------------------------------

class _Running:
    """An epoch's running figures, summed on the device: no host sync per step, one
    transfer per epoch (a C x C confusion matrix, not every logit).

    Classification counts (true, predicted) pairs of labelled samples (label -1: none)
    and top-5 hits; segmentation counts pixels (255 ignored).
    """

    def __init__(self, task: str, c: int, device: torch.device):
        self.task, self.c = task, c
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.n = 0
        # eval.segmentation.confusion_cells' flat (C, C + 1) matrix, + 1: the bin of ignored ones
        self.cm = torch.zeros(c * (c + 1) + 1, dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        from .eval.segmentation import confusion_cells  # the metric's own arithmetic (docs/architecture.md)

        c = self.c
        self.n += int(y.shape[0])
        self.loss += loss.detach().double() * y.shape[0]
        logits = logits.detach()
        pred = logits.argmax(1)
        ignored = 255 if self.task == "segmentation" else -1
        gt = y.long()
        self.cm += torch.bincount(confusion_cells(gt, pred, c, ignored).flatten(), minlength=c * (c + 1) + 1)
        if self.task != "segmentation" and c >= 5:
            self.top5 += (logits.topk(5, dim=1).indices == gt[:, None]).any(1).sum()

    def matrix(self) -> np.ndarray:
        """The ``C x C`` confusion (rows: truth), on the host; ignored pixels or samples left out.

        (confusion_cells' column ``C``, predictions outside ``0..C-1``, stays empty: argmax is within.)
        """
        c = self.c
        return self.cm[:c * (c + 1)].cpu().numpy().reshape(c, c + 1)[:, :c]

    def mean_loss(self) -> float:
        return float(self.loss) / max(self.n, 1)

    def metrics(self, names: list[str]) -> tuple[dict[str, Any], Any]:
        """``({"loss", figures...}, the classification result or None)``."""
        c = self.c
        cm = self.matrix()
        out: dict[str, Any] = {"loss": self.mean_loss()}
        if self.task == "segmentation":
            from .eval.segmentation import segmentation_metrics

            res = segmentation_metrics(cm, names)
            out.update(pixel_accuracy=res.pixel_accuracy, miou=res.miou,
                       per_class_iou={k: (None if math.isnan(v) else v) for k, v in zip(names, res.iou.tolist())})
            return out, None
        from .eval.classification import classification_metrics

        pairs = np.repeat(np.arange(c * c), cm.ravel())  # the (true, predicted) pairs the matrix counts
        res = classification_metrics(pairs // c, y_pred=pairs % c, num_classes=c, class_names=names)
        if c >= 5:
            res = dataclasses.replace(res, top5=int(self.top5) / res.images if res.images else float("nan"))
        out.update(top1=res.top1, mean_class_accuracy=res.mean_class_accuracy)
        if c > 5:
            out["top5"] = res.top5
        return out, res


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
    from matplotlib.ticker import MaxNLocator

    for ax, label in ((a, "loss"), (b, key)):
        ax.set_xlabel("epoch"), ax.set_ylabel(label), ax.legend(), ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, 3: no 1.5
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
    """A grid of (uint8 image, true, predicted); the prediction green when right, red when wrong."""
    from PIL import Image, ImageDraw

    from .show import font_size, label_font

    cell, cols = 160, 4
    fs = font_size(cell)
    head = 2 * (fs + 4) + 4
    rows = max(1, math.ceil(len(samples) / cols))
    grid = Image.new("RGB", (cols * cell, rows * (cell + head)), (24, 24, 24))
    d = ImageDraw.Draw(grid)
    for k, (img, t, p) in enumerate(samples):
        im = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).resize((cell, cell))
        x, y = (k % cols) * cell, (k // cols) * (cell + head)
        grid.paste(im, (x, y + head))
        col = (80, 220, 80) if t == p else (240, 80, 80)
        d.text((x + 4, y + 2), f"true {names[t]}"[:22], fill=(230, 230, 230), font=label_font(fs))
        d.text((x + 4, y + fs + 6), f"pred {names[p]}"[:22], fill=col, font=label_font(fs))
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


# -- progress -------------------------------------------------------------------------------------

# Without a terminal (CI logs, nohup), an epoch whose first tenth predicts this many seconds
# or more gets a line at every 10% of its batches (a shorter one: just its epoch line).
LONG_EPOCH_S = 20.0


def _progress_mode(setting: bool | None, is_main: bool) -> str:
    """``bar`` (tqdm, on a terminal or when asked), ``lines`` (default without a terminal) or ``off``."""
    if not is_main or setting is False:
        return "off"
    return "bar" if setting or sys.stderr.isatty() else "lines"


def _epoch_progress(batches: Any, total: int, desc: str, mode: str, echo: Callable[[str], None],
                    status: Callable[[], str]) -> Any:
    """Yield ``batches``; report progress by ``mode`` (``status()`` says the running loss and speed)."""
    from ._io import progress

    if mode != "lines":
        yield from progress(batches, total=total, desc=desc, enabled=mode == "bar", unit="batch")
        return
    marks = {math.ceil(total * k / 10): k for k in range(1, 10)}
    t0, long_epoch = time.perf_counter(), None
    for done, batch in enumerate(batches, 1):
        yield batch
        if done not in marks:
            continue
        elapsed = time.perf_counter() - t0
        if long_epoch is None:  # decided once, at the first mark
            long_epoch = elapsed * total / done >= LONG_EPOCH_S
        if long_epoch:
            echo(f"{desc} {marks[done] * 10}% ({done}/{total} batches) | {status()} | {elapsed:.0f} s, "
                 f"about {elapsed * (total - done) / done:.0f} s to go")


# -- the loop -------------------------------------------------------------------------------------

@dataclass
class _Run:
    """What one training run holds: settings, data, model and optimiser."""

    cfg: TrainConfig
    device: torch.device
    world: int
    is_main: bool
    echo: Callable[[str], None]
    progress_mode: str
    amp: bool
    channels_last: bool
    names: list[str]
    out: Path
    workers: int = 0
    threads: int | None = None
    train_loader: Any = None
    val_loader: Any = None
    model: Any = None
    ddp_model: Any = None
    opt: Any = None
    sched: Any = None
    scaler: Any = None

    @property
    def autocast_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cpu" else torch.float16

    @property
    def best_key(self) -> str:
        return "miou" if self.cfg.task == "segmentation" else "top1"


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
        UnknownNameError: a task the records have no annotations for (classification
            without image labels...), fewer than 2 classes or samples.
        OutputExistsError: ``cfg.out`` exists and neither ``resume`` nor ``overwrite`` is set,
            or ``overwrite`` meets a folder dsprep did not write, or OUT is, holds or lies
            inside a folder the datasets read from (docs/cli.md, Safety).
        OutputLockedError: another run is writing ``cfg.out``.

    Example:
        >>> ds = dsprep.parse("coco", "shapes-coco/")                             # doctest: +SKIP
        >>> train(ds.subset("train"), ds.subset("val"), TrainConfig(task="crops", image_size=64))  # doctest: +SKIP
    """
    from ._outdir import check_output, claim_output, clear_output, input_folders, write_manifest

    check_task(train_ds, cfg.task)
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
    run = _start(cfg, echo, device, rank, world)
    loader_opts, eval_opts = _loader_options(run, train_ds)
    _make_loaders(run, train_ds, val_ds, loader_opts, eval_opts)
    _make_model(run)
    history, best, start_epoch = _resume(run) if cfg.resume else ([], {}, 0)
    if run.val_loader is None and run.is_main and cfg.task != "segmentation":
        log.info("no validation split: no per-class report will be written")
    t_run = time.perf_counter()
    with _torch_threads(run.threads):
        for epoch in range(start_epoch, cfg.epochs):
            entry: dict[str, Any] = {"epoch": epoch + 1, "train": _train_epoch(run, epoch)}
            entry["lr"] = run.sched.get_last_lr()[0]
            res, samples = None, []
            if run.val_loader is not None:
                entry["val"], res, samples = _validate(run)
            if run.is_main:
                history.append(entry)
                best = _save_epoch(run, entry, epoch, best, history, res, samples)
                run.echo(_epoch_line(entry, cfg.epochs, run.best_key))
            if run.world > 1:
                torch.distributed.barrier()
    summary = {"best": best, "last": history[-1] if history else {}, "out": str(run.out), "classes": run.names,
               "seconds": time.perf_counter() - t_run}
    if run.world > 1:
        torch.distributed.barrier()
    return summary


def _start(cfg: TrainConfig, echo: Callable[[str], None] | None, device: torch.device, rank: int,
           world: int) -> _Run:
    """Seeds and the settings derived from ``cfg`` (OUT is checked and claimed by :func:`train`)."""
    is_main = rank == 0
    if echo is None:
        echo = (lambda s: print(s, flush=True)) if is_main else (lambda s: None)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    out = Path(cfg.out)
    workers, threads = cpu_plan(cfg.workers, device)
    return _Run(cfg=cfg, device=device, world=world, is_main=is_main, echo=echo, workers=workers, threads=threads,
                progress_mode=_progress_mode(cfg.progress, is_main),
                amp=(device.type == "cuda") if cfg.amp is None else bool(cfg.amp),
                channels_last=True if cfg.channels_last is None else bool(cfg.channels_last), names=[], out=out)


def _loader_options(run: _Run, train_ds: Dataset) -> tuple[dict, dict]:
    """The class names (on ``run``) and the training and evaluation loader options."""
    cfg = run.cfg
    if cfg.task == "segmentation":
        run.names, seg_opts = segmentation_classes(train_ds)
        loader_opts, eval_opts = {**seg_opts, "crop_size": cfg.image_size, **cfg.extra}, {**seg_opts, **cfg.extra}
    else:
        run.names = train_ds.class_names()
        loader_opts = {"size": cfg.image_size, **cfg.extra}
        eval_opts = dict(loader_opts)
    if len(run.names) < 2:
        raise UnknownNameError(f"training needs at least 2 classes; the dataset has {len(run.names)} ({run.names})")
    return loader_opts, eval_opts


def _make_loaders(run: _Run, train_ds: Dataset, val_ds: Dataset | None, loader_opts: dict, eval_opts: dict) -> None:
    from .loading import TorchDataset, make_loader

    cfg = run.cfg
    workers = run.workers
    train_tds = TorchDataset(train_ds, task=cfg.task, augment="default", seed=cfg.seed, **loader_opts)
    if len(train_tds) == 0:
        raise UnknownNameError(f"the training split has no samples for task {cfg.task!r}"
                               + (" (no object boxes)" if cfg.task == "crops" else ""))
    # Counted in samples (crops: objects, not images), per rank. A last batch of one
    # sample cannot train BatchNorm ("Expected more than 1 value per channel"): drop it.
    per_rank = math.ceil(len(train_tds) / run.world)
    if per_rank < 2:
        raise UnknownNameError(f"the training split has {len(train_tds)} sample(s) for task {cfg.task!r}"
                               f" ({run.world} process(es)): BatchNorm needs at least 2 per batch")
    drop_last = per_rank > cfg.batch_size * 2 or (per_rank > 1 and per_rank % cfg.batch_size == 1)
    run.train_loader = make_loader(train_tds, cfg.batch_size, task=cfg.task, augment="default", seed=cfg.seed,
                                   num_workers=workers, drop_last=drop_last)
    if val_ds is not None and run.is_main:
        run.val_loader = make_loader(val_ds, cfg.batch_size, task=cfg.task, augment="eval", seed=cfg.seed,
                                     num_workers=workers, distributed=False, shuffle=False,
                                     persistent_workers=False, **eval_opts)


def _make_model(run: _Run) -> None:
    """Model (channels_last by default), AdamW, warm-up + cosine schedule, grad scaler, DDP."""
    from .models import create_model, trainable_parameters

    cfg = run.cfg
    run.model = create_model(cfg.model, num_classes=len(run.names), weights=cfg.weights,
                             task="segmentation" if cfg.task == "segmentation" else "classification",
                             finetune=cfg.finetune)
    run.model.to(run.device)
    if run.channels_last:
        run.model.to(memory_format=torch.channels_last)
    run.opt = torch.optim.AdamW(trainable_parameters(run.model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(run.train_loader))
    total = cfg.epochs * steps_per_epoch
    warm = min(steps_per_epoch, max(1, total // 20))
    run.sched = torch.optim.lr_scheduler.LambdaLR(
        run.opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.amp and run.device.type == "cuda")
    run.ddp_model = run.model
    if run.world > 1:
        run.ddp_model = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)


def _resume(run: _Run) -> tuple[list[dict], dict, int]:
    """Model, optimiser, schedule and generator state from ``out/last.pt``; the history so far."""
    cfg, ckpt_path = run.cfg, run.out / "last.pt"
    if not ckpt_path.exists():
        raise MissingFileError(str(ckpt_path), "--resume: no checkpoint here; run without --resume first")
    ck = torch.load(ckpt_path, map_location=run.device, weights_only=False)
    saved = ck.get("config") or {}
    differs = [f"{k} {saved[k]!r} -> {getattr(cfg, k)!r}" for k in ("task", "model", "image_size")
               if k in saved and saved[k] != getattr(cfg, k)]
    if ck.get("classes") is not None and list(ck["classes"]) != list(run.names):
        differs.append(f"classes {len(ck['classes'])} -> {len(run.names)}")
    if differs:
        raise OutputExistsError(f"--resume: {ckpt_path} was written by another run ({'; '.join(differs)}); "
                                f"resume with the same settings, or write to another --out")
    run.model.load_state_dict(ck["model"])
    if ck.get("torch_rng") is not None:
        torch.set_rng_state(ck["torch_rng"].cpu())
    if ck.get("cuda_rng") is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state_all([t.cpu() for t in ck["cuda_rng"]])
    run.opt.load_state_dict(ck["optimizer"])
    run.sched.load_state_dict(ck["scheduler"])
    start_epoch = int(ck["epoch"]) + 1
    prev = json.loads((run.out / "metrics.json").read_text()) if (run.out / "metrics.json").exists() else {}
    run.echo(f"resuming from {ckpt_path} at epoch {start_epoch + 1}")
    return prev.get("epochs", [])[:start_epoch], prev.get("best", {}), start_epoch


def _labels(targets: Any, task: str, device: torch.device) -> tuple[torch.Tensor, int]:
    """The batch's targets on ``device`` and the value cross-entropy ignores."""
    if task == "segmentation":
        return targets["mask"].to(device, non_blocking=True).long(), 255
    return targets["label"].to(device, non_blocking=True), -1  # -1: an image without a label


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One pass over the training data; the epoch's figures (loss, accuracy or mIoU, images/s)."""
    from .loading import to_device

    cfg = run.cfg
    run.train_loader.set_epoch(epoch)
    run.ddp_model.train()
    stats = _Running(cfg.task, len(run.names), run.device)
    t0 = time.perf_counter()
    status = lambda: (f"train loss {stats.mean_loss():.4f} | "  # noqa: E731
                      f"{stats.n * run.world / (time.perf_counter() - t0):.0f} img/s")
    for images, targets in _epoch_progress(run.train_loader, len(run.train_loader),
                                           f"epoch {epoch + 1}/{cfg.epochs}", run.progress_mode, run.echo, status):
        x = to_device(images, run.device, dtype=torch.float32, channels_last=run.channels_last)
        y, ignore = _labels(targets, cfg.task, run.device)
        with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.amp):
            logits = run.ddp_model(x)
            loss = F.cross_entropy(logits.float(), y, ignore_index=ignore)
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        stats.add(loss, logits, y)
    seconds = time.perf_counter() - t0
    figures, _ = stats.metrics(run.names)
    figures.update(images_per_s=stats.n * run.world / seconds, seconds=seconds)
    return figures


@torch.no_grad()
def _validate(run: _Run) -> tuple[dict, Any, list]:
    """The validation figures, the classification result (class report) and a few samples to draw."""
    from .loading import to_device

    task, model = run.cfg.task, run.model
    model.eval()
    stats = _Running(task, len(run.names), run.device)
    samples: list = []
    picks = _SamplePicks(16)
    for images, targets in run.val_loader:
        x = to_device(images, run.device, dtype=torch.float32, channels_last=run.channels_last)
        y, ignore = _labels(targets, task, run.device)
        with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.amp):
            logits = model(x).float()
        stats.add(F.cross_entropy(logits, y, ignore_index=ignore), logits, y)
        if task == "segmentation":
            if len(samples) < 4:  # only the first batch crosses to the host
                pred = logits.argmax(1).cpu()
                for k in range(min(4 - len(samples), x.shape[0])):
                    samples.append((images[k].clone(), targets["mask"][k], pred[k]))
        elif picks.open:
            picks.offer(images, targets["label"].tolist(), logits.argmax(1).tolist())
    model.train()
    figures, res = stats.metrics(run.names)
    return figures, res, (samples if task == "segmentation" else picks.samples())


class _SamplePicks:
    """The validation samples ``predictions.png`` draws: one per class, as many classes as fit,
    a wrong prediction preferred to a right one (a validation split is usually in class order,
    so its first batch would show one class only), then more samples to fill the grid."""

    def __init__(self, want: int):
        self.want = want
        self.by_class: dict[int, tuple] = {}  # class -> (image, true, predicted), first seen or a mistake
        self.spare: list[tuple] = []          # further samples, to fill the grid
        self.open = True

    def offer(self, images: torch.Tensor, truth: list[int], pred: list[int]) -> None:
        for k, (t, p) in enumerate(zip(truth, pred)):
            if t < 0:
                continue
            have = self.by_class.get(t)
            if (have is None and len(self.by_class) < self.want) or (have is not None and have[1] == have[2] != p):
                self.by_class[t] = (images[k].clone(), t, p)
            elif len(self.spare) < self.want:
                self.spare.append((images[k].clone(), t, p))
        # once every slot holds a distinct class and a mistake, later batches change nothing
        self.open = not (len(self.by_class) == self.want and all(v[1] != v[2] for v in self.by_class.values()))

    def samples(self) -> list[tuple]:
        out = [self.by_class[c] for c in sorted(self.by_class)]
        return out + self.spare[:self.want - len(out)]


def _save_epoch(run: _Run, entry: dict, epoch: int, best: dict, history: list, res: Any, samples: list) -> dict:
    """last.pt every epoch; best.pt, the class report and the prediction grid when the epoch is the best
    so far; metrics.json and curves.png. Returns the best epoch so far."""
    cfg, out, key = run.cfg, run.out, run.best_key
    score = entry.get("val", entry["train"]).get(key) or 0.0
    is_best = not best or score >= best.get(key, -1.0)
    state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
             "epoch": epoch, "config": dataclasses.asdict(cfg), "classes": run.names, "metrics": entry,
             # the generator dropout draws from: a resumed run continues as an uninterrupted one
             "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else None}
    _atomic_save(state, out / "last.pt")
    if is_best:
        best = {"epoch": epoch + 1, key: score}
        # best.pt holds the weights only (no optimizer state: a third of the size)
        _atomic_save({k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "torch_rng", "cuda_rng")},
                     out / "best.pt")
        if res is not None:
            _write_class_report(res, out)
        _write_grids(cfg.task, samples, run.names, out)
    runtime = {"device": str(run.device), "processes": run.world, "loader_workers": run.workers,
               "torch_threads": run.threads or torch.get_num_threads()}
    _write_metrics(out, cfg, run.names, history, best, runtime)
    _plot_curves(history, out / "curves.png", key)
    return best


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_metrics(out: Path, cfg: TrainConfig, names: list[str], history: list, best: dict,
                  runtime: dict) -> None:
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "runtime": runtime, "classes": names,
                               "epochs": history, "best": best}, indent=1, default=float) + "\n")
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
