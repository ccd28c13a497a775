"""The preprocessing record: how a face image becomes model input, written once, read everywhere.

``prepare-faces`` stores it in its ``.npz`` (the loaders read it back into
:attr:`FaceData.preprocessing`), training joins it with the model's registered normalisation
(``fer_utils.models.inputs``), normalises every batch with it (``fit``'s training step)
and stores it in every checkpoint, and ``predict`` and ``evaluate`` read it from the checkpoint, so a
model meets new photos exactly as it met its training faces: same crop margin and size, same
channels, same scaling and normalisation, plus the evaluation view ``crop_pct``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

#: Fraction of the detector box added on each side of a face crop. 0 frames faces like
#: FER2013's and CK+48's 48x48 crops, the data the models of this repository learn from.
DEFAULT_MARGIN = 0.0


@dataclass(frozen=True)
class Preprocessing:
    """Crop ``size`` x ``size`` pixels with ``margin``, ``channels`` 1 (grey) or 3 (RGB),
    pixels scaled to [0, 1], then ``(x - mean) / std`` per channel when both are given;
    ``frames``: clip length for clip models (``None`` for stills).

    ``crop_pct`` (timm's name): the view a model is evaluated on. Below 1, a face is enlarged to
    ``round(size / crop_pct)`` and its centre ``size`` x ``size`` kept, the scale of a model trained on
    random crops enlarged to ``size`` (``--augment crop``). ``predict`` and the single and flipped views of
    ``evaluate`` use it; ten-crop has its own enlargement. Chosen on validation data (``evaluate
    --crop-pct``) and recorded by ``ship --crop-pct``; 1 for every model trained here.
    """

    size: int = 48
    channels: int = 1
    margin: float = DEFAULT_MARGIN
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    frames: int | None = None
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"preprocessing has {self.channels} channels; expected 1 or 3")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("preprocessing needs both mean and std, or neither")
        if not 0.5 <= self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in [0.5, 1], got {self.crop_pct}")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``torch.load(weights_only=True)``-safe form (lists, not tuples)."""
        out = asdict(self)
        for key in ("mean", "std"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | None) -> "Preprocessing":
        """Read a stored record; keys it does not name (older ``scale: "0-1"``) are ignored."""
        record = dict(record or {})
        fields = {k: record[k] for k in ("size", "channels", "margin", "frames", "crop_pct") if record.get(k) is not None}
        for key in ("mean", "std"):
            if record.get(key) is not None:
                fields[key] = tuple(float(v) for v in np.atleast_1d(record[key]))
        return cls(**fields)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(B, C, H, W)`` in [0, 1] -> model input (per-channel mean/std when recorded)."""
        if self.mean is None:
            return x
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(B, C, H, W)`` faces in [0, 1] -> what the model sees at test time: the centre view,
        normalised (``predict``, and ``evaluate``'s single and flipped views)."""
        return self.normalise(self.centre_view(x))

    def centre_view(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(..., C, H, W)`` faces -> the :attr:`crop_pct` view (``x`` itself at 1)."""
        if self.crop_pct >= 1:
            return x
        side = x.shape[-1]
        big = round(side / self.crop_pct)
        flat = torch.nn.functional.interpolate(x.reshape(-1, *x.shape[-3:]), size=(big, big), mode="bilinear",
                                               align_corners=False)
        start = (big - side) // 2
        return flat[..., start:start + side, start:start + side].reshape(x.shape)

    def for_images(self, images: np.ndarray) -> "Preprocessing":
        """This record with ``size`` and ``frames`` taken from uint8 ``(N,H,W)``/``(N,T,H,W)`` images."""
        return replace(self, size=int(images.shape[-1]), frames=int(images.shape[1]) if images.ndim == 4 else None)

    def differences(self, other: "Preprocessing") -> list[str]:
        """``"field: mine != other"`` for each way ``other`` cuts faces differently (size, channels, margin).
        Clip length, mean/std and ``crop_pct`` are left out: they belong to the model, which applies
        its own record to any faces cut the same way."""
        return [f"{name}: {getattr(self, name)} != {getattr(other, name)}"
                for name in ("size", "channels", "margin") if getattr(self, name) != getattr(other, name)]
