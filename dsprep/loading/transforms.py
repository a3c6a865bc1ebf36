"""Augmentation that keeps boxes, masks and keypoints on their pixels.

Every geometric transform dsprep offers (resize, crop, pad, letterbox,
horizontal flip) maps an axis-aligned source rectangle onto the output, so a
whole chain of them composes into one :class:`Plan`: *which region of the
source* (possibly reaching outside it: that is padding) *goes to an output of
which size, flipped or not*. Each op draws its random parameters once per
sample, from the generator it is handed, and only updates the plan; the plan
is then rendered once onto every kind of target by the kernels below
(``<op>_<kind>``, as torchvision names them):

- image: one resampling pass for the whole chain (torch's uint8
  antialiased bilinear kernel on an integer crop, or PIL's
  ``resize(box=...)`` where the region is padded), decoding JPEGs at reduced
  size in the DCT domain when the plan shrinks the source by 2 or more
  (:func:`fit` folds that reduction into the plan);
- boxes: the same affine map, clipped to the output; boxes left empty are
  dropped together with their labels, masks and keypoints (crowd regions are
  carried like any other box);
- masks (instance ``(N, H, W)`` or semantic ``(H, W)``): nearest-neighbour
  sampling of the same map, outside the source filled with 0 (instance) or
  255 (semantic, "ignore");
- keypoints: the same map; points that leave the output become ``v = 0``;
  a horizontal flip swaps left/right points through a flip map.

Colour jitter works on the rendered pixels only.

A sample here is a plain dict of numpy arrays (the loader builds it)::

    {"image": ImageSource | PIL.Image | ndarray (H, W, 3) uint8,
     "boxes": (N, 4) float xyxy, "labels": (N,), "iscrowd": (N,), "difficult": (N,),
     "masks": (N, H, W) uint8 | None, "mask": (H, W) | None,
     "keypoints": (N, K, 3) | None, "flip_map": (K,) int | None}

Example:
    >>> aug = Compose([RandomResizedCrop(224), HFlip()])
    >>> out = aug({"image": np.zeros((375, 500, 3), np.uint8)}, np.random.default_rng(0))
    >>> out["image"].shape
    (224, 224, 3)
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import check_choice
from .decode import ImageSource

__all__ = [
    "COCO_PERSON_FLIP_MAP", "CenterCrop", "ColorJitter", "Compose", "HFlip", "Letterbox", "Plan",
    "RandomCrop", "RandomIoUCrop", "RandomResizedCrop", "RandomScale", "Resize", "ResizeShortest",
    "Transform", "fit", "flip_map_from_names", "hflip_boxes", "hflip_image", "hflip_keypoints",
    "hflip_mask", "preset", "render", "resized_crop_boxes", "resized_crop_image",
    "resized_crop_keypoints", "resized_crop_mask",
]

# COCO person keypoints: nose, left/right eye, ear, shoulder, elbow, wrist, hip, knee, ankle.
# A horizontal flip turns each left point into the right one (the COCO keypoint order).
COCO_PERSON_FLIP_MAP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Objects narrower or shorter than this (output pixels) after clipping are empty.
_EMPTY = 1e-3


def flip_map_from_names(names: Sequence[str]) -> np.ndarray:
    """The keypoint permutation of a horizontal flip, from keypoint names.

    ``left_*`` and ``right_*`` (also ``l_``/``r_`` prefixes) swap; others stay.

    Example:
        >>> flip_map_from_names(["nose", "left_eye", "right_eye"]).tolist()
        [0, 2, 1]
    """
    names = [str(n) for n in names]
    pos = {n: i for i, n in enumerate(names)}
    swaps = (("left", "right"), ("right", "left"), ("l_", "r_"), ("r_", "l_"))
    out = np.arange(len(names))
    for i, n in enumerate(names):
        for a, b in swaps:
            if a in n:
                other = n.replace(a, b, 1)
                if other in pos:
                    out[i] = pos[other]
                    break
    return out


# --------------------------------------------------------------------------- the plan

def _snap_unit(x0: float, x1: float, size: int, out: int) -> tuple[float, float] | None:
    """Region ``[x0, x1]`` of an axis ``size`` whole pixels long shown on ``out`` pixels, snapped (see Plan.snapped)."""
    k = out / (x1 - x0)  # output pixels per source pixel
    if x0 >= 0 and x1 <= size:
        a, b = round(x0), round(x1)
        return (float(a), float(b)) if b > a else None
    if x0 < 0 and x1 > size:           # padded on both sides: [0, size] -> [p, p + size k']
        p, q = round(-x0 * k), round(size * k)
        if q <= 0:
            return None
        k2 = q / size
        return -p / k2, -p / k2 + out / k2
    if x0 < 0:                         # padded before: [0, b] -> [p, out]
        b, p = round(x1), round(-x0 * k)
        if b <= 0 or p >= out:
            return None
        k2 = (out - p) / b
        return -p / k2, float(b)
    a, q = round(x0), round((size - x0) * k)  # padded after: [a, size] -> [0, q]
    if a >= size or q <= 0:
        return None
    k2 = q / (size - a)
    return float(a), a + out / k2


def _snap_axis(x0: float, x1: float, size: int, out: int, step: int = 1,
               origin: int = 0) -> tuple[float, float] | None:
    """Region ``[x0, x1]`` of a source axis ``size`` long, snapped to the decoded pixels' edges
    ``origin + step * k`` (whole source pixels when ``step`` is 1; see Plan.snapped)."""
    if size <= 0 or x1 <= x0:
        return None
    first, last = -(origin // step), (size - origin) // step  # the grid points inside [0, size]
    base, n = origin + first * step, last - first
    if n <= 0:
        return None
    if x0 >= 0:  # an edge inside the image stays on decoded pixels (a partial last one is not used)
        x0 = max(x0, base)
    if x1 <= size:
        x1 = min(x1, base + n * step)
    r = _snap_unit((x0 - base) / step, (x1 - base) / step, n, out)
    return None if r is None else (base + r[0] * step, base + r[1] * step)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where the output comes from: source region ``(x0, y0, x1, y1)`` -> ``out_w x out_h``.

    The region may reach outside ``[0, src_w] x [0, src_h]``; that part of
    the output is padding. ``hflip`` mirrors the output last. All ops compose
    by returning a new plan, so a chain of them is rendered in one pass.

    ``reduce`` and ``origin`` say where the image's pixels come from: a JPEG
    decoded at ``1 / reduce`` of its size (see :func:`fit`), whose decoded
    pixel ``i`` covers source pixels ``[origin + reduce i, origin + reduce (i + 1))``.
    Boxes, masks and keypoints never depend on them (they are mapped from the
    source by the region alone); :meth:`snapped` puts the region's edges on
    those decoded pixels.

    Example:
        >>> p = Plan.identity(100, 50).resize(50, 25).crop(0, 0, 25, 25)
        >>> (p.x0, p.y0, p.x1, p.y1, p.out_w, p.out_h)
        (0.0, 0.0, 50.0, 50.0, 25, 25)
    """

    src_w: int
    src_h: int
    x0: float
    y0: float
    x1: float
    y1: float
    out_w: int
    out_h: int
    hflip: bool = False
    reduce: int = 1
    origin: tuple[int, int] = (0, 0)

    @classmethod
    def identity(cls, width: int, height: int) -> "Plan":
        return cls(int(width), int(height), 0.0, 0.0, float(width), float(height), int(width), int(height))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the output."""
        return self.out_w, self.out_h

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel, ``(sx, sy)``."""
        return self.out_w / (self.x1 - self.x0), self.out_h / (self.y1 - self.y0)

    def _replace(self, **changes: Any) -> "Plan":
        # dataclasses.replace, without its checks and frozen __init__ (5x its cost; plans are made per sample)
        new = object.__new__(Plan)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def resize(self, width: int, height: int) -> "Plan":
        return self._replace(out_w=max(1, int(width)), out_h=max(1, int(height)))

    def crop(self, left: float, top: float, right: float, bottom: float) -> "Plan":
        """Keep output rectangle ``[left, right) x [top, bottom)`` (beyond the output = padding)."""
        if self.hflip:  # a rectangle on the mirrored output is the mirrored rectangle before it
            left, right = self.out_w - right, self.out_w - left
        kx = (self.x1 - self.x0) / self.out_w
        ky = (self.y1 - self.y0) / self.out_h
        return self._replace(
            x0=self.x0 + left * kx, x1=self.x0 + right * kx, y0=self.y0 + top * ky,
            y1=self.y0 + bottom * ky, out_w=max(1, int(round(right - left))),
            out_h=max(1, int(round(bottom - top))))

    def snapped(self) -> "Plan":
        """The same plan adjusted so that every edge of the visible source lands on whole decoded pixels.

        Inside the source, the region's edges are rounded to whole source
        pixels (to whole reduced pixels, multiples of ``reduce`` from
        ``origin``, when the image is decoded at reduced size); where it
        reaches outside (padding), the scale and offset are nudged so that the
        image edges fall on whole output pixels. Edges move by less than a
        decoded pixel (less than an output pixel) and the output size stays.
        Then the visible part is an integer crop resampled to an integer
        rectangle, which the fast uint8 kernel can do, and boxes and masks
        follow the same nudged plan.
        """
        x = _snap_axis(self.x0, self.x1, self.src_w, self.out_w, self.reduce, self.origin[0])
        y = _snap_axis(self.y0, self.y1, self.src_h, self.out_h, self.reduce, self.origin[1])
        if x is None or y is None:
            return self
        return self._replace(x0=x[0], x1=x[1], y0=y[0], y1=y[1])

    def flip(self) -> "Plan":
        return self._replace(hflip=not self.hflip)

    def map_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes in source pixels -> output pixels (not clipped, flip applied)."""
        sx, sy = self.scale
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = (b - (self.x0, self.y0, self.x0, self.y0)) * (sx, sy, sx, sy)
        return hflip_boxes(out, self.out_w) if self.hflip else out


def _grid_reaches_padding(lo: float, hi: float, size: int, step: int, origin: int) -> bool:
    """Where the region pads an axis, the decoded pixels must end exactly at that image edge."""
    return (lo >= 0 or origin == 0) and (hi <= size or (size - origin) % step == 0)


def fit(plan: Plan, image: Any) -> Plan:
    """``plan`` put on the pixels ``image`` will be decoded to, ready to :func:`render`.

    An :class:`ImageSource` JPEG that the plan shrinks to at most a half on
    both axes is decoded in the DCT domain at 1/2, 1/4 or 1/8 (the largest
    that still leaves at least the output's pixels): the reduction and its
    grid go into the plan (``reduce``, ``origin``) and the region is snapped
    to whole reduced pixels, so that the crop is an integer one in the reduced
    image and boxes, masks and keypoints follow the same plan exactly. Any
    other image: snapped to whole source pixels (:meth:`Plan.snapped`).

    Example:
        >>> fit(Plan.identity(500, 375).resize(100, 75), np.zeros((375, 500, 3), np.uint8)).reduce
        1
    """
    if isinstance(image, ImageSource):
        s = image.reduction(max(plan.scale))
        while s > 1:
            ox, oy = image.grid(s)
            if (_grid_reaches_padding(plan.x0, plan.x1, plan.src_w, s, ox)
                    and _grid_reaches_padding(plan.y0, plan.y1, plan.src_h, s, oy)):
                return plan._replace(reduce=s, origin=(ox, oy)).snapped()
            s //= 2
    return plan.snapped()


# --------------------------------------------------------------------------- kernels

def hflip_image(image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
    """Mirror an image left-right (PIL image or ``(H, W, C)`` array)."""
    if isinstance(image, Image.Image):
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


def hflip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Mirror xyxy boxes in an image ``width`` wide: ``x -> width - x``, x1 and x2 swap.

    Example:
        >>> hflip_boxes(np.array([[1., 2., 3., 4.]]), 10).tolist()
        [[7.0, 2.0, 9.0, 4.0]]
    """
    b = np.array(boxes, copy=True).reshape(-1, 4)
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def hflip_mask(mask: np.ndarray) -> np.ndarray:
    """Mirror an ``(H, W)`` or ``(N, H, W)`` mask left-right."""
    return np.ascontiguousarray(mask[..., ::-1])


def hflip_keypoints(keypoints: np.ndarray, width: float, flip_map: Sequence[int] | None = None) -> np.ndarray:
    """Mirror ``(N, K, 3)`` keypoints; ``flip_map`` swaps left and right points.

    Unlabelled points (``v == 0``) stay at ``(0, 0)``.

    Example:
        >>> kp = np.array([[[1., 5., 2.], [2., 5., 2.], [3., 5., 0.]]])
        >>> hflip_keypoints(kp, 10, [0, 2, 1])[0, :, 0].tolist()
        [9.0, 0.0, 8.0]
    """
    kp = np.array(keypoints, copy=True)
    vis = kp[..., 2] > 0
    kp[..., 0] = np.where(vis, width - kp[..., 0], 0.0)
    if flip_map is not None and kp.shape[1]:
        kp = kp[:, np.asarray(flip_map)]
    return kp


def _valid_range(lo: float, hi: float, size: int, out: int) -> tuple[int, int]:
    """Output pixels ``[a, b)`` whose source lies inside ``[0, size]``."""
    k = (hi - lo) / out
    a = min(max(int(round(-lo / k)), 0), out)
    b = min(max(int(round((size - lo) / k)), 0), out)
    return a, max(a, b)


def resized_crop_image(image: ImageSource | Image.Image | np.ndarray, plan: Plan, fill: int | Sequence[int] = 0,
                       resample: int = Image.Resampling.BILINEAR) -> np.ndarray:
    """Render ``plan`` on an image: crop, resize (antialiased bilinear), pad with ``fill``, flip.

    An :class:`ImageSource` is decoded here, once, at the plan's reduction
    (``plan.reduce``, chosen by :func:`fit`). A region on whole decoded pixels
    and inside the image (the common case: :class:`Compose` snaps plans) is
    resampled by torch's uint8 kernel (``interpolate(antialias=True)``,
    which follows PIL's antialiased bilinear to within rounding, at a third
    of its cost); padded or fractional regions by PIL's ``resize(box=...)``.

    Returns:
        ``(H, W, 3) uint8`` array of ``plan.size`` (possibly a strided view).
    """
    s, (ox, oy) = 1, (0, 0)
    if isinstance(image, ImageSource):
        s = plan.reduce
        ox, oy = plan.origin if s > 1 else (0, 0)
        arr = image.decode(s)
    else:
        arr = np.asarray(image)
    W, H = plan.out_w, plan.out_h
    u0, u1 = _valid_range(plan.x0, plan.x1, plan.src_w, W)
    v0, v1 = _valid_range(plan.y0, plan.y1, plan.src_h, H)
    if u1 <= u0 or v1 <= v0:
        out = np.empty((H, W, *arr.shape[2:]), np.uint8)
        out[:] = _fill(fill, "RGB" if arr.ndim == 3 else "L")
        return out
    sx, sy = plan.scale
    kx, ky = 1.0 / sx, 1.0 / sy
    # the visible region in decoded pixels
    box = ((max(0.0, plan.x0 + u0 * kx) - ox) / s, (max(0.0, plan.y0 + v0 * ky) - oy) / s,
           (min(float(plan.src_w), plan.x0 + u1 * kx) - ox) / s, (min(float(plan.src_h), plan.y0 + v1 * ky) - oy) / s)
    ibox = tuple(int(round(v)) for v in box)
    integral = (all(abs(a - b) < 1e-6 for a, b in zip(box, ibox)) and min(ibox) >= 0
                and ibox[2] <= arr.shape[1] and ibox[3] <= arr.shape[0])
    if integral and resample == Image.Resampling.BILINEAR and arr.ndim == 3 and arr.shape[2] == 3:
        return _torch_resized_crop(arr, ibox, (u0, v0, u1, v1), W, H, plan.hflip, fill)
    return _pil_resized_crop(arr, box, ibox if integral else None, (u0, v0, u1, v1), W, H, plan.hflip, fill,
                             resample)


def _pil_resized_crop(arr: np.ndarray, box: tuple[float, ...], ibox: tuple[int, ...] | None,
                      dst: tuple[int, int, int, int], W: int, H: int, hflip: bool, fill: int | Sequence[int],
                      resample: int) -> np.ndarray:
    """PIL's ``resize(box=...)`` of a fractional (or padded) region onto ``dst`` of a ``W x H`` canvas."""
    im = Image.fromarray(np.ascontiguousarray(arr))
    u0, v0, u1, v1 = dst
    size = (u1 - u0, v1 - v0)
    if ibox is not None and size == (ibox[2] - ibox[0], ibox[3] - ibox[1]):
        part = im if ibox == (0, 0, im.width, im.height) else im.crop(ibox)  # pure crop: no resampling
    else:
        part = im.resize(size, resample, box=box)
    if size == (W, H):
        out = part
    else:
        out = Image.new(im.mode, (W, H), _fill(fill, im.mode))
        out.paste(part, (u0, v0))
    if hflip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def _torch_resized_crop(arr: np.ndarray, box: tuple[int, int, int, int], dst: tuple[int, int, int, int],
                        W: int, H: int, hflip: bool, fill: int | Sequence[int]) -> np.ndarray:
    """Crop ``box`` of an HWC array, resample it onto ``dst`` of a ``W x H`` canvas, flip."""
    import torch
    import torch.nn.functional as F

    x0, y0, x1, y1 = box
    u0, v0, u1, v1 = dst
    arr = arr[y0:y1, x0:x1]  # a view: the kernel's input copy below takes the crop's pixels only
    if arr.strides[1] < 0 or arr.strides[0] < 0:  # torch takes no negative strides (orientation flips)
        arr = np.ascontiguousarray(arr)
    t = _tensor(arr)
    if (x1 - x0, y1 - y0) == (W, H) and (u0, v0) == (0, 0):  # a pure crop: stay HWC
        if hflip:
            t = t.flip(1)
        return np.ascontiguousarray(t.numpy())
    # torch's uint8 bilinear kernels read a (1, 3, h, w) channels_last view of the HWC crop
    # (their fast path) and write channels_last too: the array returned is HWC.
    chw = t.contiguous().permute(2, 0, 1).unsqueeze(0)
    if (x1 - x0, y1 - y0) != (u1 - u0, v1 - v0):
        # Antialiasing only changes a shrink; enlarging, torch's plain bilinear kernel gives the
        # same bytes 12% faster (detection's resize to 512-800 enlarges most photos).
        shrink = u1 - u0 < x1 - x0 or v1 - v0 < y1 - y0
        chw = F.interpolate(chw, size=(v1 - v0, u1 - u0), mode="bilinear", align_corners=False, antialias=shrink)
    chw = chw[0]
    if (u1 - u0, v1 - v0) != (W, H):
        canvas = torch.empty((3, H, W), dtype=torch.uint8)
        canvas[:] = torch.tensor(_fill(fill, "RGB"), dtype=torch.uint8).view(3, 1, 1)
        canvas[:, v0:v1, u0:u1] = chw
        chw = canvas
    if hflip:
        chw = chw.flip(2)
    return chw.permute(1, 2, 0).numpy()


def _tensor(arr: np.ndarray) -> Any:
    """``torch.from_numpy``, quiet about read-only arrays (Pillow's): they are only read."""
    import torch

    if arr.flags.writeable:
        return torch.from_numpy(arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _fill(fill: int | Sequence[int], mode: str) -> Any:
    if isinstance(fill, (int, np.integer)):
        return (int(fill),) * 3 if mode == "RGB" else int(fill)
    return tuple(int(v) for v in fill)


def resized_crop_boxes(boxes: np.ndarray, plan: Plan) -> np.ndarray:
    """Map xyxy source boxes through ``plan`` and clip them to the output (float64)."""
    b = plan.map_boxes(boxes)
    np.clip(b[:, 0::2], 0, plan.out_w, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, plan.out_h, out=b[:, 1::2])
    return b


def _sample_indices(lo: float, hi: float, size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    # the source pixel under each output pixel centre (nearest neighbour)
    pos = lo + (np.arange(out) + 0.5) * ((hi - lo) / out)
    idx = np.floor(pos).astype(np.int64)
    valid = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, max(size - 1, 0)), valid


def resized_crop_mask(mask: np.ndarray, plan: Plan, fill: int = 255) -> np.ndarray:
    """Render ``plan`` on an ``(H, W)`` or ``(N, H, W)`` mask by nearest-neighbour sampling.

    Output pixels whose source lies outside the mask get ``fill`` (255 =
    ignore for semantic masks; 0 for instance masks).
    """
    mask = np.asarray(mask)
    ix, vx = _sample_indices(plan.x0, plan.x1, plan.src_w, plan.out_w)
    iy, vy = _sample_indices(plan.y0, plan.y1, plan.src_h, plan.out_h)
    if mask.shape[-2:] != (plan.src_h, plan.src_w):
        raise ValueError(f"mask of shape {mask.shape[-2:]} does not match the image "
                         f"({plan.src_h}, {plan.src_w})")
    if plan.src_w == 0 or plan.src_h == 0:
        out = np.full((*mask.shape[:-2], plan.out_h, plan.out_w), fill, mask.dtype)
    else:
        out = mask.take(iy, axis=-2).take(ix, axis=-1)
        if not (vx.all() and vy.all()):
            out[..., ~vy, :] = fill
            out[..., :, ~vx] = fill
    return hflip_mask(out) if plan.hflip else out


def resized_crop_keypoints(keypoints: np.ndarray, plan: Plan, flip_map: Sequence[int] | None = None) -> np.ndarray:
    """Map ``(N, K, 3)`` keypoints through ``plan``; points leaving the output get ``v = 0``."""
    kp = np.array(keypoints, dtype=np.float64, copy=True)
    if kp.size == 0:
        return kp
    sx, sy = plan.scale
    x = (kp[..., 0] - plan.x0) * sx
    y = (kp[..., 1] - plan.y0) * sy
    vis = (kp[..., 2] > 0) & (x >= 0) & (x <= plan.out_w) & (y >= 0) & (y <= plan.out_h)
    kp[..., 0] = np.where(vis, x, 0.0)
    kp[..., 1] = np.where(vis, y, 0.0)
    kp[..., 2] = np.where(vis, kp[..., 2], 0.0)
    return hflip_keypoints(kp, plan.out_w, flip_map) if plan.hflip else kp


_PER_OBJECT = ("labels", "iscrowd", "difficult", "object_index", "keypoints", "masks")


def render(sample: dict, plan: Plan, *, fill: int | Sequence[int] = 0, mask_fill: int = 255) -> dict:
    """Apply ``plan`` to every target of ``sample`` (see the module docstring).

    Returns:
        a new dict: ``image`` as an ``(H, W, 3) uint8`` array of ``plan.size``, boxes
        ``float64`` clipped, empty objects dropped from every per-object field.
    """
    out = dict(sample)
    out["image"] = resized_crop_image(sample["image"], plan, fill)
    boxes = sample.get("boxes")
    if boxes is not None:
        b = resized_crop_boxes(boxes, plan)
        keep = ((b[:, 2] - b[:, 0]) > _EMPTY) & ((b[:, 3] - b[:, 1]) > _EMPTY)
        drop = not keep.all()
        out["boxes"] = b[keep] if drop else b
        for key in _PER_OBJECT:
            v = sample.get(key)
            if v is None:
                continue
            if drop:
                v = v[keep]
            if key == "keypoints":
                v = resized_crop_keypoints(v, plan, sample.get("flip_map"))
            elif key == "masks":
                v = resized_crop_mask(v, plan, fill=0)
            out[key] = v
    if sample.get("mask") is not None:
        out["mask"] = resized_crop_mask(sample["mask"], plan, fill=mask_fill)
    return out


# --------------------------------------------------------------------------- ops

def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """``rng.uniform(low, high)``, the same number (numpy computes ``low + (high - low) * random()``)
    at a third of the cost of its argument handling."""
    return low + (high - low) * rng.random()


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``224`` -> ``(224, 224)``; ``(w, h)`` stays."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


class Transform:
    """Base class. ``plan`` draws geometric parameters; ``pixels`` changes colours.

    Subclasses draw every random number from the ``rng`` they are given, once
    per call, and never from a global generator: that is what makes an
    augmented epoch depend only on (seed, epoch, sample index).
    """

    def plan(self, plan: Plan, sample: dict, rng: np.random.Generator) -> Plan:
        return plan

    def pixels(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class HFlip(Transform):
    """Horizontal flip with probability ``p`` (keypoints swap left/right via the sample's flip map)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def plan(self, plan, sample, rng):
        return plan.flip() if rng.random() < self.p else plan


class Resize(Transform):
    """Resize to exactly ``size`` (``int`` or ``(width, height)``)."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def plan(self, plan, sample, rng):
        return plan.resize(*self.size)


class ResizeShortest(Transform):
    """Resize so that the shorter side is ``size`` (one of them, drawn, when a sequence: scale jitter).

    The longer side is capped at ``max_size`` (detectron2's ``ResizeShortestEdge``).
    """

    def __init__(self, size: int | Sequence[int], max_size: int | None = None):
        self.size = (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        self.max_size = max_size

    def plan(self, plan, sample, rng):
        s = self.size[0] if len(self.size) == 1 else self.size[int(rng.integers(len(self.size)))]
        w, h = plan.size
        k = s / min(w, h)
        if self.max_size is not None and max(w, h) * k > self.max_size:
            k = self.max_size / max(w, h)
        return plan.resize(int(round(w * k)), int(round(h * k)))


class RandomScale(Transform):
    """Resize by a factor drawn uniformly from ``scale`` (segmentation's random scale)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)):
        self.scale = (float(scale[0]), float(scale[1]))

    def plan(self, plan, sample, rng):
        k = _uniform(rng, *self.scale)
        w, h = plan.size
        return plan.resize(int(round(w * k)), int(round(h * k)))


class CenterCrop(Transform):
    """Central ``size`` crop (padded where the image is smaller)."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def plan(self, plan, sample, rng):
        cw, ch = self.size
        w, h = plan.size
        left, top = int(round((w - cw) / 2)), int(round((h - ch) / 2))
        return plan.crop(left, top, left + cw, top + ch)


class RandomCrop(Transform):
    """A random ``size`` crop; where the image is smaller it lands at a random place in a padded canvas.

    Padding is ``fill`` in the image and 255 (ignore) in a semantic mask.
    """

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def plan(self, plan, sample, rng):
        cw, ch = self.size
        w, h = plan.size
        left = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
        top = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
        return plan.crop(left, top, left + cw, top + ch)


class RandomResizedCrop(Transform):
    """torchvision's RandomResizedCrop: a crop of random area and aspect, resized to ``size``.

    Ten tries at an area fraction from ``scale`` and a log-uniform aspect
    ratio from ``ratio``; then a central crop at the clamped ratio.
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size = _size2(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def plan(self, plan, sample, rng):
        w, h = plan.size
        area = w * h
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(rng, *self.scale)
            r = math.exp(_uniform(rng, *log_r))
            cw = int(round(math.sqrt(target * r)))
            ch = int(round(math.sqrt(target / r)))
            if 0 < cw <= w and 0 < ch <= h:
                left = int(rng.integers(0, w - cw + 1))
                top = int(rng.integers(0, h - ch + 1))
                break
        else:
            in_ratio = w / h
            if in_ratio < min(self.ratio):
                cw, ch = w, int(round(w / min(self.ratio)))
            elif in_ratio > max(self.ratio):
                ch, cw = h, int(round(h * max(self.ratio)))
            else:
                cw, ch = w, h
            left, top = (w - cw) // 2, (h - ch) // 2
        return plan.crop(left, top, left + cw, top + ch).resize(*self.size)


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    a = np.prod(box[2:] - box[:2])
    b = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(a + b - inter, 1e-12)


class RandomIoUCrop(Transform):
    """SSD's random crop: some object must overlap the crop with IoU >= a drawn threshold.

    A threshold is drawn from ``min_ious`` (``None`` = keep the whole image);
    up to ``trials`` crops of ``scale`` x the image side and aspect within
    ``ratio`` are tried; a crop qualifies when at least one object centre lies
    inside it and the best IoU with such objects reaches the threshold.
    Objects then clipped to nothing are dropped by :func:`render`.
    """

    def __init__(self, min_ious: Sequence[float | None] = (None, 0.1, 0.3, 0.5, 0.7, 0.9),
                 scale: tuple[float, float] = (0.3, 1.0), ratio: tuple[float, float] = (0.5, 2.0),
                 trials: int = 40):
        self.min_ious = tuple(min_ious)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.trials = int(trials)

    def plan(self, plan, sample, rng):
        boxes = sample.get("boxes")
        threshold = self.min_ious[int(rng.integers(len(self.min_ious)))]
        if threshold is None or boxes is None or len(boxes) == 0:
            return plan
        b = plan.map_boxes(boxes)
        w, h = plan.size
        centres = (b[:, :2] + b[:, 2:]) / 2
        for _ in range(self.trials):
            cw = w * rng.uniform(*self.scale)
            ch = h * rng.uniform(*self.scale)
            if not self.ratio[0] <= cw / ch <= self.ratio[1]:
                continue
            left = rng.uniform(0, w - cw)
            top = rng.uniform(0, h - ch)
            crop = np.array([left, top, left + cw, top + ch])
            inside = ((centres[:, 0] > crop[0]) & (centres[:, 0] < crop[2])
                      & (centres[:, 1] > crop[1]) & (centres[:, 1] < crop[3]))
            if not inside.any():
                continue
            if _iou_one_to_many(crop, b[inside]).max() >= threshold:
                l, t = int(round(left)), int(round(top))
                return plan.crop(l, t, l + max(1, int(round(cw))), t + max(1, int(round(ch))))
        return plan


class Letterbox(Transform):
    """Resize keeping the aspect ratio to fit ``size``, then pad to exactly ``size``, centred."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def plan(self, plan, sample, rng):
        tw, th = self.size
        w, h = plan.size
        k = min(tw / w, th / h)
        nw, nh = max(1, int(round(w * k))), max(1, int(round(h * k)))
        left, top = (tw - nw) // 2, (th - nh) // 2
        return plan.resize(nw, nh).crop(-left, -top, tw - left, th - top)


class ColorJitter(Transform):
    """Random brightness, contrast and saturation (factors in ``[1 - x, 1 + x]``), in random order.

    PIL's ``ImageEnhance`` does the work (as torchvision's PIL backend does).
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)

    def pixels(self, image, rng):
        ops = [(ImageEnhance.Brightness, self.brightness), (ImageEnhance.Contrast, self.contrast),
               (ImageEnhance.Color, self.saturation)]
        factors = [rng.uniform(max(0.0, 1 - x), 1 + x) if x > 0 else None for _, x in ops]
        for i in rng.permutation(len(ops)):
            if factors[i] is not None:
                image = ops[i][0](image).enhance(factors[i])
        return image


class Compose:
    """Run ops in order: all geometric draws, one render, then colour ops.

    Args:
        ops: :class:`Transform` instances.
        fill: image padding value (an int or an RGB triple).
        mask_fill: semantic-mask padding value (255 = ignore).

    Example:
        >>> aug = Compose([HFlip(p=1.0)])
        >>> out = aug({"image": np.zeros((4, 8, 3), np.uint8), "boxes": np.array([[0., 0., 2., 2.]])},
        ...           np.random.default_rng(0))
        >>> out["boxes"].tolist()
        [[6.0, 0.0, 8.0, 2.0]]
    """

    def __init__(self, ops: Sequence[Transform], *, fill: int | Sequence[int] = 0, mask_fill: int = 255):
        self.ops = list(ops)
        self.fill = fill
        self.mask_fill = mask_fill
        # the ops that change pixel values after the render (found once, not per sample)
        self._colour_ops = [op for op in self.ops if type(op).pixels is not Transform.pixels]

    def __repr__(self) -> str:
        return f"Compose({self.ops!r})"

    def __call__(self, sample: dict, rng: np.random.Generator, plan: Plan | None = None) -> dict:
        """Augment ``sample`` with parameters drawn from ``rng``; ``plan`` is a starting region (crops)."""
        if plan is None:
            image = sample["image"]
            if isinstance(image, np.ndarray):
                w, h = image.shape[1], image.shape[0]
            else:
                w, h = image.size
            plan = Plan.identity(w, h)
        for op in self.ops:
            plan = op.plan(plan, sample, rng)
        plan = fit(plan, sample["image"])
        out = render(sample, plan, fill=self.fill, mask_fill=self.mask_fill)
        if self._colour_ops:
            image = Image.fromarray(out["image"])
            for op in self._colour_ops:
                image = op.pixels(image, rng)
            out["image"] = np.asarray(image)
        out["plan"] = plan
        return out


TASKS = ("classification", "crops", "detection", "keypoints", "segmentation")
PRESETS = ("default", "eval", "none")


def preset(task: str, augment: str = "default", *, size: int | Sequence[int] | None = None,
           min_size: int | Sequence[int] | None = None, max_size: int | None = 1333,
           crop_size: int | Sequence[int] | None = None, scale: tuple[float, float] | None = None,
           color_jitter: float = 0.0, iou_crop: bool = False, letterbox: int | Sequence[int] | None = None,
           fill: int | Sequence[int] = 0) -> Compose:
    """The augmentation a task gets for ``augment="default"`` (training), ``"eval"`` or ``"none"``.

    ======================  ==============================================  ==============================
    task                    default (training)                               eval
    ======================  ==============================================  ==============================
    classification          RandomResizedCrop(size=224) + HFlip               ResizeShortest(size/0.875) +
                            (+ ColorJitter(color_jitter) when > 0)            CenterCrop(size)
    crops                   Resize(size=224) + HFlip                         Resize(size)
    detection, keypoints    HFlip + ResizeShortest(min_size=640..800 step     ResizeShortest(max(min_size),
                            32, max_size=1333) (+ RandomIoUCrop if            max_size) (+ Letterbox)
                            ``iou_crop``) (+ Letterbox(letterbox))
    segmentation            RandomScale(scale=0.5..2) + RandomCrop(crop_size  nothing (full image)
                            =512, padded 255) + HFlip
    ======================  ==============================================  ==============================

    ``"none"`` decodes only. Keyword arguments left at None take the defaults above.

    Example:
        >>> preset("classification", "eval", size=224)
        Compose([ResizeShortest(size=(256,), max_size=None), CenterCrop(size=(224, 224))])
    """
    check_choice("task", task, TASKS)
    check_choice("augment preset", augment, PRESETS)
    if augment == "none":
        return Compose([], fill=fill)
    train = augment == "default"
    ops: list[Transform] = []
    if task == "classification":
        size = 224 if size is None else size
        if train:
            ops = [RandomResizedCrop(size, scale=scale or (0.08, 1.0)), HFlip()]
            if color_jitter:
                ops.append(ColorJitter(color_jitter, color_jitter, color_jitter))
        else:
            w, h = _size2(size)
            ops = [ResizeShortest(int(round(min(w, h) / 0.875))), CenterCrop(size)]
    elif task == "crops":
        size = 224 if size is None else size
        ops = [Resize(size), HFlip()] if train else [Resize(size)]
    elif task in ("detection", "keypoints"):
        sizes = tuple(range(640, 801, 32)) if min_size is None else min_size
        if train:
            ops = [HFlip()]
            if iou_crop:
                ops.append(RandomIoUCrop())
            ops.append(ResizeShortest(sizes, max_size))
        else:
            top = sizes if isinstance(sizes, (int, np.integer)) else max(sizes)
            ops = [ResizeShortest(top, max_size)]
        if letterbox is not None:
            ops.append(Letterbox(letterbox))
    elif task == "segmentation":
        if train:
            ops = [RandomScale(scale or (0.5, 2.0)), RandomCrop(512 if crop_size is None else crop_size), HFlip()]
    return Compose(ops, fill=fill)

