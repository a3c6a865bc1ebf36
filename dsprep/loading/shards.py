"""The shards stream: a split's tar shards read front to back, from a folder or a URL.

``ds.loader(...)`` on a Dataset from ``dsprep.load(format="shards", root=DIR or URL)``
gives a :class:`~dsprep.loading.build.StreamLoader` over a :class:`ShardStream`.
Each sample's JSON becomes a :class:`~dsprep.records.Record`, and a few
samples at a time go through the file loader's own per-sample code (a
:class:`~dsprep.loading.dataset.TorchDataset` reading the sample's members
instead of files): the same tasks, presets, targets and collate, and each
sample's augmentation seeded by ``(seed, epoch, its index in the split)``, so
a sample is augmented alike whether read from files or from shards.

The order of an epoch (``docs/shards.md``, "Reading shards"):

1. the split's samples in index order, cut into *units* (the run of a split's
   samples in one shard); with ``shuffle`` the units are permuted by
   ``(seed, epoch)``, the same on every rank;
2. rank ``r`` of ``W`` takes samples ``[r n, (r + 1) n)`` of that sequence, ``n =
   ceil(N / W)`` (the last rank's tail repeats samples from the start, as
   ``DistributedSampler`` pads) or ``N // W`` with ``drop_last``: every rank has the
   same number of samples and batches, known from ``index.json`` alone;
3. worker ``k`` of ``K`` takes a contiguous block of the rank's whole batches;
   it reads its samples front to back (byte ranges of shards: ranks and workers
   read disjoint samples) and, with ``shuffle``, through a buffer of
   ``shuffle_buffer`` samples popped at random (seeded by seed, epoch, rank, worker);
4. the DataLoader takes batches from the workers in turn.

The buffer is played on sample positions before any byte is read, so the
epoch's order is known in advance: resuming at batch ``b``
(:meth:`StreamLoader.load_state_dict`) reads only the samples still to come.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Mapping

import numpy as np
import orjson
import torch
import torch.utils.data as tud

from .. import _shardio as sio
from ..errors import FormatError, MalformedFileError, UnknownNameError, check_choice
from ..records import Dataset
from .dataset import TorchDataset, _augmentation, infer_task
from .samplers import dist_world
from .table import _Strings
from .targets import Skipped

__all__ = ["ShardStream", "buffer_order", "is_shards"]

log = logging.getLogger(__name__)

# member suffixes (WebDataset extensions after the key) of a sample's semantic and instance mask
_MASK, _INSTANCE = "mask.", "inst."


def is_shards(dataset: Any) -> bool:
    """A Dataset read from shards (``dsprep.load(format="shards")``), which the loader streams."""
    info = getattr(dataset, "info", None)
    return isinstance(info, Mapping) and (isinstance(info.get("shards"), Mapping)
                                          or ("shard_files" in info and getattr(dataset, "root", None) is not None))


def shards_source(dataset: Any) -> Mapping[str, Any]:
    """``{"root", "index", "split"}`` of a Dataset read from shards: its ``info["shards"]`` (a
    lazy parse: the shards not read), or, for one whose records were read (``info["shard_files"]``),
    its root's ``index.json`` and its one split (None: every sample)."""
    meta = dataset.info.get("shards")
    if isinstance(meta, Mapping):
        return meta
    splits = list(dataset.splits)
    return {"root": str(dataset.root), "index": sio.read_index(dataset.root),
            "split": splits[0] if len(splits) == 1 else None}


