"""The DataLoader: :func:`make_loader` puts a torch dataset, its sampler, collate and workers together.

``ds.loader(...)`` calls it. A :class:`Loader` is a ``DataLoader`` that
counts skipped samples (``on_error="skip"``) and advances the epoch by
itself; its workers are seeded by :func:`worker_init_fn`.
"""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.utils.data as tud

from .collate import Collate, unpack_targets
from .dataset import TorchDataset
from .samplers import EpochSampler, GroupedBatchSampler, dist_world
from .targets import Skipped

__all__ = ["Loader", "make_loader", "worker_init_fn"]

log = logging.getLogger(__name__)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy's and ``random``'s global generators from the worker's torch seed.

    Recent torch already seeds ``random`` and numpy in its worker loop; this
    makes it explicit and independent of the torch version (forked workers
    would otherwise share one numpy state). dsprep's own augmentation does
    not use global generators; user code often does.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- loader

class Loader(tud.DataLoader):
    """A ``DataLoader`` that counts skipped samples and advances the epoch by itself.

    Attributes:
        skipped: every :class:`Skipped` dropped so far (``on_error="skip"``).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skipped: list[Skipped] = []

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at ``epoch`` (the sampler otherwise counts epochs itself)."""
        sampler = getattr(self.batch_sampler, "sampler", None) or self.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        before = len(self.skipped)
        for item in super().__iter__():
            if isinstance(self.collate_fn, Collate) and self.collate_fn.report_skips:
                batch, skipped = item
                self.skipped.extend(skipped)
                if batch is None:
                    continue
                yield batch[0], unpack_targets(batch[1])
            else:
                yield item
        new = self.skipped[before:]
        if new:
            log.warning("skipped %d unreadable sample(s) this epoch (nothing was put in their place); first: %s",
                        len(new), new[0].message)


def make_loader(dataset: Any, batch_size: int = 32, *, task: str | None = None, augment: Any = "default",
                shuffle: bool | None = None, num_workers: int | None = None, seed: int = 0,
                drop_last: bool = False, pin_memory: bool | None = None, persistent_workers: bool | None = None,
                prefetch_factor: int | None = None, distributed: bool | None = None,
                group_aspect_ratio: bool | None = None, on_error: str = "raise", pad_to: int = 1,
                collate_fn: Callable | None = None, **options: Any) -> Loader:
    """A DataLoader for ``dataset`` with the task's collate, sampler and worker set-up.

    Args:
        dataset: a dsprep Dataset (a :class:`TorchDataset` is built with
            ``task``, ``augment``, ``seed``, ``on_error`` and ``options``) or
            a :class:`TorchDataset`.
        batch_size: samples per batch (per rank).
        augment: ``"default"`` (training preset), ``"eval"``, ``"none"``, or a
            transform (see :class:`TorchDataset`).
        shuffle: default True for ``augment="default"``, else False.
        num_workers: default ``min(8, cores)``.
        seed: permutation and augmentation seed.
        pin_memory: default True when CUDA is available.
        persistent_workers: default True when ``num_workers > 0``.
        distributed: shard across ``torch.distributed`` ranks (default: when initialised).
        group_aspect_ratio: batch tall and wide images apart (default: detection/keypoints when shuffling).
        on_error: ``"skip"`` drops unreadable images (counted in ``loader.skipped``).
        pad_to: detection: pad batch height and width to a multiple of this.
        collate_fn: replaces the task's collate.
        **options: :class:`TorchDataset` options (``masks``, ``mask_lut``,
            ``size``, ``min_size``...).

    Returns:
        a :class:`Loader` yielding ``(images, targets)`` with ``images`` uint8
        ``(B, 3, H, W)`` contiguous; pass batches to :func:`to_device`.

    Example:
        >>> loader = make_loader(ds, batch_size=64, task="classification", num_workers=4)  # doctest: +SKIP
        >>> for images, targets in loader:                                                # doctest: +SKIP
        ...     x = to_device(images, "cuda", dtype=torch.bfloat16)
    """
    tds = _torch_dataset(dataset, task, augment, seed, on_error, options)
    if shuffle is None:
        shuffle = tds.augment_name in ("default", "custom") and augment not in ("eval", "none")
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    batch_sampler = _batch_sampler(tds, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                   distributed=distributed, group_aspect_ratio=group_aspect_ratio)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return Loader(tds, batch_sampler=batch_sampler, num_workers=num_workers,
                  collate_fn=collate_fn or Collate(tds.task, pad_to=pad_to, report_skips=True),
                  pin_memory=pin_memory, worker_init_fn=worker_init_fn, **extra)


def _torch_dataset(dataset: Any, task: str | None, augment: Any, seed: int, on_error: str,
                   options: dict[str, Any]) -> TorchDataset:
    """The samples to load: ``dataset`` itself when it is a :class:`TorchDataset`, else one built on it.

    (A further record source, such as a shards stream, is one more case here.)
    """
    if isinstance(dataset, TorchDataset):
        if options or task not in (None, dataset.task):
            raise TypeError("dataset is already a TorchDataset: pass task/options when building it, not here")
        return dataset
    return TorchDataset(dataset, task=task, augment=augment, seed=seed, on_error=on_error, **options)


def _batch_sampler(tds: TorchDataset, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool,
                   distributed: bool | None, group_aspect_ratio: bool | None) -> Any:
    """This rank's batches of sample keys: an :class:`EpochSampler` (sharded when distributed),
    batched by aspect-ratio group (detection/keypoints when shuffling, by default) or in order."""
    world, rank = dist_world()
    if distributed is False:
        world, rank = 1, 0
    sampler = EpochSampler(len(tds), shuffle=shuffle, seed=seed, num_replicas=world, rank=rank,
                           drop_last=drop_last and world > 1)
    if group_aspect_ratio is None:
        group_aspect_ratio = shuffle and tds.task in ("detection", "keypoints")
    if group_aspect_ratio:
        return GroupedBatchSampler(sampler, tds.aspect_groups(), batch_size, drop_last)
    return tud.BatchSampler(sampler, batch_size, drop_last)
