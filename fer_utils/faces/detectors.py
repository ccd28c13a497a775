"""Face detectors behind one interface: MTCNN (facenet-pytorch), BlazeFace (mediapipe), OpenCV Haar
and LBP cascades.

Every detector takes uint8 RGB ``(H, W, 3)`` or greyscale ``(H, W)`` images and returns,
per image, a list of :class:`Detection` sorted by decreasing score.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_utils.devices import resolve_device


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
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 1).tolist(),
        }


def clip_box(box: Sequence[float], width: float, height: float) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` pixel box clipped to a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = (min(max(float(v), 0.0), limit) for v, limit in zip(box, (width, height) * 2))
    return x1, y1, x2, y2


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


class MTCNNDetector(FaceDetector):
    """MTCNN (facenet-pytorch; weights ship inside the wheel), batched on CPU or CUDA.

    Same-size images are detected together in batches of ``batch_size``; faces scoring below
    ``min_score`` are dropped.
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str | torch.device | None = None,
        *,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_score: float = 0.9,
        batch_size: int = 16,
        max_side: int | None = DEFAULT_MAX_SIDE,
    ) -> None:
        super().__init__(max_side)
        try:
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the MTCNN detector needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                "(or use --detector haar)"
            ) from err
        self.device = resolve_device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.min_score = float(min_score)
        self.batch_size = int(batch_size)
        self._nets = MTCNN(min_face_size=self.min_face_size, device=self.device).eval()

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        results: list[list[Detection]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            # MTCNN's image pyramid is empty (and facenet-pytorch fails) below this size.
            if min(image.shape[:2]) * 12 / self.min_face_size >= 12:
                by_shape.setdefault(image.shape, []).append(i)
        n = self._nets
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = np.stack([images[i] for i in chunk])
                with torch.inference_mode():
                    boxes, points = detect_face(
                        batch, self.min_face_size, n.pnet, n.rnet, n.onet,
                        self.thresholds, self.factor, self.device,
                    )
                for i, b, p in zip(chunk, boxes, points):
                    results[i] = [
                        Detection(tuple(row[:4]), row[4], pts)
                        for row, pts in zip(np.asarray(b, np.float32).reshape(-1, 5),
                                            np.asarray(p, np.float32).reshape(-1, 5, 2))
                        if row[4] >= self.min_score
                    ]
        return results


class CascadeDetector(FaceDetector):
    """An OpenCV cascade classifier (Haar or LBP XML); CPU only, no landmarks.

    The score is the number of merged neighbour detections behind each box. ``equalize``
    equalises the histogram first (helps dim photos, but is several times slower on
    textured images).
    """

    def __init__(
        self,
        cascade: str | os.PathLike,
        *,
        name: str = "cascade",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 30,
        equalize: bool = False,
        max_side: int | None = DEFAULT_MAX_SIDE,
    ) -> None:
        super().__init__(max_side)
        path = Path(cascade)
        if not path.is_file():
            raise FileNotFoundError(f"{name} cascade file not found: {path}")
        self._cascade = cv2.CascadeClassifier()
        try:
            loaded = self._cascade.load(str(path))
        except (cv2.error, SystemError):  # OpenCV raises on malformed XML
            loaded = False
        if not loaded or self._cascade.empty():
            raise ValueError(f"{path}: not an OpenCV cascade classifier XML file")
        self.name = name
        self.cascade_path = path
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.equalize = bool(equalize)

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        results = []
        for image in images:
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            if self.equalize:
                grey = cv2.equalizeHist(grey)
            rects, neighbours = self._cascade.detectMultiScale2(
                grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
            )
            results.append([
                Detection((x, y, x + w, y + h), float(k))
                for (x, y, w, h), k in zip(np.reshape(rects, (-1, 4)), np.ravel(neighbours))
            ])
        return results


class BlazeFaceDetector(FaceDetector):
    """MediaPipe's BlazeFace short-range model (Apache-2.0; ships inside the ``mediapipe==0.10.21``
    wheel, so it works offline); CPU, no landmarks used.

    The model sees a 128x128 copy of its input and finds faces that fill about a tenth of it or
    more, so images larger than ``tile`` pixels are also searched in overlapping ``tile``-sized
    tiles (small faces) besides whole (large faces); overlapping boxes are merged, keeping the
    most confident. Tiles overlap by ``overlap`` of their side so that a face near a tile's edge
    also lies, with some context around it, inside the next one. Faces scoring below ``min_score``
    are dropped.
    """

    name = "blazeface"

    def __init__(self, *, min_score: float = 0.5, tile: int | None = 480, overlap: float = 0.45,
                 max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        super().__init__(max_side)
        try:
            from mediapipe.python.solutions.face_detection import FaceDetection
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the blazeface detector needs mediapipe 0.10.21 (it ships the model): pip install --no-deps "
                "mediapipe==0.10.21 protobuf==4.25.8 absl-py flatbuffers (or use --detector haar)"
            ) from err
        if tile is not None and tile < 64:
            raise ValueError(f"tile must be >= 64 pixels or None, got {tile}")
        self.min_score = float(min_score)
        self.tile = tile
        self.overlap = float(overlap)
        self._model = FaceDetection(model_selection=0, min_detection_confidence=self.min_score)

    def regions(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """``(x, y, w, h)`` of the whole image followed by the tiles searched in it."""
        whole = [(0, 0, width, height)]
        if self.tile is None or max(width, height) <= self.tile:
            return whole
        side = self.tile
        step = max(1, round(side * (1 - self.overlap)))

        def starts(length: int) -> list[int]:
            if length <= side:
                return [0]
            return sorted({*range(0, length - side, step), length - side})

        return whole + [(x, y, min(side, width), min(side, height)) for y in starts(height) for x in starts(width)]

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        results = []
        for image in images:
            found = []
            for x, y, w, h in self.regions(image.shape[1], image.shape[0]):
                region = image if (w, h) == image.shape[1::-1] else np.ascontiguousarray(image[y:y + h, x:x + w])
                for d in self._model.process(region).detections or []:
                    if d.score[0] < self.min_score:  # mediapipe's own threshold lets some through
                        continue
                    r = d.location_data.relative_bounding_box
                    box = (x + r.xmin * w, y + r.ymin * h, x + (r.xmin + r.width) * w, y + (r.ymin + r.height) * h)
                    found.append(Detection(clip_box(box, image.shape[1], image.shape[0]), d.score[0]))
            results.append(merge_overlapping(found))
        return results


def merge_overlapping(detections: Sequence[Detection], threshold: float = 0.5) -> list[Detection]:
    """The most confident of each group of boxes whose intersection covers more than ``threshold``
    of the smaller box (a face found whole and again, cut, in a tile)."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if all(_overlap(det.box, k.box) <= threshold for k in kept):
            kept.append(det)
    return kept


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return max(0.0, w) * max(0.0, h) / smaller if smaller > 0 else 0.0


#: The frontal-face Haar cascade bundled with opencv-python(-headless) < 5.
HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"


def _haar(device: Any = None, *, cascade: str | os.PathLike | None = None, **kw: Any) -> CascadeDetector:
    """Haar cascade (default: OpenCV's bundled frontal face cascade); ``device`` is ignored."""
    if cascade is None:
        cascade = Path(cv2.data.haarcascades) / HAAR_FRONTAL_FACE
    return CascadeDetector(cascade, name="haar", **kw)


def _lbp(device: Any = None, *, cascade: str | os.PathLike | None = None, **kw: Any) -> CascadeDetector:
    """LBP cascade from a user-supplied XML (e.g. lbpcascade_frontalface_improved.xml)."""
    if cascade is None:
        raise ValueError(
            "the lbp detector needs cascade=PATH (--cascade) to an LBP cascade XML such as "
            "lbpcascade_frontalface_improved.xml; opencv-python-headless does not bundle one"
        )
    return CascadeDetector(cascade, name="lbp", **kw)


def _blazeface(device: Any = None, **kw: Any) -> BlazeFaceDetector:
    """BlazeFace (mediapipe); ``device`` is ignored (CPU)."""
    return BlazeFaceDetector(**kw)


_FACTORIES: dict[str, Callable[..., FaceDetector]] = {
    "mtcnn": MTCNNDetector,
    "blazeface": _blazeface,
    "haar": _haar,
    "lbp": _lbp,
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    return sorted(_FACTORIES)


def create_detector(name: str = "mtcnn", device: str | torch.device | None = None, **kw: Any) -> FaceDetector:
    """Build a detector by name. ``kw`` go to the detector (e.g. ``min_face_size``, ``cascade``)."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown detector {name!r}; known detectors: {list_detectors()}")
    return _FACTORIES[name](device, **kw)
