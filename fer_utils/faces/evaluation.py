"""How well a detector finds known faces: real 48x48 faces pasted at known boxes on a scene, and real
photos and video frames whose faces were labelled by hand (``tests/media/real/faces.json``)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from fer_utils.errors import DatasetError
from fer_utils.faces.align import align_face
from fer_utils.faces.detection import FaceDetector, iou as box_iou
from fer_utils.faces.synthetic import paste_faces


def detection_benchmark(
    detector: FaceDetector, faces: np.ndarray, face_size: int = 160, scene: tuple[int, int] = (480, 640),
    iou_threshold: float = 0.4, seed: int = 0,
) -> pd.DataFrame:
    """Paste each face (upscaled to ``face_size``) at a random place on its own scene and detect.

    One row per face: ``found`` (a detection with IoU >= ``iou_threshold``), ``iou`` of the
    best detection, ``detections`` (count), ``seconds`` (detection time), ``crop_corr``
    (correlation of the aligned 48x48 crop of the best box with the original face).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i, face in enumerate(faces):
        x1 = int(rng.integers(0, scene[1] - face_size))
        y1 = int(rng.integers(0, scene[0] - face_size))
        truth = (x1, y1, x1 + face_size, y1 + face_size)
        image = paste_faces([face], [truth], size=scene, seed=seed + i)
        start = time.perf_counter()
        detections = detector.detect(image)
        seconds = time.perf_counter() - start
        best = max(detections, key=lambda d: box_iou(d.box, truth), default=None)
        iou = box_iou(best.box, truth) if best else 0.0
        corr = float("nan")
        if best is not None and iou >= iou_threshold:
            crop = align_face(image, best, size=face.shape[0], margin=0.0, rotate=False)
            corr = float(np.corrcoef(crop.ravel().astype(float), face.ravel().astype(float))[0, 1])
        rows.append({"index": i, "found": iou >= iou_threshold, "iou": iou, "detections": len(detections),
                     "seconds": seconds, "crop_corr": corr})
    return pd.DataFrame(rows)


Box = Sequence[float]  # (x1, y1, x2, y2) pixels


@dataclass(frozen=True)
class LabelledFaces:
    """The true faces of one image or frame, and the regions that count neither way (faces too small,
    turned away, occluded or blurred: a detection there is neither a hit nor a false box)."""

    faces: tuple[tuple[float, ...], ...]
    ignore: tuple[tuple[float, ...], ...] = ()


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def finds(found: Box, face: Box, max_scale: float = 3.0) -> bool:
    """A detection finds a face when its centre lies in the face's box and its width is within ``max_scale``
    times the face's either way. Why not IoU: detectors frame faces differently (MTCNN tight from brow to
    chin, BlazeFace and Haar looser), so one IoU threshold would judge the convention, not the finding."""
    ratio = (found[2] - found[0]) / max(face[2] - face[0], 1e-9)
    return _inside(_centre(found), face) and 1 / max_scale <= ratio <= max_scale


def score_detections(found: Sequence[Sequence[Box]], labels: Sequence[LabelledFaces]) -> dict[str, int]:
    """Per frame, each true face takes the unused detection that finds it with the nearest centre.
    Returns ``true_faces``, ``found`` (true faces found) and ``false_boxes`` (detections that found no
    face and lie in no ignore region; a second box on a face is a false one)."""
    true_faces = hits = false = 0
    for boxes, label in zip(found, labels, strict=True):
        left = list(boxes)
        for face in label.faces:
            candidates = [b for b in left if finds(b, face)]
            if candidates:
                left.remove(min(candidates, key=lambda b: np.hypot(*np.subtract(_centre(b), _centre(face)))))
                hits += 1
        true_faces += len(label.faces)
        false += sum(not any(_inside(_centre(b), region) for region in label.ignore) for b in left)
    return {"true_faces": true_faces, "found": hits, "false_boxes": false}


def load_face_labels(path: str | os.PathLike) -> dict[str, dict[int, LabelledFaces]]:
    """``{media file name: {frame index: LabelledFaces}}`` from a labels JSON (``{"media": {name: {frame:
    {"faces": [[x1, y1, x2, y2], ...], "ignore": [...]}}}}``); a ``DatasetError`` names what is wrong."""
    try:
        media = json.loads(Path(path).read_text(encoding="utf-8"))["media"]
        return {name: {int(frame): LabelledFaces(tuple(map(_box, entry["faces"])),
                                                 tuple(map(_box, entry.get("ignore", []))))
                       for frame, entry in frames.items()}
                for name, frames in media.items()}
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read face labels ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: expected {{\"media\": {{file: {{frame: {{\"faces\": [[x1, y1, x2, y2], ...], "
                           f"\"ignore\": [...]}}}}}}}}: {type(exc).__name__} {exc}") from None


def _box(values: Sequence[float]) -> tuple[float, ...]:
    box = tuple(float(v) for v in values)
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box {list(values)} is not (x1, y1, x2, y2) with x2 > x1 and y2 > y1")
    return box


def known_faces(boxes_per_frame: Sequence[Sequence[Box]]) -> dict[int, LabelledFaces]:
    """Frame index -> labels for faces whose boxes are known exactly (a made video's pasted faces)."""
    return {i: LabelledFaces(tuple(tuple(float(v) for v in box) for box in boxes))
            for i, boxes in enumerate(boxes_per_frame)}


def labels_for(labels: Mapping[str, Mapping[int, LabelledFaces]], media: str | os.PathLike
               ) -> dict[int, LabelledFaces]:
    """The labelled frames of ``media`` (looked up by file name; empty when it has none)."""
    return dict(labels.get(os.path.basename(media), {}))


def labelled_frames(labels_path: str | os.PathLike) -> list[tuple[str, int, np.ndarray, LabelledFaces]]:
    """``(media name, frame index, RGB frame, labels)`` for every labelled frame of the media beside
    ``labels_path`` (photos have frame 0; videos are read in order, not seeked, so indices are exact)."""
    folder, out = Path(labels_path).parent, []
    for name, frames in load_face_labels(labels_path).items():
        path = folder / name
        capture = cv2.VideoCapture(str(path))
        try:
            index, wanted = 0, max(frames)
            while index <= wanted:
                ok, frame = capture.read()
                if not ok:
                    raise DatasetError(f"{path}: frame {index} is unreadable; {labels_path} labels frames up to {wanted}")
                if index in frames:
                    out.append((name, index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), frames[index]))
                index += 1
        finally:
            capture.release()
    return out


def real_detection_benchmark(detectors: Mapping[str, FaceDetector],
                             frames: Sequence[tuple[str, int, np.ndarray, LabelledFaces]]) -> pd.DataFrame:
    """One row per detector on hand-labelled real frames (:func:`labelled_frames`): true faces, faces found,
    their share, false boxes (:func:`score_detections`) and the median milliseconds per frame."""
    rows = []
    for name, detector in detectors.items():
        detector.detect(frames[0][2])  # warm-up: model loading is not detection
        found, seconds = [], []
        for _, _, image, _ in frames:
            start = time.perf_counter()
            found.append([d.box for d in detector.detect(image)])
            seconds.append(time.perf_counter() - start)
        score = score_detections(found, [labels for *_, labels in frames])
        rows.append({"detector": name, "frames": len(frames), "true faces": score["true_faces"],
                     "found": score["found"], "found share": score["found"] / max(1, score["true_faces"]),
                     "false boxes": score["false_boxes"], "ms per frame": 1000 * float(np.median(seconds))})
    return pd.DataFrame(rows)
