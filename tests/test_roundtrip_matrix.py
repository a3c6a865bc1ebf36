"""Issue 12: the round-trip matrix over every ordered pair of formats in ``dsprep.formats.FORMATS``.

Each format module declares ``HOLDS``, the fields of ``dsprep.formats.FIELDS`` its writer keeps of
any dataset. From those the expectations follow:

- ``A -> B``: every field the source has and B holds comes back equal, field by field; every field
  the source has that B does not hold either comes back equal anyway or is counted in the run's
  ``lost`` report under a key naming it (``dsprep.formats.LOST_WORDS``): never silently gone; the
  report counts the images that read back (what ``convert``'s summary prints);
- ``A -> B -> A``: what both hold comes back equal to the source;
- ``A -> B -> C``, C the richest format holding all A holds: what A and B hold comes back in C.

Sources: one generated dataset (overlapping splits, decimals such as 58.04, 38.65 and 96.71, a
corner float64 ``x + w`` misses, a unicode file name, crowd, an empty image, masks, keypoints, image
labels, category ids with gaps and supercategories), written by each format's writer and parsed
back; Cityscapes from its generated tree (tests/fakes_cityscapes.py), since its writer keeps nothing
of another format's records; and real files written by other tools (``FIXTURE_SOURCES``). Every
conversion goes through :func:`dsprep.conversion.write_dataset`, as ``dsprep convert`` does.
Images are matched by file name, or, where a format renames every image (Cityscapes), by the image
file they link to; objects by annotation id where both keep ids, else in order.

The table "What survives which conversion" in docs/records.md is generated from this module's test
data (:func:`observe`: the generated dataset converted to each format and read back, field by
field), written by ``python scripts/gen_roundtrip_table.py``; ``test_the_records_doc_table_is_
generated_from_the_test_data`` fails when the committed table differs from what the data gives.

How a new format joins (yolo, labelme, cvat, lvis, kitti...)
-----------------------------------------------------------
1. Its module declares ``HOLDS = frozenset({...})`` (words of ``dsprep.formats.FIELDS``) and its
   writer counts in ``report["lost"]`` what it drops, under keys naming the field
   (``LOST_WORDS``). Its line in the registry (``dsprep/formats/__init__.py``) is all this file
   needs: every ordered pair with the other formats, generated and fixture sources, is made from
   ``FORMATS``. ``HOLDS`` must be exactly what the generated data keeps through the writer and
   the reader (the table test says which field differs).
2. Optional, one line each, in the dicts below:
   ``FIXTURE_SOURCES["yolo"] = ("<path under ../shared/fixtures>", {parse options})`` for a real
   tree as a source; ``SOURCE_MAKERS["fmt"] = lambda d: ...`` only when its writer cannot hold the
   generated dataset at all (Cityscapes). A module-level ``parse_options_for(target)`` hook in the
   format module gives the read options a richest conversion needs.
3. ``python scripts/gen_roundtrip_table.py`` rewrites the table in docs/records.md (its new column);
   commit it. A field no format holds yet (e.g. a track id) is a new ``FIELDS``/``LOST_WORDS``
   entry plus its lines in :func:`has` and :func:`differences`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from dsprep.conversion import write_dataset
from dsprep.errors import DatasetNotFoundError
from dsprep.formats import FIELDS, FORMATS, LOST_WORDS, get_format
from dsprep.masks import segmentation_mask
from dsprep.records import Category, Dataset, Instances, Record

from fakes_cityscapes import make_cityscapes

W, H = 120, 80


# ----------------------------------------------------------------------------- the generated source

def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def generated(root: Path) -> Dataset:
    """Four tiny images, each in train or val and all in trainval; masks never overlap (VOC and
    panoptic hold one object per pixel: overlaps are their own, reported, loss)."""
    def image(stem: str) -> str:
        rel = f"imgs/{stem}.jpg"
        (root / "imgs").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (W, H), (90, 120, 30)).save(root / rel, format="JPEG")
        return rel

    crowd = np.zeros((H, W), np.uint8)
    crowd[50:70, 10:40] = 1
    from dsprep.masks import encode_mask
    kp = np.zeros((3, 3, 3))
    kp[0] = [[60.5, 20.25, 2], [70, 30, 1], [0, 0, 0]]
    a = Instances(boxes=[[58.04, 10.5, 96.71, 60.0], [1, 2, 30, 40], [31.5, 5, 50.25, 30]], labels=[1, 3, 8],
                  difficult=[0, 1, 0], ids=[11, 12, 13],
                  segmentation=[_rect(60, 12, 90, 58), _rect(2, 3, 29, 39), _rect(33, 6, 50, 29)], keypoints=kp)
    b = Instances(boxes=[[10, 50, 40, 70], [80, 5, 110.3, 25]], labels=[3, 1], iscrowd=[1, 0], ids=[21, 22],
                  segmentation=[encode_mask(crowd), _rect(81, 6, 110, 24)])
    c = Instances(boxes=[[2, 3, 50.5, 38.65]], labels=[8], ids=[41])  # a box without a mask
    recs = [Record("imgs/straße_0007", image("straße_0007"), W, H, "train", label=1, instances=a, source_id=7),
            Record("imgs/img_0002", image("img_0002"), W, H, "val", label=3, instances=b, source_id=2),
            Record("imgs/empty_0003", image("empty_0003"), W, H, "train", label=8, source_id=3),
            Record("imgs/img_0004", image("img_0004"), W, H, "val", label=1, instances=c, source_id=4)]
    ids = [r.id for r in recs]
    splits = {"train": [ids[0], ids[2]], "val": [ids[1], ids[3]], "trainval": ids}
    cats = [Category(1, "person", "human"), Category(3, "car", "vehicle"), Category(8, "straßenbahn", "vehicle")]
    return Dataset(cats, recs, splits=splits, root=root, format="generated")


def _read_options(fmt: str) -> dict[str, Any]:
    """Parse with what the richest conversion reads (masks of panoptic segments, Cityscapes things)."""
    hook = getattr(get_format(fmt), "parse_options_for", None)
    return dict(hook("coco")) if hook else {}


def parse(fmt: str, root: Path) -> Dataset:
    return get_format(fmt).parse(root, workers=1, **_read_options(fmt))


def convert(ds: Dataset, to: str, out: Path) -> tuple[Dataset, dict[str, int]]:
    report = write_dataset(ds, to, out, images="link")
    try:
        back = parse(to, out)
    except DatasetNotFoundError:  # nothing written (a class tree of unlabelled images): a reader may refuse it
        assert report["images"] == 0, f"-> {to}: {report['images']} images written, none read back"
        back = Dataset([], [], root=out, format=to)
    # the report (convert's summary line) counts what was written, not what was read
    assert report["images"] == len(back), f"-> {to}: report says {report['images']} images, {len(back)} read back"
    objects = sum(len(r.instances) for r in back)
    assert report.get("objects", objects) == objects, f"-> {to}: report says {report['objects']} objects, {objects} read back"
    return back, dict(report.get("lost") or {})


# ----------------------------------------------------------------------------- field by field

def _key(r: Record) -> str:
    return r.path.rpartition("/")[2].rpartition(".")[0]


def _cat_names(ds: Dataset) -> dict[int, str]:
    return {c.id: c.name for c in ds.categories}


def _objects(ds: Dataset, r: Record) -> list[dict[str, Any]]:
    names, inst = _cat_names(ds), r.instances
    out = []
    for j in range(len(inst)):
        segm = None if inst.segmentation is None else inst.segmentation[j]
        mask = None if segm is None else segmentation_mask(segm, r.height, r.width)
        out.append({"boxes": inst.boxes[j].tolist(), "categories": names.get(int(inst.labels[j])),
                    "category_ids": int(inst.labels[j]), "crowd": bool(inst.iscrowd[j]),
                    "difficult": bool(inst.difficult[j]), "masks": mask, "annotation_ids": int(inst.ids[j]),
                    "keypoints": None if inst.keypoints is None or not inst.keypoints[j].any()
                    else inst.keypoints[j].tolist()})
    return out


def _image_file(ds: Dataset, r: Record) -> str | None:
    """The file the record's image is, links followed (conversions here link images)."""
    try:
        return os.path.realpath(Path(ds.root) / r.path) if ds.root is not None else None
    except (OSError, ValueError):
        return None


