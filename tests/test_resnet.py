"""dsprep.models: torchvision key compatibility, reference logits, weights, finetune, segmentation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsprep.errors import MalformedFileError, MissingFileError, UnknownNameError
from dsprep.models import (
    SegmentationModel,
    apply_finetune,
    create_model,
    list_models,
    load_weights,
    trainable_parameters,
)
from dsprep.models.resnet import ARCHITECTURES, BasicBlock, Bottleneck, ResNet

# Every model of ../shared/reference/torchvision_resnet_state_dicts.json and of
# torchvision_resnet_reference_outputs.json; test_reference_lists_these_models
# fails if the reference files list others, so none goes untested.
STATE_DICT_MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2"]
LOGIT_MODELS = ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2"]
# Parameter counts of timm 1.0.31's seresnet18 ... seresnext101_32x8d (timm.create_model
# (name).parameters()); their state dicts load into ours with strict=True, key order equal.
SE_MODELS = {"se_resnet18": 11779624, "se_resnet34": 21960416, "se_resnet50": 28088024,
             "se_resnet101": 49326872, "se_resnet152": 66821848,
             "se_resnext50_32x4d": 27559896, "se_resnext101_32x8d": 93569048}


@pytest.fixture(scope="module")
def reference(fixtures):
    root = fixtures.parent / "reference"
    return {
        "state_dicts": json.loads((root / "torchvision_resnet_state_dicts.json").read_text())["models"],
        "outputs": json.loads((root / "torchvision_resnet_reference_outputs.json").read_text())["models"],
    }


def meta_model(name: str, **cfg) -> ResNet:
    """The architecture without allocating or initialising its weights."""
    from dataclasses import replace
    with torch.device("meta"):
        return ResNet(replace(ARCHITECTURES[name], **cfg))


def deterministic_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The formula of the reference file's "how" field, entry by entry."""
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        n, shape = value.numel(), tuple(value.shape)
        base = np.sin(0.37 * np.arange(n, dtype=np.float64) + len(key))
        if key.endswith("running_var"):
            filled = np.linspace(0.5, 1.5, n)
        elif key.endswith("running_mean") or key.endswith("bias"):
            filled = 0.1 * base
        elif len(shape) == 1:  # a norm layer's scale
            filled = 1 + 0.1 * base
        else:  # conv / linear weight: uniform-like with fan-in variance
            filled = base * math.sqrt(3 / (n / shape[0]))
        state[key] = torch.from_numpy(filled.astype(np.float32)).reshape(shape)
    return state


def reference_input() -> torch.Tensor:
    i = torch.arange(3 * 64 * 64, dtype=torch.float64)
    return torch.stack([torch.cos(0.01 * (b + 1) * i).reshape(3, 64, 64) for b in range(2)]).float()


def test_reference_lists_these_models(reference):
    assert list(reference["state_dicts"]) == STATE_DICT_MODELS
    assert list(reference["outputs"]) == LOGIT_MODELS


@pytest.mark.parametrize("name", STATE_DICT_MODELS)
def test_state_dict_matches_torchvision(reference, name):
    ref = reference["state_dicts"][name]
    model = meta_model(name)
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == ref["state_dict"]  # same keys, same order, same shapes and dtypes
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]


@pytest.mark.parametrize("name", LOGIT_MODELS)
def test_logits_match_torchvision(reference, name):
    ref = reference["outputs"][name]
    model = meta_model(name)
    model.load_state_dict(deterministic_state(model), strict=True, assign=True)
    with torch.no_grad():
        logits = model.eval()(reference_input())
    np.testing.assert_allclose(logits[:, :8].numpy(), ref["logits_first8"], rtol=1e-3, atol=1e-4)
    # the reference sums are rounded to 4 decimals
    np.testing.assert_allclose(logits.sum(1).numpy(), ref["logits_sum"], rtol=1e-3, atol=2e-4)
    assert logits.argmax(1).tolist() == ref["argmax"]


