"""Model registry in the style of timm: register by name, create by name, list by pattern.

A leaf: it imports no model family. ``fer_utils.models`` imports every family (``families``)
so that importing anything from the package fills the registry.
"""
from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fer_utils.errors import UsageError, UnknownNameError


@dataclass(frozen=True)
class ModelEntry:
    """A registered model factory and what input it takes."""

    name: str
    factory: Callable[..., nn.Module]
    input_kind: str  # "image": (B, C, H, W); "clip": (B, T, C, H, W)
    description: str
    #: Per-channel normalisation the model's weights expect (timm's ``pretrained_cfg`` mean/std), applied
    #: by the preprocessing record; ``None``: the data's own record decides (pixels in [0, 1] by default).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str | None = None, *, input_kind: str = "image", mean: tuple[float, ...] | None = None,
                   std: tuple[float, ...] | None = None) -> Callable:
    """Decorator registering ``factory(num_classes, in_chans, **kwargs) -> nn.Module``; ``mean``/``std``: the
    input normalisation its (pretrained) weights expect."""
    if input_kind not in ("image", "clip"):
        raise ValueError(f"input_kind must be 'image' or 'clip', got {input_kind!r}")
    if (mean is None) != (std is None):
        raise ValueError("register_model needs both mean and std, or neither")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or factory.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} registered twice")
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(key, factory, input_kind, doc[0] if doc else "", mean, std)
        return factory

    return decorate


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ``KeyError`` lists the known names."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; known models: {list_models()}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 7, in_chans: int = 1, *, defaults: dict | None = None,
                 **kwargs) -> nn.Module:
    """Build a registered model. Images are float in [0, 1], 48x48 unless a size is given.

    ``defaults``: arguments passed where the factory takes them and ``kwargs`` do not name them (the
    face side a fixed-size model is built for). Arguments the factory does not accept raise
    ``UsageError`` naming them and the accepted ones.
    """
    factory = model_entry(name).factory
    signature = inspect.signature(factory)
    try:
        signature.bind(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p not in ("num_classes", "in_chans", "kwargs")]
        raise UsageError(f"model {name!r}: bad model arguments {kwargs} ({exc}); accepted: {accepted}") from None
    extra = {k: v for k, v in (defaults or {}).items() if k in signature.parameters and k not in kwargs}
    return factory(num_classes=num_classes, in_chans=in_chans, **extra, **kwargs)


def list_models(pattern: str = "*", input_kind: str | None = None) -> list[str]:
    """Sorted names matching a glob ``pattern`` (and ``input_kind`` if given)."""
    return sorted(
        k for k, e in _REGISTRY.items()
        if fnmatch.fnmatch(k, pattern) and (input_kind is None or e.input_kind == input_kind)
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (only those requiring gradients by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_forward_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of ``model`` on a float input of ``input_shape`` (batch included), counted by
    ``FlopCounterMode`` on the meta device: nothing is computed, and ``model`` is moved there (its weights are
    dropped), so pass a freshly built one. A machine-independent cost, unlike seconds on some CPU."""
    from torch.utils.flop_counter import FlopCounterMode  # here: a quarter-second import predict never needs

    model = model.eval().to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(tuple(input_shape), device="meta"))
    return counter.get_total_flops()
