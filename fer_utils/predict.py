"""``python -m fer_utils predict PATH [PATH ...]``: emotions of the faces in photos and videos.

For every photo: an annotated copy and a JSON/CSV of the faces (box, per-class
probabilities, label). For every video: per-frame results with temporal smoothing, an
annotated mp4, a summary JSON and a timeline PNG. Also :func:`benchmark_predict`, the
frames/s of detection + classification on a 640x480 video.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fer_utils.checkpoints import CheckpointMismatchError, load_model
from fer_utils.data.images import IMAGE_EXTENSIONS, read_image
from fer_utils.faces.align import align_face
from fer_utils.faces.detectors import Detection, FaceDetector, create_detector, list_detectors, resolve_device
from fer_utils.faces.draw import draw_faces
from fer_utils.faces.synthetic import paste_faces, textured_background
from fer_utils.video import (
    SMOOTHING_METHODS, VIDEO_EXTENSIONS, IoUTracker, TemporalSmoother, VideoInfo, VideoReadError,
    iter_frames, label_changes, label_segments, open_video, open_writer, plot_timeline,
)

#: The shipped model, looked up in the working directory, then next to the package.
DEFAULT_CHECKPOINT = Path("results") / "best_model.pt"
#: Margin used when a checkpoint does not record one: a square around the detector box
#: (margin 0) frames faces like FER2013's 48x48 crops.
DEFAULT_MARGIN = 0.0
#: Name of the per-run summary written into the output folder.
RUN_SUMMARY = "predict_run.json"


def default_checkpoint() -> Path:
    """``results/best_model.pt`` (working directory first, then the repository of the package)."""
    candidates = [Path.cwd() / DEFAULT_CHECKPOINT, Path(__file__).resolve().parents[1] / DEFAULT_CHECKPOINT]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no trained model: {DEFAULT_CHECKPOINT} does not exist; train one "
        f"(python -m fer_utils train ...) and copy its best checkpoint there, or pass --checkpoint PATH"
    )


@dataclass
class FaceResult:
    """One face: detection, shown probabilities (smoothed in videos), label and its probability."""

    detection: Detection
    probabilities: np.ndarray
    label: str
    probability: float
    raw_probabilities: np.ndarray | None = None  # videos: this frame's own probabilities
    track: int | None = None
    detected: bool = True  # videos: False when the box was carried over from an earlier frame

    def to_dict(self, classes: Sequence[str]) -> dict[str, Any]:
        """JSON-ready record."""
        out: dict[str, Any] = {}
        if self.track is not None:
            out.update(track=self.track, detected=self.detected)
        out.update(self.detection.to_dict())
        out.update(label=self.label, probability=round(self.probability, 4),
                   probabilities={c: round(float(p), 4) for c, p in zip(classes, self.probabilities)})
        if self.raw_probabilities is not None:
            raw = self.raw_probabilities
            out.update(raw_label=classes[int(raw.argmax())],
                       raw_probabilities={c: round(float(p), 4) for c, p in zip(classes, raw)})
        return out


class FacePredictor:
    """Detector + aligned crops + classifier, preprocessing faces as the checkpoint says."""

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        preprocessing: dict[str, Any],
        detector: FaceDetector,
        device: str | torch.device = "cpu",
        margin: float | None = None,
    ) -> None:
        self.model = model.eval()
        self.classes = tuple(classes)
        self.size = int(preprocessing.get("size", 48))
        self.channels = int(preprocessing.get("channels", 1))
        if self.channels not in (1, 3):
            raise ValueError(f"checkpoint preprocessing has {self.channels} channels; expected 1 or 3")
        self.margin = float(preprocessing.get("margin", DEFAULT_MARGIN) if margin is None else margin)
        self.mean = preprocessing.get("mean")
        self.std = preprocessing.get("std")
        self.detector = detector
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike | None = None,
        *,
        detector: str | FaceDetector = "mtcnn",
        device: str | torch.device | None = None,
        margin: float | None = None,
        detector_kw: dict[str, Any] | None = None,
    ) -> "FacePredictor":
        """Load ``checkpoint`` (default :func:`default_checkpoint`) and build the detector."""
        from fer_utils.models import model_entry

        device = resolve_device(device)
        path = Path(checkpoint) if checkpoint else default_checkpoint()
        model, ckpt = load_model(path, device)
        if model_entry(ckpt["model_name"]).input_kind != "image":
            raise CheckpointMismatchError(
                f"{path}: model {ckpt['model_name']!r} takes clips; predict needs an image model"
            )
        if not isinstance(detector, FaceDetector):
            detector = create_detector(detector, device=device, **(detector_kw or {}))
        return cls(model, ckpt["classes"], ckpt.get("preprocessing", {}), detector, device, margin)

    def crops(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Aligned uint8 crops ``(N, S, S)`` (or ``(N, S, S, 3)`` for RGB models)."""
        shape = (0, self.size, self.size) + ((3,) if self.channels == 3 else ())
        if not detections:
            return np.zeros(shape, np.uint8)
        return np.stack([align_face(image, d, size=self.size, margin=self.margin, grey=self.channels == 1)
                         for d in detections])

    @torch.inference_mode()
    def classify(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Class probabilities ``(N, C)`` of the faces ``detections`` in ``image``."""
        crops = self.crops(image, detections)
        if not len(crops):
            return np.zeros((0, len(self.classes)), np.float32)
        x = torch.from_numpy(crops).to(self.device).float().div_(255.0)
        x = x.unsqueeze(1) if self.channels == 1 else x.permute(0, 3, 1, 2)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=self.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=self.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return torch.softmax(self.model(x).float(), dim=1).cpu().numpy()

    def predict_image(self, image: np.ndarray) -> list[FaceResult]:
        """All faces of an RGB image, most confident detection first."""
        detections = self.detector.detect(image)
        return [
            FaceResult(d, p, self.classes[int(p.argmax())], float(p.max()))
            for d, p in zip(detections, self.classify(image, detections))
        ]


@dataclass
class FrameResult:
    """One video frame: index, time in seconds, RGB image and its faces."""

    index: int
    time: float
    image: np.ndarray
    faces: list[FaceResult] = field(default_factory=list)


def analyse_video(
    path: str | os.PathLike,
    predictor: FacePredictor,
    *,
    detect_every: int = 1,
    smooth: str = "ma",
    window: int = 5,
    batch_frames: int = 8,
    limit: int | None = None,
) -> tuple[VideoInfo, Iterator[FrameResult]]:
    """Open a video and return its info and a lazy stream of per-frame results.

    Faces are detected on every ``detect_every``-th frame (in batches of up to
    ``batch_frames`` frames) and matched to tracks by IoU; frames in between reuse the last
    boxes. Each track's probabilities are smoothed with :class:`TemporalSmoother`.
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    TemporalSmoother(smooth, window)  # validate before opening the video
    capture, info = open_video(path)
    return info, _video_results(capture, info, predictor, detect_every, smooth, window, batch_frames, limit)


def _video_results(
    capture: cv2.VideoCapture, info: VideoInfo, predictor: FacePredictor, detect_every: int,
    smooth: str, window: int, batch_frames: int, limit: int | None,
) -> Iterator[FrameResult]:
    tracker = IoUTracker()
    smoothers: dict[int, TemporalSmoother] = {}
    current: list[tuple[int, Detection]] = []
    classes = predictor.classes
    frames = iter_frames(capture, limit)
    index = 0
    while batch := list(islice(frames, batch_frames)):
        due = [k for k in range(len(batch)) if (index + k) % detect_every == 0]
        found = dict(zip(due, predictor.detector.detect_batch([batch[k] for k in due]))) if due else {}
        for k, image in enumerate(batch):
            if k in found:
                current = tracker.update(found[k])
                for tid in set(smoothers) - tracker.active:
                    del smoothers[tid]
            faces = []
            for (tid, det), probs in zip(current, predictor.classify(image, [d for _, d in current])):
                shown, lab = smoothers.setdefault(tid, TemporalSmoother(smooth, window)).update(probs)
                faces.append(FaceResult(det, shown, classes[lab], float(shown[lab]), probs, tid, k in found))
            yield FrameResult(index, index / info.fps, image, faces)
            index += 1


# ----------------------------------------------------------------------------- outputs


@dataclass
class Outcome:
    """What happened to one input: status ``ok`` / ``no_face`` / ``error``; ``faces`` counts
    faces in a photo, face-frames in a video."""

    path: str
    kind: str
    status: str
    message: str
    faces: int = 0
    outputs: list[str] = field(default_factory=list)


def input_kind(path: Path) -> str | None:
    """``"image"``, ``"video"`` or ``None`` (unsupported) from the file extension."""
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _real(path: Path) -> Path:
    """The absolute path with symlinks resolved; unlike ``Path.resolve`` never raises on a symlink loop."""
    return Path(os.path.realpath(path))


def expand_inputs(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[Path]:
    """Files as given; folders replaced by the images and videos inside them (sorted; broken
    symlinks kept, to be reported), leaving out those under ``exclude`` (the output folder)."""
    skip = _real(Path(exclude)) if exclude is not None else None
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if (f.is_file() or f.is_symlink()) and input_kind(f)
                              and (skip is None or skip not in _real(f).parents)))
        else:
            out.append(p)
    return out