@pytest.fixture(scope="module")
def resnet18_reference(tmp_path_factory, reference):
    """A torchvision-layout resnet18 .pth with the reference weights, and its logits."""
    model = meta_model("resnet18")
    state = deterministic_state(model)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state, reference["outputs"]["resnet18"]


def test_create_model_loads_local_pth(resnet18_reference):
    path, _, ref = resnet18_reference
    model = create_model("resnet18", weights=path)
    assert model.fc.out_features == 1000  # class count taken from the checkpoint
    assert model.weights_report.skipped == [] and model.weights_report.new == []
    with torch.no_grad():
        logits = model.eval()(reference_input())
    np.testing.assert_allclose(logits[:, :8].numpy(), ref["logits_first8"], rtol=1e-3, atol=1e-4)


def test_training_checkpoint_wrappers_are_opened(resnet18_reference, tmp_path):
    # timm's train.py saves {"state_dict": ..., "epoch": ...}; under DDP keys carry "module."
    path, state, _ = resnet18_reference
    wrapped = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    model = create_model("resnet18", weights=wrapped)
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.fc.bias, state["fc.bias"])


def test_head_replaced_when_class_count_differs(resnet18_reference):
    path, state, _ = resnet18_reference
    model = create_model("resnet18", num_classes=10, weights=path)
    assert model.fc.weight.shape == (10, 512)
    assert model.weights_report.skipped == ["fc.weight", "fc.bias"]
    assert model.weights_report.new == ["fc.weight", "fc.bias"]
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_checkpoint_of_another_architecture_names_it(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(create_model("resnet50", num_classes=2).state_dict(), path)
    with pytest.raises(MalformedFileError, match=r"r50\.pth.*looks like a resnet50 checkpoint"):
        create_model("resnet18", weights=path)


def test_bad_weights_files(tmp_path):
    with pytest.raises(MissingFileError, match="never downloads"):
        create_model("resnet18", weights=tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(MalformedFileError, match="junk.pth: not a readable tensor checkpoint"):
        create_model("resnet18", weights=junk)
    no_tensors = tmp_path / "meta.pth"
    torch.save({"epoch": 1, "lr": 0.1}, no_tensors)
    with pytest.raises(MalformedFileError, match="found keys epoch, lr"):
        create_model("resnet18", weights=no_tensors)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        create_model("resnet-50")
    with pytest.raises(UnknownNameError, match="Valid values are: all, last, head"):
        create_model("resnet18", finetune="backbone")
    with pytest.raises(UnknownNameError, match="Unknown task"):
        create_model("resnet18", task="detection")
    with pytest.raises(UnknownNameError, match="Unknown model option 'output_stride'"):
        create_model("resnet18", output_stride=8)  # a segmentation option


def test_list_models_has_the_family():
    assert set(list_models()) == set(STATE_DICT_MODELS) | set(SE_MODELS)


# --- training -------------------------------------------------------------------------

def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def _step(model, x, target, loss_fn, lr=0.01):
    """Loss before and after one SGD step on the same batch (same dropout masks)."""
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=lr)
    torch.manual_seed(0)
    loss = loss_fn(model(x), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.manual_seed(0)
    with torch.no_grad():
        after = loss_fn(model(x), target)
    return loss.item(), after.item()


def test_resnet18_forward_and_one_optimizer_step_on_cpu():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=4)
    before = _snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4)
    F.cross_entropy(logits, torch.tensor([1, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    optimizer.step()
    changed = _changed(before, model)
    assert {"conv1.weight", "layer4.1.conv2.weight", "fc.bias", "bn1.running_mean"} <= changed
    assert model.bn1.num_batches_tracked.item() == 1


# At 32x32 layer4 is 1x1, and BatchNorm over a batch of 2 single pixels is too
# ill-conditioned for "one step lowers the loss" to hold; at 64x64 it is robust.
@pytest.mark.parametrize("name", ["resnet18", "se_resnet18"])
def test_one_optimizer_step_reduces_loss(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4)
    before, after = _step(model, torch.randn(2, 3, 64, 64), torch.tensor([1, 3]), F.cross_entropy)
    assert math.isfinite(before) and after < before


@pytest.mark.parametrize("mode, size, tol", [("eval", 32, 1e-4), ("train", 64, 1e-3)])
def test_channels_last_gives_the_same_output(mode, size, tol):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10)
    getattr(model, mode)()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        reference_out = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference_out, rtol=tol, atol=tol)


def test_zero_init_residual_makes_blocks_identities():
    model = create_model("resnet50", num_classes=10, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and all(not b.bn3.weight.any() for b in blocks)
    x = torch.rand(1, 256, 8, 8)  # >= 0, so relu(x + 0) == x
    with torch.no_grad():
        torch.testing.assert_close(model.layer1[1](x), x)
    basic = create_model("resnet18", zero_init_residual=True)
    assert all(not m.bn2.weight.any() for m in basic.modules() if isinstance(m, BasicBlock))


# --- SE-ResNet --------------------------------------------------------------------------

@pytest.mark.parametrize("name", SE_MODELS)
def test_se_keys_follow_timm(name):
    plain = meta_model(name.removeprefix("se_")).state_dict()
    se = meta_model(name).state_dict()
    extra = [k for k in se if k not in plain]
    assert [k for k in se if k in plain] == list(plain)  # every torchvision key kept, in order
    # one SE module (fc1, fc2 with biases) per block, named as in timm's seresnet*
    assert all(k.split(".")[2] == "se" for k in extra)
    assert len(extra) == 4 * sum(ARCHITECTURES[name].layers)
    out = 512 * (1 if "18" in name or "34" in name else 4)
    # timm: rd = make_divisible(channels / 16, 8) -> 2048 -> 128, 512 -> 32
    assert se["layer4.0.se.fc1.weight"].shape == (out // 16, out, 1, 1)
    assert se["layer4.0.se.fc2.bias"].shape == (out,)
    assert se["layer1.0.se.fc1.weight"].shape[0] == (8 if out == 512 else 16)
    assert sum(p.numel() for p in meta_model(name).parameters()) == SE_MODELS[name]


def test_se_gates_the_residual_branch_before_the_addition():
    # With fc2 = 0 the SE gate is sigmoid(0) = 1/2 everywhere. Gating the residual
    # branch before the addition is then the same network as a plain ResNet whose
    # last BN in each block has half the scale and shift.
    torch.manual_seed(0)
    se = create_model("se_resnet50", num_classes=7).eval()
    plain = create_model("resnet50", num_classes=7).eval()
    state = se.state_dict()
    for key in state:
        if ".se.fc2." in key:
            state[key].zero_()
    plain_state = {k: v.clone() for k, v in state.items() if ".se." not in k}
    for key in plain_state:
        if key.split(".")[-2] == "bn3" and key.split(".")[-1] in ("weight", "bias"):
            plain_state[key] *= 0.5
    se.load_state_dict(state)
    plain.load_state_dict(plain_state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(se(x), plain(x), rtol=1e-4, atol=1e-4)


# --- transfer learning --------------------------------------------------------------------

@pytest.fixture()
def pretrained18(tmp_path):
    torch.manual_seed(1)
    source = create_model("resnet18")
    # give the running statistics non-default values, as a trained network has
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), path)
    return path


@pytest.mark.parametrize("mode, trainable", [
    ("head", ("fc.",)),
    ("last", ("fc.", "layer4.")),
    ("all", ("",)),
])
def test_finetune_freezes_params_and_batchnorm(pretrained18, mode, trainable):
    model = create_model("resnet18", num_classes=5, weights=pretrained18, finetune=mode)
    model.train()
    before = _snapshot(model)
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 4])
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=0.1, momentum=0.9)
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == name.startswith(trainable), name
    optimizer.step()
    changed = _changed(before, model)
    frozen = {k for k in before if not k.startswith(trainable)}
    assert not changed & frozen  # weights, biases and running statistics all untouched
    assert "fc.weight" in changed
    if mode != "head":
        # the trained stage's BatchNorm statistics do move
        assert {"layer4.1.bn2.running_mean", "layer4.1.conv2.weight"} <= changed
    if mode == "all":
        assert {"conv1.weight", "bn1.running_var"} <= changed
    # frozen BN stays in eval mode however often train() is called
    assert model.bn1.training == (mode == "all")
    assert model.layer4[0].bn1.training == (mode != "head")
    assert list(model.state_dict()) == list(create_model("resnet18").state_dict())


