"""Faces seen at low resolution, and the per-size prior correction that ``predict`` applies to them.

A face a detector finds 24 px wide is enlarged to the model's 48 px, and a model trained on FER2013's
48 px crops reads such blurred faces as "sad" far more often than they are. FER2013 PublicTest faces
shrunk to 24 px and enlarged again are called sad 33% of the time (18% are), neutral faces 42%.
:func:`fit_resolution_bias` fits one per-class logit bias per crop size on validation faces seen
that way (:func:`~fer_utils.evaluate.calibration.fit_class_bias`). :class:`ResolutionBias` applies
it to a face by the size of its crop in the source image, interpolated between the fitted sizes and
fading to none at the model's own size. ``scripts/fit_resolution_bias.py`` fits it on the Training
hold-out, measures it on PublicTest and stores it in a checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fer_utils.evaluate.calibration import fit_class_bias
from fer_utils.faces.align import resize_face

#: Crop sizes (source pixels) a correction is fitted at, for a 48 px model: distant faces of real footage.
FIT_SIDES = (16, 24, 32, 40)


def seen_from(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 faces ``(N, S, S)`` as ``predict`` sees a face whose crop is ``side`` pixels wide in its
    source: shrunk to ``side`` by pixel-area averaging, enlarged back to ``S`` as :func:`align_face` does."""
    size = images.shape[1]
    return np.stack([resize_face(cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA), size)
                     for face in images])


@dataclass(frozen=True)
class ResolutionBias:
    """Per-class logit biases ``(len(sides), C)`` at crop sizes ``sides`` (increasing, below ``size``)."""

    sides: tuple[int, ...]
    bias: np.ndarray
    size: int

    def __post_init__(self) -> None:
        sides = np.asarray(self.sides)
        if self.bias.ndim != 2 or len(self.bias) != len(sides) or not len(sides):
            raise ValueError(f"expected one bias row per side, got {self.bias.shape} for sides {self.sides}")
        if np.any(np.diff(sides) <= 0) or sides[-1] >= self.size:
            raise ValueError(f"sides must increase and stay below the model size {self.size}, got {self.sides}")

    def for_sides(self, sides: Sequence[float] | np.ndarray) -> np.ndarray:
        """The bias ``(N, C)`` of faces whose crops are ``sides`` source pixels wide: linear between the
        fitted sizes, the smallest one's below them, fading to zero at ``size`` and none above it."""
        grid = np.array([*self.sides, self.size], dtype=np.float64)
        rows = np.vstack([self.bias, np.zeros(self.bias.shape[1])])
        sides = np.asarray(sides, dtype=np.float64)
        return np.stack([np.interp(sides, grid, rows[:, c]) for c in range(rows.shape[1])], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"sides": list(self.sides), "size": self.size, "bias": np.round(self.bias, 4).tolist()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ResolutionBias":
        return cls(tuple(int(s) for s in record["sides"]), np.asarray(record["bias"], dtype=np.float64),
                   int(record["size"]))


def fit_resolution_bias(logits_of: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
                        sides: Sequence[int] = FIT_SIDES) -> ResolutionBias:
    """Fit the bias at each of ``sides`` on validation faces ``images`` (uint8 ``(N, S, S)``) seen from that
    size; ``logits_of`` maps such faces to the model's raw class scores ``(N, C)``."""
    bias = np.stack([fit_class_bias(logits_of(seen_from(images, side)), labels) for side in sides])
    return ResolutionBias(tuple(sides), bias, images.shape[1])
