"""BlazeFace: MediaPipe's short-range face detector, run by LiteRT over a small scale pyramid.

The model (``face_detection_short_range.tflite``, Apache-2.0) ships inside the ``mediapipe==0.10.21``
wheel, so it works offline; LiteRT (``ai-edge-litert``, Google's TensorFlow Lite runtime,
Apache-2.0) runs it. MediaPipe's own ``FaceDetection`` solution feeds the model one 128x128
copy of the image per call, which misses faces smaller than about 15% of the image's longer side
(small faces in a 1080p street scene); cutting the image into 128x128 tiles finds them, at one
model call per tile. Here the network, fully convolutional up to its per-cell outputs, runs
instead on the whole image at each scale of a pyramid (its anchors laid on the larger grid):
the same faces for half the work of overlapping tiles, no seams, and the frames of a video batch
go through together. Decoding follows MediaPipe's short-range graph (SSD anchors, sigmoid
scores, weighted non-maximum suppression); a test checks the boxes against ``mediapipe``'s own.
"""
from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_utils.faces.native_log import native_stderr_silenced
from fer_utils.faces.detection import (
    DEFAULT_MAX_SIDE, Detection, FaceDetector, check_image, clip_box, shrink,
)

#: Side of the model's square training input, in pixels.
INPUT_SIDE = 128
#: The smallest face the model finds, in input pixels (MediaPipe's smallest anchor scale, 0.1484375 x 128).
MIN_FACE_INPUT = 0.1484375 * INPUT_SIDE
#: The largest ratio between two neighbouring scales of the pyramid (the model spans about 5x in face size).
SCALE_STEP = 3.0
#: The model's output maps: (stride, anchors per cell), finest first, as it orders its outputs.
MAPS = ((8, 2), (16, 6))
#: The model file inside the mediapipe wheel (``mediapipe/modules/face_detection/``).
MODEL_FILE = "face_detection_short_range.tflite"
#: MediaPipe's weighted non-maximum suppression merges boxes overlapping more than this (IoU).
NMS_IOU = 0.3
#: MediaPipe's boxes run from the brows to the chin: scaled by this about their centre, moved up by
#: ``BOX_SHIFT`` of their side, they frame a face as MTCNN's and FER2013's crops do. Measured on 400
#: PublicTest faces pasted at a known 160-pixel box (scripts/predict_domain_gap.py): MediaPipe's
#: box is 0.84 of it, centred 13 pixels low; MTCNN's 0.81 wide, 1.05 tall, centred.
BOX_SCALE, BOX_SHIFT = 1.25, -0.1


def default_model_path() -> Path:
    """The short-range model inside the installed mediapipe wheel (found without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the blazeface detector reads {MODEL_FILE} from the mediapipe wheel: pip install --no-deps "
            "mediapipe==0.10.21 (or pass model=PATH to the .tflite file, or use --detector haar)")
    return Path(next(iter(spec.submodule_search_locations))) / "modules" / "face_detection" / MODEL_FILE


@lru_cache(maxsize=16)
def grid_anchors(height: int, width: int) -> np.ndarray:
    """``(A, 2)`` anchor centres (x, y) in input pixels for a ``height`` x ``width`` input (multiples of 16):
    per map, row by row, each cell's anchors together (MediaPipe's order; 896 for 128x128)."""
    groups = []
    for stride, per_cell in MAPS:
        ys, xs = np.mgrid[0:height // stride, 0:width // stride]
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        groups.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(groups).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, A, 4)`` (x1, y1, x2, y2 in input pixels) and scores ``(N, A)`` from the raw outputs
    ``(N, A, 16)`` and ``(N, A, 1)``: centre offsets and sizes in input pixels (MediaPipe's x/y/w/h
    scales of 128 over a 128-pixel input, fixed-size anchors), sigmoid of clipped logits."""
    centre = regressors[..., :2] + anchors
    half = regressors[..., 2:4] / 2
    scores = 1 / (1 + np.exp(-np.clip(logits[..., 0].astype(np.float64), -100, 100)))
    return np.concatenate([centre - half, centre + half], axis=-1), scores