def _keys(src: Dataset, dst: Dataset) -> tuple[dict[str, str], dict[str, str], bool]:
    """Record id -> matching key in ``src`` and ``dst``, and whether every image was renamed.

    Images are matched by file name; where no name is kept (Cityscapes names frames
    ``<city>_<seq>_<frame>``), by the image file they link to, so that every other field is
    still compared image by image."""
    ks, kd = {r.id: _key(r) for r in src.records}, {r.id: _key(r) for r in dst.records}
    if not ks or not kd or set(ks.values()) & set(kd.values()):
        return ks, kd, False
    by_file = {_image_file(src, r): ks[r.id] for r in src.records}
    linked = {r.id: by_file.get(_image_file(dst, r)) for r in dst.records}
    if None not in linked.values() and len(set(linked.values())) == len(linked):
        return ks, linked, True  # type: ignore[return-value]
    return ks, kd, True


def _memberships(ds: Dataset, key: dict[str, str] | None = None) -> dict[str, set[str]]:
    key = key or {r.id: _key(r) for r in ds.records}
    out: dict[str, set[str]] = {}
    for split, ids in ds.splits.items():
        for i in ids:
            out.setdefault(key[i], set()).add(split)
    return out


OBJECT_FIELDS = ("boxes", "categories", "category_ids", "crowd", "difficult", "masks", "keypoints", "annotation_ids")


