"""Files ``predict`` writes per input: annotated copies, JSON/CSV results, video summaries, timelines."""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fer_utils.data.images import IMAGE_EXTENSIONS, read_image
from fer_utils.errors import VideoReadError
from fer_utils.faces.draw import draw_faces
from fer_utils.predict.predictor import FacePredictor, FaceResult
from fer_utils.predict.video import (
    BATCH_FRAMES, VIDEO_EXTENSIONS, FrameResult, VideoInfo, VideoSource, analyse_video, display_available,
    AnnotatedVideoWriter, label_changes, label_segments, show_frame, source_name,
)

#: Name of the per-run summary written into the output folder.
RUN_SUMMARY = "predict_run.json"
#: A video's or a track's mean (smoothed) top probability under which its summary says
#: :data:`NO_CLEAR_EXPRESSION` instead of a label. On the FER2013 hold-out (validation, not test) the
#: shipped model's faces under 0.4 (10% of them) are right 38% of the time, those above 71%.
CLEAR_EXPRESSION_CONFIDENCE = 0.4
NO_CLEAR_EXPRESSION = "no clear expression"
#: Meaning of every face box (JSON ``box``, CSV ``x1, y1, x2, y2``), stated in the JSON outputs.
BOX_FORMAT = "x1, y1, x2, y2: pixels from the image's top-left corner (x right, y down), clipped to the image"


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


def real_path(path: Path) -> Path:
    """The absolute path with symlinks resolved; unlike ``Path.resolve`` never raises on a symlink loop."""
    return Path(os.path.realpath(path))


def expand_inputs(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None
                  ) -> tuple[list[Path], list[Path]]:
    """Files as given; folders replaced by the images and videos inside them (sorted; broken
    symlinks kept, to be reported), leaving out those under ``exclude`` (the output folder).
    Returns them and the other files found in the folders (skipped: not a photo or video)."""
    skip = real_path(Path(exclude)) if exclude is not None else None
    out: list[Path] = []
    others: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        for f in sorted(p.rglob("*")):
            if not (f.is_file() or f.is_symlink()) or (skip is not None and skip in real_path(f).parents):
                continue
            (out if input_kind(f) else others).append(f)
    return out, others