class _Namer:
    """Output file names in one folder: unique per input stem, never an input file."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path]) -> None:
        self.out_dir = out_dir
        self.inputs = {_real(p) for p in inputs}
        self.used = {Path(RUN_SUMMARY).stem}

    def stem(self, path: Path) -> str:
        stem, n = path.stem, 1
        while stem in self.used:
            stem, n = f"{path.stem}_{n}", n + 1
        self.used.add(stem)
        return stem

    def path(self, name: str) -> Path:
        target = self.out_dir / name
        if _real(target) in self.inputs:
            raise ValueError(f"refusing to overwrite input file {target}")
        return target


def _write_table(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _csv_row(result: FaceResult, classes: Sequence[str], **extra: Any) -> dict[str, Any]:
    x1, y1, x2, y2 = result.detection.box
    row = {**extra, "x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1), "y2": round(y2, 1),
           "score": round(result.detection.score, 4), "label": result.label, "probability": round(result.probability, 4)}
    row.update({f"p_{c}": round(float(p), 4) for c, p in zip(classes, result.probabilities)})
    if result.raw_probabilities is not None:
        row["raw_label"] = classes[int(result.raw_probabilities.argmax())]
        row.update({f"raw_p_{c}": round(float(p), 4) for c, p in zip(classes, result.raw_probabilities)})
    return row


def _save_rgb(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write the annotated image")


def _annotate(image: np.ndarray, faces: Sequence[FaceResult]) -> np.ndarray:
    return draw_faces(image, [(f.detection.box, f.label, f.probability) for f in faces])


def process_image(path: Path, predictor: FacePredictor, namer: _Namer, fmt: str = "json") -> Outcome:
    """Predict the faces of one photo and write its annotated copy and results."""
    image = read_image(path)
    faces = predictor.predict_image(image)
    if not faces:
        return Outcome(str(path), "image", "no_face", f"{path}: no face found")
    stem = namer.stem(path)
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
    annotated = namer.path(f"{stem}_annotated{suffix}")
    results = namer.path(f"{stem}.{fmt}")
    classes = predictor.classes
    _save_rgb(annotated, _annotate(image, faces))
    if fmt == "json":
        payload = {"input": str(path), "kind": "image", "width": image.shape[1], "height": image.shape[0],
                   "classes": list(classes), "faces": [f.to_dict(classes) for f in faces]}
        results.write_text(json.dumps(payload, indent=2))
    else:
        rows = [_csv_row(f, classes, input=str(path), face=i) for i, f in enumerate(faces)]
        _write_table(results, rows, list(rows[0]))
    labels = ", ".join(f"{f.label} {f.probability:.2f}" for f in faces)
    return Outcome(str(path), "image", "ok", f"{path}: {len(faces)} face(s): {labels}", len(faces),
                   [str(annotated), str(results)])


def video_summary(
    frames: Sequence[FrameResult], classes: Sequence[str], info: VideoInfo,
) -> tuple[dict[str, Any], int | None]:
    """Per-video summary over all tracked faces, and the id of the longest (primary) track."""
    face_frames = [f for fr in frames for f in fr.faces]
    counts = {c: 0 for c in classes}
    for f in face_frames:
        counts[f.label] += 1
    tracks: dict[int, list[tuple[int, FaceResult]]] = {}
    for fr in frames:
        for f in fr.faces:
            tracks.setdefault(f.track, []).append((fr.index, f))
    primary = max(tracks, key=lambda t: len(tracks[t])) if tracks else None
    summary: dict[str, Any] = {
        "frames": len(frames), "fps": round(info.fps, 3), "duration_s": round(len(frames) / info.fps, 3),
        "frames_with_face": sum(bool(fr.faces) for fr in frames),
        "dominant_emotion": max(counts, key=counts.get) if face_frames else None,
        "label_counts": counts,
        "label_fractions": {c: round(n / len(face_frames), 4) for c, n in counts.items()} if face_frames else None,
        "mean_probabilities": (
            {c: round(float(p), 4) for c, p in zip(classes, np.mean([f.raw_probabilities for f in face_frames], 0))}
            if face_frames else None
        ),
        "primary_track": primary,
        "tracks": {},
    }
    for tid, items in tracks.items():
        labels = [classes.index(f.label) for _, f in items]
        raw = [int(f.raw_probabilities.argmax()) for _, f in items]
        track_counts = np.bincount(labels, minlength=len(classes))
        summary["tracks"][str(tid)] = {
            "frames": len(items), "first_frame": items[0][0], "last_frame": items[-1][0],
            "dominant_emotion": classes[int(track_counts.argmax())],
            "label_changes": label_changes(labels), "raw_label_changes": label_changes(raw),
            "segments": label_segments(labels, [i for i, _ in items], info.fps, classes),
        }
    return summary, primary


def process_video(
    path: Path,
    predictor: FacePredictor,
    namer: _Namer,
    fmt: str = "json",
    *,
    detect_every: int = 1,
    smooth: str = "ma",
    window: int = 5,
    progress: bool = True,
) -> Outcome:
    """Predict every frame of a video; write annotated mp4, per-frame results, summary, timeline."""
    info, stream = analyse_video(path, predictor, detect_every=detect_every, smooth=smooth, window=window)
    stem = namer.stem(path)
    video_out = namer.path(f"{stem}_annotated.mp4")
    results_out = namer.path(f"{stem}_frames.{fmt}")
    summary_out = namer.path(f"{stem}_summary.json")
    timeline_out = namer.path(f"{stem}_timeline.png")
    classes = predictor.classes
    frames: list[FrameResult] = []
    writer = None
    try:
        for fr in tqdm(stream, total=info.frame_count or None, desc=path.name, unit="frame",
                       leave=False, disable=not progress):
            if writer is None:
                writer = open_writer(video_out, info.fps, fr.image.shape[1], fr.image.shape[0])
            writer.write(cv2.cvtColor(_annotate(fr.image, fr.faces), cv2.COLOR_RGB2BGR))
            frames.append(FrameResult(fr.index, fr.time, np.empty(0, np.uint8), fr.faces))
    finally:
        if writer is not None:
            writer.release()
    if not frames:
        raise VideoReadError(f"{path}: no frame could be read (empty or damaged video)")

    if fmt == "json":
        payload = {"input": str(path), "kind": "video", "fps": info.fps, "width": info.width,
                   "height": info.height, "classes": list(classes), "detect_every": detect_every,
                   "smoothing": {"method": smooth, "window": window},
                   "frames": [{"frame": fr.index, "time": round(fr.time, 4),
                               "faces": [f.to_dict(classes) for f in fr.faces]} for fr in frames]}
        results_out.write_text(json.dumps(payload))
    else:
        rows = [_csv_row(f, classes, frame=fr.index, time=round(fr.time, 4), track=f.track, detected=f.detected)
                for fr in frames for f in fr.faces]
        columns = ["frame", "time", "track", "detected", "x1", "y1", "x2", "y2", "score", "label", "probability",
                   *(f"p_{c}" for c in classes), "raw_label", *(f"raw_p_{c}" for c in classes)]
        _write_table(results_out, rows, columns)

    summary, primary = video_summary(frames, classes, info)
    summary = {"input": str(path), "detect_every": detect_every,
               "smoothing": {"method": smooth, "window": window}, **summary}
    summary_out.write_text(json.dumps(summary, indent=2))
    outputs = [str(video_out), str(results_out), str(summary_out)]
    n_faces = sum(len(fr.faces) for fr in frames)
    if primary is None:
        outcome = Outcome(str(path), "video", "no_face", f"{path}: no face found in any of {len(frames)} frames",
                          0, outputs)
    else:
        track = [(fr.time, f) for fr in frames for f in fr.faces if f.track == primary]
        plot_timeline(timeline_out, np.array([t for t, _ in track]), np.stack([f.probabilities for _, f in track]),
                      np.array([classes.index(f.label) for _, f in track]), classes,
                      title=f"{path.name}: face track {primary} ({smooth} smoothing, window {window})")
        outputs.append(str(timeline_out))
        message = (f"{path}: {len(frames)} frames, faces in {summary['frames_with_face']}, "
                   f"dominant emotion {summary['dominant_emotion']}")
        outcome = Outcome(str(path), "video", "ok", message, n_faces, outputs)
    if len(frames) < info.frame_count:  # the header promises more frames than could be decoded
        outcome = replace(outcome, status="error", message=(
            f"{path}: truncated or damaged video: frame {len(frames)} of the {info.frame_count} in its header "
            f"cannot be decoded; results cover frames 0-{len(frames) - 1} only"))
    return outcome


# ----------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``predict``."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="photos (jpg/png/bmp/webp/tif...), videos (mp4/avi/mov/mkv...) or folders of them")
    parser.add_argument("--out", default="predictions", help="output folder (default predictions/)")
    parser.add_argument("--checkpoint", help=f"model checkpoint (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--format", default="json", choices=["json", "csv"], help="results file format")
    parser.add_argument("--detector", default="mtcnn", choices=list_detectors())
    parser.add_argument("--cascade", help="cascade XML for --detector lbp (or a custom Haar cascade)")
    parser.add_argument("--min-face-size", type=int, help="smallest face in pixels (MTCNN: 20, cascades: 30)")
    parser.add_argument("--margin", type=float,
                        help=f"fraction of the face box added on each side (default: the checkpoint's, else {DEFAULT_MARGIN})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: CUDA when available)")
    parser.add_argument("--smooth", default="ma", choices=SMOOTHING_METHODS,
                        help="video smoothing: moving average of probabilities, windowed vote, or none")
    parser.add_argument("--window", type=int, default=5, help="smoothing window in frames")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="videos: detect faces every N frames and reuse the boxes in between")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for videos")


def run(args: argparse.Namespace) -> int:
    """Predict every input; exit status 1 only when no input could be processed (2: usage)."""
    out_dir = Path(args.out)
    inputs = expand_inputs(args.paths, exclude=out_dir)
    if _real(out_dir) in {_real(p) for p in inputs} or out_dir.is_file():
        print(f"predict: --out {out_dir} is a file (or one of the inputs); it must be a folder")
        return 2
    if args.detect_every < 1 or args.window < 1:
        print("predict: --detect-every and --window must be >= 1")
        return 2
    detector_kw: dict[str, Any] = {}
    if args.cascade:
        detector_kw["cascade"] = args.cascade
    if args.min_face_size:
        detector_kw["min_face_size" if args.detector == "mtcnn" else "min_size"] = args.min_face_size
    try:
        predictor = FacePredictor.from_checkpoint(
            args.checkpoint, detector=args.detector, device=args.device, margin=args.margin,
            detector_kw=detector_kw,
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        print(f"predict: {err}")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    namer = _Namer(out_dir, inputs)
    outcomes = []
    for path in inputs:
        kind = input_kind(path)
        try:
            if not path.is_file():
                link = " (broken or looping symbolic link)" if path.is_symlink() else ""
                raise FileNotFoundError(f"{path}: no such file{link}")
            if kind is None:
                raise ValueError(
                    f"{path}: unsupported format {path.suffix or '(no extension)'}; photos: "
                    f"{' '.join(IMAGE_EXTENSIONS)}; videos: {' '.join(VIDEO_EXTENSIONS)}"
                )
            if kind == "image":
                outcome = process_image(path, predictor, namer, args.format)
            else:
                outcome = process_video(path, predictor, namer, args.format, detect_every=args.detect_every,
                                        smooth=args.smooth, window=args.window, progress=not args.no_progress)
        except (OSError, ValueError) as err:
            outcome = Outcome(str(path), kind or "unknown", "error", str(err))
        except Exception as err:  # one bad input never stops the batch
            outcome = Outcome(str(path), kind or "unknown", "error", f"{path}: {type(err).__name__}: {err}")
        outcomes.append(outcome)
        print(f"{outcome.status.replace('_', ' ')}: {outcome.message}")

    ok = [o for o in outcomes if o.status == "ok"]
    summary = {
        "checkpoint": str(args.checkpoint or default_checkpoint()), "detector": predictor.detector.name,
        "device": str(predictor.device), "inputs": len(outcomes), "processed": len(ok),
        "no_face": sum(o.status == "no_face" for o in outcomes),
        "errors": sum(o.status == "error" for o in outcomes),
        "faces": sum(o.faces for o in outcomes),
        "results": [o.__dict__ for o in outcomes],
    }
    (out_dir / RUN_SUMMARY).write_text(json.dumps(summary, indent=2))
    print(f"predict: {len(outcomes)} input(s): {len(ok)} processed ({summary['faces']} faces), "
          f"{summary['no_face']} without a face, {summary['errors']} failed; results in {out_dir}/")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- benchmark

#: FER2013 rows (happy/neutral, frontal) that MTCNN and Haar find when pasted at 160x160.
BENCHMARK_FACES: tuple[int, ...] = (8548, 23746, 23775)


def _benchmark_faces() -> tuple[list[np.ndarray], str]:
    """FER2013 faces when ``$FER_DATA_DIR`` holds the CSV, else one drawn face."""
    from fer_utils.data import DatasetError, load_dataset

    try:
        data = load_dataset("fer2013")
    except (DatasetError, OSError):
        data = None
    if data is not None and len(data) > max(BENCHMARK_FACES):
        return [data.images[i] for i in BENCHMARK_FACES], "FER2013"
    face = np.full((48, 48), 170, np.uint8)
    cv2.ellipse(face, (24, 26), (17, 22), 0, 0, 360, 200, -1)
    for x in (17, 31):
        cv2.ellipse(face, (x, 21), (4, 2), 0, 0, 360, 40, -1)
    cv2.line(face, (24, 24), (23, 31), 120, 1)
    cv2.ellipse(face, (24, 36), (7, 3), 0, 0, 180, 60, 2)
    return [face], "drawn face (no FER2013 under $FER_DATA_DIR)"


def write_synthetic_video(
    path: str | os.PathLike, faces: Sequence[np.ndarray], frames: int = 100,
    size: tuple[int, int] = (640, 480), fps: float = 25.0, face_size: int = 160,
) -> Path:
    """An mp4v video of ``faces`` (uint8 greyscale) upscaled and drifting over a textured
    background, switching face every second."""
    width, height = size
    background = textured_background(height, width)
    writer = open_writer(path, fps, width, height)
    try:
        for t in range(frames):
            x = int((width - face_size) / 2 + (width - face_size) / 3 * math.sin(2 * math.pi * t / 75))
            y = int((height - face_size) / 2 + (height - face_size) / 4 * math.cos(2 * math.pi * t / 60))
            frame = paste_faces([faces[int(t // fps) % len(faces)]], [(x, y, x + face_size, y + face_size)],
                                background=background)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    return Path(path)


def benchmark_predict(
    video_path: str | os.PathLike | None = None,
    frames: int = 100,
    detect_every: int = 1,
    device: str | None = None,
    *,
    detector: str = "mtcnn",
    checkpoint: str | os.PathLike | None = None,
    model: str = "simple_cnn",
    detector_kw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Frames/s of the video pipeline (decode, detect, align, classify, smooth; no writing).

    Without ``video_path`` a synthetic 640x480 video of FER2013 faces is made. The classifier
    is ``checkpoint``, else the shipped model when present, else an untrained ``model``
    (speed does not depend on the weights).
    """
    dev = resolve_device(device)
    det = create_detector(detector, device=dev, **(detector_kw or {}))
    try:
        predictor = FacePredictor.from_checkpoint(checkpoint, detector=det, device=dev)
        classifier = str(checkpoint or default_checkpoint())
    except FileNotFoundError:
        if checkpoint:
            raise
        from fer_utils.labels import FER2013_CODES
        from fer_utils.models import create_model

        net = create_model(model, num_classes=7).to(dev)
        predictor = FacePredictor(net, [FER2013_CODES[i] for i in range(7)], {}, det, dev)
        classifier = f"{model} (untrained)"
    with tempfile.TemporaryDirectory() as tmp:
        source = str(video_path) if video_path else ""
        if not video_path:
            faces, origin = _benchmark_faces()
            video_path = write_synthetic_video(Path(tmp) / "synthetic.mp4", faces, frames)
            source = f"synthetic 640x480, {origin}"
        info, stream = analyse_video(video_path, predictor, detect_every=detect_every, limit=frames)
        warmup = np.zeros((info.height or 480, info.width or 640, 3), np.uint8)
        predictor.classify(warmup, predictor.detector.detect(warmup) or [Detection((0, 0, 48, 48), 1.0)])
        start = time.perf_counter()
        n = with_face = 0
        for fr in stream:
            n += 1
            with_face += bool(fr.faces)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "video": source, "width": info.width, "height": info.height, "frames": n,
        "frames_with_face": with_face, "detector": det.name, "detect_every": detect_every,
        "classifier": classifier, "device": str(dev), "threads": torch.get_num_threads(),
        "seconds": round(seconds, 3), "fps": round(n / seconds, 2) if seconds > 0 else None,
    }
