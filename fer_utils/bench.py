"""Throughput benchmarks: ``python -m fer_utils bench data|train|predict``.

``data`` measures images/s of the device-resident :class:`~fer_utils.data.BatchIterator`
with augmentation on the CPU and, when present, CUDA (real FER2013 Training when
``$FER_DATA_DIR`` holds it, else random faces of the same size). ``train`` measures training
images/s of a model fed by that pipeline against the same steps on one pre-made float batch
(the ratio shows whether the data pipeline limits training); with ``--processes N``, N processes
train at once on one device, as N seeds would share a GPU, and the aggregate is reported.
``predict`` measures frames/s of face detection + classification + tracking on ``--video`` or
on a synthetic video (``--size``, default 640x480) of two moving FER2013 faces, and counts the
faces found (on the synthetic video, also how many of them are its true faces).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_utils.arguments import add_errors_argument, positive_int
from fer_utils.data import FER2013_CLASSES, BatchIterator, create_augment, load_dataset
from fer_utils.data.paths import check_output_file
from fer_utils.devices import resolve_device, uses_channels_last
from fer_utils.evaluate.tta import TTA_MODES
from fer_utils.faces.command import add_detector_arguments, detector_options
from fer_utils.faces.detection import Detection, FaceDetector
from fer_utils.faces.detectors import PREDICT_DETECTOR, create_detector
from fer_utils.faces.evaluation import LabelledFaces, known_faces, labels_for, load_face_labels, score_detections
from fer_utils.faces.synthetic import moving_faces
from fer_utils.models import create_model, model_entry
from fer_utils.predict.predictor import FacePredictor, default_checkpoint
from fer_utils.predict.video import BATCH_FRAMES, analyse_video, iter_frames, open_video, open_writer, video_threads
from fer_utils.report.plan import bench_file



def benchmark_iterator(
    images: np.ndarray, device: str, batch_size: int = 256, augment: str = "standard", epochs: int = 2,
) -> dict:
    """Images/s of full epochs over ``images`` on ``device`` (first epoch is a warm-up)."""
    labels = np.zeros(len(images), dtype=np.int64)
    it = BatchIterator(images, labels, batch_size=batch_size, device=device, augment=create_augment(augment))
    for _ in it:  # warm-up: allocations, kernels
        pass
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _ in it:
            pass
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"device": device, "augment": augment, "batch_size": batch_size, "images": len(images) * epochs,
            "seconds": round(seconds, 3), "images_per_s": round(len(images) * epochs / seconds, 1),
            "threads": torch.get_num_threads()}


def benchmark_training(
    images: np.ndarray, model_name: str, device: str, batch_size: int = 128, augment: str = "standard",
    steps: int = 50, amp: bool = True, channels_last: bool = False, sync: Callable[[], Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> dict:
    """Training images/s through the augmented iterator vs. on one pre-made batch (same steps).

    ``sync`` is called after the warm-up steps of each measurement, before its clock starts (a barrier
    shared by concurrent processes)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    from fer_utils.train import TrainConfig, create_optimizer
    from fer_utils.train.engine import TrainStep

    dev = torch.device(device)
    cfg = TrainConfig(batch_size=batch_size, augment=augment, amp=amp, channels_last=channels_last)
    model = create_model(model_name, **(model_kwargs or {})).to(dev)
    if channels_last and uses_channels_last(model):
        model.to(memory_format=torch.channels_last)
    step = TrainStep(model.train(), create_optimizer(model, "sgd", lr=0.01), torch.nn.CrossEntropyLoss(), cfg, dev)
    labels = np.random.default_rng(0).integers(0, 7, len(images))
    it = BatchIterator(images, labels, batch_size=batch_size, device=dev, augment=create_augment(augment),
                       drop_last=True)
    fixed_x, fixed_y = next(iter(it))

    def timed(batches) -> float:
        for i, (x, y) in enumerate(batches):
            if i == 5:  # warm-up steps excluded
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if sync is not None:
                    sync()
                start = time.perf_counter()
            step(x, y)
            if i == steps + 4:
                break
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return steps * batch_size / (time.perf_counter() - start)

    def pipeline():
        while True:
            yield from it

    fed = timed(pipeline())
    premade = timed((fixed_x, fixed_y) for _ in range(steps + 5))
    return {"device": device, "model": model_name, "model_kwargs": model_kwargs or {}, "augment": augment,
            "batch_size": batch_size, "steps": steps, "precision": step.precision.label,
            "channels_last": step.channels_last, "pipeline_images_per_s": round(fed, 1),
            "premade_images_per_s": round(premade, 1), "pipeline_over_premade": round(fed / premade, 3),
            "images": len(images), "epoch_seconds_at_pipeline_rate": round(len(images) / fed, 2)}


