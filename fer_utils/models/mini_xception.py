"""mini-Xception of Arriaga, Ploeger & Valdenegro (2017), "Real-time Convolutional Neural
Networks for Emotion and Gender Classification" (the model of oarriaga/face_classification).

Two plain 3x3 conv(8) layers, four residual modules of depthwise-separable convolutions
(16/32/64/128 channels) with a strided 1x1 shortcut, a 3x3 conv to ``num_classes`` maps and
global average pooling. Returns logits (the original ends with a softmax).
"""
from __future__ import annotations

import torch
from torch import nn

from fer_utils.models.registry import register_model


class SeparableConv2d(nn.Sequential):
    """Keras ``SeparableConv2D``: depthwise 3x3 then pointwise 1x1, no bias, no activation between."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )


class XceptionModule(nn.Module):
    """sepconv-BN-ReLU, sepconv-BN, 3x3/2 max-pool, plus a 1x1/2 conv-BN shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))
        self.body = nn.Sequential(
            SeparableConv2d(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            SeparableConv2d(c_out, c_out), nn.BatchNorm2d(c_out),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """Fully convolutional: works for any input size of at least 20x20."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        stem: list[nn.Module] = []
        for c_in in (in_chans, 8):
            stem += [nn.Conv2d(c_in, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*(XceptionModule(a, b) for a, b in zip((8, *widths[:-1]), widths)))
        self.classifier = nn.Conv2d(widths[-1], num_classes, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.classifier(self.blocks(self.stem(x)))).flatten(1)


@register_model("mini_xception")
def mini_xception(num_classes: int = 7, in_chans: int = 1) -> nn.Module:
    """mini-Xception (Arriaga et al. 2017): separable residual modules + global average pooling."""
    return MiniXception(num_classes, in_chans)
