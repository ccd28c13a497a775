"""The preprocessing record: how a face image becomes model input, written once, read everywhere.

``prepare-faces`` stores it in its ``.npz`` (the loaders read it back into
:attr:`FaceData.preprocessing`), training stores it in every checkpoint, and ``predict`` and
``evaluate`` read it from the checkpoint, so a model meets new photos exactly as it met its
training faces: same crop margin and size, same channels, same scaling.
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
    ``frames``: clip length for clip models (``None`` for stills)."""

    size: int = 48
    channels: int = 1
    margin: float = DEFAULT_MARGIN
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"preprocessing has {self.channels} channels; expected 1 or 3")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("preprocessing needs both mean and std, or neither")

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
        fields = {k: record[k] for k in ("size", "channels", "margin", "frames") if record.get(k) is not None}
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

    def for_images(self, images: np.ndarray) -> "Preprocessing":
        """This record with ``size`` and ``frames`` taken from uint8 ``(N,H,W)``/``(N,T,H,W)`` images."""
        return replace(self, size=int(images.shape[-1]), frames=int(images.shape[1]) if images.ndim == 4 else None)

    def differences(self, other: "Preprocessing") -> list[str]:
        """``"field: mine != other"`` for each way ``other`` makes faces differently (clip length aside)."""
        return [f"{name}: {getattr(self, name)} != {getattr(other, name)}"
                for name in ("size", "channels", "margin", "mean", "std") if getattr(self, name) != getattr(other, name)]
