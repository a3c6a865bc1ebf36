"""ResNet, ResNeXt, Wide ResNet and SE-ResNet, laid out exactly as torchvision's.

One readable file in the manner of nanoGPT's ``model.py``: a :class:`ResNetConfig`
dataclass, the two residual blocks, the squeeze-and-excitation module and the
network. The architectures:

- ResNet (He et al. 2015, https://arxiv.org/abs/1512.03385) in torchvision's
  "v1.5" form: a bottleneck block downsamples in its 3x3 convolution, not in the
  first 1x1 as in the paper and in Caffe's release. v1.5 is ~0.5% more accurate
  top-1 and is what every torchvision and timm ``resnet50`` checkpoint is.
- ResNeXt (Xie et al. 2016, https://arxiv.org/abs/1611.05431): grouped 3x3 convolution,
  ``groups`` x ``width_per_group`` channels in the bottleneck.
- Wide ResNet (Zagoruyko & Komodakis 2016, https://arxiv.org/abs/1605.07146):
  a bottleneck twice as wide (``width_per_group=128``); the outer widths are unchanged.
- SE-ResNet (Hu et al. 2017, https://arxiv.org/abs/1709.01507): a squeeze-and-excitation
  gate on the residual branch, after its last BatchNorm and before the addition.

Parameter names, shapes and registration order are torchvision's
(``torchvision/models/resnet.py``), so a torchvision or timm ``.pth`` state dict
loads with ``strict=True`` and no key remapping. The SE module follows timm
(``timm/layers/squeeze_excite.py``): keys ``layerN.B.se.fc1`` / ``se.fc2`` (1x1
convolutions with bias), reduction 1/16 rounded to a multiple of 8, so timm's
``seresnet50`` checkpoints load into :func:`se_resnet50`.

Example:
    >>> import torch
    >>> from dsprep.models.resnet import resnet18
    >>> model = resnet18(num_classes=10).eval()
    >>> model(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 10])
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetConfig",
    "SqueezeExcite",
    "keep_frozen_bn_in_eval",
    # one builder per entry of ARCHITECTURES, e.g. resnet50(num_classes=10)
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
    "se_resnet18", "se_resnet34", "se_resnet50", "se_resnet101", "se_resnet152",
    "se_resnext50_32x4d", "se_resnext101_32x8d",
]


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that distinguishes one member of the family from another."""

    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (50 and deeper)
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # blocks per stage (layer1..layer4)
    num_classes: int = 1000  # 0 = no classifier: forward returns the pooled features
    in_channels: int = 3
    groups: int = 1  # ResNeXt cardinality (grouped 3x3 convolution)
    width_per_group: int = 64  # 64 = ResNet; 128 = Wide ResNet-50-2; 4 or 8 with groups=32 = ResNeXt
    se: bool = False  # squeeze-and-excitation gate on each residual branch (SE-ResNet)
    se_ratio: float = 1 / 16  # SE reduction, as in the paper and timm
    # Zero the last BatchNorm's gamma of every block, so each residual branch starts
    # as zero and the block as the identity: +0.2-0.3% top-1 in Goyal et al. 2017
    # (https://arxiv.org/abs/1706.02677), used by torchvision's training recipes.
    zero_init_residual: bool = False
    # Dilate layer2/3/4 instead of striding them (as torchvision's argument of the
    # same name): output stride 16 or 8 for segmentation, same parameters.
    replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False)


def _make_divisible(value: float, divisor: int = 8) -> int:
    # timm's make_divisible(v, divisor, round_limit=0.): round to the nearest multiple,
    # at least `divisor`. Kept identical so SE checkpoints from timm have our shapes.
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: scale each channel by a gate computed from its global mean."""

    def __init__(self, channels: int, ratio: float = 1 / 16):
        super().__init__()
        hidden = _make_divisible(channels * ratio)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, groups=groups,
                     dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34). The first one strides."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, cfg: ResNetConfig = ResNetConfig(),
                 dilation: int = 1):
        super().__init__()
        if cfg.groups != 1 or cfg.width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64 "
                             f"(got groups={cfg.groups}, width_per_group={cfg.width_per_group}); "
                             "ResNeXt and Wide ResNet use the bottleneck block")
        # Registration order = state_dict order = torchvision's.
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, cfg.se_ratio) if cfg.se else None
        self.downsample = downsample
        self.stride = stride

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        # the shortcut after the branch, as torchvision: same op order, same peak memory
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped for ResNeXt), 1x1 expand by 4 (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, cfg: ResNetConfig = ResNetConfig(),
                 dilation: int = 1):
        super().__init__()
        # torchvision: width = int(planes * (base_width / 64.)) * groups
        width = int(planes * (cfg.width_per_group / 64.0)) * cfg.groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        # v1.5: the stride sits here, on the 3x3 convolution.
        self.conv2 = _conv3x3(width, width, stride, cfg.groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.se = SqueezeExcite(planes * self.expansion, cfg.se_ratio) if cfg.se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def keep_frozen_bn_in_eval(module: nn.Module) -> None:
    """Put every BatchNorm whose affine parameters are frozen back into eval mode.

    The convention of detectron2's FrozenBatchNorm2d and of torchvision's detection
    backbones: a frozen layer is frozen entirely, so its running mean and variance
    must not drift with the batches of a new dataset either. Done by mode, not by
    swapping the module class, so ``state_dict`` keys stay torchvision's.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None \
                and not m.weight.requires_grad:
            m.eval()


