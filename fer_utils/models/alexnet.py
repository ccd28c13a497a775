"""Single-frame AlexNet-style network of Karpathy et al. (2014), "Large-scale Video
Classification with Convolutional Neural Networks":
C(96,11,3)-N-P-C(256,5,1)-N-P-C(384,3,1)-C(384,3,1)-C(256,3,1)-P-FC(4096)-FC(4096),
with N = local response normalisation (k=2, n=5, alpha=1e-4, beta=0.5) and P = 2x2
non-overlapping max-pooling. Convolutions are padded ("same") so 48x48 faces fit; the
FC input size follows ``img_size``. ``features`` (the conv trunk) is shared with the
temporal-fusion models through :func:`alexnet_trunk`.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_utils.models.registry import register_model
from fer_utils.models.simple_cnn import flat_features


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.5, k=2.0)


def alexnet_trunk(in_chans: int = 1) -> nn.Sequential:
    """The convolutional trunk (conv1..conv5 with LRN and pooling), ending with a 4-D map."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 96, 11, stride=3, padding=5), nn.ReLU(inplace=True), _lrn(), nn.MaxPool2d(2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), _lrn(), nn.MaxPool2d(2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )


def fc_head(in_features: int, num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """FC(4096)-FC(4096)-FC(num_classes) with ReLU and dropout."""
    return nn.Sequential(
        nn.Linear(in_features, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
    )


class AlexNetFrame(nn.Module):
    """``features`` (conv trunk) -> flatten -> ``classifier`` (two FC 4096 + output)."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5):
        super().__init__()
        self.features = alexnet_trunk(in_chans)
        self.feature_dim = flat_features(self.features, in_chans, img_size)
        self.classifier = fc_head(self.feature_dim, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_model("alexnet_frame")
def alexnet_frame(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5) -> nn.Module:
    """Single-frame AlexNet-style CNN of Karpathy et al. 2014, sized to ``img_size``."""
    return AlexNetFrame(num_classes, in_chans, img_size, dropout)
