"""Transfer learning from MTCNN's O-Net (:mod:`fer_utils.faces.onet`; weights bundled in facenet-pytorch's
wheel, ``facenet_pytorch/data/onet.pt``, so nothing is downloaded).

O-Net was trained to verify and landmark 48x48 RGB face crops, which is exactly FER2013's
face size. Its 256-d ``dense5`` features feed a new classifier; the backbone can be
frozen (``freeze_backbone=True``) or fine-tuned.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.faces.onet import ONET_DIM, ONET_SIZE, normalise_crops, onet
from fer_utils.models.registry import register_model


def onet_backbone(pretrained: bool = True) -> nn.Module:
    """MTCNN's O-Net (:mod:`fer_utils.faces.onet`) without its three output heads (``dense6_*``)."""
    net = onet(pretrained)
    for name in ("dense6_1", "dense6_2", "dense6_3"):
        delattr(net, name)
    return net


class ONetFeatures(nn.Module):
    """Grey or RGB faces in [0, 1] -> O-Net ``dense5`` features (256) -> ``classifier``."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, pretrained: bool = True,
                 freeze_backbone: bool = False, dropout: float = 0.5):
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"onet_features takes 1 (grey) or 3 (RGB) channels, got {in_chans}")
        self.backbone = onet_backbone(pretrained)
        self.backbone.train()  # onet() returns it in eval mode
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(ONET_DIM, num_classes))
        self.set_backbone_trainable(not freeze_backbone)

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or unfreeze the O-Net parameters."""
        for p in self.backbone.parameters():
            p.requires_grad_(trainable)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, 256); other sizes are resized to 48x48 bilinearly."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (ONET_SIZE, ONET_SIZE):
            x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="bilinear", align_corners=False)
        return self.backbone.features(normalise_crops(x * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("onet_features")
def onet_features(num_classes: int = 7, in_chans: int = 1, pretrained: bool = True,
                  freeze_backbone: bool = False, dropout: float = 0.5) -> nn.Module:
    """MTCNN O-Net backbone (bundled face-detector weights) + new classifier head."""
    return ONetFeatures(num_classes, in_chans, pretrained, freeze_backbone, dropout)
