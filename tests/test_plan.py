"""``--plan``, ``--budget-minutes`` and ``--pack``/``--unpack`` on a one-notebook repository of synthetic data."""
from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from fer_utils.report import pack as packing
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
print(long["test"]["accuracy"])  # fails on a stand-in: the cell is skipped
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


def _bench(root):
    """``bench train`` figures: simple_cnn trains 1,000 images/s."""
    bench = root / "results" / "bench" / "train-cuda.json"
    bench.parent.mkdir(parents=True)
    bench.write_text(json.dumps({"simple_cnn": {"pipeline_images_per_s": 1000.0}}))


def test_plan_lists_experiments_writes_nothing_and_budget_trains_what_fits(repo, capsys):
    root = repo(epochs=100_000)
    _bench(root)
    assert main(["--plan", "--smoke", "1"]) == 0
    out = capsys.readouterr().out
    assert "small" in out and "long" in out and "(bench)" in out and "to train:   2" in out
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "notebooks/03_toy.ipynb", "pyproject.toml", "results/bench/train-cuda.json"]
    rows = _plan_rows(root)
    assert rows["small"].work.items == 64 and rows["long"].work.epochs == 100_000 and rows["small"].forward_flops > 0

    # 0.5 minutes: "small" (0.06 s at 1000 images/s) fits, "long" (74 days) does not and is not started
    assert main(["--budget-minutes", "0.5", "--smoke", "1", "--device", "cpu", "--pack", str(root / "pack")]) == 0
    out = capsys.readouterr().out
    assert "budget: training small" in out and "budget: training long" not in out
    assert "cells that failed" in out and "03 cell 2: TypeError" in out  # long["test"] of a stand-in
    rows = _plan_rows(root)
    assert rows["small"].cached and not rows["long"].cached
    assert not (root / "figures").exists()
    parts = sorted((root / "pack").iterdir())
    assert 1 <= len(parts) <= packing.MAX_PARTS and all(p.stat().st_size <= packing.PART_BYTES for p in parts)
    assert sum(p.stat().st_size for p in parts) <= packing.TOTAL_BYTES
    assert f"--unpack {root / 'pack'}" in out


def test_budget_select_trains_only_the_matching_experiments(repo, capsys):
    root = repo(epochs=1)
    _bench(root)
    assert main(["--budget-minutes", "0.5", "--smoke", "1", "--device", "cpu", "--select", "^lo"]) == 0
    out = capsys.readouterr().out
    assert "budget: training long" in out and "budget: training small" not in out
    rows = _plan_rows(root)
    assert rows["long"].cached and not rows["small"].cached
    with pytest.raises(SystemExit):
        main(["--plan", "--select", "small"])
    assert "--select go with --budget-minutes" in capsys.readouterr().err


def test_budget_interrupts_with_resumable_state_and_pack_round_trips(repo, tmp_path_factory, monkeypatch, capsys):
    root = repo(epochs=100_000)
    _bench(root)
    monkeypatch.setattr(plan, "MIN_PARTIAL_S", 0.0)  # start "long" although it cannot finish in 15 s
    started = time.monotonic()  # 15 s: "long" finishes some epochs even on a loaded machine
    assert main(["--budget-minutes", "0.25", "--smoke", "1", "--device", "cpu", "--pack", str(root / "pack")]) == 0
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    for line in "budget: training small", "budget: training long", "budget: stopped after":
        assert line in out, out
    long_dir = next((root / "scratch" / "smoke" / "results").glob("long-*"))
    assert (long_dir / "last.pt").is_file() and not (long_dir / "metrics.json").exists()  # resumable
    long = _plan_rows(root)["long"]  # the next budget counts only the epochs left
    done = len(torch.load(long_dir / "last.pt", weights_only=True)["history"])
    assert long.epochs_done == done > 0 and long.part_left == 1 - done / 100_000
    assert main(["--plan", "--smoke", "1"]) == 0
    assert f"no, after epoch {done}/100000" in capsys.readouterr().out

    other = tmp_path_factory.mktemp("other")
    (other / "pyproject.toml").write_text("")
    (other / "fer_utils").mkdir()
    monkeypatch.chdir(other)
    assert main(["--unpack", str(root / "pack")]) == 0
    made = sorted(p.relative_to(root) for p in (root / "scratch").rglob("*") if p.is_file())
    assert made and all((other / p).read_bytes() == (root / p).read_bytes() for p in made)


def test_the_alarm_repeats_when_code_swallows_it(repo, monkeypatch, capsys):
    """A ``KeyboardInterrupt`` raised in a ``__del__`` is printed and dropped: the alarm comes again."""
    repo(epochs=1, code="import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    pass\n"
                         "print('swallowed')\ntime.sleep(60)\n")
    monkeypatch.setattr(plan, "ALARM_REPEAT_S", 0.5)
    started = time.monotonic()
    assert main(["--budget-minutes", "0.05", "--smoke", "1", "--device", "cpu"]) == 0  # 2.7 s, then 0.5 s
    assert time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert "swallowed" in out and "budget: stopped after" in out, out


def test_a_cell_failing_after_the_alarm_stops_the_budget_run():
    """Library code can turn the alarm's KeyboardInterrupt into another error (torch.save did): once
    the alarm went off, a failing cell stops the run; before it, the cell is recorded and skipped."""
    recorder = plan.BudgetRecorder(plan.Rates(), deadline=time.monotonic() + 60)
    recorder.notebook = "04"
    recorder.cell_failed(3, ValueError("a stand-in has no history"))
    with pytest.raises(KeyboardInterrupt):
        recorder.interrupt(signal.SIGALRM, None)
    with pytest.raises(KeyboardInterrupt):
        recorder.cell_failed(5, RuntimeError("unexpected pos 46 vs 0"))
    assert recorder.failed_cells == ["04 cell 3: ValueError: a stand-in has no history"]


def test_pack_leaves_out_what_does_not_fit_and_unpack_refuses_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(packing, "PART_BYTES", 4096)
    monkeypatch.setattr(packing, "MAX_PARTS", 2)
    (tmp_path / "results").mkdir()
    small, big = tmp_path / "results" / "a.json", tmp_path / "results" / "last.pt"
    small.write_text("{}")
    big.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    parts, left_out = packing.pack([small, big], tmp_path, tmp_path / "pack")
    assert left_out == [big] and len(parts) <= 2
    monkeypatch.setattr(packing, "MAX_PARTS", 8)  # 8 parts would hold it, a share of 6000 bytes does not
    assert packing.pack([small, big], tmp_path, tmp_path / "shared", limit=6000)[1] == [big]
    assert packing.pack([small, big], tmp_path, tmp_path / "whole")[1] == []
    with pytest.raises(packing.PackError, match="empty or new folder"):
        packing.pack([small], tmp_path, tmp_path / "pack")
    target = tmp_path / "elsewhere"
    assert packing.unpack(tmp_path / "pack", target) == ["results/a.json"]
    assert "results/last.pt" in capsys.readouterr().out  # the note names what was left out
    assert main(["--unpack", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: --unpack")
