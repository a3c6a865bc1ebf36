"""Augmentation keeps boxes, masks and keypoints on their pixels."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from dsprep.loading import transforms as T
from dsprep.loading.decode import ImageSource


def _scene(w: int = 64, h: int = 48, boxes=((8, 6, 30, 40), (36, 10, 60, 22)), background: int = 0,
           colours=((200, 100, 50), (200, 150, 50))):
    """An image with two solid rectangles, their boxes, instance masks and a semantic mask."""
    boxes = np.array(boxes, np.float64)
    img = np.full((h, w, 3), background, np.uint8)
    masks = np.zeros((2, h, w), np.uint8)
    sem = np.zeros((h, w), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        img[y0:y1, x0:x1] = colours[k]
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


def test_uniform_draws_what_numpy_uniform_draws():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for low, high in ((0.08, 1.0), (np.log(3 / 4), np.log(4 / 3)), (0.5, 2.0), (-3.0, 7.5)):
        for _ in range(50):
            assert T._uniform(a, low, high) == b.uniform(low, high)


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


# --------------------------------------------------------------------------- reduced (DCT-domain) decoding

def _gradient_jpeg(path, w: int, h: int, orientation: int = 1) -> tuple[str, np.ndarray]:
    """A JPEG whose oriented pixels are a linear ramp in x (red) and y (green): a region
    misplaced by d source pixels shifts the mean of a render by about d levels."""
    y, x = np.mgrid[0:h, 0:w]
    oriented = np.stack([x * 250 / w, y * 250 / h, np.full((h, w), 90.0)], -1).round().astype(np.uint8)
    im = Image.fromarray(_undo_orientation(oriented, orientation))  # as the camera stored them
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
    return str(path), oriented


def _undo_orientation(oriented: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels that EXIF ``orientation`` turns into ``oriented`` (checked against Pillow below)."""
    for stored in (oriented, oriented.transpose(1, 0, 2)):
        for cand in (stored, stored[:, ::-1], stored[::-1], stored[::-1, ::-1]):
            im = Image.fromarray(np.ascontiguousarray(cand))
            exif = im.getexif()
            exif[0x0112] = orientation
            im.info["exif"] = exif.tobytes()
            if np.array_equal(np.asarray(ImageOps.exif_transpose(im)), oriented):
                return np.ascontiguousarray(cand)
    raise AssertionError(orientation)


