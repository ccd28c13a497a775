"""Milliseconds per frame of each stage of ``predict`` on a video, one stage at a time.

``bench predict`` times the whole pipeline, where detection runs on its own thread beside tracking and
classification, so its frames/s do not say which stage costs what. This script decodes the video
first, then runs detection (``FaceDetector.detect_batch``) and classification of the detected faces
(``FacePredictor.classify_many``, crops included) one after the other on batches of frames, as the
pipeline batches them, and prints the median over ``--runs`` passes of each stage::

    python scripts/bench_predict_stages.py --video tests/media/real/event_video_01.mp4 --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from fer_utils.faces.detectors import PREDICT_DETECTOR
from fer_utils.predict import FacePredictor
from fer_utils.predict.video import BATCH_FRAMES, iter_frames, open_video


def stage_times(video: str, detector: str, threads: int, runs: int, checkpoint: str | None) -> dict[str, float]:
    """Median ms per frame of decoding, detection and classification over ``runs`` passes, and faces per frame."""
    torch.set_num_threads(threads)
    predictor = FacePredictor.from_checkpoint(checkpoint, detector=detector, device="cpu")
    start = time.perf_counter()
    frames = list(iter_frames(open_video(video)[0]))
    if not frames:
        raise ValueError(f"{video}: no readable frame")
    decode = (time.perf_counter() - start) / len(frames)
    batches = [frames[i:i + BATCH_FRAMES] for i in range(0, len(frames), BATCH_FRAMES)]
    found = [predictor.detector.detect_batch(batch) for batch in batches]  # warm-up, and the faces to classify
    for batch, faces in zip(batches, found):
        predictor.classify_many(batch, faces)
    detect, classify = [], []
    for _ in range(runs):
        start = time.perf_counter()
        for batch in batches:
            predictor.detector.detect_batch(batch)
        detect.append((time.perf_counter() - start) / len(frames))
        start = time.perf_counter()
        for batch, faces in zip(batches, found):
            predictor.classify_many(batch, faces)
        classify.append((time.perf_counter() - start) / len(frames))
    return {"video": video, "detector": predictor.detector.name, "threads": threads, "frames": len(frames),
            "faces_per_frame": round(sum(len(f) for faces in found for f in faces) / len(frames), 3),
            "decode_ms": round(decode * 1e3, 2), "detect_ms": round(statistics.median(detect) * 1e3, 2),
            "classify_ms": round(statistics.median(classify) * 1e3, 2), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", required=True, help="video file to read")
    parser.add_argument("--detector", default=PREDICT_DETECTOR, help=f"face detector (default {PREDICT_DETECTOR})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="timed passes per stage (median reported)")
    parser.add_argument("--checkpoint", help="classifier checkpoint (default: the shipped model)")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.runs < 1:
        parser.error("--threads and --runs must be >= 1")
    try:
        result = stage_times(args.video, args.detector, args.threads, args.runs, args.checkpoint)
    except (OSError, ValueError) as err:  # a missing or unreadable video or checkpoint, an unknown detector
        print(f"bench_predict_stages: {err}")
        return 2
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
