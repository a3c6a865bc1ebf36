"""dsprep eval detection|segmentation|classification FORMAT ROOT PREDICTIONS"""
from __future__ import annotations

import argparse
import inspect
import math
from typing import Any

from ._common import (add_panoptic_options, add_source, add_workers, panoptic_options, print_json,
                      source_options)

HELP = "score predictions against a dataset (COCO/VOC AP, mIoU, accuracy)"
DESCRIPTION = """Score a model's predictions against a dataset's ground truth, with the
reference tools' rules: COCO AP through pycocotools' COCOeval, VOC07/VOC12 AP by
the devkit rule (difficult ignored), mIoU as cityscapesScripts computes it.

PREDICTIONS is
  detection:       a COCO results JSON [{image_id, category_id, bbox: [x,y,w,h], score}]
                   (segmentation: compressed RLE, with --iou-type segm;
                   keypoints: [x1,y1,v1,...] K triples, with --iou-type keypoints);
                   image_id is the COCO image id, or a record id / VOC image id string
  segmentation:    a directory of label PNGs, one per image (<record id>.png or <stem>.png)
  classification:  a CSV (image_id,label or image_id,score_0,..) or JSON

examples:
  dsprep eval detection coco annotations/instances_val2017.json dets.json
  dsprep eval detection voc VOCdevkit/VOC2007 dets.json --split test --metric voc07 --out pr/
  dsprep eval detection coco person_keypoints_val2017.json kps.json --iou-type keypoints
  dsprep eval detection coco-panoptic coco/ dets.json --things-only --categories-file panoptic_coco_categories.json
  dsprep eval segmentation cityscapes cityscapes/ preds/ --split val --pred-ids train_ids
  dsprep eval classification imagenet imagenet/ preds.csv --split val --json"""

TASKS = ("detection", "segmentation", "classification")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=TASKS, metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    add_source(p)
    p.add_argument("predictions", metavar="PREDICTIONS", help="the predictions file or directory (see above)")
    add_workers(p)
    p.add_argument("--iou-type", choices=("bbox", "segm", "keypoints"), default="bbox",
                   help="detection: boxes, masks, or keypoints (COCO OKS AP; default bbox)")
    p.add_argument("--kpt-sigmas", type=_float_list, default=None, metavar="S1,S2,...",
                   help="--iou-type keypoints: the K per-keypoint OKS sigmas (default: the categories' "
                        "'sigmas' field, else COCO's 17)")
    p.add_argument("--metric", choices=("coco", "voc07", "voc12"), default=None,
                   help="detection: COCO AP, VOC2007 11-point AP or VOC2012 area AP "
                        "(default: voc07 for voc datasets with --iou-type bbox, else coco)")
    p.add_argument("--pred-ids", choices=("label_ids", "train_ids"), default="label_ids",
                   help="segmentation on Cityscapes: what the predicted PNGs hold")
    p.add_argument("--no-background", action="store_true",
                   help="segmentation: do not count value 0 as a 'background' class")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="detection: write a precision/recall curve PNG per class into DIR")
    add_panoptic_options(p)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, found {text!r}") from None