def buffer_order(items: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order a shuffle buffer of ``size`` pops ``items`` in (read in order, each pop at random).

    The first ``size`` items fill the buffer; each next item replaces the one
    popped at a random slot; at the end the rest leave in random order.
    """
    n = len(items)
    if n <= size:
        return rng.permutation(items)
    buf = items[:size].tolist()
    out = np.empty(n, items.dtype)
    slots = rng.integers(0, size, n - size).tolist()
    for o, (x, j) in enumerate(zip(items[size:].tolist(), slots)):
        out[o] = buf[j]
        buf[j] = x
    out[n - size:] = rng.permutation(np.asarray(buf, items.dtype))
    return out


class ShardStream(tud.IterableDataset):
    """The samples of one split of a shards dataset, streamed (see the module docstring for the order).

    Args:
        dataset: a Dataset from ``dsprep.load(format="shards", root=..., split=...)``
            (its ``info["shards"]`` says where the shards are; its records are never built).
        task, augment, seed, on_error, **options: as for :class:`~dsprep.loading.TorchDataset`
            (``crops`` is not streamed: the number of crops is not in the index).
        batch_size: the loader's batch size (workers read whole batches).
        drop_last: drop the remainder (ranks get ``N // W`` samples) and incomplete batches.
        shuffle: permute the shards' runs by (seed, epoch) and read through a shuffle buffer.
        shuffle_buffer: samples held by each worker's buffer.
        num_replicas, rank: default from ``torch.distributed`` when initialised, else 1 and 0.
        retries, retry_wait: a failed remote read is tried ``1 + retries`` times,
            ``retry_wait * 2**k`` seconds apart, before a :class:`~dsprep.errors.ReadError`.
    """

    def __init__(self, dataset: Any, *, task: str | None = None, augment: Any = "none", seed: int = 0,
                 on_error: str = "raise", batch_size: int = 1, drop_last: bool = False, shuffle: bool = False,
                 shuffle_buffer: int = 1000, num_replicas: int | None = None, rank: int | None = None,
                 retries: int = sio.RETRIES, retry_wait: float = sio.RETRY_WAIT, **options: Any):
        if not is_shards(dataset):
            raise TypeError("ShardStream reads a Dataset from dsprep.load(format='shards', root=...)")
        meta = shards_source(dataset)
        self.root, self.split = str(meta["root"]), meta.get("split")
        self._index_arrays(meta["index"], self.split)
        self.categories = list(dataset.categories)
        self.info = {k: v for k, v in dataset.info.items() if k not in ("shards", "mask_readers")}
        self.source_format = meta["index"].get("source_format") or self.info.get("source_format")
        self.seed, self.on_error = int(seed), check_choice("on_error mode", on_error, ("raise", "skip"))
        self.augment, self.options = augment, dict(options)
        self.retries, self.retry_wait = int(retries), float(retry_wait)
        self.batch_size, self.drop_last, self.shuffle = int(batch_size), bool(drop_last), bool(shuffle)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        world, me = dist_world()
        self.num_replicas = world if num_replicas is None else int(num_replicas)
        self.rank = me if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.task, self.augment_name = self._check_task(task)
        self.num_classes = len(self.categories)
        self.class_names = [c.name for c in self.categories]
        n = len(self.members)
        self.num_samples = n // self.num_replicas if self.drop_last else math.ceil(n / self.num_replicas)
        b = self.batch_size
        self.num_batches = self.num_samples // b if self.drop_last else -(-self.num_samples // b)
        # (epoch, batches to skip) of the iteration being started, shared with the workers
        self._state = torch.zeros(2, dtype=torch.int64).share_memory_()

    # -- the index, as flat arrays (workers share them copy-free)
    def _index_arrays(self, index: Mapping[str, Any], split: str | None) -> None:
        keys, self.offsets, self.lengths, start = sio.member_table(index)
        self.keys = _Strings(list(keys))
        self.shard_paths = [str(sh["path"]) for sh in index["shards"]]
        self.shard_of = np.repeat(np.arange(len(self.shard_paths), dtype=np.int32), np.diff(start))
        runs = sio.split_members(index, split)
        # per sample of the split (its position p): the global member number
        self.members = (np.concatenate([start[s] + np.asarray(m, np.int64) for s, m in runs])
                        if runs else np.zeros(0, np.int64))
        sizes = np.array([len(m) for _, m in runs], np.int64)
        self.unit_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def _check_task(self, task: str | None) -> tuple[str, str]:
        """The task (given, or told from the split's first sample) and the augmentation's name;
        the options are checked on that sample here, not later in a worker."""
        if task == "crops":
            raise UnknownNameError("task 'crops' is not streamed from shards (the number of crops per shard "
                                   "is not in index.json); use detection, or convert the shards back to files")
        if not len(self.members):
            if task is None:
                raise UnknownNameError(f"split {self.split!r} has no samples; cannot tell the task: pass task=")
            return task, _augmentation(task, self.augment, {})[0]
        first = self._chunk([(0, self._read_one(0))], probe=True)
        found = task if task is not None else infer_task(first)
        probe = TorchDataset(first, task=found, augment=self.augment, seed=self.seed, on_error=self.on_error,
                             files={}, **self.options)
        return found, probe.augment_name

    # -- sizes, epochs
    def __len__(self) -> int:
        """This rank's samples per epoch (the same on every rank)."""
        return self.num_samples

    def begin(self, epoch: int, skip_batches: int = 0) -> None:
        """The next iteration reads ``epoch``, leaving out its first ``skip_batches`` batches."""
        self._state[0] = int(epoch)
        self._state[1] = int(skip_batches)

    def set_epoch(self, epoch: int) -> None:
        self.begin(epoch, 0)

    def rank_positions(self, epoch: int) -> np.ndarray:
        """The split positions this rank reads in ``epoch``, in reading order."""
        n = len(self.members)
        if n == 0:
            return np.zeros(0, np.int64)
        units = np.arange(len(self.unit_start) - 1)
        if self.shuffle:
            units = self._rng(epoch).permutation(units)
        seq = np.concatenate([np.arange(self.unit_start[u], self.unit_start[u + 1]) for u in units])
        lo = self.rank * self.num_samples
        return seq[np.arange(lo, lo + self.num_samples) % n]

    def worker_batches(self, num_workers: int) -> list[tuple[int, int]]:
        """``[first, last)`` batch of each worker: contiguous blocks of the rank's batches."""
        nb = self.num_batches
        return [(k * nb // num_workers, (k + 1) * nb // num_workers) for k in range(num_workers)]

    def _rng(self, epoch: int, *more: int) -> np.random.Generator:
        return np.random.default_rng([self.seed % 2**63, int(epoch), *more])

    # -- iteration
    def __iter__(self) -> Iterator[Any]:
        epoch, skip = (int(v) for v in self._state.tolist())
        info = tud.get_worker_info()
        k, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        blocks = self.worker_batches(num_workers)
        a, b = blocks[k]
        used = self.num_batches * self.batch_size if self.drop_last else self.num_samples
        mine = self.rank_positions(epoch)[a * self.batch_size:min(b * self.batch_size, used)]
        slots = np.arange(len(mine))
        if self.shuffle:
            slots = buffer_order(slots, self.shuffle_buffer, self._rng(epoch, self.rank, k))
        done = _batches_taken(skip, [hi - lo for lo, hi in blocks])[k] * self.batch_size
        return self._samples(mine, slots[done:], epoch)

    def _samples(self, mine: np.ndarray, order: np.ndarray, epoch: int) -> Iterator[Any]:
        """Samples ``mine[order]``, read front to back (only those in ``order``) and built a batch at a time."""
        reader = self._read(mine, np.sort(order))
        held: dict[int, Any] = {}
        step = max(1, min(self.batch_size, 64))
        for c in range(0, len(order), step):
            chunk = order[c:c + step].tolist()
            for slot in chunk:
                while slot not in held:
                    got, blob = next(reader)
                    held[got] = blob
            yield from self._build([(int(mine[s]), held.pop(s)) for s in chunk], epoch)

    def _read(self, mine: np.ndarray, slots: np.ndarray) -> Iterator[tuple[int, Any]]:
        """``(slot, sample bytes or the FormatError reading them)`` for ``slots`` (sorted), a
        byte range per run of consecutive members of one shard."""
        members = self.members[mine[slots]]
        start = 0
        for end in range(1, len(slots) + 1):
            if end < len(slots) and self._follows(members[end - 1], members[end]):
                continue
            first, last = members[start], members[end - 1]
            url = sio.join(self.root, self.shard_paths[self.shard_of[first]])
            stream = sio.RangeReader(url, self.offsets[first], self.offsets[last] + self.lengths[last],
                                     what=f"shard {self.shard_paths[self.shard_of[first]]}",
                                     retries=self.retries, retry_wait=self.retry_wait)
            for j in range(start, end):
                yield int(slots[j]), stream.read(int(self.lengths[members[j]]))
            start = end

    def _follows(self, m0: int, m1: int) -> bool:
        return (self.shard_of[m0] == self.shard_of[m1]
                and self.offsets[m1] == self.offsets[m0] + self.lengths[m0])

    def _read_one(self, p: int) -> bytes:
        m = self.members[p]
        url = sio.join(self.root, self.shard_paths[self.shard_of[m]])
        return sio.read_bytes(url, int(self.offsets[m]), int(self.offsets[m] + self.lengths[m]),
                              what=f"shard {self.shard_paths[self.shard_of[m]]}", retries=self.retries,
                              retry_wait=self.retry_wait)

    # -- samples
    def _build(self, items: list[tuple[int, bytes]], epoch: int) -> Iterator[Any]:
        """``(split position, bytes)`` -> samples through the file loader's own code, in order."""
        ds, files, bad = self._chunk(items)
        tds = TorchDataset(ds, task=self.task, augment=self.augment, seed=self.seed, on_error=self.on_error,
                           files=files, **self.options)
        r = 0
        for n, (p, _) in enumerate(items):
            if n in bad:
                yield bad[n]
                continue
            yield tds.sample(r, epoch, seed_index=p)
            r += 1

    def _chunk(self, items: list[tuple[int, bytes]], *, probe: bool = False) -> Any:
        """A few samples as the Dataset the per-sample code reads: their records (paths pointing
        at their members), the members' bytes by path, and a :class:`Skipped` per unreadable one."""
        records, files, bad = [], {}, {}
        for n, (p, blob) in enumerate(items):
            m = self.members[p]
            key = self.keys[m] or ""
            shard = sio.join(self.root, self.shard_paths[self.shard_of[m]])
            try:
                records.append(self._record(blob, key, shard, files))
            except FormatError as err:
                if self.on_error != "skip" or probe:
                    raise
                bad[n] = Skipped(p, key, str(err))
        ds = Dataset(self.categories, records, info=self.info, root="", format=self.source_format)
        return ds if probe else (ds, files, bad)

    def _record(self, blob: bytes, key: str, shard: str, files: dict[str, bytes]) -> Any:
        members = sio.parse_sample(blob, key, shard)
        where = f"{shard}/{key}.json"
        try:
            doc = orjson.loads(members["json"])
        except orjson.JSONDecodeError as err:
            raise MalformedFileError(where, f"not valid JSON ({err})") from None
        if not isinstance(doc, dict):
            raise MalformedFileError(where, f"expected a JSON object, found {type(doc).__name__}")
        image = doc.get("image")
        if image not in members:
            raise MalformedFileError(where, f"the JSON names the image member {key}.{image}, the sample has "
                                            f"{', '.join(f'{key}.{e}' for e in members)}")
        paths = {ext: f"{shard}/{key}.{ext}" for ext in members}
        for ext, path in paths.items():
            files[path] = members[ext]
        mask = next((paths[e] for e in paths if e.startswith(_MASK)), None)
        inst = next((paths[e] for e in paths if e.startswith(_INSTANCE)), None)
        return sio.record_from_sample(doc, where, path=paths[image], mask_path=mask, instance_mask_path=inst)


def _batches_taken(skip: int, counts: list[int]) -> list[int]:
    """How many batches each worker gave in the first ``skip`` batches of the loader, which
    takes them in turn (worker 0, 1, ... then again, passing over workers with none left)."""
    taken = [0] * len(counts)
    t = 0
    while skip > 0 and any(t < c for c in counts):
        for k, c in enumerate(counts):
            if skip > 0 and t < c:
                taken[k] += 1
                skip -= 1
        t += 1
    return taken
