"""Detection metrics: COCO AP through pycocotools' ``COCOeval``, and PASCAL VOC AP.

Ground truth is a :class:`dsprep.records.Dataset` in any format; predictions
are a COCO *results* list (a JSON file or the parsed list):
``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` for boxes, or
``"segmentation"`` (compressed RLE) instead of / beside ``bbox`` for masks.
Boxes in results are COCO's ``xywh`` in 0-based continuous pixels, the same
convention as the records (:mod:`dsprep.records`).

COCO numbers come from ``pycocotools.cocoeval.COCOeval`` itself, fed a
ground-truth ``COCO`` object built in memory from the records
(:func:`to_coco_gt`), so they are the reference numbers by construction. The
conversions that ``COCOeval`` needs but never checks are done here:

- every annotation carries ``iscrowd`` (``COCOeval._prepare`` reads it
  unconditionally: without it, ``KeyError``);
- annotation ids run from 1 (id 0 is read as "unmatched" by ``evaluateImg``,
  which silently lowers AP: 0.949 instead of 1.0 on a self-evaluation);
- ``info`` and ``licenses`` are present (pycocotools 2.0.9-2.0.10 ``loadRes``
  raises ``KeyError: 'info'`` without them);
- ``area`` is the stored area where the source had one (COCO buckets
  small/medium/large by it), else the mask area, else the box area;
- ``xyxy`` boxes go back to ``xywh`` exactly (:func:`dsprep.records.convert_boxes`);
- image ids are the records' integer ``source_id`` (COCO's own ids) when every
  record has one, else 1..N in record order; either way predictions may also
  name an image by its ``source_id`` string or record id (:class:`ImageIdMap`).

VOC AP follows the devkit's own ``VOCevaldet.m`` (IoU ``>=`` 0.5, a class
without non-difficult ground truth scores 0 and counts in the mean); see
:func:`voc_evaluate` and ``docs/eval.md`` for the devkit lines and the two
corner cases where MATLAB's NaN arithmetic gives NaN and dsprep gives 0.

The annotations are the COCO writer's (``dsprep.formats.coco``: one builder
of COCO annotation dicts; metrics sit above formats in the layers), without
the source's own per-object keys and with the box standing in as the mask of
an object that has none in ``segm`` evaluation.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import gc_paused
from ..errors import FormatError, MalformedFileError, check_choice
from ..masks import segmentation_area
from .._cocojson import _annotations as _coco_annotations  # the COCO (and LVIS) writer's builder
from ..records import BoxFormat, Dataset, convert_boxes
from ._labels import scored_records
from .keypoints import KEYPOINT_STAT_NAMES, check_keypoint_results, keypoint_count, keypoint_sigmas

__all__ = [
    "COCO_STAT_NAMES",
    "DetectionResult",
    "ImageIdMap",
    "KEYPOINT_STAT_NAMES",
    "VOC07_RECALL_THRESHOLDS",
    "coco_evaluate",
    "evaluate_detection",
    "load_predictions",
    "to_coco_gt",
    "voc_ap",
    "voc_evaluate",
]

log = logging.getLogger(__name__)

# The 12 numbers COCOeval.summarize() prints, in its order (bbox/segm).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm", "keypoints")
# what a result must carry for each iou type
_RESULT_FIELD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}
VOC_METRICS = ("voc07", "voc12")
# The devkit's "for t=0:0.1:1" as MATLAB builds that range: from both ends (a + k*d for the
# first half, b - k*d for the second; MathWorks' colonop.m), so 0.6 and 0.7 are the doubles
# nearest 0.6 and 0.7, where numpy's arange(0, 1.1, 0.1) (detectron2) has 0.6000000000000001
# and 0.7000000000000001: a recall of exactly 3/5 reaches t = 0.6 here and in the devkit.
VOC07_RECALL_THRESHOLDS = tuple([k * 0.1 for k in range(6)] + [1.0 - k * 0.1 for k in range(4, -1, -1)])


@dataclass
class DetectionResult:
    """What an evaluation returns.

    Attributes:
        metric: ``"coco"``, ``"voc07"`` or ``"voc12"``.
        iou_type: ``"bbox"``, ``"segm"`` or ``"keypoints"``.
        stats: summary numbers (COCO: :data:`COCO_STAT_NAMES`, keypoints
            :data:`KEYPOINT_STAT_NAMES`; VOC: ``mAP``).
            AP values are fractions in [0, 1]; COCO gives -1 where undefined
            (no ground truth of that kind); VOC gives 0 to a class without
            non-difficult ground truth, as the devkit does.
        per_class: category name -> AP (COCO: AP@[.5:.95]; VOC: AP@0.5).
        curves: category name -> ``(recall, precision)`` arrays, for plotting
            (COCO: at IoU 0.5, all areas, 100 detections).
        counts: ``images``, ``ground_truth``, ``detections`` (keypoints also
            ``ground_truth_with_keypoints``, the objects COCOeval scores).
        params: what the evaluation was run with, where it is not fixed
            (keypoints: ``kpt_oks_sigmas`` and ``sigmas_from``).
    """

    metric: str
    iou_type: str
    stats: dict[str, float]
    per_class: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        clean = (lambda v: None if isinstance(v, float) and math.isnan(v) else v)
        out = {"metric": self.metric, "iou_type": self.iou_type,
               "stats": {k: clean(v) for k, v in self.stats.items()},
               "per_class": {k: clean(v) for k, v in self.per_class.items()},
               "counts": dict(self.counts)}
        if self.params:
            out["params"] = dict(self.params)
        return out


class ImageIdMap:
    """Record <-> integer COCO image id, and the names a prediction may use for an image.

    Integer ids are the records' ``source_id`` when every record has an int
    one (COCO ground truth keeps COCO's ids), else 1..N in record order.
    ``explicit`` (record id -> int) overrides both. A prediction's
    ``image_id`` is resolved as: an int that is a known COCO id; else a string
    equal to a record's ``source_id``, record id, image path, or file stem
    (when no other image has that stem: VOC's ``000005``).
    """

    def __init__(self, records: Sequence[Any], explicit: Mapping[str, int] | None = None):
        self.records = list(records)
        if explicit is not None:
            missing = [r.id for r in self.records if r.id not in explicit]
            if missing:
                raise FormatError("image_ids", f"no integer id given for {len(missing)} record(s), "
                                               f"e.g. {missing[:3]}")
            ints = [int(explicit[r.id]) for r in self.records]
        elif self.records and all(_is_int(r.source_id) for r in self.records):
            ints = [int(r.source_id) for r in self.records]
        else:
            ints = list(range(1, len(self.records) + 1))
        if len(set(ints)) != len(ints):
            raise FormatError("ground truth", "two images share one integer image id; "
                                              "pass an explicit image_ids map")
        self.ints = ints
        self._by_int = set(ints)
        self._by_name: dict[str, int] = {}
        for r, i in zip(self.records, ints):
            for key in (r.id, r.path, None if r.source_id is None else str(r.source_id)):
                if key is not None:
                    self._by_name.setdefault(key, i)
        # File stems ("000005", "shapes_00000") too, where one image alone has that stem:
        # VOC detections name images by the devkit id, which is the stem.
        stems: dict[str, list[int]] = {}
        for r, i in zip(self.records, ints):
            stems.setdefault(r.path.rsplit("/", 1)[-1].rsplit(".", 1)[0], []).append(i)
        for stem, ids in stems.items():
            if len(ids) == 1:
                self._by_name.setdefault(stem, ids[0])

    def resolve(self, image_id: Any) -> int | None:
        """The integer id for a prediction's ``image_id``, or None if unknown."""
        if _is_int(image_id):
            return int(image_id) if int(image_id) in self._by_int else self._by_name.get(str(image_id))
        if isinstance(image_id, str):
            return self._by_name.get(image_id)
        return None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _records_of(dataset: Dataset, split: str | None) -> list:
    return scored_records(dataset, split)


def to_coco_gt(dataset: Dataset, *, split: str | None = None, iou_type: str = "bbox",
               image_ids: Mapping[str, int] | None = None) -> tuple[dict[str, Any], ImageIdMap]:
    """The ground truth as a COCO instances dict that ``COCOeval`` accepts.

    Args:
        dataset: ground truth in any format.
        split: only this split's records.
        iou_type: ``"segm"`` also needs a segmentation on every object; an
            object without one gets its box as a polygon (and is counted in a
            warning).
        image_ids: explicit record id -> integer image id map (see :class:`ImageIdMap`).

    Returns:
        ``(coco_dict, id_map)``.

    Example:
        >>> from dsprep.records import Category, Instances, Record
        >>> ds = Dataset([Category(1, "cat")], [Record("a", "a.jpg", 8, 8, source_id=7,
        ...     instances=Instances(boxes=[[1, 2, 5, 6]], labels=[1]))])
        >>> gt, _ = to_coco_gt(ds)
        >>> gt["annotations"][0]["bbox"], gt["annotations"][0]["id"], gt["images"][0]["id"]
        ([1.0, 2.0, 4.0, 4.0], 1, 7)
    """
    check_choice("iou type", iou_type, IOU_TYPES)
    records = _records_of(dataset, split)
    id_map = ImageIdMap(records, image_ids)
    images = [{"id": i, "width": int(r.width), "height": int(r.height), "file_name": r.path}
              for r, i in zip(records, id_map.ints)]
    k = keypoint_count(records) if iou_type == "keypoints" else 0
    n = sum(len(r.instances) for r in records)
    # The COCO writer's annotations (one builder), numbered 1..n, without the source's own keys
    annotations = _coco_annotations(records, id_map.ints, range(1, n + 1), False, iou_type == "keypoints",
                                           k, keep_extra=False, raw_json=False)
    boxed = _without_empty_segmentations(records, annotations, iou_type)
    if boxed:
        log.warning("%d object(s) have no segmentation; their boxes stand in for masks in segm evaluation",
                    boxed)
    categories = [{"id": c.id, "name": c.name, "supercategory": c.supercategory or ""}
                  for c in dataset.categories]
    gt = {"info": dict(dataset.info.get("info") or {"description": "dsprep ground truth"}),
          "licenses": list(dataset.info.get("licenses") or []),
          "images": images, "annotations": annotations, "categories": categories}
    return gt, id_map


def _without_empty_segmentations(records: Sequence[Any], annotations: list[dict[str, Any]], iou_type: str) -> int:
    """Drop the writer's ``"segmentation": []`` of bbox-only objects; for ``segm`` evaluation, their
    box as a polygon stands in (its pixel area where the source stored none). Returns how many."""
    boxed = 0
    objects = (j for r in records for j in range(len(r.instances)))
    owners = (r for r in records for _ in range(len(r.instances)))
    for ann, r, j in zip(annotations, owners, objects):
        segm = ann["segmentation"]
        if isinstance(segm, dict) and not segm.get("size"):  # an RLE without its size: the image's
            ann["segmentation"] = {**segm, "size": [int(r.height), int(r.width)]}
        if segm != []:
            continue
        del ann["segmentation"]
        if iou_type == "segm":
            boxed += 1
            x, y, w, h = ann["bbox"]
            ann["segmentation"] = [[x, y, x, y + h, x + w, y + h, x + w, y]]
            if math.isnan(r.instances.area[j]):
                ann["area"] = float(segmentation_area(ann["segmentation"], r.height, r.width))
    return boxed


def load_predictions(predictions: str | os.PathLike | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Read a COCO results JSON (a list of detections); a list is returned as a shallow copy.

    Raises:
        MalformedFileError: not JSON, or not a list of objects.
    """
    if isinstance(predictions, (str, os.PathLike)):
        path = Path(predictions)
        try:
            import orjson

            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            from ..errors import MissingFileError

            raise MissingFileError(str(path), "predictions file not found") from None
        except ValueError as err:
            raise MalformedFileError(str(path), f"not valid JSON ({err})") from None
        where = str(path)
    else:
        data, where = predictions, "predictions"
    if not isinstance(data, list):
        raise MalformedFileError(where, f"expected a COCO results list [{{image_id, category_id, bbox, score}}], "
                                        f"found a JSON {type(data).__name__}")
    if where == "predictions":  # the caller's list: COCO.loadRes writes into the dicts, so copy them
        return [dict(d) if isinstance(d, dict) else d for d in data]
    return data


def _check_predictions(preds: list, id_map: ImageIdMap, cat_ids: set[int], iou_type: str,
                       where: str) -> list[dict[str, Any]]:
    """Resolve image ids, and refuse unknown image/category ids or missing fields, naming them.

    The common case (every image id a known int, every category known) is
    checked with set operations and leaves the detections untouched; only
    otherwise does it go detection by detection.
    """
    need = _RESULT_FIELD[iou_type]
    try:
        img_ids = {d["image_id"] for d in preds}
        det_cats = {d["category_id"] for d in preds}
        complete = all(need in d and "score" in d for d in preds)
    except (KeyError, TypeError):
        complete, img_ids, det_cats = False, set(), set()
    if not complete or not det_cats and preds:
        for k, d in enumerate(preds):
            if not isinstance(d, dict) or need not in d or "score" not in d or "image_id" not in d \
                    or "category_id" not in d:
                found = sorted(d) if isinstance(d, dict) else type(d).__name__
                raise FormatError(f"{where}: detection {k}",
                                  f"expected image_id, category_id, {need} and score; found {found}")
            if not isinstance(d["image_id"], (int, str)) or not isinstance(d["category_id"], int):
                raise FormatError(f"{where}: detection {k}",
                                  f"expected an int category_id and an int or str image_id; found "
                                  f"{d['image_id']!r}, {d['category_id']!r}")
    problems = []
    bad_img: dict[Any, int] = {}
    if not (img_ids <= id_map._by_int and all(type(i) is int for i in img_ids)):
        for d in preds:
            img = d["image_id"]
            resolved = id_map.resolve(img)
            if resolved is None:
                bad_img[img] = bad_img.get(img, 0) + 1
            else:
                d["image_id"] = resolved
    if bad_img:
        problems.append(f"{sum(bad_img.values())} detection(s) name image ids that are not in the ground truth: "
                        + ", ".join(repr(k) for k in list(bad_img)[:10]) + (" ..." if len(bad_img) > 10 else ""))
    unknown_cats = det_cats - cat_ids
    if unknown_cats:
        n = sum(1 for d in preds if d["category_id"] in unknown_cats)
        problems.append(f"{n} detection(s) name category ids that are not in the ground "
                        f"truth: " + ", ".join(repr(k) for k in sorted(unknown_cats, key=repr)[:10])
                        + f" (known: {sorted(cat_ids)[:20]}{' ...' if len(cat_ids) > 20 else ''})")
    if problems:
        raise FormatError(where, "; ".join(problems))
    return preds


def _segm_as_rle(preds: list[dict[str, Any]], gt: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """pycocotools' ``loadRes`` takes segm results as compressed RLE only: polygons and
    uncompressed RLE are encoded here (at the ground-truth image size), anything else is named."""
    from ..masks import encode_mask, segmentation_rle

    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    for k, d in enumerate(preds):
        seg = d["segmentation"]
        if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            continue
        h, w = sizes[d["image_id"]]
        try:
            if not isinstance(seg, (list, dict)):
                raise TypeError
            rle = segmentation_rle(seg, h, w)
            if rle is None and isinstance(seg, list) and seg:  # only polygons of < 3 points: an empty mask
                rle = encode_mask(np.zeros((h, w), bool))
            elif rle is None:
                raise TypeError
        except (TypeError, ValueError, IndexError):
            raise FormatError(f"{where}: detection {k}", "segmentation must be an RLE dict or a list of "
                              f"polygons, found {type(seg).__name__}") from None
        d = dict(d)
        d["segmentation"] = rle
        preds[k] = d
    return preds


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress on stdout; a library must not."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def coco_evaluate(dataset: Dataset, predictions: str | os.PathLike | Sequence[Mapping[str, Any]], *,
                  iou_type: str = "bbox", split: str | None = None,
                  image_ids: Mapping[str, int] | None = None,
                  sigmas: Sequence[float] | None = None) -> DetectionResult:
    """COCO AP/AR (pycocotools ``COCOeval``) of ``predictions`` against ``dataset``.

    Args:
        dataset: ground truth in any format (records).
        predictions: a COCO results JSON path, or the list itself.
        iou_type: ``"bbox"``, ``"segm"`` or ``"keypoints"`` (OKS; results carry
            ``keypoints``: K ``x, y, v`` triples).
        split: evaluate on this split's images only.
        image_ids: explicit record id -> integer image id (see :class:`ImageIdMap`).
        sigmas: keypoints: the K per-keypoint OKS sigmas; default a category's
            ``sigmas`` field, else COCO's 17 (see :func:`dsprep.eval.keypoints.keypoint_sigmas`).

    Returns:
        A :class:`DetectionResult` whose ``stats`` are ``COCOeval.stats`` by name
        (:data:`COCO_STAT_NAMES`, or :data:`KEYPOINT_STAT_NAMES` for keypoints);
        for keypoints ``params`` holds the sigmas used and where they came from.

    Raises:
        FormatError: a detection names an unknown image or category id, or lacks a field;
            keypoints: no ground-truth object has keypoints, a result has another
            count of them, or the sigmas are missing or malformed.

    Example:
        >>> res = coco_evaluate(ds, "detections.json")  # doctest: +SKIP
        >>> res.stats["AP"], res.stats["AP50"]  # doctest: +SKIP
    """
    check_choice("iou type", iou_type, IOU_TYPES)
    with gc_paused():
        return _warn_if_no_ground_truth(_coco_evaluate(dataset, predictions, iou_type, split, image_ids, sigmas))


def _warn_if_no_ground_truth(result: DetectionResult) -> DetectionResult:
    # Every AP is then undefined (-1 / NaN): say why instead of a table of dashes.
    c = result.counts
    if c.get("ground_truth", 0) == 0:
        log.warning("the ground truth holds no objects in %d image(s) (%d detection(s)): every AP is undefined; "
                    "does this format/split carry object annotations?", c.get("images", 0), c.get("detections", 0))
    return result


def _keypoint_params(dataset: Dataset, gt: Mapping[str, Any], preds: list, sigmas: Sequence[float] | None,
                     where: str) -> dict[str, Any]:
    """K, the sigmas and their source; the results checked against K."""
    k = len(gt["annotations"][0]["keypoints"]) // 3 if gt["annotations"] else 0
    if k == 0:
        raise FormatError(str(dataset.root or "ground truth"),
                          "no object has keypoints: keypoint AP needs keypoint ground truth "
                          "(COCO person_keypoints_*.json)")
    check_keypoint_results(preds, k, where)
    arr, source = keypoint_sigmas(dataset.categories, k, sigmas)
    return {"kpt_oks_sigmas": arr.tolist(), "sigmas_from": source}


def _coco_evaluate(dataset: Dataset, predictions: Any, iou_type: str, split: str | None,
                   image_ids: Mapping[str, int] | None, sigmas: Sequence[float] | None = None) -> DetectionResult:
    where = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions"
    preds = load_predictions(predictions)
    gt, id_map = to_coco_gt(dataset, split=split, iou_type=iou_type, image_ids=image_ids)
    preds = _check_predictions(preds, id_map, {c["id"] for c in gt["categories"]}, iou_type, where)
    params = _keypoint_params(dataset, gt, preds, sigmas, where) if iou_type == "keypoints" else {}
    if iou_type == "segm":
        preds = _segm_as_rle(preds, gt, where)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    stat_names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else COCO_STAT_NAMES
    counts = {"images": len(gt["images"]), "ground_truth": len(gt["annotations"]), "detections": len(preds)}
    if iou_type == "keypoints":
        counts["ground_truth_with_keypoints"] = sum(1 for a in gt["annotations"] if a["num_keypoints"] > 0)
    if not preds:
        return DetectionResult("coco", iou_type, dict.fromkeys(stat_names, -1.0), dict.fromkeys(names.values(), -1.0),
                               counts=counts, params=params)
    ev = _run_cocoeval(gt, preds, iou_type, params.get("kpt_oks_sigmas"))
    per_class, curves = _coco_per_class(ev, names)
    stats = {k: float(v) for k, v in zip(stat_names, ev.stats)}
    return DetectionResult("coco", iou_type, stats, per_class, curves, counts=counts, params=params)


def _run_cocoeval(gt: Mapping[str, Any], preds: list, iou_type: str, sigmas: Sequence[float] | None) -> Any:
    """pycocotools' own ``loadRes`` + ``COCOeval`` (evaluate, accumulate, summarize), silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(preds), iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _coco_per_class(ev: Any, names: Mapping[int, str]) -> tuple[dict[str, float], dict[str, tuple]]:
    """AP@[.5:.95] per category (all areas, most detections) and its PR curve at the first IoU."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    rec_thrs = np.asarray(ev.params.recThrs)
    per_class: dict[str, float] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        name = names[cat_id]
        per_class[name] = float(valid.mean()) if valid.size else -1.0
        p50 = precision[0, :, k, 0, -1]
        if (p50 > -1).any():
            curves[name] = (rec_thrs.copy(), np.where(p50 > -1, p50, 0.0))
    return per_class, curves


# --- PASCAL VOC ------------------------------------------------------------------------------

def voc_ap(recall: np.ndarray, precision: np.ndarray, metric: str = "voc12") -> float:
    """Average precision from a recall/precision curve, by the VOC devkit's rule.

    ``voc07``: the 11-point interpolated AP of VOC2007 (mean over recall
    thresholds ``t`` of the best precision at recall >= t), ``t`` being the
    doubles MATLAB's ``0:0.1:1`` holds (:data:`VOC07_RECALL_THRESHOLDS`).
    ``voc12``: the area under the monotone (upper-envelope) precision curve,
    VOC2010 onwards (the devkit's ``VOCap.m``).

    Example:
        >>> voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]), "voc12")
        0.75
    """
    check_choice("VOC metric", metric, VOC_METRICS)
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if metric == "voc07":
        ap = 0.0
        for t in VOC07_RECALL_THRESHOLDS:
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of ``box`` with each of ``boxes``; ``-inf`` where they do not overlap.

    Continuous coordinates: on records (``[xmin-1, ymin-1, xmax, ymax]`` of the
    devkit's 1-based inclusive pixels) this is the devkit's IoU with its
    ``xmax - xmin + 1`` widths and ``+1`` intersections (see :func:`voc_evaluate`).
    A box the detection does not overlap (``iw > 0 & ih > 0`` false) is no
    candidate at all, as ``VOCevaldet.m`` skips it (``ovmax`` starts at ``-inf``).
    """
    iw = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    ih = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), -np.inf)


