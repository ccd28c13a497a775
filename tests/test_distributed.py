"""DistributedDataParallel on CPU: ``torchrun`` with 2 gloo processes against one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fer_utils.cli import main

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--model", "simple_cnn", "--data", "fer2013", "--subset", "256", "--val-split", "holdout",
         "--epochs", "3", "--batch-size", "32", "--lr", "0.02", "--augment", "light", "--device", "cpu",
         "--no-progress"]


def fer2013_root(tmp_path: Path) -> Path:
    """``$FER_DATA_DIR`` when it holds FER2013, else a small FER2013 CSV written here (a bright
    square whose position encodes the class, on noise: learnable in a few epochs)."""
    root = os.environ.get("FER_DATA_DIR")
    if root and (Path(root) / "fer2013").is_dir():
        return Path(root)
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for i in range(800):
        label = i % 7
        image = rng.integers(0, 90, (48, 48))
        r, c = divmod(label, 3)
        image[4 + 14 * r:16 + 14 * r, 4 + 14 * c:16 + 14 * c] = 230
        rows.append(f"{label},{' '.join(map(str, image.ravel()))},{'Training' if i < 600 else 'PublicTest'}")
    path = tmp_path / "data" / "fer2013" / "fer2013.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(rows) + "\n")
    return path.parent.parent


def torchrun_train(root: Path, out: Path) -> None:
    """``torchrun --nproc_per_node 2 -m fer_utils train ...`` on CPU (gloo)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fer_utils", *TRAIN, "--data-dir", str(root), "--out", str(out)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv").drop(columns="seconds")


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_like_one_and_repeat_exactly(tmp_path):
    root = fer2013_root(tmp_path)
    assert main([*TRAIN, "--data-dir", str(root), "--out", str(tmp_path / "one")]) == 0
    for name in ("ddp", "ddp_again"):
        torchrun_train(root, tmp_path / name)

    one, ddp = history(tmp_path / "one"), history(tmp_path / "ddp")
    assert ddp["train_loss"].iloc[-1] < ddp["train_loss"].iloc[0]  # learns
    # the same global batch of 32 (16 per rank): the loss follows the one-process curve closely
    assert np.abs(ddp["train_loss"] - one["train_loss"]).max() < 0.05
    assert np.abs(ddp["val_loss"] - one["val_loss"]).max() < 0.05
    np.testing.assert_array_equal(ddp["lr"], one["lr"])  # same number of steps per epoch

    pd.testing.assert_frame_equal(ddp, history(tmp_path / "ddp_again"))  # re-run: identical
    first, again = (torch.load(tmp_path / n / "best.pt", weights_only=True)["model_state"] for n in ("ddp", "ddp_again"))
    assert all(torch.equal(first[k], again[k]) for k in first)
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("ddp", "ddp_again")]
    assert metrics[0]["test"] == metrics[1]["test"]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["processes"] == 2
