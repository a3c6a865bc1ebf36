"""`show` draws exactly what the loader returns, checked on the picture's pixels: pixels on
each object carry its box colour and mask tint, pixels away from objects are the image's own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont
from scipy import ndimage

import dsprep
from dsprep.cli import main
from dsprep.show import TINT, colour_for, font_size, header_height, show
from dsprep.synth import synth

CELL = 256


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("show")

    def make(fmt: str, size: int = 64) -> Path:
        out = base / f"{fmt}-{size}"
        if not out.exists():
            synth(fmt, out, images=6, seed=3, size=size)
        return out
    return make


def _geometry(h: int, w: int, cell: int) -> tuple[float, int, int, int, int]:
    """The documented layout: the image scaled to fit cell x cell, centred below the header."""
    s = min(cell / w, cell / h)
    dw, dh = round(w * s), round(h * s)
    return s, (cell - dw) // 2, header_height(cell) + (cell - dh) // 2, dw, dh


def _to_display(a: np.ndarray, dh: int, dw: int) -> np.ndarray:
    """Nearest-neighbour scaling of an (h, w[, c]) array to (dh, dw)."""
    h, w = a.shape[:2]
    rows = np.minimum((np.arange(dh) * h / dh).astype(int), h - 1)
    cols = np.minimum((np.arange(dw) * w / dw).astype(int), w - 1)
    return a[rows][:, cols]


class Tile:
    """The grid's one tile and the loader's sample for it, in display coordinates."""

    def __init__(self, grid_png: Path, image, cell: int = CELL):
        self.cell = cell
        self.grid = np.asarray(Image.open(grid_png).convert("RGB")).astype(np.float64)
        img = image.permute(1, 2, 0).numpy()
        self.s, self.ox, self.oy, self.dw, self.dh = _geometry(img.shape[0], img.shape[1], cell)
        self.view = self.grid[self.oy:self.oy + self.dh, self.ox:self.ox + self.dw]
        self.ref = _to_display(img, self.dh, self.dw).astype(np.float64)
        self.away = np.ones((self.dh, self.dw), bool)  # pixels with nothing drawn on them
        self.unlabelled = np.ones((self.dh, self.dw), bool)  # pixels under no name label (semantic masks)

    def mask(self, m: np.ndarray) -> np.ndarray:
        return _to_display(np.asarray(m).astype(bool), self.dh, self.dw)

    def keep_clear(self, m: np.ndarray, grow: int = 4) -> None:
        self.away &= ~ndimage.binary_dilation(m, iterations=grow)

    def keep_clear_box(self, box, label_width: int = 200) -> tuple[int, int, int, int]:
        """Exclude the box's outline and its label (above it or inside its top); returns it in display pixels."""
        x0, y0, x1, y1 = (round(v * self.s) for v in box)
        fs, g = font_size(self.cell), 4
        outline = np.zeros_like(self.away)
        outline[max(0, y0 - g):y1 + g, max(0, x0 - g):x1 + g] = True
        outline[y0 + g:max(y0 + g, y1 - g), x0 + g:max(x0 + g, x1 - g)] = False
        self.away &= ~outline
        self.away[max(0, y0 - fs - 12):y0 + fs + 12, max(0, x0 - g):max(x1, x0 + label_width) + g] = False
        return x0, y0, x1, y1

    def assert_tinted(self, region: np.ndarray, colour) -> None:
        inner = ndimage.binary_erosion(region, iterations=3) & self.unlabelled
        assert inner.sum() > 20, "object too small to check"
        expected = (1 - TINT) * np.median(self.ref[inner], 0) + TINT * np.asarray(colour)
        assert np.abs(np.median(self.view[inner], 0) - expected).max() < 12, (np.median(self.view[inner], 0),
                                                                               expected)

    def assert_untouched_away(self) -> None:
        assert self.away.sum() > 200, "no pixel away from the objects to check"
        diff = (self.view[self.away] - self.ref[self.away]).mean(0)
        assert np.abs(diff).max() < 3, diff


