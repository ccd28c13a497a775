"""What a CNN looks at: first-layer kernels, activation maps (forward hooks) and Grad-CAM.

These return arrays; :mod:`fer_utils.plots` draws them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.data import to_model_input
from fer_utils.evaluate.inference import model_device


def find_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """A sub-module given itself or its dotted name in ``model.named_modules()``."""
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        convs = conv_layer_names(model)
        raise KeyError(f"no layer {layer!r} in {type(model).__name__}; conv layers: {convs}")
    return modules[layer]


def conv_layer_names(model: nn.Module) -> list[str]:
    """Dotted names of the model's ``Conv2d`` layers, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def first_layer_kernels(model: nn.Module) -> np.ndarray:
    """Weights ``(out, in, kh, kw)`` of the model's first ``Conv2d``."""
    names = conv_layer_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer")
    return find_layer(model, names[0]).weight.detach().cpu().float().numpy()


def _as_input(model: nn.Module, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 faces -> float model input on the model's device; float tensors pass through."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        return to_model_input(x, model_device(model))
    return x.to(model_device(model))


@torch.no_grad()
def activation_maps(
    model: nn.Module, x: torch.Tensor | np.ndarray, layers: Sequence[str | nn.Module]
) -> dict[str, np.ndarray]:
    """Outputs of ``layers`` for input ``x`` (uint8 faces or float input), via forward hooks.

    Returns ``{layer name: array (B, C, h, w)}`` (tuples: first element), in eval mode.
    """
    outputs: dict[str, np.ndarray] = {}
    handles = []
    for layer in layers:
        key = layer if isinstance(layer, str) else type(layer).__name__
        def hook(_m, _inp, out, key=key):
            out = out[0] if isinstance(out, (tuple, list)) else out
            outputs[key] = out.detach().float().cpu().clone().numpy()  # before any in-place op
        handles.append(find_layer(model, layer).register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(_as_input(model, x))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return outputs


def grad_cam(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    layer: str | nn.Module,
    target: int | Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017) maps ``(B, H, W)`` in [0, 1] at the input size.

    The activations ``A`` of ``layer`` (a 4-D conv feature map) are weighted by the spatial
    mean of d score / d ``A`` for the ``target`` class (default: the predicted class),
    summed over channels, passed through ReLU, upsampled bilinearly and scaled to max 1
    per image. A layer followed by an in-place ReLU yields the maps of that ReLU's output.
    Parameter gradients are left untouched (``torch.autograd.grad``).
    """
    module = find_layer(model, layer)
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out))
    inp = _as_input(model, x).detach().requires_grad_(True)
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(inp)
            act = store.get("act")
            if act is None or act.dim() != 4:
                raise ValueError(f"Grad-CAM needs a layer with a 4-D output (B,C,h,w), got "
                                 f"{None if act is None else tuple(act.shape)} from {layer!r}")
            if target is None:
                cls = logits.argmax(dim=1)
            else:
                cls = torch.as_tensor(np.asarray(target), device=logits.device).expand(len(logits))
            score = logits.gather(1, cls.view(-1, 1).long()).sum()
            grads, = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=inp.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12).view(-1, 1, 1)
    return (cam / peak).clamp(0, 1).cpu().numpy()
