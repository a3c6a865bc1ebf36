"""Segmentation metrics: a hand-computed confusion matrix with ignore, luts, Cityscapes, iIoU."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dsprep.errors import FormatError, MalformedFileError, MissingFileError
from dsprep.eval.segmentation import (CITYSCAPES_AVG_CLASS_SIZE, cityscapes_luts, confusion_matrix,
                                      evaluate_dataset, evaluate_segmentation, make_lut, segmentation_metrics)
from dsprep.records import Category, Dataset, Record

# 3 classes; 255 = void. Row by row: GT, prediction.
GT = np.array([[0, 0, 1, 1],
               [0, 2, 1, 255],
               [2, 2, 255, 255]], np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 2, 0],
                 [2, 0, 1, 2]], np.uint8)
# Counted pixels (GT != 255): 9.
#   GT 0 (3 px): pred 0,1,0      -> TP0=2, 0->1: 1
#   GT 1 (3 px): pred 1,1,2      -> TP1=2, 1->2: 1
#   GT 2 (3 px): pred 2,2,0      -> TP2=2, 2->0: 1
# confusion = [[2,1,0],[0,2,1],[1,0,2]]
# IoU0 = 2/(2+1+1) = .5, IoU1 = 2/(2+1+1) = .5, IoU2 = 2/(2+1+1) = .5 -> mIoU .5 ; pixel acc 6/9
HAND_CM = [[2, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_miou_equals_hand_computed_example_with_ignore():
    cm = confusion_matrix(GT, PRED, 3)
    assert cm[:, :3].tolist() == HAND_CM and cm[:, 3].tolist() == [0, 0, 0]
    res = segmentation_metrics(cm, ["a", "b", "c"])
    assert res.iou.tolist() == [0.5, 0.5, 0.5]
    assert res.miou == 0.5 and res.pixel_accuracy == pytest.approx(6 / 9)
    assert res.mean_accuracy == pytest.approx(2 / 3)


def test_uneven_example_and_predictions_outside_the_classes():
    gt = np.array([[0, 0, 0, 1], [1, 1, 255, 255]], np.uint8)
    pred = np.array([[0, 0, 7, 1], [0, 1, 1, 1]], np.uint8)
    # GT0: 0,0,7 -> TP0 2, FN0 1 (to "other"); GT1: 1,0,1 -> TP1 2, FN1 1 (to 0); FP0 = 1, FP1 = 0
    # IoU0 = 2/(2+1+1) = .5 ; IoU1 = 2/(2+0+1) = 2/3 ; void pixels predicted 1 are not FPs
    res = evaluate_segmentation([(gt, pred)], 2, class_names=["bg", "x"])
    assert res.confusion.tolist() == [[2, 0], [1, 2]] and res.other.tolist() == [1, 0]
    assert res.iou[0] == pytest.approx(0.5) and res.iou[1] == pytest.approx(2 / 3)
    assert res.miou == pytest.approx((0.5 + 2 / 3) / 2)


def test_confusion_cells_count_tensors_on_the_device_as_the_evaluator_counts_arrays():
    """One confusion matrix: a training loop counts a batch's torch tensors through
    confusion_cells and torch.bincount (no indexing by a mask, so no host sync on a GPU),
    and gets the evaluator's matrix, ignored pixels left out."""
    torch = pytest.importorskip("torch")
    from dsprep.eval.segmentation import confusion_cells

    rng = np.random.default_rng(3)
    masks = rng.integers(0, 4, (3, 5, 6))
    masks[0, 0, :] = 255
    masks[2, :, 1] = 255
    preds = rng.integers(-1, 6, (3, 5, 6))  # some outside the 4 classes
    expected = sum(confusion_matrix(m, p, 4) for m, p in zip(masks, preds))
    assert expected[:, 4].sum() > 0 and expected.sum() == (masks != 255).sum()
    cells = confusion_cells(torch.tensor(masks), torch.tensor(preds), 4)
    counted = torch.bincount(cells.flatten(), minlength=4 * 5 + 1)
    assert counted[:20].reshape(4, 5).tolist() == expected.tolist() and int(counted[20]) == (masks == 255).sum()
    # the same cells from tensors as from arrays; ignored pixels one past the matrix
    gt, pred = np.array([0, 1, 255, 1, 2]), np.array([0, 0, 1, 7, -3])
    assert confusion_cells(torch.tensor(gt), torch.tensor(pred), 3).tolist() == [0, 4, 12, 7, 11]
    assert confusion_cells(gt, pred, 3).tolist() == [0, 4, 12, 7, 11]


