"""Face tracks across video frames: constant-velocity box prediction plus an appearance descriptor,
matched by the Hungarian algorithm; tracks survive a few missed detections."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from fer_utils.faces.detection import Detection, clip_box

#: Side of the downscaled grey patch that describes a face's appearance.
PATCH_SIZE = 16


def appearance(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Zero-mean, unit-norm ``PATCH_SIZE``² grey patch of ``box`` in RGB ``image`` (zeros when empty)."""
    x1, y1, x2, y2 = (int(round(v)) for v in clip_box(box, image.shape[1], image.shape[0]))
    crop = image[y1:y2, x1:x2]
    if crop.size == 0:
        return np.zeros(PATCH_SIZE * PATCH_SIZE, np.float32)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    patch = cv2.resize(grey, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 0 else patch


@dataclass
class _Track:
    box: np.ndarray  # (4,) x1, y1, x2, y2 at ``frame``
    velocity: np.ndarray  # (4,) pixels per frame
    look: np.ndarray  # appearance descriptor, running mean
    frame: int  # frame of the last matched detection
    misses: int = 0
    matches: int = 1

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.frame)


class FaceTracker:
    """Gives each face a track id kept across frames.

    Each track predicts its box at constant velocity; the cost of pairing a track with a detection is
    the predicted-centre distance in face sizes plus ``appearance_weight`` times the appearance
    distance (0 same patch, 1 opposite); pairs farther than ``max_distance`` face sizes are never
    made. Pairs are chosen by ``linear_sum_assignment``; a track unmatched in more than
    ``max_missing`` consecutive updates is dropped.
    """

    def __init__(self, max_distance: float = 1.5, appearance_weight: float = 1.0, max_missing: int = 10,
                 smoothing: float = 0.5) -> None:
        self.max_distance = max_distance
        self.appearance_weight = appearance_weight
        self.max_missing = max_missing
        self.smoothing = smoothing
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0

    @property
    def active(self) -> set[int]:
        """Ids of the tracks still kept."""
        return set(self._tracks)

    def _cost(self, track: _Track, box: np.ndarray, look: np.ndarray, frame: int) -> float:
        p = track.predicted(frame)
        scale = max(1.0, float(np.sqrt(max(p[2] - p[0], 1) * max(p[3] - p[1], 1))))
        shift = float(np.hypot((p[0] + p[2] - box[0] - box[2]) / 2, (p[1] + p[3] - box[1] - box[3]) / 2)) / scale
        if shift > self.max_distance:
            return np.inf
        return shift + self.appearance_weight * (1 - float(track.look @ look)) / 2

    def update(self, image: np.ndarray, detections: Sequence[Detection], frame: int) -> list[tuple[int, Detection]]:
        """Track id for each detection of ``image`` (frame number ``frame``), in the order of ``detections``."""
        boxes = [np.asarray(d.box, np.float64) for d in detections]
        looks = [appearance(image, d.box) for d in detections]
        ids = list(self._tracks)
        cost = np.array([[self._cost(self._tracks[t], b, a, frame) for b, a in zip(boxes, looks)] for t in ids])
        matched: dict[int, int] = {}
        if cost.size:
            finite = np.isfinite(cost)
            rows, cols = linear_sum_assignment(np.where(finite, cost, 1e6))
            matched = {int(j): ids[i] for i, j in zip(rows, cols) if finite[i, j]}
        for tid in set(ids) - set(matched.values()):
            track = self._tracks[tid]
            track.misses += 1
            if track.misses > self.max_missing:
                del self._tracks[tid]
        result = []
        for j, det in enumerate(detections):
            tid = matched.get(j)
            if tid is None:
                tid, self._next_id = self._next_id, self._next_id + 1
                self._tracks[tid] = _Track(boxes[j], np.zeros(4), looks[j], frame)
            else:
                self._follow(self._tracks[tid], boxes[j], looks[j], frame)
            result.append((tid, det))
        return result

    def carry(self, tracked: Sequence[tuple[int, Detection]], frame: int) -> list[tuple[int, Detection]]:
        """``tracked`` (the last :meth:`update`'s result) moved to frame number ``frame`` by each track's
        constant-velocity prediction (landmarks shifted with the box centre); kept as given when the
        prediction has no size left."""
        carried = []
        for tid, det in tracked:
            track = self._tracks.get(tid)
            box = track.predicted(frame) if track is not None else None
            if box is None or box[2] <= box[0] or box[3] <= box[1]:
                carried.append((tid, det))
                continue
            shift = (box[:2] + box[2:] - np.add(det.box[:2], det.box[2:])) / 2
            points = None if det.landmarks is None else det.landmarks + shift.astype(np.float32)
            carried.append((tid, Detection(tuple(box), det.score, points)))
        return carried

    def _follow(self, track: _Track, box: np.ndarray, look: np.ndarray, frame: int) -> None:
        measured = (box - track.box) / max(1, frame - track.frame)
        keep = self.smoothing if track.matches > 1 else 0.0  # the first move sets the velocity
        track.velocity = keep * track.velocity + (1 - keep) * measured
        mean = self.smoothing * track.look + (1 - self.smoothing) * look
        norm = float(np.linalg.norm(mean))
        track.look = mean / norm if norm > 0 else look
        track.box, track.frame, track.misses, track.matches = box, frame, 0, track.matches + 1
