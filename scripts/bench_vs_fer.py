"""Frames/s of ``python -m fer_utils bench predict`` against the PyPI ``fer`` package on the same videos.

Both do the same work: decode every frame, detect faces on every frame, classify each face (ours
also tracks and smooths; neither writes output). Each side runs in its own process; the runs
alternate (ours, fer, ours, fer, ...) and the median of ``--runs`` is reported: frames/s of the
frame loop (start-up and model loading excluded), whole-process seconds and faces per frame.

``fer`` runs through ``FER.detect_emotions`` (what its ``Video.analyze`` calls per frame, without
the writing), Haar by default or ``mtcnn=True``. It is optional: with ``--fer-python PATH`` (the
python of a venv where ``pip install fer`` worked) it runs there; else in this interpreter when
importable; else only ours is measured. Without ``--video``, real-face videos are made from
FER2013 (``$FER_DATA_DIR``) at 1920x1080 and 640x480::

    python scripts/bench_vs_fer.py --fer-python /path/to/fer-venv/bin/python --detector haar
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
#: Default videos: (width, height).
SIZES = ((1920, 1080), (640, 480))


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
    n = faces = 0
    start = time.perf_counter()
    while frames is None or n < frames:
        ok, frame = capture.read()
        if not ok:
            break
        faces += len(detector.detect_emotions(frame))
        n += 1
    seconds = time.perf_counter() - start
    capture.release()
    return {"frames": n, "seconds": seconds, "faces_detected": faces}


def _timed(command: list[str], result_file: Path) -> dict[str, Any]:
    """Run ``command`` (which writes JSON to ``result_file``); its result plus whole-process seconds."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {said[-1] if said else 'no output'}")
    result = json.loads(result_file.read_text())
    result = result[0] if isinstance(result, list) else result
    return {"frames": result["frames"], "fps": result["frames"] / result["seconds"],
            "faces_per_frame": result["faces_detected"] / max(1, result["frames"]), "process_s": wall}


def ours_command(video: str, detector: str, frames: int | None, out: Path, extra: list[str]) -> list[str]:
    """``bench predict`` on ``video`` in a fresh process of this interpreter."""
    limit = ["--frames", str(frames)] if frames else []
    return [sys.executable, "-m", "fer_utils", "bench", "predict", "--video", video, "--detector", detector,
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


def compare(video: str, detector: str, fer_detector: str, runs: int, frames: int | None,
            fer_python: str | None, extra: list[str], work: Path) -> dict[str, Any]:
    """Median over ``runs`` alternating runs of ours and (when ``fer_python``) fer on ``video``."""
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "fer": []}
    for run in range(runs):
        out = work / f"ours{run}.json"
        samples["ours"].append(_timed(ours_command(video, detector, frames, out, extra), out))
        if fer_python:
            out = work / f"fer{run}.json"
            samples["fer"].append(_timed(fer_command(fer_python, video, fer_detector, frames, out), out))
    summary: dict[str, Any] = {"video": video, "detector": detector, "runs": runs}
    if fer_python:
        summary["fer_detector"] = fer_detector
    for side, results in samples.items():
        if results:
            summary[side] = {key: round(statistics.median(r[key] for r in results), 3)
                             for key in ("fps", "process_s", "faces_per_frame")} | {"frames": results[0]["frames"]}
    if samples["fer"]:
        summary["fps_ratio"] = round(summary["ours"]["fps"] / summary["fer"]["fps"], 2)
        summary["faces_ratio"] = round(summary["ours"]["faces_per_frame"] / max(summary["fer"]["faces_per_frame"],
                                                                                 1e-9), 2)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line per video: fps, faces per frame, ratio."""
    ours = summary["ours"]
    line = (f"{Path(summary['video']).name} [{summary['detector']}]: ours {ours['fps']} fps "
            f"({ours['faces_per_frame']} faces/frame, {ours['process_s']} s process)")
    if "fer" in summary:
        fer = summary["fer"]
        line += (f"; fer [{summary['fer_detector']}] {fer['fps']} fps ({fer['faces_per_frame']} faces/frame, "
                 f"{fer['process_s']} s process); ours/fer = {summary['fps_ratio']}x fps, "
                 f"{summary['faces_ratio']}x faces")
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
    fer_detector = args.fer_detector or ("mtcnn" if args.detector == "mtcnn" else "haar")
    fer_python = find_fer_python(args.fer_python)
    if fer_python is None:
        print("fer is not importable here and no --fer-python was given: measuring ours only")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos, frames = args.video, args.frames
        if not videos:
            from fer_utils.bench import write_benchmark_video

            frames = frames or 40
            videos = [str(write_benchmark_video(work / f"faces_{w}x{h}.mp4", frames, (w, h))[0]) for w, h in SIZES]
        summaries = []
        for video in videos:
            try:
                summary = compare(video, args.detector, fer_detector, args.runs, frames, fer_python,
                                  args.ours.split(), work)
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
