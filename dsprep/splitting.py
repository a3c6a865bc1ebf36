"""Seeded N-way splits of a dataset's images, optionally stratified by class.

Pure functions over ids; numpy only (no torch).

Determinism: the ids are sorted (as strings) before shuffling and the shuffle
uses numpy's ``PCG64`` generator seeded with ``seed``, whose stream numpy
keeps stable across versions and platforms; nothing depends on Python's
salted ``hash()``, on file-system listing order, or on the input order. The
same ids, ratios and seed give the same split on any machine.

Counts: split ``s`` gets ``n * r_s`` images rounded by the largest-remainder
method (ties go to the split named first), so counts sum to ``n`` and each
is within 1 of its exact share.

Stratification: ids are grouped by a stratum key (the image label, or for
detection a class the image contains: see :func:`strata_for`), shuffled within
each group, laid end to end, and dealt to the splits by a quota sequence:
each next id goes to the split furthest behind its share. Totals are exactly
the unstratified counts, and every stratum of ``m`` images gets within 2 of
``m * r_s`` in each split.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from .errors import FormatError

__all__ = ["apply_split", "dummy_labelled", "parse_ratios", "split_counts", "split_ids", "strata_for"]


def parse_ratios(text: str | Mapping[str, float]) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` -> ``{"train": 0.8, "val": 0.1, "test": 0.1}``, checked.

    Ratios must be positive and sum to 1 (within 1e-6), or all be whole
    numbers taken as weights (``train=8,val=1,test=1``).

    Example:
        >>> parse_ratios("train=8,val=1,test=1")
        {'train': 0.8, 'val': 0.1, 'test': 0.1}
    """
    if isinstance(text, Mapping):
        pairs = [(str(k), v) for k, v in text.items()]
    else:
        pairs = []
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise FormatError("--ratios", f"expected NAME=RATIO pairs like train=0.8,val=0.2; found {part!r}")
            pairs.append((name.strip(), value.strip()))
    out: dict[str, float] = {}
    for name, value in pairs:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise FormatError("--ratios", f"{name}: expected a number, found {value!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise FormatError("--ratios", f"{name}: expected a positive ratio, found {value!r}")
        if name in out:
            raise FormatError("--ratios", f"split {name!r} is named twice")
        if name in (".", "..") or "/" in name or "\\" in name:
            raise FormatError("--ratios", f"split {name!r}: a split name becomes a file or folder name in OUT; "
                                          "expected a plain name such as train")
        out[name] = v
    if not out:
        raise FormatError("--ratios", "no split named; expected e.g. train=0.8,val=0.1,test=0.1")
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        if not all(float(v).is_integer() for v in out.values()):
            raise FormatError("--ratios", f"ratios sum to {total:g}; expected 1 (or whole-number weights "
                                          f"such as train=8,val=1,test=1)")
    return {k: v / total for k, v in out.items()}


def split_counts(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Images per split: ``n * ratio`` by the largest-remainder method (sums to ``n``).

    Example:
        >>> split_counts(10, {"train": 0.75, "val": 0.25})
        {'train': 8, 'val': 2}
    """
    names = list(ratios)
    total = sum(ratios.values())
    exact = [n * ratios[s] / total for s in names]
    counts = [math.floor(e) for e in exact]
    rest = n - sum(counts)
    # largest remainder first; ties to the split named first
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return dict(zip(names, counts))


def split_ids(ids: Sequence[str], ratios: Mapping[str, float] | str, seed: int, *,
              strata: Mapping[str, Hashable] | None = None) -> dict[str, list[str]]:
    """Assign each id to one split.

    Args:
        ids: the image ids (duplicates are counted once).
        ratios: split name -> ratio (see :func:`parse_ratios`).
        seed: any non-negative int.
        strata: optional id -> stratum key (ids absent from it, or mapped to
            None, form one stratum of their own).

    Returns:
        split name -> ids, each list in the order of ``ids``; the lists are
        disjoint and together cover ``ids``.

    Example:
        >>> parts = split_ids([f"img{i}" for i in range(10)], "train=0.8,val=0.2", seed=0)
        >>> {k: len(v) for k, v in parts.items()}
        {'train': 8, 'val': 2}
    """
    ratios = parse_ratios(ratios)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise FormatError("--seed", f"expected a non-negative integer, found {seed!r}")
    unique = list(dict.fromkeys(ids))
    n = len(unique)
    counts = split_counts(n, ratios)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    canonical = sorted(unique)
    if strata is None:
        order = [canonical[i] for i in rng.permutation(n)]
    else:
        groups: dict[str, list[str]] = {}
        for i in canonical:
            groups.setdefault(_stratum_key(strata.get(i)), []).append(i)
        order = []
        for key in sorted(groups):
            g = groups[key]
            order.extend(g[j] for j in rng.permutation(len(g)))
    names = list(counts)
    target = np.array([counts[s] for s in names], np.float64)
    given = np.zeros(len(names))
    assign: dict[str, str] = {}
    for t, i in enumerate(order, start=1):
        # the split furthest behind its share of the first t ids; ties to the one named first
        k = int(np.argmax(target * t / n - given))
        given[k] += 1
        assign[i] = names[k]
    out: dict[str, list[str]] = {s: [] for s in names}
    for i in unique:
        out[assign[i]].append(i)
    return out


def _stratum_key(v: Hashable | None) -> str:
    # Strings sort the same on every machine; repr keeps 1 and "1" apart.
    return "" if v is None else repr(v)


def strata_for(records: Sequence[Any], by: str = "auto") -> dict[str, Hashable]:
    """A stratum per record id.

    Args:
        by: ``label`` (image-level label, classification), ``rarest`` (for
            detection: the class present in the image that is present in the
            fewest images overall, so rare classes are spread over all
            splits; ties to the smaller category id), ``most_frequent`` (the
            class with the most objects in the image; ties to the smaller
            id), or ``auto`` (``label`` if any record has one, else ``rarest``).
            Images with neither form one stratum.
    """
    if by == "auto":
        by = "label" if any(r.label is not None for r in records) else "rarest"
    if by not in ("label", "rarest", "most_frequent"):
        raise FormatError("--stratify", f"expected label, rarest or most_frequent, found {by!r}")
    if by == "label":
        return {r.id: r.label for r in records}
    if by == "most_frequent":
        out = {}
        for r in records:
            labels = r.instances.labels.tolist()
            if labels:
                cnt = Counter(labels)
                out[r.id] = min(cnt, key=lambda c: (-cnt[c], c))
            else:
                out[r.id] = None
        return out
    images_with: Counter[int] = Counter()
    present = {}
    for r in records:
        cls = set(r.instances.labels.tolist())
        present[r.id] = cls
        images_with.update(cls)
    return {rid: (min(cls, key=lambda c: (images_with[c], c)) if cls else None) for rid, cls in present.items()}


def dummy_labelled(records: Sequence[Any]) -> list[str]:
    """Ids of records whose labels are placeholders, not ground truth (``extra["dummy_labels"]``).

    The Cityscapes ``test`` split's gt files are dummies (only ego vehicle and
    rectification border are real) [formats.md section 4]: dealt into new
    splits they would be re-read as real labels, so a re-split leaves them out.

    Example:
        >>> dummy_labelled(ds.records)  # doctest: +SKIP
        ['leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit', ...]
    """
    return [r.id for r in records if (r.extra or {}).get("dummy_labels")]


def apply_split(dataset: Any, assignment: Mapping[str, Sequence[str]]) -> Any:
    """A new Dataset whose records carry the new splits (each record once, in its original order).

    Example:
        >>> new = apply_split(ds, split_ids([r.id for r in ds], "train=0.8,val=0.2", 1))  # doctest: +SKIP
    """
    from .records import Dataset

    split_of = {i: s for s, ids in assignment.items() for i in ids}
    seen: set[str] = set()
    records = []
    for r in dataset.records:
        if r.id in seen or r.id not in split_of:
            continue
        seen.add(r.id)
        records.append(r.replace(split=split_of[r.id]))
    splits = {s: [i for i in ids if i in seen] for s, ids in assignment.items()}
    # The source's own split lists no longer apply: without this, a VOC writer would copy the
    # old ImageSets/Segmentation lists beside the new ImageSets/Main ones.
    info = {k: v for k, v in dataset.info.items() if k not in _SOURCE_SPLIT_KEYS}
    return Dataset(dataset.categories, records, splits=splits, info=info, root=dataset.root,
                   format=dataset.format)


# Dataset.info keys that describe the source's split lists (format-specific).
_SOURCE_SPLIT_KEYS = ("voc_segmentation_splits",)
