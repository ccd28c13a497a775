"""Face detectors by name: YuNet (its ONNX file in this package, run by ONNX Runtime), MTCNN
(facenet-pytorch), BlazeFace (MediaPipe's model run by LiteRT), BlazeFace checked by MTCNN's O-Net,
OpenCV Haar and LBP cascades; all implement :class:`~fer_utils.faces.detection.FaceDetector`.

Every detector takes uint8 RGB ``(H, W, 3)`` or greyscale ``(H, W)`` images and returns,
per image, a list of :class:`Detection` sorted by decreasing score.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_utils.devices import resolve_device
from fer_utils.faces.blazeface import BlazeFaceDetector
from fer_utils.faces.detection import DEFAULT_MAX_SIDE, Detection, FaceDetector, indices_by_shape
from fer_utils.faces.verified import VerifiedDetector
from fer_utils.faces.yunet import YuNetDetector

__all__ = [
    "PREDICT_DETECTOR", "BlazeFaceDetector", "CascadeDetector", "MTCNNDetector", "VerifiedDetector", "YuNetDetector",
    "create_detector", "list_detectors",
]


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
        n = self._nets
        for shape, indices in indices_by_shape(images).items():
            if min(shape[:2]) * 12 / self.min_face_size < 12:
                continue  # MTCNN's image pyramid is empty (and facenet-pytorch fails) below this size
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

    @property
    def own_threads(self) -> int:
        return cv2.getNumThreads()  # detectMultiScale's parallel loops

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


def _yunet(device: Any = None, **kw: Any) -> YuNetDetector:
    """YuNet (the packaged ONNX model, ONNX Runtime); ``device`` is ignored (CPU)."""
    return YuNetDetector(**kw)


def _blazeface(device: Any = None, **kw: Any) -> BlazeFaceDetector:
    """BlazeFace (MediaPipe's model, LiteRT); ``device`` is ignored (CPU)."""
    return BlazeFaceDetector(**kw)


def _blazeface_onet(device: Any = None, **kw: Any) -> VerifiedDetector:
    """BlazeFace's boxes checked by MTCNN's O-Net; ``device`` is ignored (CPU)."""
    return VerifiedDetector(**kw)


_FACTORIES: dict[str, Callable[..., FaceDetector]] = {
    "mtcnn": MTCNNDetector,
    "blazeface": _blazeface,
    "blazeface-onet": _blazeface_onet,
    "haar": _haar,
    "lbp": _lbp,
    "yunet": _yunet,
}


#: What ``predict`` and ``bench predict`` detect with unless told otherwise: on the hand-labelled real frames it
#: finds all 37 faces with no false box, and it is the cheapest of the detectors that find the small ones
#: (README, "On real footage").
PREDICT_DETECTOR = "yunet"


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    return sorted(_FACTORIES)


def create_detector(name: str = "mtcnn", device: str | torch.device | None = None, **kw: Any) -> FaceDetector:
    """Build a detector by name. ``kw`` go to the detector (e.g. ``min_face_size``, ``cascade``)."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown detector {name!r}; known detectors: {list_detectors()}")
    return _FACTORIES[name](device, **kw)
