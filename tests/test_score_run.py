"""``scripts/score_run.py``: a finished run's view chosen on the hold-out, the test split scored once per view."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import load_script

from fer_utils.cli import main
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def score_run():
    return load_script("score_run")


def test_view_tags_match_the_committed_file_names(score_run):
    assert [score_run.view_tag(p) for p in (0.85, 0.9, 1)] == ["crop085", "crop09", "crop10"]


@pytest.mark.realdata
def test_the_shipped_model_as_a_finished_run_is_scored_and_filed(score_run, tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / "results" / "best_model.pt", run / "best.pt")
    for name in ("config.json", "history.csv", "metrics.json"):
        shutil.copy(REPO / "results" / "vgg_gap_w32-cpu" / name, run / name)
    dest = tmp_path / "scored"
    args = [str(run), "--dest", str(dest), "--subset", "200", "--crop-pcts", "1", "0.9", "0.85", "--device", "cpu"]
    assert score_run.main(args) == 0
    views = json.loads((dest / "holdout_views.json").read_text())
    chosen = views["chosen_crop_pct"]
    assert views["split"] == "holdout" and views["n"] == 200
    assert views["accuracy_by_crop_pct"][str(chosen)] == max(views["accuracy_by_crop_pct"].values())
    tag = score_run.view_tag(chosen)
    single, flip, tencrop = (json.loads((dest / f"metrics_publictest_{name}.json").read_text())
                             for name in (tag, f"{tag}_flip", "tencrop"))
    assert (single["crop_pct"], single["tta"], flip["crop_pct"], flip["tta"]) == (chosen, "none", chosen, "flip")
    assert tencrop["tta"] == "tencrop" and tencrop["split"] == "PublicTest" and tencrop["accuracy"] > 0.55
    scores = json.loads((dest / "scores.json").read_text())
    assert scores["publictest_accuracy"] == {tag: single["accuracy"], f"{tag}_flip": flip["accuracy"],
                                             "tencrop": tencrop["accuracy"]}
    assert {"config.json", "history.csv", "metrics.json", "best_fp16.pt"} <= {p.name for p in dest.iterdir()}
    shipped = load_checkpoint(dest / "best_fp16.pt")
    assert checkpoint_preprocessing(shipped).crop_pct == chosen
    assert all(v.dtype == torch.float16 for v in shipped["model_state"].values() if v.is_floating_point())
    assert f"--crop-pct {chosen}" in capsys.readouterr().out
    assert main(["evaluate", "--probs", str(dest / "predictions_publictest_tencrop.npz")]) == 0  # an ensemble member

    assert score_run.main(args) == 2  # scored already
    assert "already holds scores" in capsys.readouterr().out
    (run / "metrics.json").unlink()
    assert score_run.main([*args[:1], "--dest", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().out.strip() == f"score_run: {run}: unfinished run (no metrics.json); finish it with train --resume first"
    assert not (tmp_path / "other").exists()
