"""MTCNN's O-Net: the last stage of MTCNN, which scores a 48x48 RGB crop as face or not, refines its box
and places five landmarks. Its weights ship inside the facenet-pytorch wheel (``facenet_pytorch/data/onet.pt``).

Written here rather than imported from facenet-pytorch because importing that package loads torchvision
(about 3.7 s of a cold start): this module finds the weights file without importing the package. The
layer names match the file's keys, and a test checks the outputs against facenet-pytorch's own ``ONet``.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

#: O-Net's input side in pixels.
ONET_SIZE = 48
#: Width of its shared ``dense5`` features.
ONET_DIM = 256


def onet_weights_path() -> Path:
    """``onet.pt`` inside the installed facenet-pytorch wheel (found without importing it)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("O-Net's weights ship in facenet-pytorch's wheel: "
                                "pip install --no-deps facenet-pytorch==2.6.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "onet.pt"


def normalise_crops(crops: torch.Tensor) -> torch.Tensor:
    """uint8-range RGB ``(N, 3, 48, 48)`` to MTCNN's input scale, about [-1, 1]."""
    return (crops.float() - 127.5) / 128.0


class ONet(nn.Module):
    """O-Net: ``(N, 3, 48, 48)`` normalised crops -> box offsets ``(N, 4)`` (fractions of the crop side),
    landmarks ``(N, 10)`` (five x then five y, fractions of the crop) and face probability ``(N,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, ONET_DIM), nn.PReLU(ONET_DIM)
        self.dense6_1 = nn.Linear(ONET_DIM, 2)  # face / not face
        self.dense6_2 = nn.Linear(ONET_DIM, 4)  # box offsets
        self.dense6_3 = nn.Linear(ONET_DIM, 10)  # landmarks

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared ``dense5`` features ``(N, 256)``."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)  # the flatten order of the Caffe weights it was converted from
        return self.prelu5(self.dense5(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.dense6_2(h), self.dense6_3(h), self.dense6_1(h).softmax(1)[:, 1]


def onet(pretrained: bool = True) -> ONet:
    """A new O-Net in eval mode, with the wheel's weights when ``pretrained``."""
    net = ONet()
    if pretrained:
        net.load_state_dict(torch.load(onet_weights_path(), map_location="cpu", weights_only=True))
    return net.eval()


@lru_cache(maxsize=1)
def shared_onet() -> ONet:
    """One pretrained O-Net per process for detectors (inference only, never trained)."""
    net = onet()
    net.requires_grad_(False)
    return net