@pytest.mark.parametrize("fmt", ["coco", "voc", "coco-panoptic"])
@pytest.mark.parametrize("augment", [False, True])
def test_objects_carry_their_box_colour_and_mask_tint(synth_root, tmp_path, fmt, augment):
    ds = dsprep.parse(fmt, synth_root(fmt))
    k = 1
    out = show(ds, tmp_path / "g.png", ids=[ds.records[k].id], cell=CELL, augment=augment, seed=5)
    image, target = ds.torch(task="detection", augment="default" if augment else "none", seed=5, masks=True)[k]
    assert len(target["boxes"]) >= 1 and target["masks"].any()
    tile = Tile(out, image)
    for box, label, m in zip(target["boxes"].tolist(), target["labels"].tolist(), target["masks"].numpy()):
        colour = colour_for(label)  # label = the class's position among the categories
        dm = tile.mask(m)
        tile.assert_tinted(dm, colour)
        x0, y0, x1, y1 = tile.keep_clear_box(box)
        tile.keep_clear(dm)
        mid = (y0 + y1) // 2
        assert tuple(tile.view[mid, x0]) == colour and tuple(tile.view[mid, x1 - 1]) == colour  # left, right edge
    tile.assert_untouched_away()


@pytest.mark.parametrize("augment", [False, True])
def test_voc_semantic_masks_are_tinted_by_class(synth_root, tmp_path, augment):
    # used to fail with KeyError: 'boxes' (show voc --augment --task segmentation)
    ds = dsprep.parse("voc", synth_root("voc", 256))
    k, cell = 2, 512
    out = show(ds, tmp_path / "s.png", ids=[ds.records[k].id], cell=cell, augment=augment, seed=1,
               task="segmentation")
    image, target = ds.torch(task="segmentation", augment="default" if augment else "none", seed=1)[k]
    sem = target["mask"].numpy()
    tile = Tile(out, image, cell)
    dsem = _to_display(sem, tile.dh, tile.dw)
    fs = font_size(cell)
    classes = [v for v in np.unique(sem).tolist() if v not in (0, 255)]
    assert classes
    names = ds.class_names()
    for v in classes:  # each class's name sits at its pixel nearest the class's centroid
        ys, xs = np.nonzero(dsem == v)
        cy, cx = int(ys.mean()), int(xs.mean())
        tw = ImageFont.load_default(size=fs).getlength(names[v - 1]) + 8
        tile.unlabelled[max(0, cy - fs - 8):cy + fs + 8, max(0, cx - 8):cx + int(tw) + 8] = False
    tile.away &= tile.unlabelled
    for v in classes:
        tile.assert_tinted(dsem == v, colour_for(v - 1))  # VOC mask value v = category v (1-based)
        tile.keep_clear(dsem == v)
    assert (tile.away & (dsem == 0)).sum() > 200
    tile.away &= dsem != 255
    tile.assert_untouched_away()


def test_pose_person_mask_follows_the_augmented_image(fixtures, tmp_path):
    # the person's mask used to be drawn from the un-augmented polygons: a block over the
    # upper-left two thirds of the resized image
    ds = dsprep.parse("coco", fixtures / "super-gradients/tests/data/pose_minicoco")
    rid = "images/val2017/000000343706"
    k = [r.id for r in ds.records].index(rid)
    out = show(ds, tmp_path / "p.png", ids=[rid], cell=CELL, augment=True, task="detection")
    image, target = ds.torch(task="detection", augment="default", seed=0, masks=True)[k]
    tile = Tile(out, image)
    assert target["labels"].tolist() == [0]
    dm = tile.mask(target["masks"][0].numpy())
    tile.assert_tinted(dm, colour_for(0))
    tile.keep_clear(dm)
    tile.keep_clear_box(target["boxes"][0].tolist())
    tile.assert_untouched_away()


