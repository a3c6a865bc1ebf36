"""Loading local checkpoints and choosing what to train (transfer learning).

Nothing here downloads: weights come from a file the user names. A torchvision
or timm ``.pth`` loads as is (same keys); the usual wrappers around a state dict
are opened (``{"model": ...}``, ``{"state_dict": ...}``, as saved by training
scripts) and the ``module.`` prefix of DistributedDataParallel and the
``_orig_mod.`` prefix of ``torch.compile`` are removed. Those are wrappers, not
renamings: no key inside the network is ever mapped to another.

Finetune modes (``FINETUNE_MODES``), as practitioners use them:

- ``"all"``: start from the weights, train every parameter.
- ``"last"``: freeze the stem and ``layer1``-``layer3``; train ``layer4`` and the head.
- ``"head"``: freeze the whole backbone; train only the (new) head.

Frozen BatchNorm layers stay in eval mode when ``model.train()`` is called, so
their running statistics keep the pretrained values.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsprep.errors import MalformedFileError, MissingFileError, check_choice
from dsprep.models.resnet import ARCHITECTURES, ResNet

logger = logging.getLogger(__name__)

__all__ = [
    "FINETUNE_MODES",
    "WeightsReport",
    "apply_finetune",
    "load_weights",
    "read_state_dict",
    "trainable_parameters",
]

FINETUNE_MODES = ("all", "last", "head")

# Containers in which training scripts save the state dict, most specific first:
# dsprep train and many scripts use "model"; timm's train.py and Lightning "state_dict".
_CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "model_state")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys a checkpoint may carry that a new head legitimately does not take: the
# classifier of a classification checkpoint, torchvision FCN's auxiliary head.
_DROPPABLE_PREFIXES = ("fc.", "backbone.fc.", "aux_classifier.")


@dataclass
class WeightsReport:
    """What :func:`load_weights` did.

    Attributes:
        source: the file (or ``"<state_dict>"``).
        loaded: model keys filled from the checkpoint.
        skipped: checkpoint keys not loaded (a classifier replaced for another class count).
        new: model keys left at their initialisation (the new head).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.source}: loaded {len(self.loaded)} tensors"
        if self.skipped:
            text += f"; skipped {', '.join(self.skipped)}"
        if self.new:
            text += f"; newly initialised {', '.join(self.new)}"
        return text


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.pth``/``.pt``/``.bin`` (or ``.safetensors``) file.

    Only tensors are unpickled (``torch.load(weights_only=True)``): a checkpoint
    holding arbitrary Python objects is refused rather than executed.

    Args:
        path: the checkpoint file.

    Returns:
        The state dict, unwrapped from ``{"model": ...}``/``{"state_dict": ...}`` and
        stripped of ``module.``/``_orig_mod.`` prefixes.

    Raises:
        MissingFileError: the file does not exist.
        MalformedFileError: it is not a readable checkpoint or holds no state dict.

    Example:
        >>> sd = read_state_dict("resnet18-f37072fd.pth")  # doctest: +SKIP
        >>> sd["fc.weight"].shape  # doctest: +SKIP
        torch.Size([1000, 512])
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(str(path), "weights file not found (dsprep never downloads "
                                          "weights; pass a local .pth file)")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise MalformedFileError(str(path), "reading .safetensors needs the safetensors "
                                                "package (pip install safetensors)") from None
        obj = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError...
            raise MalformedFileError(str(path), (
                f"not a readable tensor checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). If it holds Python "
                "objects besides tensors and you trust it, re-save only the weights: "
                "torch.save(torch.load(p, weights_only=False)['state_dict'], 'clean.pth')")) from None
    return _unwrap(obj, str(path))


