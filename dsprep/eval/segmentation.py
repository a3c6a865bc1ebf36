"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU, pixel accuracy, iIoU.

Inputs are label images: numpy arrays or single-channel PNG paths (palette
PNGs read as their indices, as VOC's SegmentationClass files are).

Conventions:

- A *lut* maps stored pixel values to evaluation indices ``0..C-1``; values
  mapped to ``ignore_index`` (255) are left out. Ground truth and predictions
  have separate luts, because they are often stored differently (Cityscapes
  ground truth holds *label ids*, models usually predict *train ids*).
- Ground-truth pixels equal to ``ignore_index`` (after the lut) are not
  counted. Predicted pixels outside ``0..C-1`` (an ignored Cityscapes label,
  255, any unknown value) on a counted ground-truth pixel are errors: they
  count as false negatives of the ground-truth class and as nobody's false
  positive, exactly as cityscapesScripts' ``getIouScoreForLabel`` does
  (row sum over all predicted labels, column sum over non-ignored rows only).
- ``IoU_c = TP / (TP + FP + FN)``; a class with ``TP + FP + FN = 0`` has IoU
  NaN and is left out of the mean (cityscapesScripts ``getScoreAverage``;
  mmsegmentation's ``nanmean`` likewise).
- iIoU (Cityscapes): per class with instances, TP and FN of ground-truth
  *instance* pixels are weighted by ``avg_size[class] / instance_size``, FP
  stays unweighted; ``iIoU = TPw / (TPw + FP + FNw)``. Instances are the
  ``instanceIds`` values > 1000 (``label_id * 1000 + k``); the average sizes
  are the constants cityscapesScripts uses (:data:`CITYSCAPES_AVG_CLASS_SIZE`).
"""
from __future__ import annotations

import logging
import math
from functools import partial
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import FormatError, MissingFileError
from ._labels import scored_records

__all__ = [
    "CITYSCAPES_AVG_CLASS_SIZE",
    "CITYSCAPES_EVAL_CLASSES",
    "SegmentationResult",
    "cityscapes_luts",
    "confusion_matrix",
    "evaluate_segmentation",
    "make_lut",
    "read_label_image",
    "segmentation_metrics",
]

from ..formats._cityscapes_labels import LABELS as _CS_LABELS, train_id_to_id_lut

log = logging.getLogger(__name__)
IGNORE = 255

# From the one Cityscapes label table (formats/_cityscapes_labels.py, cityscapesScripts labels.py):
# label id -> train id for the 19 evaluated classes, and their names in train-id order.
_CS_LABEL_TO_TRAIN = {lab.id: lab.trainId for lab in _CS_LABELS if not lab.ignoreInEval and lab.trainId >= 0}
CITYSCAPES_EVAL_CLASSES = tuple(lab.name for lab in sorted(
    (lab for lab in _CS_LABELS if not lab.ignoreInEval and lab.trainId >= 0), key=lambda lab: lab.trainId))
# cityscapesScripts evaluation/evalPixelLevelSemanticLabeling.py, args.avgClassSize (pixels,
# averaged over the training set); only the 8 evaluated instance classes are used here.
CITYSCAPES_AVG_CLASS_SIZE = {"bicycle": 4672.3249222261, "caravan": 36771.8241758242,
                             "motorcycle": 6298.7200839748, "rider": 3930.4788056518,
                             "bus": 35732.1511111111, "train": 67583.7075812274, "car": 12794.0202738185,
                             "person": 3462.4756337644, "truck": 27855.1264367816,
                             "trailer": 16926.9763313609}
_CS_INSTANCE_TRAIN_IDS = tuple(sorted(lab.trainId for lab in _CS_LABELS
                                      if lab.hasInstances and not lab.ignoreInEval))  # person .. bicycle


def make_lut(mapping: Mapping[int, int] | None, *, size: int = 65536, default: int = IGNORE) -> np.ndarray:
    """A lookup table ``stored value -> evaluation index`` (unlisted values -> ``default``).

    ``None`` gives the identity for ``0..size-1``.

    Example:
        >>> make_lut({7: 0, 26: 13})[[7, 26, 0]].tolist()
        [0, 13, 255]
    """
    if mapping is None:
        return np.arange(size, dtype=np.int64)
    lut = np.full(size, default, np.int64)
    for k, v in mapping.items():
        lut[int(k)] = int(v)
    return lut


def cityscapes_luts(gt: str = "label_ids", pred: str = "label_ids") -> tuple[np.ndarray, np.ndarray]:
    """Luts for Cityscapes: the 19 evaluated classes as indices 0..18 (train-id order).

    Args:
        gt, pred: how each side stores classes: ``"label_ids"`` (0..33, the
            ``*_labelIds.png`` convention and what cityscapesScripts expects
            of predictions) or ``"train_ids"`` (0..18, 255 ignore:
            ``*_labelTrainIds.png`` and most models' argmax).
    """
    def lut(kind: str) -> np.ndarray:
        if kind == "label_ids":
            return make_lut(_CS_LABEL_TO_TRAIN)
        if kind == "train_ids":
            return make_lut({i: i for i in range(19)})
        raise FormatError("cityscapes ids", f"expected 'label_ids' or 'train_ids', found {kind!r}")

    return lut(gt), lut(pred)


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """A single-channel label PNG as an integer array (palette PNGs give their indices).

    Raises:
        MissingFileError: no such file.
        MalformedFileError: unreadable, or more than one channel.
    """
    from ..masks import read_label_png

    return read_label_png(path, "label image")


def _train_ids_as_label_ids(path: Path) -> np.ndarray:
    """A ``*_labelTrainIds.png`` read back into label ids (a tree mixing both kinds)."""
    return np.asarray(train_id_to_id_lut(), np.int64)[read_label_image(path)]


def _as_labels(x: Any) -> np.ndarray:
    if isinstance(x, (str, os.PathLike)):
        return read_label_image(x)
    if callable(x):  # a reader bound to its file, run where the matrix is counted
        x = x()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise FormatError("label array", f"expected a 2-D (H, W) label array, found shape {arr.shape}")
    return arr


def confusion_matrix(gt: Any, pred: Any, num_classes: int, *, gt_lut: np.ndarray | None = None,
                     pred_lut: np.ndarray | None = None, ignore_index: int = IGNORE,
                     where: str = "") -> np.ndarray:
    """The ``(C, C + 1)`` confusion matrix of one image: rows ground truth, columns prediction.

    Column ``C`` counts predictions outside ``0..C-1`` (see module docstring).
    Pixels whose ground truth is ``ignore_index`` after ``gt_lut`` are left out.

    Example:
        >>> confusion_matrix(np.array([[0, 1], [255, 1]]), np.array([[0, 0], [1, 7]]), 2).tolist()
        [[1, 0, 0], [1, 0, 1]]
    """
    g = _as_labels(gt)
    p = _as_labels(pred)
    if g.shape != p.shape:
        raise FormatError(where or "prediction", f"prediction is {p.shape[1]}x{p.shape[0]} (WxH) but the "
                                                 f"ground truth is {g.shape[1]}x{g.shape[0]}")
    g = g.astype(np.int64, copy=False)
    p = p.astype(np.int64, copy=False)
    if gt_lut is not None:
        g = _apply_lut(gt_lut, g, where, "ground truth")
    if pred_lut is not None:
        p = _apply_lut(pred_lut, p, where, "prediction")
    outside = (g != ignore_index) & ((g < 0) | (g >= num_classes))
    if outside.any():
        bad = np.unique(g[outside])[:10].tolist()
        raise FormatError(where or "ground truth",
                          f"ground-truth values {bad} are neither classes 0..{num_classes - 1} nor ignore "
                          f"({ignore_index}); pass a lut that maps them")
    cells = num_classes * (num_classes + 1)
    cm = np.bincount(confusion_cells(g, p, num_classes, ignore_index).ravel(), minlength=cells + 1)[:cells]
    return cm.reshape(num_classes, num_classes + 1)


def confusion_cells(gt: Any, pred: Any, num_classes: int, ignore_index: int = IGNORE) -> Any:
    """Each pixel's cell of the ``(C, C + 1)`` confusion matrix, flat: ``gt * (C + 1) + pred``.

    A prediction outside ``0..C-1`` goes to column ``C``; a pixel whose ground
    truth is ``ignore_index`` goes to cell ``C * (C + 1)``, one past the matrix
    (count with ``minlength=C * (C + 1) + 1`` and drop the last bin). ``gt`` and
    ``pred`` are signed integer arrays of one shape, the ground truth in
    ``0..C-1`` or ``ignore_index``. Elementwise arithmetic only, no indexing by
    a mask, so the same code serves numpy arrays (:func:`confusion_matrix`) and
    torch tensors on a GPU without a host sync (a training loop counts them
    with ``torch.bincount``).

    Example:
        >>> confusion_cells(np.array([0, 1, 255, 1]), np.array([0, 0, 1, 7]), 2).tolist()
        [0, 3, 6, 5]
    """
    c1 = num_classes + 1
    keep = gt != ignore_index
    p = pred.clip(-1, num_classes) % c1  # -1 and C both land in column C
    return (gt * c1 + p) * keep + (num_classes * c1) * ~keep


def _apply_lut(lut: np.ndarray, a: np.ndarray, where: str, what: str) -> np.ndarray:
    if a.size and (a.min() < 0 or a.max() >= len(lut)):
        raise FormatError(where or what, f"{what} values up to {int(a.max())} exceed the lut ({len(lut)} entries)")
    return lut[a]


def instance_stats(instance_ids: Any, pred: Any, *, pred_lut: np.ndarray | None = None,
                   label_to_class: Mapping[int, int] | None = None,
                   avg_size: Mapping[int, float] | None = None, num_classes: int = 19,
                   where: str = "") -> np.ndarray:
    """Weighted ``(TPw, FNw)`` per class from one Cityscapes ``instanceIds`` image, shape ``(C, 2)``.

    Args:
        instance_ids: ``label_id * 1000 + k`` per instance pixel (values <= 1000 are not instances).
        pred: the prediction, mapped to class indices by ``pred_lut``.
        label_to_class: label id -> class index for instance classes
            (default: the 8 Cityscapes instance classes, train ids 11..18).
        avg_size: class index -> average instance size (default:
            :data:`CITYSCAPES_AVG_CLASS_SIZE`).
    """
    inst = _as_labels(instance_ids).astype(np.int64, copy=False)
    p = _as_labels(pred).astype(np.int64, copy=False)
    if inst.shape != p.shape:
        raise FormatError(where or "instance ids", f"instance image is {inst.shape[1]}x{inst.shape[0]} but the "
                                                   f"prediction is {p.shape[1]}x{p.shape[0]}")
    if pred_lut is not None:
        p = _apply_lut(pred_lut, p, where, "prediction")
    if label_to_class is None:
        label_to_class = {k: v for k, v in _CS_LABEL_TO_TRAIN.items() if v in _CS_INSTANCE_TRAIN_IDS}
    if avg_size is None:
        avg_size = {i: CITYSCAPES_AVG_CLASS_SIZE[CITYSCAPES_EVAL_CLASSES[i]] for i in _CS_INSTANCE_TRAIN_IDS}
    out = np.zeros((num_classes, 2))
    sel = inst > 1000
    if not sel.any():
        return out
    ids = inst[sel]
    hits_pred = p[sel]
    uniq, inv, sizes = np.unique(ids, return_inverse=True, return_counts=True)
    for n, inst_id in enumerate(uniq.tolist()):
        cls = label_to_class.get(inst_id // 1000)
        if cls is None:
            continue
        tp = int(np.count_nonzero(hits_pred[inv == n] == cls))
        size = int(sizes[n])
        weight = avg_size[cls] / size
        out[cls, 0] += tp * weight
        out[cls, 1] += (size - tp) * weight
    return out


@dataclass
class SegmentationResult:
    """Accumulated segmentation metrics.

    Attributes:
        class_names: the C evaluated classes.
        confusion: ``(C, C)`` pixel counts (rows ground truth, columns prediction).
        other: ``(C,)`` ground-truth pixels predicted as something outside the classes.
        iou: per-class IoU (NaN where the class is absent from both).
        miou: mean of the non-NaN IoUs.
        pixel_accuracy: correct / counted pixels.
        mean_accuracy: mean over classes present in the ground truth of TP / GT pixels.
        iiou: per-class instance-weighted IoU (classes with instances), or None.
        miiou: its mean, or None.
    """

    class_names: list[str]
    confusion: np.ndarray
    other: np.ndarray
    iou: np.ndarray
    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    iiou: dict[str, float] | None = None
    miiou: float | None = None
    images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        clean = (lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        out = {"images": self.images, "mIoU": clean(self.miou), "pixel_accuracy": clean(self.pixel_accuracy),
               "mean_accuracy": clean(self.mean_accuracy),
               "per_class_iou": {n: clean(v) for n, v in zip(self.class_names, self.iou.tolist())},
               "confusion": self.confusion.tolist(), "other": self.other.tolist()}
        if self.iiou is not None:
            out["iIoU"] = clean(self.miiou)
            out["per_class_iiou"] = {k: clean(v) for k, v in self.iiou.items()}
        return out


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str] | None = None,
                         inst: np.ndarray | None = None, images: int = 0,
                         instance_classes: Sequence[int] | None = None) -> SegmentationResult:
    """Metrics from an accumulated ``(C, C + 1)`` (or ``(C, C)``) confusion matrix.

    Args:
        inst: optional ``(C, 2)`` accumulated weighted ``(TPw, FNw)`` from
            :func:`instance_stats`.
        instance_classes: the class indices that have instances (iIoU is
            reported for these; as in cityscapesScripts, one without any
            ground-truth instance scores 0 if it has false positives, else NaN).
            Default: the classes with a non-zero row in ``inst``.
    """
    cm = np.asarray(cm, np.int64)
    c = cm.shape[0]
    if cm.shape[1] == c:
        cm = np.concatenate([cm, np.zeros((c, 1), np.int64)], axis=1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    tp = np.diag(cm[:, :c]).astype(np.float64)
    gt_total = cm.sum(axis=1).astype(np.float64)
    fn = gt_total - tp
    fp = cm[:, :c].sum(axis=0) - tp
    denom = tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
        acc = np.where(gt_total > 0, tp / gt_total, np.nan)
    total = gt_total.sum()
    res = SegmentationResult(
        class_names=names, confusion=cm[:, :c].copy(), other=cm[:, c].copy(), iou=iou,
        miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        mean_accuracy=float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        images=images)
    if inst is not None:
        inst = np.asarray(inst, np.float64)
        iiou: dict[str, float] = {}
        ks = (instance_classes if instance_classes is not None
              else [k for k in range(c) if inst[k].sum() > 0])
        for k in ks:
            d = inst[k, 0] + fp[k] + inst[k, 1]
            iiou[names[k]] = float(inst[k, 0] / d) if d > 0 else float("nan")
        vals = [v for v in iiou.values() if not math.isnan(v)]
        res.iiou = iiou
        res.miiou = float(np.mean(vals)) if vals else float("nan")
    return res


def _chunk_worker(job: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    pairs, num_classes, gt_lut, pred_lut, ignore_index, inst_kw = job
    cm = np.zeros((num_classes, num_classes + 1), np.int64)
    inst = np.zeros((num_classes, 2)) if inst_kw is not None else None
    for gt, pred, inst_path in pairs:
        where = str(pred) if isinstance(pred, (str, os.PathLike)) else ""
        p = _as_labels(pred)
        cm += confusion_matrix(gt, p, num_classes, gt_lut=gt_lut, pred_lut=pred_lut,
                               ignore_index=ignore_index, where=where)
        if inst is not None and inst_path is not None:
            inst += instance_stats(inst_path, p, pred_lut=pred_lut, num_classes=num_classes, where=where,
                                   **inst_kw)
    return cm, inst


def evaluate_segmentation(pairs: Iterable[tuple[Any, Any]] | Iterable[tuple[Any, Any, Any]], num_classes: int,
                          *, class_names: Sequence[str] | None = None, gt_lut: np.ndarray | None = None,
                          pred_lut: np.ndarray | None = None, ignore_index: int = IGNORE,
                          instances: bool = False, instance_options: Mapping[str, Any] | None = None,
                          workers: int | None = 1) -> SegmentationResult:
    """Accumulate the confusion matrix over ``(gt, pred)`` pairs and compute the metrics.

    Args:
        pairs: ``(gt, pred)`` or ``(gt, pred, instance_ids)`` triples; each an
            array or a PNG path.
        num_classes: C; evaluation indices are ``0..C-1``.
        gt_lut, pred_lut: value -> index tables (:func:`make_lut`, :func:`cityscapes_luts`).
        instances: also compute iIoU from the third element of each pair
            (Cityscapes ``instanceIds``).
        instance_options: ``label_to_class`` / ``avg_size`` for :func:`instance_stats`.
        workers: processes (paths only; arrays are done in this process).

    Example:
        >>> r = evaluate_segmentation([(np.array([[0, 1]]), np.array([[0, 1]]))], 2)
        >>> r.miou
        1.0
    """
    items = []
    for pair in pairs:
        gt, pred = pair[0], pair[1]
        inst = pair[2] if len(pair) > 2 else None
        items.append((gt, pred, inst))
    inst_kw = dict(instance_options or {}) if instances else None
    all_paths = all(isinstance(g, (str, os.PathLike)) and isinstance(p, (str, os.PathLike)) for g, p, _ in items)
    chunk = 16
    jobs = [(items[i:i + chunk], num_classes, gt_lut, pred_lut, ignore_index, inst_kw)
            for i in range(0, len(items), chunk)]
    if all_paths and workers != 1 and len(jobs) > 1:
        parts = _pool_map(jobs, workers)
    else:
        parts = [_chunk_worker(j) for j in jobs]
    cm = np.zeros((num_classes, num_classes + 1), np.int64)
    inst = np.zeros((num_classes, 2)) if instances else None
    for c, i in parts:
        cm += c
        if inst is not None and i is not None:
            inst += i
    inst_classes = None
    if instances:
        l2c = (inst_kw or {}).get("label_to_class")
        inst_classes = sorted(set(l2c.values())) if l2c else list(_CS_INSTANCE_TRAIN_IDS)
    return segmentation_metrics(cm, class_names, inst, images=len(items), instance_classes=inst_classes)


def _pool_map(jobs: list, workers: int | None) -> list:
    from .._io import default_workers, process_pool

    n = default_workers() if workers is None else max(1, int(workers))
    with process_pool(min(n, len(jobs))) as pool:  # workers die with this process
        return list(pool.map(_chunk_worker, jobs))


def prediction_path(pred_dir: Path, record: Any) -> Path:
    """Where the predicted PNG of ``record`` is expected in ``pred_dir``.

    Tried in order: ``<record id>.png`` (the image path without extension,
    e.g. ``JPEGImages/2007_000033.png``), ``<image stem>.png``, and for
    Cityscapes ``<city>_<seq>_<frame>*.png`` (cityscapesScripts' rule).

    Raises:
        MissingFileError: none of them exists (the message lists what was tried).
    """
    stem = Path(record.path).stem
    tried = [pred_dir / f"{record.id}.png", pred_dir / f"{stem}.png"]
    if record.mask_path:
        tried.append(pred_dir / Path(record.mask_path).name)
    for t in tried:
        if t.is_file():
            return t
    if stem.endswith("_leftImg8bit"):
        prefix = stem[: -len("_leftImg8bit")]
        found = sorted(pred_dir.rglob(f"{prefix}*.png"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FormatError(str(pred_dir), f"several predictions match {prefix}*.png: "
                                             f"{[f.name for f in found[:3]]}")
    raise MissingFileError(str(pred_dir), f"no prediction for image {record.path}; tried "
                                          + ", ".join(str(t.relative_to(pred_dir)) for t in tried))


def _is_cityscapes(dataset: Any) -> bool:
    return dataset.format == "cityscapes" or any(
        "trainId" in c.extra or "train_id" in c.extra for c in dataset.categories)


def evaluate_dataset(dataset: Any, pred_dir: str | os.PathLike, *, split: str | None = None,
                     pred_ids: str = "label_ids", background: bool = True, iiou: bool | None = None,
                     ignore_index: int = IGNORE, workers: int | None = None) -> SegmentationResult:
    """Evaluate predicted PNGs in ``pred_dir`` against the records' semantic masks.

    Classes:

    - Cityscapes (``dataset.format == "cityscapes"`` or categories carrying a
      ``trainId``): the 19 evaluated classes. Ground truth ``*_labelIds.png``
      holds label ids (``*_labelTrainIds.png`` train ids, recognised by name);
      predictions hold what ``pred_ids`` says (``label_ids``, the
      cityscapesScripts convention, or ``train_ids``). iIoU is computed from
      ``instance_mask_path`` (``*_instanceIds.png``) when present (``iiou=None``)
      or when asked.
    - Any other format: mask values are category source ids; with
      ``background`` and no category 0, value 0 is a ``background`` class
      (VOC's 21-class mIoU). Predictions use the same values.

    Returns:
        A :class:`SegmentationResult`.

    Raises:
        FormatError: a record has no mask, or a prediction is missing or of another size.
    """
    root = Path(dataset.root) if dataset.root is not None else Path(".")
    pred_dir = Path(pred_dir)
    from ..masks import semantic_readers

    readers = semantic_readers(dataset)
    records = [r for r in scored_records(dataset, split)
               if r.mask_path or (r.extra or {}).get("mask_kind") in readers]
    if not records:
        raise FormatError(str(root), "no record has a semantic mask (mask_path); nothing to evaluate"
                                     + (f" in split {split!r}" if split else ""))
    gt_of: dict[str, Any] = {}  # record id -> ground truth given as an array, not a label PNG path
    if _is_cityscapes(dataset):
        names = list(CITYSCAPES_EVAL_CLASSES)
        # labelTrainIds PNGs where they exist, labelIds elsewhere (a label_space="trainId" parse);
        # a frame with only polygons.json or instanceIds gives label ids through its reader
        train_kind = [bool(r.mask_path) and r.mask_path.endswith("TrainIds.png") for r in records]
        gt_kind = "train_ids" if all(train_kind) else "label_ids"
        convert = any(train_kind) and gt_kind == "label_ids"
        for r, is_train in zip(records, train_kind):
            # read in the pool's workers, like the label PNGs (see _as_labels)
            if not r.mask_path:
                kind = r.extra["mask_kind"]
                gt_of[r.id] = partial(readers[kind], root / r.extra["semantic_source"], kind)
            elif is_train and convert:
                gt_of[r.id] = partial(_train_ids_as_label_ids, root / r.mask_path)
        gt_lut, pred_lut = cityscapes_luts(gt_kind, pred_ids)
        want_inst = iiou if iiou is not None else all(r.instance_mask_path for r in records)
        if want_inst and not all(r.instance_mask_path for r in records):
            raise FormatError(str(root), "iIoU needs instanceIds masks, but some records have none")
    else:
        ids = [c.id for c in dataset.categories]
        names = [c.name for c in dataset.categories]
        if background and 0 not in ids:
            ids, names = [0, *ids], ["background", *names]
        mapping = {v: i for i, v in enumerate(ids)}
        gt_lut = pred_lut = make_lut(mapping)
        want_inst = False
        if iiou:
            raise FormatError("--iiou", "iIoU is defined for Cityscapes instanceIds only")
    pairs = []
    for r in records:
        p = prediction_path(pred_dir, r)
        gt = gt_of[r.id] if r.id in gt_of else root / r.mask_path
        if want_inst:
            pairs.append((gt, p, root / r.instance_mask_path))
        else:
            pairs.append((gt, p))
    return evaluate_segmentation(pairs, len(names), class_names=names, gt_lut=gt_lut, pred_lut=pred_lut,
                                 ignore_index=ignore_index, instances=want_inst, workers=workers)
