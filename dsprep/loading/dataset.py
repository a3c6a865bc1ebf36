"""The map-style torch Dataset over dsprep records, for every task.

``ds.torch(task=...)`` gives a :class:`TorchDataset`. Samples are
``(image, target)``: ``image`` a ``uint8 (3, H, W)`` tensor, ``target`` a
dict of tensors plus ``image_id`` (the record id, a string); the keys per
task are in :mod:`dsprep.loading.targets` and ``docs/loading.md``.

One sample is read in named steps (:meth:`TorchDataset.__getitem__`):
open the image (an :class:`~dsprep.loading.decode.ImageSource`, the decode
seam: header only, pixels later at the output's scale), gather the task's inputs from the
:class:`~dsprep.loading.table.RecordTable`, run the augmentation once over
pixels, boxes, masks and keypoints, and build the target.

Random augmentation parameters come from a generator seeded by
``(seed, epoch, sample index)``: the same seed gives the same augmented epoch
whatever ``num_workers`` is. See ``docs/loading.md``.
"""
from __future__ import annotations

import logging
import operator
import random
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.utils.data as tud

from ..errors import FormatError, InvalidAnnotationError, UnknownNameError, check_choice
from . import transforms as T
from .decode import ImageSource
from .table import RecordTable
from .targets import Failed, MaskReader, Skipped, crop_plan, file_bytes, make_target, object_inputs, to_tensor_image
from .transforms import TASKS

__all__ = ["TASKS", "TorchDataset", "dataset_tasks", "default_flip_map", "infer_task"]

log = logging.getLogger(__name__)