def has(ds: Dataset) -> set[str]:
    """The fields ``ds`` has something in (those whose loss would be a loss)."""
    got = {"file_names"} | ({"splits"} if ds.splits else set())
    if any(len(v) > 1 for v in _memberships(ds).values()):
        got.add("overlapping_splits")
    if any(c.supercategory for c in ds.categories):
        got.add("supercategory")
    objs = [o for r in ds.records for o in _objects(ds, r)]
    if objs:
        got |= {"objects", "boxes", "categories", "category_ids"}
    for f, present in (("crowd", lambda o: o["crowd"]), ("difficult", lambda o: o["difficult"]),
                       ("masks", lambda o: o["masks"] is not None), ("keypoints", lambda o: o["keypoints"]),
                       ("annotation_ids", lambda o: o["annotation_ids"] >= 0)):
        if any(present(o) for o in objs):
            got.add(f)
    if any(r.label is not None for r in ds.records):
        got.add("image_labels")
    if any(isinstance(r.source_id, int) for r in ds.records):  # Cityscapes' string ids: see FIELDS
        got.add("image_ids")
    return got


def _match_objects(a: list[dict], b: list[dict], by_id: bool) -> list[tuple[dict, dict | None]]:
    if by_id:
        of = {o["annotation_ids"]: o for o in b}
        return [(o, of.get(o["annotation_ids"])) for o in a]
    return [(o, b[j] if j < len(b) else None) for j, o in enumerate(a)]


def _same(field: str, x: Any, y: Any) -> bool:
    if field == "masks":
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
    return x == y


