"""End to end: real and generated trees of every format through dsprep.load / parse into
the torch loaders, and cross-format conversions checked against the reference tools."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

import dsprep
from fakes_cityscapes import make_cityscapes


def test_coco_fixture_detection_batches_masks_sit_inside_their_boxes(fixtures):
    ds = dsprep.load("coco", split="val", root=fixtures / "super-gradients/tests/data/tinycoco")
    assert len(ds) > 0 and ds.num_objects() > 0
    tds = ds.torch(task="detection", masks=True)
    checked = 0
    for i in range(min(len(tds), 4)):
        image, target = tds[i]
        h, w = image.shape[1:]
        boxes, masks = target["boxes"], target["masks"]
        assert boxes.dtype == torch.float32 and masks.shape[1:] == (h, w)
        for box, m in zip(boxes, masks):
            ys, xs = torch.nonzero(m, as_tuple=True)
            if len(xs) == 0:
                continue
            # mask pixels lie within the box (1 px slack for polygon rasterisation)
            assert xs.min() >= box[0] - 1 and xs.max() + 1 <= box[2] + 1
            assert ys.min() >= box[1] - 1 and ys.max() + 1 <= box[3] + 1
            checked += 1
    assert checked > 0


def test_voc_fixture_through_load_and_loader(fixtures):
    root = fixtures / "labelme/examples/bbox_detection/data_dataset_voc"
    ds = dsprep.load(format="voc", root=root)
    loader = ds.loader(batch_size=2, task="detection", augment="none", num_workers=0)
    images, targets = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape[0] == 2
    rec = ds.record_by_id()[targets[0]["image_id"]]
    idx = ds.category_index()
    assert np.allclose(targets[0]["boxes"].numpy(), rec.instances.boxes, atol=1e-4)  # float32 of float64
    assert targets[0]["labels"].tolist() == [idx[int(l)] for l in rec.instances.labels]


def test_imagenette_classification_labels_follow_sorted_wnids(fixtures):
    ds = dsprep.parse("imagenet", fixtures / "imagenette")
    wnids = sorted(p.name for p in (fixtures / "imagenette/train").iterdir() if p.is_dir())
    tds = ds.subset("val").torch(task="classification", augment="eval", size=64)
    for i in range(len(tds)):
        image, target = tds[i]
        assert image.shape == (3, 64, 64)
        folder = target["image_id"].split("/")[1]
        assert int(target["label"]) == wnids.index(folder)


def test_cityscapes_masks_of_both_kinds_reach_the_loader_in_the_asked_label_space(tmp_path):
    """A trainId parse takes labelTrainIds PNGs where they exist and labelIds elsewhere:
    the loader maps each by its own kind, so every target is in train ids."""
    from PIL import Image

    from dsprep.formats import _cityscapes_labels as L

    info = make_cityscapes(tmp_path / "cs", splits=("val",), frames=2)
    to_train = np.asarray(L.id_to_train_id_lut(), np.uint8)
    label_files = sorted((info["root"] / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    ids = {p.name[:-len("_gtFine_labelIds.png")]: np.asarray(Image.open(p)) for p in label_files}
    first = label_files[0]  # only this frame gets its createTrainIdLabelImgs PNG
    Image.fromarray(to_train[ids[first.name[:-len("_gtFine_labelIds.png")]]]).save(
        str(first).replace("_labelIds.png", "_labelTrainIds.png"))
    for space, option, want in (("trainId", "auto", "train"), ("trainId", "train_id", "train"),
                                ("id", "train_id", "train"), ("id", "auto", "id")):
        ds = dsprep.load("cityscapes", split="val", root=info["root"], label_space=space)
        assert len({r.extra["mask_kind"] for r in ds}) == (2 if space == "trainId" else 1)
        tds = ds.torch(task="segmentation", augment="none", mask_lut=option)
        for i, r in enumerate(ds.records):
            got = tds[i][1]["mask"].numpy()
            base = r.path.rsplit("/", 1)[1][:-len("_leftImg8bit.png")]
            expected = to_train[ids[base]] if want == "train" else ids[base]
            assert np.array_equal(got, expected), (space, option, r.extra["mask_kind"])


def test_cityscapes_segmentation_in_train_ids_and_to_coco(tmp_path):
    info = make_cityscapes(tmp_path / "cs", frames=1)
    ds = dsprep.load("cityscapes", split="val", root=info["root"])
    tds = ds.torch(task="segmentation", mask_lut="train_id")
    _, target = tds[0]
    vals = set(torch.unique(target["mask"]).tolist())
    assert vals and vals <= set(range(19)) | {255}
    out = tmp_path / "coco"
    dsprep.convert("cityscapes", info["root"], "coco", out, images="none")
    gt = COCO(str(out / "annotations" / "instances_val.json"))
    assert len(gt.getAnnIds()) > 0
    for ann in gt.loadAnns(gt.getAnnIds()):
        m = gt.annToMask(ann)
        ys, xs = np.nonzero(m)
        x, y, w, h = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        assert m.sum() == ann["area"]


def test_voc_masks_survive_conversion_to_coco(fixtures, tmp_path):
    src = fixtures / "labelme/examples/instance_segmentation/data_dataset_voc"
    voc = dsprep.parse("voc", src, segmentation=True)
    out = tmp_path / "coco"
    report = dsprep.convert("voc", src, "coco", out, images="none")
    assert "instance mask PNGs (instance_mask_path)" not in report["lost"]  # carried as object masks
    files = sorted((out / "annotations").glob("instances_*.json"))
    gt = COCO(str(files[0]))
    with_masks = [a for a in gt.loadAnns(gt.getAnnIds()) if a["segmentation"]]
    assert with_masks and len(with_masks) == voc.num_objects()
    assert all(gt.annToMask(a).sum() > 0 for a in with_masks)


def test_cityscapes_and_panoptic_to_voc_keep_objects_and_masks(fixtures, tmp_path):
    info = make_cityscapes(tmp_path / "cs", frames=1)
    report = dsprep.convert("cityscapes", info["root"], "voc", tmp_path / "cs-voc", images="none")
    voc = dsprep.parse("voc", tmp_path / "cs-voc")
    assert report["objects"] == voc.num_objects() > 0
    # labelIds hold category ids: mapped to VOC indices (position + 1), one class mask per image
    assert not any("mask PNGs" in k for k in report["lost"])
    assert sorted(p.name for p in (tmp_path / "cs-voc/SegmentationClass").iterdir()) == \
        sorted(f"{Path(r.path).stem}.png" for r in voc) and all(r.extra["segmented"] == 1 for r in voc)
    src = fixtures / "panopticapi/sample_data/panoptic_examples.json"
    dsprep.convert("coco-panoptic", src, "voc", tmp_path / "p-voc", images="none")
    pv = dsprep.parse("voc", tmp_path / "p-voc", segmentation=True)
    assert pv.num_objects() == 50 and len(list((tmp_path / "p-voc/SegmentationObject").iterdir())) == 2


def test_imagenet_to_panoptic_reads_sizes_and_a_record_without_one_is_named(fixtures, tmp_path):
    import json

    from dsprep.conversion import write_dataset

    report = dsprep.convert("imagenet", fixtures / "imagenette", "coco-panoptic", tmp_path / "p", images="none")
    assert report["lost"]["image-level labels"] == 56  # said, not dropped silently
    images = json.loads((tmp_path / "p" / "annotations" / "panoptic_train.json").read_text())["images"]
    assert len(images) == 36 and all(i["width"] > 0 and i["height"] > 0 for i in images)
    ds = dsprep.parse("imagenet", fixtures / "imagenette")  # a plain parse reads no sizes
    with pytest.raises(dsprep.InvalidAnnotationError, match="has no image size"):
        write_dataset(ds, "coco-panoptic", tmp_path / "q", images="none")
    assert not (tmp_path / "q").exists()