class TorchDataset(tud.Dataset):
    """A map-style torch Dataset over a dsprep :class:`~dsprep.records.Dataset`.

    Args:
        dataset: the parsed records (``dataset.root`` + ``record.path`` locate images).
        task: ``classification``, ``crops``, ``detection``, ``keypoints`` or
            ``segmentation``; None picks from the records (image labels ->
            classification, keypoints -> keypoints, objects -> detection,
            mask paths -> segmentation).
        augment: ``"none"`` (default here: decode only), ``"default"``
            (the task's training preset), ``"eval"``, a
            :class:`dsprep.loading.transforms.Compose`, or any callable
            ``(image, target) -> (image, target)`` on the decoded tensors (run
            with torch, numpy and random seeded from (seed, epoch, index)).
        seed: seeds every sample's augmentation with ``(seed, epoch, index)``.
        on_error: ``"raise"``, or ``"skip"``: an unreadable image yields a
            :class:`Skipped` marker that the loader's collate drops and counts.
        masks: detection: also give instance masks (from each object's
            polygons/RLE, else from the record's instance mask PNG decoded
            by ``dataset.info["instance_mask_encoding"]``, else the box).
        mask_lut: segmentation: ``"auto"`` (``dataset.info["mask_lut"]`` if
            present; a Cityscapes dataset's masks to the label space it was
            parsed in, each by its kind, ``info["mask_luts"]``; else raw mask
            values), ``"train_id"`` (category id -> ``extra["trainId"]``, as
            Cityscapes labelIds -> trainIds, unmapped values become 255; a
            Cityscapes ``labelTrainIds`` mask is kept as train ids), a dict
            ``{value: class}`` (unmapped -> 255) or an array indexed by mask
            value; None for raw values.
        flip_map: keypoints: the permutation a horizontal flip applies; by
            default from the first category with ``extra["keypoints"]`` names
            (left/right swap), else COCO person's for 17 points.
        crop_context: crops: widen each box by this fraction on every side.
        crop_crowd: crops: include crowd boxes (default False).
        files: image and mask bytes by path, read instead of the files (the
            shards stream builds its samples this way, :mod:`dsprep.loading.shards`).
        **preset_options: passed to :func:`dsprep.loading.transforms.preset`
            (``size``, ``min_size``, ``max_size``, ``crop_size``, ``scale``,
            ``color_jitter``, ``iou_crop``, ``letterbox``, ``fill``).

    Example:
        >>> tds = ds.torch(task="detection", augment="default")  # doctest: +SKIP
        >>> image, target = tds[0]; target["boxes"].shape         # doctest: +SKIP
        torch.Size([3, 4])
    """

    def __init__(self, dataset: Any, task: str | None = None, augment: Any = "none", *, seed: int = 0,
                 on_error: str = "raise", masks: bool = False, mask_lut: Any = "auto",
                 flip_map: Sequence[int] | None = None, crop_context: float = 0.0, crop_crowd: bool = False,
                 files: Mapping[str, bytes] | None = None, **preset_options: Any):
        self.task = check_choice("task", task, TASKS) if task is not None else infer_task(dataset)
        self.on_error = check_choice("on_error mode", on_error, ("raise", "skip"))
        self.seed = int(seed)
        self.epoch = 0
        self.masks = bool(masks)
        self.files = files
        self.table = RecordTable(dataset, keypoints=self.task == "keypoints", segmentation=self.masks,
                                 image_labels=self.task == "classification",
                                 object_labels=self.task in ("crops", "detection", "keypoints"))
        if self.task == "classification":
            _check_image_labels(dataset, self.table)
        self.num_classes = self.table.num_classes
        self.class_names = [c.name for c in dataset.categories]
        self.augment_name, self.transform = _augmentation(self.task, augment, preset_options)
        self._native = isinstance(self.transform, T.Compose)
        self.mask_reader = MaskReader(dataset, self.table, mask_lut, semantic=self.task == "segmentation",
                                      files=files)
        self.flip_map = None
        if self.task == "keypoints":
            self.flip_map = np.asarray(flip_map if flip_map is not None else default_flip_map(dataset, self.table))
        self.crop_context = float(crop_context)
        self.crop_index = _crop_index(self.table, crop_crowd) if self.task == "crops" else None
        self.skipped: list[Skipped] = []  # filled when used in this process (num_workers=0)
        # Set by make_loader, whose collate and Loader pass a bad sample's error from a worker
        # process to the main one (see Failed); a plain DataLoader gets torch's re-raise.
        self.errors_as_samples = False

    # -- size, epochs, keys
    def __len__(self) -> int:
        return len(self.crop_index) if self.crop_index is not None else len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer indices (samplers of :func:`make_loader` yield their own)."""
        self.epoch = int(epoch)

    def key(self, index: int, epoch: int) -> tuple[int, int]:
        """What a sampler yields for ``index`` in ``epoch``: ``(epoch, index)``, which carries
        the epoch to the worker that seeds the sample's augmentation."""
        return int(epoch), int(index)

    def _split_key(self, key: Any) -> tuple[int, int]:
        """``(epoch, sample index)`` of a key: an ``(epoch, index)`` pair from the samplers,
        or a plain index read as a sequence does (negative from the end, IndexError at
        ``len``, so ``for s in tds`` ends) in the epoch of :meth:`set_epoch`."""
        n = len(self)
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"a sample key is an index or an (epoch, index) pair; found {key!r}")
            epoch, i = operator.index(key[0]), operator.index(key[1])
        else:
            epoch, i = self.epoch, operator.index(key)
            if i < 0:
                i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {key!r} out of range for {n} samples")
        return epoch, i

    def record_index(self, index: int) -> int:
        """The record a sample index reads (differs from it for ``crops``)."""
        return int(self.crop_index[index, 0]) if self.crop_index is not None else int(index)

    def aspect_groups(self) -> np.ndarray:
        ratio_groups = self.table.aspect_groups()
        return ratio_groups[self.crop_index[:, 0]] if self.crop_index is not None else ratio_groups

    # -- samples
    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, i = self._split_key(key)
        return self.sample(i, epoch)

    def sample(self, i: int, epoch: int, *, seed_index: int | None = None) -> Any:
        """Sample ``i`` in ``epoch``: ``(image, target)``, or a :class:`Skipped` (``on_error="skip"``).

        ``seed_index`` (default ``i``) is the index its augmentation is seeded
        with: the shards stream builds a few samples at a time and seeds each by its
        index in the split, so that it is augmented as the file loader would.
        """
        r = self.record_index(i)
        s = i if seed_index is None else int(seed_index)
        try:
            return self._load(i, r, epoch, s)
        except FormatError as err:
            if self.on_error != "skip":
                if self.errors_as_samples and tud.get_worker_info() is not None:
                    return Failed(err)  # the Loader raises it in the main process, unchanged
                raise
            skipped = Skipped(s, self.table.ids[r] or "", str(err))
            self.skipped.append(skipped)
            log.debug("skipping sample %d: %s", s, err)
            return skipped

    def _load(self, i: int, r: int, epoch: int, s: int) -> tuple[torch.Tensor, dict]:
        """Sample ``i`` (record ``r``, seeded as sample ``s``): open, gather inputs, augment, build the target."""
        path = self.table.path(r)
        src = self._open_checked(path, r)
        w, h = src.size
        try:
            sample, plan = self._inputs(i, r, src, path)
        except BaseException:
            src.close()  # the file stays open until decoded; a bad mask or box must not leak it
            raise
        out = self._augment(sample, plan, epoch, s)
        image = to_tensor_image(out["image"])
        j = int(self.crop_index[i, 1]) if self.crop_index is not None else None
        target = make_target(self.task, self.table, r, j, out, (h, w), image)
        if not self._native and self.transform is not None and self.augment_name == "custom":
            image, target = self._call_user(self.transform, image, target, epoch, s)
        return image, target

    def _open_checked(self, path: str, r: int) -> ImageSource:
        """The image, opened; refused when its size is not the one the annotation gives
        (boxes and masks would not fit its pixels; classification needs no size)."""
        src = ImageSource(path, file_bytes(self.files, path))  # the decode seam (see dsprep.loading.decode)
        w, h = src.size
        rw, rh = int(self.table.width[r]), int(self.table.height[r])
        if rw > 0 and rh > 0 and (rw, rh) != (w, h) and self.task != "classification":
            src.close()
            raise InvalidAnnotationError(path, f"the annotation gives size {rw}x{rh}, the image is {w}x{h}; "
                                               f"boxes and masks would not fit the pixels")
        return src

    def _inputs(self, i: int, r: int, src: ImageSource, path: str) -> tuple[dict, T.Plan | None]:
        """The task's inputs of record ``r`` for the transforms, and a fixed plan (crops) or None."""
        w, h = src.size
        sample: dict[str, Any] = {"image": src}
        objs = self.table.objects(r)
        if self.task in ("detection", "keypoints"):
            sample.update(object_inputs(self.table, objs, keypoints=self.task == "keypoints",
                                        flip_map=self.flip_map))
            if self.masks:
                sample["masks"] = self.mask_reader.instances(r, objs, w, h, path)
        elif self.task == "segmentation":
            sample["mask"] = self.mask_reader.semantic(r, w, h)
        elif self.task == "crops":
            return sample, crop_plan(self.table, objs, int(self.crop_index[i, 1]), w, h, self.crop_context, path)
        return sample, None

    def _augment(self, sample: dict, plan: T.Plan | None, epoch: int, i: int) -> dict:
        """Run the dsprep augmentation (seeded by ``(seed, epoch, i)``), or render the fixed plan."""
        if self._native:
            return self.transform(sample, sample_rng(self.seed, epoch, i), plan)
        w, h = sample["image"].size
        return T.render(sample, plan if plan is not None else T.Plan.identity(w, h))

    def _call_user(self, fn: Callable, image: torch.Tensor, target: dict, epoch: int, i: int) -> Any:
        seed = int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0])
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                np.random.seed(seed)
                random.seed(seed)
                return fn(image, target)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


