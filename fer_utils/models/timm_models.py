"""ResNet-18/34/50/101 and DenseNet-121 from timm, with a stem for 48x48 faces.

``stem="small"`` (default) replaces the 7x7 stride-2 conv + max-pool by a 3x3 stride-1
conv and no pool, so the first stage sees the full 48x48 map instead of 12x12.
``stem="imagenet"`` keeps timm's stem (for larger inputs or to use all ImageNet weights).

ImageNet weights come only from a local file (``pretrained_file=`` or
``$FER_PRETRAINED_DIR/<name>.pth|.safetensors``); the RGB first conv is summed to one
channel. With the small stem the 7x7 ImageNet stem conv does not fit and keeps its
fresh initialisation (reported), as does the classifier when ``num_classes != 1000``.
"""
from __future__ import annotations

import logging
import os

from torch import nn

from fer_utils.models.pretrained import (
    LoadReport, adapt_first_conv, find_pretrained_file, head_prefix, load_matching, read_weights,
)
from fer_utils.models.registry import register_model

log = logging.getLogger(__name__)

#: timm name -> (attribute path of the stem conv, attribute path of the stem pool)
STEMS: dict[str, tuple[str, str]] = {
    "resnet18": ("conv1", "maxpool"),
    "resnet34": ("conv1", "maxpool"),
    "resnet50": ("conv1", "maxpool"),
    "resnet101": ("conv1", "maxpool"),
    "densenet121": ("features.conv0", "features.pool0"),
}


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def small_stem(model: nn.Module, conv_path: str, pool_path: str) -> None:
    """Replace the stem conv by a 3x3 stride-1 conv (same channels) and the stem pool by identity."""
    old = model.get_submodule(conv_path)
    conv = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    _set_submodule(model, conv_path, conv)
    _set_submodule(model, pool_path, nn.Identity())


def load_imagenet_weights(model: nn.Module, timm_name: str, in_chans: int, path: str | os.PathLike) -> LoadReport:
    """Load a local timm ImageNet state dict: first conv adapted to ``in_chans``; the stem conv
    and classifier keep their initialisation where their shapes differ."""
    state, _ = read_weights(path)
    conv_key = STEMS[timm_name][0] + ".weight"
    adapted = adapt_first_conv(state, conv_key, in_chans)
    report = load_matching(model, state, source=str(path), skippable=(conv_key, head_prefix(model)))
    if adapted and conv_key in report.loaded:
        report.adapted.append(f"{conv_key}: RGB kernels summed to {in_chans} channel(s)")
        log.info("%s: %s", path, report.adapted[-1])
    return report


def create_timm_fer(
    timm_name: str,
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    stem: str = "small",
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """``timm.create_model(timm_name, pretrained=False, ...)`` with a FER stem and optional
    local ImageNet weights (``pretrained_file`` implies ``pretrained``). Extra kwargs
    (``drop_rate``, ``drop_path_rate``...) go to timm."""
    if stem not in ("small", "imagenet"):
        raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
    weights = find_pretrained_file(timm_name, pretrained_file) if pretrained or pretrained_file else None
    import timm  # imported on use: importing timm takes seconds, and predict rarely needs it

    model = timm.create_model(timm_name, pretrained=False, in_chans=in_chans, num_classes=num_classes, **kwargs)
    if stem == "small":
        small_stem(model, *STEMS[timm_name])
    if weights is not None:
        load_imagenet_weights(model, timm_name, in_chans, weights)
    return model


def _register(timm_name: str) -> None:
    def factory(num_classes: int = 7, in_chans: int = 1, **kwargs) -> nn.Module:
        return create_timm_fer(timm_name, num_classes, in_chans, **kwargs)

    factory.__doc__ = f"timm {timm_name} with a 3x3 stride-1 stem for 48x48 faces (local ImageNet weights optional)."
    factory.__name__ = timm_name
    register_model(timm_name)(factory)


for _name in STEMS:
    _register(_name)