class ResNet(nn.Module):
    """The ResNet family; see :class:`ResNetConfig` for what varies.

    Submodules: ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc`` (torchvision's
    names). ``fc`` is ``nn.Identity`` when ``num_classes == 0``.

    A BatchNorm whose parameters have ``requires_grad=False`` stays in eval mode when
    ``train()`` is called (see :func:`keep_frozen_bn_in_eval`); this is how
    ``finetune="last"`` and ``"head"`` keep the frozen stages' statistics fixed.

    Example:
        >>> model = ResNet(ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)))
        >>> sum(p.numel() for p in model.parameters())
        25557032
    """

    # Parameter-name prefixes of the classifier and of the last stage, used by
    # dsprep.models.finetune to decide what to train.
    head_prefixes: tuple[str, ...] = ("fc.",)
    last_stage_prefixes: tuple[str, ...] = ("layer4.",)

    def __init__(self, cfg: ResNetConfig = ResNetConfig()):
        super().__init__()
        self.cfg = cfg
        block = _BLOCKS[cfg.block]
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dil = cfg.replace_stride_with_dilation
        self.layer1 = self._make_layer(block, 64, cfg.layers[0])
        self.layer2 = self._make_layer(block, 128, cfg.layers[1], stride=2, dilate=dil[0])
        self.layer3 = self._make_layer(block, 256, cfg.layers[2], stride=2, dilate=dil[1])
        self.layer4 = self._make_layer(block, 512, cfg.layers[3], stride=2, dilate=dil[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self._init_weights()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # keys downsample.0 (1x1 conv) and downsample.1 (BN), as torchvision
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.cfg, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, cfg=self.cfg, dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation: He (fan_out) for convolutions, BN as identity,
        # the Linear layer keeps PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stem and four stages; returns ``{"layer1": ..., ..., "layer4": ...}``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if mode:
            keep_frozen_bn_in_eval(self)
        return self


# name -> config. torchvision's names; SE variants as se_<name> (timm spells them
# seresnet50, seresnext50_32x4d: same keys and shapes).
_RESNEXT50 = dict(block="bottleneck", layers=(3, 4, 6, 3), groups=32, width_per_group=4)
_RESNEXT101 = dict(block="bottleneck", layers=(3, 4, 23, 3), groups=32, width_per_group=8)
ARCHITECTURES: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig(block="basic", layers=(2, 2, 2, 2)),
    "resnet34": ResNetConfig(block="basic", layers=(3, 4, 6, 3)),
    "resnet50": ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)),
    "resnet101": ResNetConfig(block="bottleneck", layers=(3, 4, 23, 3)),
    "resnet152": ResNetConfig(block="bottleneck", layers=(3, 8, 36, 3)),
    "resnext50_32x4d": ResNetConfig(**_RESNEXT50),
    "resnext101_32x8d": ResNetConfig(**_RESNEXT101),
    "wide_resnet50_2": ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3), width_per_group=128),
}
ARCHITECTURES.update({
    f"se_{name}": replace(ARCHITECTURES[name], se=True)
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                 "resnext50_32x4d", "resnext101_32x8d")
})


def _builder(name: str):
    def build(**overrides) -> ResNet:
        return ResNet(replace(ARCHITECTURES[name], **overrides))
    build.__name__ = name
    build.__qualname__ = name
    build.__doc__ = (f"Build {name} (random weights); keyword arguments override "
                     f"fields of :class:`ResNetConfig`, e.g. ``{name}(num_classes=10)``.")
    return build


resnet18 = _builder("resnet18")
resnet34 = _builder("resnet34")
resnet50 = _builder("resnet50")
resnet101 = _builder("resnet101")
resnet152 = _builder("resnet152")
resnext50_32x4d = _builder("resnext50_32x4d")
resnext101_32x8d = _builder("resnext101_32x8d")
wide_resnet50_2 = _builder("wide_resnet50_2")
se_resnet18 = _builder("se_resnet18")
se_resnet34 = _builder("se_resnet34")
se_resnet50 = _builder("se_resnet50")
se_resnet101 = _builder("se_resnet101")
se_resnet152 = _builder("se_resnet152")
se_resnext50_32x4d = _builder("se_resnext50_32x4d")
se_resnext101_32x8d = _builder("se_resnext101_32x8d")