def face_frame(box: np.ndarray) -> np.ndarray:
    """A MediaPipe box (x1, y1, x2, y2) as the face frame crops are cut from (see :data:`BOX_SCALE`)."""
    side = box[2:] - box[:2]
    centre = (box[:2] + box[2:]) / 2 + np.array([0.0, BOX_SHIFT]) * side
    return np.concatenate([centre - BOX_SCALE * side / 2, centre + BOX_SCALE * side / 2])


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each most confident remaining box takes every box
    overlapping it by more than ``threshold`` IoU; their score-weighted mean box keeps the top score."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    kept = []
    while len(boxes):
        top = boxes[0]
        w = np.clip(np.minimum(boxes[:, 2], top[2]) - np.maximum(boxes[:, 0], top[0]), 0, None)
        h = np.clip(np.minimum(boxes[:, 3], top[3]) - np.maximum(boxes[:, 1], top[1]), 0, None)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        union = areas + (top[2] - top[0]) * (top[3] - top[1]) - w * h
        group = w * h > threshold * union
        weights = scores[group]
        kept.append(((boxes[group] * weights[:, None]).sum(0) / weights.sum(), float(scores[0])))
        boxes, scores = boxes[~group], scores[~group]
    return kept


class BlazeFaceDetector(FaceDetector):
    """BlazeFace short-range over a scale pyramid (CPU, LiteRT; no landmarks used).

    The coarsest scale fits the image in 128 pixels, as MediaPipe does, and finds the largest faces;
    the finest makes a ``min_face_size``-pixel face (measured on the image shrunk to ``max_side``) as
    large as the smallest face the model finds (19 input pixels); scales in between are at most
    3x apart. ``min_face_size=None``: the coarsest scale only. Boxes of all scales go through one
    weighted non-maximum suppression; faces scoring below ``min_score`` are dropped. Boxes are MediaPipe's
    mapped by :func:`face_frame` to the face frame MTCNN and FER2013's crops use. Batches of
    images are shared out to ``threads`` workers (default: all cores), each running its own
    single-threaded interpreter: on a machine also decoding video, that beats one interpreter
    splitting every layer. ``model``: a ``.tflite`` file of the same model (default: the wheel's).
    """

    name = "blazeface"

    def __init__(self, *, min_score: float = 0.5, min_face_size: int | None = 64, threads: int | None = None,
                 model: str | os.PathLike | None = None, max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        super().__init__(max_side)
        if min_face_size is not None and min_face_size < 8:
            raise ValueError(f"min_face_size must be >= 8 pixels or None, got {min_face_size}")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("the blazeface detector needs LiteRT: pip install --no-deps ai-edge-litert==2.3.0 "
                              "(or use --detector haar)") from err
        self.model_path = Path(model) if model is not None else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"blazeface model not found: {self.model_path}")
        self.min_score = float(min_score)
        self.min_face_size = min_face_size
        self.threads = threads or os.cpu_count() or 1
        self._interpreter_class = Interpreter
        self._interpreters: dict[tuple[int, ...], Any] = {}
        self._pool: ThreadPoolExecutor | None = None

    @property
    def own_threads(self) -> int:
        return self.threads

    def scales(self, width: int, height: int) -> list[float]:
        """Input pixels per image pixel at each scale searched in a ``width`` x ``height`` image (already
        shrunk to ``max_side``), coarsest first."""
        coarse = INPUT_SIDE / max(width, height)
        fine = coarse if self.min_face_size is None else MIN_FACE_INPUT / self.min_face_size
        if fine <= coarse:
            return [coarse]
        steps = math.ceil(math.log(fine / coarse) / math.log(SCALE_STEP))
        return [coarse * (fine / coarse) ** (i / steps) for i in range(steps + 1)]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image, most confident first. The pyramid is laid out for the image shrunk to
        ``max_side`` but each scale is resized from the image itself (no intermediate copy)."""
        return self._detect([check_image(image, f"image {i}") for i, image in enumerate(images)])

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Full-size RGB ``images`` shared out to the workers (one image: all threads on it)."""
        workers = min(self.threads, len(images))
        if workers <= 1:
            return self._detect_here(images, self.threads)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="blazeface")
        shares = np.array_split(np.arange(len(images)), workers)
        done = self._pool.map(lambda share: self._detect_here([images[i] for i in share], 1), shares)
        return [found for share in done for found in share]

    def _pyramid(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """``image`` at each scale (coarsest first), zero-padded right and bottom to multiples of 16,
        with its scale (input pixels per image pixel). Each scale is resized from the next finer one."""
        height, width = image.shape[:2]
        factor = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        levels, source = [], image
        for scale in sorted((factor * s for s in self.scales(round(width * factor), round(height * factor))),
                            reverse=True):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            source = shrink(source, *size) if scale < 1 else cv2.resize(image, size)
            padded = np.zeros((-(-size[1] // 16) * 16, -(-size[0] // 16) * 16, 3), np.uint8)
            padded[:size[1], :size[0]] = source
            levels.append((padded, scale))
        return levels[::-1]

    def _run(self, batch: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs ``(N, A, 16)`` and ``(N, A, 1)`` for uint8 inputs ``(N, H, W, 3)``, on this
        Python thread's own interpreter for that input size (interpreters are not thread-safe; the
        first allocation costs about 30 ms, resizing the batch later about 0.2 ms).

        The model flattens its batch into the anchor axis map by map: its outputs are ``(1, N A, C)``
        with every input's stride-8 anchors first, then every input's stride-16 anchors."""
        n, height, width = batch.shape[:3]
        key = (threading.get_ident(), threads, height, width)
        interpreter = self._interpreters.get(key)
        fresh = interpreter is None
        if fresh:
            with native_stderr_silenced():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                interpreter = self._interpreters[key] = self._interpreter_class(
                    model_path=str(self.model_path), num_threads=threads)
        index = interpreter.get_input_details()[0]["index"]
        if fresh or tuple(interpreter.get_input_details()[0]["shape"]) != (n, height, width, 3):
            interpreter.resize_tensor_input(index, [n, height, width, 3])
            with native_stderr_silenced():
                interpreter.allocate_tensors()
        pixels = batch.astype(np.float32)
        pixels *= 1 / 127.5
        pixels -= 1  # [-1, 1], as MediaPipe feeds it
        interpreter.set_tensor(index, pixels)
        interpreter.invoke()
        fine = n * (height // MAPS[0][0]) * (width // MAPS[0][0]) * MAPS[0][1]
        outputs = (interpreter.get_tensor(o["index"])[0] for o in sorted(
            interpreter.get_output_details(), key=lambda o: o["name"] != "regressors"))
        return tuple(np.concatenate([out[:fine].reshape(n, -1, out.shape[-1]),
                                     out[fine:].reshape(n, -1, out.shape[-1])], axis=1) for out in outputs)

    def _detect_here(self, images: list[np.ndarray], threads: int) -> list[list[Detection]]:
        """Faces in ``images`` on this thread: inputs of the same size go through the model together."""
        pyramids = [self._pyramid(image) for image in images]
        by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray, float]]] = {}
        for i, levels in enumerate(pyramids):
            for padded, scale in levels:
                by_shape.setdefault(padded.shape, []).append((i, padded, scale))
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in images]  # per image: boxes, scores
        for (height, width, _), inputs in by_shape.items():
            regressors, logits = self._run(np.stack([padded for _, padded, _ in inputs]), threads)
            boxes, scores = decode(regressors, logits, grid_anchors(height, width))
            for (i, _, scale), image_boxes, image_scores in zip(inputs, boxes, scores):
                keep = image_scores >= self.min_score
                found[i].append((image_boxes[keep] / scale, image_scores[keep]))
        return [
            [Detection(clip_box(face_frame(box), *image.shape[1::-1]), score)
             for box, score in weighted_nms(np.concatenate([b for b, _ in dets]), np.concatenate([s for _, s in dets]))]
            for image, dets in zip(images, found)
        ]
