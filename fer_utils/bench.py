"""Throughput benchmarks: ``python -m fer_utils bench data|train|predict``.

``data`` measures images/s of the device-resident :class:`~fer_utils.data.BatchIterator`
with augmentation on the CPU and, when present, CUDA (real FER2013 Training when
``$FER_DATA_DIR`` holds it, else random faces of the same size). ``train`` measures training
images/s of a model fed by that pipeline against the same steps on one pre-made float batch
(the ratio shows whether the data pipeline limits training). ``predict`` measures frames/s of
face detection + classification on a 640x480 video.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from fer_utils.cli import add_errors_argument, positive_int
from fer_utils.data import BatchIterator, create_augment, load_dataset


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
    steps: int = 50, amp: bool = True, channels_last: bool = False,
) -> dict:
    """Training images/s through the augmented iterator vs. on one pre-made batch (same steps)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    from fer_utils.models import create_model
    from fer_utils.train import TrainConfig, create_optimizer
    from fer_utils.train.engine import TrainStep

    dev = torch.device(device)
    cfg = TrainConfig(batch_size=batch_size, augment=augment, amp=amp, channels_last=channels_last)
    model = create_model(model_name).to(dev)
    if channels_last:
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
    return {"device": device, "model": model_name, "augment": augment, "batch_size": batch_size, "steps": steps,
            "amp": amp and dev.type == "cuda", "pipeline_images_per_s": round(fed, 1),
            "premade_images_per_s": round(premade, 1), "pipeline_over_premade": round(fed / premade, 3),
            "epoch_seconds_at_pipeline_rate": round(len(images) / fed, 2)}


def _training_images(errors: str = "raise") -> tuple[np.ndarray, str]:
    if os.environ.get("FER_DATA_DIR"):
        return load_dataset("fer2013", errors=errors).split("Training").images, "FER2013 Training"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (28709, 48, 48), dtype=np.uint8), "random 48x48 (FER_DATA_DIR unset)"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench``."""
    parser.add_argument("what", choices=["data", "train", "predict"], help="what to benchmark")
    parser.add_argument("--model", default="vgg_fer", help="model to train (train)")
    parser.add_argument("--steps", type=positive_int, default=50, help="timed training steps (train)")
    parser.add_argument("--device", default=None, help="device for train (default: cuda if available)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 256 (data), 128 (train)")
    parser.add_argument("--augment", default="standard", help="augmentation preset (data)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="timed epochs (data)")
    parser.add_argument("--frames", type=positive_int, default=60, help="video frames (predict)")
    parser.add_argument("--detector", default="mtcnn", help="face detector (predict)")
    parser.add_argument("--detect-every", type=positive_int, default=1, help="run detection every N frames (predict)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    add_errors_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print one JSON line per measurement."""
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
        images, source = _training_images(args.errors)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        result = benchmark_training(images, args.model, device, args.batch_size or 128, args.augment, args.steps)
        result["data"] = source
        results.append(result)
        print(json.dumps(result))
    else:
        from fer_utils.predict import benchmark_predict

        result = benchmark_predict(frames=args.frames, detector=args.detector, detect_every=args.detect_every)
        results.append(result)
        print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
