"""A light FCN-style segmentation head on a ResNet backbone.

Enough to sanity-train Cityscapes or VOC semantic segmentation, not to win on them:
the FCN head of Long et al. 2015 (https://arxiv.org/abs/1411.4038) on ``layer4``,
optionally fused with a 1x1 score of ``layer3`` as in their FCN-16s, then upsampled
bilinearly to the input size.

Key layout: ``backbone.*`` (a :class:`~dsprep.models.resnet.ResNet` without ``fc``),
``classifier.0..4`` (torchvision's ``FCNHead``: 3x3 conv to C/4, BN, ReLU, dropout,
1x1 conv to the classes) and ``skip.*``. With ``output_stride=8`` and
``skip_layer3=False`` this is torchvision's ``fcn_resnet50`` (``aux_loss=False``)
key for key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsprep.models.resnet import ResNet

__all__ = ["FCNHead", "SegmentationModel"]

# output stride -> ResNetConfig.replace_stride_with_dilation (for layer2, layer3, layer4)
OUTPUT_STRIDES = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


class FCNHead(nn.Sequential):
    """3x3 conv (C -> C/4), BN, ReLU, dropout, 1x1 conv to ``num_classes``."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(inter, num_classes, 1),
        )


class SegmentationModel(nn.Module):
    """ResNet features -> FCN head -> logits at the input resolution.

    Args:
        backbone: a ResNet built with ``num_classes=0`` (no ``fc``).
        num_classes: output channels (e.g. 21 for VOC, 19 Cityscapes train ids).
        skip_layer3: add a 1x1 score of ``layer3`` (stride 16) to the upsampled
            ``layer4`` score before the final upsampling (FCN-16s).

    Example:
        >>> from dsprep.models.resnet import resnet18
        >>> model = SegmentationModel(resnet18(num_classes=0), num_classes=21).eval()
        >>> model(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 21, 64, 96])
    """

    head_prefixes: tuple[str, ...] = ("classifier.", "skip.")
    last_stage_prefixes: tuple[str, ...] = ("backbone.layer4.",)

    def __init__(self, backbone: ResNet, num_classes: int, *, skip_layer3: bool = True):
        super().__init__()
        if not isinstance(backbone.fc, nn.Identity):
            raise ValueError("SegmentationModel needs a backbone built with num_classes=0 "
                             f"(found fc={backbone.fc})")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = backbone
        self.classifier = FCNHead(backbone.num_features, num_classes)
        self.skip = nn.Conv2d(backbone.num_features // 2, num_classes, 1) if skip_layer3 else None
        if self.skip is not None:
            # FCN initialises the added score layers to zero, so training starts
            # from the coarse prediction and learns the refinement.
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.backbone.forward_features(x)
        out = self.classifier(features["layer4"])
        if self.skip is not None:
            skip = self.skip(features["layer3"])
            out = F.interpolate(out, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            out = out + skip
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