def differences(src: Dataset, dst: Dataset, fields: set[str]) -> dict[str, list[str]]:
    """Per field, what of ``src`` does not come back equal in ``dst`` (only ``fields``)."""
    out: dict[str, list[str]] = {}

    def bad(field: str, what: str) -> None:
        if field in fields:
            out.setdefault(field, []).append(what)

    ks, kd, renamed = _keys(src, dst)
    sm, dm = _memberships(src, ks), _memberships(dst, kd)
    sk, dk = {ks[r.id]: r for r in src.records}, {kd[r.id]: r for r in dst.records}
    if renamed:
        bad("file_names", f"every image renamed ({sorted(ks.values())[:2]} -> {[_key(r) for r in dst.records][:2]})")
    if sk and dk and not set(sk) & set(dk):  # renamed, and no image file to match by: the split sizes only
        sizes = {k: len(v) for k, v in src.splits.items()}
        got = {k: len(v) for k, v in dst.splits.items()}
        one_each = "overlapping_splits" not in fields and sum(got.values()) == len(dst)
        if len(dst) == len(src) and got != sizes and not (one_each and all(n <= sizes.get(k, 0)
                                                                           for k, n in got.items())):
            bad("splits", f"split sizes {sizes} -> {got}")
        return out
    if len(dst) == len(src):  # (images that are gone are checked by lost_images)
        for k in sorted(set(sk) - set(dk)):
            bad("file_names", f"{k!r} missing (found {sorted(set(dk) - set(sk))[:3]})")
    for k in sorted(set(sk) & set(dk)):
        s, d = sm.get(k, set()), dm.get(k, set())
        if s != d:
            bad("overlapping_splits", f"{k}: splits {sorted(s)} -> {sorted(d)}")
            if not d or not d <= s:
                bad("splits", f"{k}: splits {sorted(s)} -> {sorted(d)}")
        rs, rd = sk[k], dk[k]
        if rs.source_id != rd.source_id:
            bad("image_ids", f"{k}: image id {rs.source_id!r} -> {rd.source_id!r}")
        ls = None if rs.label is None else _cat_names(src).get(rs.label)
        ld = None if rd.label is None else _cat_names(dst).get(rd.label)
        if ls != ld:
            bad("image_labels", f"{k}: label {ls!r} -> {ld!r}")
        os_, od = _objects(src, rs), _objects(dst, rd)
        ids_s = [o["annotation_ids"] for o in os_]
        by_id = all(i >= 0 for i in ids_s) and bool(set(ids_s) & {o["annotation_ids"] for o in od})
        if not by_id and len(od) != len(os_):  # objects dropped, and nothing to pair the rest by
            bad("objects", f"{k}: {len(os_)} objects became {len(od)}")
            continue
        for j, (o, p) in enumerate(_match_objects(os_, od, by_id)):
            if p is None:
                bad("objects", f"{k}: object {j} missing")
                continue
            for f in OBJECT_FIELDS:
                if not _same(f, o[f], p[f]):
                    bad(f, f"{k}: object {j} {f} {_short(o[f])} -> {_short(p[f])}")
        if len(od) > len(os_):
            bad("objects", f"{k}: {len(os_)} objects became {len(od)}")  # (objects are never made up)
    cs, cd = {c.name: c for c in src.categories}, {c.name: c for c in dst.categories}
    for name, c in cs.items():
        if name not in cd:  # (a format with a label table of its own: Cityscapes)
            bad("categories", f"{name}: category missing")
            bad("category_ids", f"{name}: id {c.id} -> missing")
            if c.supercategory:
                bad("supercategory", f"{name}: supercategory {c.supercategory!r} -> missing")
        if name in cd and (c.supercategory or "") != (cd[name].supercategory or ""):
            bad("supercategory", f"{name}: supercategory {c.supercategory!r} -> {cd[name].supercategory!r}")
        if name in cd and c.id != cd[name].id:
            bad("category_ids", f"{name}: id {c.id} -> {cd[name].id}")
    return out


def _short(v: Any) -> str:
    return "mask" if isinstance(v, np.ndarray) else repr(v)[:60]


def _counted(field: str, lost: dict[str, int]) -> int:
    return sum(n for key, n in lost.items() if any(w in key.lower() for w in LOST_WORDS.get(field, (field,))))


def unexplained(diffs: dict[str, list[str]], lost: dict[str, int]) -> dict[str, list[str]]:
    """Differences in fields B holds, less those a lost count naming the field accounts for: B holds
    them but not every case (VOC and panoptic hold one object per pixel; real COCO overlaps)."""
    return {f: items for f, items in diffs.items() if len(items) > _counted(f, lost)}


def unreported(src: Dataset, dst: Dataset, to: str, lost: dict[str, int]) -> dict[str, list[str]]:
    """Fields ``src`` has that ``to`` does not hold, changed in ``dst``, and not in ``lost``."""
    fields = has(src) - set(get_format(to).HOLDS)
    gone = differences(src, dst, fields)
    return {f: w for f, w in gone.items() if not _counted(f, lost)}