def test_absent_class_is_nan_and_left_out_of_the_mean():
    gt = np.zeros((2, 2), np.uint8)
    res = evaluate_segmentation([(gt, gt)], 3)
    assert res.iou[0] == 1.0 and np.isnan(res.iou[1:]).all() and res.miou == 1.0


def test_png_paths_palette_and_accumulation(tmp_path):
    paths = []
    for k, (g, p) in enumerate([(GT, PRED), (GT, GT)]):
        gp, pp = tmp_path / f"gt{k}.png", tmp_path / f"pred{k}.png"
        im = Image.fromarray(g, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252)
        im.save(gp)
        Image.fromarray(p).save(pp)
        paths.append((gp, pp))
    res = evaluate_segmentation(paths, 3)
    expected = np.array(HAND_CM) + np.diag([3, 3, 3])
    assert res.confusion.tolist() == expected.tolist() and res.images == 2


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FormatError, match=r"prediction is 3x2 \(WxH\) but the ground truth is 4x3"):
        confusion_matrix(GT, np.zeros((2, 3), np.uint8), 3, where="p.png")
    with pytest.raises(FormatError, match=r"ground-truth values \[5\]"):
        confusion_matrix(np.full((2, 2), 5, np.uint8), np.zeros((2, 2), np.uint8), 3)
    Image.new("RGB", (4, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(MalformedFileError, match="single-channel"):
        evaluate_segmentation([(GT, tmp_path / "rgb.png")], 3)
    with pytest.raises(MissingFileError):
        evaluate_segmentation([(GT, tmp_path / "none.png")], 3)


def test_cityscapes_label_ids_vs_train_ids():
    # label ids: 7 road(0), 26 car(13), 1 ego vehicle (ignored), 24 person(11)
    gt_label = np.array([[7, 7, 26, 1], [24, 24, 26, 0]], np.uint8)
    pred_train = np.array([[0, 1, 13, 13], [11, 13, 13, 255]], np.uint8)
    pred_label = np.array([[7, 8, 26, 26], [24, 26, 26, 0]], np.uint8)
    a = evaluate_segmentation([(gt_label, pred_train)], 19, gt_lut=cityscapes_luts("label_ids", "train_ids")[0],
                              pred_lut=cityscapes_luts("label_ids", "train_ids")[1])
    gt_lut, pred_lut = cityscapes_luts("label_ids", "label_ids")
    b = evaluate_segmentation([(gt_label, pred_label)], 19, gt_lut=gt_lut, pred_lut=pred_lut)
    # a hand-made partial lut gives the same matrix
    c = evaluate_segmentation([(gt_label, pred_label)], 19, gt_lut=make_lut({7: 0, 8: 1, 24: 11, 26: 13}),
                              pred_lut=make_lut({7: 0, 8: 1, 24: 11, 26: 13}))
    assert b.confusion.tolist() == a.confusion.tolist() == c.confusion.tolist()
    # road: TP 1, FN 1 (->sidewalk); car: TP 2, FP 1 (from person); person: TP 1, FN 1
    assert a.iou[0] == pytest.approx(0.5) and a.iou[13] == pytest.approx(2 / 3) and a.iou[11] == pytest.approx(0.5)
    assert a.confusion.sum() == 6  # the two ignored GT pixels (ego vehicle, unlabeled) are out


def test_cityscapes_iiou_weights_instances_by_average_size(tmp_path):
    # two person instances (24000: 4 px, 24001: 2 px) and one car (26000: 2 px); a road pixel
    gt = np.array([[24, 24, 24, 24], [24, 24, 26, 26], [7, 7, 7, 7]], np.uint8)
    inst = np.array([[24000, 24000, 24000, 24000], [24001, 24001, 26000, 26000], [7, 7, 7, 7]], np.int32)
    pred = np.array([[24, 24, 24, 7], [24, 7, 26, 26], [7, 7, 26, 7]], np.uint8)  # label ids
    root = tmp_path
    Image.fromarray(gt).save(root / "a_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(root / "a_gtFine_instanceIds.png")
    preds = root / "preds"
    preds.mkdir()
    Image.fromarray(pred).save(preds / "a_leftImg8bit.png")
    ds = Dataset([Category(24, "person", extra={"trainId": 11})],
                 [Record("a_leftImg8bit", "a_leftImg8bit.png", 4, 3, mask_path="a_gtFine_labelIds.png",
                         instance_mask_path="a_gtFine_instanceIds.png")], root=root, format="cityscapes")
    res = evaluate_dataset(ds, preds, workers=1)
    sp, sc = CITYSCAPES_AVG_CLASS_SIZE["person"], CITYSCAPES_AVG_CLASS_SIZE["car"]
    # person: inst 24000 tp 3 fn 1 weight sp/4; inst 24001 tp 1 fn 1 weight sp/2; FP (pixels of other GT) = 0
    tpw, fnw = 3 * sp / 4 + 1 * sp / 2, 1 * sp / 4 + 1 * sp / 2
    assert res.iiou["person"] == pytest.approx(tpw / (tpw + fnw))
    # car: tp 2 of 2 (weight sc/2), one FP pixel on road (unweighted)
    assert res.iiou["car"] == pytest.approx((2 * sc / 2) / (2 * sc / 2 + 1))
    # rider..bicycle have no instances and no false positives: NaN, left out of the mean
    assert np.isnan(res.iiou["rider"])
    assert res.miiou == pytest.approx((res.iiou["person"] + res.iiou["car"]) / 2)
    # plain IoU: person TP 4 FN 2 -> 4/6 ; car TP 2 FP 1 -> 2/3 ;
    # road TP 3, FN 1 (->car), FP 2 (person pixels predicted road) -> 3/6
    assert res.iou[11] == pytest.approx(4 / 6) and res.iou[13] == pytest.approx(2 / 3)
    assert res.iou[0] == pytest.approx(3 / 6)


def test_voc_style_dataset_counts_background(tmp_path):
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "preds").mkdir()
    gt = np.array([[0, 15, 15], [0, 255, 15]], np.uint8)
    pred = np.array([[0, 15, 0], [0, 15, 15]], np.uint8)
    Image.fromarray(gt).save(tmp_path / "SegmentationClass/2007_000033.png")
    Image.fromarray(pred).save(tmp_path / "preds/2007_000033.png")
    ds = Dataset([Category(1, "aeroplane"), Category(15, "person")],
                 [Record("JPEGImages/2007_000033", "JPEGImages/2007_000033.jpg", 3, 2,
                         mask_path="SegmentationClass/2007_000033.png")], root=tmp_path, format="voc")
    res = evaluate_dataset(ds, tmp_path / "preds", workers=1)
    assert res.class_names == ["background", "aeroplane", "person"]
    # background: TP 2, FP 1 -> 2/3 ; person: TP 2, FN 1 -> 2/3 ; aeroplane absent -> NaN
    assert res.iou[0] == pytest.approx(2 / 3) and res.iou[2] == pytest.approx(2 / 3) and np.isnan(res.iou[1])
    with pytest.raises(MissingFileError, match="no prediction for image JPEGImages/2007_000033.jpg"):
        evaluate_dataset(ds, tmp_path / "SegmentationClass" / "none", workers=1)


def test_predicted_255_on_a_counted_pixel_is_a_miss_not_void(tmp_path):
    # 255 means void in the ground truth only: a model that outputs 255 on a labelled pixel
    # missed it (a false negative of the true class, nobody's false positive), as
    # cityscapesScripts counts a prediction outside the evaluated classes.
    gt = np.array([[0, 0, 1, 1], [0, 1, 1, 255]], np.uint8)
    pred = np.array([[0, 255, 1, 255], [255, 1, 1, 255]], np.uint8)
    cm = confusion_matrix(gt, pred, 2)
    assert cm.tolist() == [[1, 0, 2], [0, 3, 1]]  # the last column: predicted outside the classes
    res = evaluate_segmentation([(gt, pred)], 2, class_names=["bg", "x"])
    # bg: TP 1, FN 2 -> 1/3 ; x: TP 3, FN 1 -> 3/4 (void pixels predicted 255 are not counted)
    assert res.iou.tolist() == pytest.approx([1 / 3, 3 / 4]) and res.pixel_accuracy == pytest.approx(4 / 7)
    # the same through PNGs of a VOC-style dataset
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "preds").mkdir()
    Image.fromarray(np.where(gt == 1, 15, gt).astype(np.uint8)).save(tmp_path / "SegmentationClass/a.png")
    Image.fromarray(np.where(pred == 1, 15, pred).astype(np.uint8)).save(tmp_path / "preds/a.png")
    ds = Dataset([Category(15, "person")], [Record("JPEGImages/a", "JPEGImages/a.jpg", 4, 2,
                                                   mask_path="SegmentationClass/a.png")], root=tmp_path,
                 format="voc")
    res = evaluate_dataset(ds, tmp_path / "preds", workers=1)
    assert res.iou.tolist() == pytest.approx([1 / 3, 3 / 4]) and res.other.tolist() == [2, 1]


def test_eval_segmentation_command(tmp_path, monkeypatch, capsys):
    import json
    import types

    import dsprep.formats
    from dsprep.cli import main

    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "preds").mkdir()
    Image.fromarray(np.array([[0, 1], [1, 255]], np.uint8)).save(tmp_path / "SegmentationClass/a.png")
    Image.fromarray(np.array([[0, 1], [0, 1]], np.uint8)).save(tmp_path / "preds/a.png")
    ds = Dataset([Category(1, "cat")], [Record("JPEGImages/a", "JPEGImages/a.jpg", 2, 2,
                                               mask_path="SegmentationClass/a.png")], root=tmp_path, format="voc")
    monkeypatch.setattr(dsprep.formats, "get_format",
                        lambda name: types.SimpleNamespace(parse=lambda root, **kw: ds))
    assert main(["eval", "segmentation", "voc", str(tmp_path), str(tmp_path / "preds"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # background TP 1 FP 1 -> 1/2 ; cat TP 1 FN 1 -> 1/2
    assert out["per_class_iou"] == {"background": 0.5, "cat": 0.5} and out["mIoU"] == 0.5
    assert main(["eval", "segmentation", "voc", str(tmp_path), str(tmp_path / "preds")]) == 0
    assert "mIoU 50.00" in capsys.readouterr().out


def test_eval_command_leaves_out_dummy_test_labels(tmp_path, capsys):
    # The Cityscapes test split's labels are dummies: without --split its images are left
    # out (counted), and --split test is refused, instead of demanding predictions for them.
    import json
    import shutil
    import sys
    from pathlib import Path

    from dsprep.cli import main

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_cityscapes import make_cityscapes

    root = tmp_path / "cs"
    make_cityscapes(root, splits=("train",), test=True)
    preds = tmp_path / "preds"
    preds.mkdir()
    for f in root.glob("gtFine/train/*/*_labelIds.png"):  # predictions for the labelled images only
        shutil.copy(f, preds / f.name.replace("_gtFine_labelIds", "_leftImg8bit"))
    assert main(["eval", "segmentation", "cityscapes", str(root), str(preds), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["images"] == 4 and out["mIoU"] == pytest.approx(1.0)
    assert "left out 4 image(s) of split test whose labels are dummies" in captured.err
    assert main(["eval", "segmentation", "cityscapes", str(root), str(preds), "--split", "test"]) == 2
    assert "the test split's labels are dummies" in capsys.readouterr().err


def test_cityscapes_ground_truth_without_label_pngs_or_of_mixed_kinds(tmp_path):
    """A polygons-only tree is scored on the map json2labelImg draws; a trainId parse that mixes
    labelTrainIds and labelIds PNGs is scored on both, each read as what it holds."""
    import shutil
    import sys
    from pathlib import Path

    import dsprep
    from dsprep.eval.segmentation import evaluate_dataset
    from dsprep.formats import _cityscapes_labels as L

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_cityscapes import make_cityscapes

    make_cityscapes(tmp_path / "png", splits=("val",), polygons=False)
    make_cityscapes(tmp_path / "poly", splits=("val",), pngs=False)
    preds = tmp_path / "preds"
    preds.mkdir()
    label_files = sorted((tmp_path / "png" / "gtFine" / "val").rglob("*_labelIds.png"))
    for f in label_files:  # perfect predictions, in label ids
        shutil.copy(f, preds / f.name.replace("_gtFine_labelIds", "_leftImg8bit"))
    poly = dsprep.parse("cityscapes", tmp_path / "poly", workers=1)
    assert all(r.mask_path is None for r in poly)
    assert evaluate_dataset(poly, preds, workers=1).miou == pytest.approx(1.0)
    # one frame also gets its createTrainIdLabelImgs PNG; parse in train ids
    to_train = np.asarray(L.id_to_train_id_lut(), np.uint8)
    first = label_files[0]
    Image.fromarray(to_train[np.asarray(Image.open(first))]).save(str(first).replace("_labelIds", "_labelTrainIds"))
    mixed = dsprep.parse("cityscapes", tmp_path / "png", label_space="trainId", workers=1)
    assert len({r.extra["mask_kind"] for r in mixed}) == 2
    assert evaluate_dataset(mixed, preds, workers=1).miou == pytest.approx(1.0)
