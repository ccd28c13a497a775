"""Frames/s of ``python -m fer_utils bench predict`` against the PyPI ``fer`` package on the same videos.

Both do the same work: decode every frame, detect faces on every frame, classify each face (ours
also tracks and smooths; neither writes output). Each side runs in its own process; the runs
alternate (ours, fer, ours, fer, ...) and the median of ``--runs`` is reported: frames/s of the
frame loop (start-up and model loading excluded), whole-process seconds and faces per frame.

``fer`` runs through ``FER.detect_emotions`` (what its ``Video.analyze`` calls per frame, without
the writing), Haar by default or ``mtcnn=True``. It is optional: with ``--fer-python PATH`` (the
python of a venv where ``pip install fer`` worked) it runs there; else in this interpreter when
importable; else only ours is measured. Without ``--video``, the benchmark videos of ``bench
predict`` (two FER2013 faces from ``$FER_DATA_DIR`` crossing a textured scene, 40 frames) are made
at 1920x1080 and 640x480, the same for both sides, and the detections matching the true face
boxes are counted for both. Real videos with hand-labelled frames (``--labels``, such as
``tests/media/real/faces.json``) are scored the same way: true faces found and false boxes::

    python scripts/bench_vs_fer.py --fer-python /path/to/fer-venv/bin/python --detector blazeface
    python scripts/bench_vs_fer.py --video tests/media/real/hikers_video_02.mp4 --labels tests/media/real/faces.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: fer's detectors, as ``FER(mtcnn=...)``.
FER_MTCNN = {"haar": False, "mtcnn": True}
#: Default videos, made from FER2013 by ``fer_utils.bench.write_benchmark_video``: name -> (width, height).
MADE = {"1920x1080": (1920, 1080), "640x480": (640, 480)}


def fer_worker(video: str, mtcnn: bool, frames: int | None) -> dict[str, Any]:
    """Run ``fer`` over ``video`` (this process must import ``fer``): frames, loop seconds, faces."""
    import cv2
    from fer.fer import FER

    detector = FER(mtcnn=mtcnn)
    capture = cv2.VideoCapture(video)
    ok, first = capture.read()
    if not ok:
        raise ValueError(f"{video}: no readable frame")
    detector.detect_emotions(first)  # warm-up, as ours: model loading and first call excluded
    capture.release()
    capture = cv2.VideoCapture(video)
    boxes = []  # per frame, x1, y1, x2, y2
    start = time.perf_counter()
    while frames is None or len(boxes) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        found = detector.detect_emotions(frame)
        boxes.append([[int(x), int(y), int(x + w), int(y + h)] for x, y, w, h in (f["box"] for f in found)])
    seconds = time.perf_counter() - start
    capture.release()
    return {"frames": len(boxes), "seconds": seconds, "faces_detected": sum(map(len, boxes)), "boxes": boxes}


def _timed(command: list[str], result_file: Path) -> dict[str, Any]:
    """Run ``command`` (which writes JSON to ``result_file``); its result plus whole-process seconds."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {said[-1] if said else 'no output'}")
    result = json.loads(result_file.read_text())
    result_file.unlink()  # the next run writes a new one
    result = result[0] if isinstance(result, list) else result
    return {**result, "fps": result["frames"] / result["seconds"],
            "faces_per_frame": result["faces_detected"] / max(1, result["frames"]), "process_s": wall}


def ours_command(source: list[str], detector: str, frames: int | None, out: Path, extra: list[str]) -> list[str]:
    """``bench predict`` in a fresh process of this interpreter on ``source``: ``["--video", PATH]``, or
    ``["--size", "WxH"]`` for the benchmark video it makes itself (counting its true faces)."""
    limit = ["--frames", str(frames)] if frames else []
    return [sys.executable, "-m", "fer_utils", "bench", "predict", *source, "--detector", detector,
            "--device", "cpu", "--json", str(out), *limit, *extra]


def fer_command(python: str, video: str, detector: str, frames: int | None, out: Path) -> list[str]:
    """This script's ``--worker`` mode under ``python``."""
    limit = ["--frames", str(frames)] if frames else []
    return [python, __file__, "--worker", "--video", video, "--fer-detector", detector, "--json", str(out), *limit]


