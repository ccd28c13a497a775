"""Videos for prediction: frame reading/writing, temporal smoothing, and
:func:`analyse_video`, the lazy stream of per-frame results of a :class:`FacePredictor`."""
from __future__ import annotations

import math
import os
import sys
import threading
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar, Union
from urllib.parse import urlparse

import cv2
import numpy as np
import torch

from fer_utils.errors import VideoReadError
from fer_utils.faces.detection import Detection, FaceDetector
from fer_utils.files import opencv_name
from fer_utils.predict.predictor import FacePredictor, FaceResult
from fer_utils.predict.tracking import FaceTracker

#: Video file extensions handled by prediction (anything OpenCV's FFmpeg backend reads).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
    ".ogv", ".gif", ".mts", ".ts",
)
SMOOTHING_METHODS: tuple[str, ...] = ("ma", "vote", "none")
#: Frame rate assumed when a container does not store one.
DEFAULT_FPS = 25.0
#: Video frames detected and classified together.
BATCH_FRAMES = 8


@dataclass(frozen=True)
class VideoInfo:
    """Frame rate, frame count as stored in the container (may be 0 or approximate), size."""

    fps: float
    frame_count: int
    width: int
    height: int


#: What OpenCV can read frames from: a video file, a camera index or a stream URL.
VideoSource = Union[str, os.PathLike, int]


def source_name(source: VideoSource) -> str:
    """Short name of ``source`` for output files: the file (or URL path) stem, or ``cameraN``."""
    if isinstance(source, int):
        return f"camera{source}"
    return Path(urlparse(str(source)).path if "://" in str(source) else source).stem or "stream"


def open_video(source: VideoSource) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video file, camera index or stream URL; ``VideoReadError`` naming it when OpenCV cannot."""
    if not isinstance(source, int) and "://" not in str(source) and not Path(source).is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if isinstance(source, int) or "://" in str(source):
        capture = cv2.VideoCapture(source)
    else:
        with opencv_name(source) as name:
            capture = cv2.VideoCapture(name)
    if not capture.isOpened():
        capture.release()
        what = "camera" if isinstance(source, int) else "video (unsupported container/codec, or not a video)"
        raise VideoReadError(f"{source}: cannot open as a {what}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(
        fps=fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS,
        frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    return capture, info


def iter_frames(capture: cv2.VideoCapture, limit: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames until the stream ends (or ``limit`` frames); releases ``capture``."""
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    finally:
        capture.release()


T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int = 8) -> Generator[T, None, None]:
    """``items`` produced ahead, up to ``depth`` of them, by a background thread: video decoding
    (OpenCV releases the GIL) overlaps the work on earlier frames on a second core. The source's
    exceptions are raised here; closing the result stops the thread and closes ``items``."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    break
        except Exception as err:  # handed to the consumer
            put(err)
        finally:
            if hasattr(items, "close"):
                items.close()
            put(end)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not end:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def open_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """An OpenCV MPEG-4 Part 2 (mp4v) writer, for made test videos; ``OSError`` when it cannot create ``path``.
    Annotated outputs use :class:`AnnotatedVideoWriter` (H.264)."""
    with opencv_name(path) as name:
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot create the output video (mp4v)")
    return writer


class AnnotatedVideoWriter:
    """Writes BGR frames to an mp4 that browsers play: H.264 (yuv420p) through the ffmpeg that the
    ``imageio-ffmpeg`` wheel carries. Without that package it falls back to OpenCV's MPEG-4 Part 2,
    which many players and browsers refuse; :attr:`codec` says which was written.

    Why ffmpeg and not OpenCV: OpenCV's pip wheels ship no H.264 encoder. yuv420p needs even sides, so
    an odd-sized frame gets one black row or column. ``OSError`` when the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int) -> None:
        self.size = (width + width % 2, height + height % 2)
        try:
            import imageio_ffmpeg
        except ImportError:
            self.codec, self._frames, self._cv = "mpeg4", None, open_writer(path, fps, *self.size)
            return
        self.codec, self._cv = "h264", None
        self._frames = imageio_ffmpeg.write_frames(
            os.fspath(path), self.size, fps=fps, codec="libx264", pix_fmt_in="bgr24", pix_fmt_out="yuv420p",
            macro_block_size=1, quality=None, output_params=["-preset", "veryfast", "-crf", "23"],
            ffmpeg_log_level="error")
        try:
            self._frames.send(None)  # starts ffmpeg
        except (OSError, RuntimeError) as exc:
            raise OSError(f"{path}: cannot create the output video (H.264 through ffmpeg): {exc}") from None

    def write(self, bgr: np.ndarray) -> None:
        """Append one frame (``height x width x 3`` uint8 BGR)."""
        pad_h, pad_w = self.size[1] - bgr.shape[0], self.size[0] - bgr.shape[1]
        if pad_h or pad_w:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT)
        if self._cv is not None:
            self._cv.write(bgr)
        else:
            self._frames.send(np.ascontiguousarray(bgr))

    def release(self) -> None:
        """Finish the file."""
        if self._cv is not None:
            self._cv.release()
        else:
            self._frames.close()


