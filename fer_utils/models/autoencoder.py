"""Convolutional autoencoder for unsupervised pre-training, and a classifier on its encoder.

Workflow: train :class:`ConvAutoencoder` to reconstruct faces
(:func:`fer_utils.train.autoencoder.pretrain_autoencoder`),
save ``encoder_state(ae)`` with ``torch.save``, then build
``create_model("cae_classifier", encoder_weights=path, freeze_encoder=True)`` and later
unfreeze with :func:`set_encoder_trainable` for fine-tuning.
The autoencoder returns images, not class scores, so it is not in the model registry.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from fer_utils.models.registry import register_model

#: Encoder widths; each stage halves the spatial size (48 -> 24 -> 12 -> 6).
WIDTHS = (32, 64, 128)


def _check_size(img_size: int) -> None:
    factor = 2 ** len(WIDTHS)
    if img_size % factor:
        raise ValueError(f"img_size must be a multiple of {factor}, got {img_size}")


def make_encoder(in_chans: int = 1, widths: tuple[int, ...] = WIDTHS) -> nn.Sequential:
    """Stages of conv3x3-BN-ReLU + 2x2 max-pool."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_chans, *widths[:-1]), widths):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def make_decoder(in_chans: int = 1, widths: tuple[int, ...] = WIDTHS) -> nn.Sequential:
    """Mirror of the encoder: nearest 2x upsampling + conv3x3, ending in a sigmoid image."""
    layers: list[nn.Module] = []
    outs = (*widths[::-1][1:], in_chans)
    for i, (c_in, c_out) in enumerate(zip(widths[::-1], outs)):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]
        layers += [nn.Sigmoid()] if i == len(widths) - 1 else [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ConvAutoencoder(nn.Module):
    """``encoder`` then ``decoder``; ``forward`` returns the reconstruction in [0, 1]."""

    def __init__(self, in_chans: int = 1, img_size: int = 48):
        super().__init__()
        _check_size(img_size)
        self.encoder = make_encoder(in_chans)
        self.decoder = make_decoder(in_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class CAEClassifier(nn.Module):
    """The autoencoder's ``encoder``, then ``classifier`` (flatten, FC 256, dropout, FC)."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, img_size: int = 48, dropout: float = 0.5):
        super().__init__()
        _check_size(img_size)
        self.encoder = make_encoder(in_chans)
        side = img_size // 2 ** len(WIDTHS)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(WIDTHS[-1] * side * side, 256),
            nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def train(self, mode: bool = True) -> CAEClassifier:
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        if not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self


def conv_autoencoder(in_chans: int = 1, img_size: int = 48) -> ConvAutoencoder:
    """A fresh :class:`ConvAutoencoder`."""
    return ConvAutoencoder(in_chans, img_size)


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of the ``encoder`` weights of an autoencoder or a CAE classifier."""
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}


def load_encoder_state(model: nn.Module, state: dict[str, torch.Tensor] | str | os.PathLike) -> None:
    """Copy encoder weights (a state dict, or a file written by ``torch.save(encoder_state(ae))``)."""
    if not isinstance(state, dict):
        state = torch.load(state, map_location="cpu", weights_only=True)
    model.encoder.load_state_dict(state)


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the encoder's parameters. A frozen encoder also keeps
    its BatchNorm statistics while the model trains (see :meth:`CAEClassifier.train`)."""
    for p in model.encoder.parameters():
        p.requires_grad_(trainable)


@register_model("cae_classifier")
def cae_classifier(
    num_classes: int = 7,
    in_chans: int = 1,
    img_size: int = 48,
    dropout: float = 0.5,
    encoder_weights: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
) -> nn.Module:
    """Classifier on the convolutional-autoencoder encoder (optionally pre-trained, frozen)."""
    model = CAEClassifier(num_classes, in_chans, img_size, dropout)
    if encoder_weights is not None:
        load_encoder_state(model, encoder_weights)
    set_encoder_trainable(model, not freeze_encoder)
    return model
