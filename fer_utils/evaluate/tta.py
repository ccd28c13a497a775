"""Test-time augmentation: the views of a batch whose predictions are averaged.

``flip``: the image and its horizontal mirror (2 views).
``tencrop``: the image is resized up by ``margin`` pixels per side pair (48 -> 52 for the
default ``margin=4``, bilinear), then the four corner crops and the centre crop of the
original size are taken, each also mirrored (10 views). Clips get the same views per frame.
:func:`model_views` adds a checkpoint's preprocessing record: the single and flipped views are its
centre view (``crop_pct``), ten-crop enlarges on its own; every view is normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_utils.data.preprocessing import Preprocessing

TTA_MODES: tuple[str, ...] = ("none", "flip", "tencrop")


def _as_images(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``(..., C, H, W)`` -> ``(N, C, H, W)`` and the original shape."""
    if x.dim() < 4:
        raise ValueError(f"expected a float batch (B,C,H,W) or (B,T,C,H,W), got {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:]), tuple(x.shape)


def ten_crops(x: torch.Tensor, margin: int = 4) -> list[torch.Tensor]:
    """Corner and centre crops of ``x`` resized up by ``margin`` pixels, plus their mirrors."""
    images, shape = _as_images(x)
    h, w = images.shape[-2:]
    big = F.interpolate(images, size=(h + margin, w + margin), mode="bilinear", align_corners=False)
    half = margin // 2
    offsets = [(0, 0), (0, margin), (margin, 0), (margin, margin), (half, half)]
    crops = [big[..., top:top + h, left:left + w] for top, left in offsets]
    crops += [c.flip(-1) for c in crops]
    return [c.reshape(shape) for c in crops]


def tta_views(x: torch.Tensor, mode: str = "none") -> list[torch.Tensor]:
    """The views of float batch ``x`` for TTA ``mode`` (see the module docstring)."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "tencrop":
        return ten_crops(x)
    raise KeyError(f"unknown TTA mode {mode!r}; known: {list(TTA_MODES)}")


def model_views(x: torch.Tensor, record: Preprocessing, mode: str = "none") -> list[torch.Tensor]:
    """The model inputs of float faces ``x`` in [0, 1] for TTA ``mode``, as ``record`` says (``evaluate``
    and ``predict`` alike); normalising commutes with ten-crop's resizing and with flips."""
    return tta_views(record.normalise(x) if mode == "tencrop" else record.model_input(x), mode)
