"""`dsprep train`: it learns, writes everything, resumes, is deterministic, runs under torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dsprep
from dsprep.cli import main
from dsprep.models import create_model
from dsprep.synth import synth
from dsprep.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "coco"
    synth("coco", out, images=40, seed=2, size=48)
    return out


@pytest.fixture(scope="module")
def shapes_voc(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "voc"
    synth("voc", out, images=16, seed=4, size=48)
    return out


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(task="crops", image_size=32, epochs=2, batch_size=16, workers=0, out=str(out), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_train_crops_writes_every_output_and_checkpoint_loads(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "coco", str(shapes), "--task", "crops", "--image-size", "32", "--epochs", "2",
                 "--batch-size", "16", "--workers", "0", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "epoch 2/2" in text and "val top1" in text and "img/s" in text
    for name in ("best.pt", "last.pt", "metrics.json", "curves.png", "predictions.png", "confusion.csv",
                 "per_class.csv"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    assert m["classes"] == ["circle", "square", "triangle", "diamond", "cross"]
    for e in m["epochs"]:
        assert e["train"]["loss"] > 0 and 0 <= e["val"]["top1"] <= 1 and e["train"]["images_per_s"] > 0
    model = create_model("resnet18", weights=out / "best.pt")
    assert model.fc.out_features == 5
    header = (out / "per_class.csv").read_text().splitlines()[0]
    assert header == "class,precision,recall,f1,support"


def test_train_learns_and_loss_falls(shapes, tmp_path):
    ds = dsprep.parse("coco", shapes)
    res = train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path, epochs=4, lr=3e-3))
    hist = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    assert hist[-1]["train"]["loss"] < 0.6 * hist[0]["train"]["loss"]
    # 5 balanced shapes: chance is 0.2. (Validation accuracy needs more steps than a unit
    # test affords, for BatchNorm's running statistics to settle: scripts/bench/sanity_train.py.)
    assert hist[-1]["train"]["top1"] >= 0.5
    assert res["best"]["epoch"] == max(range(1, 5), key=lambda e: (hist[e - 1]["val"]["top1"], e))


def test_train_is_deterministic_on_cpu_and_resumes(shapes, tmp_path):
    ds = dsprep.parse("coco", shapes)
    a = train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path / "a", epochs=1))
    b = train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path / "b", epochs=1))
    assert a["last"]["train"]["loss"] == b["last"]["train"]["loss"]
    assert a["last"]["val"]["loss"] == b["last"]["val"]["loss"]
    train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path / "a", epochs=2, resume=True))
    hist = json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in hist] == [1, 2]
    assert hist[0]["train"]["loss"] == a["last"]["train"]["loss"]
    # another model or task over the same --out: named, not a load_state_dict traceback
    with pytest.raises(FileExistsError, match=r"written by another run \(model 'resnet18' -> 'resnet34'\)"):
        train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path / "a", epochs=3, resume=True, model="resnet34"))


def test_resume_without_checkpoint_is_a_clear_error(shapes, tmp_path):
    ds = dsprep.parse("coco", shapes)
    with pytest.raises(FileNotFoundError, match="run without --resume first"):
        train(ds.subset("train"), None, _cfg(tmp_path, resume=True))


def test_train_segmentation_on_voc_masks(shapes_voc, tmp_path):
    ds = dsprep.parse("voc", shapes_voc)
    assert any(r.mask_path for r in ds)
    res = train(ds.subset("train"), ds.subset("val"), _cfg(tmp_path, task="segmentation", image_size=32,
                                                           epochs=1, batch_size=4))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["classes"][0] == "background" and len(m["classes"]) == 6
    va = m["epochs"][0]["val"]
    assert 0 <= va["pixel_accuracy"] <= 1 and 0 <= va["miou"] <= 1
    assert (tmp_path / "predictions.png").is_file() and res["best"]["epoch"] == 1


def test_an_interrupted_segmentation_run_resumes_as_if_never_stopped(shapes_voc, tmp_path):
    """The FCN head's dropout draws from torch's generator: its state travels in last.pt."""
    ds = dsprep.parse("voc", shapes_voc)
    cfg = dict(task="segmentation", image_size=32, epochs=2, batch_size=4)
    whole = train(ds.subset("train"), None, _cfg(tmp_path / "whole", **cfg), echo=lambda s: None)

    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds.subset("train"), None, _cfg(tmp_path / "cut", **cfg), echo=stop_after_epoch_1)
    resumed = train(ds.subset("train"), None, _cfg(tmp_path / "cut", resume=True, **cfg), echo=lambda s: None)
    assert resumed["last"]["train"]["loss"] == whole["last"]["train"]["loss"]


def test_finetune_head_only_changes_the_head(shapes, tmp_path):
    ds = dsprep.parse("coco", shapes)
    w = tmp_path / "init.pt"
    torch.save(create_model("resnet18", num_classes=7).state_dict(), w)  # another class count: head replaced
    train(ds.subset("train"), None, _cfg(tmp_path / "ft", weights=str(w), finetune="head", epochs=1))
    before = torch.load(w, weights_only=True)
    after = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)["model"]
    assert torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])
    assert torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])  # frozen BN stays in eval
    assert after["fc.weight"].shape == (5, 512)


def test_torchrun_two_cpu_processes(shapes, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dsprep", "train", "coco", str(shapes), "--task", "crops", "--image-size", "32",
           "--epochs", "1", "--batch-size", "8", "--workers", "0", "--out", str(out), "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("epoch 1/1") == 1  # rank 0 alone reports
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1] and m["epochs"][0]["train"]["loss"] > 0
    assert create_model("resnet18", weights=out / "best.pt").fc.out_features == 5


@pytest.mark.parametrize("name", ["cityscapes", "imagenet"])
def test_train_dataset_name_loads_the_objects_crops_need(name, tmp_path, monkeypatch, capsys):
    # `--dataset NAME --task crops` must load the catalog task that has boxes (Cityscapes
    # instance, ImageNet localization), as `train FORMAT ROOT --task crops` does.
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_cityscapes import make_cityscapes
    from fakes_imagenet import make_kaggle

    root = tmp_path / name
    (make_cityscapes if name == "cityscapes" else make_kaggle)(root)
    seen = {}

    def fake_train(train_ds, val_ds, cfg):
        seen["train"], seen["val"] = train_ds, val_ds
        return {"best": {"epoch": 1, "top1": 1.0}, "seconds": 0.0}

    monkeypatch.setattr("dsprep.train.train", fake_train)
    assert main(["train", "--dataset", name, "--data-root", str(root), "--task", "crops", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    assert len(seen["train"].torch(task="crops")) > 0 and len(seen["val"].torch(task="crops")) > 0
    if name == "cityscapes":  # and it trains end to end
        monkeypatch.undo()
        capsys.readouterr()
        assert main(["train", "--dataset", name, "--data-root", str(root), "--task", "crops", "--epochs", "1",
                     "--image-size", "16", "--batch-size", "8", "--workers", "0",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 0
        assert "val top1" in capsys.readouterr().out


def test_a_last_batch_of_one_sample_is_dropped_and_one_sample_is_refused(shapes, tmp_path):
    # BatchNorm cannot train on one sample; crops are counted (not images) to decide.
    ds = dsprep.parse("coco", shapes)
    n = len(ds.subset("train").torch(task="crops"))
    res = train(ds.subset("train"), None, _cfg(tmp_path / "a", epochs=1, batch_size=n - 1))
    assert res["best"]["epoch"] == 1
    from dsprep.errors import UnknownNameError
    from dsprep.records import Dataset, Instances, Record

    r = ds.subset("train").records[0]
    one = Dataset(ds.categories, [Record(r.id, r.path, r.width, r.height, "train", instances=Instances(
        boxes=r.instances.boxes[:1], labels=r.instances.labels[:1]))], root=ds.root)
    with pytest.raises(UnknownNameError, match="has 1 sample"):
        train(one, None, _cfg(tmp_path / "b", epochs=1))


def test_dummy_labelled_test_split_is_never_the_default_validation(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_cityscapes import make_cityscapes

    root = tmp_path / "cs"
    make_cityscapes(root, splits=("train",), test=True)
    seen = {}

    def fake_train(train_ds, val_ds, cfg):
        seen["train"], seen["val"] = train_ds, val_ds
        return {"best": {"epoch": 1, "miou": 1.0}, "seconds": 0.0}

    monkeypatch.setattr("dsprep.train.train", fake_train)
    args = ["train", "cityscapes", str(root), "--task", "segmentation", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert seen["val"] is None and set(seen["train"].splits) == {"train"}
    assert "not validating on 'test': its labels are dummies" in out and "no validation split" in out
    assert "task segmentation, 19 classes" in out  # the train ids trained on, not the 35 label rows
    assert main([*args, "--val-split", "test"]) == 2
    assert "the 'test' split's labels are dummies" in capsys.readouterr().err


def test_roboflow_split_names_are_found_in_any_case(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_imagenet import make_tree

    make_tree(tmp_path / "flowers", splits=("Train", "valid"))
    seen = {}

    def fake_train(train_ds, val_ds, cfg):
        seen["train"], seen["val"] = train_ds, val_ds
        return {"best": {"epoch": 1, "top1": 1.0}, "seconds": 0.0}

    monkeypatch.setattr("dsprep.train.train", fake_train)
    assert main(["train", "imagenet", str(tmp_path / "flowers"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert list(seen["train"].splits) == ["Train"] and list(seen["val"].splits) == ["valid"]


def test_help_texts_state_each_default_once():
    # Every option of every command has a help text, and no text says its default twice
    # ("(default: every split found) (default: None)").
    import argparse

    from dsprep.cli import _Formatter, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fmt = _Formatter("dsprep")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, f"dsprep {name} {action.option_strings or action.dest}: no help text"
            text = fmt._get_help_string(action) % {"default": action.default}
            assert text.count("default") <= 1, (name, text)
            assert "(default: None)" not in text and "(default: False)" not in text, (name, text)
    train_help = sub.choices["train"].format_help()
    assert "val/valid/validation/val2017/test" in train_help and "(default: 10)" in train_help


def test_validation_metrics_leave_out_void_pixels():
    # The training loop's mIoU counts what the segmentation eval counts: mask value 255 is
    # void (as the loss's ignore_index), whatever the model predicts there.
    import torch.nn.functional as F

    from dsprep.train import _validate

    pred = torch.tensor([[[0, 1, 1], [0, 0, 1]]])
    mask = torch.tensor([[[0, 1, 255], [255, 0, 0]]], dtype=torch.uint8)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(pred, 2).permute(0, 3, 1, 2).float() * 5

    loader = [(torch.zeros(1, 3, 2, 3), {"mask": mask})]
    metrics, _ = _validate(Fixed(), loader, "segmentation", 2, ["a", "b"], torch.device("cpu"),
                           channels_last=False, amp=False, autocast_dtype=torch.bfloat16)
    # counted: 0->0, 1->1, 0->0, 0->1: confusion [[2, 1], [0, 1]]
    assert metrics["per_class_iou"] == pytest.approx({"a": 2 / 3, "b": 1 / 2})
    assert metrics["pixel_accuracy"] == pytest.approx(3 / 4) and metrics["miou"] == pytest.approx(7 / 12)