def lost_images(src: Dataset, dst: Dataset, lost: dict[str, int]) -> str | None:
    """Images of ``src`` missing in ``dst`` and not counted in ``lost`` (an image-level class tree
    holds no image without a label; every format holds all others)."""
    gone = len(src) - len(dst)
    counted = sum(n for key, n in lost.items() if key.lower().startswith("images"))
    return None if gone == counted else f"{len(src)} images became {len(dst)}; lost counts {counted}"


def richest_holding(fmt: str) -> str:
    """The format whose HOLDS contains all ``fmt`` holds and is largest (``fmt`` itself if none)."""
    mine = set(get_format(fmt).HOLDS)
    fits = [n for n in FORMATS if mine <= set(get_format(n).HOLDS)]
    return max(fits, key=lambda n: (len(get_format(n).HOLDS), n == fmt))


# ----------------------------------------------------------------------------- the matrix

SOURCE_MAKERS: dict[str, Callable[[Path], Dataset]] = {
    "cityscapes": lambda d: parse("cityscapes", make_cityscapes(d, cities=("bochum",), frames=1)["root"]),
}

# Real files written by other tools (../shared/fixtures, README there): small ones only.
FIXTURE_SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "voc": ("datumaro/tests/assets/voc_dataset/voc_dataset1", {}),  # parts, actions, RGB masks
    "coco": ("super-gradients/tests/data/tinycoco", {"split": "val2017"}),  # real COCO: ids 1..90, crowd RLE
    # real panoptic PNGs; its split ("examples", from the file name) is renamed val below, a name every
    # format's split folders can hold (an ImageNet tree refuses a split it would read back as a class)
    "coco-panoptic": ("panopticapi/sample_data/panoptic_examples.json", {"images_dir": "input_images"}),
    "cityscapes": ("datumaro/tests/assets/cityscapes_dataset/train_dataset", {}),
    "imagenet": ("datumaro/tests/assets/imagenet_subsets_dataset", {}),  # one file name in three splits
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, request) -> dict[tuple[str, str], Dataset]:
    """Each format's sources, built on first use: ``("generated", fmt)`` is the generated dataset
    written by the format's writer and parsed back; ``("fixture", fmt)`` a real file."""
    base = tmp_path_factory.mktemp("sources")
    made: dict[tuple[str, str], Dataset] = {}

    def get(kind: str, name: str) -> Dataset:
        if (kind, name) not in made:
            if kind == "fixture":
                fixtures = request.getfixturevalue("fixtures")
                rel, options = FIXTURE_SOURCES[name]
                ds = get_format(name).parse(fixtures / rel, workers=1, **{**_read_options(name), **options})
                if set(ds.splits) == {"examples"}:
                    ds.records = [r.replace(split="val") for r in ds.records]
                    ds.splits = {"val": ds.splits["examples"]}
                made[kind, name] = ds
            elif name in SOURCE_MAKERS:
                made[kind, name] = SOURCE_MAKERS[name](base / f"src-{name}")
            else:
                gen = made.get(("generated", "")) or generated(base / "generated")
                made["generated", ""] = gen
                made[kind, name] = convert(gen, name, base / f"src-{name}")[0]
        return made[kind, name]
    return get  # type: ignore[return-value]


PAIRS = [("generated", a, b) for a in FORMATS for b in FORMATS] + \
    [("fixture", a, b) for a in FORMATS if a in FIXTURE_SOURCES for b in FORMATS]


def test_every_format_declares_what_it_holds():
    for name in FORMATS:
        holds = getattr(get_format(name), "HOLDS", None)
        assert isinstance(holds, frozenset) and holds <= set(FIELDS), name
        assert set(LOST_WORDS) == set(FIELDS)


def test_the_generated_source_has_every_field(tmp_path):
    assert has(generated(tmp_path)) == set(FIELDS)