def display_available() -> bool:
    """Whether OpenCV can open a window here (a GUI build and, on Linux, a display)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("fer_utils")
        cv2.destroyWindow("fer_utils")
    except cv2.error:
        return False
    return True


def show_frame(title: str, bgr: np.ndarray) -> bool:
    """Show ``bgr`` in the window ``title``; ``False`` once the user presses q or Esc."""
    cv2.imshow(title, bgr)
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


class TemporalSmoother:
    """Causal smoothing of one face's class probabilities over the last ``window`` frames.

    ``"ma"``: moving average of probabilities, label = its argmax. ``"vote"``: label = most
    frequent per-frame argmax in the window (ties go to the highest mean probability), shown
    probabilities = window mean. ``"none"``: the frame's own probabilities.
    """

    def __init__(self, method: str = "ma", window: int = 5) -> None:
        if method not in SMOOTHING_METHODS:
            raise ValueError(f"smoothing must be one of {SMOOTHING_METHODS}, got {method!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.method = method
        self._history: deque[np.ndarray] = deque(maxlen=1 if method == "none" else window)

    def update(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        """Add one frame's probabilities ``(C,)``; returns (smoothed probabilities, label index)."""
        self._history.append(np.asarray(probs, dtype=np.float64))
        stacked = np.stack(self._history)
        mean = stacked.mean(axis=0)
        if self.method != "vote":
            return mean, int(mean.argmax())
        votes = np.bincount(stacked.argmax(axis=1), minlength=stacked.shape[1])
        tied = np.flatnonzero(votes == votes.max())
        return mean, int(tied[mean[tied].argmax()])