_RNG = threading.local()  # one Philox generator per thread, re-keyed for every sample


def sample_rng(seed: int, epoch: int, i: int) -> np.random.Generator:
    """The generator sample ``i`` of ``epoch`` draws its augmentation from.

    Philox is counter-based: a distinct key ``(seed, epoch << 32 | i)`` gives an
    independent stream with no seed hashing (SeedSequence would cost 2.5x as
    much). Building a Generator costs more than the draws of a sample, so each
    thread keeps one and re-keys it: it is set to the state a fresh
    ``Philox(key=...)`` has (counter 0, nothing buffered), so it draws the very
    same stream. It is valid until the next call in the same thread.
    """
    cached = getattr(_RNG, "gen", None)
    if cached is None:
        bits = np.random.Philox(key=[0, 0])
        cached = _RNG.gen = (np.random.Generator(bits), bits, bits.state)
    gen, bits, fresh = cached  # fresh: a new generator's state, only its key ever changes
    fresh["state"]["key"][:] = (seed % 2**64, ((epoch % 2**32) << 32) | (i % 2**32))
    bits.state = fresh
    return gen


def _augmentation(task: str, augment: Any, preset_options: Mapping[str, Any]) -> tuple[str, Any]:
    """``augment`` -> (its name: a preset's, or ``"custom"``; the transform to run)."""
    if "transform" in preset_options:
        raise TypeError("transform= is not an option: pass the augmentation as augment= (a preset name, "
                        "a dsprep.loading.transforms.Compose or a callable)")
    if augment is None:
        augment = "none"
    if isinstance(augment, str):
        return augment, T.preset(task, augment, **preset_options)
    if preset_options:
        raise TypeError(f"options {sorted(preset_options)} only apply to the named augment presets")
    return "custom", augment