def test_fit_reduces_exactly_when_the_output_is_at_most_half(tmp_path, monkeypatch):
    path, _ = _gradient_jpeg(tmp_path / "g.jpg", 256, 192)
    asked = []
    decode = ImageSource.decode
    monkeypatch.setattr(ImageSource, "decode", lambda self, reduce=1: asked.append(reduce) or decode(self, reduce))
    base = T.Plan.identity(256, 192)
    cases = [
        (base.resize(128, 96), 2),                        # exactly half on both axes
        (base.resize(129, 96), 1),                        # x: more than half
        (base.resize(128, 97), 1),                        # y: more than half
        (base.crop(10, 20, 210, 120).resize(100, 50), 2),
        (base.crop(10, 20, 210, 120).resize(50, 25), 4),
        (base.crop(10, 20, 210, 120).resize(25, 12), 8),  # 25/200 and 12/100 <= 1/8
        (base.crop(10, 20, 210, 120).resize(26, 12), 4),
        (base.resize(512, 384), 1),                       # enlarged
    ]
    for plan, want in cases:
        fitted = T.fit(plan, ImageSource(path))
        assert fitted.reduce == want, (plan, want)
        out = T.render({"image": ImageSource(path)}, fitted)
        assert out["image"].shape == (plan.out_h, plan.out_w, 3)
    assert asked == [want for _, want in cases]  # and that is the decode each render did
    # an already decoded image is never reduced
    assert T.fit(base.resize(32, 24), np.zeros((192, 256, 3), np.uint8)).reduce == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_render_lies_on_the_full_render_every_orientation(tmp_path, orientation):
    """The reduced decode's grid (a mirrored axis of odd length starts with the partial pixel)
    is folded into the plan exactly: rendered from the 1/2, 1/4 or 1/8 decode or from the full
    decode, the same plan gives the same picture (within the filters' difference), never one
    shifted by a source pixel (about one level of the ramp)."""
    path, _ = _gradient_jpeg(tmp_path / "g.jpg", 251, 190, orientation)
    src = ImageSource(path)
    full = src.decode()
    W, H = src.size
    base = T.Plan.identity(W, H)
    for plan, s in ((base.resize(W // 2, H // 2), 2), (base.resize(W // 4, H // 4), 4),
                    (base.crop(13.3, 7.7, 180.2, 150.6).resize(40, 34), 4),
                    (base.crop(5, 3, W - 4, H - 2).resize((W - 9) // 8, (H - 5) // 8), 8)):
        fitted = T.fit(plan, ImageSource(path))
        assert fitted.reduce == s and fitted.origin == ImageSource(path).grid(s)
        for lo, hi, origin, size in ((fitted.x0, fitted.x1, fitted.origin[0], W),
                                     (fitted.y0, fitted.y1, fitted.origin[1], H)):
            assert (lo - origin) % s == 0 and (hi - origin) % s == 0  # on whole reduced pixels: torch's kernel
            assert 0 <= lo < hi <= size  # inside the image: no padding appears (no partial pixel is used)
        reduced = T.resized_crop_image(ImageSource(path), fitted).astype(float)
        ref = T.resized_crop_image(full, fitted).astype(float)
        shift = (reduced - ref)[..., :2].mean(axis=(0, 1))
        assert np.abs(shift).max() < 0.4, (s, shift)
        assert np.abs(reduced - ref).mean() < 0.8


def test_padding_needs_the_reduced_pixels_to_end_at_the_image_edge(tmp_path):
    path, _ = _gradient_jpeg(tmp_path / "g.jpg", 251, 190)
    # letterboxed to a quarter: the right edge (251) is not a multiple of 4 or 2, the decode stays whole
    plan = T.Plan.identity(251, 190).crop(-20, -10, 271, 200).resize(73, 53)
    assert T.fit(plan, ImageSource(path)).reduce == 1
    path, _ = _gradient_jpeg(tmp_path / "h.jpg", 256, 190)  # 256 and 190 are even: 1/2 fits both edges
    plan = T.Plan.identity(256, 190).crop(-20, -10, 276, 200).resize(74, 53)
    fitted = T.fit(plan, ImageSource(path))
    assert fitted.reduce == 2
    reduced = T.resized_crop_image(ImageSource(path), fitted).astype(float)
    ref = T.resized_crop_image(ImageSource(path).decode(), fitted).astype(float)
    assert np.abs(reduced - ref).mean() < 0.8 and np.abs((reduced - ref)[..., :2].mean(axis=(0, 1))).max() < 0.4


def _objects_jpeg(path, w: int, h: int, orientation: int) -> dict:
    """A dark photo with two bright rectangles (boxes, instance masks, a semantic mask and
    corner keypoints in the oriented image), stored with EXIF ``orientation``."""
    scene = _scene(w, h, ((40, 30, 200, 150), (230, 100, 390, 280)), 20, ((230, 120, 40), (230, 220, 40)))
    im = Image.fromarray(_undo_orientation(scene.pop("image"), orientation))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())
    kps = np.array([[[b[0] + 0.5, b[1] + 0.5, 2], [b[2] - 0.5, b[3] - 0.5, 2]] for b in scene["boxes"]])
    return {**scene, "iscrowd": np.array([False, False]), "keypoints": kps, "flip_map": np.array([1, 0])}


@pytest.mark.parametrize("orientation", [1, 3, 6])
def test_targets_after_reduced_decode_equal_those_without_it(tmp_path, orientation):
    targets = _objects_jpeg(tmp_path / "o.jpg", 403, 301, orientation)
    full = ImageSource(tmp_path / "o.jpg").decode()
    aug = T.Compose([T.RandomResizedCrop((96, 72), scale=(0.6, 1.0)), T.HFlip()])
    reductions = set()
    for seed in range(6):
        out = aug({"image": ImageSource(tmp_path / "o.jpg"), **targets}, np.random.default_rng(seed))
        plan = out["plan"]
        reductions.add(plan.reduce)
        same = T.render({"image": full, **targets}, plan)  # the same plan from the full decode
        for key in ("boxes", "masks", "mask", "keypoints", "labels"):
            np.testing.assert_array_equal(out[key], same[key], err_msg=key)
        assert np.abs(out["image"].astype(int) - same["image"]).mean() < 3.0
        # and they lie on the reduced decode's pixels: each box holds its object's colour
        r, g = out["image"][..., 0].astype(int), out["image"][..., 1].astype(int)
        for box, label in zip(out["boxes"], out["labels"]):
            ys, xs = np.nonzero((r > 150) & (np.abs(g - (120 + 100 * label)) < 25))
            found = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            np.testing.assert_allclose(found, box, atol=1.25)
    assert reductions == {2}  # 96 of >= 312 pixels: every sample took the 1/2 decode


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


def test_resampling_is_torchs_antialiased_bilinear_exactly():
    """Shrinking, enlarging, or both at once: the bytes of torch's antialiased bilinear
    kernel (enlarging takes the plain bilinear kernel, which gives the same bytes)."""
    import torch
    import torch.nn.functional as F

    arr = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    for plan in (T.Plan.identity(80, 60).crop(10, 5, 70, 55).resize(24, 20),   # shrink
                 T.Plan.identity(80, 60).resize(120, 90),                      # enlarge
                 T.Plan.identity(80, 60).resize(40, 90)):                      # one of each
        box = [int(v) for v in (plan.x0, plan.y0, plan.x1, plan.y1)]
        crop = torch.from_numpy(arr[box[1]:box[3], box[0]:box[2]].copy()).permute(2, 0, 1)[None]
        want = F.interpolate(crop, size=(plan.out_h, plan.out_w), mode="bilinear", antialias=True)
        np.testing.assert_array_equal(T.resized_crop_image(arr, plan), want[0].permute(1, 2, 0).numpy())


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
