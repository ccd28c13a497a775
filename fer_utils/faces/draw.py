"""Annotating images with face boxes, emotion labels and a probability bar; readable label placement."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer_utils.faces.detection import clip_box
from fer_utils.labels import CANONICAL_CLASSES

#: RGB colour per canonical emotion (unknown names fall back to white).
LABEL_COLOURS: dict[str, tuple[int, int, int]] = dict(zip(CANONICAL_CLASSES, [
    (230, 25, 75), (60, 180, 75), (145, 30, 180), (255, 225, 25),
    (0, 130, 200), (245, 130, 48), (0, 190, 190), (240, 50, 230),
]))

Rect = tuple[int, int, int, int]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]], width: int, height: int, gap: int = 2,
) -> list[Rect]:
    """Label rectangles ``(x1, y1, x2, y2)`` (exclusive ends) of ``(w, h)`` sizes for ``boxes``, inside the
    image and pairwise disjoint where room allows: above the box, else below, else inside its top,
    else the free row nearest above; left-aligned with the box, shifted left at the right edge."""
    placed: list[Rect] = []
    for box, (w, h) in zip(boxes, sizes):
        w, h = min(w, width), min(h, height)
        bx1, by1, _, by2 = (int(round(v)) for v in clip_box(box, width, height))
        x = min(max(bx1, 0), width - w)
        preferred = [by1 - gap - h, by2 + gap, by1 + gap]
        rows = [y for y in preferred if 0 <= y <= height - h]
        rows += sorted(range(height - h + 1), key=lambda y: abs(y - preferred[0]))
        rect = next(((x, y, x + w, y + h) for y in rows
                     if not any(_overlaps((x, y, x + w, y + h), other) for other in placed)),
                    (x, rows[0], x + w, rows[0] + h))
        placed.append(rect)
    return placed


def draw_faces(
    image: np.ndarray,
    faces: Sequence[tuple[Sequence[float], str, float | None]],
    ids: Sequence[int | None] | None = None,
) -> np.ndarray:
    """A copy of RGB ``image`` with, per ``(box, label, probability)``: the box clipped to the image,
    a bar inside its bottom filled in proportion to the probability, and the label (``#id`` first
    when ``ids`` gives one) placed by :func:`place_labels`. A probability of ``None`` (a score that is
    no probability, such as a cascade's neighbour count) draws neither bar nor number."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(height, width) / 700)
    thick = max(1, round(2 * scale))
    bar_h = max(4, round(6 * scale))
    ids = ids if ids is not None else [None] * len(faces)
    texts = [("" if i is None else f"#{i} ") + label + ("" if prob is None else f" {prob:.2f}")
             for (_, label, prob), i in zip(faces, ids)]
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick) for t in texts]
    rects = place_labels([box for box, _, _ in faces], [(tw + 4, th + base + 4) for (tw, th), base in sizes],
                         width, height)
    for (box, label, prob), text, ((_, th), base), (lx1, ly1, lx2, ly2) in zip(faces, texts, sizes, rects):
        x1, y1, x2, y2 = (int(round(v)) for v in clip_box(box, width - 1, height - 1))
        colour = LABEL_COLOURS.get(label, (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        if prob is not None:
            by = max(y1, y2 - bar_h)
            cv2.rectangle(out, (x1, by), (x2, y2), (60, 60, 60), -1)
            cv2.rectangle(out, (x1, by), (x1 + round((x2 - x1) * float(prob)), y2), colour, -1)
        cv2.rectangle(out, (lx1, ly1), (lx2 - 1, ly2 - 1), colour, -1)
        cv2.putText(out, text, (lx1 + 2, ly1 + 2 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return out
