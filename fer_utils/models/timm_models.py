"""ResNet-18/34/50/101 and DenseNet-121 from timm, with a stem for 48x48 faces.

The stem sets the cost, since it fixes the map size every later stage works on:

- ``stem="small"`` (default) replaces the 7x7 stride-2 conv + max-pool by a 3x3 stride-1 conv
  and no pool: the first stage sees the full 48x48 map (ResNet-18: 1.3 GFLOPs per face);
- ``stem="pooled"`` keeps timm's stride-2 max-pool after that 3x3 conv: 24x24, a quarter of the
  cost (the CPU profile of the report uses it);
- ``stem="imagenet"`` keeps timm's stem, 12x12 (for larger inputs or to use all ImageNet weights).

ImageNet weights come only from a local file (``pretrained_file=`` or
``$FER_PRETRAINED_DIR/<name>.pth|.safetensors``), loaded by timm itself
(``pretrained_cfg_overlay=dict(file=...)``: a file set there is never downloaded): the RGB
first conv is summed to one channel and the classifier keeps its fresh initialisation when
``num_classes != 1000``. The small stem replaces the loaded 7x7 stem conv afterwards.
"""
from __future__ import annotations

import os

from torch import nn

from fer_utils.models.pretrained import find_pretrained_file
from fer_utils.models.registry import register_model

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


def small_stem(model: nn.Module, conv_path: str, pool_path: str, keep_pool: bool = False) -> None:
    """Replace the stem conv by a 3x3 stride-1 conv (same channels) and, unless ``keep_pool``, the stem pool by identity."""
    old = model.get_submodule(conv_path)
    conv = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    _set_submodule(model, conv_path, conv)
    if not keep_pool:
        _set_submodule(model, pool_path, nn.Identity())


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
    """``timm.create_model(timm_name, ...)`` with a FER stem and optional local ImageNet weights
    (``pretrained_file`` implies ``pretrained``; see :func:`find_pretrained_file`). Extra
    kwargs (``drop_rate``, ``drop_path_rate``...) go to timm."""
    if stem not in ("small", "pooled", "imagenet"):
        raise ValueError(f"stem must be 'small', 'pooled' or 'imagenet', got {stem!r}")
    weights = find_pretrained_file(timm_name, pretrained_file) if pretrained or pretrained_file else None
    import timm  # imported on use: importing timm takes seconds, and predict rarely needs it

    local = {} if weights is None else {"pretrained_cfg_overlay": {"file": str(weights)}}
    model = timm.create_model(timm_name, pretrained=weights is not None, in_chans=in_chans,
                              num_classes=num_classes, **local, **kwargs)
    if stem != "imagenet":
        small_stem(model, *STEMS[timm_name], keep_pool=stem == "pooled")
    return model


def _register(timm_name: str) -> None:
    def factory(num_classes: int = 7, in_chans: int = 1, **kwargs) -> nn.Module:
        return create_timm_fer(timm_name, num_classes, in_chans, **kwargs)

    factory.__doc__ = f"timm {timm_name} with a 3x3 stride-1 stem for 48x48 faces (local ImageNet weights optional)."
    factory.__name__ = timm_name
    register_model(timm_name)(factory)


for _name in STEMS:
    _register(_name)
