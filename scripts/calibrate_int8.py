"""Calibrate a checkpoint's classifier for int8 inference on a CPU, and check what int8 costs in accuracy.

The activation ranges are measured on Training faces outside the validation hold-out (``--faces`` of
them, a seeded sample), exactly as ``predict`` feeds its crops. The int8 and floating-point classifiers
are then compared, single view as ``predict`` runs, on the Training hold-out (the decision: ``--write``
stores the calibration only when int8 loses at most ``--max-drop`` points there) and on PublicTest
(reported, never chosen on). With ``--write`` the calibration goes into the checkpoint (``int8``),
where ``predict`` finds it; ``predict --no-int8`` runs the floating-point classifier.

    python scripts/calibrate_int8.py --json results/int8_calibration.json --write
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fer_utils.data import load_dataset, random_subset, training_holdout
from fer_utils.files import repository_relative, write_json
from fer_utils.models.checkpoints import update_checkpoint
from fer_utils.models.quantization import calibrate_int8, float_ends
from fer_utils.predict.predictor import FacePredictor, default_checkpoint

BATCH = 256


def compare(floating: FacePredictor, int8: FacePredictor, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Single-view accuracy (%) of both classifiers, the share of faces they label alike and the largest
    difference of a class probability."""
    probs = [np.concatenate([torch.softmax(torch.from_numpy(p.logits(images[i:i + BATCH])), 1).numpy()
                             for i in range(0, len(images), BATCH)]) for p in (floating, int8)]
    accuracy = [100 * float((p.argmax(1) == labels).mean()) for p in probs]
    return {"float_accuracy": round(accuracy[0], 2), "int8_accuracy": round(accuracy[1], 2),
            "same_label": round(float((probs[0].argmax(1) == probs[1].argmax(1)).mean()), 4),
            "max_probability_difference": round(float(np.abs(probs[0] - probs[1]).max()), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped results/best_model.pt")
    parser.add_argument("--faces", type=int, default=1024, help="Training faces to measure the activation ranges on")
    parser.add_argument("--max-drop", type=float, default=0.2,
                        help="--write only if int8 loses at most this many points on the hold-out")
    parser.add_argument("--subset", type=int, default=None,
                        help="compare on this many random faces of each split (quick checks; default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write the comparison here")
    parser.add_argument("--write", action="store_true", help="store the calibration in the checkpoint")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.checkpoint or default_checkpoint()
    try:
        if args.faces < 1 or (args.subset is not None and args.subset < 1):
            raise ValueError("--faces and --subset must be positive")
        # the detector is unused
        floating = FacePredictor.from_checkpoint(path, detector="haar", device="cpu", int8=False)
        fer = load_dataset("fer2013")
        train, holdout = training_holdout(fer.split("Training"))
        faces = random_subset(train, args.faces).images
        holdout, test = random_subset(holdout, args.subset), random_subset(fer.split("PublicTest"), args.subset)
        batches = (floating.model_inputs(faces[i:i + BATCH]) for i in range(0, len(faces), BATCH))
        observers = calibrate_int8(floating.model, batches)
        int8 = FacePredictor(floating.model, floating.classes, floating.preprocessing, floating.detector, "cpu", None,
                             floating.resolution_bias, observers)
    except (OSError, ValueError) as err:  # no checkpoint or dataset, a model FX cannot trace, a bad count
        print(f"calibrate_int8: {err}")
        return 2
    report = {
        "checkpoint": repository_relative(path),
        "calibrated_on": f"fer2013 Training, {len(faces)} faces outside the hold-out",
        "compared_on": f"{len(holdout)} hold-out and {len(test)} PublicTest faces",
        "float": floating.precision_label, "kept_in_float": float_ends(floating.model),
        "holdout": compare(floating, int8, holdout.images, holdout.labels),
        "PublicTest": compare(floating, int8, test.images, test.labels),
    }
    for split in ("holdout", "PublicTest"):
        row = report[split]
        print(f"{split:10s} single view: {report['float']} {row['float_accuracy']:.2f}%, "
              f"cpu int8 {row['int8_accuracy']:.2f}%; same label {100 * row['same_label']:.1f}%, "
              f"largest probability difference {row['max_probability_difference']:.3f}")
    drop = report["holdout"]["float_accuracy"] - report["holdout"]["int8_accuracy"]
    report["stored"] = args.write and drop <= args.max_drop
    if args.json:
        write_json(args.json, report)
    if args.write and not report["stored"]:
        print(f"not stored: int8 loses {drop:.2f} points on the hold-out (more than --max-drop {args.max_drop})")
        return 1
    if args.write:
        update_checkpoint(path, int8={"observers": observers, "faces": len(faces), "holdout": report["holdout"]})
        print(f"stored the int8 calibration in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
