"""dsprep's bundled models: the ResNet family (torchvision keys) and a light segmentation head.

``create_model`` is the one entry point used by ``dsprep train``; see ``docs/models.md``.

Example:
    >>> from dsprep.models import create_model, list_models
    >>> "resnet50" in list_models()
    True
    >>> model = create_model("resnet18", num_classes=10)
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from torch import nn

from dsprep.errors import check_choice
from dsprep.models.finetune import (
    FINETUNE_MODES,
    WeightsReport,
    apply_finetune,
    load_weights,
    read_state_dict,
    trainable_parameters,
)
from dsprep.models.heads import OUTPUT_STRIDES, SegmentationModel
from dsprep.models.resnet import ARCHITECTURES, ResNet, ResNetConfig

logger = logging.getLogger(__name__)

__all__ = [
    "FINETUNE_MODES",
    "TASKS",
    "ResNet",
    "ResNetConfig",
    "SegmentationModel",
    "WeightsReport",
    "apply_finetune",
    "create_model",
    "list_models",
    "load_weights",
    "read_state_dict",
    "trainable_parameters",
]

TASKS = ("classification", "segmentation")
# ResNetConfig fields a caller may set; block/layers/groups define the architecture
# (pick another name instead), num_classes is an argument of its own.
_CONFIG_OPTIONS = ("in_channels", "se_ratio", "zero_init_residual", "replace_stride_with_dilation")
_SEGMENTATION_OPTIONS = ("output_stride", "skip_layer3")


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, in a stable order.

    Example:
        >>> list_models()[:3]
        ['resnet18', 'resnet34', 'resnet50']
    """
    return list(ARCHITECTURES)


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    *,
    task: str = "classification",
    finetune: str | None = None,
    **options,
) -> nn.Module:
    """Build a model, optionally load local weights and freeze for transfer learning.

    Args:
        name: one of :func:`list_models` (``"resnet50"``, ``"se_resnext50_32x4d"``...).
        num_classes: classes of the head. ``None``: the checkpoint's class count when
            ``weights`` has a head, else 1000 (classification); required for a new
            segmentation head.
        weights: a local torchvision/timm/dsprep ``.pth``. Never downloaded. A head
            for another class count is replaced (see :func:`load_weights`); the
            report is on ``model.weights_report``.
        task: ``"classification"`` (a :class:`ResNet`) or ``"segmentation"``
            (a :class:`SegmentationModel`, logits at the input size).
        finetune: ``"all"``, ``"last"`` or ``"head"`` (see :func:`apply_finetune`);
            ``None`` trains everything.
        **options: ``zero_init_residual``, ``in_channels``, ``se_ratio``,
            ``replace_stride_with_dilation`` (:class:`ResNetConfig` fields) and, for
            segmentation, ``output_stride`` (32, 16 or 8) and ``skip_layer3``.

    Returns:
        The model, in train mode (frozen BatchNorm layers in eval mode).

    Raises:
        UnknownNameError: an unknown model, task, finetune mode or option.
        MissingFileError, MalformedFileError: unreadable or non-matching ``weights``.

    Example:
        >>> model = create_model("resnet50", num_classes=10, weights="resnet50.pth",
        ...                      finetune="last")  # doctest: +SKIP
        >>> model.weights_report.skipped  # doctest: +SKIP
        ['fc.weight', 'fc.bias']
        >>> seg = create_model("resnet18", task="segmentation", num_classes=21)
    """
    check_choice("model", name, list_models())
    check_choice("task", task, TASKS)
    if finetune is not None:
        check_choice("finetune mode", finetune, FINETUNE_MODES)
    valid = _CONFIG_OPTIONS + (_SEGMENTATION_OPTIONS if task == "segmentation" else ())
    for key in options:
        check_choice("model option", key, valid)
    seg_options = {k: options.pop(k) for k in _SEGMENTATION_OPTIONS if k in options}

    state = read_state_dict(weights) if weights is not None else None
    if num_classes is None:
        num_classes = _classes_in(state, task)
    cfg = dataclasses.replace(ARCHITECTURES[name], **options)
    if task == "classification":
        model: nn.Module = ResNet(dataclasses.replace(cfg, num_classes=num_classes))
    else:
        stride = seg_options.get("output_stride", 32)
        check_choice("output_stride", stride, list(OUTPUT_STRIDES))
        if "replace_stride_with_dilation" not in options:
            cfg = dataclasses.replace(cfg, replace_stride_with_dilation=OUTPUT_STRIDES[stride])
        backbone = ResNet(dataclasses.replace(cfg, num_classes=0))
        model = SegmentationModel(backbone, num_classes,
                                  skip_layer3=seg_options.get("skip_layer3", True))
    if state is not None:
        report = load_weights(model, state, source=str(weights))
        model.weights_report = report
        if report.skipped:
            logger.warning("%s: head replaced for %d classes; skipped %s",
                           weights, num_classes, ", ".join(report.skipped))
    elif finetune in ("last", "head"):
        logger.warning("finetune=%r without weights freezes a randomly initialised backbone", finetune)
    if finetune is not None:
        apply_finetune(model, finetune)
    return model


def _classes_in(state: dict | None, task: str) -> int:
    key = "fc.weight" if task == "classification" else "classifier.4.weight"
    if state is not None and key in state:
        return int(state[key].shape[0])
    if task == "classification":
        return 1000
    raise ValueError("task='segmentation' needs num_classes for its new head "
                     "(e.g. 21 for VOC, 19 for Cityscapes train ids)")