def _crop_index(table: RecordTable, crop_crowd: bool) -> np.ndarray:
    """``(samples, 2)``: per crop sample, its record and the object's index in that record."""
    keep = np.ones(len(table.labels), bool) if crop_crowd else ~table.iscrowd
    obj = np.flatnonzero(keep)
    rec = np.searchsorted(table.obj_start, obj, side="right") - 1
    return np.stack([rec, obj - table.obj_start[rec]], axis=1).astype(np.int64)


def _check_image_labels(dataset: Any, table: RecordTable) -> None:
    """Classification needs image labels: none at all is refused, naming the tasks the records
    do support; images without one (label -1, ignored by ``cross_entropy(ignore_index=-1)``)
    are counted in a warning."""
    missing = int((table.label < 0).sum())
    if missing and missing == len(table):
        other = [t for t in dataset_tasks(dataset) if t != "classification"]
        raise UnknownNameError(
            f"task 'classification' needs image-level labels (Record.label); none of the {missing} records has "
            f"one" + (f"; they support task={' | '.join(map(repr, other))}" if other else ""))
    if missing:
        first = table.ids[int(np.flatnonzero(table.label < 0)[0])]
        log.warning("%d of %d records have no image label (first: %s): their target label is -1", missing,
                    len(table), first)


def dataset_tasks(dataset: Any) -> list[str]:
    """The tasks the records hold annotations for, in :data:`TASKS` order: image labels ->
    classification; objects -> crops and detection; keypoints -> keypoints; mask paths (or
    label maps a parser draws from another file: Cityscapes polygons.json) -> segmentation."""
    instances = dataset.column("instances")
    has = {"classification": any(label is not None for label in dataset.column("label")),
           "keypoints": any(inst.keypoints is not None and len(inst) for inst in instances),
           "segmentation": any(dataset.column("mask_path")) or bool(
               dataset.info.get("mask_readers") and any(e.get("semantic_source") for e in dataset.column("extra")))}
    has["crops"] = has["detection"] = any(map(len, instances))
    return [t for t in TASKS if has[t]]


def infer_task(dataset: Any) -> str:
    """The task the records are annotated for: image labels -> classification, keypoints ->
    keypoints, objects -> detection, mask paths (or semantic sources) -> segmentation."""
    tasks = dataset_tasks(dataset)
    for task in ("classification", "keypoints", "detection", "segmentation"):
        if task in tasks:
            return task
    raise ValueError("cannot tell the task from the records (no image labels, objects or mask paths); "
                     f"pass task= one of {', '.join(TASKS)}")


def default_flip_map(dataset: Any, table: RecordTable) -> np.ndarray:
    """The keypoint flip map: from the first category's keypoint names, else COCO person's (17 points)."""
    for c in dataset.categories:
        names = c.extra.get("keypoints") if isinstance(c.extra, Mapping) else None
        if names:
            return T.flip_map_from_names(names)
    k = table.keypoints.shape[1] if table.keypoints is not None else 0
    if k == 17:
        return np.asarray(T.COCO_PERSON_FLIP_MAP)
    return np.arange(k)