def test_finetune_on_a_model_already_built():
    model = create_model("resnet34", num_classes=3)
    names = apply_finetune(model, "head")
    assert names == ["fc.weight", "fc.bias"]
    assert [p.shape for p in trainable_parameters(model)] == [(3, 512), (3,)]
    assert not model.layer1[0].bn1.training
    apply_finetune(model, "all")
    assert model.layer1[0].bn1.training and len(trainable_parameters(model)) == 110


# --- segmentation ----------------------------------------------------------------------------

def test_segmentation_output_shape_and_a_step_reduces_loss():
    torch.manual_seed(0)
    model = create_model("resnet18", task="segmentation", num_classes=3)
    assert isinstance(model, SegmentationModel)
    x = torch.randn(2, 3, 64, 80)
    target = torch.randint(0, 3, (2, 64, 80))
    target[:, :4] = 255  # ignored, as Cityscapes/VOC void
    assert model(x).shape == (2, 3, 64, 80)
    before, after = _step(model, x, target, lambda out, t: F.cross_entropy(out, t, ignore_index=255))
    assert after < before


@pytest.mark.parametrize("stride, skip", [(8, False), (16, True)])
def test_segmentation_options(stride, skip):
    model = create_model("resnet18", task="segmentation", num_classes=2,
                         output_stride=stride, skip_layer3=skip).eval()
    with torch.no_grad():
        features = model.backbone.forward_features(torch.zeros(1, 3, 64, 64))
        assert features["layer4"].shape[-1] == 64 // stride
        assert model(torch.zeros(1, 3, 50, 70)).shape == (1, 2, 50, 70)
    assert (model.skip is not None) == skip


