"""Batched, gradient-free class probabilities on the model's device, with optional TTA."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fer_utils.data import FaceData, to_model_input
from fer_utils.evaluate.tta import tta_views


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for parameter-free models)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    data: FaceData | np.ndarray | torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    tta: str = "none",
) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` (float32 numpy) in eval mode, averaged over TTA views.

    ``data``: a FaceData, uint8 images ``(N,H,W)``/clips ``(N,T,H,W)`` (converted without
    augmentation), or an already converted float tensor. ``device``: where to run (the model
    is moved there); default: the model's current device. The model's train/eval mode is
    restored afterwards.
    """
    images = data.images if isinstance(data, FaceData) else data
    if device is not None:
        model.to(device)
    device = model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            if isinstance(chunk, torch.Tensor) and chunk.is_floating_point():
                x = chunk.to(device)
            else:
                x = to_model_input(chunk, device)
            views = tta_views(x, tta)
            probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
            out.append(probs.cpu())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("predict_proba: no images given")
    return torch.cat(out).numpy()
