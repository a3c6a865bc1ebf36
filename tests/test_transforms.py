"""Augmentation keeps boxes, masks and keypoints on their pixels."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dsprep.loading import transforms as T
from dsprep.loading.decode import ImageSource


def _scene(w: int = 64, h: int = 48):
    """An image with two solid rectangles, their boxes, instance masks and a semantic mask."""
    boxes = np.array([[8, 6, 30, 40], [36, 10, 60, 22]], np.float64)
    img = np.zeros((h, w, 3), np.uint8)
    masks = np.zeros((2, h, w), np.uint8)
    sem = np.zeros((h, w), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        img[y0:y1, x0:x1] = (200, 100 + 50 * k, 50)
        masks[k, y0:y1, x0:x1] = 1
        sem[y0:y1, x0:x1] = k + 1
    return {"image": img, "boxes": boxes, "labels": np.array([0, 1]), "iscrowd": np.array([False, True]),
            "difficult": np.array([False, False]), "masks": masks, "mask": sem}


def _mask_box(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hflip_boxes_kernel():
    assert T.hflip_boxes(np.array([[1., 2., 3., 4.]]), 10).tolist() == [[7.0, 2.0, 9.0, 4.0]]
    twice = T.hflip_boxes(T.hflip_boxes(np.array([[1.5, 2., 3.25, 4.]]), 10), 10)
    assert twice.tolist() == [[1.5, 2.0, 3.25, 4.0]]


def test_boxes_of_flipped_image_equal_flipped_boxes():
    s = _scene()
    out = T.Compose([T.HFlip(p=1.0)])(s, np.random.default_rng(0))
    img = np.asarray(out["image"])
    np.testing.assert_array_equal(img, s["image"][:, ::-1])
    np.testing.assert_allclose(out["boxes"], T.hflip_boxes(s["boxes"], 64))
    for k in range(2):  # the coloured pixels sit exactly inside the flipped boxes
        colour = s["image"][int(s["boxes"][k, 1]), int(s["boxes"][k, 0])]
        where = np.all(img == colour, axis=-1)
        assert _mask_box(where) == out["boxes"][k].tolist()
        np.testing.assert_array_equal(out["masks"][k], s["masks"][k][:, ::-1])


OPS = [
    ("hflip", [T.HFlip(p=1.0)]),
    ("resize", [T.Resize((37, 29))]),
    ("shortest", [T.ResizeShortest((20, 30, 70), max_size=90)]),
    ("scale", [T.RandomScale((0.5, 2.0))]),
    ("random_crop", [T.RandomCrop(40)]),
    ("random_crop_padded", [T.RandomCrop((80, 70))]),
    ("center_crop", [T.CenterCrop(30)]),
    ("rrc", [T.RandomResizedCrop(32, scale=(0.3, 1.0))]),
    ("iou_crop", [T.RandomIoUCrop(min_ious=(0.1, 0.3, 0.5))]),
    ("letterbox", [T.Letterbox(96)]),
    ("chain", [T.HFlip(), T.RandomIoUCrop(), T.ResizeShortest((40, 56), 100), T.Letterbox((100, 80)),
               T.RandomCrop(64)]),
]


@pytest.mark.parametrize("name,ops", OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("seed", range(6))
def test_mask_and_box_agree_after_every_transform(name, ops, seed):
    s = _scene()
    out = T.Compose(ops)(s, np.random.default_rng(seed))
    h, w = out["image"].shape[:2]
    n = len(out["boxes"])
    # every per-object field followed the same selection
    assert len(out["labels"]) == len(out["iscrowd"]) == len(out["masks"]) == n
    assert out["masks"].shape[1:] == (h, w) and out["mask"].shape == (h, w)
    b = out["boxes"]
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
    for k in range(n):
        m = out["masks"][k]
        assert m.any(), f"object {k} kept with an empty mask"
        # nearest sampling of a rectangle: its bbox is the box, to within one output pixel
        np.testing.assert_allclose(_mask_box(m), b[k], atol=1.0)
        lab = int(out["labels"][k])
        assert (out["mask"][m.astype(bool)] == lab + 1).all()  # semantic mask moved identically
    # an object whose box vanished has no pixels left in the semantic mask either
    for lab in set(range(2)) - set(out["labels"].tolist()):
        assert not (out["mask"] == lab + 1).any()


def test_crop_drops_empty_objects_with_everything_attached():
    s = _scene()
    s["keypoints"] = np.array([[[10, 10, 2]], [[40, 15, 2]]], np.float64)
    plan = T.Plan.identity(64, 48).crop(0, 0, 32, 48)  # keeps the first rectangle only
    out = T.render(s, plan)
    assert out["boxes"].tolist() == [[8.0, 6.0, 30.0, 40.0]]
    assert out["labels"].tolist() == [0] and out["iscrowd"].tolist() == [False]
    assert out["masks"].shape == (1, 48, 32) and out["keypoints"].shape == (1, 1, 3)
    # a crowd region is carried like any box when it survives
    out2 = T.render(s, T.Plan.identity(64, 48).crop(32, 0, 64, 48))
    assert out2["iscrowd"].tolist() == [True] and out2["boxes"].tolist() == [[4.0, 10.0, 28.0, 22.0]]


def test_keypoint_left_right_swap_on_flip():
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
             "left_knee", "right_knee", "left_ankle", "right_ankle"]
    assert tuple(T.flip_map_from_names(names).tolist()) == T.COCO_PERSON_FLIP_MAP
    kp = np.zeros((1, 17, 3))
    kp[0, 1] = (10, 5, 2)   # left eye at x=10
    kp[0, 2] = (14, 5, 1)   # right eye at x=14
    kp[0, 0] = (0, 0, 0)    # nose unlabelled
    s = {"image": np.zeros((20, 40, 3), np.uint8), "boxes": np.array([[5., 0., 20., 10.]]),
         "labels": np.array([0]), "keypoints": kp, "flip_map": np.array(T.COCO_PERSON_FLIP_MAP)}
    out = T.Compose([T.HFlip(p=1.0)])(s, np.random.default_rng(0))
    k = out["keypoints"][0]
    # what was the right eye (x=14) is now the left eye, mirrored: 40 - 14
    assert k[1].tolist() == [26.0, 5.0, 1.0]
    assert k[2].tolist() == [30.0, 5.0, 2.0]
    assert k[0].tolist() == [0.0, 0.0, 0.0]  # unlabelled stays (0, 0, 0)


def test_keypoints_leaving_the_crop_become_unlabelled():
    kp = np.array([[[5., 5., 2.], [50., 5., 2.]]])
    s = {"image": np.zeros((20, 60, 3), np.uint8), "boxes": np.array([[0., 0., 60., 20.]]),
         "labels": np.array([0]), "keypoints": kp}
    out = T.render(s, T.Plan.identity(60, 20).crop(0, 0, 30, 20).resize(15, 10))
    assert out["keypoints"][0].tolist() == [[2.5, 2.5, 2.0], [0.0, 0.0, 0.0]]


def test_segmentation_crop_pads_with_ignore():
    s = {"image": np.full((10, 10, 3), 9, np.uint8), "mask": np.ones((10, 10), np.uint8)}
    out = T.Compose([T.RandomCrop(16)])(s, np.random.default_rng(3))
    img, m = np.asarray(out["image"]), out["mask"]
    assert m.shape == (16, 16) and img.shape == (16, 16, 3)
    assert (m == 1).sum() == 100 and (m == 255).sum() == 16 * 16 - 100
    np.testing.assert_array_equal(img[..., 0] == 9, m == 1)  # image pixels and mask pixels coincide


def test_same_generator_same_augmentation():
    ops = T.preset("detection", "default", min_size=(32, 40, 48), max_size=80, iou_crop=True)
    a = ops(_scene(), np.random.default_rng(7))
    b = ops(_scene(), np.random.default_rng(7))
    np.testing.assert_array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    sizes = {ops(_scene(), np.random.default_rng(s))["image"].shape for s in range(12)}
    assert len(sizes) > 1  # the scale jitter does draw


def test_random_resized_crop_output_and_region():
    s = {"image": np.zeros((375, 500, 3), np.uint8)}
    for seed in range(20):
        out = T.Compose([T.RandomResizedCrop(224)])(s, np.random.default_rng(seed))
        p = out["plan"]
        assert out["image"].shape == (224, 224, 3)
        assert 0 <= p.x0 < p.x1 <= 500 and 0 <= p.y0 < p.y1 <= 375
        area = (p.x1 - p.x0) * (p.y1 - p.y0) / (500 * 375)
        assert 0.07 <= area <= 1.0
        assert 3 / 4 - 0.02 <= (p.x1 - p.x0) / (p.y1 - p.y0) <= 4 / 3 + 0.02


def test_draft_decoding_at_crop_scale_matches_full_decode(tmp_path):
    y, x = np.mgrid[0:256, 0:256]
    arr = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.jpg", quality=95)
    plan = T.Plan.identity(256, 256).crop(0, 0, 256, 128).resize(64, 32)  # 1/4 scale
    fast = np.asarray(T.resized_crop_image(ImageSource(tmp_path / "g.jpg"), plan)).astype(int)
    full = np.asarray(T.resized_crop_image(np.asarray(Image.open(tmp_path / "g.jpg").convert("RGB")), plan))
    assert fast.shape == (32, 64, 3)
    assert np.abs(fast - full.astype(int)).mean() < 2.0  # same picture, decoded 4x smaller


def test_colour_jitter_changes_pixels_not_geometry():
    s = _scene()
    out = T.Compose([T.ColorJitter(0.5, 0.5, 0.5)])(s, np.random.default_rng(1))
    assert out["boxes"].tolist() == s["boxes"].tolist()
    assert not np.array_equal(np.asarray(out["image"]), s["image"])


def test_presets_and_unknown_names():
    assert [type(o).__name__ for o in T.preset("classification").ops] == ["RandomResizedCrop", "HFlip"]
    assert [type(o).__name__ for o in T.preset("classification", "eval").ops] == ["ResizeShortest", "CenterCrop"]
    assert [type(o).__name__ for o in T.preset("segmentation").ops] == ["RandomScale", "RandomCrop", "HFlip"]
    assert T.preset("detection", "none").ops == []
    with pytest.raises(ValueError, match="Did you mean 'detection'"):
        T.preset("detecton")
    with pytest.raises(ValueError, match="Valid values are: default, eval, none"):
        T.preset("detection", "train")


def test_torch_resampling_follows_pil():
    y, x = np.mgrid[0:60, 0:80]
    arr = np.stack([x * 3, y * 4, (x + y) * 2], -1).astype(np.uint8)  # smooth: no wrap-around edges
    for plan in (T.Plan.identity(80, 60).crop(10, 5, 70, 55).resize(24, 20),   # shrink: antialiased
                 T.Plan.identity(80, 60).resize(120, 90)):                     # enlarge
        got = T.resized_crop_image(arr, plan).astype(int)
        box = (plan.x0, plan.y0, plan.x1, plan.y1)
        ref = np.asarray(Image.fromarray(arr).resize(plan.size, Image.BILINEAR, box=box)).astype(int)
        assert got.shape == ref.shape
        assert np.abs(got - ref).mean() < 0.5 and np.abs(got - ref).max() <= 2
