"""A fast detector's proposals checked by MTCNN's O-Net: BlazeFace's speed with MTCNN's precision.

BlazeFace over a fine scale pyramid finds small faces but also many false boxes (on the 11 hand-labelled
real frames, 33 of 37 faces with 23 false boxes at a 20-pixel smallest face); MTCNN finds them without
false boxes, but its P-Net scans every scale of the image and costs most of a CPU frame. Here every
BlazeFace box is cut out as a square 48x48 crop and O-Net, MTCNN's last stage, keeps it only when it
scores it a face; O-Net also refines the box and places the five landmarks that alignment uses. All
crops of a batch of images go through O-Net in one forward pass.

The settings are the parents' own defaults, not tuned on the labelled frames: MTCNN's smallest face
(20 pixels), MediaPipe's minimum score (0.5) and this package's MTCNN cut on O-Net's score (0.9).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fer_utils.faces.align import align_face, face_transform
from fer_utils.faces.blazeface import BlazeFaceDetector
from fer_utils.faces.detection import DEFAULT_MAX_SIDE, Detection, FaceDetector, check_image
from fer_utils.faces.onet import ONET_SIZE, normalise_crops, shared_onet

#: Two verified boxes whose intersection covers more than this share of the smaller one are one face
#: (MTCNN's last suppression, its "Min" overlap at 0.7).
NMS_MIN_OVERLAP = 0.7


def square_crop(image: np.ndarray, box: Sequence[float], side: int = ONET_SIZE) -> tuple[np.ndarray, tuple[float, ...]]:
    """The square around ``box``'s centre with its longer side, cut as :func:`align_face` cuts faces (no
    margin, no rotation, black outside the image) at ``side`` pixels in RGB, and that square
    ``(x1, y1, x2, y2)`` in image pixels (what O-Net's offsets are relative to)."""
    detection = Detection(tuple(box), 1.0)
    matrix, size = face_transform(detection, margin=0.0, rotate=False)
    left, top = -float(matrix[0, 2]), -float(matrix[1, 2])  # no rotation: the map is a pure shift
    crop = align_face(image, detection, side, margin=0.0, grey=False, rotate=False, border="zeros")
    return crop, (left, top, left + size, top + size)


def suppress_nested(detections: list[Detection], min_overlap: float = NMS_MIN_OVERLAP) -> list[Detection]:
    """Greedy suppression, best score first: a box is dropped when its intersection with a kept box covers
    more than ``min_overlap`` of the smaller of the two."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if all(_min_overlap(d.box, k.box) <= min_overlap for k in kept):
            kept.append(d)
    return kept


def _min_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1e-9)


class VerifiedDetector(FaceDetector):
    """``proposer``'s boxes, each kept when MTCNN's O-Net scores its square crop at least ``min_score``,
    reframed by O-Net's box offsets and given its five landmarks (score: O-Net's face probability).
    Default proposer: BlazeFace at a 20-pixel smallest face and score 0.5. CPU only."""

    name = "blazeface-onet"

    def __init__(self, proposer: FaceDetector | None = None, *, min_score: float = 0.9,
                 min_face_size: int = 20, max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        super().__init__(max_side)
        self.proposer = proposer or BlazeFaceDetector(min_score=0.5, min_face_size=min_face_size, max_side=max_side)
        self.min_score = float(min_score)
        self.onet = shared_onet()

    @property
    def own_threads(self) -> int:
        return self.proposer.own_threads  # O-Net runs on torch's threads

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image, most confident first (crops are cut from the full-size images)."""
        return self._detect([check_image(image, f"image {i}") for i, image in enumerate(images)])

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        proposals = self.proposer.detect_batch(images)
        owners, squares, crops = [], [], []
        for i, (image, found) in enumerate(zip(images, proposals)):
            for d in found:
                crop, square = square_crop(image, d.box)
                owners.append(i)
                squares.append(square)
                crops.append(crop)
        results: list[list[Detection]] = [[] for _ in images]
        if not crops:
            return results
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
        with torch.inference_mode():
            offsets, points, scores = (t.numpy() for t in self.onet(normalise_crops(batch)))
        for i, square, offset, point, score in zip(owners, squares, offsets, points, scores):
            if score < self.min_score:
                continue
            x1, y1, x2, y2 = square
            side = x2 - x1
            box = (x1 + offset[0] * side, y1 + offset[1] * side, x2 + offset[2] * side, y2 + offset[3] * side)
            landmarks = np.stack([x1 + point[:5] * side, y1 + point[5:] * side], axis=1).astype(np.float32)
            results[i].append(Detection(box, float(score), landmarks))
        return [suppress_nested(found) for found in results]
