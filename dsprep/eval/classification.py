"""Classification metrics: top-1/top-k accuracy, mean per-class accuracy, confusion matrix,
per-class precision/recall/F1.

Predictions come as a CSV or JSON file (:func:`load_predictions`):

- CSV ``image_id,label``: one predicted class per image; ``label`` is a
  category source id or a category name.
- CSV ``image_id,score_0,...,score_{C-1}``: one score per class, column ``i``
  for ``dataset.categories[i]`` (the contiguous index, category order).
- JSON: a list of ``{"image_id", "label"}`` or ``{"image_id", "scores": [...]}``,
  or a mapping ``image_id -> label`` / ``image_id -> [scores]``.

``image_id`` names a record by its id (``train/n01440764/n01440764_10026``),
its image path, its ``source_id``, or its file stem when that is unique.

Conventions: precision of a class never predicted is 0 (as scikit-learn's
``zero_division=0``), F1 is 0 where precision + recall is 0; mean per-class
accuracy averages recall over classes present in the ground truth.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FormatError, MalformedFileError, MissingFileError
from ._labels import scored_records

__all__ = ["ClassificationResult", "classification_metrics", "evaluate_dataset", "load_predictions"]


@dataclass
class ClassificationResult:
    """Accuracy and per-class figures.

    Attributes:
        class_names: the C classes (category order).
        top1, top5: accuracies (top5 None without scores, or with fewer than 5 classes).
        mean_class_accuracy: mean of per-class recall over classes with ground truth.
        confusion: ``(C, C)`` counts, rows ground truth, columns top-1 prediction.
        precision, recall, f1, support: per class.
    """

    class_names: list[str]
    top1: float
    top5: float | None
    mean_class_accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        clean = (lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        return {"images": self.images, "top1": clean(self.top1), "top5": clean(self.top5),
                "mean_class_accuracy": clean(self.mean_class_accuracy),
                "per_class": {n: {"precision": clean(p), "recall": clean(r), "f1": clean(f), "support": int(s)}
                              for n, p, r, f, s in zip(self.class_names, self.precision.tolist(),
                                                       self.recall.tolist(), self.f1.tolist(),
                                                       self.support.tolist())},
                "confusion": self.confusion.tolist()}


def classification_metrics(y_true: Sequence[int] | np.ndarray, *, y_pred: Sequence[int] | np.ndarray | None = None,
                           scores: np.ndarray | None = None, num_classes: int | None = None,
                           class_names: Sequence[str] | None = None, k: int = 5) -> ClassificationResult:
    """Metrics from contiguous class indices.

    Args:
        y_true: ``(N,)`` true class indices ``0..C-1``.
        y_pred: ``(N,)`` predicted indices (or give ``scores``).
        scores: ``(N, C)`` scores; top-1 is the argmax (first index on ties),
            top-k counts the true class among the k highest.
        num_classes: C (default: from scores, names, or the largest index + 1).
        k: the "top-5" k.

    Example:
        >>> r = classification_metrics([0, 1, 1], y_pred=[0, 1, 0])
        >>> round(r.top1, 3), r.confusion.tolist()
        (0.667, [[1, 0], [1, 1]])
    """
    t = np.asarray(y_true, np.int64).ravel()
    if scores is not None:
        s = np.asarray(scores, np.float64)
        if s.ndim != 2 or s.shape[0] != t.size:
            raise FormatError("scores", f"expected shape ({t.size}, C), found {s.shape}")
        c = s.shape[1] if num_classes is None else num_classes
        p = np.argmax(s, axis=1)
    elif y_pred is not None:
        s = None
        p = np.asarray(y_pred, np.int64).ravel()
        if p.size != t.size:
            raise FormatError("predictions", f"{p.size} predictions for {t.size} images")
        c = num_classes
    else:
        raise FormatError("predictions", "give y_pred or scores")
    if c is None:
        c = len(class_names) if class_names is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    for what, a in (("true", t), ("predicted", p)):
        if a.size and (a.min() < 0 or a.max() >= c):
            raise FormatError("labels", f"{what} class indices must be in 0..{c - 1}, found {int(a.min())}..{int(a.max())}")
    n = t.size
    cm = np.bincount(t * c + p, minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(support > 0, f1, np.nan)
    top5 = None
    if s is not None and s.shape[1] >= k:
        topk = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top5 = float((topk == t[:, None]).any(axis=1).mean()) if n else float("nan")
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    return ClassificationResult(
        class_names=names, top1=float((p == t).mean()) if n else float("nan"), top5=top5,
        mean_class_accuracy=float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
        confusion=cm, precision=precision, recall=recall, f1=f1, support=support, images=n)


def load_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """Read a predictions CSV/JSON into ``{image_id: label (int | str) or scores (list[float])}``.

    Raises:
        MissingFileError, MalformedFileError: with the file and line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(str(path), "predictions file not found") from None
    text = raw.decode("utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        import json

        try:
            data = json.loads(text)
        except ValueError as err:
            raise MalformedFileError(str(path), f"not valid JSON ({err})") from None
        return _from_json(data, str(path))
    return _from_csv(text, str(path))


def _from_json(data: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        items = data.items()
        for k, v in items:
            out[str(k)] = v
        return out
    if not isinstance(data, list):
        raise MalformedFileError(where, f"expected a list or an object, found {type(data).__name__}")
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "image_id" not in d or not ("label" in d or "scores" in d):
            raise MalformedFileError(f"{where}: item {i}", "expected {\"image_id\", \"label\"} or "
                                                           "{\"image_id\", \"scores\"}")
        out[str(d["image_id"])] = d["scores"] if "scores" in d else d["label"]
    return out


def _from_csv(text: str, where: str) -> dict[str, Any]:
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise MalformedFileError(where, "empty predictions file")
    header = [c.strip() for c in rows[0]]
    if header and header[0] in ("image_id", "image", "id", "filename", "file_name", "path"):
        rows = rows[1:]
    else:
        header = []
    out: dict[str, Any] = {}
    width = None
    for n, r in enumerate(rows, start=2 if header else 1):
        r = [c.strip() for c in r]
        if width is None:
            width = len(r)
        if len(r) != width or len(r) < 2:
            raise MalformedFileError(f"{where}:{n}", f"expected {width or 2} columns (image_id,label or "
                                                     f"image_id,score_0..), found {len(r)}")
        if len(r) == 2:
            v = r[1]
            out[r[0]] = int(v) if _is_int_text(v) else v
        else:
            try:
                out[r[0]] = [float(x) for x in r[1:]]
            except ValueError:
                raise MalformedFileError(f"{where}:{n}", f"expected numeric scores, found {r[1:5]}") from None
    return out


def _is_int_text(v: str) -> bool:
    return v.lstrip("-").isdigit()


def evaluate_dataset(dataset: Any, predictions: str | os.PathLike | Mapping[str, Any], *,
                     split: str | None = None, k: int = 5) -> ClassificationResult:
    """Evaluate predictions against the records' image-level labels.

    Raises:
        FormatError: an image id is unknown, an image has no prediction, a
            label names no category, or score rows have the wrong length.
    """
    where = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions"
    preds = load_predictions(predictions) if isinstance(predictions, (str, os.PathLike)) else {
        str(k_): v for k_, v in predictions.items()}
    records = [r for r in scored_records(dataset, split) if r.label is not None]
    if not records:
        raise FormatError(str(dataset.root or "ground truth"), "no record has an image-level label")
    index = dataset.category_index()
    by_name = {c.name: index[c.id] for c in dataset.categories}
    names = [c.name for c in dataset.categories]
    c = len(names)
    keys: dict[str, int] = {}
    stems: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        for key in (r.id, r.path, None if r.source_id is None else str(r.source_id)):
            if key is not None:
                keys.setdefault(key, i)
        stems.setdefault(Path(r.path).stem, []).append(i)
    for stem, idx in stems.items():
        if len(idx) == 1:
            keys.setdefault(stem, idx[0])
    row_of = np.full(len(records), -1, np.int64)
    unknown = []
    for n, key in enumerate(preds):
        i = keys.get(key)
        if i is None:
            unknown.append(key)
        else:
            row_of[i] = n
    if unknown:
        raise FormatError(where, f"{len(unknown)} prediction(s) name images not in the ground truth: "
                                 f"{unknown[:5]}")
    missing = [records[i].id for i in np.flatnonzero(row_of < 0)]
    if missing:
        raise FormatError(where, f"{len(missing)} of {len(records)} images have no prediction, e.g. {missing[:5]}")
    values = list(preds.values())
    y_true = np.array([index[r.label] for r in records], np.int64)
    first = values[row_of[0]]
    if isinstance(first, list):
        bad = [i for i in row_of if not isinstance(values[i], list) or len(values[i]) != c]
        if bad:
            raise FormatError(where, f"expected {c} scores per image (one per category, in category order), "
                                     f"found {len(values[bad[0]]) if isinstance(values[bad[0]], list) else 'a label'}"
                                     f" for {list(preds)[bad[0]]!r}")
        scores = np.array([values[i] for i in row_of], np.float64)
        return classification_metrics(y_true, scores=scores, num_classes=c, class_names=names, k=k)
    y_pred = np.empty(len(records), np.int64)
    for j, i in enumerate(row_of):
        v = values[i]
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise FormatError(where, f"image {list(preds)[i]!r}: expected a label, found {v!r}")
        if isinstance(v, int) or (isinstance(v, str) and _is_int_text(v) and v not in by_name):
            cid = int(v)
            if cid not in index:
                raise FormatError(where, f"image {list(preds)[i]!r}: label {cid} is not a category id "
                                         f"(known: {sorted(index)[:10]}...)")
            y_pred[j] = index[cid]
        elif v in by_name:
            y_pred[j] = by_name[v]
        else:
            raise FormatError(where, f"image {list(preds)[i]!r}: label {v!r} is neither a category id nor a name")
    return classification_metrics(y_true, y_pred=y_pred, num_classes=c, class_names=names, k=k)
