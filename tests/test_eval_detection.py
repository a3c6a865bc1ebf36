"""Detection metrics against the reference tools: pycocotools on the original COCO JSON,
and an independent implementation of the VOC devkit rule."""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from dsprep.errors import FormatError
from dsprep.eval.detection import (COCO_STAT_NAMES, VOC07_RECALL_THRESHOLDS, coco_evaluate, plot_pr_curves,
                                   to_coco_gt, voc_ap, voc_evaluate)
from dsprep.records import Category, Dataset, Instances, Record

# pycocotools 2.0.11's mask.decode under numpy 2 warns about __array__(copy=); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINYCOCO = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


# --- helpers --------------------------------------------------------------------------------

def records_from_coco(gt: dict) -> Dataset:
    """Records as a COCO parser would build them: xyxy boxes, stored area, source segmentation."""
    by_img: dict[int, list] = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    recs = []
    for img in gt["images"]:
        anns = by_img.get(img["id"], [])
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in anns]
        inst = Instances(boxes=np.array(boxes, np.float64).reshape(-1, 4),
                         labels=[a["category_id"] for a in anns], iscrowd=[a["iscrowd"] for a in anns],
                         ids=[a["id"] for a in anns], area=[a["area"] for a in anns],
                         segmentation=[a.get("segmentation") for a in anns])
        recs.append(Record(id=f"val2017/{img['file_name'].rsplit('.', 1)[0]}", path=f"val2017/{img['file_name']}",
                           width=img["width"], height=img["height"], split="val", source_id=img["id"],
                           instances=inst))
    cats = [Category(c["id"], c["name"], c.get("supercategory", "")) for c in gt["categories"]]
    return Dataset(cats, recs, info={"info": gt.get("info"), "licenses": gt.get("licenses")}, format="coco")


