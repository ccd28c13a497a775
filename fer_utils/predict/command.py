"""``python -m fer_utils predict PATH [PATH ...]``: emotions of the faces in photos and videos.

For every photo: an annotated copy and a JSON/CSV of the faces (box, per-class
probabilities, label). For every video: per-frame results with face tracks and temporal
smoothing, an annotated mp4, a summary JSON and a timeline PNG (one row per track).
``--camera N`` / ``--stream URL_OR_FILE`` process one live source frame by frame, writing the
annotated mp4 as frames arrive and showing it when a display exists.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_utils.arguments import positive_int
from fer_utils.data.images import IMAGE_EXTENSIONS
from fer_utils.evaluate.tta import TTA_MODES
from fer_utils.faces.command import add_detector_arguments, detector_options
from fer_utils.predict.outputs import (
    BOX_FORMAT, RUN_SUMMARY, Outcome, OutputNamer, expand_inputs, input_kind, process_image, process_video, real_path,
)
from fer_utils.predict.predictor import DEFAULT_CHECKPOINT, FacePredictor, default_checkpoint
from fer_utils.predict.video import SMOOTHING_METHODS, VIDEO_EXTENSIONS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``predict``."""
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="photos (jpg/png/bmp/webp/tif...), videos (mp4/avi/mov/mkv...) or folders of them")
    live = parser.add_mutually_exclusive_group()
    live.add_argument("--camera", type=int, metavar="N",
                      help="instead of PATHs: OpenCV camera index N, processed live until q/Esc or Ctrl-C")
    live.add_argument("--stream", metavar="URL_OR_FILE",
                      help="instead of PATHs: a stream URL (rtsp://, http://...) or video file, processed live")
    parser.add_argument("--out", default="predictions", help="output folder (default predictions/)")
    parser.add_argument("--checkpoint", help=f"model checkpoint (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--format", default="json", choices=["json", "csv"], help="results file format; boxes are x1, y1, x2, y2 in pixels, clipped to the image")
    add_detector_arguments(parser)
    parser.add_argument("--margin", type=float,
                        help="fraction of the face box added on each side (default: the checkpoint's preprocessing record)")
    parser.add_argument("--no-size-correction", action="store_true",
                        help="leave out the checkpoint's correction of faces smaller than the model's input "
                             "(without it, distant faces are read as sad far too often: README, What the shipped model is good and bad at)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: CUDA when available)")
    parser.add_argument("--no-int8", action="store_true",
                        help="on a CPU, run the classifier in floating point even where the checkpoint carries an "
                             "int8 calibration (README: Speed)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="average each face over views, as evaluate --tta: flip (2) or tencrop (10), at 2 or 10 "
                             "times the classifier's cost (README: what each gains with the shipped model)")
    parser.add_argument("--smooth", default="ma", choices=SMOOTHING_METHODS,
                        help="video smoothing: moving average of probabilities, windowed vote, or none")
    parser.add_argument("--window", type=int, default=5, help="smoothing window in frames")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="videos: detect faces every N frames; tracks predict the boxes in between")
    parser.add_argument("--threads", type=positive_int,
                        help="videos: torch CPU threads (default: all cores less the detector's own threads, at least 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the results of an earlier run in --out (its {RUN_SUMMARY} and same-named files)")


def run(args: argparse.Namespace) -> int:
    """Predict every input (or the live ``--camera``/``--stream``); exit status 1 only when no input
    could be processed (2: usage)."""
    out_dir = Path(args.out)
    live = args.camera if args.camera is not None else args.stream
    if (live is None) == (not args.paths):
        print("predict: give PATHs or one of --camera/--stream, not both")
        return 2
    inputs, others = expand_inputs(args.paths, exclude=out_dir)
    if real_path(out_dir) in {real_path(p) for p in inputs} or out_dir.is_file():
        print(f"predict: --out {out_dir} is a file (or one of the inputs); it must be a folder")
        return 2
    if (out_dir / RUN_SUMMARY).exists() and not args.overwrite:
        print(f"predict: --out {out_dir} holds an earlier run's results ({RUN_SUMMARY}); choose another folder "
              "or pass --overwrite to replace them")
        return 2
    if args.detect_every < 1 or args.window < 1:
        print("predict: --detect-every and --window must be >= 1")
        return 2
    try:
        predictor = FacePredictor.from_checkpoint(
            args.checkpoint, detector=args.detector, device=args.device, margin=args.margin,
            detector_kw=detector_options(args), size_correction=not args.no_size_correction,
            int8=not args.no_int8, tta=args.tta,
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        print(f"predict: {err}")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    namer = OutputNamer(out_dir, inputs, overwrite=args.overwrite)
    if others:
        print(f"skipped {len(others)} file(s) in the folders that are neither photos nor videos "
              f"(first: {others[0]})")
    video_options = dict(detect_every=args.detect_every, smooth=args.smooth, window=args.window,
                         progress=not args.no_progress, threads=args.threads)
    outcomes = []
    for source in inputs if live is None else [live]:
        kind = "video" if live is not None else input_kind(source)
        try:
            if live is not None:
                outcome = process_video(live, predictor, namer, args.format, live=True, **video_options)
            elif not source.is_file():
                link = " (broken or looping symbolic link)" if source.is_symlink() else ""
                raise FileNotFoundError(f"{source}: no such file{link}")
            elif kind is None:
                raise ValueError(
                    f"{source}: unsupported format {source.suffix or '(no extension)'}; photos: "
                    f"{' '.join(IMAGE_EXTENSIONS)}; videos: {' '.join(VIDEO_EXTENSIONS)}"
                )
            elif kind == "image":
                outcome = process_image(source, predictor, namer, args.format)
            else:
                outcome = process_video(source, predictor, namer, args.format, **video_options)
        except (OSError, ValueError) as err:
            outcome = Outcome(str(source), kind or "unknown", "error", str(err))
        except Exception as err:  # one bad input never stops the batch
            outcome = Outcome(str(source), kind or "unknown", "error", f"{source}: {type(err).__name__}: {err}")
        outcomes.append(outcome)
        print(f"{outcome.status.replace('_', ' ')}: {outcome.message}")

    ok = [o for o in outcomes if o.status == "ok"]
    summary = {
        "checkpoint": str(args.checkpoint or default_checkpoint()), "detector": predictor.detector.name,
        "detect_side": predictor.detector.max_side,
        "device": str(predictor.device), "classifier_precision": predictor.precision_label, "tta": predictor.tta,
        "box_format": BOX_FORMAT,
        "inputs": len(outcomes), "processed": len(ok),
        "no_face": sum(o.status == "no_face" for o in outcomes),
        "errors": sum(o.status == "error" for o in outcomes),
        "faces": sum(o.faces for o in outcomes),
        "skipped_not_media": len(others), "skipped_files": [str(p) for p in others],
        "results": [o.__dict__ for o in outcomes],
    }
    (out_dir / RUN_SUMMARY).write_text(json.dumps(summary, indent=2))
    print(f"predict: {len(outcomes)} input(s): {len(ok)} processed ({summary['faces']} faces), "
          f"{summary['no_face']} without a face, {summary['errors']} failed"
          + (f", {len(others)} other file(s) skipped" if others else "") + f"; results in {out_dir}/")
    return 0 if ok else 1
