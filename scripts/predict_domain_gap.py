"""How the shipped model fares on faces a detector finds, against FER2013's own crops and on CK+48.

``predict`` classifies what a detector cuts out of a photo, not a FER2013 crop: the box is the
detector's, the margin around it the checkpoint's, and the face was enlarged or shrunk to 48x48.
This script measures what that costs, on real faces whose labels are known:

- FER2013 PublicTest (our test split): each face is classified on its stored 48x48 crop, then
  pasted, enlarged to 160 pixels, into a textured 640x480 scene, found again by the detector and
  cut with each margin of ``--margins``; accuracy, macro F1, the share of faces found, and the share
  of predictions per class (the "sad" bias) against the true shares;
- CK+48 (lab photos of posed expressions, its own crops): the shipped model, never trained on it,
  on the 6 classes CK+48 shares with FER2013 (contempt left out).

    python scripts/predict_domain_gap.py --detector blazeface --json results/predict_domain_gap.json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fer_utils.errors import DatasetError
from fer_utils.data import load_dataset
from fer_utils.evaluate import classification_metrics
from fer_utils.faces import Detection, paste_faces
from fer_utils.faces.detection import iou
from fer_utils.faces.synthetic import textured_background
from fer_utils.predict.predictor import FacePredictor

#: Where each FER2013 face is pasted in its 480x640 scene (x1, y1, x2, y2): 160 pixels, off centre.
SCENE_BOX = (200, 120, 360, 280)


def scores(classes: Sequence[str], y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro F1, recall per class (:func:`~fer_utils.evaluate.classification_metrics`) and the
    share of predictions per class against the true shares."""
    metrics = classification_metrics(y_true, probabilities, classes)
    y_pred = probabilities.argmax(1)
    neutral, sad = classes.index("neutral"), classes.index("sad")
    is_neutral = y_true == neutral
    return {
        "faces": metrics["n"], "accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
        "recall": {c: round(m["recall"], 4) for c, m in metrics["per_class"].items() if m["support"]},
        "predicted_share": {c: round(float((y_pred == i).mean()), 4) for i, c in enumerate(classes)},
        "true_share": {c: round(float((y_true == i).mean()), 4) for i, c in enumerate(classes)},
        "neutral_called_sad": round(float((y_pred[is_neutral] == sad).mean()), 4) if is_neutral.any() else None,
    }