#: ``bench train --precisions``: the columns (amp, channels_last), slowest first.
PRECISION_COLUMNS: tuple[tuple[bool, bool], ...] = ((False, False), (False, True), (True, False), (True, True))


def precision_table(images: np.ndarray, models: list[str], device: str, **options: Any) -> tuple[list[dict], str]:
    """Each model's training images/s (pre-made batch: the bare step) in the four columns of
    :data:`PRECISION_COLUMNS`, and a Markdown table of them."""
    rows, lines = [], []
    for model in models:
        cells = []
        for amp, channels_last in PRECISION_COLUMNS:
            result = benchmark_training(images, model, device, amp=amp, channels_last=channels_last, **options)
            rows.append(result)
            cells.append(f"{result['premade_images_per_s']:,.0f}")
        kwargs = options.get("model_kwargs")
        lines.append(f"| {model}{' ' + json.dumps(kwargs) if kwargs else ''} | " + " | ".join(cells) + " |")
    fast = rows[-1]["precision"] if rows else device
    header = (f"| model ({device}, batch {options.get('batch_size', 128)}, images/s) | fp32 | fp32 + channels_last "
              f"| {fast} autocast | {fast} + channels_last |\n|---|---|---|---|---|")
    return rows, "\n".join([header, *lines])


def _train_in_process(model_name: str, device: str, barrier: Any, errors: str, options: dict[str, Any]) -> dict:
    """One of :func:`benchmark_concurrent_training`'s processes (loads its own copy of the data)."""
    try:
        images, source = _training_images(errors)
        return {**benchmark_training(images, model_name, device, sync=barrier.wait, **options), "data": source}
    except BaseException:
        barrier.abort()  # the other processes stop waiting for this one
        raise


def benchmark_concurrent_training(model_name: str, device: str, processes: int, errors: str = "raise",
                                  **options: Any) -> dict:
    """:func:`benchmark_training` in ``processes`` processes at once on one device, their clocks
    started together by a barrier. The aggregate counts every process's images over the slowest
    one's time: what N seeds trained side by side get from the device."""
    context = torch.multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        barrier = manager.Barrier(processes, timeout=600)
        runs = [pool.submit(_train_in_process, model_name, device, barrier, errors, options)
                for _ in range(processes)]
        each = [run.result() for run in runs]
    fed, premade = (min(result[key] for result in each) for key in ("pipeline_images_per_s", "premade_images_per_s"))
    return {**each[0], "processes": processes, "pipeline_images_per_s": fed, "premade_images_per_s": premade,
            "pipeline_over_premade": round(fed / premade, 3),
            "epoch_seconds_at_pipeline_rate": round(each[0]["images"] / fed, 2),
            "per_process_pipeline_images_per_s": [result["pipeline_images_per_s"] for result in each],
            "aggregate_pipeline_images_per_s": round(processes * fed, 1)}


def store_training_rate(result: dict[str, Any]) -> Path:
    """Add a ``bench train`` result to :func:`~fer_utils.report.plan.bench_file` of its precision (one entry
    per model, the latest kept), relative to the working directory: the repository root."""
    path = bench_file(result["precision"])
    stored = json.loads(path.read_text()) if path.is_file() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**stored, result["model"]: result}, indent=2) + "\n")
    return path