class OutputNamer:
    """Output file names in one folder: unique per input stem, valid UTF-8 (input names may hold any
    bytes), never an input file, never a file this run did not write unless ``overwrite``."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path], overwrite: bool = False) -> None:
        self.out_dir = out_dir
        self.inputs = {real_path(p) for p in inputs}
        self.overwrite = overwrite
        self.used = {Path(RUN_SUMMARY).stem}

    def stem(self, name: str) -> str:
        name = os.fsencode(name).decode("utf-8", "replace").replace("\ufffd", "_")
        stem, n = name, 1
        while stem in self.used:
            stem, n = f"{name}_{n}", n + 1
        self.used.add(stem)
        return stem

    def path(self, name: str) -> Path:
        target = self.out_dir / name
        if real_path(target) in self.inputs:
            raise ValueError(f"refusing to overwrite input file {target}")
        if target.exists() and not self.overwrite:
            raise ValueError(f"refusing to overwrite {target}, which this run did not write (--overwrite replaces it)")
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
    """Encoded by OpenCV, written by Python (OpenCV's own writer crashes on names that are not UTF-8)."""
    encoded, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise OSError(f"{path}: cannot encode the annotated image as {path.suffix}")
    path.write_bytes(data.tobytes())


def _annotate(image: np.ndarray, faces: Sequence[FaceResult]) -> np.ndarray:
    return draw_faces(image, [(f.detection.box, f.label, f.probability) for f in faces], [f.track for f in faces])


def track_series(
    frames: Sequence[FrameResult], classes: Sequence[str],
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{track id: (times, (T, C) shown probabilities, (T,) label indices)}`` of the faces in ``frames``."""
    return {tid: (np.array([fr.time for fr, _ in track]), np.stack([f.probabilities for _, f in track]),
                  np.array([classes.index(f.label) for _, f in track])) for tid, track in group_tracks(frames).items()}


def group_tracks(frames: Sequence[FrameResult]) -> dict[int, list[tuple[FrameResult, FaceResult]]]:
    """The (frame, face) pairs of each track id, in frame order."""
    tracks: dict[int, list[tuple[FrameResult, FaceResult]]] = {}
    for fr in frames:
        for f in fr.faces:
            tracks.setdefault(f.track, []).append((fr, f))
    return tracks


def process_image(path: Path, predictor: FacePredictor, namer: OutputNamer, fmt: str = "json") -> Outcome:
    """Predict the faces of one photo and write its annotated copy and results."""
    image = read_image(path)
    faces = predictor.predict_image(image)
    if not faces:
        return Outcome(str(path), "image", "no_face", f"{path}: no face found")
    stem = namer.stem(path.stem)
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
    annotated = namer.path(f"{stem}_annotated{suffix}")
    results = namer.path(f"{stem}.{fmt}")
    classes = predictor.classes
    _save_rgb(annotated, _annotate(image, faces))
    if fmt == "json":
        payload = {"input": str(path), "kind": "image", "width": image.shape[1], "height": image.shape[0],
                   "box_format": BOX_FORMAT, "classes": list(classes), "faces": [f.to_dict(classes) for f in faces]}
        results.write_text(json.dumps(payload, indent=2))
    else:
        rows = [_csv_row(f, classes, input=str(path), face=i) for i, f in enumerate(faces)]
        _write_table(results, rows, list(rows[0]))
    labels = ", ".join(f"{f.label} {f.probability:.2f}" for f in faces)
    return Outcome(str(path), "image", "ok", f"{path}: {len(faces)} face(s): {labels}", len(faces),
                   [str(annotated), str(results)])


def _dominant(counts: dict[str, int], mean_confidence: float | None) -> str | None:
    """The most frequent label, :data:`NO_CLEAR_EXPRESSION` when the mean confidence is under
    :data:`CLEAR_EXPRESSION_CONFIDENCE`, None without faces."""
    if mean_confidence is None:
        return None
    if mean_confidence < CLEAR_EXPRESSION_CONFIDENCE:
        return NO_CLEAR_EXPRESSION
    return max(counts, key=counts.get)


def video_summary(
    frames: Sequence[FrameResult], classes: Sequence[str], info: VideoInfo,
) -> tuple[dict[str, Any], int | None]:
    """Per-video summary over all tracked faces, and the id of the longest (primary) track."""
    face_frames = [f for fr in frames for f in fr.faces]
    confidence = float(np.mean([f.probability for f in face_frames])) if face_frames else None
    counts = {c: 0 for c in classes}
    for f in face_frames:
        counts[f.label] += 1
    tracks = group_tracks(frames)
    primary = max(tracks, key=lambda t: len(tracks[t])) if tracks else None
    summary: dict[str, Any] = {
        "frames": len(frames), "fps": round(info.fps, 3), "duration_s": round(len(frames) / info.fps, 3),
        "frames_with_face": sum(bool(fr.faces) for fr in frames),
        "dominant_emotion": _dominant(counts, confidence),
        "mean_confidence": None if confidence is None else round(confidence, 4),
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
        track_confidence = float(np.mean([f.probability for _, f in items]))
        track_counts = np.bincount(labels, minlength=len(classes))
        summary["tracks"][str(tid)] = {
            "frames": len(items), "first_frame": items[0][0].index, "last_frame": items[-1][0].index,
            "dominant_emotion": _dominant(dict(zip(classes, track_counts)), track_confidence),
            "mean_confidence": round(track_confidence, 4),
            "label_changes": label_changes(labels), "raw_label_changes": label_changes(raw),
            "segments": label_segments(labels, [fr.index for fr, _ in items], info.fps, classes),
        }
    return summary, primary


def process_video(
    source: VideoSource,
    predictor: FacePredictor,
    namer: OutputNamer,
    fmt: str = "json",
    *,
    detect_every: int = 1,
    smooth: str = "ma",
    window: int = 5,
    progress: bool = True,
    live: bool = False,
    threads: int | None = None,
) -> Outcome:
    """Predict every frame of a video; write annotated mp4, per-frame results, summary, timeline.

    ``live`` (cameras, streams): each frame is handled as it arrives, written at once and shown
    when a display exists; q/Esc in the window or Ctrl-C ends the stream and the results are written.
    """
    info, stream = analyse_video(source, predictor, detect_every=detect_every, smooth=smooth, window=window,
                                 batch_frames=1 if live else BATCH_FRAMES, threads=threads)
    name = source_name(source)
    stem = namer.stem(name)
    video_out = namer.path(f"{stem}_annotated.mp4")
    results_out = namer.path(f"{stem}_frames.{fmt}")
    summary_out = namer.path(f"{stem}_summary.json")
    timeline_out = namer.path(f"{stem}_timeline.png")
    classes = predictor.classes
    frames, codec = _annotate_frames(stream, video_out, info, source, stem, live, progress)
    if not frames:
        raise VideoReadError(f"{source}: no frame could be read (empty or damaged video)")

    _write_frame_results(results_out, fmt, source, info, classes, frames, detect_every, smooth, window)
    summary, primary = video_summary(frames, classes, info)
    truncated = not live and len(frames) < info.frame_count  # the header promises more frames than were decoded
    summary = {"input": str(source), "detect_every": detect_every,
               "smoothing": {"method": smooth, "window": window}, "partial": truncated,
               "frames_decoded": len(frames), "frames_in_header": info.frame_count, "annotated_video_codec": codec,
               **summary}
    summary_out.write_text(json.dumps(summary, indent=2))
    outputs = [str(video_out), str(results_out), str(summary_out)]
    n_faces = sum(len(fr.faces) for fr in frames)
    if primary is None:
        outcome = Outcome(str(source), "video", "no_face", f"{source}: no face found in any of {len(frames)} frames",
                          0, outputs)
    else:
        from fer_utils.plots.timeline import plot_timeline  # matplotlib only for videos: photos start faster

        plot_timeline(track_series(frames, classes), classes, timeline_out,
                      title=f"{stem}: emotions per face track ({smooth} smoothing, window {window})")
        outputs.append(str(timeline_out))
        message = (f"{source}: {len(frames)} frames, faces in {summary['frames_with_face']}, "
                   f"dominant emotion {summary['dominant_emotion']}"
                   + ("; annotated video in MPEG-4 Part 2, which many browsers do not play (install imageio-ffmpeg "
                      "for H.264)" if codec == "mpeg4" else ""))
        outcome = Outcome(str(source), "video", "ok", message, n_faces, outputs)
    if truncated:
        outcome = replace(outcome, status="error", message=(
            f"{source}: truncated or damaged video: frame {len(frames)} of the {info.frame_count} in its header "
            f"cannot be decoded; results cover frames 0-{len(frames) - 1} only"))
    return outcome


def _annotate_frames(stream: Generator[FrameResult, None, None], video_out: Path, info: VideoInfo, source: VideoSource, stem: str,
                     live: bool, progress: bool) -> tuple[list[FrameResult], str | None]:
    """Write each analysed frame, annotated, to ``video_out`` (and show it live when a display exists);
    the frames' results and the video's codec. A live source ends on q/Esc or Ctrl-C; a file's Ctrl-C
    propagates."""
    frames: list[FrameResult] = []
    writer = None
    show = live and display_available()
    try:
        for fr in tqdm(stream, total=None if live else info.frame_count or None, desc=stem, unit="frame",
                       leave=False, disable=not progress):
            if writer is None:
                writer = AnnotatedVideoWriter(video_out, info.fps, fr.image.shape[1], fr.image.shape[0])
            annotated = cv2.cvtColor(_annotate(fr.image, fr.faces), cv2.COLOR_RGB2BGR)
            writer.write(annotated)
            frames.append(FrameResult(fr.index, fr.time, np.empty(0, np.uint8), fr.faces))
            if show and not show_frame(f"predict: {source}", annotated):
                break
    except KeyboardInterrupt:
        if not live:
            raise
    finally:
        stream.close()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    return frames, None if writer is None else writer.codec


def _write_frame_results(path: Path, fmt: str, source: VideoSource, info: VideoInfo, classes: Sequence[str],
                         frames: list[FrameResult], detect_every: int, smooth: str, window: int) -> None:
    """The per-frame results file: JSON (settings and every frame's faces) or CSV (one row per face)."""
    if fmt == "json":
        payload = {"input": str(source), "kind": "video", "fps": round(info.fps, 3), "width": info.width,
                   "height": info.height, "box_format": BOX_FORMAT, "classes": list(classes),
                   "detect_every": detect_every,
                   "smoothing": {"method": smooth, "window": window},
                   "frames": [{"frame": fr.index, "time": round(fr.time, 4),
                               "faces": [f.to_dict(classes) for f in fr.faces]} for fr in frames]}
        path.write_text(json.dumps(payload))
    else:
        rows = [_csv_row(f, classes, frame=fr.index, time=round(fr.time, 4), track=f.track, detected=f.detected)
                for fr in frames for f in fr.faces]
        columns = ["frame", "time", "track", "detected", "x1", "y1", "x2", "y2", "score", "label", "probability",
                   *(f"p_{c}" for c in classes), "raw_label", *(f"raw_p_{c}" for c in classes)]
        _write_table(path, rows, columns)

