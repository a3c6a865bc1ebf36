"""Classification metrics, the predictions readers, and `dsprep eval` end to end on a monkeypatched format."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

import dsprep.formats
from dsprep.cli import main
from dsprep.errors import FormatError, MalformedFileError
from dsprep.eval.classification import classification_metrics, evaluate_dataset, load_predictions
from dsprep.records import Category, Dataset, Instances, Record


def test_hand_computed_metrics():
    # true:  0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    r = classification_metrics([0, 0, 0, 1, 1, 2], y_pred=[0, 0, 1, 1, 2, 2], class_names=["a", "b", "c"])
    assert r.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r.top1 == pytest.approx(4 / 6) and r.top5 is None
    assert r.recall.tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert r.precision.tolist() == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert r.f1.tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert r.mean_class_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert r.support.tolist() == [3, 2, 1]


def test_top5_from_scores():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 8))
    truth = rng.integers(0, 8, 50)
    r = classification_metrics(truth, scores=scores)
    ranks = (scores > scores[np.arange(50), truth][:, None]).sum(axis=1)  # classes scored higher
    assert r.top1 == pytest.approx(np.mean(ranks == 0))
    assert r.top5 == pytest.approx(np.mean(ranks < 5))
    assert r.top1 == pytest.approx(np.mean(scores.argmax(1) == truth))


def test_class_never_predicted_has_precision_zero_and_unseen_class_nan_recall():
    r = classification_metrics([0, 0], y_pred=[0, 0], num_classes=2)
    assert r.precision.tolist() == [1.0, 0.0] and np.isnan(r.recall[1]) and r.mean_class_accuracy == 1.0


def _imagenet_like() -> Dataset:
    cats = [Category(0, "n01440764"), Category(1, "n02102040"), Category(2, "n02979186")]
    recs = [Record(f"val/{c.name}/img{k}", f"val/{c.name}/img{k}.JPEG", 8, 8, split="val", label=c.id)
            for c in cats for k in range(2)]
    return Dataset(cats, recs, format="imagenet")


def test_csv_labels_names_and_scores(tmp_path):
    ds = _imagenet_like()
    p = tmp_path / "p.csv"
    p.write_text("image_id,label\nval/n01440764/img0,0\nval/n01440764/img1,n02102040\n"
                 "val/n02102040/img0.JPEG,1\nval/n02102040/img1,1\nval/n02979186/img0,2\nval/n02979186/img1,0\n")
    r = evaluate_dataset(ds, p)
    assert r.top1 == pytest.approx(4 / 6) and r.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = tmp_path / "s.csv"
    s.write_text("".join(f"{rec.id},{','.join('1' if i == rec.label else '0' for i in range(3))}\n" for rec in ds))
    assert evaluate_dataset(ds, s).top1 == 1.0
    j = tmp_path / "p.json"
    j.write_text(json.dumps([{"image_id": rec.id, "scores": [0.1, 0.2, 0.7]} for rec in ds]))
    assert evaluate_dataset(ds, j).top1 == pytest.approx(2 / 6)


def test_bad_prediction_files_are_named(tmp_path):
    ds = _imagenet_like()
    p = tmp_path / "p.csv"
    p.write_text("val/n01440764/img0,0\nnope/img,1\n")
    with pytest.raises(FormatError, match=r"name images not in the ground truth: \['nope/img'\]"):
        evaluate_dataset(ds, p)
    p.write_text("val/n01440764/img0,0\n")
    with pytest.raises(FormatError, match=r"5 of 6 images have no prediction"):
        evaluate_dataset(ds, p)
    p.write_text("a,1,2\nb,3\n")
    with pytest.raises(MalformedFileError, match=r"p.csv:2: expected 3 columns"):
        load_predictions(p)
    p.write_text("".join(f"{r.id},dog\n" for r in ds))
    with pytest.raises(FormatError, match="label 'dog' is neither a category id nor a name"):
        evaluate_dataset(ds, p)


# --- the command, with the format's parse monkeypatched ---------------------------------------

def _fake_format(ds: Dataset) -> types.SimpleNamespace:
    return types.SimpleNamespace(NAME="fake", parse=lambda root, **kw: ds)


def test_eval_command_classification_and_detection(tmp_path, monkeypatch, capsys):
    ds = _imagenet_like()
    monkeypatch.setattr(dsprep.formats, "get_format", lambda name: _fake_format(ds))
    p = tmp_path / "p.csv"
    p.write_text("".join(f"{r.id},{r.label}\n" for r in ds))
    assert main(["eval", "classification", "imagenet", str(tmp_path), str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] == 1.0 and out["images"] == 6

    inst = Instances(boxes=[[0, 0, 10, 10]], labels=[3])
    det_ds = Dataset([Category(3, "cat")], [Record("a", "a.jpg", 16, 16, source_id=1, instances=inst)])
    monkeypatch.setattr(dsprep.formats, "get_format", lambda name: _fake_format(det_ds))
    d = tmp_path / "d.json"
    d.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    (tmp_path / "gt").mkdir()  # --out may not be inside the ground truth's folder (docs/cli.md, Safety)
    assert main(["eval", "detection", "coco", str(tmp_path / "gt"), str(d), "--out", str(tmp_path / "pr")]) == 0
    text = capsys.readouterr().out
    assert "AP=100.00" in text and "cat" in text and (tmp_path / "pr" / "pr_cat.png").is_file()
    assert main(["eval", "detection", "voc", str(tmp_path), str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "voc07" and out["stats"]["mAP"] == pytest.approx(1.0)
    d.write_text(json.dumps([{"image_id": 7, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    assert main(["eval", "detection", "coco", str(tmp_path), str(d)]) == 2
    assert "image ids that are not in the ground truth: 7" in capsys.readouterr().err
