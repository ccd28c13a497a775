"""The peer row of notebook 10: fer's classifier scored by our code (scripts/peer_fer_accuracy.py)."""
from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "peer_fer_accuracy.py"


def _script():
    spec = importlib.util.spec_from_file_location("peer_fer_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peer_probabilities_from_another_python_are_scored_by_our_metrics(tmp_path, fer2013):
    """A stand-in for fer's venv answers "happy" for every face: the stored accuracy must be the share of
    happy faces in PublicTest, and the stored probabilities one row per test face."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text("import sys, numpy as np\n"
                    "faces, out = sys.argv[sys.argv.index('--worker') + 1:][:2]\n"
                    "n = len(np.load(faces)['images'])\n"
                    "p = np.full((n, 7), 0.01, dtype='float32'); p[:, 3] = 0.94\n"
                    "np.savez(out, probs=p)\n")
    python = tmp_path / "fer-python"
    python.write_text(f"#!/bin/sh\nshift\nexec {sys.executable} {fake} \"$@\"\n")  # drops the script path
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    metrics = _script().measure(str(python), "PublicTest", tmp_path / "peers")
    labels = fer2013.split("PublicTest").labels
    assert metrics["accuracy"] == np.mean(labels == 3)
    stored = json.loads((tmp_path / "peers" / "fer_mini_xception-PublicTest.json").read_text())
    assert stored["test"]["accuracy"] == metrics["accuracy"] and stored["test_split"] == "PublicTest"
    assert np.load(tmp_path / "peers" / "fer_mini_xception-PublicTest.npz")["probs"].shape == (len(labels), 7)


def test_peer_script_needs_the_fer_python(capsys):
    assert _script().main([]) == 2
    assert "--fer-python" in capsys.readouterr().err
