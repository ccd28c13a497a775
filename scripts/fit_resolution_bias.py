"""Fit the size correction of distant faces for a checkpoint on the Training hold-out, and measure it on PublicTest.

Real footage shows many faces 16-40 px wide; ``predict`` enlarges their crops to the model's 48 px,
and the shipped model reads such blurred faces as "sad" far more often than they are. This script
shows each FER2013 face as a crop of 16, 24, 32 and 40 source pixels would look
(:func:`~fer_utils.evaluate.resolution.seen_from`), fits one per-class logit bias per size on the
Training hold-out (the validation faces every run is selected on; never the test split) and reports,
per size on PublicTest: accuracy and macro F1, the share of faces called sad and the share of neutral
faces called sad, for the old bilinear enlargement, the bicubic one ``predict`` uses now, and bicubic
plus the fitted bias. With ``--write`` the bias is stored in the checkpoint (``resolution_bias``),
where ``predict`` finds it.

    python scripts/fit_resolution_bias.py --json results/resolution_bias.json --write
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_utils.data import load_dataset, training_holdout
from fer_utils.evaluate import classification_metrics
from fer_utils.evaluate.resolution import fit_resolution_bias, seen_from
from fer_utils.files import repository_relative, write_json
from fer_utils.models.checkpoints import update_checkpoint
from fer_utils.predict.predictor import FacePredictor, default_checkpoint


def bilinear_from(images: np.ndarray, side: int) -> np.ndarray:
    """Faces seen from ``side`` pixels as ``predict`` enlarged them before bicubic (the baseline row)."""
    size = images.shape[1]
    return np.stack([cv2.resize(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA), (size, size),
                                interpolation=cv2.INTER_LINEAR) for f in images])


def scores(classes: tuple[str, ...], y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1, the share called sad and the share of neutral faces called sad (rounded)."""
    metrics = classification_metrics(y_true, torch.softmax(torch.from_numpy(logits), 1).numpy(), classes)
    y_pred, sad, neutral = logits.argmax(1), classes.index("sad"), classes.index("neutral")
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "called_sad": round(float((y_pred == sad).mean()), 4),
            "neutral_called_sad": round(float((y_pred[y_true == neutral] == sad).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped results/best_model.pt")
    parser.add_argument("--json", type=Path, default=None, help="write the fitted bias and the scores here")
    parser.add_argument("--write", action="store_true", help="store the bias in the checkpoint (predict applies it)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.checkpoint or default_checkpoint()
    predictor = FacePredictor.from_checkpoint(path, detector="haar", device="cpu")  # the detector is unused

    def logits_of(faces: np.ndarray) -> np.ndarray:
        return np.concatenate([predictor.logits(faces[i:i + 512]) for i in range(0, len(faces), 512)])

    fer = load_dataset("fer2013")
    _, holdout = training_holdout(fer.split("Training"))
    test = fer.split("PublicTest")
    bias = fit_resolution_bias(logits_of, holdout.images, holdout.labels)
    classes, y = predictor.classes, test.labels
    report: dict[str, Any] = {
        "checkpoint": repository_relative(path), "fitted_on": f"fer2013 Training hold-out, {len(holdout)} faces",
        "measured_on": f"fer2013 PublicTest, {len(test)} faces", "resolution_bias": bias.to_dict(),
        "sides": {"48 (the model's own)": {"bicubic": scores(classes, y, logits_of(test.images))}},
    }
    print(f"{'crop side':>9s}  {'enlargement':22s} {'accuracy':>8s} {'called sad':>10s} {'neutral->sad':>12s}"
          f"  (true share of sad: {(y == classes.index('sad')).mean():.3f})")
    for row_side, bias_row in zip(bias.sides, bias.bias):
        seen = logits_of(seen_from(test.images, row_side))
        rows = {"bilinear (before)": scores(classes, y, logits_of(bilinear_from(test.images, row_side))),
                "bicubic": scores(classes, y, seen), "bicubic + bias": scores(classes, y, seen + bias_row)}
        report["sides"][str(row_side)] = rows
        for name, row in rows.items():
            print(f"{row_side:9d}  {name:22s} {row['accuracy']:8.4f} {row['called_sad']:10.4f} "
                  f"{row['neutral_called_sad']:12.4f}")
    if args.json:
        write_json(args.json, report)
    if args.write:
        update_checkpoint(path, resolution_bias=bias.to_dict())
        print(f"stored the bias in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
