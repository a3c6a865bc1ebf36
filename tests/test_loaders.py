"""TorchDataset, collate, samplers, determinism across workers, skipping, distributed, to_device."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dsprep.errors import FormatError, InvalidAnnotationError, MalformedFileError, UnknownNameError
from dsprep.loading import transforms as T
from dsprep.loading import (Collate, EpochSampler, GroupedBatchSampler, Loader, RecordTable, Skipped,
                            TorchDataset, make_loader, to_device)
from dsprep.records import Category, Dataset, Instances, Record


def make_dataset(root, n: int = 12, *, sizes=((40, 30), (24, 36)), with_masks: bool = True,
                 write: bool = True) -> Dataset:
    """Tiny JPEGs with two objects each (source category ids 5 and 9), a P mask and a polygon.

    ``write=False`` builds the same records without writing files (for processes sharing ``root``).
    """
    rng = np.random.default_rng(0)
    recs = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        if write:
            Image.fromarray(img).save(root / f"img_{i}.jpg", quality=90)
        b0 = [2, 3, w // 2, h // 2]
        b1 = [w // 2, h // 3, w - 1, h - 2]
        poly = [b0[0], b0[1], b0[2], b0[1], b0[2], b0[3], b0[0], b0[3]]
        inst = Instances(boxes=[b0, b1], labels=[5, 9], iscrowd=[False, i % 3 == 0], difficult=[i % 2 == 1, False],
                         segmentation=[[poly], {"size": [h, w], "counts": _rle_counts(b1, w, h)}])
        mask_path = None
        if with_masks and write:
            m = np.zeros((h, w), np.uint8)
            m[b0[1]:b0[3], b0[0]:b0[2]] = 1
            m[b1[1]:b1[3], b1[0]:b1[2]] = 2
            m[0, :] = 255
            pm = Image.fromarray(m, "P")
            pm.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224] * 759)
            pm.save(root / f"mask_{i}.png")
        if with_masks:
            mask_path = f"mask_{i}.png"
        recs.append(Record(f"img_{i}", f"img_{i}.jpg", w, h, "train", label=5 if i % 2 else 9,
                           instances=inst, mask_path=mask_path))
    cats = [Category(5, "cat", extra={"trainId": 0}), Category(9, "dog", extra={"trainId": 1})]
    return Dataset(cats, recs, root=root)


def _rle_counts(box, w, h):
    from pycocotools import mask as mask_utils

    m = np.zeros((h, w), np.uint8, order="F")
    m[box[1]:box[3], box[0]:box[2]] = 1
    return mask_utils.encode(np.asfortranarray(m))["counts"].decode("ascii")


@pytest.fixture
def ds(tmp_path):
    return make_dataset(tmp_path)


def test_classification_labels_are_contiguous(ds):
    tds = ds.torch(task="classification")
    img, t = tds[0]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 30, 40)
    assert t["label"].dtype == torch.int64 and int(t["label"]) == 1  # source id 9 -> index 1
    assert int(tds[1][1]["label"]) == 0 and t["image_id"] == "img_0"
    images, targets = next(iter(ds.loader(batch_size=4, task="classification", num_workers=0)))
    assert images.shape == (4, 3, 224, 224) and images.dtype == torch.uint8
    assert set(targets["label"].tolist()) <= {0, 1} and len(targets["image_id"]) == 4


def test_detection_target_schema_and_masks(ds):
    tds = ds.torch(task="detection", masks=True)
    img, t = tds[0]
    assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (2, 4)
    assert t["boxes"].tolist() == [[2.0, 3.0, 20.0, 15.0], [20.0, 10.0, 39.0, 28.0]]
    assert t["labels"].tolist() == [0, 1] and t["labels"].dtype == torch.int64
    assert t["iscrowd"].tolist() == [False, True] and t["difficult"].tolist() == [False, False]
    assert t["masks"].dtype == torch.uint8 and t["masks"].shape == (2, 30, 40)
    for k in range(2):  # polygon and RLE both rasterised onto their boxes
        ys, xs = torch.nonzero(t["masks"][k], as_tuple=True)
        assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == t["boxes"][k].tolist()
    assert t["size"].tolist() == [30, 40] == t["orig_size"].tolist()


def test_detection_training_batch_boxes_follow_resize(ds):
    loader = ds.loader(batch_size=4, task="detection", num_workers=0, min_size=60, max_size=None, masks=True)
    images, targets = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape[0] == 4
    for k, t in enumerate(targets):
        h, w = t["size"].tolist()
        assert min(h, w) == 60
        oh, ow = t["orig_size"].tolist()
        assert (images[k, :, h:, :] == 0).all() and (images[k, :, :, w:] == 0).all()  # padding right/bottom
        boxes = t["boxes"]
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        for j in range(len(boxes)):
            ys, xs = torch.nonzero(t["masks"][j], as_tuple=True)
            got = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.allclose(got, boxes[j], atol=1.0)


def test_instance_masks_from_instance_png(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.jpg")
    inst = np.zeros((20, 30), np.uint8)
    inst[2:8, 3:10] = 1      # VOC SegmentationObject: object k has value k (1-based)
    inst[10:18, 12:28] = 2
    inst[9, :] = 255         # void border
    pm = Image.fromarray(inst, "P")
    pm.putpalette(list(range(256)) * 3)
    pm.save(tmp_path / "a_obj.png")
    rec = Record("a", "a.jpg", 30, 20, instances=Instances(boxes=[[3, 2, 10, 8], [12, 10, 28, 18]], labels=[1, 1]),
                 instance_mask_path="a_obj.png")
    tds = Dataset([Category(1, "x")], [rec], root=tmp_path).torch(task="detection", masks=True)
    m = tds[0][1]["masks"]
    assert m[0].sum() == 6 * 7 and m[1].sum() == 8 * 16 and m[0, 2, 3] == 1 and m[1, 2, 3] == 0


def test_segmentation_mask_indices_and_padding(ds):
    tds = ds.torch(task="segmentation")
    img, t = tds[0]
    m = t["mask"]
    assert m.dtype == torch.uint8 and m.shape == (30, 40)
    assert m[0].tolist() == [255] * 40          # palette index 255, not its colour
    assert m[5, 5] == 1 and m[20, 30] == 2 and m[29, 0] == 0
    images, targets = next(iter(make_loader(ds, batch_size=2, task="segmentation", augment="eval",
                                            num_workers=0)))
    masks = targets["mask"]
    assert images.shape == (2, 3, 36, 40) and masks.shape == (2, 36, 40)
    assert (masks[0, 30:] == 255).all()          # padded rows of the smaller image: ignore
    assert (images[0, :, 30:] == 0).all()


def test_segmentation_label_lookup(ds):
    # dict: {stored value: class}; unmapped values become 255
    t = ds.torch(task="segmentation", mask_lut={1: 7, 2: 8})[0][1]
    assert t["mask"][5, 5] == 7 and t["mask"][20, 30] == 8 and t["mask"][29, 0] == 255
    # "train_id": category id -> extra["trainId"] (Cityscapes labelIds -> trainIds)
    cats = [Category(0, "unlabeled", extra={"trainId": 255}), Category(1, "road", extra={"trainId": 0}),
            Category(2, "car", extra={"trainId": 13})]
    ds2 = Dataset(cats, ds.records, root=ds.root)
    for r in ds2.records:
        r.instances = Instances()
    t = ds2.torch(task="segmentation", mask_lut="train_id")[0][1]
    assert t["mask"][5, 5] == 0 and t["mask"][20, 30] == 13 and t["mask"][29, 0] == 255 and t["mask"][0, 0] == 255
    # a table in dataset.info is used by default
    ds3 = Dataset(cats, ds2.records, root=ds.root, info={"mask_lut": list(range(255, -1, -1))})
    assert ds3.torch(task="segmentation")[0][1]["mask"][5, 5] == 254


def test_crops_one_sample_per_object(ds):
    tds = ds.torch(task="crops", augment="eval", size=16)
    crowd = sum(int(r.instances.iscrowd.sum()) for r in ds.records)
    assert len(tds) == 2 * len(ds) - crowd
    img, t = tds[0]
    assert tuple(img.shape) == (3, 16, 16) and int(t["label"]) == 0
    assert t["box"].tolist() == [2.0, 3.0, 20.0, 15.0] and t["image_id"] == "img_0"
    # the crop shows the object's own pixels
    src = np.asarray(Image.open(ds.root / "img_0.jpg").convert("RGB").crop((2, 3, 20, 15)).resize((16, 16),
                                                                                                  Image.BILINEAR))
    assert np.abs(img.permute(1, 2, 0).numpy().astype(int) - src).mean() < 3
    assert len(ds.torch(task="crops", crop_crowd=True)) == 2 * len(ds)


def test_keypoints_flip_swaps_left_and_right(tmp_path):
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "p.jpg")
    kp = np.zeros((1, 17, 3))
    kp[0, 5] = (10, 8, 2)    # left shoulder
    kp[0, 6] = (16, 8, 2)    # right shoulder
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
             "left_knee", "right_knee", "left_ankle", "right_ankle"]
    rec = Record("p", "p.jpg", 40, 20, instances=Instances(boxes=[[8, 2, 20, 18]], labels=[1], keypoints=kp))
    ds = Dataset([Category(1, "person", extra={"keypoints": names})], [rec], root=tmp_path)
    tds = ds.torch(task="keypoints", augment=T.Compose([T.HFlip(p=1.0)]))
    _, t = tds[0]
    k = t["keypoints"]
    assert k.dtype == torch.float32 and k.shape == (1, 17, 3)
    assert k[0, 5].tolist() == [24.0, 8.0, 2.0] and k[0, 6].tolist() == [30.0, 8.0, 2.0]
    assert t["boxes"].tolist() == [[20.0, 2.0, 32.0, 18.0]]


def _batches(loader, epochs=2):
    out = []
    for _ in range(epochs):
        for images, targets in loader:
            out.append((images.clone(), targets["label"].clone(), list(targets["image_id"])))
    return out


def test_same_seed_same_epoch_whatever_num_workers(ds):
    kw = dict(batch_size=4, task="classification", size=16, seed=3, persistent_workers=False)
    a = _batches(make_loader(ds, num_workers=0, **kw))
    b = _batches(make_loader(ds, num_workers=2, **kw))
    assert len(a) == len(b) == 6
    for (ia, la, na), (ib, lb, nb) in zip(a, b):
        assert na == nb and torch.equal(la, lb) and torch.equal(ia, ib)
    # a new epoch is a new permutation and new augmentation, not a replay
    assert [x[2] for x in a[:3]] != [x[2] for x in a[3:]] or not torch.equal(a[0][0], a[3][0])
    c = _batches(make_loader(ds, num_workers=0, **{**kw, "seed": 4}), epochs=1)
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(a, c))


def test_sample_generator_is_the_fresh_philox_stream_each_time():
    """The per-thread generator, re-keyed per sample, draws what Generator(Philox(key)) draws,
    however much the previous sample drew (counter, buffered 32 bits)."""
    from dsprep.loading.dataset import sample_rng

    def draws(g):
        return [g.integers(0, 7), g.random(), g.integers(0, 2**40), g.uniform(0.5, 2.0), g.integers(0, 300)]

    for seed, epoch, i in ((0, 0, 0), (3, 1, 17), (2**64 + 5, 2**32 + 2, 2**32 + 9)):
        fresh = np.random.Generator(np.random.Philox(key=[seed % 2**64, ((epoch % 2**32) << 32) | (i % 2**32)]))
        want = draws(fresh)
        reused = sample_rng(seed, epoch, i)
        reused.integers(0, 5)  # an odd number of 32-bit draws leaves half a word buffered
        assert draws(sample_rng(seed, epoch, i)) == want


def test_user_callable_is_seeded_per_sample(ds):
    def jitter(image, target):
        target["noise"] = torch.tensor(float(np.random.rand()) + float(torch.rand(())))
        return image, target

    kw = dict(batch_size=3, task="classification", augment=jitter, persistent_workers=False)
    a = [t["noise"] for _, t in make_loader(ds, num_workers=0, **kw)]
    b = [t["noise"] for _, t in make_loader(ds, num_workers=2, **kw)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == 4
    assert len(torch.cat(a).unique()) == 12


def test_augment_is_the_one_name_for_the_augmentation(ds):
    assert TorchDataset(ds, "detection", "eval").augment_name == "eval"  # third positional
    assert ds.torch(task="detection").augment_name == "none"
    flip = T.Compose([T.HFlip(p=1.0)])
    assert ds.torch("detection", flip).transform is flip
    with pytest.raises(TypeError, match="transform= is not an option: pass the augmentation as augment="):
        ds.torch(task="detection", transform=flip)


def test_unreadable_image_raises_naming_the_file(ds):
    (ds.root / "img_2.jpg").write_bytes((ds.root / "img_2.jpg").read_bytes()[:40])
    tds = ds.torch(task="classification")
    with pytest.raises(MalformedFileError, match="img_2.jpg"):
        tds[2]


def test_skip_drops_and_counts_without_substituting(ds):
    for i in (2, 7):
        (ds.root / f"img_{i}.jpg").write_bytes(b"not an image")
    loader = make_loader(ds, batch_size=5, task="classification", size=8, on_error="skip", num_workers=2,
                         shuffle=False, persistent_workers=False)
    seen = []
    sizes = []
    for images, targets in loader:
        seen += targets["image_id"]
        sizes.append(len(images))
    assert sorted(seen) == sorted(f"img_{i}" for i in range(12) if i not in (2, 7))
    assert sizes == [4, 4, 2]  # batches shrink: nothing was put in the skipped samples' place
    assert sorted(s.image_id for s in loader.skipped) == ["img_2", "img_7"]
    assert all(isinstance(s, Skipped) and "img_" in s.message for s in loader.skipped)
    # the dataset itself returns the marker
    assert isinstance(ds.torch(task="classification", on_error="skip")[2], Skipped)


def test_size_mismatch_between_annotation_and_image(ds):
    ds.records[0].width = 80
    with pytest.raises(InvalidAnnotationError, match="img_0.jpg.*80x30.*40x30"):
        ds.torch(task="detection")[0]


def test_unknown_task_and_label(ds):
    with pytest.raises(UnknownNameError, match="Did you mean 'detection'"):
        ds.torch(task="detections")
    ds.records[3].instances = Instances(boxes=[[0, 0, 1, 1]], labels=[42])
    with pytest.raises(FormatError, match="img_3.jpg.*\\[42\\]"):
        ds.torch(task="detection")
    ds.records[3].instances = Instances()
    ds.records[2].label = 77  # an image label no category has: named for classification...
    with pytest.raises(InvalidAnnotationError, match="img_2.jpg: image label 77 is not a category id"):
        ds.torch(task="classification")
    assert int((ds.torch(task="detection").table.label == -1).sum()) == 1  # ...ignored where unused


def test_records_live_in_flat_arrays(ds):
    tds = ds.torch(task="detection", masks=True)
    table = tds.table
    assert isinstance(table, RecordTable)
    for name, value in vars(table).items():
        assert not isinstance(value, (list, dict)), f"RecordTable.{name} is a Python container"
    assert not any(isinstance(v, Dataset) or (isinstance(v, list) and v and isinstance(v[0], Record))
                   for v in vars(tds).values())
    assert table.boxes.shape == (24, 4) and table.paths[5] == "img_5.jpg"
    assert len(pickle.dumps(tds)) < 20_000


def test_epoch_sampler_matches_distributed_sampler():
    from torch.utils.data.distributed import DistributedSampler

    n = 11
    for rank in range(3):
        ours = EpochSampler(n, shuffle=True, seed=5, num_replicas=3, rank=rank)
        ref = DistributedSampler(range(n), num_replicas=3, rank=rank, shuffle=True, seed=5)
        for epoch in range(2):
            ref.set_epoch(epoch)
            keys = list(ours)  # advances its own epoch
            assert [i for _, i in keys] == list(ref)
            assert all(e == epoch for e, _ in keys)  # the epoch travels with the index


def test_torch_dataset_is_a_plain_sequence(ds):
    # IndexError at len (so `for s in tds` ends), negative indices from the end, an
    # empty dataset raises IndexError (not ZeroDivisionError); the sampler's
    # (epoch, index) keys carry the epoch without changing what index means.
    tds = ds.torch(task="classification", augment="default", size=16)
    n = len(tds)
    assert n == 12
    with pytest.raises(IndexError, match="out of range for 12 samples"):
        tds[n]
    with pytest.raises(IndexError):
        tds[100]
    with pytest.raises(IndexError):
        tds[-n - 1]
    assert sum(1 for _ in tds) == n
    assert torch.equal(tds[-1][0], tds[n - 1][0])
    assert torch.equal(tds[(0, 3)][0], tds[3][0])  # epoch 0 = the default epoch
    assert not torch.equal(tds[(1, 3)][0], tds[(0, 3)][0])  # a new epoch, a new augmentation
    tds.set_epoch(1)
    assert torch.equal(tds[3][0], tds[(1, 3)][0])
    with pytest.raises(IndexError):
        tds[(0, n)]
    no_boxes = Dataset(ds.categories, [Record(r.id, r.path, r.width, r.height, label=r.label) for r in ds],
                       root=ds.root)
    empty = no_boxes.torch(task="crops")
    assert len(empty) == 0
    with pytest.raises(IndexError, match="out of range for 0 samples"):
        empty[0]
    assert list(empty) == []


def test_grouped_batches_share_aspect_ratio(ds):
    tds = ds.torch(task="detection")
    groups = tds.aspect_groups()
    assert sorted(set(groups.tolist())) == [0, 1]
    sampler = GroupedBatchSampler(EpochSampler(len(tds), seed=1), groups, batch_size=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for _, i in b) == list(range(len(tds)))
    mixed = [b for b in batches if len({int(groups[i]) for _, i in b}) > 1]
    assert len(mixed) <= 1 and all(b is batches[-1] or b is batches[-2] for b in mixed)  # the leftovers only
    # under a distributed run every rank gets the same number of batches (else one waits in
    # allreduce for ever): 9 of 20 seeds gave 5 and 6 when each rank emptied its own buckets
    rng = np.random.default_rng(0)
    for seed in range(20):
        g = rng.integers(0, 2, 40)
        for drop_last in (False, True):
            counts = {len(list(GroupedBatchSampler(EpochSampler(40, seed=seed, num_replicas=2, rank=r), g, 4,
                                                   drop_last=drop_last))) for r in (0, 1)}
            assert counts == {5}, (seed, drop_last, counts)


def _dist_worker(rank: int, world: int, root: str, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds = make_dataset(__import__("pathlib").Path(root), with_masks=False, write=False)
        loader = make_loader(ds, batch_size=3, task="classification", size=8, num_workers=0)
        ids = [i for _, t in loader for i in t["image_id"]]
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
            f.write("\n".join(ids))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_ranks_see_disjoint_halves(tmp_path):
    import socket

    import torch.multiprocessing as mp

    data = tmp_path / "data"
    data.mkdir()
    make_dataset(data, with_masks=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_dist_worker, args=(2, str(data), port, str(tmp_path)), nprocs=2, join=True)
    r0 = (tmp_path / "rank0.txt").read_text().split()
    r1 = (tmp_path / "rank1.txt").read_text().split()
    assert len(r0) == len(r1) == 6
    assert not set(r0) & set(r1)
    assert sorted(r0 + r1) == sorted(f"img_{i}" for i in range(12))


def test_to_device_normalises_like_the_formula():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 8, 6, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2)
    targets = {"label": torch.tensor([1, 2]), "image_id": ["a", "b"]}
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    ref = (images.double() / 255 - mean.double().view(1, 3, 1, 1)) / std.double().view(1, 3, 1, 1)
    x, t = to_device((images, targets), "cpu")
    assert x.dtype == torch.float32 and x.is_contiguous() and x.shape == (2, 3, 8, 6)
    assert torch.allclose(x.double(), ref, atol=1e-5)
    assert t["label"].tolist() == [1, 2] and t["image_id"] == ["a", "b"]
    for dtype, tol in ((torch.float16, 5e-3), (torch.bfloat16, 3e-2)):
        y = to_device(images, "cpu", dtype=dtype, channels_last=True)
        assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(y.double(), ref, atol=tol * 4)
    plain = to_device(images, "cpu", mean=None, std=None)
    assert torch.allclose(plain, images.float() / 255)
    assert torch.equal(to_device(images, "cpu", dtype=None), images)


def test_loader_batches_are_contiguous_uint8(ds):
    loader = make_loader(ds, batch_size=4, task="classification", size=16, num_workers=0)
    assert isinstance(loader, Loader) and isinstance(loader.collate_fn, Collate)
    assert loader.pin_memory == torch.cuda.is_available()
    images, targets = next(iter(loader))
    assert images.dtype == torch.uint8 and images.is_contiguous() and images.shape == (4, 3, 16, 16)
    assert targets["label"].dtype == torch.int64  # targets come back as tensors


def test_package_level_names_load_the_torch_layer_lazily():
    import dsprep
    import dsprep.loading

    assert dsprep.to_device is dsprep.loading.to_device and dsprep.make_loader is dsprep.loading.make_loader
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dsprep.nope


def test_device_loader_on_cpu_converts_every_batch(ds):
    from dsprep.loading import DeviceLoader

    loader = make_loader(ds, batch_size=5, task="detection", augment="eval", min_size=16, num_workers=0)
    batches = list(DeviceLoader(loader, "cpu", dtype=torch.float32, mean=None, std=None))
    assert len(batches) == 3 and sum(len(b[0]) for b in batches) == 12
    raw = next(iter(make_loader(ds, batch_size=5, task="detection", augment="eval", min_size=16, num_workers=0)))
    x, targets = batches[0]
    assert x.dtype == torch.float32 and torch.allclose(x, raw[0].float() / 255)
    assert [t["image_id"] for t in targets] == [t["image_id"] for t in raw[1]]


def test_worker_init_fn_seeds_numpy_and_random_from_the_worker_seed():
    import random

    from dsprep.loading import worker_init_fn

    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    try:
        torch.manual_seed(2**33 + 7)  # the seed DataLoader gives a worker
        worker_init_fn(0)
        got = (np.random.rand(), random.random())
        np.random.seed((2**33 + 7) % 2**32)
        random.seed((2**33 + 7) % 2**32)
        assert got == (np.random.rand(), random.random())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


def test_instance_masks_follow_the_instance_mask_encoding(fixtures, tmp_path):
    """Panoptic PNGs are RGB ids (R + 256 G + 256^2 B) and Cityscapes instanceIds hold
    ``Instances.ids``: object k's mask is ``png == ids[k]``, not ``png == k + 1`` (VOC's rule)."""
    import dsprep
    from dsprep.masks import rgb_to_id

    from fakes_cityscapes import make_cityscapes

    src = fixtures / "panopticapi" / "sample_data"
    ds = dsprep.parse("coco-panoptic", src / "panoptic_examples.json", images_dir=src / "input_images")
    assert ds.info["instance_mask_encoding"] == "rgb"
    tds = ds.torch(task="detection", masks=True)
    for i in (0, len(ds) - 1):
        rec = ds.records[i]
        masks = tds[i][1]["masks"].numpy()
        ids = rgb_to_id(np.asarray(Image.open(ds.root / rec.instance_mask_path).convert("RGB")))
        assert len(masks) == len(rec.instances) > 0
        for k, sid in enumerate(rec.instances.ids):
            np.testing.assert_array_equal(masks[k], ids == sid)
        np.testing.assert_array_equal(masks.sum(axis=(1, 2)), rec.instances.area)
    # Cityscapes without RLE (masks=False): the instanceIds PNG, by id, gives the RLE's pixels
    make_cityscapes(tmp_path / "cs", cities=("bochum",), splits=("val",), frames=1)
    by_png = dsprep.parse("cityscapes", tmp_path / "cs", instances="things", masks=False)
    by_rle = dsprep.parse("cityscapes", tmp_path / "cs", instances="things", masks=True)
    assert by_png.records[0].instances.segmentation is None
    got = by_png.torch(task="detection", masks=True)[0][1]["masks"]
    want = by_rle.torch(task="detection", masks=True)[0][1]["masks"]
    assert got.sum(dim=(1, 2)).tolist() == by_png.records[0].instances.area.tolist() == [24, 27, 30, 25]
    assert torch.equal(got, want)


def test_voc_rgb_masks_are_read_by_the_loader_as_by_the_parser(fixtures):
    """datumaro writes VOC masks as RGB in the VOC palette's colours: the parser reads them,
    and so do the loaders (one reader, masks.read_label_png with the dataset's palette)."""
    from dsprep.formats import voc
    from dsprep.masks import VOC_PALETTE

    root = fixtures / "datumaro/tests/assets/voc_dataset/voc_dataset1"
    ds = voc.parse(root, workers=1).subset("train")
    rec = ds.records[0]
    rgb = np.asarray(Image.open(root / rec.mask_path))
    assert rgb.ndim == 3  # an RGB PNG, not a palette one
    # each pixel's colour, looked up in the VOC colour map by hand
    want = np.array([[[tuple(c) for c in VOC_PALETTE].index(tuple(px)) for px in row] for row in rgb], np.uint8)
    got = ds.torch(task="segmentation")[0][1]["mask"]
    assert got.dtype == torch.uint8 and got.numpy().tolist() == want.tolist()
    assert got.numpy().tolist() == voc._read_mask(root / rec.mask_path).tolist()
    obj_rgb = np.asarray(Image.open(root / rec.instance_mask_path))
    obj = np.array([[[tuple(c) for c in VOC_PALETTE].index(tuple(px)) for px in row] for row in obj_rgb])
    masks = ds.torch(task="detection", masks=True)[0][1]["masks"].numpy()
    assert masks.tolist() == [(obj == 1).tolist(), (obj == 2).tolist()]  # SegmentationObject: k = object k
    # the palette is the VOC format's: the same RGB masks under another format are refused
    other = Dataset(ds.categories, ds.records, root=root)
    with pytest.raises(MalformedFileError, match="2007_000001.png.*found mode RGB"):
        other.torch(task="segmentation")[0]


def test_unknown_instance_mask_encoding_is_refused(ds):
    ds.info["instance_mask_encoding"] = "rgba"
    with pytest.raises(UnknownNameError, match="instance_mask_encoding.*'rgb'"):
        ds.torch(task="detection", masks=True)


def test_a_segment_id_without_pixels_in_its_png_is_a_named_error(fixtures, tmp_path):
    """A panoptic PNG that disagrees with its segments_info gives no silent all-zero mask."""
    import shutil

    import dsprep

    src = fixtures / "panopticapi" / "sample_data"
    copy = tmp_path / "pan"
    shutil.copytree(src, copy)
    ds = dsprep.parse("coco-panoptic", copy / "panoptic_examples.json", images_dir=copy / "input_images")
    png = copy / ds.records[1].instance_mask_path
    rgb = np.asarray(Image.open(png).convert("RGB")).copy()
    rgb[..., 2] = 0  # what the reviewer did: 30 ids of this PNG then match nothing
    Image.fromarray(rgb).save(png)
    tds = ds.torch(task="detection", masks=True)
    assert len(tds[0][1]["masks"])  # the other images are unaffected
    with pytest.raises(InvalidAnnotationError, match=r"\.png: object \d+ \(segment id \d+\) has no pixel"):
        tds[1]
    skipping = ds.torch(task="detection", masks=True, on_error="skip")
    assert isinstance(skipping[1], Skipped)


def test_augmentation_is_seeded_by_the_sample_index(tmp_path):
    # Eight records of one and the same image: in one epoch, with one seed, only the sample
    # index can tell their augmentations apart (seeding by seed and epoch alone would give
    # eight identical crops); each sample is still reproducible.
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "same.png")
    recs = [Record(f"r{i}", "same.png", 48, 40, "train", label=1) for i in range(8)]
    tds = Dataset([Category(1, "x")], recs, root=tmp_path).torch(task="classification", augment="default",
                                                                  size=16, seed=7)
    images = [tds[(0, i)][0] for i in range(8)]
    assert len({img.numpy().tobytes() for img in images}) == 8
    assert torch.equal(tds[(0, 5)][0], images[5])
    assert not torch.equal(tds[(1, 5)][0], images[5])  # and by the epoch
