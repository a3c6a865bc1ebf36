"""``dsprep.load``: the known datasets, where they are looked for, and one-line loading.

A read-only table (:data:`KNOWN`) says, for each dataset name, which format
reads it, its splits and tasks, the sub-folders a usable copy has, and the
official download page. :func:`load` finds the root, checks those sub-folders
and hands over to the format's ``parse``. Nothing is ever downloaded: a
missing dataset raises :class:`~dsprep.errors.DatasetNotFoundError` naming
every place looked at and the download page.

Root resolution, first hit wins:

1. the ``root=`` argument;
2. ``$DSPREP_DATA/<name>``;
3. ``~/datasets/<name>``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ._shardio import is_url
from .errors import DatasetNotFoundError, UnknownNameError, check_choice
from .formats import get_format
from .records import Dataset

__all__ = ["KNOWN", "KnownDataset", "candidate_roots", "load"]

ENV_VAR = "DSPREP_DATA"


@dataclass(frozen=True)
class KnownDataset:
    """One entry of the table of known datasets.

    Attributes:
        name: the name :func:`load` takes (``"coco"``).
        format: the format that parses it (a task may override, see ``task_formats``).
        splits: valid ``split`` values.
        tasks: valid ``task`` values (the first is the default); empty if none.
        years: valid ``year`` values (the first is the default); empty if none.
        url: the official download page.
        layout: one line saying what the root is.
        expected: ``(split, task, year, options) -> [alternatives]``, each alternative a
            list of paths relative to the root that must all exist.
        options: ``(split, task, year) -> (format split, parse options)``.
        task_formats: task -> format name where a task has its own format.
        subdir: ``(root, year) -> root`` to descend into (VOC's ``VOCdevkit/VOC2012``);
            ``year`` is None unless the caller asked for one.
        check: ``(dataset, root) -> problem or None`` after parsing, for partial
            copies that only parsing reveals (ImageNet's flat val without labels).
        post: ``(dataset, split, task) -> dataset`` after parsing, where a task
            selects its own split lists (VOC segmentation: ``ImageSets/Segmentation``).
        split_aliases: other names of a split, as the dataset's own files spell it
            (COCO's ``val2017`` for ``val``).
    """

    name: str
    format: str
    splits: tuple[str, ...]
    tasks: tuple[str, ...]
    years: tuple[str, ...]
    url: str
    layout: str
    expected: Callable[[str | None, str | None, str | None], list[list[str]]]
    options: Callable[[str | None, str | None, str | None], tuple[str | None, dict[str, Any]]]
    task_formats: Mapping[str, str] = field(default_factory=dict)
    subdir: Callable[[Path, str | None], Path] | None = None
    check: Callable[[Dataset, Path], str | None] | None = None
    post: Callable[[Dataset, str | None, str | None], Dataset] | None = None
    split_aliases: Mapping[str, str] = field(default_factory=dict)

    def format_for(self, task: str | None) -> str:
        return self.task_formats.get(task or "", self.format)


# Each ``expected`` function returns alternatives; with no split, any one split present will do.
# --------------------------------------------------------------------------- imagenet
def _imagenet_expected(split, task, year, options):
    splits = [split] if split else ["train", "val"]
    return [[s] for s in splits] + [[f"ILSVRC/Data/CLS-LOC/{s}"] for s in splits]


def _imagenet_options(split, task, year):
    return split, {"boxes": task == "localization"}


def _imagenet_check(ds: Dataset, base: Path) -> str | None:
    """A flat val folder without its labels is a partial copy, not an unlabeled dataset."""
    unlabeled = sum(1 for label, split in zip(ds.column("label"), ds.column("split"))
                    if label is None and split in ("train", "val"))
    if not unlabeled:
        return None
    from .formats.imagenet import GROUND_TRUTH_FILE, _search_dirs

    places = ", ".join(str(d) for d in _search_dirs(base))
    return (f"{unlabeled} train/val image(s) have no label: a flat val/ needs "
            f"{GROUND_TRUTH_FILE} with meta.mat or map_clsloc.txt (devkit), or LOC_val_solution.csv "
            f"with LOC_synset_mapping.txt (Kaggle), in one of {places}")


# --------------------------------------------------------------------------- coco
_COCO_TASK_FILE = {"instances": "instances", "keypoints": "person_keypoints", "captions": "captions",
                   "panoptic": "panoptic"}


def _coco_expected(split, task, year, options):
    stem = _COCO_TASK_FILE[task or "instances"]
    out = []
    for s in ([split] if split else ["train", "val"]):
        for images in (f"{s}2017", f"images/{s}2017"):  # both trees are common
            need = [f"annotations/{stem}_{s}2017.json", images]
            if task == "panoptic":
                need.append(f"annotations/panoptic_{s}2017")
            out.append(need)
    return out


def _coco_options(split, task, year):
    fsplit = f"{split}2017" if split else None
    if task == "panoptic":
        return fsplit, {}
    return fsplit, {"task": _COCO_TASK_FILE[task or "instances"]}


# --------------------------------------------------------------------------- voc
def _voc_expected(split, task, year, options):
    if task == "segmentation":
        need, lists = ["JPEGImages", "SegmentationClass", "SegmentationObject"], "ImageSets/Segmentation"
    else:
        need, lists = ["Annotations", "JPEGImages"], "ImageSets/Main"
    return [need + [f"{lists}/{split}.txt" if split else lists]]


def _voc_options(split, task, year):
    # Segmentation splits are ImageSets/Segmentation's lists, not Main's (VOC2012 val:
    # 1,449 images, not 5,823): parse every image, then keep the Segmentation list.
    if task == "segmentation":
        return None, {"segmentation": True}
    return split, {"segmentation": False}


def _voc_segmentation_splits(ds: Dataset, split: str | None, task: str | None) -> Dataset:
    """For ``task="segmentation"``: ``ds.splits`` become the ``ImageSets/Segmentation`` lists
    (images with masks only)."""
    if task != "segmentation":
        return ds
    seg = {k: list(v) for k, v in (ds.info.get("voc_segmentation_splits") or {}).items()}
    by_id = ds.record_by_id()
    seg = {k: [i for i in v if i in by_id and by_id[i].mask_path] for k, v in seg.items()}
    if split is not None:
        check_choice("voc segmentation split", split, seg)
        seg = {split: seg[split]}
    keep = {i for v in seg.values() for i in v}
    recs = [r.replace(split=split) if split else r for r in ds.records if r.id in keep]
    return Dataset(ds.categories, recs, splits=seg, info=ds.info, root=ds.root, format=ds.format)


def _voc_subdir(root: Path, year: str | None) -> Path:
    """Accept the ``VOCdevkit`` folder, the ``VOC20XX`` folder, or a folder holding ``VOCdevkit``.

    ``year`` is None when not asked for: 2012 below a devkit folder, or whichever
    ``VOC20XX`` folder ``root`` is. An asked year must be the year of that folder.
    """
    want = f"VOC{year or '2012'}"
    for cand in (root / want, root / "VOCdevkit" / want):
        if cand.is_dir():
            return cand
    if year is not None and re.fullmatch(r"VOC\d{4}", root.name) and root.name != want:
        raise DatasetNotFoundError(f"{root} is the {root.name} folder, but year={year!r} was asked; pass "
                                   f"year={root.name[3:]!r}, or the VOCdevkit folder holding {want}")
    return root


# --------------------------------------------------------------------------- cityscapes
def _cityscapes_annotations(split, options) -> str:
    """gtFine, unless asked for or the split is ``train_extra`` (which only gtCoarse labels)."""
    return options.get("annotations") or ("gtCoarse" if split == "train_extra" else "gtFine")


def _cityscapes_expected(split, task, year, options):
    ann = _cityscapes_annotations(split, options)
    return [[f"leftImg8bit/{s}", f"{ann}/{s}"] for s in ([split] if split else ["train", "val"])]


def _cityscapes_options(split, task, year):
    out = {"instances": {"semantic": "none", "instance": "things", "panoptic": "panoptic"}[task or "semantic"]}
    if split == "train_extra":
        out["annotations"] = "gtCoarse"
    return split, out


def _cityscapes_check(ds: Dataset, base: Path) -> str | None:
    """Images without labels are a partial copy (gtFine not unpacked, or another split's)."""
    bare = [r.id for r in ds if not (r.mask_path or r.instance_mask_path or r.extra.get("polygons_path"))]
    if not bare:
        return None
    ann = ds.info.get("annotations", "gtFine")
    return f"{len(bare)} image(s) have no {ann} labels (e.g. {bare[0]}): unpack {ann} beside leftImg8bit"


KNOWN: Mapping[str, KnownDataset] = MappingProxyType({
    "imagenet": KnownDataset(
        name="imagenet", format="imagenet", splits=("train", "val", "test"),
        tasks=("classification", "localization"), years=(),
        url="https://image-net.org/download.php (ILSVRC2012; or Kaggle's "
            "https://www.kaggle.com/c/imagenet-object-localization-challenge)",
        layout="the folder holding train/ and val/ (ILSVRC2012), or Kaggle's folder holding ILSVRC/",
        expected=_imagenet_expected, options=_imagenet_options, check=_imagenet_check),
    "coco": KnownDataset(
        name="coco", format="coco", splits=("train", "val"),
        tasks=("instances", "keypoints", "captions", "panoptic"), years=(),
        url="https://cocodataset.org/#download (2017 images and annotations)",
        layout="the folder holding annotations/ and train2017/, val2017/ (or images/train2017/...)",
        expected=_coco_expected, options=_coco_options, task_formats={"panoptic": "coco-panoptic"},
        split_aliases={"train2017": "train", "val2017": "val"}),
    "voc": KnownDataset(
        name="voc", format="voc", splits=("train", "val", "trainval", "test"),
        tasks=("detection", "segmentation"), years=("2012", "2007"),
        url="http://host.robots.ox.ac.uk/pascal/VOC/ (VOC2007, VOC2012)",
        layout="the devkit's VOCdevkit folder, or its VOC2007/VOC2012 folder",
        expected=_voc_expected, options=_voc_options, subdir=_voc_subdir,
        post=_voc_segmentation_splits),
    "cityscapes": KnownDataset(
        name="cityscapes", format="cityscapes", splits=("train", "val", "test", "train_extra"),
        tasks=("semantic", "instance", "panoptic"), years=(),
        url="https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, "
            "gtFine_trainvaltest.zip; gtCoarse.zip and leftImg8bit_trainextra.zip for train_extra; registration required)",
        layout="the folder holding leftImg8bit/ and gtFine/ (or gtCoarse/)",
        expected=_cityscapes_expected, options=_cityscapes_options, check=_cityscapes_check),
})


def _images_missing(ds: Dataset) -> str | None:
    """Annotations without their images (an empty ``val2017/`` or ``JPEGImages/``) are a
    partial copy: three records (first, middle, last) are looked at, none found -> problem."""
    paths = ds.column("path")
    root = Path(ds.root) if ds.root is not None else Path(".")
    sample = [paths[0], paths[len(paths) // 2], paths[-1]]
    if any((root / p).is_file() for p in sample):
        return None
    return f"the annotations are there but not the images (e.g. {root / sample[0]} does not exist)"


def candidate_roots(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The places :func:`load` looks at for ``name``, in order.

    Example:
        >>> candidate_roots("voc", root="/data/VOCdevkit")
        [PosixPath('/data/VOCdevkit')]
    """
    if root is not None:
        return [Path(root).expanduser()]
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env).expanduser() / name)
    out.append(Path.home() / "datasets" / name)
    return out


def _missing(base: Path, alternatives: list[list[str]]) -> list[str] | None:
    """None when one alternative is complete, else the missing paths of the closest one."""
    best = None
    for need in alternatives:
        missing = [p for p in need if not (base / p).exists()]
        if not missing:
            return None
        if best is None or len(missing) < len(best):
            best = missing
    return best or []


def load(name: str | None = None, split: str | None = None, *, root: str | os.PathLike | None = None,
         format: str | None = None, task: str | None = None, year: str | int | None = None,
         **options: Any) -> Dataset:
    """Load a known dataset by name, or any folder in a known format.

    Args:
        name: ``"imagenet"``, ``"coco"``, ``"voc"`` or ``"cityscapes"``;
            None with ``format=`` and ``root=`` to load any folder.
        split: one split (see :data:`KNOWN`); default every split found.
        root: the dataset root; default ``$DSPREP_DATA/<name>``, then
            ``~/datasets/<name>``. With ``format="shards"``, a URL too
            (``http(s)://``, ``s3://``, ``file://``; needs ``dsprep[remote]``).
        format: the format of ``root`` when no ``name`` is given.
        task: ``imagenet``: classification | localization (LOC boxes);
            ``coco``: instances | keypoints | captions | panoptic;
            ``voc``: detection | segmentation; ``cityscapes``: semantic |
            instance | panoptic. Default: the first.
        year: ``voc`` only: ``"2012"`` (default) or ``"2007"``.
        **options: passed to the format's ``parse`` (``on_error``, ``workers``...).

    Returns:
        The parsed :class:`~dsprep.records.Dataset`.

    Raises:
        UnknownNameError: unknown name, split, task, year or format (lists
            the valid ones and suggests the nearest).
        DatasetNotFoundError: no complete copy found; the message lists every
            place looked at, the sub-folders expected there and the download page.

    Example:
        >>> ds = dsprep.load("cityscapes", split="val")  # doctest: +SKIP
        >>> ds = dsprep.load(format="voc", root="VOCdevkit/VOC2007", split="test")  # doctest: +SKIP
        >>> ds = dsprep.load(format="shards", root="https://host/imagenet-shards", split="train")  # doctest: +SKIP
    """
    if name is None:
        if format is None or root is None:
            raise UnknownNameError(f"load() needs a dataset name ({', '.join(KNOWN)}), "
                                   f"or format= and root= for any folder")
        fmt = get_format(format)
        if task is not None:
            options["task"] = task
        if is_url(root):  # shards on a server or object store: the format reads it (fsspec)
            return fmt.parse(str(root), split=split, **options)
        base = Path(root).expanduser()
        if not base.exists():
            raise DatasetNotFoundError(f"{base}: no such file or directory (expected a {format} dataset)")
        return fmt.parse(base, split=split, **options)

    check_choice("dataset", name, KNOWN)
    entry = KNOWN[name]
    if split is not None:
        split = entry.split_aliases.get(split, split)
        check_choice(f"{name} split", split, entry.splits)
    if task is not None:
        if not entry.tasks:
            raise UnknownNameError(f"{name} has no tasks; drop task={task!r}")
        check_choice(f"{name} task", task, entry.tasks)
    else:
        task = entry.tasks[0] if entry.tasks else None
    if year is not None:
        if not entry.years:
            raise UnknownNameError(f"{name} has no years; drop year={year!r}")
        year = check_choice(f"{name} year", str(year), entry.years)
    asked_year = year
    if year is None and entry.years:
        year = entry.years[0]
    fmt = get_format(format or entry.format_for(task))

    alternatives = entry.expected(split, task, year, options)
    looked: list[str] = []
    for cand in candidate_roots(name, root):
        base = entry.subdir(cand, asked_year) if entry.subdir else cand
        if not cand.is_dir():
            looked.append(f"  {cand}: " + ("is a file, not a folder" if cand.exists() else "does not exist"))
            continue
        missing = _missing(base, alternatives)
        if missing is None:
            fsplit, parse_options = entry.options(split, task, year)
            parse_options.update(options)
            ds = fmt.parse(base, split=fsplit, **parse_options)
            if entry.post:
                ds = entry.post(ds, split, task)
            problem = entry.check(ds, base) if entry.check else None
            if problem is None and not len(ds):  # the folders are there, but empty
                problem = "the expected folders hold no images"
            if problem is None:
                problem = _images_missing(ds)
            if problem is None:
                return ds
            looked.append(f"  {cand}: {problem}")
            continue
        where = f"{cand}" + (f" (as {base})" if base != cand else "")
        looked.append(f"  {where}: missing {', '.join(missing)}")
    what = " or ".join("{" + ", ".join(a) + "}" for a in alternatives)
    hint = "" if root is not None else f" (pass root=, or set ${ENV_VAR} to the folder holding {name}/)"
    raise DatasetNotFoundError(
        f"{name}" + (f" {year}" if year else "") + (f" split {split!r}" if split else "")
        + (f" task {task!r}" if task else "") + f" not found{hint}. Looked at:\n" + "\n".join(looked)
        + f"\nExpected {entry.layout}, with: {what}."
        + f"\nNothing is downloaded; get it from {entry.url}.")
