"""``python -m fer_utils prepare-faces SRC OUT.npz``: a folder of photos to an aligned face array."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fer_utils.arguments import positive_int
from fer_utils.data.preprocessing import DEFAULT_MARGIN
from fer_utils.faces.detection import DEFAULT_MAX_SIDE
from fer_utils.faces.detectors import PREDICT_DETECTOR, list_detectors
from fer_utils.faces.prepare import KEEP_CHOICES, NO_FACE_CHOICES, prepare_faces, report_path


def add_detector_arguments(parser: argparse.ArgumentParser, default: str = PREDICT_DETECTOR) -> None:
    """``--detector`` (default ``default``), ``--cascade``, ``--min-face-size`` and ``--detect-side``
    (``prepare-faces``, ``predict``, ``bench predict``)."""
    parser.add_argument("--detector", default=default, choices=list_detectors(),
                        help=f"face detector (default {default}; yunet: a tiny network, finds faces from about 10 px "
                             "with few false boxes; blazeface: MediaPipe's, with false boxes at small faces; "
                             "blazeface-onet: its boxes checked by MTCNN's O-Net; mtcnn: the slowest)")
    parser.add_argument("--cascade", help="cascade XML for --detector lbp (or a custom Haar cascade)")
    parser.add_argument("--min-face-size", type=positive_int,
                        help="smallest face in pixels, measured after --detect-side (MTCNN and blazeface-onet: 20, "
                             "BlazeFace: 64, cascades: 30, yunet: none)")
    parser.add_argument("--detect-side", type=positive_int, default=DEFAULT_MAX_SIDE,
                        help="detect on a copy whose longer side is at most this many pixels; boxes are mapped "
                             f"back to the full image (default {DEFAULT_MAX_SIDE}; smaller is faster)")


def detector_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`~fer_utils.faces.create_detector` keywords those flags ask for; ``ValueError``
    for a flag the detector does not take."""
    options: dict[str, Any] = {"max_side": args.detect_side}
    if args.cascade:
        if args.detector not in ("haar", "lbp"):
            raise ValueError("--cascade only applies to --detector haar/lbp")
        options["cascade"] = args.cascade
    if args.min_face_size:
        options["min_size" if args.detector in ("haar", "lbp") else "min_face_size"] = args.min_face_size
    return options


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``prepare-faces``."""
    parser.add_argument("src", help="folder tree of photos or sequence frames (class folders give labels)")
    parser.add_argument("out", help="output array file (.npz); the report goes to OUT.report.json")
    add_detector_arguments(parser, default="mtcnn")  # offline datasets: the most faces, whatever the time
    parser.add_argument("--size", type=int, default=48, help="crop side in pixels (default 48)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help=f"fraction of the box added on each side (default {DEFAULT_MARGIN})")
    parser.add_argument("--keep", default="largest", choices=KEEP_CHOICES,
                        help="face kept when an image has several (all are reported)")
    parser.add_argument("--no-face", default="skip", choices=NO_FACE_CHOICES,
                        help="images without a face: skip them or keep the whole image (reported either way)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per detector batch")
    parser.add_argument("--chunk-size", type=int, default=256, help="images per saved chunk (resume unit)")
    parser.add_argument("--work-dir", help="folder for partial results (default OUT.work/)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT (and its report)")


def run(args: argparse.Namespace) -> int:
    """Run ``prepare-faces``; 0 when at least one face was saved."""
    if Path(args.out).exists() and not args.overwrite:
        print(f"prepare-faces: {args.out} exists; pass --overwrite to replace it, or choose another OUT")
        return 2
    try:
        report = prepare_faces(
            args.src, args.out, args.detector, size=args.size, margin=args.margin, keep=args.keep,
            no_face=args.no_face, device=args.device, detector_kw=detector_options(args), work_dir=args.work_dir,
            chunk_size=args.chunk_size, batch_size=args.batch_size, progress=not args.no_progress,
            keep_work=args.keep_work,
        )
    except (OSError, ValueError, KeyError) as err:
        print(f"prepare-faces: {err}")
        return 2
    except KeyboardInterrupt:
        work = args.work_dir or Path(args.out).with_suffix(".work")
        print(f"prepare-faces: interrupted; finished chunks are kept in {work}; run the same command to resume")
        return 130
    print(
        f"prepare-faces: {report['images_found']} images -> {report['faces_saved']} faces in {args.out}; "
        f"no face: {report['no_face']['count']} ({report['no_face']['action']}), "
        f"several faces: {report['multiple_faces']['count']}, unreadable: {report['unreadable']['count']}; "
        f"report: {report_path(args.out)}"
    )
    return 0 if report["faces_saved"] else 1
