"""Soft labels through the training pipeline, distillation targets from predictions files, and the
evaluate -> train --distill-from round trip on real FER2013."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fer_utils.cli import main
from fer_utils.errors import PredictionsFileError, UsageError
from fer_utils.data import BatchIterator, random_subset
from fer_utils.evaluate.ensemble import Predictions, read_predictions, save_predictions, write_predictions
from fer_utils.experiments.distill import with_distillation_targets
from fer_utils.train import TrainConfig, fit
from test_train import squares, tiny_cnn


def one_hot(labels: np.ndarray, classes: int = 7) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def sourced_squares(n: int, seed: int = 0):
    data = squares(n, size=20, seed=seed)
    data.meta["source"] = [f"squares-{seed}:{i}" for i in range(n)]
    return data


def test_soft_labels_are_checked_follow_subsets_and_change_the_fingerprint():
    data = sourced_squares(50)
    soft = np.full((50, 7), 1 / 7)
    with_soft = replace(data, soft_labels=soft)
    assert with_soft.fingerprint() != data.fingerprint()
    assert with_soft.subset([3, 7]).soft_labels.shape == (2, 7)
    with pytest.raises(ValueError, match="summing to 1"):
        replace(data, soft_labels=np.full((50, 7), 0.5))
    with pytest.raises(ValueError, match=r"must be \(50, 7\)"):
        replace(data, soft_labels=soft[:, :6])


def test_iterator_yields_the_soft_labels_of_its_images():
    data = sourced_squares(40)
    soft = one_hot((data.labels + 1) % 7)  # a marker: the next class
    batches = BatchIterator(data.images, soft, batch_size=16, shuffle=True, seed=3)
    for x, y in batches:
        assert y.dtype == torch.float32 and y.shape[1] == 7
        # the square's position gives the true label; the soft label must be the next class of that item
        items = [int(np.flatnonzero((data.images == (xi[0].numpy() * 255).round().astype(np.uint8)).all((1, 2)))[0])
                 for xi in x]
        assert torch.equal(y.argmax(1), torch.as_tensor((data.labels[items] + 1) % 7))


def test_one_hot_soft_labels_train_like_the_labels_and_other_soft_labels_steer_training():
    train, val = sourced_squares(320), sourced_squares(160, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment="none", label_smoothing=0.1, mixup_alpha=0.2)
    torch.manual_seed(0)
    hard = fit(tiny_cnn(), train, val, cfg, progress=False)
    torch.manual_seed(0)
    soft = fit(tiny_cnn(), replace(train, soft_labels=one_hot(train.labels)), val, cfg, progress=False)
    assert np.allclose(soft.history["train_loss"], hard.history["train_loss"], rtol=1e-4)
    assert np.allclose(soft.history["val_acc"], hard.history["val_acc"])

    shifted = replace(train, soft_labels=one_hot((train.labels + 1) % 7))  # teachers that say "the next class"
    torch.manual_seed(0)
    steered = fit(tiny_cnn(), shifted, val, TrainConfig(epochs=4, batch_size=32, lr=0.05, augment="none"),
                  progress=False)
    assert steered.history["train_acc"].iloc[-1] > 0.9  # agreement with the soft labels' class
    assert steered.history["val_acc"].iloc[-1] < 0.2  # the true labels of unseen items: learnt the shift


def test_distillation_targets_match_items_by_source_and_refuse_files_that_do_not_cover_them(tmp_path):
    data = sourced_squares(60)
    teacher = np.random.default_rng(0).dirichlet(np.ones(7), 60)
    save_predictions(tmp_path / "t.npz", data, teacher)
    part = data.subset(np.arange(10, 30)[::-1])  # another order: matched by source, not position
    made = with_distillation_targets(part, [tmp_path / "t.npz"], 0.25)
    expected = 0.75 * one_hot(part.labels) + 0.25 * teacher[np.arange(10, 30)[::-1]]
    assert np.allclose(made.soft_labels, expected, atol=1e-6) and made.labels is not None

    save_predictions(tmp_path / "u.npz", data, teacher[::-1])  # two teachers: averaged
    both = with_distillation_targets(part, [tmp_path / "t.npz", tmp_path / "u.npz"], 1.0)
    assert np.allclose(both.soft_labels, (teacher + teacher[::-1])[np.arange(10, 30)[::-1]] / 2, atol=1e-6)

    other = sourced_squares(20, seed=5)
    with pytest.raises(PredictionsFileError, match="no teacher probabilities for 20 of the 20 training items"):
        with_distillation_targets(other, [tmp_path / "t.npz"], 0.5)
    record = read_predictions(tmp_path / "t.npz")
    write_predictions(tmp_path / "old.npz", record._replace(sources=None))
    with pytest.raises(PredictionsFileError, match="old.npz: holds no item sources"):
        with_distillation_targets(part, [tmp_path / "old.npz"], 0.5)
    write_predictions(tmp_path / "relabelled.npz", record._replace(y_true=(record.y_true + 1) % 7))
    with pytest.raises(PredictionsFileError, match="20 matched items have other labels"):
        with_distillation_targets(part, [tmp_path / "relabelled.npz"], 0.5)
    write_predictions(tmp_path / "classes.npz", Predictions(record.y_true, record.probs, list("abcdefg"),
                                                           record.items, record.sources))
    with pytest.raises(PredictionsFileError, match="classes"):
        with_distillation_targets(part, [tmp_path / "classes.npz"], 0.5)
    with pytest.raises(UsageError, match=r"weight must be in \(0, 1\]"):
        with_distillation_targets(part, [tmp_path / "t.npz"], 1.5)


@pytest.mark.realdata
def test_teachers_predictions_averaged_then_distilled_into_a_student_on_real_fer2013(tmp_path, data_dir, fer2013,
                                                                                      capsys):
    data = ["--data", "fer2013", "--data-dir", str(data_dir)]
    quick = ["--epochs", "1", "--batch-size", "32", "--subset", "128", "--device", "cpu", "--no-progress"]
    assert main(["train", "--model", "simple_cnn", *data, *quick, "--out", str(tmp_path / "teacher")]) == 0
    for tta in ("none", "flip"):  # two "teachers": the same model without and with flips
        assert main(["evaluate", "--checkpoint", str(tmp_path / "teacher" / "best.pt"), *data, "--split", "Training",
                     "--subset", "128", "--tta", tta, "--save-probs", str(tmp_path / f"{tta}.npz")]) == 0
    assert main(["evaluate", "--probs", str(tmp_path / "none.npz"), str(tmp_path / "flip.npz"),
                 "--save-probs", str(tmp_path / "ensemble.npz")]) == 0
    members = [read_predictions(tmp_path / f"{tta}.npz") for tta in ("none", "flip")]
    ensemble = read_predictions(tmp_path / "ensemble.npz")
    assert np.allclose(ensemble.probs, (members[0].probs + members[1].probs) / 2)
    assert list(ensemble.sources) == list(random_subset(fer2013.split("Training"), 128).meta["source"])

    student = tmp_path / "student"
    assert main(["train", "--model", "simple_cnn", *data, *quick, "--out", str(student),
                 "--distill-from", str(tmp_path / "ensemble.npz"), "--distill-weight", "0.7"]) == 0
    info = json.loads((student / "config.json").read_text())["distillation"]
    assert info["weight"] == 0.7 and len(info["sha256"][0]) == 64
    assert json.loads((student / "metrics.json").read_text())["complete"] is True

    # a hold-out of Training draws other items than the teachers were asked about: refused, one line
    capsys.readouterr()
    assert main(["train", "--model", "simple_cnn", *data, *quick, "--val-split", "holdout",
                 "--out", str(tmp_path / "refused"), "--distill-from", str(tmp_path / "ensemble.npz")]) == 2
    assert "no teacher probabilities for" in capsys.readouterr().err
