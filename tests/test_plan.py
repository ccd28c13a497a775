"""``--plan`` on a one-notebook repository of synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_utils import devices
from fer_utils.report import plan
from fer_utils.report.runner import main

NOTEBOOK_CODE = """
import numpy as np
import pandas as pd
from fer_utils.data import FaceData
from fer_utils.experiments import Splits, run_experiment
from fer_utils.report.notebook import notebook_context
from fer_utils.train import TrainConfig

ctx = notebook_context(profile, device)
rng = np.random.default_rng(0)
labels = rng.integers(0, 3, 64)
images = (rng.integers(0, 90, (64, 48, 48)) + 60 * labels[:, None, None]).astype(np.uint8)
meta = pd.DataFrame({"split": "", "subject": "", "sequence": np.arange(64).astype(str), "frame": 0, "source": "x"})
splits = Splits(FaceData(images, labels, ["a", "b", "c"], meta, name="toy"))
cfg = TrainConfig(batch_size=32, augment="none")
small = run_experiment("small", "simple_cnn", None, splits, cfg.__class__(**{**cfg.to_dict(), "epochs": 1}),
                       ctx.results_dir, progress=False)
long = run_experiment("long", "simple_cnn", None, splits, cfg.__class__(**{**cfg.to_dict(), "epochs": EPOCHS}),
                      ctx.results_dir, progress=False)