def _training_images(errors: str = "raise") -> tuple[np.ndarray, str]:
    if os.environ.get("FER_DATA_DIR"):
        return load_dataset("fer2013", errors=errors).split("Training").images, "FER2013 Training"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (28709, 48, 48), dtype=np.uint8), "random 48x48 (FER_DATA_DIR unset)"


def frame_size(text: str) -> tuple[int, int]:
    """An argparse ``type``: ``WxH`` (e.g. ``1920x1080``) as (width, height), at least 320x240 (room
    for the synthetic video's two 160-pixel faces)."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 320 and int(height) >= 240):
        raise argparse.ArgumentTypeError(f"expected WxH of at least 320x240, such as 1920x1080, got {text!r}")
    return int(width), int(height)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench``."""
    parser.add_argument("what", choices=["data", "train", "predict"], help="what to benchmark")
    parser.add_argument("--model", nargs="+", default=["vgg_fer"], help="model(s) to train, one after another (train)")
    parser.add_argument("--processes", type=positive_int, default=1,
                        help="processes training at once on the device, as seeds side by side (train; stored if 1)")
    parser.add_argument("--channels-last", action="store_true", help="train in channels-last memory format (train)")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON",
                        help='train: extra arguments of every --model, e.g. \'{"width": 32}\' for vgg_gap')
    parser.add_argument("--precisions", action="store_true",
                        help="train: each --model's bare-step images/s in fp32, fp32 + channels-last, autocast and "
                             "autocast + channels-last, as a Markdown table")
    parser.add_argument("--steps", type=positive_int, default=50, help="timed training steps (train)")
    parser.add_argument("--device", default=None, help="device for train/predict (default: cuda if available)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 256 (data), 128 (train)")
    parser.add_argument("--augment", default="standard", help="augmentation preset (data, train)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="timed epochs (data)")
    parser.add_argument("--frames", type=positive_int, default=None,
                        help="video frames (predict; default: all of --video, 60 of the synthetic video)")
    parser.add_argument("--video", help="video to benchmark (predict; default: a synthetic video of FER2013 faces)")
    parser.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH",
                        help="size of the synthetic video (predict; default 640x480)")
    parser.add_argument("--checkpoint", help="classifier (predict; default: the shipped model, else untrained)")
    add_detector_arguments(parser)
    parser.add_argument("--detect-every", type=positive_int, default=1, help="run detection every N frames (predict)")
    parser.add_argument("--labels", help="hand-labelled faces of --video's frames, a JSON such as tests/media/real/"
                                         "faces.json (predict: scores true faces found and false boxes)")
    parser.add_argument("--no-int8", action="store_true",
                        help="run the classifier in floating point, not the checkpoint's int8 calibration (predict)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="views averaged per face, as predict --tta (predict)")
    parser.add_argument("--threads", type=positive_int,
                        help="torch CPU threads (predict; default: all cores less the detector's own threads, at least 1)")
    parser.add_argument("--json", help="also write the results to this JSON file (a new one, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    add_errors_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print one JSON line per measurement."""
    if args.json:
        check_output_file(args.json, overwrite=args.overwrite)
    results = []
    if args.what == "data":
        images, source = _training_images(args.errors)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            result = benchmark_iterator(images, device, args.batch_size or 256, args.augment, args.epochs)
            result["data"] = source
            results.append(result)
            print(json.dumps(result))
    elif args.what == "train":
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        options = dict(batch_size=args.batch_size or 128, augment=args.augment, steps=args.steps,
                       channels_last=args.channels_last, model_kwargs=args.model_kwargs)
        for model in args.model:
            model_entry(model)  # an unknown name fails here, before any process starts
        images, source = _training_images(args.errors) if args.processes == 1 else (None, None)
        if args.precisions:
            options.pop("channels_last")
            rows, table = precision_table(images, args.model, device, **options)
            results.extend({**r, "data": source} for r in rows)
            print(table)
        for model in [] if args.precisions else args.model:
            if args.processes == 1:
                result = {**benchmark_training(images, model, device, **options), "data": source}
            else:
                result = benchmark_concurrent_training(model, device, args.processes, args.errors, **options)
            if torch.device(device).type == "cuda":
                result["gpu"] = torch.cuda.get_device_name(torch.device(device))
            results.append(result)
            print(json.dumps(result))
            if args.processes == 1 and not args.model_kwargs:  # the plan reads rates by model name alone
                print(f"stored in {store_training_rate(result)} (read by python -m fer_utils.report --plan)")
    else:
        try:
            labels = labels_for(load_face_labels(args.labels), args.video or "") if args.labels else None
            if args.labels and not labels:
                raise ValueError(f"{args.labels}: no labelled frames of {args.video or 'the synthetic video'}")
            result = benchmark_predict(args.video, args.frames, args.detect_every, args.device,
                                       detector=args.detector, checkpoint=args.checkpoint,
                                       detector_kw=detector_options(args), size=args.size, threads=args.threads,
                                       labels=labels, int8=not args.no_int8, tta=args.tta)
        except (OSError, ValueError) as err:
            print(f"bench: {err}")
            return 2
        results.append(result)
        print(json.dumps(result))
        real = (f" ({result['real_faces_found']} of its {result['true_faces']} true faces, {result['false_boxes']} "
                f"false boxes, on {result['labelled_frames']} labelled frames)" if "true_faces" in result else "")
        print(f"bench predict: {result['fps']} frames/s over {result['frames']} frames of {result['video']}; "
              f"{result['faces_detected']} faces detected{real} in {result['frames_with_face']} frames, "
              f"{result['tracks']} track(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


#: FER2013 rows (happy/neutral, frontal) that MTCNN and Haar find when pasted at 160x160.
BENCHMARK_FACES: tuple[int, ...] = (8548, 23746, 23775)


def benchmark_faces() -> tuple[list[np.ndarray], str]:
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


#: Face boxes per frame: ``[[(x1, y1, x2, y2), ...], ...]``.
Boxes = list[list[tuple[int, int, int, int]]]


def write_synthetic_video(
    path: str | os.PathLike, faces: Sequence[np.ndarray], frames: int = 100,
    size: tuple[int, int] = (640, 480), fps: float = 25.0, face_size: int = 160,
) -> tuple[Path, Boxes]:
    """An mp4v video of two of ``faces`` (uint8 greyscale, reused when only one) upscaled and
    crossing each other over a textured background; returns (path, true face boxes per frame)."""
    width, height = size
    pair = [faces[0], faces[1 % len(faces)]]
    starts = [(width // 32, height // 6), (width - face_size - width // 32, height - face_size - height // 6)]
    writer = open_writer(path, fps, width, height)
    truth: Boxes = []
    try:
        for frame, boxes in moving_faces(pair, starts, starts[::-1], frames, face_size, (height, width)):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            truth.append(boxes)
    finally:
        writer.release()
    return Path(path), truth


def write_benchmark_video(
    path: str | os.PathLike, frames: int = 60, size: tuple[int, int] = (640, 480),
) -> tuple[Path, str, Boxes]:
    """The default benchmark video: two real FER2013 faces (see :func:`benchmark_faces`) crossing
    a ``size`` = (width, height) frame; returns (path, description, true face boxes per frame)."""
    faces, origin = benchmark_faces()
    written, truth = write_synthetic_video(path, faces, frames, size)
    return written, f"synthetic {size[0]}x{size[1]}, two moving faces, {origin}", truth


def _benchmark_predictor(checkpoint: str | os.PathLike | None, model: str, detector: FaceDetector,
                         device: torch.device, *, int8: bool, tta: str) -> tuple[FacePredictor, str]:
    """The predictor :func:`benchmark_predict` times and its classifier's name: ``checkpoint``, else the
    shipped model, else an untrained ``model`` (when nothing is shipped)."""
    try:
        predictor = FacePredictor.from_checkpoint(checkpoint, detector=detector, device=device, int8=int8, tta=tta)
        return predictor, str(checkpoint or default_checkpoint())
    except FileNotFoundError:
        if checkpoint:
            raise
        net = create_model(model, num_classes=len(FER2013_CLASSES)).to(device)
        predictor = FacePredictor(net, list(FER2013_CLASSES), {}, detector, device, tta=tta)
        return predictor, f"{model} (untrained)"


def benchmark_predict(
    video_path: str | os.PathLike | None = None,
    frames: int | None = None,
    detect_every: int = 1,
    device: str | None = None,
    *,
    detector: str = PREDICT_DETECTOR,
    checkpoint: str | os.PathLike | None = None,
    model: str = "simple_cnn",
    detector_kw: dict[str, Any] | None = None,
    size: tuple[int, int] = (640, 480),
    threads: int | None = None,
    labels: Mapping[int, LabelledFaces] | None = None,
    int8: bool = True,
    tta: str = "none",
) -> dict[str, Any]:
    """Frames/s of the video pipeline (decode, detect, align, classify, track, smooth; no writing)
    over the first ``frames`` frames of ``video_path`` (all when ``None``), and the faces found.

    Without ``video_path`` a synthetic ``size`` = (width, height) video of two FER2013 faces
    crossing is made (``frames`` long, default 60) and its true face boxes are the labels. With
    labels (``labels``: frame index -> hand-labelled faces of a real video), the detections on the
    labelled detection frames are scored: ``real_faces_found`` of ``true_faces``, and ``false_boxes``
    (:func:`~fer_utils.faces.evaluation.score_detections`). The classifier is ``checkpoint`` (int8 on a CPU where it
    carries a calibration, unless ``int8`` is False), else the shipped model when
    present, else an untrained ``model`` (speed does not depend on the weights); ``tta``: the views it
    averages per face (``predict --tta``). The warm-up runs one batch of copies of the video's first frame.
    """
    dev = resolve_device(device)
    det = create_detector(detector, device=dev, **(detector_kw or {}))
    predictor, classifier = _benchmark_predictor(checkpoint, model, det, dev, int8=int8, tta=tta)
    with tempfile.TemporaryDirectory() as tmp:
        source, truth = str(video_path or ""), None
        if not video_path:
            frames = frames or 60
            video_path, source, truth = write_benchmark_video(Path(tmp) / "synthetic.mp4", frames, size)
        capture, _ = open_video(video_path)
        for first in iter_frames(capture, limit=1):  # warm-up: a batch of copies of the first frame
            batch = [first] * BATCH_FRAMES
            found = [faces or [Detection((0, 0, 48, 48), 1.0)] for faces in predictor.detector.detect_batch(batch)]
            predictor.classify_many(batch, found)
        info, stream = analyse_video(video_path, predictor, detect_every=detect_every, limit=frames, threads=threads)
        start = time.perf_counter()
        with_face = 0
        found: list[list[tuple[float, float, float, float]]] = []  # detected boxes per frame
        tracks: set[int] = set()
        for fr in stream:
            with_face += bool(fr.faces)
            found.append([f.detection.box for f in fr.faces if f.detected])
            tracks.update(f.track for f in fr.faces)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    n = len(found)
    result = {
        "video": source, "width": info.width, "height": info.height, "frames": n,
        "frames_with_face": with_face, "faces_detected": sum(map(len, found)), "tracks": len(tracks),
        "detector": det.name, "detect_side": det.max_side, "detect_every": detect_every,
        "classifier": classifier, "classifier_precision": predictor.precision_label, "tta": tta, "device": str(dev),
        "threads": video_threads(threads, det),
        "seconds": round(seconds, 3), "fps": round(n / seconds, 2) if seconds > 0 else None,
    }
    if truth is not None:  # the made video: its pasted boxes are the labels
        labels = known_faces(truth)
    if labels:
        due = [i for i in range(0, n, detect_every) if i in labels]
        score = score_detections([found[i] for i in due], [labels[i] for i in due])
        result.update(labelled_frames=len(due), true_faces=score["true_faces"], real_faces_found=score["found"],
                      false_boxes=score["false_boxes"])
    return result