@pytest.mark.parametrize("kind, a, b", PAIRS, ids=[f"{k}:{a}->{b}" for k, a, b in PAIRS])
def test_round_trip(kind, a, b, sources, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    src = sources(kind, a)
    holds_a, holds_b = set(get_format(a).HOLDS), set(get_format(b).HOLDS)
    mid, lost = convert(src, b, tmp_path / "b")
    assert lost_images(src, mid, lost) is None, f"{a} -> {b}"
    # A -> B: what B holds comes back equal; the rest comes back equal or is counted lost
    assert unexplained(differences(src, mid, has(src) & holds_b), lost) == {}, f"{a} -> {b}: {lost}"
    assert unreported(src, mid, b, lost) == {}, f"{a} -> {b}: lost {lost}"
    if not len(mid):  # B held no image (a class tree of unlabelled images): nothing to go on with
        return
    # A -> B -> A
    back, lost_back = convert(mid, a, tmp_path / "a")
    assert lost_images(mid, back, lost_back) is None, f"{a} -> {b} -> {a}"
    both = has(src) & holds_a & holds_b
    assert unexplained(differences(src, back, both), {**lost, **lost_back}) == {}, f"{a} -> {b} -> {a}"
    # A -> B -> C, C the richest format that holds A
    c = richest_holding(a)
    if c not in (a, b):
        last, lost_last = convert(mid, c, tmp_path / "c")
        assert lost_images(mid, last, lost_last) is None, f"{a} -> {b} -> {c}"
        assert unexplained(differences(src, last, both), {**lost, **lost_last}) == {}, f"{a} -> {b} -> {c}"


# ----------------------------------------------------------------------------- the docs table

KEPT, LOST, KEPT_HERE, UNREPORTED = "kept", "lost", "kept here", "UNREPORTED"


def observe(src: Dataset, base: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """``src`` converted to each format and read back: ``{format: ({field: outcome}, lost keys)}``.

    Outcome: ``kept`` (comes back equal, and the format declares it in ``HOLDS``), ``kept here``
    (equal on this data, not declared), ``lost`` (changed or gone, and counted in the run's lost
    report; an object field also when every object is gone and counted), ``UNREPORTED`` (changed
    or gone without a count: a bug)."""
    have_src = has(src)
    out = {}
    for to in FORMATS:
        mid, lost = convert(src, to, base / to)
        have, holds = has(mid), get_format(to).HOLDS
        objects_gone = "objects" in have_src and not any(len(r.instances) for r in mid.records)
        row = {}
        for f in FIELDS:
            if f not in have_src:
                row[f] = "-"
            elif f in have and not differences(src, mid, {f}):
                row[f] = KEPT if f in holds else KEPT_HERE
            elif _counted(f, lost) or (objects_gone and f in OBJECT_FIELDS and _counted("objects", lost)):
                row[f] = LOST
            else:
                row[f] = UNREPORTED
        out[to] = (row, sorted(k for k, n in lost.items() if n))
    return out


def observed_tables(base: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """:func:`observe` on the generated dataset (what scripts/gen_roundtrip_table.py renders)."""
    return observe(generated(base / "generated"), base / "observed")


def _table_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "gen_roundtrip_table.py"
    spec = importlib.util.spec_from_file_location("gen_roundtrip_table", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_the_records_doc_table_is_generated_from_the_test_data(tmp_path, caplog):
    """docs/records.md "What survives which conversion" is what the generated data gives; a format
    declares in HOLDS nothing the data does not keep, and nothing goes without a lost count."""
    caplog.set_level(logging.ERROR)
    seen = observed_tables(tmp_path)
    for fmt, (row, _) in seen.items():
        assert not [f for f, v in row.items() if v == UNREPORTED], f"{fmt}: gone without a lost count: {row}"
        assert {f for f, v in row.items() if v == KEPT} == set(get_format(fmt).HOLDS), \
            f"{fmt}: HOLDS {sorted(get_format(fmt).HOLDS)} but the data keeps {row}"
    gen = _table_script()
    doc = gen.DOC.read_text(encoding="utf-8")
    assert gen.with_table(doc, gen.roundtrip_table(seen)) == doc, \
        "docs/records.md is stale: run python scripts/gen_roundtrip_table.py"
    header = next(line for line in doc.splitlines() if line.startswith("| field |"))
    assert header == "| field | " + " | ".join(f"`{n}`" for n in FORMATS) + " |"