ctx.figure("toy").write_bytes(b"not in figures/")
ctx.not_run("huge", "over the limit")
assert long["complete"], "a stand-in"  # fails on a stand-in: the cell is skipped
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository root holding one training notebook (``03_toy``) whose second run lasts ``EPOCHS`` epochs."""
    def make(epochs: int, code: str = NOTEBOOK_CODE):
        (tmp_path / "pyproject.toml").write_text("")
        (tmp_path / "fer_utils").mkdir(exist_ok=True)
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
                  "source": "profile = None\ndevice = 'auto'"},
                 {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                  "source": code.replace("EPOCHS", str(epochs))}]
        (tmp_path / "notebooks" / "03_toy.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}}))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr("fer_utils.report.runner.check_datasets", lambda: [])
        return tmp_path
    return make


def _plan_rows(root):
    recorder = plan.make_plan("smoke", root, plan.Rates(images_per_s={"simple_cnn": 1000.0}))
    return {row.name: row for row in recorder.rows.values()}


def _bench(root, precision="cuda bf16"):
    """``bench train`` figures: simple_cnn trains 1,000 images/s in ``precision``."""
    bench = root / plan.bench_file(precision)
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(json.dumps({"simple_cnn": {"pipeline_images_per_s": 1000.0}}))


def test_plan_lists_experiments_writes_nothing_then_shows_them_stored(repo, capsys):
    root = repo(epochs=2)
    _bench(root)
    assert main(["--plan", "--smoke", "1"]) == 0
    out = capsys.readouterr().out
    assert "small" in out and "long" in out and "(bench)" in out and "to train:   2" in out
    assert "cells that failed" in out and "03 cell 2: AssertionError: a stand-in" in out
    assert "not run in this profile (declared by the notebooks):\n  03 huge: over the limit" in out
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "notebooks/03_toy.ipynb", "pyproject.toml", "results/bench/train-cuda-bf16.json"]
    rows = _plan_rows(root)
    assert rows["small"].work.items == 64 and rows["long"].work.epochs == 2 and rows["small"].forward_flops > 0
    assert not rows["small"].cached and rows["long"].seconds == pytest.approx(64 * 2 / 1000)

    assert main(["--smoke", "1", "--device", "cpu", "--engine", "script"]) == 0  # trains both, caches them
    capsys.readouterr()
    assert main(["--plan", "--smoke", "1"]) == 0
    assert "to train:   0" in capsys.readouterr().out
    assert all(row.cached for row in _plan_rows(root).values())


def test_the_cpu_profile_plans_with_the_benchmark_of_this_cpus_precision(repo, capsys, monkeypatch):
    root = repo(epochs=3)
    _bench(root, "cpu bf16")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # an AVX2-only CPU trains in fp32
    assert main(["--plan", "--profile", "cpu"]) == 0
    assert "(bench)" not in capsys.readouterr().out  # bf16 rates are not this CPU's
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert main(["--plan", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(bench)" in out and "small" in out
    assert "limits of this profile: 2 h per experiment (0 over: none); 12 h in all" in out
    assert main(["--plan", "--profile", "cpu", "--bench", str(root / "absent.json")]) == 0
    assert "(bench)" not in capsys.readouterr().out  # FLOPs at the assumed rate
    assert main(["--plan", "--profile", "cpu", "--bench", str(root / "absent.json"), "--tflops", "1e-9"]) == 0
    slow = capsys.readouterr().out
    assert "OVER 2 h" in slow and "12 h in all" in slow and "h of the machine: OVER)" in slow  # the cpu profile's limits


def test_prune_removes_only_stored_results_no_request_uses(repo, capsys):
    root = repo(epochs=2)
    results = root / "scratch" / "smoke" / "results"
    results.mkdir(parents=True)
    stale = [results / "long-0123abcd", results / "gone-89abcdef.json", results / "gone-89abcdef.folds"]
    kept = [results / "frame_cnn_w16-trunk.pt", results / "03_table.csv"]
    for path in stale[:1] + stale[2:]:
        path.mkdir()
    for path in stale[1:2] + kept:
        path.write_text("x")
    assert main(["--plan", "--prune", "--smoke", "1"]) == 1  # a cell fails on a stand-in: requests unknown
    assert all(p.exists() for p in stale + kept)
    assert main(["--plan", "--prune", "--smoke", "1", "--only", "03"]) == 2
    assert main(["--plan", "--prune"]) == 2  # the full profile's results/ holds runs no plan lists
    assert main(["--smoke", "1", "--device", "cpu", "--engine", "script"]) == 0  # trains both
    capsys.readouterr()
    assert main(["--plan", "--prune", "--smoke", "1"]) == 0
    assert "removing scratch/smoke/results/long-0123abcd" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert sorted(p.name.rsplit("-", 1)[0] for p in results.glob("*-*") if p.is_dir()) == ["long", "small"]


def test_missing_runs_are_estimated_from_the_stored_runs_of_their_model(repo, capsys):
    """Once "small" (1 epoch) is stored, its recorded seconds are its cost, and a missing 3-epoch "long" of the
    same model and data is estimated at small's FLOP/s: three times small's seconds, marked (runs)."""
    root = repo(epochs=1)
    assert main(["--smoke", "1", "--device", "cpu", "--engine", "script"]) == 0  # trains both (same config)
    repo(epochs=3)
    capsys.readouterr()
    rows = _plan_rows(root)
    small, long = rows["small"], rows["long"]
    metrics = json.loads((small.path / "metrics.json").read_text())
    stored = metrics["train_seconds"] * metrics["cpu_threads"] / metrics["cpu_cores"]  # machine seconds
    assert small.cached and small.rate_source == "stored" and small.seconds == pytest.approx(stored)
    assert not long.cached and long.rate_source == "runs" and long.seconds == pytest.approx(3 * stored)
    assert main(["--plan", "--smoke", "1"]) == 0
    assert "(stored)" in (out := capsys.readouterr().out) and "(runs)" in out


def test_stored_seconds_count_the_share_of_the_machine_a_run_used(tmp_path):
    """Two one-thread runs side by side on 2 cores each cost half their wall time; a run that recorded no
    threads counts at the profile's share; no recorded time, or a broken file, is no figure."""
    def run(name: str, **metrics) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
        return tmp_path / name

    assert plan.stored_machine_seconds(run("side", train_seconds=100.0, cpu_threads=1, cpu_cores=2)) == 50.0
    assert plan.stored_machine_seconds(run("alone", train_seconds=100.0, cpu_threads=4, cpu_cores=2)) == 100.0
    assert plan.stored_machine_seconds(run("old", train_seconds=100.0), unrecorded_share=0.5) == 50.0
    assert plan.stored_machine_seconds(run("untimed", train_seconds=float("nan"))) is None
    assert plan.stored_machine_seconds(tmp_path / "absent") is None
