"""``python -m fer_utils demo`` (``make demo``): ``predict`` with the shipped model on inputs that need
no dataset and no download.

The photo is ``grace_hopper.jpg`` from matplotlib's sample data (inside its wheel, a dependency;
a U.S. Navy portrait in the public domain). The clip is made from it here: two seconds of a slow
zoom towards the face, so that the video path (tracking, smoothing, annotated mp4, timeline) runs
too. Outputs go to ``--out`` (default ``predictions/demo/``, git-ignored), and the command prints them.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from fer_utils.predict import command as predict_command
from fer_utils.predict.video import open_writer

PHOTO = "grace_hopper.jpg"
CLIP = "grace_hopper_zoom.mp4"


def sample_photo() -> Path:
    """The sample photo inside the installed matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / PHOTO


def make_zoom_clip(photo: np.ndarray, path: Path, seconds: float = 2.0, fps: int = 15,
                   zoom: float = 1.4) -> Path:
    """Write an mp4 of ``photo`` (BGR) cropped ever tighter around its upper centre, up to ``zoom``x."""
    height, width = photo.shape[:2]
    frames = int(seconds * fps)
    writer = open_writer(path, fps, width, height)
    for i in range(frames):
        scale = 1 + (zoom - 1) * i / max(frames - 1, 1)
        w, h = int(width / scale), int(height / scale)
        x, y = (width - w) // 2, int((height - h) * 0.35)
        writer.write(cv2.resize(photo[y:y + h, x:x + w], (width, height), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``demo``."""
    parser.add_argument("--out", type=Path, default=Path("predictions/demo"),
                        help="output folder (default predictions/demo/); its inputs/ holds the photo and clip")
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped results/best_model.pt)")


def run(args: argparse.Namespace) -> int:
    """Copy the photo, make the clip, run ``predict`` on both (replacing an earlier demo's outputs)."""
    inputs = args.out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    photo = Path(shutil.copyfile(sample_photo(), inputs / PHOTO))
    clip = make_zoom_clip(cv2.imread(str(photo)), inputs / CLIP)
    parser = argparse.ArgumentParser()
    predict_command.configure_parser(parser)
    predict_args = [str(photo), str(clip), "--out", str(args.out), "--overwrite", "--no-progress"]
    if args.checkpoint:
        predict_args += ["--checkpoint", args.checkpoint]
    status = predict_command.run(parser.parse_args(predict_args))
    print(f"demo: inputs in {inputs}/, annotated photo, video, timeline and results in {args.out}/")
    return status
