"""The DataLoader: :func:`make_loader` puts a torch dataset, its sampler, collate and workers together.

``ds.loader(...)`` calls it. A :class:`Loader` is a ``DataLoader`` that
counts skipped samples (``on_error="skip"``) and advances the epoch by
itself; its workers are seeded by :func:`worker_init_fn`. A Dataset read
from shards gets a :class:`StreamLoader` over a
:class:`~dsprep.loading.shards.ShardStream`, which also resumes mid-epoch
(``state_dict`` / ``load_state_dict``).
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
from .shards import ShardStream, is_shards
from .targets import Failed, Skipped

__all__ = ["Loader", "StreamLoader", "make_loader", "worker_init_fn"]

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

    def _batches(self) -> Iterator[Any]:
        """The DataLoader's own batches (collated, skipped samples not yet counted)."""
        return super().__iter__()

    def __iter__(self) -> Iterator[Any]:
        before = len(self.skipped)
        for item in self._batches():
            if isinstance(self.collate_fn, Collate) and self.collate_fn.report_skips:
                batch, skipped = item
                if isinstance(skipped, Failed):
                    raise skipped.error  # a worker's FormatError, as num_workers=0 raises it
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


class StreamLoader(Loader):
    """The :class:`Loader` of a :class:`~dsprep.loading.shards.ShardStream`: the same batches,
    plus exact mid-epoch resume.

    ``state_dict()`` says where the epoch is (the epoch and the batches
    taken); ``load_state_dict(state)`` makes the next ``iter()`` give exactly
    the batches an uninterrupted epoch would still have given, reading only
    the samples still to come. The order of a stream depends on the seed, the
    batch size, the number of workers and of ranks, so a state resumes only
    with the same ones.
    """

    def __init__(self, stream: ShardStream, **kwargs: Any):
        if kwargs.get("collate_fn") is None:
            kwargs["collate_fn"] = Collate(stream.task, report_skips=True)
        super().__init__(stream, batch_size=stream.batch_size, drop_last=stream.drop_last, **kwargs)
        self._next = (0, 0)                      # (epoch, batches to skip) of the next iter()
        self._now: tuple[int, int] | None = None  # (epoch, batches taken) of the one under way

    def __len__(self) -> int:
        return self.dataset.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch``."""
        self._next = (int(epoch), 0)

    def _batches(self) -> Iterator[Any]:
        epoch, skip = self._next
        self.dataset.begin(epoch, skip)
        self._now, self._next = (epoch, skip), (epoch + 1, 0)
        for batch in super()._batches():
            self._now = (epoch, self._now[1] + 1)
            yield batch
        self._now = None

    def _config(self) -> dict[str, Any]:
        ds = self.dataset
        return {"seed": ds.seed, "batch_size": ds.batch_size, "num_workers": self.num_workers,
                "world_size": ds.num_replicas, "shuffle": ds.shuffle, "shuffle_buffer": ds.shuffle_buffer,
                "drop_last": ds.drop_last, "samples": len(ds.members)}

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches"}`` (where the next batch comes from) and the settings the order depends on."""
        epoch, taken = self._now if self._now is not None else self._next
        if taken >= len(self):
            epoch, taken = epoch + 1, 0
        return {"epoch": epoch, "batches": taken, **self._config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` continue where ``state`` (from :meth:`state_dict`) left off.

        Raises:
            ValueError: the state was saved with other settings (seed, batch size,
                workers, ranks, shuffling, samples): its order would not be this one.
        """
        mine = self._config()
        differ = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differ:
            found = ", ".join(f"{k}={a!r} (here {b!r})" for k, (a, b) in differ.items())
            raise ValueError(f"cannot resume this stream from the state given: it was saved with {found}; "
                             f"the order of an epoch depends on them, resume with the same settings")
        self._next, self._now = (int(state["epoch"]), int(state["batches"])), None


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

    A Dataset read from shards (``dsprep.load(format="shards", ...)``) is
    streamed: the options are the same, plus ``shuffle_buffer`` (samples per
    worker's buffer, default 1000), ``retries`` and ``retry_wait`` (remote
    reads); ``group_aspect_ratio`` does not apply, and ranks get ``ceil(N / W)``
    samples (padded by repetition) or ``N // W`` with ``drop_last``
    (see :class:`~dsprep.loading.shards.ShardStream`).

    Returns:
        a :class:`Loader` yielding ``(images, targets)`` with ``images`` uint8
        ``(B, 3, H, W)`` contiguous; pass batches to :func:`to_device`. A
        :class:`StreamLoader` for shards.

    Example:
        >>> loader = make_loader(ds, batch_size=64, task="classification", num_workers=4)  # doctest: +SKIP
        >>> for images, targets in loader:                                                # doctest: +SKIP
        ...     x = to_device(images, "cuda", dtype=torch.bfloat16)
    """
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra["persistent_workers"] = num_workers > 0 if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    if is_shards(dataset):
        if group_aspect_ratio:
            raise ValueError("group_aspect_ratio does not apply to a shards stream (its batches are read in order)")
        world = (1, 0) if distributed is False else dist_world()
        stream = ShardStream(dataset, task=task, augment=augment, seed=seed, on_error=on_error, batch_size=batch_size,
                             drop_last=drop_last, shuffle=_default_shuffle(shuffle, augment),
                             num_replicas=world[0], rank=world[1], **options)
        return StreamLoader(stream, num_workers=num_workers, pin_memory=pin_memory, worker_init_fn=worker_init_fn,
                            collate_fn=collate_fn or Collate(stream.task, pad_to=pad_to, report_skips=True), **extra)
    tds = _torch_dataset(dataset, task, augment, seed, on_error, options)
    tds.errors_as_samples = collate_fn is None  # our Collate and Loader carry a worker's error out
    shuffle = _default_shuffle(shuffle, augment, tds.augment_name)
    batch_sampler = _batch_sampler(tds, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                   distributed=distributed, group_aspect_ratio=group_aspect_ratio)
    return Loader(tds, batch_sampler=batch_sampler, num_workers=num_workers,
                  collate_fn=collate_fn or Collate(tds.task, pad_to=pad_to, report_skips=True),
                  pin_memory=pin_memory, worker_init_fn=worker_init_fn, **extra)


def _default_shuffle(shuffle: bool | None, augment: Any, name: str | None = None) -> bool:
    """``shuffle`` as given, else True for training augmentation (the preset ``"default"`` or a
    custom one); ``name``: the augmentation's name (default: ``augment`` if a string, else custom)."""
    if shuffle is not None:
        return bool(shuffle)
    if name is None:
        name = "none" if augment is None else augment if isinstance(augment, str) else "custom"
    return name in ("default", "custom") and augment not in ("eval", "none")


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
