"""Which records can be scored: not those whose labels are placeholders.

The Cityscapes test split ships *dummy* ground truth (only the ego vehicle and
the rectification border are labelled; the benchmark server holds the real
labels): its parser flags those records ``extra["dummy_labels"]`` and lists the
split in ``Dataset.info["dummy_label_splits"]``. Scoring against them gives
meaningless numbers (mIoU near 0, or NaN), so they are left out.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import FormatError

log = logging.getLogger(__name__)


def has_dummy_labels(record: Any) -> bool:
    """True for a record whose labels are placeholders (``extra["dummy_labels"]``)."""
    return bool((record.extra or {}).get("dummy_labels"))


def scored_records(dataset: Any, split: str | None = None) -> list:
    """The records of ``split`` (every split when None) whose labels can be scored.

    Records with dummy labels are left out with a warning that counts them.

    Raises:
        FormatError: every selected record has dummy labels (``--split test`` on
            Cityscapes): there is nothing to score against.

    Example:
        >>> records = scored_records(dsprep.parse("cityscapes", "cs/"))  # doctest: +SKIP
    """
    records = list(dataset.subset(split).records if split is not None else dataset.records)
    dummy = [r for r in records if has_dummy_labels(r)]
    if not dummy:
        return records
    kept = [r for r in records if not has_dummy_labels(r)]
    splits = "/".join(sorted({str(r.split) for r in dummy}))
    where = str(dataset.root) if dataset.root is not None else "dataset"
    if not kept:
        raise FormatError(where, f"the {splits} split's labels are dummies ({len(dummy)} image(s) flagged "
                                 f"extra['dummy_labels']; Cityscapes' real test labels are held by its "
                                 f"benchmark server): nothing to score against; pick a labelled split "
                                 f"(--split val)")
    log.warning("%s: left out %d image(s) of split %s whose labels are dummies (extra['dummy_labels']); "
                "scoring the other %d", where, len(dummy), splits, len(kept))
    return kept
