"""COCO keypoint AP pieces: the OKS sigmas, the ground truth's keypoint fields, result checks.

The AP itself is pycocotools' ``COCOeval(..., "keypoints")``, run by
:func:`dsprep.eval.detection.coco_evaluate` with ``iou_type="keypoints"``;
this module supplies what it needs:

- the per-keypoint OKS sigmas (:func:`keypoint_sigmas`): an explicit
  ``sigmas`` argument; else a ``sigmas`` field on the categories that have
  keypoints (one list of K numbers, as ``COCOeval.params.kpt_oks_sigmas``);
  else, for K = 17, COCO's own (``pycocotools.cocoeval.Params``' defaults,
  taken from pycocotools itself); else an error that says how to give them;
- ``keypoints`` (flat ``x, y, v`` triples) and ``num_keypoints`` on every
  ground-truth annotation (:func:`keypoint_fields`): ``COCOeval._prepare``
  ignores an object with ``num_keypoints == 0``;
- a check that every result has K triples (``computeOks`` would otherwise
  fail on a shape mismatch deep inside pycocotools).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FormatError
from .._cocojson import keypoint_fields  # the COCO writer's, one builder of ground truth (re-exported)

__all__ = ["KEYPOINT_STAT_NAMES", "check_keypoint_results", "coco_default_sigmas", "keypoint_count",
           "keypoint_fields", "keypoint_sigmas"]

# The 10 numbers COCOeval.summarize() prints for keypoints, in its order.
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def coco_default_sigmas() -> np.ndarray:
    """COCO's 17 person-keypoint sigmas, read from pycocotools' ``Params`` (not copied)."""
    from pycocotools.cocoeval import Params

    return np.asarray(Params(iouType="keypoints").kpt_oks_sigmas, np.float64)


def keypoint_count(records: Sequence[Any]) -> int:
    """K: the most keypoints any object of ``records`` has (0: none has keypoints)."""
    return max((r.instances.keypoints.shape[1] for r in records if r.instances.keypoints is not None),
               default=0)


def keypoint_sigmas(categories: Sequence[Any], k: int,
                    sigmas: Sequence[float] | None = None) -> tuple[np.ndarray, str]:
    """The OKS sigmas for ``k`` keypoints and where they came from.

    Raises:
        FormatError: a given list or category field is not ``k`` positive
            numbers; two categories' fields differ (COCOeval has one list);
            no field, ``sigmas=None`` and ``k != 17``.

    Example:
        >>> keypoint_sigmas([], 17)[1]
        'COCO defaults (pycocotools Params.kpt_oks_sigmas)'
    """
    if sigmas is not None:
        return _checked(sigmas, k, "sigmas"), "given"
    fields = {c.name: c.extra["sigmas"] for c in categories
              if isinstance(getattr(c, "extra", None), Mapping) and "sigmas" in c.extra}
    if fields:
        arrays = {name: _checked(v, k, f"category {name!r}: field 'sigmas'") for name, v in fields.items()}
        first_name, first = next(iter(arrays.items()))
        for name, arr in arrays.items():
            if not np.array_equal(arr, first):
                raise FormatError(f"category {name!r}: field 'sigmas'",
                                  f"COCOeval scores every category with one sigma list; found {arr.tolist()} "
                                  f"here and {first.tolist()} on {first_name!r}; evaluate them separately or "
                                  f"pass one list (sigmas= / --kpt-sigmas)")
        return first, f"category field 'sigmas' ({', '.join(arrays)})"
    default = coco_default_sigmas()
    if k != len(default):
        raise FormatError("keypoints", f"the objects have {k} keypoints and no category has a 'sigmas' field; "
                                       f"COCO's default sigmas are for its {len(default)} person keypoints; "
                                       f"give the category a 'sigmas' list of {k} numbers or pass "
                                       f"sigmas= (CLI --kpt-sigmas)")
    return default, "COCO defaults (pycocotools Params.kpt_oks_sigmas)"


def _checked(values: Any, k: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FormatError(where, f"expected a list of {k} numbers, found {values!r}"[:300]) from None
    if arr.size != k or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise FormatError(where, f"expected {k} positive numbers (one per keypoint), found "
                                 f"{arr.size}: {arr.tolist()[:20]}")
    return arr


def check_keypoint_results(preds: Sequence[Mapping[str, Any]], k: int, where: str) -> None:
    """Every result has ``3k`` numbers in ``keypoints``.

    Raises:
        FormatError: naming the first result that does not, and how many do not.
    """
    bad = [i for i, d in enumerate(preds)
           if not isinstance(d["keypoints"], (list, tuple)) or len(d["keypoints"]) != 3 * k]
    if bad:
        d = preds[bad[0]]["keypoints"]
        found = f"{len(d)} numbers" if isinstance(d, (list, tuple)) else type(d).__name__
        raise FormatError(f"{where}: detection {bad[0]}",
                          f"keypoints must be {k} (x, y, v) triples ({3 * k} numbers) as in the ground truth; "
                          f"found {found} ({len(bad)} such detection(s))")
