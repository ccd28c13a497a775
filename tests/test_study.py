"""Study tables over mixed run folders, model selection by validation, and shipping a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_utils.cli import main
from fer_utils.data import FaceData
from fer_utils.experiments import DataSpec, Splits, run_experiment, ship_model
from fer_utils.experiments.study import load_results, rank_by_validation, results_table
from fer_utils.labels import CANONICAL_CLASSES as CLASSES
from fer_utils.train import TrainConfig


@pytest.mark.realdata
def test_results_table_mixes_command_and_notebook_runs(tmp_path, data_dir):
    code = main(["train", "--model", "simple_cnn", "--data", "fer2013", "--data-dir", str(data_dir),
                 "--val-split", "holdout", "--epochs", "1", "--batch-size", "32", "--subset", "64",
                 "--out", str(tmp_path / "cli_cnn"), "--device", "cpu", "--no-progress"])
    assert code == 0 and "config" not in json.loads((tmp_path / "cli_cnn" / "metrics.json").read_text())
    spec = DataSpec("fer2013", val="holdout", test="PublicTest", subset=64)
    notebook = run_experiment("nb_cnn", "simple_cnn", None, spec, TrainConfig(epochs=1, batch_size=32),
                              results_root=tmp_path, data_root=data_dir, progress=False, keep_checkpoint=True)

    table = results_table(tmp_path).set_index("name")
    assert sorted(table.index) == ["cli_cnn", "nb_cnn"]
    assert set(table["model"]) == {"simple_cnn"} and set(table["dataset"]) == {"fer2013"}
    assert set(table["val_split"]) == {"holdout"} and set(table["test_split"]) == {"PublicTest"}
    assert table.loc["cli_cnn", "run_dir"] == str(tmp_path / "cli_cnn")
    assert table.loc["nb_cnn", "run_dir"] == notebook["paths"]["run_dir"]
    assert [r["config"]["train"]["epochs"] for r in load_results(tmp_path)] == [1, 1]


def test_rank_by_validation_ignores_test_accuracy_and_test_validated_runs():
    table = pd.DataFrame({"name": ["a", "b", "c", "d"], "val_split": ["holdout", "holdout", "PublicTest", None],
                          "test_split": ["PublicTest"] * 4, "best_val_acc": [0.60, 0.65, 0.90, None],
                          "accuracy": [0.70, 0.60, 0.95, 0.99]})
    assert list(rank_by_validation(table)["name"]) == ["b", "a"]


def _faces(n: int, seed: int) -> FaceData:
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({"split": "", "subject": "", "sequence": np.arange(n).astype(str), "frame": 0, "source": "noise"})
    return FaceData(rng.integers(0, 255, (n, 24, 24)).astype(np.uint8), rng.integers(0, 7, n), CLASSES, meta)


def test_ship_model_refuses_to_overwrite_a_different_file(tmp_path):
    splits = Splits(_faces(64, 0), _faces(16, 1), _faces(16, 2), test_split="noise")
    cfg = TrainConfig(epochs=1, batch_size=32, augment="none")
    first, second = (run_experiment("cnn", "simple_cnn", {"img_size": 24}, splits, cfg, results_root=tmp_path,
                                    seed=seed, progress=False, keep_checkpoint=True)["paths"]["run_dir"]
                     for seed in (0, 1))
    dest = tmp_path / "shipped" / "best_model.pt"
    assert ship_model(first, dest) == dest
    assert ship_model(first, dest) == dest  # the same content again: fine
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ship_model(second, dest)
    assert dest.read_bytes() == (Path(first) / "best.pt").read_bytes()
    ship_model(second, dest, overwrite=True)
    assert dest.read_bytes() == (Path(second) / "best.pt").read_bytes()
