"""Which samples, in which order, on which rank: epoch-aware samplers.

:class:`EpochSampler` shuffles (seeded by ``seed + epoch``), shards across
``torch.distributed`` ranks as ``DistributedSampler`` does, and yields
``(epoch, index)`` keys that carry the epoch to the worker seeding the
sample's augmentation. :class:`GroupedBatchSampler` batches images of one
aspect-ratio group together, with a batch count that depends only on the
sampler's length (the same on every rank).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterator

import numpy as np
import torch
import torch.utils.data as tud

__all__ = ["EpochSampler", "GroupedBatchSampler", "dist_world"]


def dist_world() -> tuple[int, int]:
    """``(world size, rank)`` under an initialised ``torch.distributed``, else ``(1, 0)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(tud.Sampler[tuple[int, int]]):
    """Shuffles (seeded by ``seed + epoch``), shards across ranks, and tells workers the epoch.

    Under ``torch.distributed`` (``torchrun``) each rank gets its own
    ``1/world`` of the indices, exactly as ``DistributedSampler`` does (same
    permutation, same padding by repetition unless ``drop_last``). Each
    ``iter()`` uses the current epoch and then advances it, so a loop over
    epochs needs no ``set_epoch`` call (calling it still works). It yields
    ``(epoch, index)`` pairs (:meth:`TorchDataset.key`), which carry the epoch
    to the worker that seeds the sample's augmentation.

    Args:
        size: number of samples.
        shuffle: a new permutation every epoch.
        seed: the permutation seed (the same on every rank).
        num_replicas, rank: default from ``torch.distributed`` when initialised, else 1 and 0.
        drop_last: drop the tail instead of padding ranks to equal length.
    """

    def __init__(self, size: int, *, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False):
        world, me = dist_world()
        self.size = int(size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = world if num_replicas is None else int(num_replicas)
        self.rank = me if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last and self.size % self.num_replicas:
            self.num_samples = self.size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.size / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for ``epoch``."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            idx = torch.randperm(self.size, generator=g).numpy()
        else:
            idx = np.arange(self.size)
        total = self.num_samples * self.num_replicas
        if not self.drop_last and total > len(idx) and len(idx):
            idx = np.concatenate([idx, np.resize(idx, total - len(idx))])
        idx = idx[:total]
        return idx[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        return iter([(epoch, i) for i in self.indices(epoch).tolist()])

    def __len__(self) -> int:
        return self.num_samples


class GroupedBatchSampler(tud.Sampler[list[tuple[int, int]]]):
    """Batches whose images share an aspect-ratio group (tall vs wide by default).

    Padding a batch to its largest image then wastes little. ``(epoch, index)`` keys
    from ``sampler`` are bucketed by ``group_ids[index]``; a bucket is
    yielded when full. What is left in the buckets at the end is batched
    together, groups mixed, so the number of batches depends only on
    ``len(sampler)``: ``len // batch_size`` (``drop_last``) or its ceiling,
    the same on every rank of a distributed run (a rank with one more batch
    than the others would wait in allreduce for ever; torchvision's reference
    GroupedBatchSampler fixes the count for the same reason).
    """

    def __init__(self, sampler: EpochSampler, group_ids: np.ndarray, batch_size: int, drop_last: bool = False):
        self.sampler = sampler
        self.group_ids = np.asarray(group_ids, np.int64)
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for key in self.sampler:
            g = int(self.group_ids[key[1]])
            b = buckets[g]
            b.append(key)
            if len(b) == self.batch_size:
                yield list(b)
                b.clear()
        rest = [key for g in sorted(buckets) for key in buckets[g]]
        for a in range(0, len(rest), self.batch_size):
            batch = rest[a:a + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

