"""What every face detector shares: the :class:`Detection` it returns, the :class:`FaceDetector`
interface (images shrunk to ``max_side`` for detection, boxes mapped back) and box helpers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)
class Detection:
    """One face: ``box`` (x1, y1, x2, y2) in pixels, detector ``score`` and optional landmarks.

    ``landmarks`` is ``(5, 2)`` float (x, y): eye on the image left, eye on the image right,
    nose tip, mouth corner on the image left, mouth corner on the image right; ``None`` when
    the detector gives none (cascades). MTCNN scores are probabilities; cascade scores are
    neighbour counts (higher is more confident, not bounded by 1).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.box)
        if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box must be (x1, y1, x2, y2) with x2 >= x1, y2 >= y1, got {self.box}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks is not None:
            points = np.asarray(self.landmarks, dtype=np.float32)
            if points.shape != (5, 2):
                raise ValueError(f"landmarks must be (5, 2), got {points.shape}")
            object.__setattr__(self, "landmarks", points)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def scaled(self, factor: float) -> "Detection":
        """The same detection in an image resized by ``factor``."""
        points = None if self.landmarks is None else self.landmarks * factor
        return Detection(tuple(v * factor for v in self.box), self.score, points)

    def clipped(self, width: int, height: int) -> "Detection":
        """The same detection with its box clipped to a ``width`` x ``height`` image."""
        return Detection(clip_box(self.box, width, height), self.score, self.landmarks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: box rounded to 0.1 px, score, landmarks (or None)."""
        return {
            "box": [round(v, 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": None if self.landmarks is None else [[round(float(v), 1) for v in point]
                                                               for point in self.landmarks],
        }


def clip_box(box: Sequence[float], width: float, height: float) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` pixel box clipped to a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = (min(max(float(v), 0.0), limit) for v, limit in zip(box, (width, height) * 2))
    return x1, y1, x2, y2


def indices_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """The indices of ``images`` grouped by array shape, in order: each group goes through a network
    as one batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return groups


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized down to ``width`` x ``height``: halved by pixel averaging while still at least
    twice as large, then bilinear. As smooth as ``INTER_AREA`` and much faster for uneven factors
    (1080p to 1280x720: about 3 ms instead of 14 on one core)."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[1::-1] == (width, height):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` as uint8 RGB ``(H, W, 3)``; ``ValueError`` for anything else."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    if image.size == 0:
        raise ValueError(f"{what}: expected an image with pixels, got shape {image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"{what}: expected RGB (H, W, 3) or greyscale (H, W), got shape {image.shape}")


#: Longest image side a detector sees by default; larger images are shrunk for detection.
DEFAULT_MAX_SIDE = 1280


class FaceDetector(ABC):
    """Common interface. ``max_side``: larger images are shrunk for detection (boxes map back)."""

    name: str = ""

    def __init__(self, max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        self.max_side = max_side

    @property
    def own_threads(self) -> int:
        """CPU threads the detector computes on outside torch's thread pool (its own runtime: ONNX
        Runtime, LiteRT, OpenCV); 0 for a detector that runs on torch's threads. A video's classifier
        leaves it these cores (:func:`fer_utils.predict.video.video_threads`)."""
        return 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one image, most confident first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (images may differ in size), most confident first."""
        prepared, factors = [], []
        for i, image in enumerate(images):
            rgb = check_image(image, f"image {i}")
            factor = 1.0
            if self.max_side and max(rgb.shape[:2]) > self.max_side:
                factor = self.max_side / max(rgb.shape[:2])
                rgb = shrink(rgb, max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
            prepared.append(rgb)
            factors.append(factor)
        results = self._detect(prepared)
        return [
            sorted((d if f == 1.0 else d.scaled(1.0 / f) for d in dets), key=lambda d: -d.score)
            for dets, f in zip(results, factors)
        ]

    @abstractmethod
    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect in RGB uint8 images already resized to at most ``max_side``."""
