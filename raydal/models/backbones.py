"""Backbones: feature extractors that return hidden maps and a pooled embedding.

Each backbone is a ``Backbone`` whose ``forward(x [N, B, H, W])`` returns
``(features, embedding)``: the hidden maps the LL module reads (list of
``[N, C_i, H_i, W_i]``) and the global-average-pooled penultimate features
``[N, D]``. torchvision backbones keep torchvision's module names, so an
ImageNet state dict of the same architecture loads into them unchanged (see
``raydal.models.weights``). They are always built with ``weights=None``: raydal
never downloads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from raydal.models.registry import register_model


class Backbone(nn.Module):
    """Base class. Subclasses set the class attributes and implement ``forward``."""

    #: Channels ``C_i`` of the hidden maps returned by ``forward``, in order.
    feature_channels: tuple[int, ...] = ()
    #: Width ``D`` of the pooled embedding.
    embed_dim: int = 0
    #: State-dict key of the first convolution's weight (adapted to the band count).
    first_conv_key: str = ""
    #: Key prefixes of the torchvision classifier, dropped when loading a torchvision file.
    classifier_prefixes: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


def _new_first_conv(old: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``old`` with ``in_channels`` inputs, He-initialised like torchvision does."""
    conv = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class DenseNet121Backbone(Backbone):
    """torchvision DenseNet121 (6.95 M parameters at 3 bands).

    Features: the outputs of the 4 dense blocks, channels (256, 512, 1024, 1024)
    at strides (4, 8, 16, 32). Embedding: ReLU(norm5) pooled, ``D = 1024``.
    Input sides must be >= 32 px (the third transition halves a 2x2 map).
    """

    feature_channels = (256, 512, 1024, 1024)
    embed_dim = 1024
    first_conv_key = "features.conv0.weight"
    classifier_prefixes = ("classifier.",)

    def __init__(self, in_channels: int):
        super().__init__()
        self.features = torchvision.models.densenet121(weights=None).features
        if in_channels != 3:
            self.features.conv0 = _new_first_conv(self.features.conv0, in_channels)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps = []
        for name, module in self.features.named_children():
            x = module(x)
            if name.startswith("denseblock"):
                maps.append(x)
        emb = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)
        return maps, emb


class _ResNetBackbone(Backbone):
    """torchvision ResNet without ``fc``. Features: layer1..layer4 (strides 4, 8, 16, 32)."""

    first_conv_key = "conv1.weight"
    classifier_prefixes = ("fc.",)

    def __init__(self, net: torchvision.models.ResNet, in_channels: int):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        if in_channels != 3:
            self.conv1 = _new_first_conv(self.conv1, in_channels)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps, F.adaptive_avg_pool2d(x, 1).flatten(1)


class ResNet18Backbone(_ResNetBackbone):
    """ResNet18: features (64, 128, 256, 512) channels, ``D = 512``."""

    feature_channels = (64, 128, 256, 512)
    embed_dim = 512

    def __init__(self, in_channels: int):
        super().__init__(torchvision.models.resnet18(weights=None), in_channels)


class ResNet50Backbone(_ResNetBackbone):
    """ResNet50: features (256, 512, 1024, 2048) channels, ``D = 2048``."""

    feature_channels = (256, 512, 1024, 2048)
    embed_dim = 2048

    def __init__(self, in_channels: int):
        super().__init__(torchvision.models.resnet50(weights=None), in_channels)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNNBackbone(Backbone):
    """A tiny CNN for tests and CPU demos (~26 k parameters at 3 bands).

    Three stages of 3x3 conv-BN-ReLU + 2x2 max pooling; features: the stage
    outputs, channels (16, 32, 64) at strides (2, 4, 8); ``D = 64``.
    """

    feature_channels = (16, 32, 64)
    embed_dim = 64
    first_conv_key = "stage1.0.weight"

    def __init__(self, in_channels: int):
        super().__init__()
        self.stage1 = nn.Sequential(*_conv_bn_relu(in_channels, 16), *_conv_bn_relu(16, 16), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*_conv_bn_relu(16, 32), nn.MaxPool2d(2))
        self.stage3 = nn.Sequential(*_conv_bn_relu(32, 64), nn.MaxPool2d(2))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps = []
        for stage in (self.stage1, self.stage2, self.stage3):
            x = stage(x)
            maps.append(x)
        return maps, F.adaptive_avg_pool2d(x, 1).flatten(1)


@register_model
def densenet121(in_channels: int) -> Backbone:
    """DenseNet121, the paper's model (default for real runs)."""
    return DenseNet121Backbone(in_channels)


@register_model
def resnet18(in_channels: int) -> Backbone:
    """ResNet18."""
    return ResNet18Backbone(in_channels)


@register_model
def resnet50(in_channels: int) -> Backbone:
    """ResNet50."""
    return ResNet50Backbone(in_channels)


@register_model
def smallcnn(in_channels: int) -> Backbone:
    """Tiny 3-stage CNN for tests and CPU demos."""
    return SmallCNNBackbone(in_channels)