def smooth_probabilities(probs: np.ndarray, method: str = "ma", window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Smooth a ``(T, C)`` sequence frame by frame; returns ((T, C) probabilities, (T,) labels)."""
    smoother = TemporalSmoother(method, window)
    out = [smoother.update(p) for p in np.asarray(probs)]
    if not out:
        return np.zeros((0, np.shape(probs)[-1])), np.zeros(0, np.int64)
    return np.stack([p for p, _ in out]), np.asarray([lab for _, lab in out], dtype=np.int64)


def label_changes(labels: Sequence[int]) -> int:
    """How many times consecutive labels differ."""
    labels = np.asarray(labels)
    return int((labels[1:] != labels[:-1]).sum()) if len(labels) > 1 else 0


def label_segments(labels: Sequence[int], frames: Sequence[int], fps: float, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Runs of one label: ``label``, ``start_frame``, ``end_frame``, ``start_s``, ``end_s``."""
    segments: list[dict[str, Any]] = []
    for lab, frame in zip(labels, frames):
        if segments and segments[-1]["label"] == classes[lab] and segments[-1]["end_frame"] == frame - 1:
            segments[-1]["end_frame"] = int(frame)
        else:
            segments.append({"label": classes[lab], "start_frame": int(frame), "end_frame": int(frame)})
    for seg in segments:
        seg["start_s"] = round(seg["start_frame"] / fps, 3)
        seg["end_s"] = round((seg["end_frame"] + 1) / fps, 3)
    return segments


@dataclass
class FrameResult:
    """One video frame: index, time in seconds, RGB image and its faces."""

    index: int
    time: float
    image: np.ndarray
    faces: list[FaceResult] = field(default_factory=list)


def video_threads(threads: int | None = None, detector: FaceDetector | None = None) -> int:
    """torch threads while a video is analysed: ``threads``, else torch's default (all cores) less the
    threads ``detector`` computes on outside torch (:attr:`FaceDetector.own_threads`), at least one.
    Measured on the idle 2-core CPUs, hikers_video_02.mp4: with MTCNN (torch's threads) two threads
    ran at 8.3-9.25 frames/s against 6.37 for one (Zen 4, 200 frames); with YuNet (one ONNX Runtime
    thread) one torch thread ran at 54-65 frames/s against 40-51 for two (AVX2-only EPYC, 5 alternating
    runs each; the indoor video 35-48 against 33-45); with blazeface-onet and Haar (all cores
    their own) one and two ran alike (28-31 / 27-33 and 7.6-7.9 / 7.3-7.5, 3 runs each)."""
    if threads:
        return threads
    return max(1, torch.get_num_threads() - (detector.own_threads if detector is not None else 0))


def analyse_video(
    source: VideoSource,
    predictor: FacePredictor,
    *,
    detect_every: int = 1,
    smooth: str = "ma",
    window: int = 5,
    batch_frames: int = BATCH_FRAMES,
    limit: int | None = None,
    threads: int | None = None,
) -> tuple[VideoInfo, Iterator[FrameResult]]:
    """Open a video (file, camera or URL: see :func:`open_video`) and return its info and a lazy
    stream of per-frame results; ``batch_frames=1`` handles each frame as soon as it is read.

    Faces are detected on every ``detect_every``-th frame (in batches of up to
    ``batch_frames`` frames) and matched to tracks by :class:`FaceTracker` (motion and
    appearance); frames in between use the tracks' constant-velocity predictions of the last boxes.
    All faces of a batch are classified in one forward pass. Each track's probabilities are
    smoothed with :class:`TemporalSmoother`. Three stages overlap on their own threads: decoding
    (frames read ahead), detection (a batch ahead) and tracking + classification (torch uses
    :func:`video_threads` threads, by default the cores the detector leaves).
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    TemporalSmoother(smooth, window)  # validate before opening the video
    capture, info = open_video(source)
    return info, _video_results(capture, info, predictor, detect_every, smooth, window, batch_frames, limit,
                                video_threads(threads, predictor.detector))


def _video_results(
    capture: cv2.VideoCapture, info: VideoInfo, predictor: FacePredictor, detect_every: int,
    smooth: str, window: int, batch_frames: int, limit: int | None, threads: int,
) -> Iterator[FrameResult]:
    frames = prefetch(iter_frames(capture, limit), 2 * batch_frames)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield from _results(frames, info, predictor, detect_every, smooth, window, batch_frames)
    finally:
        torch.set_num_threads(previous)
        frames.close()  # stops the reading thread and releases the capture


def _detected(
    frames: Iterator[np.ndarray], predictor: FacePredictor, detect_every: int, batch_frames: int,
) -> Iterator[tuple[list[np.ndarray], dict[int, list[Detection]]]]:
    """Batches of up to ``batch_frames`` frames, each with the faces found on its frames due for
    detection (every ``detect_every``-th of the video), keyed by position in the batch."""
    index = 0
    while batch := list(islice(frames, batch_frames)):
        due = [k for k in range(len(batch)) if (index + k) % detect_every == 0]
        yield batch, dict(zip(due, predictor.detector.detect_batch([batch[k] for k in due]))) if due else {}
        index += len(batch)


def _results(
    frames: Iterator[np.ndarray], info: VideoInfo, predictor: FacePredictor, detect_every: int,
    smooth: str, window: int, batch_frames: int,
) -> Iterator[FrameResult]:
    tracker = FaceTracker()
    smoothers: dict[int, TemporalSmoother] = {}
    current: list[tuple[int, Detection]] = []
    classes = predictor.classes
    index = 0
    # Detection runs a batch ahead on its own thread while this one tracks and classifies.
    detected = prefetch(_detected(frames, predictor, detect_every, batch_frames), depth=1)
    try:
        for batch, found in detected:
            placed: list[list[tuple[int, Detection]]] = []
            alive: dict[int, set[int]] = {}  # tracks kept after each detection
            for k, image in enumerate(batch):
                if k in found:
                    current = tracker.update(image, found[k], index + k)
                    alive[k] = tracker.active
                placed.append(current if k in found else tracker.carry(current, index + k))
            classified = predictor.classify_many(batch, [[d for _, d in tracked] for tracked in placed])
            for k, (image, tracked, probabilities) in enumerate(zip(batch, placed, classified)):
                for tid in set(smoothers) - alive.get(k, set(smoothers)):
                    del smoothers[tid]
                faces = []
                height, width = image.shape[:2]
                for (tid, det), probs in zip(tracked, probabilities):
                    shown, lab = smoothers.setdefault(tid, TemporalSmoother(smooth, window)).update(probs)
                    faces.append(FaceResult(det.clipped(width, height), shown, classes[lab], float(shown[lab]), probs,
                                            tid, k in found))
                yield FrameResult(index, index / info.fps, image, faces)
                index += 1
    finally:
        detected.close()  # stops the detecting thread before the frames it reads are closed
