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


def _covered(rects: np.ndarray, others: Sequence[Rect]) -> np.ndarray:
    """Area of each of ``rects`` ``(K, 4)`` that ``others`` cover (summed over them)."""
    if not len(others):
        return np.zeros(len(rects))
    o = np.asarray(others)[None]
    r = rects[:, None]
    w = np.clip(np.minimum(r[..., 2], o[..., 2]) - np.maximum(r[..., 0], o[..., 0]), 0, None)
    h = np.clip(np.minimum(r[..., 3], o[..., 3]) - np.maximum(r[..., 1], o[..., 1]), 0, None)
    return (w * h).sum(axis=1)


def place_labels(
    boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]], width: int, height: int, gap: int = 2,
) -> list[Rect]:
    """Label rectangles ``(x1, y1, x2, y2)`` (exclusive ends) of ``(w, h)`` sizes for ``boxes``, inside the
    image, clear of every face box and of each other where room allows. Spots are tried in order: above the
    box, below it, then rows ever further from it, each left-aligned with the box, right-aligned with it
    and centred on it; the first free one wins. In a crowd with no free spot, the one covering the least
    face, then the least label, wins: a label may hide another label before it hides a face."""
    faces: list[Rect] = [tuple(int(round(v)) for v in clip_box(box, width, height)) for box in boxes]
    placed: list[Rect] = []
    for (bx1, by1, bx2, by2), (w, h) in zip(faces, sizes):
        w, h = min(w, width), min(h, height)
        above, below = by1 - gap - h, by2 + gap
        every = np.arange(height - h + 1)
        rows = np.concatenate([[y for y in (above, below) if 0 <= y <= height - h],
                               every[np.argsort(np.abs(every - above), kind="stable")]]).astype(int)
        xs = np.array(list(dict.fromkeys(min(max(x, 0), width - w) for x in (bx1, bx2 - w, (bx1 + bx2 - w) // 2))))
        x, y = np.repeat(xs[None], len(rows), 0).ravel(), np.repeat(rows, len(xs))
        spots = np.stack([x, y, x + w, y + h], axis=1)
        on_faces, on_labels = _covered(spots, faces), _covered(spots, placed)
        best = int(np.lexsort((np.arange(len(spots)), on_labels, on_faces))[0])  # first spot among the least covered
        placed.append(tuple(int(v) for v in spots[best]))
    return placed


def draw_faces(
    image: np.ndarray,
    faces: Sequence[tuple[Sequence[float], str, float | None]],
    ids: Sequence[int | None] | None = None,
) -> np.ndarray:
    """A copy of RGB ``image`` with, per ``(box, label, probability)``: the box clipped to the image,
    a bar inside its bottom filled in proportion to the probability, and the label (``#id`` first
    when ``ids`` gives one) placed by :func:`place_labels`, with a line back to its face when the crowd
    pushed it away from the box. A probability of ``None`` (a score that is
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
        if ly2 < y1 - 3 or ly1 > y2 + 3:  # moved away in a crowd: a leader line back to its face
            cv2.line(out, ((lx1 + lx2) // 2, ly2 if ly2 < y1 else ly1), ((x1 + x2) // 2, y1 if ly2 < y1 else y2),
                     colour, max(1, thick // 2), cv2.LINE_AA)
        cv2.rectangle(out, (lx1, ly1), (lx2 - 1, ly2 - 1), colour, -1)
        cv2.putText(out, text, (lx1 + 2, ly1 + 2 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return out
