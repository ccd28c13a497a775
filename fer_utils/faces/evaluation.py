"""How well a detector finds known faces: real 48x48 faces pasted at known boxes on a scene."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

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
