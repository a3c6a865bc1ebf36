"""dsprep train FORMAT ROOT | --dataset NAME"""
from __future__ import annotations

import argparse
import os

from ..formats import FORMATS

HELP = "sanity-train the bundled ResNet on a dataset (does it learn?)"
DESCRIPTION = """Train the bundled ResNet on a dataset for a few epochs and report, per epoch,
train and val loss, top-1 (top-5 with more than 5 classes), mean per-class accuracy,
images/s and time (segmentation: pixel accuracy and mIoU). Writes to --out:
best.pt, last.pt, metrics.json, curves.png and predictions.png; with a
validation split and task classification or crops, also confusion.csv and
per_class.csv (best epoch; segmentation's per-class IoU is in metrics.json).
An existing --out is refused unless --resume continues it or --overwrite
replaces it (only a folder dsprep wrote: it holds dsprep-manifest.json).

tasks:
  classification  image-level labels (ImageNet folders)
  crops           one sample per object box, labelled by its class: the quickest
                  proof that boxes sit on their objects (VOC, COCO, Cityscapes)
  segmentation    semantic masks (VOC SegmentationClass, Cityscapes labelIds ->
                  the 19 train ids), FCN head on the ResNet

examples:
  dsprep train coco shapes-coco/ --task crops --image-size 64 --epochs 8
  dsprep train imagenet imagenette/ --model resnet50 --weights resnet50.pth --finetune head
  dsprep train --dataset cityscapes --task segmentation --split train --val-split val
  torchrun --nproc_per_node 2 -m dsprep train voc VOC2012/ --task crops"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", nargs="?", metavar="[FORMAT]",
                   help=f"the dataset's format ({', '.join(FORMATS)}); left out (one argument, ROOT), it is "
                        "detected from ROOT; or use --dataset")
    p.add_argument("root", nargs="?", metavar="ROOT", help="the dataset root")
    p.set_defaults(_detect_format=True)  # [FORMAT] ROOT: commands._common.resolve_source
    p.add_argument("--dataset", default=None, help="a known dataset name for dsprep.load (imagenet, coco, voc, cityscapes)")
    p.add_argument("--data-root", default=None, help="with --dataset: its root (default: $DSPREP_DATA/<name> or ~/datasets/<name>)")
    p.add_argument("--split", default=None,
                   help="training split (default: the first of train/train2017/trainval present, any case, "
                        "else the first split)")
    p.add_argument("--val-split", default=None,
                   help="validation split (default: the first of val/valid/validation/val2017/test present, any case, "
                        "never one whose labels are dummies, e.g. the Cityscapes test split); "
                        "'none' to skip")
    p.add_argument("--task", default="classification", choices=["classification", "crops", "segmentation"],
                   help="what to train on (see above)")
    p.add_argument("--model", default="resnet18", help="resnet18/34/50/101/152, resnext50_32x4d, se_resnet50, ...")
    p.add_argument("--weights", default=None, help="a local .pth (torchvision, timm or dsprep); never downloaded")
    p.add_argument("--finetune", default="all", choices=["all", "last", "head"],
                   help="train everything, only layer4 + head, or only a new head (frozen backbone)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (cosine schedule)")
    p.add_argument("--image-size", type=int, default=224, help="input side (segmentation: crop side)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes (default on a CPU: 0, loading in the training process, with 4 "
                        "cores or fewer, else a quarter of the cores up to 4, the model keeping the rest; "
                        "with CUDA: min(4, cores))")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling and augmentation seed")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available, else CPU")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on with CUDA, off on CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on; faster for ResNets on CPU and CUDA)")
    p.add_argument("--out", default="dsprep-train",
                   help="output directory; an existing one is refused unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT if dsprep wrote it (it holds dsprep-manifest.json); "
                        "any other folder is refused")
    p.add_argument("--quiet", action="store_true",
                   help="only the epoch lines: no progress bar (on a terminal) and no progress lines at every "
                        "10%% of a long epoch (elsewhere: CI logs, nohup)")


# dsprep.load's task per dataset for each training task: crops need the object boxes
# (a dataset's default task may have none: Cityscapes semantic, ImageNet classification),
# segmentation the semantic masks.
CATALOG_TASKS = {
    "classification": {"imagenet": "classification"},
    "crops": {"imagenet": "localization", "coco": "instances", "voc": "detection", "cityscapes": "instance"},
    "segmentation": {"voc": "segmentation", "cityscapes": "semantic"},
}


# Default training and validation splits, the first present wins (in any case: Roboflow and
# Kaggle trees have Train/ and valid/).
TRAIN_SPLITS = ("train", "train2017", "trainval")
VAL_SPLITS = ("val", "valid", "validation", "val2017", "test")


def _pick(splits: dict, wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    from ..errors import check_choice

    if wanted:
        return check_choice(f"{what} split", wanted, splits)
    by_lower = {k.lower(): k for k in reversed(list(splits))}  # the first spelling wins
    for c in candidates:
        if c in by_lower:
            return by_lower[c]
    return None


# OpenMP threads that wait at a barrier sleep instead of spinning. A ResNet step is hundreds
# of short parallel regions; on a CPU that other jobs share, a spinning thread holds a core
# the thread it waits for needs (2 cores, load 12: 5 s a step instead of 0.4 s). libgomp
# reads this once, when torch is imported, so it is set before that and only if unset.
OMP_WAIT_POLICY = "PASSIVE"


def run(args: argparse.Namespace) -> int:
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    from .._outdir import check_output, input_folders
    from ..errors import UnknownNameError

    # a refused --out fails before a large dataset is parsed (train() checks again with every image folder)
    check_output(args.out, inputs=input_folders(None, [args.root] if args.root and not args.dataset else []),
                 overwrite=args.overwrite, keep_existing=args.resume)
    if args.dataset:
        from ..catalog import load

        ds = load(args.dataset, root=args.data_root, task=CATALOG_TASKS[args.task].get(args.dataset))
    elif args.format and args.root:
        from ..formats import get_format

        extra = {}
        if args.format == "cityscapes" and args.task == "crops":
            extra["instances"] = "things"
        ds = get_format(args.format).parse(args.root, progress=False, **extra)
    else:
        raise UnknownNameError("give FORMAT ROOT, or --dataset NAME")
    from ..train import TrainConfig, check_task, train

    splits = ds.splits
    # Splits whose labels are placeholders (Cityscapes test) train and validate nothing.
    dummy = set(ds.info.get("dummy_label_splits") or ())
    for wanted, what in ((args.split, "training"), (args.val_split, "validation")):
        if wanted in dummy:
            raise UnknownNameError(f"the {wanted!r} split's labels are dummies (Dataset.info['dummy_label_splits']; "
                                   f"Cityscapes' real test labels are held by its benchmark server): "
                                   f"pick another {what} split")
    if splits:
        usable = {k: v for k, v in splits.items() if k not in dummy} or splits
        tr = _pick(splits, args.split, TRAIN_SPLITS, "training") or next(iter(usable))
        val_name = None if args.val_split == "none" else _pick(
            splits, args.val_split, tuple(c for c in VAL_SPLITS if c not in {d.lower() for d in dummy}),
            "validation")
        if val_name is None and args.val_split != "none" and int(os.environ.get("RANK", "0")) == 0:
            for c in dummy:
                if c.lower() in VAL_SPLITS:
                    print(f"not validating on {c!r}: its labels are dummies "
                          f"(Dataset.info['dummy_label_splits'])", flush=True)
        train_ds = ds.subset(tr)
        val_ds = ds.subset(val_name) if val_name and val_name != tr else None
    else:
        train_ds, val_ds, tr, val_name = ds, None, "all", None
    check_task(train_ds, args.task)  # before the banner: VOC has no image labels for classification
    cfg = TrainConfig(task=args.task, model=args.model, weights=args.weights, finetune=args.finetune,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
                      workers=args.workers, seed=args.seed, device=args.device, amp=args.amp,
                      channels_last=args.channels_last, out=args.out, resume=args.resume, overwrite=args.overwrite,
                      progress=False if args.quiet else None)
    if int(os.environ.get("RANK", "0")) == 0:
        from ..train import segmentation_classes

        # the classes the model is trained on: Cityscapes' 19 train ids, VOC's background + 20
        n_classes = (len(segmentation_classes(train_ds)[0]) if args.task == "segmentation"
                     else len(ds.categories))
        print(f"training {args.model} on {len(train_ds)} images ({tr})"
              + (f", validating on {len(val_ds)} ({val_name})" if val_ds is not None else ", no validation split")
              + f"; task {args.task}, {n_classes} classes -> {args.out}", flush=True)
    summary = train(train_ds, val_ds, cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        key = "miou" if args.task == "segmentation" else "top1"
        print(f"done in {summary['seconds']:.1f} s: best epoch {best.get('epoch')} with "
              f"{'val ' if val_ds is not None else 'train '}{key} {best.get(key, float('nan')):.3f}; "
              f"wrote {args.out}/best.pt, metrics.json, curves.png, predictions.png", flush=True)
    return 0
