"""Course-baseline CNN (three conv + pool layers, one hidden FC layer) and a shape helper."""
from __future__ import annotations

import torch
from torch import nn

from fer_utils.models.registry import register_model


def flat_features(trunk: nn.Module, in_chans: int, img_size: int) -> int:
    """Number of features ``trunk`` outputs per image, found by a dummy forward pass."""
    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        out = trunk(torch.zeros(1, in_chans, img_size, img_size))
    trunk.train(was_training)
    if out.numel() == 0:
        raise ValueError(f"img_size={img_size} is too small for {type(trunk).__name__}")
    return out.numel()


class SimpleCNN(nn.Module):
    """conv(32)-pool, conv(64)-pool, conv(128)-pool, FC(256), dropout, FC(num_classes)."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_chans, 32, 64), (32, 64, 128)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(flat_features(self.features, in_chans, img_size), 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("simple_cnn")
def simple_cnn(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5) -> nn.Module:
    """Course baseline: three 3x3 conv + max-pool layers and one hidden FC layer."""
    return SimpleCNN(num_classes, in_chans, img_size, dropout)