def find_fer_python(given: str | None) -> str | None:
    """``given``, else this interpreter when it imports ``fer``, else ``None``."""
    if given:
        return given
    try:
        import fer.fer  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def compare(video: str, detector: str, fer_detector: str, runs: int, frames: int | None, fer_python: str | None,
            extra: list[str], work: Path, made: Path | None = None,
            labels: tuple[str, dict[int, Any]] | None = None) -> dict[str, Any]:
    """Median over ``runs`` alternating runs of ours and (when ``fer_python``) fer on ``video``. ``made``: fer's
    copy of a video of :data:`MADE` (ours makes the same one); ``labels``: (labels file, frame -> labelled
    faces) of ``video``, its true faces as pasted for a made one. With labels, true faces found and false
    boxes are counted on the labelled frames, for both sides by the same rule."""
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "fer": []}
    for run in range(runs):
        out = work / f"ours{run}.json"
        source = ["--size", video] if made else ["--video", video]
        if labels and not made:
            source += ["--labels", labels[0]]
        samples["ours"].append(_timed(ours_command(source, detector, frames, out, extra), out))
        if fer_python:
            out = work / f"fer{run}.json"
            samples["fer"].append(_timed(fer_command(fer_python, str(made or video), fer_detector, frames, out), out))
    if labels:
        from fer_utils.faces.evaluation import score_detections

        for result in samples["fer"]:
            due = [i for i in sorted(labels[1]) if i < len(result["boxes"])]
            score = score_detections([result["boxes"][i] for i in due], [labels[1][i] for i in due])
            result.update(real_faces_found=score["found"], false_boxes=score["false_boxes"])
    summary: dict[str, Any] = {"video": video, "detector": detector, "runs": runs}
    if fer_python:
        summary["fer_detector"] = fer_detector
    counted = ("faces_per_frame", "real_faces_found", "false_boxes") if labels else ("faces_per_frame",)
    for side, results in samples.items():
        if results:
            summary[side] = {key: round(statistics.median(r[key] for r in results), 3)
                             for key in ("fps", "process_s", *counted)} | {"frames": results[0]["frames"]}
    summary["ours"]["classifier_precision"] = samples["ours"][0]["classifier_precision"]
    if labels:
        summary["true_faces"] = samples["ours"][0]["true_faces"]
        summary["labelled_frames"] = samples["ours"][0]["labelled_frames"]
    if samples["fer"]:
        faces = "real_faces_found" if labels else "faces_per_frame"
        summary["fps_ratio"] = round(summary["ours"]["fps"] / summary["fer"]["fps"], 2)
        summary["faces_ratio"] = round(summary["ours"][faces] / max(summary["fer"][faces], 1e-9), 2)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line per video: fps, faces per frame (and real faces found), ratios."""
    def side(name: str) -> str:
        r = summary[name]
        real = (f", {r['real_faces_found']:g} of {summary['true_faces']} true faces, {r['false_boxes']:g} false boxes"
                if "true_faces" in summary else "")
        return f"{r['fps']} fps ({r['faces_per_frame']} faces/frame{real}, {r['process_s']} s process)"

    line = f"{Path(summary['video']).name} [{summary['detector']}]: ours {side('ours')}"
    if "fer" in summary:
        line += (f"; fer [{summary['fer_detector']}] {side('fer')}; ours/fer = {summary['fps_ratio']}x fps, "
                 f"{summary['faces_ratio']}x {'real ' if 'true_faces' in summary else ''}faces")
    return line + f"; median of {summary['runs']}"


def _positive(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", action="append", help="video to time (repeatable; default: two made videos)")
    parser.add_argument("--detector", default="haar", help="our detector (haar, mtcnn, blazeface...)")
    parser.add_argument("--fer-detector", choices=sorted(FER_MTCNN),
                        help="fer's detector (default: mtcnn when ours is mtcnn, else haar)")
    parser.add_argument("--runs", type=_positive, default=3, help="alternating runs per side (median reported)")
    parser.add_argument("--frames", type=_positive, default=None, help="first N frames only (made videos: 40)")
    parser.add_argument("--fer-python", help="python of a venv with fer installed (default: this one, if it has fer)")
    parser.add_argument("--ours", default="", help="extra bench predict arguments for ours, e.g. '--checkpoint X'")
    parser.add_argument("--labels", help="hand-labelled faces of the --video files, e.g. tests/media/real/faces.json: "
                                         "true faces found and false boxes are counted on their labelled frames")
    parser.add_argument("--json", help="also write the summaries to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = fer_worker(args.video[0], FER_MTCNN[args.fer_detector], args.frames)
        Path(args.json).write_text(json.dumps(result))
        return 0
    missing = [v for v in args.video or [] if not Path(v).is_file()]
    if missing:
        print(f"bench_vs_fer: {missing[0]}: no such file")
        return 2
    if args.labels:
        from fer_utils.errors import DatasetError
        from fer_utils.faces.evaluation import labels_for, load_face_labels

        try:
            all_labels = load_face_labels(args.labels)
        except DatasetError as err:
            print(f"bench_vs_fer: {err}")
            return 2
    fer_detector = args.fer_detector or ("mtcnn" if args.detector == "mtcnn" else "haar")
    fer_python = find_fer_python(args.fer_python)
    if fer_python is None:
        print("fer is not importable here and no --fer-python was given: measuring ours only")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos, frames = args.video or list(MADE), args.frames or (None if args.video else 40)
        summaries = []
        for video in videos:
            made, labels = None, None
            if not args.video:  # the same video as ours makes: same faces, size, frames
                from fer_utils.bench import write_benchmark_video
                from fer_utils.faces.evaluation import known_faces

                made, _, truth = write_benchmark_video(work / f"faces_{video}.mp4", frames, MADE[video])
                labels = ("", known_faces(truth))
            elif args.labels:
                labels = (args.labels, labels_for(all_labels, video))
                if not labels[1]:
                    print(f"bench_vs_fer: {args.labels}: no labelled frames of {video}")
                    return 2
            try:
                summary = compare(video, args.detector, fer_detector, args.runs, frames, fer_python,
                                  args.ours.split(), work, made, labels)
            except RuntimeError as err:
                print(f"bench_vs_fer: {err}")
                return 1
            summaries.append(summary)
            print(describe(summary), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
