"""VGG-style networks for 48x48 faces, with BatchNorm.

``vgg_fer`` follows Khaireddin & Chen (2021), "Facial Emotion Recognition: State of the
Art Performance on FER2013" (73.28 % on the FER2013 test set): four stages of two
3x3 conv-BN-ReLU blocks (64/128/256/512 channels) each closed by 2x2 max-pooling, then
FC 4096 - FC 4096 - FC classes with ReLU and dropout (0.2) after the first two.
The paper trains on 40x40 crops (flatten 512x2x2); here the flatten size follows
``img_size`` (512x3x3 at 48x48).

``vgg_gap`` keeps that trunk and replaces the 2x4096 FC head (35.7 M of vgg_fer's 40.4 M
parameters) by global average pooling, dropout and one linear layer: 4.69 M parameters
(9.4 MB in fp16), 0.94 GFLOP per 48x48 face (FlopCounterMode; vgg_fer: 1.01), any input size.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fer_utils.models.registry import register_model
from fer_utils.models.simple_cnn import flat_features


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class FerVGG(nn.Module):
    """Stages of ``convs_per_stage`` conv-BN-ReLU blocks + max-pool, then FC layers on the flattened
    (or globally averaged) features."""

    def __init__(
        self,
        widths: Sequence[int],
        fc_dims: Sequence[int],
        num_classes: int = 7,
        in_chans: int = 1,
        img_size: int = 48,
        dropout: float = 0.2,
        convs_per_stage: int = 2,
        global_pool: bool = False,
    ):
        """``global_pool``: average the last feature map to one vector (then ``img_size`` does not
        matter); without ``fc_dims`` the dropout precedes the output layer."""
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_chans
        for width in widths:
            for _ in range(convs_per_stage):
                layers += _conv_bn_relu(c_in, width)
                c_in = width
            layers.append(nn.MaxPool2d(2))
        pool = [nn.AdaptiveAvgPool2d(1)] if global_pool else []
        self.features = nn.Sequential(*layers, *pool, nn.Flatten())
        head: list[nn.Module] = [] if fc_dims else [nn.Dropout(dropout)]
        dim = flat_features(self.features, in_chans, img_size)
        for fc in fc_dims:
            head += [nn.Linear(dim, fc), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            dim = fc
        head.append(nn.Linear(dim, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("vgg_fer")
def vgg_fer(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.2) -> nn.Module:
    """VGGNet of Khaireddin & Chen 2021: 4x(2 conv-BN-ReLU + pool) 64-512, FC 4096-4096."""
    return FerVGG((64, 128, 256, 512), (4096, 4096), num_classes, in_chans, img_size, dropout)


@register_model("vgg_small")
def vgg_small(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5) -> nn.Module:
    """Light VGG: 3x(2 conv-BN-ReLU + pool) 32/64/128, FC 256."""
    return FerVGG((32, 64, 128), (256,), num_classes, in_chans, img_size, dropout)


@register_model("vgg_gap")
def vgg_gap(num_classes: int = 7, in_chans: int = 1, dropout: float = 0.2, width: int = 64) -> nn.Module:
    """Compact VGGNet: vgg_fer's 4x(2 conv-BN-ReLU + pool) trunk (``width``-2x-4x-8x channels; 64: vgg_fer's
    64-512, 4.7 M params), global average pool; cost grows with ``width`` squared."""
    return FerVGG((width, 2 * width, 4 * width, 8 * width), (), num_classes, in_chans, dropout=dropout,
                  global_pool=True)
