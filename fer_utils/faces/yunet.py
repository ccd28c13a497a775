"""YuNet: a tiny face detector (YuNet-s: 54,608 parameters, 96 MFLOP at 320x320), run by ONNX Runtime.

Why it is here: on the hand-labelled real frames (``tests/media/real/faces.json``) it finds all 37 faces,
down to 12 px, with no false box, where BlazeFace checked by O-Net finds 29 and MTCNN 34, and at
640x480 it costs about a third of BlazeFace's scale pyramid and O-Net together (README, "On real
footage"). Its box frames a face as MTCNN's does (on 400 FER2013 Training faces pasted at a 160-pixel box:
longest side 1.015 times MTCNN's, same centre) and its landmarks come in this package's order (the eye on
the image left first), so faces are cut as MTCNN's are, with no remapping.

Why ONNX Runtime and not OpenCV's ``cv2.FaceDetectorYN``: the same network at 640x480 takes 8.7 ms a frame
there (2 threads, batches of 4 frames) against 18 ms in OpenCV's DNN module, which also cannot load a
model with a free input size. The decoding below is ``FaceDetectorYN``'s (OpenCV 4.14): per output stride,
score sqrt(class x objectness), box centre offset from the cell and log size in strides, landmarks offset
from the cell, then OpenCV's non-maximum suppression. On the labelled frames, its boxes, landmarks and
scores match ``FaceDetectorYN``'s to 4e-5 pixels.

The model file ships inside this package (``weights/yunet_s_dynamic.onnx``, 237,823 bytes): no wheel
carries it and nothing may be downloaded at run time. It is the authors' file (github.com/ShiqiYu/
libfacedetection.train, ``onnx/yunet_s_dynamic.onnx`` at commit 2b5e61de, Apache-2.0), the free-size
export of the network OpenCV's model zoo publishes as ``face_detection_yunet_2023mar.onnx``; licences
and provenance: ``weights/NOTICE.md``.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fer_utils.faces.detection import DEFAULT_MAX_SIDE, Detection, FaceDetector, indices_by_shape

#: The packaged model file and its SHA-256 (a test checks it).
MODEL_PATH = Path(__file__).parent / "weights" / "yunet_s_dynamic.onnx"
MODEL_SHA256 = "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3"
#: The network's output strides; images are padded to a multiple of the largest.
STRIDES = (8, 16, 32)
#: ``FaceDetectorYN``'s cap on the boxes kept by non-maximum suppression.
TOP_K = 5000


def decode(outputs: dict[str, np.ndarray], height: int, width: int, min_score: float,
           nms_iou: float) -> list[Detection]:
    """One image's detections from YuNet's outputs (``cls_8``, ``obj_8``, ``bbox_8``, ``kps_8``, ... without
    the batch axis) for a padded input of ``height`` x ``width`` pixels; boxes not yet clipped."""
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        row, col = np.divmod(np.arange(rows * cols), cols)
        cls = np.clip(outputs[f"cls_{stride}"][:, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"][:, 0], 0, 1)
        delta = outputs[f"bbox_{stride}"]
        centre_x, centre_y = (col + delta[:, 0]) * stride, (row + delta[:, 1]) * stride
        w, h = np.exp(delta[:, 2]) * stride, np.exp(delta[:, 3]) * stride
        boxes.append(np.stack([centre_x - w / 2, centre_y - h / 2, w, h], axis=1))
        scores.append(np.sqrt(cls * obj))
        points.append((outputs[f"kps_{stride}"].reshape(-1, 5, 2) + np.stack([col, row], axis=1)[:, None]) * stride)
    box, score, point = (np.concatenate(parts) for parts in (boxes, scores, points))
    candidates = np.flatnonzero(score >= min_score)
    keep = cv2.dnn.NMSBoxes(box[candidates].tolist(), score[candidates].tolist(), min_score, nms_iou, top_k=TOP_K)
    return [Detection((x, y, x + w, y + h), score[i], point[i])
            for i in candidates[np.asarray(keep, dtype=int).ravel()] for x, y, w, h in [box[i]]]


class YuNetDetector(FaceDetector):
    """YuNet through ONNX Runtime on the CPU; same-size images go through in one batch.

    ``min_score``: 0.6, chosen on a set apart from the labelled frames (30 real portraits and a group
    photo shrunk so their faces are 14-96 px wide, on 640x480 canvases): as many faces found at every size
    as 0.5, with fewer false boxes. ``nms_iou``: ``FaceDetectorYN``'s default. ``threads``: ONNX Runtime's
    threads. One by default: a second saves little (13.2 against 11.9 ms a 640x480 frame), and in
    ``predict``'s video pipeline detection runs on its own thread beside the classifier's, so both
    stages fighting for both cores is slower (``scripts/bench_vs_fer.py`` on the real videos, median of
    3: 44.9 and 43.3 frames/s with one thread, 34.5 and 39.5 with two spinning ones). ``model``: another
    YuNet ONNX file with free input size and the same outputs (default: the packaged one).
    """

    name = "yunet"

    def __init__(self, *, min_score: float = 0.6, nms_iou: float = 0.3, min_face_size: int | None = None,
                 threads: int = 1, model: str | os.PathLike | None = None,
                 max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        super().__init__(max_side)
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must lie in (0, 1), got {min_score}")
        self.min_face_size = min_face_size or 0
        self.threads = threads
        try:
            import onnxruntime
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("the yunet detector needs ONNX Runtime: pip install --no-deps onnxruntime==1.32.0 "
                              "(or use --detector blazeface-onet)") from err
        self.model_path = Path(model) if model is not None else MODEL_PATH
        if not self.model_path.is_file():
            raise FileNotFoundError(f"yunet model file not found: {self.model_path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # Idle pool threads sleep instead of spinning: in predict, the classifier needs the cores meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(str(self.model_path), options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own exception types for unreadable models
            raise ValueError(f"{self.model_path}: not an ONNX model ONNX Runtime can load ({type(err).__name__})") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)

    @property
    def own_threads(self) -> int:
        return self.threads

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        results: list[list[Detection]] = [[] for _ in images]
        step = max(STRIDES)
        for (height, width, _), indices in indices_by_shape(images).items():
            padded_h, padded_w = -(-height // step) * step, -(-width // step) * step
            batch = np.zeros((len(indices), 3, padded_h, padded_w), np.float32)
            for row, i in enumerate(indices):  # the network reads BGR pixels in 0-255
                batch[row, :, :height, :width] = images[i][..., ::-1].transpose(2, 0, 1)
            outputs = self._session.run(self._outputs, {self._input: batch})
            for row, i in enumerate(indices):
                found = decode({name: out[row] for name, out in zip(self._outputs, outputs)}, padded_h, padded_w,
                               self.min_score, self.nms_iou)
                large = (d.clipped(width, height) for d in found if d.width >= self.min_face_size)
                results[i] = [face for face in large if face.area > 0]
        return results
