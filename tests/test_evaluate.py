"""Metrics (against scikit-learn), calibration, TTA, predict_proba, ensembles, checkpoint checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score, confusion_matrix, fbeta_score, precision_recall_fscore_support, top_k_accuracy_score,
)
from torch import nn

from fer_utils.errors import CheckpointError, UsageError
from fer_utils.models.checkpoints import save_checkpoint
from fer_utils.cli import main
from fer_utils.data import FaceData
from fer_utils.evaluate import (
    average_probs, classification_metrics, ensemble_proba, expected_calibration_error, paired_comparison,
    predict_proba, reliability_data, summary_row, tta_views,
)
from fer_utils.evaluate.command import choose_crop_pct, evaluate_checkpoint
from fer_utils.models import create_model

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def random_case(n: int = 400, c: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def faces(n: int = 20, size: int = 48, seed: int = 0) -> FaceData:
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({"split": "PublicTest", "subject": "", "sequence": "", "frame": 0, "source": "x"},
                        index=range(n))
    return FaceData(rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, 7, n), CLASSES, meta)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_metrics_match_sklearn(beta):
    y, probs = random_case()
    pred = probs.argmax(1)
    labels = list(range(7))
    m = classification_metrics(y, probs, CLASSES, beta=beta)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for k in (2, 3):
        assert m[f"top{k}_accuracy"] == pytest.approx(top_k_accuracy_score(y, probs, k=k, labels=labels))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    fb = fbeta_score(y, pred, beta=beta, labels=labels, average=None, zero_division=0)
    for i, name in enumerate(CLASSES):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["fbeta"]) == pytest.approx((p[i], r[i], f[i], fb[i]))
        assert pc["support"] == s[i]
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx((p, r, f))
        assert m[f"{avg}_fbeta"] == pytest.approx(fbeta_score(y, pred, beta=beta, labels=labels, average=avg,
                                                              zero_division=0))
    assert m["confusion"]["counts"] == confusion_matrix(y, pred, labels=labels).tolist()
    np.testing.assert_allclose(m["confusion"]["normalized"], confusion_matrix(y, pred, labels=labels, normalize="true"))
    json.dumps(m, allow_nan=False)  # plain JSON all the way down


def test_metrics_with_absent_class_and_most_confused():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 0])
    probs = np.eye(4)[pred] * 0.7 + 0.075
    m = classification_metrics(y, probs, ("a", "b", "c", "d"))
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "fbeta": 0.0, "support": 0}
    assert m["most_confused"][0] == {"true": "a", "predicted": "b", "count": 2, "rate": pytest.approx(2 / 3)}
    assert [(p["true"], p["predicted"]) for p in m["most_confused"]] == [("a", "b"), ("c", "a"), ("b", "a")]
    assert "top3_accuracy" in m and summary_row(m)["ece"] == m["calibration"]["ece"]
    with pytest.raises(ValueError, match="probs must be"):
        classification_metrics(y, probs[:, :3], ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="labels must be in"):
        classification_metrics(y + 3, probs, ("a", "b", "c", "d"))


def test_ece_perfectly_calibrated_is_zero():
    # In each confidence level p, exactly a fraction p of the items is classified correctly.
    ys, rows = [], []
    for p in (0.3, 0.5, 0.7, 0.9, 1.0):
        for i in range(20):
            row = np.full(4, (1 - p) / 3)
            row[0] = p
            rows.append(row)
            ys.append(0 if i < round(p * 20) else 1)
    y, probs = np.array(ys), np.array(rows)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-12)
    data = reliability_data(y, probs, n_bins=15)
    assert sum(data["count"]) == len(y) and len(data["accuracy"]) == 15


def test_ece_overconfident():
    y = np.array([0, 1] * 50)
    probs = np.tile([0.99, 0.01], (100, 1))
    assert expected_calibration_error(y, probs) == pytest.approx(0.49)


def test_tta_views_shapes():
    x = torch.rand(3, 1, 48, 48)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert torch.equal(flip[1], x.flip(-1))
    crops = tta_views(x, "tencrop")
    assert len(crops) == 10 and all(c.shape == x.shape for c in crops)
    assert torch.equal(crops[5], crops[0].flip(-1))
    constant = torch.full((2, 1, 48, 48), 0.4)
    assert all(torch.allclose(c, constant) for c in tta_views(constant, "tencrop"))
    clips = tta_views(torch.rand(2, 3, 1, 48, 48), "tencrop")
    assert clips[0].shape == (2, 3, 1, 48, 48)
    with pytest.raises(KeyError, match="known"):
        tta_views(x, "rotate")


def test_predict_proba_batches_devices_and_tta():
    data = faces(12)
    torch.manual_seed(0)
    model = create_model("simple_cnn").train()
    probs = predict_proba(model, data, batch_size=5)
    assert probs.shape == (12, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert model.training  # mode restored
    assert np.allclose(probs, predict_proba(model, data.images, batch_size=100), atol=1e-6)
    x = torch.as_tensor(data.images).float().div(255).unsqueeze(1)
    assert np.allclose(probs, predict_proba(model, x), atol=1e-6)

    mirrored = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))  # flip-invariant by construction
    w = mirrored[1].weight.data.view(7, 48, 48)
    mirrored[1].weight.data = ((w + w.flip(-1)) / 2).reshape(7, -1)
    assert np.allclose(predict_proba(mirrored, data, tta="flip"), predict_proba(mirrored, data), atol=1e-6)
    assert predict_proba(model, data.images[:4], tta="tencrop").shape == (4, 7)


def test_ensemble_average(tmp_path):
    data = faces(12)
    torch.manual_seed(0)
    a, b = create_model("simple_cnn"), create_model("simple_cnn")
    pa, pb = predict_proba(a, data), predict_proba(b, data)
    assert np.allclose(ensemble_proba([a, b], data), (pa + pb) / 2, atol=1e-6)
    assert np.allclose(average_probs([pa, pb], weights=[3, 1]), 0.75 * pa + 0.25 * pb, atol=1e-6)
    path = save_checkpoint(tmp_path / "b.pt", b, model_name="simple_cnn", classes=CLASSES)
    assert np.allclose(ensemble_proba([a, path], data), (pa + pb) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        average_probs([pa, pb], weights=[1])


def test_checkpoint_with_other_classes_is_refused(tmp_path):
    data = faces(8)
    other = ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
    path = save_checkpoint(tmp_path / "ck.pt", create_model("simple_cnn"), model_name="simple_cnn", classes=other)
    with pytest.raises(CheckpointError, match="contempt"):
        evaluate_checkpoint(path, data)
    with pytest.raises(CheckpointError):
        ensemble_proba([path], data)
    ok = save_checkpoint(tmp_path / "ok.pt", create_model("simple_cnn"), model_name="simple_cnn", classes=CLASSES)
    result = evaluate_checkpoint(ok, data, tta="flip", device="cpu")
    assert result["n"] == 8 and result["model_name"] == "simple_cnn"


def test_view_choice_breaks_ties_toward_the_least_enlarged_view(tmp_path):
    model = create_model("simple_cnn")
    for parameter in model.parameters():  # a constant model: every view scores the same
        nn.init.zeros_(parameter)
    path = save_checkpoint(tmp_path / "ck.pt", model, model_name="simple_cnn", classes=CLASSES)
    choice = choose_crop_pct(path, faces(16), [0.85, 1.0, 0.9], device="cpu")
    assert choice["chosen_crop_pct"] == 1.0 and list(choice["accuracy_by_crop_pct"]) == ["1.0", "0.9", "0.85"]
    assert len(set(choice["accuracy_by_crop_pct"].values())) == 1
    with pytest.raises(UsageError, match="ten-crop"):
        choose_crop_pct(path, faces(4), [1.0, 0.9], tta="tencrop", device="cpu")


@pytest.mark.realdata
def test_evaluate_cli_chooses_the_view_on_the_holdout_and_refuses_test_splits(tmp_path, data_dir, capsys):
    shipped = str(Path(__file__).parents[1] / "results" / "best_model.pt")
    common = ["evaluate", "--checkpoint", shipped, "--data-dir", str(data_dir), "--device", "cpu", "--subset", "300"]
    assert main([*common, "--split", "holdout", "--crop-pct", "1", "0.85", "0.9", "--out", str(tmp_path / "v.json")]) == 0
    choice = json.loads((tmp_path / "v.json").read_text())
    by_view = choice["accuracy_by_crop_pct"]
    assert choice["split"] == "holdout" and choice["n"] == 300 and list(by_view) == ["1.0", "0.9", "0.85"]
    assert by_view[str(choice["chosen_crop_pct"])] == max(by_view.values())
    assert len(set(by_view.values())) > 1  # the views differ for a crop-trained model
    assert main([*common, "--split", "holdout", "--crop-pct", "0.9", "--out", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["crop_pct"] == 0.9 and one["accuracy"] == by_view["0.9"] == choice["views"]["0.9"]["accuracy"]
    assert f"chosen --crop-pct {choice['chosen_crop_pct']}" in capsys.readouterr().out
    for refused, words in ((["--split", "PublicTest"], "never on 'PublicTest'"), ([], "never on 'PrivateTest'"),
                           (["--split", "holdout", "--tta", "tencrop"], "ten-crop"),
                           (["--split", "holdout", "--save-probs", str(tmp_path / "p.npz")], "one view")):
        assert main([*common, *refused, "--crop-pct", "1", "0.9", "--out", str(tmp_path / "no.json")]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "no.json").exists() and not (tmp_path / "p.npz").exists()


@pytest.mark.realdata
def test_evaluate_cli_refuses_mismatched_checkpoint(tmp_path, data_dir, capsys):
    other = ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
    path = save_checkpoint(tmp_path / "ck.pt", create_model("simple_cnn"), model_name="simple_cnn", classes=other)
    code = main(["evaluate", "--checkpoint", str(path), "--data", "fer2013", "--data-dir", str(data_dir),
                 "--split", "PublicTest", "--out", str(tmp_path / "m.json")])
    assert code == 2 and "differ" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.realdata
def test_evaluate_cli_drops_test_faces_with_a_training_twin(tmp_path, data_dir):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(Path(__file__).parents[1] / "results" / "best_model.pt"), "--data-dir", str(data_dir), "--split",
                 "PublicTest", "--drop-twins-of", "Training", "--subset", "600", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["twins_dropped"] > 20 and metrics["n"] + metrics["twins_dropped"] == 600


def test_paired_comparison_counts_discordant_items_and_mcnemar():
    y_true = np.zeros(10, dtype=int)
    pred_a = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])  # 8 right
    pred_b = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])  # 5 right: 4 only a, 1 only b
    result = paired_comparison(y_true, pred_a, pred_b)
    assert result == {"n": 10, "accuracy_a": 0.8, "accuracy_b": 0.5, "only_a": 4, "only_b": 1,
                      "p_value": pytest.approx(0.375)}
    assert paired_comparison(y_true, pred_a, pred_a)["p_value"] == 1.0


@pytest.mark.realdata
def test_ensemble_is_rescored_from_saved_predictions_without_models(tmp_path, data_dir, capsys):
    """Members' tencrop / flip probabilities saved by evaluate --save-probs, then averaged from the files alone."""
    shipped = str(Path(__file__).parents[1] / "results" / "best_model.pt")
    common = ["evaluate", "--checkpoint", shipped, "--data-dir", str(data_dir), "--split", "PublicTest", "--device", "cpu"]
    single = {}
    for tta in ("tencrop", "flip"):
        out = tmp_path / f"{tta}.json"
        assert main([*common, "--subset", "150", "--tta", tta, "--save-probs", str(tmp_path / f"{tta}.npz"),
                     "--out", str(out)]) == 0
        single[tta] = json.loads(out.read_text())["accuracy"]
    assert "predict (tta tencrop)" in capsys.readouterr().err  # a progress bar over batches
    files = [str(tmp_path / f"{tta}.npz") for tta in ("tencrop", "flip")]
    assert main(["evaluate", "--probs", *files, "--out", str(tmp_path / "ens.json")]) == 0
    result = json.loads((tmp_path / "ens.json").read_text())
    assert list(result["members"].values()) == [single["tencrop"], single["flip"]] and result["n"] == 150
    assert result["member_accuracy_mean"] == pytest.approx(np.mean(list(single.values())))
    with np.load(files[0]) as a, np.load(files[1]) as b:
        hits = ((a["probs"] + b["probs"]).argmax(1) == a["y_true"]).mean()
    assert result["accuracy"] == pytest.approx(hits)
    assert main([*common, "--subset", "100", "--save-probs", str(tmp_path / "other.npz")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--probs", files[0], str(tmp_path / "other.npz")]) == 2  # other items
    assert "re-score members of one split" in capsys.readouterr().err