def pycocotools_stats(gt: dict, dets: list, iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def gt_mask(ann: dict, img: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    segm, h, w = ann["segmentation"], img["height"], img["width"]
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, h, w)
    else:
        rle = segm
    return mask_utils.decode(rle)


def perturbed_detections(gt: dict, iou_type: str, seed: int = 0) -> list:
    """GT turned into detections: seeded jitter, ~20% dropped, false positives added, random scores."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    imgs = {i["id"]: i for i in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.2:
            continue  # dropped: a miss
        x, y, w, h = a["bbox"]
        jit = rng.normal(0, 0.06, 4) * [w, h, w, h]
        x, y, w, h = x + jit[0], y + jit[1], max(1.0, w + jit[2]), max(1.0, h + jit[3])
        img = imgs[a["image_id"]]
        d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random())}
        if iou_type == "bbox":
            d["bbox"] = [round(float(v), 2) for v in (x, y, w, h)]
        else:  # the object's own mask (polygons or crowd RLE), shifted by a few pixels
            m = gt_mask(a, img)
            m = np.roll(m, tuple(int(v) for v in rng.integers(-3, 4, 2)), axis=(0, 1))
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            d["segmentation"] = rle
        dets.append(d)
    for img in gt["images"]:  # false positives, some on categories absent from the image
        for _ in range(5):
            w, h = rng.uniform(10, 150, 2)
            x, y = rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h)
            d = {"image_id": img["id"], "category_id": int(rng.choice(cat_ids)), "score": float(rng.random())}
            if iou_type == "bbox":
                d["bbox"] = [float(x), float(y), float(w), float(h)]
            else:
                rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], img["height"], img["width"])[0]
                rle["counts"] = rle["counts"].decode("ascii")
                d["segmentation"] = rle
            dets.append(d)
    return dets


@pytest.fixture(scope="module")
def tinycoco(fixtures):
    return json.loads((fixtures / TINYCOCO).read_text())


# --- COCO -----------------------------------------------------------------------------------

@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_ap_equals_pycocotools_on_tinycoco(tinycoco, iou_type, tmp_path):
    assert sum(a["iscrowd"] for a in tinycoco["annotations"]) >= 1  # real crowd RLE is in play
    dets = perturbed_detections(tinycoco, iou_type)
    ref = pycocotools_stats(tinycoco, dets, iou_type)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    ours = coco_evaluate(records_from_coco(tinycoco), path, iou_type=iou_type)
    got = np.array([ours.stats[k] for k in COCO_STAT_NAMES])
    assert 0.2 < ref[0] < 0.95  # a non-trivial score
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert ours.counts == {"images": len(tinycoco["images"]), "ground_truth": len(tinycoco["annotations"]),
                           "detections": len(dets)}


def test_coco_gt_conversion_is_what_cocoeval_needs(tinycoco):
    ds = records_from_coco(tinycoco)
    gt, id_map = to_coco_gt(ds)
    orig = {(a["image_id"], tuple(a["bbox"])): a for a in tinycoco["annotations"]}
    assert [a["id"] for a in gt["annotations"]] == list(range(1, len(gt["annotations"]) + 1))
    assert {"info", "licenses", "images", "annotations", "categories"} <= set(gt)
    for a in gt["annotations"]:
        src = orig[(a["image_id"], tuple(a["bbox"]))]  # boxes come back bit-exact
        assert a["iscrowd"] == src["iscrowd"] and a["area"] == src["area"]
        assert a["category_id"] == src["category_id"]
    assert sorted(i["id"] for i in gt["images"]) == sorted(i["id"] for i in tinycoco["images"])


def test_area_when_unknown_is_mask_then_box_area():
    polygon = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]
    inst = Instances(boxes=[[0, 0, 10, 10], [2, 2, 6, 5]], labels=[1, 1], segmentation=[polygon, None])
    ds = Dataset([Category(1, "a")], [Record("a", "a.png", 20, 20, source_id=3, instances=inst)])
    gt, _ = to_coco_gt(ds)
    assert [a["area"] for a in gt["annotations"]] == [100.0, 12.0]
    assert gt["annotations"][1]["bbox"] == [2.0, 2.0, 4.0, 3.0]


def test_string_image_ids_and_explicit_numbering():
    inst = Instances(boxes=[[1, 1, 9, 9]], labels=[5])
    recs = [Record("JPEGImages/000005", "JPEGImages/000005.jpg", 16, 16, source_id="000005", instances=inst),
            Record("JPEGImages/000007", "JPEGImages/000007.jpg", 16, 16, source_id="000007")]
    ds = Dataset([Category(5, "cat")], recs)
    dets = [{"image_id": "000005", "category_id": 5, "bbox": [1, 1, 8, 8], "score": 0.9},
            {"image_id": "JPEGImages/000007", "category_id": 5, "bbox": [1, 1, 8, 8], "score": 0.8}]
    res = coco_evaluate(ds, dets)
    assert res.stats["AP50"] == pytest.approx(1.0)
    gt, _ = to_coco_gt(ds, image_ids={"JPEGImages/000005": 40, "JPEGImages/000007": 41})
    assert [i["id"] for i in gt["images"]] == [40, 41]


def test_unknown_image_and_category_ids_are_named(tinycoco):
    ds = records_from_coco(tinycoco)
    img = tinycoco["images"][0]["id"]
    dets = [{"image_id": 999999999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5},
            {"image_id": img, "category_id": 12, "bbox": [0, 0, 5, 5], "score": 0.5}]
    with pytest.raises(FormatError, match=r"image ids that are not in the ground truth: 999999999.*"
                                          r"category ids that are not in the ground truth: 12"):
        coco_evaluate(ds, dets)
    with pytest.raises(FormatError, match=r"detection 0.*expected image_id, category_id, bbox and score"):
        coco_evaluate(ds, [{"image_id": img, "category_id": 1, "bbox": [0, 0, 1, 1]}])


@pytest.mark.parametrize("name,iou_type", [("instances_val2014_fakebbox100_results.json", "bbox"),
                                           ("instances_val2014_fakesegm100_results.json", "segm")])
def test_cocoapi_results_fixtures_evaluate(fixtures, name, iou_type):
    """The cocoapi results files load and evaluate against ground truth generated for their image ids."""
    from pycocotools import mask as mask_utils

    dets = json.loads((fixtures / "cocoapi/results" / name).read_text())
    rng = np.random.default_rng(1)
    sizes: dict[int, list[int]] = {}
    for d in dets:
        if "segmentation" in d:
            sizes[d["image_id"]] = d["segmentation"]["size"]
    cats = sorted({d["category_id"] for d in dets})
    recs = []
    for img in sorted({d["image_id"] for d in dets}):
        h, w = sizes.get(img, [640, 640])
        mine = [d for d in dets if d["image_id"] == img][:3]
        boxes, labels, segms = [], [], []
        for d in mine:
            x, y, bw, bh = d["bbox"] if "bbox" in d else mask_utils.toBbox(d["segmentation"]).tolist()
            boxes.append([x, y, x + bw + rng.uniform(0, 3), y + bh])
            labels.append(d["category_id"])
            segms.append([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]])
        recs.append(Record(f"val2014/{img}", f"val2014/{img}.jpg", w, h, source_id=img,
                           instances=Instances(boxes=np.reshape(boxes, (-1, 4)), labels=labels, segmentation=segms)))
    ds = Dataset([Category(c, f"c{c}") for c in cats], recs)
    res = coco_evaluate(ds, fixtures / "cocoapi/results" / name, iou_type=iou_type)
    assert res.counts["detections"] == len(dets)
    assert 0.0 < res.stats["AP50"] <= 1.0
    assert set(res.stats) == set(COCO_STAT_NAMES)


def test_pr_curves_are_written(tinycoco, tmp_path):
    res = coco_evaluate(records_from_coco(tinycoco), perturbed_detections(tinycoco, "bbox"))
    paths = plot_pr_curves(res, tmp_path / "pr")
    assert len(paths) == len(res.curves) > 0
    assert all(p.stat().st_size > 0 and p.suffix == ".png" for p in paths)


# --- VOC ------------------------------------------------------------------------------------

def _matlab_max(values: np.ndarray) -> float:
    """MATLAB's ``max`` of a vector: NaN entries are skipped; all NaN gives NaN; empty gives []."""
    if values.size == 0:
        return None
    return float(np.nan) if np.isnan(values).all() else float(np.nanmax(values))


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` as MathWorks' colonop.m builds it: ``a + k*d`` up to the middle,
    ``b - k*d`` from the end, the middle (even n) ``(a + b) / 2``."""
    n = int(np.floor((b - a) / d * (1 + 1e-12)))
    out = np.zeros(n + 1)
    k = np.arange(n // 2 + 1)
    out[k] = a + k * d
    out[n - k] = b - k * d
    if n % 2 == 0:
        out[n // 2] = (a + b) / 2
    return out


def devkit_voc_eval(gts: dict, dets: list, cls: int, use_07: bool, thresh: float = 0.5) -> float:
    """A line-by-line transcription of the devkit's ``VOCevaldet.m`` (VOC2007: 11-point AP;
    VOC2010-2012: ``VOCap.m``), with MATLAB's arithmetic: 0/0 is NaN, ``max`` skips NaN.

    gts: image -> list of (cls, [xmin, ymin, xmax, ymax] 1-based inclusive, difficult)
    dets: (image, cls, score, [xmin, ymin, xmax, ymax] 1-based)
    """
    recs, npos = {}, 0
    for img, objs in gts.items():
        bb = np.array([o[1] for o in objs if o[0] == cls], float).reshape(-1, 4)
        diff = np.array([o[2] for o in objs if o[0] == cls], bool)
        npos += int((~diff).sum())                                    # npos=npos+sum(~gt(i).diff);
        recs[img] = {"BB": bb, "diff": diff, "det": np.zeros(len(bb), bool)}
    mine = [d for d in dets if d[1] == cls]
    order = np.argsort([-d[2] for d in mine], kind="stable")          # [sc,si]=sort(-confidence);
    mine = [mine[i] for i in order]
    nd = len(mine)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d, (img, _, _, bb) in enumerate(mine):
        g = recs[img]
        ovmax, jmax = -np.inf, None
        for j, bbgt in enumerate(g["BB"]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:                                     # if iw>0 & ih>0
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                      + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:                                        # if ov>ovmax
                    ovmax, jmax = ov, j
        if ovmax >= thresh:                                           # if ovmax>=VOCopts.minoverlap
            if not g["diff"][jmax]:
                if not g["det"][jmax]:
                    tp[d] = 1
                    g["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / npos if npos else np.where(tp == 0, np.nan, np.inf)  # rec=tp/npos;
        prec = tp / (fp + tp)                                          # prec=tp./(fp+tp);
    if use_07:
        ap = 0.0
        for t in matlab_colon(0, 0.1, 1):                              # for t=0:0.1:1
            p = _matlab_max(prec[rec >= t])                            # p=max(prec(rec>=t));
            ap += (0.0 if p is None else p) / 11                       # if isempty(p) p=0; ap=ap+p/11;
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))                         # VOCap.m
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = _matlab_max(np.array([mpre[i], mpre[i + 1]]))
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1                      # NaN ~= x is true
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def generated_voc_case(seed: int = 3):
    """30 images, 3 classes, integer VOC boxes (1-based inclusive), ~15% difficult; noisy detections."""
    rng = np.random.default_rng(seed)
    gts, dets, recs = {}, [], []
    for k in range(30):
        img = f"{k:06d}"
        objs = []
        for _ in range(rng.integers(0, 5)):
            cls = int(rng.integers(1, 4))
            x1, y1 = rng.integers(1, 40, 2)
            x2, y2 = x1 + rng.integers(4, 24), y1 + rng.integers(4, 24)
            objs.append((cls, [int(x1), int(y1), int(x2), int(y2)], bool(rng.random() < 0.15)))
        gts[img] = objs
        for cls, (x1, y1, x2, y2), _ in objs:
            for _ in range(rng.integers(0, 3)):  # 0: a miss; 2: a duplicate
                j = rng.integers(-3, 4, 4)
                dets.append((img, cls, float(rng.random()), [x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]]))
        for _ in range(rng.integers(0, 3)):
            x1, y1 = rng.integers(1, 40, 2)
            dets.append((img, int(rng.integers(1, 4)), float(rng.random()),
                         [int(x1), int(y1), int(x1 + rng.integers(4, 20)), int(y1 + rng.integers(4, 20))]))
        # records: the VOC parser's convention [xmin-1, ymin-1, xmax, ymax]
        inst = Instances(boxes=np.array([[o[1][0] - 1, o[1][1] - 1, o[1][2], o[1][3]] for o in objs],
                                        float).reshape(-1, 4),
                         labels=[o[0] for o in objs], difficult=[o[2] for o in objs])
        recs.append(Record(f"JPEGImages/{img}", f"JPEGImages/{img}.jpg", 64, 64, split="test", source_id=img,
                           instances=inst))
    ds = Dataset([Category(1, "cat"), Category(2, "dog"), Category(3, "cow")], recs, format="voc")
    # detections as COCO results, 0-based continuous xywh (D2 subtracts 1 from xmin/ymin likewise)
    results = [{"image_id": img, "category_id": cls, "score": s,
                "bbox": [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1]} for img, cls, s, b in dets]
    return ds, gts, dets, results


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_voc_ap_equals_devkit_rule_with_difficult(metric):
    ds, gts, dets, results = generated_voc_case()
    assert any(o[2] for objs in gts.values() for o in objs)  # difficult boxes are present
    res = voc_evaluate(ds, results, metric=metric)
    for cls, name in ((1, "cat"), (2, "dog"), (3, "cow")):
        ref = devkit_voc_eval(gts, dets, cls, use_07=metric == "voc07")
        assert res.per_class[name] == pytest.approx(ref, abs=1e-12), name
    assert res.stats["mAP"] == pytest.approx(np.mean(list(res.per_class.values())), abs=1e-12)
    assert 0.2 < res.stats["mAP"] < 1.0


def test_voc07_and_voc12_on_a_hand_computed_example():
    # One class, 3 non-difficult GT boxes + 1 difficult, in two images; 5 detections by score:
    #  0.9 TP, 0.8 FP (no overlap), 0.7 on the difficult box (ignored), 0.6 TP, 0.5 duplicate of the first (FP)
    # ranked TP/FP: T F (skip) T F -> tp = 1 1 2 2, fp = 0 1 1 2
    # recall = 1/3 1/3 2/3 2/3 ; precision = 1 1/2 2/3 1/2
    # VOC12: envelope 1 @ r<=1/3, 2/3 @ r<=2/3 -> AP = 1/3*1 + 1/3*2/3 = 5/9
    # VOC07: t=0,.1,.2,.3 -> 1 ; t=.4,.5,.6 -> 2/3 ; t=.7..1 -> 0 -> AP = (4 + 3*2/3)/11 = 6/11
    inst_a = Instances(boxes=[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], labels=[1, 1, 1],
                       difficult=[False, False, True])
    inst_b = Instances(boxes=[[0, 0, 8, 8]], labels=[1])
    ds = Dataset([Category(1, "car")], [Record("a", "a.jpg", 64, 64, source_id=1, instances=inst_a),
                                        Record("b", "b.jpg", 64, 64, source_id=2, instances=inst_b)])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [40, 40, 10, 10], "score": 0.7},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 8, 8], "score": 0.6},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 9], "score": 0.5}]
    assert voc_evaluate(ds, dets, metric="voc12").per_class["car"] == pytest.approx(5 / 9, abs=1e-12)
    assert voc_evaluate(ds, dets, metric="voc07").per_class["car"] == pytest.approx(6 / 11, abs=1e-12)
    assert voc_ap(np.array([1 / 3, 2 / 3]), np.array([1.0, 2 / 3]), "voc12") == pytest.approx(5 / 9)


def _one_box_case(ignored: str | None = None):
    """One 10x10 ground-truth box (VOC pixels 1..10) in one image; ``ignored``: its flag."""
    inst = Instances(boxes=[[0, 0, 10, 10]], labels=[1], difficult=[ignored == "difficult"],
                     iscrowd=[ignored == "crowd"])
    return Dataset([Category(1, "car")], [Record("x", "x.jpg", 32, 32, source_id=1, instances=inst)])


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_voc_iou_of_exactly_half_is_a_true_positive(metric):
    # VOCevaldet.m: "if ovmax>=VOCopts.minoverlap". Half the box: IoU 50/100 = 0.5 exactly
    # (detectron2's port has ">" and calls it a false positive).
    half = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.9}]
    # (11 times 1/11 adds up to 1 + 2e-16, in MATLAB as here)
    assert voc_evaluate(_one_box_case(), half, metric=metric).per_class["car"] == pytest.approx(1.0, abs=1e-15)
    gts = {1: [(1, [1, 1, 10, 10], False)]}
    assert devkit_voc_eval(gts, [(1, 1, 0.9, [1, 1, 10, 5])], 1, use_07=metric == "voc07") == pytest.approx(
        1.0, abs=1e-15)
    below = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 4.99], "score": 0.9}]
    assert voc_evaluate(_one_box_case(), below, metric=metric).per_class["car"] == 0.0


def test_voc07_thresholds_are_matlabs_0_to_1_by_tenths():
    # MATLAB's 0:0.1:1 holds 0.30000000000000004 but the doubles nearest 0.6 and 0.7 (numpy's
    # arange, as in detectron2, has 0.6000000000000001 and 0.7000000000000001): a recall of
    # exactly 3/5 reaches the t = 0.6 point (7 of 11), one of 3/10 misses t = 0.3 (3 of 11).
    assert np.array_equal(np.array(VOC07_RECALL_THRESHOLDS), matlab_colon(0, 0.1, 1))
    assert voc_ap(np.array([3 / 5]), np.array([1.0]), "voc07") == pytest.approx(7 / 11, abs=1e-15)
    assert voc_ap(np.array([7 / 10]), np.array([1.0]), "voc07") == pytest.approx(8 / 11, abs=1e-15)
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), "voc07") == pytest.approx(3 / 11, abs=1e-15)


def test_voc_ties_in_score_keep_the_input_order():
    # MATLAB's sort is stable: equal scores are taken in file order. Per image a true
    # positive then a miss of one score, and a 0.9 miss (numpy's default sort reorders such
    # interleaved ties): AP depends on the order of the ties.
    recs = [Record(f"i{k}", f"i{k}.jpg", 32, 32, source_id=k + 1, instances=Instances(boxes=[[0, 0, 10, 10]],
                                                                                  labels=[1]))
            for k in range(20)]
    ds = Dataset([Category(1, "car")], recs)
    dets, devkit_dets = [], []
    for k in range(20):
        dets += [{"image_id": k + 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},
                 {"image_id": k + 1, "category_id": 1, "bbox": [20, 20, 5, 5], "score": 0.5},
                 {"image_id": k + 1, "category_id": 1, "bbox": [20, 0, 5, 5], "score": 0.9}]
        devkit_dets += [(k + 1, 1, 0.5, [1, 1, 10, 10]), (k + 1, 1, 0.5, [21, 21, 25, 25]),
                        (k + 1, 1, 0.9, [21, 1, 25, 5])]
    gts = {k + 1: [(1, [1, 1, 10, 10], False)] for k in range(20)}
    for metric in ("voc07", "voc12"):
        ref = devkit_voc_eval(gts, devkit_dets, 1, use_07=metric == "voc07")
        assert voc_evaluate(ds, dets, metric=metric).per_class["car"] == pytest.approx(ref, abs=1e-15)
    rec, prec = voc_evaluate(ds, dets, metric="voc12").curves["car"]
    assert prec[20:24].tolist() == [1 / 21, 1 / 22, 2 / 23, 2 / 24]  # after the twenty 0.9 misses: T F T F


def test_voc_box_without_overlap_is_never_a_match_even_at_threshold_zero():
    # VOCevaldet.m starts ovmax at -inf and only boxes with "iw>0 & ih>0" compete.
    apart = [{"image_id": 1, "category_id": 1, "bbox": [20, 20, 5, 5], "score": 0.9}]
    assert voc_evaluate(_one_box_case(), apart, metric="voc12", iou_threshold=0.0).per_class["car"] == 0.0
    assert devkit_voc_eval({1: [(1, [1, 1, 10, 10], False)]}, [(1, 1, 0.9, [21, 21, 25, 25])], 1,
                           use_07=False, thresh=0.0) == 0.0


@pytest.mark.parametrize("flag", ["difficult", "crowd"])
def test_voc_detection_on_a_difficult_or_crowd_box_is_neither_tp_nor_fp(flag):
    # Two images: one ordinary box (image 2) and one box flagged difficult/crowd (image 1).
    # Ranked: 0.9 on the flagged box (ignored), 0.8 TP, 0.7 FP (nothing there).
    flagged = _one_box_case(flag).records[0]
    plain = Record("y", "y.jpg", 32, 32, source_id=2, instances=Instances(boxes=[[0, 0, 10, 10]], labels=[1]))
    ds = Dataset([Category(1, "car")], [flagged, plain])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [20, 20, 5, 5], "score": 0.7}]
    # recall over the one plain box: 1, 1; precision 1, 1/2 -> AP 1 (both rules): the ignored
    # box neither lowers recall (it is not in npos) nor precision (its detection is no FP)
    res = voc_evaluate(ds, dets, metric="voc12")
    assert res.per_class["car"] == 1.0
    rec, prec = res.curves["car"]
    assert rec.tolist() == [0.0, 1.0, 1.0] and prec.tolist() == [0.0, 1.0, 0.5]
    assert voc_evaluate(ds, dets, metric="voc07").per_class["car"] == pytest.approx(1.0, abs=1e-15)
    # the devkit (difficult only: VOC has no crowd flag) gives the same
    gts = {1: [(1, [1, 1, 10, 10], True)], 2: [(1, [1, 1, 10, 10], False)]}
    devkit_dets = [(1, 1, 0.9, [1, 1, 10, 10]), (2, 1, 0.8, [1, 1, 10, 10]), (2, 1, 0.7, [21, 21, 25, 25])]
    assert devkit_voc_eval(gts, devkit_dets, 1, use_07=False) == 1.0


def test_voc_class_without_non_difficult_ground_truth_is_0_and_counts_in_the_mean():
    # "b" has only a difficult box (and a detection on it), "c" has no box and no detection:
    # npos = 0 for both. The devkit's recall is 0/0 = NaN: its 11-point AP is then 0
    # (no recall >= t), and so is VOCap's without detections; VOCap's with detections is
    # NaN (NaN recall steps), where dsprep gives 0 too (docs/eval.md).
    inst = Instances(boxes=[[0, 0, 10, 10], [0, 0, 10, 10]], labels=[1, 2], difficult=[False, True])
    ds = Dataset([Category(1, "a"), Category(2, "b"), Category(3, "c")],
                 [Record("x", "x.jpg", 16, 16, source_id=1, instances=inst)])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 1.0},
            {"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10], "score": 0.5}]
    gts = {1: [(1, [1, 1, 10, 10], False), (2, [1, 1, 10, 10], True)]}
    devkit_dets = [(1, 1, 1.0, [1, 1, 10, 10]), (1, 2, 1.0, [1, 1, 10, 10]), (1, 2, 0.5, [6, 6, 15, 15])]
    for metric in ("voc07", "voc12"):
        res = voc_evaluate(ds, dets, metric=metric)
        assert res.per_class == {"a": pytest.approx(1.0, abs=1e-15), "b": 0.0, "c": 0.0}
        assert res.stats["mAP"] == pytest.approx(1 / 3, abs=1e-15)
        assert "b" not in res.curves and "c" not in res.curves
    assert devkit_voc_eval(gts, devkit_dets, 2, use_07=True) == 0.0
    assert devkit_voc_eval(gts, devkit_dets, 3, use_07=True) == 0.0
    assert devkit_voc_eval(gts, devkit_dets, 3, use_07=False) == 0.0
    assert np.isnan(devkit_voc_eval(gts, devkit_dets, 2, use_07=False))  # the one documented difference


def test_unhashable_ids_are_named():
    ds = Dataset([Category(1, "a")], [Record("x", "x.jpg", 16, 16, source_id=1)])
    with pytest.raises(FormatError, match=r"detection 0: expected an int category_id"):
        coco_evaluate(ds, [{"image_id": 1, "category_id": [1], "bbox": [0, 0, 1, 1], "score": 1.0}])


def test_segm_predictions_as_polygons_are_encoded_for_loadres(fixtures):
    """pycocotools' loadRes takes compressed RLE only: polygon results are encoded, not a TypeError."""
    import dsprep

    root = fixtures / "super-gradients/tests/data/tinycoco"
    gt = json.loads((root / "annotations/instances_val2017.json").read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
              "score": 1.0} for a in gt["annotations"] if not a["iscrowd"]]
    res = coco_evaluate(dsprep.parse("coco", root, split="val2017"), preds, iou_type="segm")
    assert res.stats["AP50"] > 0.95
    with pytest.raises(FormatError, match="segmentation must be an RLE dict or a list of polygons"):
        coco_evaluate(dsprep.parse("coco", root, split="val2017"),
                      [{**preds[0], "segmentation": 7}], iou_type="segm")


def test_voc_style_predictions_name_images_by_file_stem():
    from dsprep.eval.detection import ImageIdMap

    recs = [Record("JPEGImages/000005", "JPEGImages/000005.jpg", 8, 8),
            Record("a/0001", "a/0001.jpg", 8, 8), Record("b/0001", "b/0001.jpg", 8, 8)]
    m = ImageIdMap(recs)
    assert m.resolve("000005") == m.resolve("JPEGImages/000005") == 1
    assert m.resolve("0001") is None  # two images share that stem: ambiguous, not guessed
    assert m.resolve("a/0001") == 2


# --- `dsprep eval detection` reads the objects each format holds ------------------------------

def _gt_as_predictions(coco_json) -> list[dict]:
    """The converted ground truth as COCO results (score 1), images named by file stem."""
    from pathlib import Path

    gt = json.loads(Path(coco_json).read_text())
    stems = {i["id"]: Path(i["file_name"]).stem for i in gt["images"]}
    return [{"image_id": stems[a["image_id"]], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 1.0} for a in gt["annotations"]]


@pytest.mark.parametrize("fmt", ["voc", "coco-panoptic", "cityscapes"])
def test_eval_command_scores_each_formats_objects_and_masks(fmt, tmp_path, capsys):
    # Predictions = the ground truth itself, as `convert FORMAT --to coco` writes it: every
    # format must score 100 AP on boxes and on masks (a plain parse of Cityscapes has no
    # objects; VOC and panoptic masks are only decoded on request).
    from dsprep.cli import main

    root = tmp_path / fmt
    if fmt == "cityscapes":
        import sys
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).parent))
        from fakes_cityscapes import make_cityscapes
        make_cityscapes(root)
    else:
        assert main(["synth", fmt, str(root), "--num-images", "8", "--size", "48", "--seed", "1"]) == 0
    assert main(["convert", fmt, str(root), "--to", "coco", "--out", str(tmp_path / "coco")]) == 0
    preds = _gt_as_predictions(tmp_path / "coco" / "annotations" / "instances_val.json")
    assert preds
    (tmp_path / "p.json").write_text(json.dumps(preds))
    capsys.readouterr()
    for iou_type in ("bbox", "segm"):
        assert main(["eval", "detection", fmt, str(root), str(tmp_path / "p.json"), "--split", "val",
                     "--metric", "coco", "--iou-type", iou_type, "--json"]) == 0
        captured = capsys.readouterr()
        out = json.loads(captured.out)
        assert out["counts"]["ground_truth"] == len(preds), iou_type
        assert out["stats"]["AP"] == pytest.approx(1.0), iou_type
        assert "stand in for masks" not in captured.err


def test_eval_command_without_ground_truth_objects_warns_and_exits_1(tmp_path, monkeypatch, capsys):
    import types

    import dsprep.formats
    from dsprep.cli import main

    ds = Dataset([Category(3, "cat")], [Record("a", "a.jpg", 16, 16, source_id=1)])
    monkeypatch.setattr(dsprep.formats, "get_format",
                        lambda name: types.SimpleNamespace(parse=lambda root, **kw: ds))
    d = tmp_path / "d.json"
    d.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    for metric in ("coco", "voc07"):
        assert main(["eval", "detection", "coco", str(tmp_path), str(d), "--metric", metric]) == 1
        assert "ground truth holds no objects in 1 image(s) (1 detection(s))" in capsys.readouterr().err


def test_dummy_labelled_images_are_left_out_and_alone_refused():
    inst = Instances(boxes=[[0, 0, 10, 10]], labels=[3])
    real = Record("a", "a.jpg", 16, 16, "val", source_id=1, instances=inst)
    dummy = Record("b", "b.jpg", 16, 16, "test", source_id=2, extra={"dummy_labels": True})
    dets = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]
    res = coco_evaluate(Dataset([Category(3, "cat")], [real, dummy]), dets)
    assert res.counts["images"] == 1 and res.stats["AP"] == pytest.approx(1.0)
    with pytest.raises(FormatError, match="the test split's labels are dummies"):
        voc_evaluate(Dataset([Category(3, "cat")], [dummy]), [])
