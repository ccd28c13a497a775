"""The CPU fast path: bf16 autocast where the CPU has it natively, channels-last for 2-D convnets,
fp32 elsewhere (said once), refused dtypes and precision changes on resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fer_utils import devices
from fer_utils.cli import main
from fer_utils.errors import CheckpointError, UnsupportedPrecisionError
from fer_utils.data import FaceData
from fer_utils.devices import Precision, resolve_precision, uses_channels_last
from fer_utils.evaluate import predict_proba
from fer_utils.models import create_model
from fer_utils.train import TrainConfig, fit
from fer_utils.train.engine import TrainStep


def faces(n: int, seed: int = 0) -> FaceData:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    images = rng.integers(0, 60, (n, 16, 16), dtype=np.uint8)
    for i, y in enumerate(labels):  # a bright square whose place is the class
        images[i, 2 * y:2 * y + 4, 4:10] = 230
    meta = pd.DataFrame({"split": "", "subject": "", "sequence": np.arange(n).astype(str), "frame": 0,
                         "source": "synthetic"})
    return FaceData(images, labels, tuple(f"c{k}" for k in range(7)), meta, name="squares")


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 7))


def test_cpu_precision_follows_native_bf16(monkeypatch, capsys):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("cpu").label == "cpu bf16"
    assert resolve_precision("cpu", amp=False) == Precision("cpu") and Precision("cpu").label == "cpu fp32"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(devices, "_ANNOUNCED", set())
    assert resolve_precision("cpu").dtype is None and resolve_precision("cpu").dtype is None
    err = capsys.readouterr().err
    assert err.count("no native bf16") == 1 and "fp32" in err  # said once, not per call
    with pytest.raises(UnsupportedPrecisionError, match="float16 cannot run on the CPU"):
        resolve_precision("cpu", amp_dtype="float16")


def test_the_flags_of_this_cpu_decide(monkeypatch, tmp_path):
    devices.cpu_has_native_bf16.cache_clear()
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        flags = []
    assert devices.cpu_has_native_bf16() == any(f in flags for f in devices.NATIVE_BF16_FLAGS)


def test_channels_last_only_for_2d_convnets():
    assert uses_channels_last(small_cnn())
    assert not uses_channels_last(nn.Sequential(nn.Conv3d(1, 4, 3), nn.Flatten()))
    assert not uses_channels_last(nn.Linear(4, 2))
    step = TrainStep(nn.Conv3d(1, 2, 3), torch.optim.SGD(nn.Conv3d(1, 2, 3).parameters(), lr=0.1),
                     nn.CrossEntropyLoss(), TrainConfig(), torch.device("cpu"))
    assert not step.channels_last  # the default asks for it, a 3-D model ignores it


def test_bf16_training_learns_records_its_precision_and_refuses_a_changed_one(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    train, val = faces(224), faces(70, seed=1)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=0.05, augment="none")
    result = fit(small_cnn(), train, val, cfg, run_dir=tmp_path, progress=False)
    assert result.best_val_acc > 0.5  # chance is 1/7
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "cpu bf16"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["precision"] == "cpu bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # the same run on another CPU
    with pytest.raises(CheckpointError, match="trained in cpu bf16 and would go on in cpu fp32"):
        fit(small_cnn(), train, val, TrainConfig(epochs=6, batch_size=32, lr=0.05, augment="none"),
            run_dir=tmp_path, progress=False, resume=True)


def test_bf16_inference_agrees_with_fp32():
    torch.manual_seed(0)
    model = create_model("vgg_small").eval()
    images = faces(64).images.repeat(3, axis=1).repeat(3, axis=2)  # 48x48
    fast = predict_proba(model, images, tta="tencrop")
    exact = predict_proba(model, images, tta="tencrop", amp=False)
    assert np.abs(fast - exact).max() < 0.02
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.95


def test_train_refuses_float16_on_cpu_in_one_line(tmp_path, capsys):
    code = main(["train", "--model", "simple_cnn", "--subset", "50", "--out", str(tmp_path / "run"),
                 "--device", "cpu", "--amp-dtype", "float16", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "float16 cannot run on the CPU" in err[0], err
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".lock"]  # nothing written but the (released) lock file
