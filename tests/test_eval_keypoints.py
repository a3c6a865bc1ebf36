"""COCO keypoint AP (OKS) against pycocotools' own COCOeval on real COCO person keypoints."""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

import dsprep
from dsprep.errors import FormatError
from dsprep.eval.detection import KEYPOINT_STAT_NAMES, coco_evaluate, to_coco_gt
from dsprep.eval.keypoints import coco_default_sigmas, keypoint_sigmas
from dsprep.records import Category, Dataset, Instances, Record

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

POSE = "super-gradients/tests/data/pose_minicoco"


@pytest.fixture(scope="module")
def pose(fixtures):
    root = fixtures / POSE
    return root, json.loads((root / "annotations/person_keypoints_val2017.json").read_text())


def pycocotools_keypoint_stats(gt: dict, dets: list, sigmas=None) -> np.ndarray:
    """pycocotools on the original JSON (plus the info/licenses keys 2.0.9-2.0.10's loadRes reads)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"info": {}, "licenses": [], **copy.deepcopy(gt)}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def perturbed_keypoints(gt: dict, seed: int = 0) -> list:
    """GT people as results: seeded jitter scaled by the person's size, ~20% dropped,
    false positives (random poses), random scores."""
    rng = np.random.default_rng(seed)
    imgs = {i["id"]: i for i in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        if a["num_keypoints"] == 0 or rng.random() < 0.2:
            continue
        kp = np.array(a["keypoints"], float).reshape(-1, 3)
        scale = np.sqrt(max(a["area"], 1.0))
        kp[:, :2] += rng.normal(0, 0.04, (len(kp), 2)) * scale
        kp[:, 2] = 1
        dets.append({"image_id": a["image_id"], "category_id": 1, "score": float(rng.random()),
                     "keypoints": [round(float(v), 2) for v in kp.ravel()]})
    for img in gt["images"]:
        for _ in range(2):
            x = rng.uniform(0, img["width"], 17)
            y = rng.uniform(0, img["height"], 17)
            kp = np.stack([x, y, np.ones(17)], 1)
            dets.append({"image_id": img["id"], "category_id": 1, "score": float(rng.random()) * 0.5,
                         "keypoints": kp.ravel().tolist()})
    return dets


def test_keypoint_ap_equals_pycocotools_on_pose_minicoco(pose, tmp_path):
    root, gt = pose
    assert "info" not in gt and sum(a["num_keypoints"] == 0 for a in gt["annotations"]) == 25
    dets = perturbed_keypoints(gt)
    ref = pycocotools_keypoint_stats(gt, dets)
    path = tmp_path / "kps.json"
    path.write_text(json.dumps(dets))
    res = coco_evaluate(dsprep.parse("coco", root), path, iou_type="keypoints")
    got = np.array([res.stats[k] for k in KEYPOINT_STAT_NAMES])
    assert 0.2 < ref[0] < 0.95  # a non-trivial score
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert res.params["sigmas_from"].startswith("COCO defaults")
    assert res.params["kpt_oks_sigmas"] == coco_default_sigmas().tolist()
    assert res.counts == {"images": 30, "ground_truth": 65, "detections": len(dets),
                          "ground_truth_with_keypoints": 40}
    assert list(res.per_class) == ["person"] and res.per_class["person"] == pytest.approx(ref[0], abs=1e-12)


def test_sigmas_from_a_category_field_or_the_argument(pose):
    root, gt = pose
    dets = perturbed_keypoints(gt, seed=1)
    wide = (coco_default_sigmas() * 2).tolist()
    ref = pycocotools_keypoint_stats(gt, dets, sigmas=wide)
    assert not np.allclose(ref, pycocotools_keypoint_stats(gt, dets))  # the sigmas matter
    ds = dsprep.parse("coco", root)
    by_arg = coco_evaluate(ds, dets, iou_type="keypoints", sigmas=wide)
    np.testing.assert_allclose([by_arg.stats[k] for k in KEYPOINT_STAT_NAMES], ref, rtol=0, atol=1e-12)
    assert by_arg.params["sigmas_from"] == "given"
    ds.categories[0].extra["sigmas"] = wide
    by_field = coco_evaluate(ds, dets, iou_type="keypoints")
    np.testing.assert_allclose([by_field.stats[k] for k in KEYPOINT_STAT_NAMES], ref, rtol=0, atol=1e-12)
    assert by_field.params["sigmas_from"] == "category field 'sigmas' (person)"


def _tiny_pose(k: int, **cat_extra) -> Dataset:
    kp = np.zeros((1, k, 3))
    kp[0, :, :2] = np.arange(2 * k).reshape(k, 2) + 2
    kp[0, :, 2] = 2
    inst = Instances(boxes=[[0, 0, 40, 40]], labels=[1], keypoints=kp, area=[900.0])
    return Dataset([Category(1, "hand", extra=dict(cat_extra))],
                   [Record("a", "a.jpg", 64, 64, source_id=1, instances=inst)])


def test_other_skeletons_need_sigmas_and_bad_results_are_named():
    ds = _tiny_pose(5)
    perfect = [{"image_id": 1, "category_id": 1, "score": 1.0,
                "keypoints": ds.records[0].instances.keypoints[0].ravel().tolist()}]
    with pytest.raises(FormatError, match=r"5 keypoints and no category has a 'sigmas' field.*--kpt-sigmas"):
        coco_evaluate(ds, perfect, iou_type="keypoints")
    res = coco_evaluate(_tiny_pose(5, sigmas=[0.05] * 5), perfect, iou_type="keypoints")
    assert res.stats["AP"] == pytest.approx(1.0) and res.params["kpt_oks_sigmas"] == [0.05] * 5
    with pytest.raises(FormatError, match=r"expected 5 positive numbers.*found 4"):
        coco_evaluate(ds, perfect, iou_type="keypoints", sigmas=[0.05] * 4)
    with pytest.raises(FormatError, match=r"detection 0: keypoints must be 5 \(x, y, v\) triples \(15 numbers\)"):
        coco_evaluate(ds, [{**perfect[0], "keypoints": [1, 2, 1]}], iou_type="keypoints", sigmas=[0.05] * 5)
    with pytest.raises(FormatError, match=r"expected image_id, category_id, keypoints and score"):
        coco_evaluate(ds, [{"image_id": 1, "category_id": 1, "score": 1.0, "bbox": [0, 0, 1, 1]}],
                      iou_type="keypoints", sigmas=[0.05] * 5)
    two = [Category(1, "a", extra={"sigmas": [0.1] * 5}), Category(2, "b", extra={"sigmas": [0.2] * 5})]
    with pytest.raises(FormatError, match="one sigma list"):
        keypoint_sigmas(two, 5)


def test_ground_truth_keypoint_fields_and_no_keypoints_refused(pose):
    root, gt = pose
    coco_gt, _ = to_coco_gt(dsprep.parse("coco", root), iou_type="keypoints")
    orig = {(a["image_id"], tuple(a["bbox"])): a for a in gt["annotations"]}
    for a in coco_gt["annotations"]:
        src = orig[(a["image_id"], tuple(a["bbox"]))]
        assert a["keypoints"] == src["keypoints"] and a["num_keypoints"] == src["num_keypoints"]
    # num_keypoints is the stored one (COCOeval ignores a person with 0), else the visible count
    ds = _tiny_pose(5)
    assert to_coco_gt(ds, iou_type="keypoints")[0]["annotations"][0]["num_keypoints"] == 5
    ds.records[0].instances.extra = [{"num_keypoints": 0}]
    assert to_coco_gt(ds, iou_type="keypoints")[0]["annotations"][0]["num_keypoints"] == 0
    plain = Dataset([Category(1, "person")], [Record("a", "a.jpg", 8, 8, source_id=1,
                                                     instances=Instances(boxes=[[0, 0, 4, 4]], labels=[1]))])
    with pytest.raises(FormatError, match="no object has keypoints"):
        coco_evaluate(plain, [{"image_id": 1, "category_id": 1, "keypoints": [0] * 51, "score": 1.0}],
                      iou_type="keypoints")


def test_eval_command_iou_type_keypoints(pose, tmp_path, capsys):
    from dsprep.cli import main

    root, gt = pose
    dets = perturbed_keypoints(gt, seed=2)
    (tmp_path / "kps.json").write_text(json.dumps(dets))
    ref = pycocotools_keypoint_stats(gt, dets)
    capsys.readouterr()
    assert main(["eval", "detection", "coco", str(root), str(tmp_path / "kps.json"), "--iou-type", "keypoints",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out["stats"][k] for k in KEYPOINT_STAT_NAMES] == pytest.approx(ref.tolist(), abs=1e-12)
    assert out["params"]["sigmas_from"].startswith("COCO defaults")
    wide = ",".join(str(v) for v in coco_default_sigmas() * 2)
    assert main(["eval", "detection", "coco", str(root), str(tmp_path / "kps.json"), "--iou-type", "keypoints",
                 "--kpt-sigmas", wide]) == 0
    table = capsys.readouterr().out
    wide_ap = pycocotools_keypoint_stats(gt, dets, sigmas=coco_default_sigmas() * 2)[0]
    assert "OKS sigmas: given" in table and f"AP={100 * wide_ap:.2f}" in table
    assert main(["eval", "detection", "coco", str(root), str(tmp_path / "kps.json"), "--iou-type", "keypoints",
                 "--kpt-sigmas", "0.1,0.2"]) == 2
    assert "expected 17 positive numbers" in capsys.readouterr().err