def _gt_options(fmt: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Parse options that give the ground truth the task needs.

    Detection scores objects, so the format is parsed as for a conversion to COCO
    (``parse_options_for("coco")``: Cityscapes reads its instances, COCO panoptic and
    VOC decode their object masks); except with ``--iou-type segm`` the per-object masks
    are not needed, so their decoding (``masks`` / ``segmentation`` options) is turned off.
    """
    if args.task != "detection":
        return {}
    hook = getattr(fmt, "parse_options_for", None)
    options = dict(hook("coco")) if hook else {}
    if args.iou_type != "segm":
        try:
            params = inspect.signature(fmt.parse).parameters
        except (TypeError, ValueError):
            params = {}
        for name in ("masks", "segmentation"):
            if name in params:
                options[name] = False
    return options


def _load_gt(args: argparse.Namespace) -> Any:
    from ..formats import get_format

    fmt = get_format(args.format)
    return fmt.parse(args.root, split=args.split, on_error=args.on_error, workers=args.workers,
                     progress=False, **{**_gt_options(fmt, args), **panoptic_options(args), **source_options(args)})


def _split(args: argparse.Namespace, ds: Any) -> str | None:
    # parse(split=...) normally returns that split alone; restrict again only if it did not.
    if args.split and len(ds.splits) > 1 and args.split in ds.splits:
        return args.split
    return None


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or v < 0)):
        return "   -  "
    return f"{100 * v:6.2f}"


def run(args: argparse.Namespace) -> int:
    ds = _load_gt(args)
    if args.task == "detection":
        return _detection(args, ds)
    if args.task == "segmentation":
        return _segmentation(args, ds)
    return _classification(args, ds)


def _detection(args: argparse.Namespace, ds: Any) -> int:
    from ..eval.detection import evaluate_detection, plot_pr_curves

    metric = args.metric or ("voc07" if args.format == "voc" and args.iou_type == "bbox" else "coco")
    res = evaluate_detection(ds, args.predictions, metric=metric, iou_type=args.iou_type, split=_split(args, ds),
                             sigmas=args.kpt_sigmas)
    if args.out:  # never into the dataset (docs/cli.md, Safety)
        from .._outdir import check_output, input_folders

        check_output(args.out, inputs=input_folders(ds, [args.root]), keep_existing=True)
    written = plot_pr_curves(res, args.out) if args.out else []
    if args.json:
        out = res.to_dict()
        if written:
            out["curves"] = [str(p) for p in written]
        print_json(out)
        return _gt_status(res)
    c = res.counts
    print(f"{metric} {res.iou_type} AP: {c['images']} images, {c['ground_truth']} ground-truth objects, "
          f"{c['detections']} detections")
    print("  ".join(f"{k}={_fmt(v).strip()}" for k, v in res.stats.items()))
    if res.params.get("sigmas_from"):
        print(f"OKS sigmas: {res.params['sigmas_from']}")
    width = max([5, *map(len, res.per_class)]) + 2
    print("class".ljust(width) + ("AP" if metric == "coco" else "AP50").rjust(8))
    for name, ap in res.per_class.items():
        print(name.ljust(width) + _fmt(ap).rjust(8))
    if written:
        print(f"wrote {len(written)} PR curves to {args.out}")
    return _gt_status(res)


def _gt_status(res: Any) -> int:
    # No ground-truth object: nothing was scored (the library has logged why); exit 1
    # so a script does not take the table of undefined APs for a result.
    return 1 if res.counts.get("ground_truth", 0) == 0 else 0


def _segmentation(args: argparse.Namespace, ds: Any) -> int:
    from ..eval.segmentation import evaluate_dataset

    res = evaluate_dataset(ds, args.predictions, split=_split(args, ds), pred_ids=args.pred_ids,
                           background=not args.no_background, workers=args.workers)
    if args.json:
        print_json(res.to_dict())
        return 0
    print(f"{res.images} images: mIoU {_fmt(res.miou).strip()}  pixel accuracy {_fmt(res.pixel_accuracy).strip()}"
          f"  mean accuracy {_fmt(res.mean_accuracy).strip()}"
          + (f"  iIoU {_fmt(res.miiou).strip()}" if res.miiou is not None else ""))
    width = max([5, *map(len, res.class_names)]) + 2
    print("class".ljust(width) + "IoU".rjust(8) + ("iIoU".rjust(8) if res.iiou is not None else ""))
    for name, iou in zip(res.class_names, res.iou.tolist()):
        line = name.ljust(width) + _fmt(iou).rjust(8)
        if res.iiou is not None:
            line += _fmt(res.iiou.get(name)).rjust(8)
        print(line)
    return 0


def _classification(args: argparse.Namespace, ds: Any) -> int:
    from ..eval.classification import evaluate_dataset

    res = evaluate_dataset(ds, args.predictions, split=_split(args, ds))
    if args.json:
        print_json(res.to_dict())
        return 0
    print(f"{res.images} images: top-1 {_fmt(res.top1).strip()}  top-5 {_fmt(res.top5).strip()}  "
          f"mean per-class accuracy {_fmt(res.mean_class_accuracy).strip()}")
    width = max([5, *map(len, res.class_names)]) + 2
    print("class".ljust(width) + "precision".rjust(10) + "recall".rjust(8) + "F1".rjust(8) + "support".rjust(9))
    for i, name in enumerate(res.class_names):
        print(name.ljust(width) + _fmt(float(res.precision[i])).rjust(10) + _fmt(float(res.recall[i])).rjust(8)
              + _fmt(float(res.f1[i])).rjust(8) + str(int(res.support[i])).rjust(9))
    return 0
