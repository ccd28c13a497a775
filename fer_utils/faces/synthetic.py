"""Synthetic scenes made of real face crops: known face boxes for tests and benchmarks."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 greyscale background of blurred noise (no face-like structure)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(40, 220, (height, width)).astype(np.uint8), (0, 0), 3)


def paste_faces(
    faces: Sequence[np.ndarray],
    boxes: Sequence[Sequence[int]],
    size: tuple[int, int] = (480, 640),
    background: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Paste each greyscale ``face`` resized into its integer box (x1, y1, x2, y2) on a
    ``size`` = (height, width) background; returns uint8 ``(height, width)``."""
    scene = textured_background(*size, seed=seed) if background is None else background.copy()
    for face, (x1, y1, x2, y2) in zip(faces, boxes):
        scene[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_CUBIC)
    return scene


def moving_faces(
    faces: Sequence[np.ndarray],
    starts: Sequence[tuple[int, int]],
    ends: Sequence[tuple[int, int]],
    frames: int,
    face_size: int,
    size: tuple[int, int] = (480, 640),
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """``frames`` scenes of ``faces`` moving in straight lines from the top-left corners ``starts``
    to ``ends`` over one background (later faces in front); yields (uint8 frame, face boxes)."""
    background = textured_background(*size, seed=seed)
    for t in range(frames):
        f = t / max(1, frames - 1)
        corners = [(round(x0 + (x1 - x0) * f), round(y0 + (y1 - y0) * f)) for (x0, y0), (x1, y1) in zip(starts, ends)]
        boxes = [(x, y, x + face_size, y + face_size) for x, y in corners]
        yield paste_faces(faces, boxes, size, background=background), boxes