def _unwrap(obj: object, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise MalformedFileError(where, f"expected a state dict (a mapping of names to "
                                        f"tensors), found {type(obj).__name__}")
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], where)
        raise MalformedFileError(where, "expected a state dict or a checkpoint with one of the "
                                        f"keys {', '.join(_CONTAINER_KEYS)}; found keys "
                                        f"{', '.join(map(str, list(obj)[:10]))}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """The registered architecture whose backbone keys and shapes match ``state``."""
    shapes = {k: tuple(v.shape) for k, v in state.items()
              if not k.startswith(_DROPPABLE_PREFIXES)}
    if any(k.startswith("backbone.") for k in shapes):
        shapes = {k[len("backbone."):]: s for k, s in shapes.items() if k.startswith("backbone.")}
    for name, cfg in ARCHITECTURES.items():
        with torch.device("meta"):
            candidate = ResNet(cfg)
        ref = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not k.startswith("fc.")}
        if ref == shapes:
            return name
    return None


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor], *,
                 source: str | None = None) -> WeightsReport:
    """Fill ``model`` from a checkpoint, replacing the head if the class count differs.

    Every backbone tensor must be present with the right shape (a checkpoint of
    another architecture is an error that names the likely one). Classifier keys
    (``fc.*``, or the segmentation ``classifier``/``skip``) whose shapes differ
    from the model's are skipped and the model's new head keeps its fresh
    initialisation; a classification checkpoint loads into the backbone of a
    segmentation model the same way.

    Args:
        model: a :class:`~dsprep.models.resnet.ResNet` or
            :class:`~dsprep.models.heads.SegmentationModel`.
        weights: a checkpoint path or a state dict.
        source: the name used in messages and the report when ``weights`` is a
            state dict read elsewhere (default ``"<state_dict>"``).

    Returns:
        A :class:`WeightsReport` (also logged).

    Raises:
        MalformedFileError: the checkpoint does not fit the model's backbone.

    Example:
        >>> from dsprep.models.resnet import resnet18
        >>> model = resnet18(num_classes=10)
        >>> report = load_weights(model, resnet18().state_dict())
        >>> report.skipped
        ['fc.weight', 'fc.bias']
    """
    if isinstance(weights, Mapping):
        source = source or "<state_dict>"
        state = _unwrap(weights, source)
    else:
        source, state = source or str(weights), read_state_dict(weights)
    own = model.state_dict()
    head = tuple(getattr(model, "head_prefixes", ("fc.",)))
    if any(k.startswith("backbone.") for k in own) and not any(k.startswith("backbone.") for k in state):
        # a classification checkpoint for the backbone of a segmentation model
        state = {f"backbone.{k}": v for k, v in state.items()}
        original = {k: k[len("backbone."):] for k in state}
    else:
        original = {k: k for k in state}

    def replaceable(key: str) -> bool:
        return key.startswith(head) or key.startswith(_DROPPABLE_PREFIXES)

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [k for k in missing + unexpected + mismatched if not replaceable(k)]
    if problems:
        guess = _guess_architecture(state)
        detail = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("with another shape", mismatched)):
            keys = [k for k in keys if not replaceable(k)]
            if keys:
                detail.append(f"{len(keys)} keys {label} (e.g. {', '.join(keys[:3])})")
        msg = f"checkpoint does not fit this {type(model).__name__}: {'; '.join(detail)}"
        msg += (f". It looks like a {guess} checkpoint" if guess
                else ". It matches none of dsprep's architectures")
        raise MalformedFileError(source, msg)

    skipped_head = set(unexpected) | set(mismatched)
    # If any part of the head is replaced, replace all of it: a new fc.bias with
    # the old fc.weight would be no head at all.
    if skipped_head & {k for k in own if k.startswith(head)}:
        skipped_head |= {k for k in state if k.startswith(head)}
    to_load = {k: v for k, v in state.items() if k not in skipped_head}
    model.load_state_dict(to_load, strict=False)
    report = WeightsReport(
        source=source,
        loaded=[k for k in own if k in to_load],
        skipped=[original[k] for k in state if k in skipped_head],
        new=[k for k in own if k not in to_load],
    )
    logger.info("%s", report.summary())
    return report


def apply_finetune(model: nn.Module, mode: str) -> list[str]:
    """Freeze what ``mode`` does not train; returns the names of the trainable parameters.

    Frozen parameters get ``requires_grad=False`` and frozen BatchNorm layers go to
    (and stay in) eval mode. Give the optimizer :func:`trainable_parameters`.

    Args:
        model: a ResNet or SegmentationModel (anything with ``head_prefixes`` and
            ``last_stage_prefixes``).
        mode: ``"all"``, ``"last"`` (last stage + head) or ``"head"``.

    Raises:
        UnknownNameError: ``mode`` is not one of :data:`FINETUNE_MODES`.

    Example:
        >>> from dsprep.models.resnet import resnet18
        >>> apply_finetune(resnet18(num_classes=10), "head")
        ['fc.weight', 'fc.bias']
    """
    check_choice("finetune mode", mode, FINETUNE_MODES)
    head = tuple(model.head_prefixes)
    if mode == "all":
        trainable: tuple[str, ...] = ("",)
    elif mode == "last":
        trainable = head + tuple(model.last_stage_prefixes)
    else:
        trainable = head
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(trainable))
        if param.requires_grad:
            names.append(name)
    if model.training:
        model.train()  # re-applies eval mode to the BatchNorm layers just frozen
    return names


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should get (``requires_grad=True``).

    Example:
        >>> from dsprep.models.resnet import resnet18
        >>> optimizer = torch.optim.SGD(trainable_parameters(resnet18()), lr=0.1)
    """
    return [p for p in model.parameters() if p.requires_grad]
