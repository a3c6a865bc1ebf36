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


def test_classification_without_image_labels_is_refused_before_training(shapes_voc, tmp_path, capsys):
    # VOC labels objects and pixels, not images: classification (the default task) used to
    # train on labels of -1 (loss nan), write best.pt and exit 0
    out = tmp_path / "run"
    assert main(["train", "voc", str(shapes_voc), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "task 'classification' needs image-level labels" in captured.err
    assert "it supports: --task crops|segmentation" in captured.err
    assert "training resnet18" not in captured.out and not out.exists()
    from dsprep.errors import UnknownNameError

    ds = dsprep.parse("voc", shapes_voc)
    with pytest.raises(UnknownNameError, match=r"it supports: --task crops\|segmentation"):
        train(ds.subset("train"), None, _cfg(tmp_path / "api", task="classification"))
    assert not (tmp_path / "api").exists()  # refused before OUT is claimed
    # the loader itself: no silent -1 labels
    with pytest.raises(UnknownNameError, match="none of the 16 records has one; they support task="
                                               "'crops' | 'detection' | 'segmentation'"):
        ds.torch(task="classification")


def test_classification_with_some_unlabelled_images_warns(tmp_path, caplog):
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes_imagenet import make_tree

    make_tree(tmp_path / "tree", splits=("train",))
    ds = dsprep.parse("imagenet", tmp_path / "tree")
    ds.records[1].label = None
    with caplog.at_level("WARNING", logger="dsprep"):
        tds = ds.torch(task="classification")
    assert int(tds[1][1]["label"]) == -1
    assert f"1 of {len(ds)} records have no image label (first: {ds.records[1].id})" in caplog.text


@pytest.mark.parametrize("cores, device, workers, plan", [
    (2, "cpu", None, (0, None)),          # the model's threads get every core; loading in-process
    (4, "cpu", None, (0, None)),
    (16, "cpu", None, (4, 12)),           # a quarter of the cores load, the model keeps the rest
    (2, "cpu", 1, (1, 1)),                # asked-for workers are kept; the model gets what they leave
    (2, "cpu", 2, (2, 1)),
    (8, "cuda", None, (4, None)),         # on CUDA the loader feeds the GPU
])
def test_cpu_plan_keeps_loader_processes_off_the_models_cores(cores, device, workers, plan, monkeypatch):
    from dsprep.train import cpu_plan

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    assert cpu_plan(workers, torch.device(device), cores=cores) == plan
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is never overridden
    assert cpu_plan(workers, torch.device(device), cores=cores)[1] is None


def test_train_runs_with_its_cpu_plan_and_restores_torch_threads(shapes, tmp_path, monkeypatch):
    # a 2-core machine: no loader process competes with the model's two threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("dsprep._io.default_workers", lambda: 2)
    ds = dsprep.parse("coco", shapes)
    before = torch.get_num_threads()
    train(ds.subset("train"), None, _cfg(tmp_path / "a", epochs=1, workers=None))
    runtime = json.loads((tmp_path / "a" / "metrics.json").read_text())["runtime"]
    assert runtime["loader_workers"] == 0 and runtime["torch_threads"] == before
    # one asked-for loader process: the model takes the other core, and threads come back after
    train(ds.subset("train"), None, _cfg(tmp_path / "b", epochs=1, workers=1))
    runtime = json.loads((tmp_path / "b" / "metrics.json").read_text())["runtime"]
    assert runtime["loader_workers"] == 1 and runtime["torch_threads"] == 1
    assert torch.get_num_threads() == before


def test_progress_lines_without_a_terminal(shapes, tmp_path, monkeypatch, capsys, request):
    # CI logs and nohup: a line at every 10% of a long epoch, then the epoch line
    import dsprep.train as T

    monkeypatch.setattr(T, "LONG_EPOCH_S", 0.0)  # every epoch counts as long here
    # one torch thread: 30 steps of batch 2 take seconds, not minutes, on a busy 2-core machine
    # (two threads spinning at each barrier while other jobs hold the cores: 5 s a step)
    request.addfinalizer(lambda threads=torch.get_num_threads(): torch.set_num_threads(threads))
    torch.set_num_threads(1)
    args = ["train", "coco", str(shapes), "--task", "crops", "--image-size", "16", "--epochs", "1",
            "--batch-size", "2", "--workers", "0", "--val-split", "none", "--out", str(tmp_path / "a")]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    marks = [line for line in lines if line.startswith("epoch 1/1 ") and "% (" in line]
    assert [m.split()[2] for m in marks] == [f"{k}0%" for k in range(1, 10)]
    assert all("train loss" in m and "img/s" in m and "s to go" in m for m in marks)
    assert lines.index(marks[-1]) < next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1 |"))
    assert main([*args[:-1], str(tmp_path / "b"), "--quiet"]) == 0  # --quiet: the epoch lines only
    assert "% (" not in capsys.readouterr().out
    monkeypatch.setattr(T, "LONG_EPOCH_S", 1e9)  # a short epoch: no progress lines
    assert main([*args[:-1], str(tmp_path / "c")]) == 0
    assert "% (" not in capsys.readouterr().out


def test_running_figures_equal_the_classification_metrics_of_every_sample():
    # summed on the device per step (no host sync), read once per epoch: same figures
    from dsprep.eval.classification import classification_metrics
    from dsprep.train import _Running

    g = torch.Generator().manual_seed(0)
    c, batches = 7, [(torch.randn(9, 7, generator=g), torch.randint(-1, 7, (9,), generator=g)) for _ in range(4)]
    run = _Running("classification", c, torch.device("cpu"))
    for logits, y in batches:
        run.add(torch.tensor(1.5), logits, y)
    figures, res = run.metrics([str(i) for i in range(c)])
    logits, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    keep = y >= 0
    ref = classification_metrics(y[keep].numpy(), scores=logits[keep].numpy(), num_classes=c)
    assert figures["top1"] == ref.top1 and figures["top5"] == ref.top5 and figures["loss"] == 1.5
    assert figures["mean_class_accuracy"] == ref.mean_class_accuracy
    assert (res.confusion == ref.confusion).all()
    seg = _Running("segmentation", 3, torch.device("cpu"))
    mask = torch.tensor([[[0, 1], [2, 255]]])
    seg.add(torch.tensor(0.5), torch.tensor([[[[9, 0], [0, 9]], [[0, 9], [0, 0]], [[0, 0], [9, 0]]]]).float(), mask)
    assert seg.matrix().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # 255: not counted
    assert int(seg.cm.sum()) == 4 and int(seg.cm[-1]) == 1  # ... but binned apart, as confusion_cells does


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

    from dsprep.train import TrainConfig, _Run

    run = _Run(cfg=TrainConfig(task="segmentation"), device=torch.device("cpu"), world=1, is_main=True,
               echo=print, progress_mode="off", amp=False, channels_last=False, names=["a", "b"], out=Path("."),
               model=Fixed(), val_loader=[(torch.zeros(1, 3, 2, 3), {"mask": mask})])
    metrics, _, _ = _validate(run)
    # counted: 0->0, 1->1, 0->0, 0->1: confusion [[2, 1], [0, 1]]
    assert metrics["per_class_iou"] == pytest.approx({"a": 2 / 3, "b": 1 / 2})
    assert metrics["pixel_accuracy"] == pytest.approx(3 / 4) and metrics["miou"] == pytest.approx(7 / 12)


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_cli_train_lets_openmp_threads_sleep_unless_told_otherwise(shapes_voc, tmp_path, preset, expected):
    # set before torch is imported (libgomp reads it once); a user's own setting is kept
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = ("import os, sys; from dsprep.cli import main; "
            f"rc = main(['train', 'voc', {str(shapes_voc)!r}, '--out', {str(tmp_path / 'o')!r}]); "
            "print(rc, 'torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.stdout.split()[-3:] == ["2", "True", expected], res.stderr  # refused (classification on VOC)


def test_prediction_grid_samples_spread_over_classes_and_show_mistakes():
    """A validation split in class order: the grid shows one sample per class (not 16 of the
    first class), a wrong prediction in place of a right one, and fills up with the rest."""
    from dsprep.train import _SamplePicks

    picks = _SamplePicks(4)
    imgs = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 3, 2, 2)
    picks.offer(imgs, [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 2, 1, 1, 1, 1])
    picks.offer(imgs, [2, 2, 2, 2, 2, 2, 2, 2], [2] * 8)
    got = picks.samples()
    assert [(t, p) for _, t, p in got] == [(0, 2), (1, 1), (2, 2), (0, 0)]
    assert int(got[0][0][0, 0, 0]) == 3  # the mistake's own image
    picks = _SamplePicks(2)
    picks.offer(imgs, [0, 1, 2, 3, -1, 0, 1, 1], [1, 0, 2, 3, 0, 0, 1, 1])
    assert [(t, p) for _, t, p in picks.samples()] == [(0, 1), (1, 0)] and not picks.open


def test_curves_mark_whole_epochs_only(tmp_path, monkeypatch):
    """A user reads epochs 1, 2, 3, 4 on the x axis, not 1.5 (matplotlib's default ticks for four points)."""
    import matplotlib.pyplot as plt

    from dsprep.train import _plot_curves

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at its axes
    history = [{"epoch": e, "train": {"loss": 1.0 / e, "top1": 0.2 * e}, "val": {"loss": 1.2 / e, "top1": 0.2 * e}}
               for e in (1, 2, 3, 4)]
    _plot_curves(history, tmp_path / "curves.png", "top1")
    assert (tmp_path / "curves.png").stat().st_size > 0
    for ax in figures[0].axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