def test_segmentation_from_classification_weights(pretrained18):
    model = create_model("resnet18", task="segmentation", num_classes=21,
                         weights=pretrained18, finetune="head")
    report = model.weights_report
    assert report.skipped == ["fc.weight", "fc.bias"]
    assert report.new and all(k.startswith(("classifier.", "skip.")) for k in report.new)
    source = torch.load(pretrained18, weights_only=True)
    assert torch.equal(model.backbone.layer2[0].downsample[0].weight,
                       source["layer2.0.downsample.0.weight"])
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} \
        == {"classifier", "skip"}
    assert not model.backbone.layer4[1].bn2.training and model.classifier[1].training


def test_segmentation_needs_a_class_count():
    with pytest.raises(ValueError, match="needs num_classes"):
        create_model("resnet18", task="segmentation")


def test_segmentation_keys_are_torchvision_fcn():
    # torchvision's fcn_resnet50(aux_loss=False): backbone.* without fc, classifier.0-4
    model = create_model("resnet50", task="segmentation", num_classes=21,
                         output_stride=8, skip_layer3=False)
    keys = list(model.state_dict())
    backbone = [k for k in create_model("resnet50").state_dict() if not k.startswith("fc.")]
    assert keys[:len(backbone)] == [f"backbone.{k}" for k in backbone]
    assert [k for k in keys[len(backbone):] if not k.startswith("classifier.1.")] \
        == ["classifier.0.weight", "classifier.4.weight", "classifier.4.bias"]
    assert model.classifier[0].weight.shape == (512, 2048, 3, 3)



def test_every_model_has_a_builder():
    from dsprep.models import resnet
    assert [name for name in list_models() if not callable(getattr(resnet, name, None))] == []
    assert set(list_models()) <= set(resnet.__all__)
    with torch.device("meta"):
        model = resnet.se_resnext50_32x4d(num_classes=3, zero_init_residual=True)
    assert model.fc.out_features == 3 and model.cfg.groups == 32 and model.cfg.se