def _voc_ground_truth(records: Sequence[Any], image_ids: Sequence[int], cat_ids: Iterable[int]
                      ) -> tuple[dict[int, dict[int, tuple[np.ndarray, np.ndarray]]], dict[int, int]]:
    """Per class: image -> (boxes, ignored), and the count of boxes that are not ignored.

    ``difficult`` boxes are ignored (the devkit's ``gt(i).diff``); crowd boxes
    too (VOC has none; COCO data scored by the VOC rule keeps its crowd regions
    out of both recall and false positives, as ``COCOeval`` does).
    """
    gt: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {c: {} for c in cat_ids}
    npos = dict.fromkeys(gt, 0)
    for r, img in zip(records, image_ids):
        inst = r.instances
        if not len(inst):
            continue
        ignore = inst.difficult | inst.iscrowd
        for c in np.unique(inst.labels).tolist():
            sel = inst.labels == c
            gt[c][img] = (inst.boxes[sel], ignore[sel])
            npos[c] += int((~ignore[sel]).sum())
    return gt, npos


def _voc_match(dets: Sequence[Mapping[str, Any]], gt: Mapping[int, tuple[np.ndarray, np.ndarray]],
               iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(tp, fp)`` flags of one class's detections in rank order (``VOCevaldet.m``'s loop).

    Ranked by score, ties in input order (MATLAB's ``sort`` is stable); each
    detection takes the overlapping box of its image with the highest IoU
    (the first on a tie); IoU ``>=`` the threshold on a box not yet taken is a
    true positive, on a taken one a false positive, on an ignored one neither;
    no such box is a false positive.
    """
    n = len(dets)
    scores = np.array([d["score"] for d in dets], np.float64)
    order = np.argsort(-scores, kind="stable")
    boxes = convert_boxes(np.array([d["bbox"] for d in dets], np.float64).reshape(-1, 4)[order],
                          BoxFormat.XYWH, BoxFormat.XYXY)
    imgs = [dets[i]["image_id"] for i in order]
    tp, fp = np.zeros(n), np.zeros(n)
    taken = {img: np.zeros(len(v[0]), bool) for img, v in gt.items()}
    for i in range(n):
        g = gt.get(imgs[i])
        ious = _iou_one_to_many(boxes[i], g[0]) if g is not None and len(g[0]) else np.empty(0)
        j = int(np.argmax(ious)) if ious.size else -1
        if j < 0 or not ious[j] >= iou_threshold:
            fp[i] = 1
        elif g[1][j]:
            continue  # ignored (difficult / crowd): neither
        elif taken[imgs[i]][j]:
            fp[i] = 1  # a duplicate
        else:
            tp[i] = 1
            taken[imgs[i]][j] = True
    return tp, fp


def voc_evaluate(dataset: Dataset, predictions: str | os.PathLike | Sequence[Mapping[str, Any]], *,
                 metric: str = "voc07", iou_threshold: float = 0.5, split: str | None = None,
                 image_ids: Mapping[str, int] | None = None) -> DetectionResult:
    """PASCAL VOC AP per class and its mean, by the devkit's ``VOCevaldet.m``.

    Per class (see ``docs/eval.md`` for the devkit lines): detections over all
    images ranked by score; each matched to its image's ground-truth box of
    highest IoU; IoU ``>=`` ``iou_threshold`` on an unmatched box is a true
    positive, on a matched one a false positive, on a ``difficult`` (or
    crowd) box neither; otherwise a false positive. Recall is over the
    non-difficult boxes. A class with no non-difficult box has AP 0 and counts
    in the mean, as the devkit's 11-point rule gives it (recall 0/0).

    Coordinates: the devkit measures 1-based inclusive pixels, so a box's
    width is ``xmax - xmin + 1`` and intersections get ``+1``. Records hold
    the same box as ``[xmin-1, ymin-1, xmax, ymax]`` (0-based continuous), and
    predictions in COCO results are in that convention too, so the devkit's
    ``xmax - xmin + 1`` is exactly our ``x2 - x1`` and its IoU is the plain
    continuous IoU computed here; no ``+1`` appears (detectron2 adds 1 to
    predicted xmin/ymin before calling the devkit rule for the same reason).

    Args:
        metric: ``"voc07"`` (11-point) or ``"voc12"`` (area).
        iou_threshold: 0.5 in VOC (``VOCopts.minoverlap``).

    Returns:
        ``stats = {"mAP": ...}``, the mean over every category (NaN only for a
        dataset without categories), and per-class AP.
    """
    check_choice("VOC metric", metric, VOC_METRICS)
    where = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions"
    preds = load_predictions(predictions)
    records = _records_of(dataset, split)
    id_map = ImageIdMap(records, image_ids)
    preds = _check_predictions(preds, id_map, {c.id for c in dataset.categories}, "bbox", where)
    gt, npos = _voc_ground_truth(records, id_map.ints, (c.id for c in dataset.categories))
    by_cat: dict[int, list[dict]] = {c: [] for c in gt}
    for d in preds:
        by_cat[d["category_id"]].append(d)
    per_class: dict[str, float] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cat in dataset.categories:
        if npos[cat.id] == 0:  # recall 0/0: the devkit's 11-point AP is 0 (see docs/eval.md)
            per_class[cat.name] = 0.0
            continue
        tp, fp = (np.cumsum(v) for v in _voc_match(by_cat[cat.id], gt[cat.id], iou_threshold))
        rec = tp / npos[cat.id]
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[cat.name] = voc_ap(rec, prec, metric)
        curves[cat.name] = (rec, prec)
    stats = {"mAP": float(np.mean(list(per_class.values()))) if per_class else float("nan")}
    return _warn_if_no_ground_truth(DetectionResult(metric, "bbox", stats, per_class, curves,
                           counts={"images": len(records), "ground_truth": sum(len(r.instances) for r in records),
                                   "detections": len(preds)}))


def evaluate_detection(dataset: Dataset, predictions: Any, *, metric: str = "coco", iou_type: str = "bbox",
                       split: str | None = None, image_ids: Mapping[str, int] | None = None,
                       sigmas: Sequence[float] | None = None) -> DetectionResult:
    """Dispatch on ``metric``: ``coco`` (bbox, segm or keypoints), ``voc07`` or ``voc12`` (bbox)."""
    check_choice("detection metric", metric, ("coco", *VOC_METRICS))
    if metric == "coco":
        return coco_evaluate(dataset, predictions, iou_type=iou_type, split=split, image_ids=image_ids,
                             sigmas=sigmas)
    if iou_type != "bbox":
        raise FormatError("--iou-type", f"VOC AP is defined on boxes only; found iou type {iou_type!r}")
    return voc_evaluate(dataset, predictions, metric=metric, split=split, image_ids=image_ids)


def plot_pr_curves(result: DetectionResult, out_dir: str | os.PathLike) -> list[Path]:
    """One precision/recall PNG per class into ``out_dir`` (matplotlib if installed, else Pillow)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    for name, (rec, prec) in result.curves.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "class"
        path = out / f"pr_{safe}.png"
        ap = result.per_class.get(name, float("nan"))
        title = f"{name}  AP={ap:.3f} ({result.metric})"
        if plt is not None:
            fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
            ax.plot(rec, prec, drawstyle="steps-post")
            ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(path)
            plt.close(fig)
        else:
            _pillow_curve(rec, prec, title, path)
        paths.append(path)
    return paths


def _pillow_curve(rec: Iterable[float], prec: Iterable[float], title: str, path: Path) -> None:
    from PIL import Image, ImageDraw

    size, m = 400, 40
    im = Image.new("RGB", (size, size), "white")
    dr = ImageDraw.Draw(im)
    dr.rectangle([m, m, size - m, size - m], outline="black")
    span = size - 2 * m
    pts = [(m + float(r) * span, size - m - float(p) * span) for r, p in zip(rec, prec)]
    if len(pts) > 1:
        dr.line(pts, fill=(31, 119, 180), width=2)
    dr.text((m, 10), title, fill="black")
    dr.text((size // 2 - 15, size - m + 10), "recall", fill="black")
    dr.text((2, m - 15), "precision", fill="black")
    im.save(path)
