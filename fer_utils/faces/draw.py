"""Annotating images with face boxes, emotion labels and a probability bar."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer_utils.labels import CANONICAL_CLASSES

#: RGB colour per canonical emotion (unknown names fall back to white).
LABEL_COLOURS: dict[str, tuple[int, int, int]] = dict(zip(CANONICAL_CLASSES, [
    (230, 25, 75), (60, 180, 75), (145, 30, 180), (255, 225, 25),
    (0, 130, 200), (245, 130, 48), (0, 190, 190), (240, 50, 230),
]))


def draw_faces(
    image: np.ndarray,
    faces: Sequence[tuple[Sequence[float], str, float]],
) -> np.ndarray:
    """A copy of RGB ``image`` with, per ``(box, label, probability)``: the box, the label
    and probability above it, and a bar under it filled in proportion to the probability."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(height, width) / 700)
    thick = max(1, round(2 * scale))
    for box, label, prob in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = LABEL_COLOURS.get(label, (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{label} {prob:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - base - 2 if y1 - th - base - 2 >= 0 else y2 + th + 2 * base + 8
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 4, ty + base), colour, -1)
        cv2.putText(out, text, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
        bar_h = max(4, round(6 * scale))
        by = min(y2 + thick + 2, height - bar_h - 1)
        cv2.rectangle(out, (x1, by), (x2, by + bar_h), (60, 60, 60), -1)
        cv2.rectangle(out, (x1, by), (x1 + round((x2 - x1) * float(prob)), by + bar_h), colour, -1)
    return out
