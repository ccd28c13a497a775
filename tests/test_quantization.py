"""int8 inference on a CPU: the calibration stored in a checkpoint, the classifier predict builds from it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_script
from fer_utils.data import training_holdout
from fer_utils.errors import CheckpointError
from fer_utils.models import create_model
from fer_utils.models.checkpoints import load_checkpoint
from fer_utils.models.quantization import calibrate_int8, float_ends, int8_model
from fer_utils.predict.predictor import FacePredictor

SHIPPED = Path(__file__).resolve().parents[1] / "results" / "best_model.pt"


def test_stored_observers_rebuild_the_int8_model_bit_for_bit_and_refuse_another_graph():
    """The calibration is the observers' state: rebuilding from it gives the same int8 model as converting
    right after calibration, which is close to the float model and not identical to it. The first
    convolution and the last linear layer stay in floating point."""
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=7).eval()
    x = torch.randn(64, 1, 48, 48)
    observers = calibrate_int8(model, [x[:32], x[32:]])
    assert observers and all(torch.is_tensor(v) for v in observers.values())
    int8 = int8_model(model, observers, x[:1])
    again = int8_model(model, {k: v.clone() for k, v in observers.items()}, x[:1])
    with torch.no_grad():
        float_out, int8_out = model(x), int8(x)
        assert torch.equal(int8_out, again(x))
    assert 0 < (float_out - int8_out).abs().max() < 0.1 * float_out.abs().max()
    assert float_ends(model) == ["features.0", "classifier.3"]
    modules = dict(int8.named_modules())
    assert type(modules["features.0.0"]) is nn.Conv2d and type(modules["classifier.3"]) is nn.Linear
    assert "quantized" in type(modules["features.3"]).__module__  # the convolutions between are int8
    with pytest.raises(ValueError, match="no batches"):
        calibrate_int8(model, [])
    other = create_model("vgg_small", num_classes=7).eval()
    with pytest.raises(CheckpointError, match="does not fit VGG|does not fit .*graph"):
        int8_model(other, observers, x[:1])


@pytest.mark.realdata
def test_the_shipped_model_runs_int8_on_a_cpu_and_labels_real_faces_as_in_float(fer2013):
    """The shipped checkpoint carries a calibration: predict's classifier is int8 on a CPU, float with
    int8=False, and on real hold-out faces the two agree on nearly every label."""
    assert "int8" in load_checkpoint(SHIPPED)
    int8 = FacePredictor.from_checkpoint(SHIPPED, detector="haar", device="cpu")
    floating = FacePredictor.from_checkpoint(SHIPPED, detector="haar", device="cpu", int8=False)
    assert int8.precision_label == "cpu int8" and floating.precision_label != "cpu int8"
    # int8 weights are packed, not parameters: only the float ends (first conv, last linear) keep theirs
    shapes = sorted(tuple(p.shape) for p in int8.model.parameters())
    assert shapes == [(7,), (7, 256), (32,), (32, 1, 3, 3)]
    _, holdout = training_holdout(fer2013.split("Training"))
    faces, labels = holdout.images[:400], holdout.labels[:400]
    a, b = int8.logits(faces).argmax(1), floating.logits(faces).argmax(1)
    assert (a == b).mean() >= 0.98  # 99.5% for the shipped model
    assert abs((a == labels).mean() - (b == labels).mean()) <= 0.01


@pytest.mark.realdata
def test_calibrate_script_stores_a_calibration_predict_uses(tmp_path, fer2013, capsys):
    path = tmp_path / "model.pt"
    shutil.copy(SHIPPED, path)
    ckpt = load_checkpoint(path)
    del ckpt["int8"]
    torch.save(ckpt, path)
    assert not FacePredictor.from_checkpoint(path, detector="haar", device="cpu").int8
    script = load_script("calibrate_int8")
    quick = ["--checkpoint", str(path), "--faces", "128", "--threads", "2", "--write"]
    assert script.main([*quick, "--subset", "300", "--max-drop", "3", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stored"] and report["calibrated_on"].startswith("fer2013 Training, 128 faces")
    assert report["kept_in_float"] == ["features.0", "classifier.1"]  # vgg_gap's first conv, its linear layer
    for split in ("holdout", "PublicTest"):
        row = report[split]
        assert row["same_label"] > 0.9 and abs(row["float_accuracy"] - row["int8_accuracy"]) < 3
        assert row["float_accuracy"] > 60
    assert "stored the int8 calibration" in capsys.readouterr().out
    stored = load_checkpoint(path)["int8"]
    assert stored["faces"] == 128 and stored["holdout"] == report["holdout"]
    assert FacePredictor.from_checkpoint(path, detector="haar", device="cpu").int8
    # a drop larger than allowed is refused and leaves the checkpoint as it was
    before = path.read_bytes()
    assert script.main([*quick, "--subset", "100", "--max-drop", "-100"]) == 1
    assert "not stored" in capsys.readouterr().out and path.read_bytes() == before
    assert np.isfinite(report["holdout"]["max_probability_difference"])


def test_calibrate_script_says_what_is_wrong_in_one_line(tmp_path, capsys):
    script = load_script("calibrate_int8")
    assert script.main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert script.main(["--checkpoint", str(SHIPPED), "--faces", "0"]) == 2
    said = capsys.readouterr().out.splitlines()
    assert said == [f"calibrate_int8: checkpoint not found: {tmp_path / 'none.pt'}",
                    "calibrate_int8: --faces and --subset must be positive"]
