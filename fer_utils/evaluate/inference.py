"""Batched, gradient-free class probabilities on the model's device, with optional TTA."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fer_utils.data import FaceData, Preprocessing, to_model_input
from fer_utils.devices import resolve_precision, uses_channels_last
from fer_utils.evaluate.tta import model_views


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
    amp: bool = True,
    preprocessing: Preprocessing | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` (float32 numpy) in eval mode, averaged over TTA views.

    ``data``: a FaceData, uint8 images ``(N,H,W)``/clips ``(N,T,H,W)`` (converted without
    augmentation), or an already converted float tensor. ``device``: where to run (the model
    is moved there); default: the model's current device. ``amp``: the fast path, bf16 autocast
    where :func:`~fer_utils.devices.resolve_precision` allows it and channels-last batches for 2-D
    convolutional models (ten-crop PublicTest accuracy within 0.2 points of fp32, README); False:
    plain fp32. ``preprocessing``: the model's record (its checkpoint's); its
    :meth:`~fer_utils.data.Preprocessing.centre_view` gives the single and flipped views (ten-crop
    enlarges on its own) and its mean/std normalise every view, as ``predict`` does. ``progress``: a
    tqdm bar over batches (the ``evaluate`` command's long ten-crop runs). The model's train/eval mode
    is restored afterwards.
    """
    record = preprocessing or Preprocessing()
    images = data.images if isinstance(data, FaceData) else data
    if device is not None:
        model.to(device)
    device = model_device(model)
    precision = resolve_precision(device, amp)
    layout = torch.channels_last if amp and uses_channels_last(model) else torch.contiguous_format
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in tqdm(range(0, len(images), batch_size), desc=f"predict (tta {tta})", unit="batch",
                          disable=not progress, leave=False):
            chunk = images[start:start + batch_size]
            if isinstance(chunk, torch.Tensor) and chunk.is_floating_point():
                x = chunk.to(device)
            else:
                x = to_model_input(chunk, device)
            views = model_views(x, record, tta)
            with precision.autocast():
                logits = [model(v.contiguous(memory_format=layout) if v.dim() == 4 else v) for v in views]
            probs = sum(torch.softmax(v.float(), dim=1) for v in logits) / len(views)
            out.append(probs.cpu())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("predict_proba: no images given")
    return torch.cat(out).numpy()