def classify_crops(predictor: FacePredictor, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probabilities of stored uint8 48x48 crops, through ``predict``'s own path (box = whole crop)."""
    whole = Detection((0, 0, crops.shape[2], crops.shape[1]), 1.0)
    chunks = [list(crops[i:i + batch]) for i in range(0, len(crops), batch)]
    return np.concatenate([np.concatenate(predictor.classify_many(chunk, [[whole]] * len(chunk))) for chunk in chunks])


def detected_faces(predictor: FacePredictor, faces: np.ndarray,
                   batch: int = 32) -> list[tuple[np.ndarray, Detection] | None]:
    """For each face pasted in its scene, (scene, the detection matching it with IoU >= 0.5), or None."""
    background = textured_background(480, 640, seed=0)
    found = []
    for start in tqdm(range(0, len(faces), batch), desc="detecting", unit="batch", leave=False):
        scenes = [cv2.cvtColor(paste_faces([face], [SCENE_BOX], background=background), cv2.COLOR_GRAY2RGB)
                  for face in faces[start:start + batch]]
        for scene, dets in zip(scenes, predictor.detector.detect_batch(scenes)):
            match = max(dets, key=lambda d: iou(d.box, SCENE_BOX), default=None)
            found.append((scene, match) if match is not None and iou(match.box, SCENE_BOX) >= 0.5 else None)
    return found


def fer2013_gap(predictor: FacePredictor, margins: Sequence[float], limit: int | None) -> dict[str, Any]:
    """Stored crops against detector crops at each margin, on FER2013 PublicTest."""
    data = load_dataset("fer2013")
    test = np.flatnonzero(data.meta["split"].to_numpy() == "PublicTest")
    if limit is not None:  # a random subset: the file is not in random order
        test = np.sort(np.random.default_rng(0).permutation(test)[:limit])
    classes = list(predictor.classes)
    y_true = np.array([classes.index(data.classes[label]) for label in data.labels[test]])
    out: dict[str, Any] = {"split": "PublicTest", "scene_box": list(SCENE_BOX),
                           "stored_crops": scores(classes, y_true, classify_crops(predictor, data.images[test]))}
    found = detected_faces(predictor, data.images[test])
    hit = np.array([f is not None for f in found])
    out["found_share"] = round(float(hit.mean()), 4)
    # The same faces for every setting: those the detector found.
    out["stored_crops_of_found"] = scores(classes, y_true[hit], classify_crops(predictor, data.images[test][hit]))
    original = predictor.preprocessing
    for margin in margins:
        predictor.preprocessing = replace(original, margin=margin)
        probabilities = [predictor.classify(scene, [det])[0] for scene, det in (f for f in found if f is not None)]
        out[f"detected_margin_{margin:g}"] = scores(classes, y_true[hit], np.stack(probabilities))
    predictor.preprocessing = original
    return out


def ckplus_zero_shot(predictor: FacePredictor) -> dict[str, Any]:
    """The model on CK+48's crops (every frame), on the classes it shares with FER2013."""
    data = load_dataset("ckplus48")
    classes = list(predictor.classes)
    shared = np.array([data.classes[label] in classes for label in data.labels])
    y_true = np.array([classes.index(data.classes[label]) for label in data.labels[shared]])
    result = scores(classes, y_true, classify_crops(predictor, data.images[shared]))
    return {"frames": int(shared.sum()), "left_out": sorted(set(data.classes) - set(classes)), **result}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="blazeface", help="detector used by predict (default blazeface)")
    parser.add_argument("--checkpoint", help="classifier (default: the shipped results/best_model.pt)")
    parser.add_argument("--margins", default="0,0.1,0.2,0.3", help="comma-separated crop margins to compare")
    parser.add_argument("--faces", type=int, help="N random PublicTest faces only (default: all 3,589)")
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit status 2 on bad input (missing data, bad margins)."""
    args = parse_args(argv)
    try:
        margins = [float(m) for m in args.margins.split(",")]
        if any(not 0 <= m <= 1 for m in margins) or (args.faces is not None and args.faces < 1):
            raise ValueError("--margins must lie in [0, 1] and --faces be positive")
        predictor = FacePredictor.from_checkpoint(args.checkpoint, detector=args.detector, device="cpu")
        result = {"checkpoint": str(args.checkpoint or "results/best_model.pt"), "detector": args.detector,
                  "checkpoint_margin": predictor.margin,
                  "fer2013": fer2013_gap(predictor, margins, args.faces), "ckplus48": ckplus_zero_shot(predictor)}
    except (OSError, ValueError, KeyError, DatasetError) as err:
        print(f"predict_domain_gap: {err}")
        return 2
    fer, stored = result["fer2013"], result["fer2013"]["stored_crops"]
    print(f"FER2013 PublicTest, {stored['faces']} faces: stored crops {stored['accuracy']:.4f} accuracy; "
          f"{args.detector} found {fer['found_share']:.1%} of them in scenes")
    for name, entry in fer.items():
        if isinstance(entry, dict) and "accuracy" in entry and name != "stored_crops":
            print(f"  {name:22s} accuracy {entry['accuracy']:.4f}  macro F1 {entry['macro_f1']:.4f}  predicted sad "
                  f"{entry['predicted_share']['sad']:.3f} (true {entry['true_share']['sad']:.3f}), "
                  f"neutral called sad {entry['neutral_called_sad']:.3f}")
    ck = result["ckplus48"]
    print(f"CK+48 zero-shot, {ck['frames']} frames ({', '.join(ck['left_out'])} left out): "
          f"accuracy {ck['accuracy']:.4f}, recall {ck['recall']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
