"""Fake ImageNet/ILSVRC trees for the tests: tiny images in the real layouts.

Each ``make_*`` writes a layout under a folder and returns what a correct
parser must find, so tests compare against the generator, not a constant.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

# Five real wnids (their ILSVRC2012_IDs from map_clsloc.txt; not in sorted order).
SYNSETS = {
    "n02119789": (1, "kit fox, Vulpes macrotis"),
    "n02100735": (2, "English setter"),
    "n01751748": (490, "sea snake"),
    "n01440764": (449, "tench, Tinca tinca"),
    "n03000684": (536, "chain saw, chainsaw"),
}
SORTED = sorted(SYNSETS)  # the class index order


def jpeg_bytes(size: int = 8, mode: str = "RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), color if mode == "RGB" else 128).save(buf, "JPEG")
    return buf.getvalue()


def png_bytes(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (0, 90, 0)).save(buf, "PNG")
    return buf.getvalue()


def make_tree(root: Path, per_class: dict[str, int] | None = None, splits=("train", "val"),
              size: int = 8) -> dict[str, dict[str, list[str]]]:
    """``root/<split>/<wnid>/<wnid>_<k>.JPEG``; returns {split: {wnid: [file names]}}.

    The first image of the first class is grayscale and the second is a PNG
    named ``.JPEG`` (both occur in ILSVRC2012 train).
    """
    per_class = per_class or {w: 2 + i % 2 for i, w in enumerate(SORTED)}
    out: dict[str, dict[str, list[str]]] = {}
    rgb, gray, png = jpeg_bytes(size), jpeg_bytes(size, "L"), png_bytes(size)
    for split in splits:
        base = root / split if split else root
        out[split] = {}
        for ci, (wnid, n) in enumerate(per_class.items()):
            d = base / wnid
            d.mkdir(parents=True, exist_ok=True)
            names = []
            for k in range(n):
                name = f"{wnid}_{k + 1}.JPEG"
                data = gray if (ci, k) == (0, 0) else png if (ci, k) == (0, 1) else rgb
                (d / name).write_bytes(data)
                names.append(name)
            out[split][wnid] = names
    return out


def make_flat_val(folder: Path, labels: list[str]) -> list[str]:
    """``ILSVRC2012_val_%08d.JPEG`` for each wnid in ``labels`` (1-based numbering)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes()
    names = []
    for i in range(1, len(labels) + 1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        (folder / name).write_bytes(data)
        names.append(name)
    return names


def write_devkit(root: Path, labels: list[str], with_map: bool = True) -> None:
    """The devkit ground truth (ILSVRC2012_IDs in val order) and ``map_clsloc.txt``."""
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{SYNSETS[w][0]}\n" for w in labels))
    if with_map:
        # map_clsloc.txt order is ILSVRC2012_ID order, no trailing newline (as the real one)
        rows = sorted((i, w, words.split(",")[0].replace(" ", "_")) for w, (i, words) in SYNSETS.items())
        (root / "map_clsloc.txt").write_text("\n".join(f"{w} {i} {n}" for i, w, n in rows))


def write_meta_mat(path: Path) -> None:
    """A devkit-shaped ``meta.mat``: the leaf synsets plus one non-leaf that must be ignored."""
    import numpy as np
    import scipy.io

    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
              ("num_children", "O"), ("children", "O"), ("wordnet_height", "O"), ("num_train_images", "O")]
    rows = [(i, w, words, "", 0, np.zeros((1, 0)), 0, 1300) for w, (i, words) in SYNSETS.items()]
    rows.append((1001, "n00001740", "entity", "", 2, np.array([[1, 2]]), 19, 0))
    arr = np.array(rows, dtype=fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"synsets": arr})


def make_kaggle(root: Path, seed: int = 0) -> dict:
    """The Kaggle "ImageNet Object Localization" layout.

    ``ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/}``, ``LOC_val_solution.csv``
    (rows shuffled, two boxes on one image), ``LOC_synset_mapping.txt`` and
    train box XMLs under ``ILSVRC/Annotations/CLS-LOC/train/<wnid>/``.
    Returns the expected val labels and boxes.
    """
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    make_tree(data, {w: 2 for w in SORTED}, splits=("train",))
    val_labels = [SORTED[i % len(SORTED)] for i in range(7)]
    names = make_flat_val(data / "val", val_labels)
    (data / "test").mkdir()
    (data / "test" / "ILSVRC2012_test_00000001.JPEG").write_bytes(jpeg_bytes())
    boxes = {}
    rows = []
    for i, (name, w) in enumerate(zip(names, val_labels)):
        stem = name[:-5]
        objs = [(w, [i, 2 * i, i + 10, 2 * i + 7])]
        if i == 3:
            objs.append((w, [0, 0, 5, 5]))
        boxes[stem] = objs
        rows.append(f"{stem}," + " ".join(f"{o} {' '.join(map(str, b))}" for o, b in objs) + " ")
    random.Random(seed).shuffle(rows)
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text(
        "\n".join(f"{w} {SYNSETS[w][1]}" for w in SORTED))
    ann = root / "ILSVRC" / "Annotations" / "CLS-LOC" / "train" / SORTED[1]
    ann.mkdir(parents=True)
    stem = f"{SORTED[1]}_1"
    (ann / f"{stem}.xml").write_text(loc_xml(stem, SORTED[1], [(SORTED[1], 0, 1, 7, 8)], 8, 8))
    return {"val_labels": dict(zip([n[:-5] for n in names], val_labels)), "val_boxes": boxes,
            "xml_stem": stem}


def loc_xml(stem: str, folder: str, objects, width: int, height: int) -> str:
    """An ILSVRC LOC XML (VOC-like; filename without extension, name = wnid)."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects)
    return (f"<annotation><folder>{folder}</folder><filename>{stem}</filename>"
            f"<source><database>ILSVRC_2012</database></source>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objs}</annotation>")