def test_small_images_are_enlarged_with_legible_labels(synth_root, tmp_path):
    ds = dsprep.parse("coco", synth_root("coco", 32))
    out = show(ds, tmp_path / "g.png", ids=[ds.records[0].id], cell=CELL)
    image, target = ds.torch(task="detection", masks=True)[0]
    tile = Tile(out, image)
    assert (tile.dw, tile.dh) == (CELL, CELL)  # 32 px -> 256 px
    for box, m in zip(target["boxes"].tolist(), target["masks"].numpy()):
        tile.keep_clear_box(box)
        tile.keep_clear(tile.mask(m))
    # an enlargement of 2x or more repeats pixels: exactly the image's own away from objects
    assert (tile.view[tile.away] == tile.ref[tile.away]).all()
    # the label of the first object is a band of its colour at least 16 px high
    colour = np.asarray(colour_for(int(target["labels"][0])))
    x0, y0 = (round(v * tile.s) for v in target["boxes"][0, :2].tolist())
    column = (tile.view[max(0, y0 - 40):y0 + 40, x0 + 2:x0 + 4] == colour).all(-1).all(-1)  # left of the text
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, column.astype(int), 0])))[::2]
    assert runs.max() >= 16


def test_cli_show_voc_segmentation_augmented(synth_root, tmp_path, capsys):
    out = tmp_path / "s.png"
    code = main(["show", "voc", str(synth_root("voc")), "--augment", "--task", "segmentation", "--out", str(out),
                 "-n", "2"])
    assert code == 0 and Image.open(out).size == (2 * 320, header_height(320) + 320)


@pytest.mark.parametrize("augment", [False, True])
def test_cityscapes_train_ids_are_tinted_and_void_left_alone(tmp_path, augment):
    # the second case of KeyError: 'boxes' (show cityscapes --augment --task segmentation);
    # 32x16 frames, so the tile also shows a small image enlarged (16x, pixels repeated)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_cityscapes import make_cityscapes

    make_cityscapes(tmp_path / "cs", splits=("val",), cities=("bochum",), frames=2)
    ds = dsprep.parse("cityscapes", tmp_path / "cs")
    k, cell = 1, 512
    out = show(ds, tmp_path / "c.png", ids=[ds.records[k].id], cell=cell, augment=augment, seed=2,
               task="segmentation")
    image, target = ds.torch(task="segmentation", augment="default" if augment else "none", seed=2,
                             mask_lut="train_id")[k]
    sem = target["mask"].numpy()
    tile = Tile(out, image, cell)
    dsem = _to_display(sem, tile.dh, tile.dw)
    names = list(ds.info["train_id_names"])
    position = {c.name: i for i, c in enumerate(ds.categories)}
    fs = font_size(cell)
    classes = [v for v in np.unique(sem).tolist() if v != 255]
    assert {"road", "car"} <= {names[v] for v in classes}
    # the class names: bands of a class's exact colour with text inside (placed near each
    # class's centroid, moved aside when crowded), left out of the pixel checks
    colours = [np.asarray(colour_for(position[names[v]])) for v in classes]
    band = np.zeros((tile.dh, tile.dw), bool)
    for c in colours:
        band |= (tile.view == c).all(-1)
    tile.unlabelled &= ~ndimage.binary_dilation(band, iterations=fs // 2 + 2)
    tile.away &= tile.unlabelled
    checked = 0
    for v in classes:
        region = (dsem == v) & tile.unlabelled
        if region.sum() > 20:  # every pixel of the class outside the labels : tinted with its colour
            colour = np.asarray(colour_for(position[names[v]]))  # a class keeps its colour across tasks
            expected = (1 - TINT) * tile.ref[region] + TINT * colour
            assert (np.abs(tile.view[region] - expected).max(-1) < 2).mean() > 0.98, names[v]
            checked += 1
        tile.keep_clear(dsem == v, grow=2)
    # augmented, the 32x16 frame is a small patch of a 512x512 crop (the rest void) and its
    # names cover most of it: the tint is checked on the plain tile, the void on both
    assert checked >= (0 if augment else 3)
    assert (tile.away & (dsem == 255)).sum() > 200  # void pixels (ego vehicle, padding): the image's own
    tile.assert_untouched_away()
