"""Voting, subject-independent folds, the cross-validation runner and the ``crossval`` command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fer_utils.cli import main
from fer_utils.experiments.cache import config_hash
from fer_utils.experiments.crossval import CrossvalResult, cached_crossval, comparison_table, make_folds, run_crossval
from fer_utils.data import FaceData, make_clips, subject_holdout, subset_subjects
from fer_utils.evaluate import predict_proba
from fer_utils.evaluate.voting import majority_vote, sum_vote, window_vote
from fer_utils.models import create_model
from fer_utils.train import TrainConfig, fit
from fer_utils.train.batched import fit_folds

# --- voting -------------------------------------------------------------------------------

# Two clips of 3 frames, 3 classes. Clip 0: frames vote 0, 0, 2 but class 2 has the largest sum.
# Clip 1: votes 0, 1, 2 (a three-way tie) -> summed probability decides (class 1).
FRAME_PROBS = np.array([
    [[0.40, 0.30, 0.30], [0.40, 0.30, 0.30], [0.00, 0.00, 1.00]],
    [[0.50, 0.10, 0.40], [0.00, 0.90, 0.10], [0.20, 0.35, 0.45]],
])


def test_majority_vote_with_tie_break():
    assert majority_vote(FRAME_PROBS).tolist() == [0, 1]
    # two-way tie (1 vote each for classes 0 and 1, T=2): larger summed probability wins
    assert majority_vote(np.array([[[0.9, 0.1], [0.45, 0.55]]])).tolist() == [0]
    assert majority_vote(np.array([[[0.6, 0.4], [0.1, 0.9]]])).tolist() == [1]


def test_sum_vote():
    # sums: clip 0 -> (0.8, 0.6, 1.6); clip 1 -> (0.7, 1.35, 0.95)
    assert sum_vote(FRAME_PROBS).tolist() == [2, 1]


def test_window_vote_groups_sequences_in_order_of_appearance():
    window_probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.55, 0.45], [0.9, 0.1]])
    ids = np.array(["b", "a", "a", "b", "b", "c"])
    seqs, labels = window_vote(window_probs, ids)  # b: sums (1.85, 1.15) -> 0; a -> 1; c -> 0
    assert seqs.tolist() == ["b", "a", "c"] and labels.tolist() == [0, 1, 0]
    # majority over windows can differ from the sum: votes 0, 0, 1 but sums (1.1, 1.9)
    probs = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    assert window_vote(probs, np.array([1, 1, 1]), method="majority")[1].tolist() == [0]
    assert window_vote(probs, np.array([1, 1, 1]), method="sum")[1].tolist() == [1]
    seqs, labels = window_vote(np.array([[0.6, 0.4], [0.3, 0.7]]), np.array([7, 7]), method="majority")
    assert seqs.tolist() == [7] and labels.tolist() == [1]  # tie 1-1, sums (0.9, 1.1)


def test_window_vote_over_frames_of_all_windows():
    # sequence s: two windows of 2 frames; frame votes 0, 1, 1, 0 -> tie, sums (1.63, 2.37) -> 1
    probs = np.array([[[0.51, 0.49], [0.4, 0.6]], [[0.2, 0.8], [0.52, 0.48]]])
    seqs, labels = window_vote(probs, np.array(["s", "s"]), method="majority")
    assert labels.tolist() == [1]
    assert window_vote(probs, np.array(["s", "s"]), method="sum")[1].tolist() == [1]


def test_voting_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        majority_vote(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="N sequence ids"):
        window_vote(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="method must be one of"):
        window_vote(np.zeros((4, 3)), np.zeros(4), method="max")


# --- folds on the real CK+48 ----------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("loso", [False, True])
def test_folds_are_subject_independent_and_cover_every_clip(ckplus48_clips, loso):
    clips = ckplus48_clips
    assert clips.images.shape == (327, 3, 48, 48) and len(clips.classes) == 7
    folds = make_folds(clips, k=10, seed=0, loso=loso)
    assert len(folds) == (len(set(clips.subjects)) if loso else 10)
    subjects = clips.subjects
    for train, test in folds:
        assert not set(subjects[train]) & set(subjects[test])
        assert len(train) + len(test) == len(clips)
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(clips)))  # every clip tested exactly once


@pytest.mark.realdata
def test_short_training_beats_chance(ckplus48_clips):
    """A small early-fusion model, 10 epochs on 70 % of the subjects, well above 1/7 on the rest."""
    train_idx, test_idx = subject_holdout(ckplus48_clips, test_size=0.3, seed=0)
    train, test = ckplus48_clips.subset(train_idx), ckplus48_clips.subset(test_idx)
    torch.manual_seed(0)
    model = create_model("early_fusion", num_classes=7, num_frames=3, width=8)
    cfg = TrainConfig(epochs=10, batch_size=32, lr=3e-3, optimizer="adamw", augment="light")
    fitted = fit(model, train, None, cfg, device="cpu", progress=False)
    accuracy = (predict_proba(fitted.model, test).argmax(1) == test.labels).mean()
    print(f"early_fusion width 8, 10 epochs: {100 * accuracy:.1f} % on {len(test)} held-out clips")
    assert accuracy > 0.45  # chance 1/7, majority class 25 %; about 0.72 seen


# --- the runner on synthetic sequences ------------------------------------------------------

def synthetic_frames(subjects: int = 8, classes: int = 3, frames: int = 5) -> FaceData:
    """Each subject has one sequence per class; class c shows a bright band at rows 8c..8c+8."""
    rng = np.random.default_rng(0)
    images, labels, rows = [], [], []
    for s in range(subjects):
        for c in range(classes):
            for f in range(frames):
                image = rng.integers(0, 60, (48, 48), dtype=np.uint8)
                image[8 * c:8 * c + 8] = 200
                images.append(image)
                labels.append(c)
                rows.append({"split": "", "subject": f"S{s:03d}", "sequence": f"S{s:03d}_{c}", "frame": f,
                             "source": f"synthetic/{s}/{c}/{f}"})
    return FaceData(np.stack(images), np.array(labels), ("angry", "happy", "surprise"), pd.DataFrame(rows),
                    name="synthetic")


FAST = TrainConfig(epochs=2, batch_size=16, lr=3e-3, optimizer="adamw", augment="none")


def test_run_crossval_single_frame_reports_votes(tmp_path):
    clips = make_clips(synthetic_frames(), length=3)
    result = run_crossval("single_frame", clips, FAST, k=4, model_kwargs={"width": 4}, device="cpu", progress=False)
    assert result.protocol == "4-fold" and len(result.folds) == 4
    assert sorted(result.predictions["sequence"]) == sorted(clips.meta["sequence"])
    assert result.confusion.sum() == len(clips)
    assert result.trainable_params == sum(p.numel() for p in create_model("single_frame", 3, width=4).parameters())
    for fold in result.folds:
        assert set(fold.vote_accuracy) == {"majority", "sum"}
        assert fold.n_train + fold.n_test == len(clips) and fold.train_seconds > 0 and fold.epochs == 2
    p = result.predictions
    for fold in result.folds:  # each fold's scores, counted by hand from its saved predictions
        rows = p[p["fold"] == fold.fold]
        assert fold.n_test == len(rows) and fold.accuracy == (rows["y_pred"] == rows["y_true"]).mean()
        assert fold.vote_accuracy["sum"] == (rows["vote_sum"] == rows["y_true"]).mean()
    summary = result.summary()
    assert summary["accuracy_mean"] == pytest.approx(np.mean([f.accuracy for f in result.folds]))
    assert summary["pooled_accuracy"] == (p["y_pred"] == p["y_true"]).mean()
    path = result.to_json(tmp_path / "single_frame.json")
    loaded = CrossvalResult.from_json(path)
    assert loaded.summary() == pytest.approx(summary)
    assert json.loads(path.read_text())["confusion"] == result.confusion.tolist()
    table = comparison_table([result, loaded])
    assert list(table["model"]) == ["single_frame"] * 2
    assert {"trainable_params", "train_seconds_per_fold", "accuracy_mean", "accuracy_std"} <= set(table.columns)


def test_run_crossval_resumes_per_fold(tmp_path, monkeypatch):
    import fer_utils.experiments.crossval as crossval

    clips = make_clips(synthetic_frames(subjects=4), length=3)
    cfg = TrainConfig(**{**FAST.to_dict(), "epochs": 1})
    full = run_crossval("early_fusion", clips, cfg, k=2, model_kwargs={"width": 4}, device="cpu", progress=False,
                        fold_dir=tmp_path / "folds")
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["fold0.json", "fold1.json"]
    (tmp_path / "folds" / "fold1.json").unlink()  # interrupted during fold 1
    trained = []
    monkeypatch.setattr(crossval, "fit", lambda *a, **k: trained.append(1) or fit(*a, **k))
    resumed = run_crossval("early_fusion", clips, cfg, k=2, model_kwargs={"width": 4}, device="cpu",
                           progress=False, fold_dir=tmp_path / "folds")
    assert len(trained) == 1  # fold 0 was reused, only fold 1 retrained
    assert [f.accuracy for f in resumed.folds] == [f.accuracy for f in full.folds]
    pd.testing.assert_frame_equal(resumed.predictions, full.predictions, check_dtype=False)
    other = run_crossval("early_fusion", clips, cfg, k=2, seed=1, model_kwargs={"width": 4}, device="cpu",
                         progress=False, fold_dir=tmp_path / "folds")
    assert len(trained) == 3 and len(other.folds) == 2  # other settings: nothing reused


def test_run_crossval_sliding_windows_vote_per_sequence():
    clips = make_clips(synthetic_frames(subjects=4), length=3, window="sliding")  # 3 windows per sequence
    assert len(clips) == 3 * 12
    cfg = TrainConfig(**{**FAST.to_dict(), "early_stopping_patience": 1})
    result = run_crossval("early_fusion", clips, cfg, model_kwargs={"width": 4}, device="cpu", progress=False,
                          loso=True)
    assert result.protocol == "loso" and len(result.folds) == 4
    assert len(result.predictions) == 12 and result.predictions["sequence"].is_unique
    for fold in result.folds:
        assert fold.n_test == 3 and len(fold.test_subjects) == 1 and fold.n_val > 0
        assert fold.n_train + fold.n_val == 3 * 9


def test_run_crossval_rejects_image_models_and_stills():
    clips = make_clips(synthetic_frames(subjects=4), length=3)
    with pytest.raises(ValueError, match="not a clip model"):
        run_crossval("frame_cnn", clips, FAST, k=2)
    with pytest.raises(ValueError, match="needs clips"):
        run_crossval("single_frame", synthetic_frames(subjects=4), FAST, k=2)


# --- the command ----------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:The least populated class")  # 12 subjects: some classes are rare
def test_crossval_command_smoke(data_dir, tmp_path):
    out = tmp_path / "cv"
    status = main([
        "crossval", "--models", "early_fusion,single_frame", "--data", "ckplus48", "--data-dir", str(data_dir),
        "--subset-subjects", "12", "--folds", "3", "--epochs", "1", "--model-kwargs", '{"width": 4}',
        "--out", str(out), "--device", "cpu", "--quiet",
    ])
    assert status == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["model"]) == ["early_fusion", "single_frame"]
    assert (out / "early_fusion.json").is_file() and (out / "single_frame.json").is_file()
    assert CrossvalResult.from_json(out / "single_frame.json").protocol == "3-fold"


def test_cached_crossval_stores_by_config_hash_and_reuses(tmp_path, monkeypatch):
    import fer_utils.experiments.crossval as crossval

    clips = make_clips(synthetic_frames(subjects=4), length=3)
    cfg = TrainConfig(**{**FAST.to_dict(), "epochs": 1})
    args = dict(k=2, model_kwargs={"width": 4}, device="cpu", progress=False)
    first, hit = cached_crossval("cv", "early_fusion", clips, cfg, tmp_path, **args)
    config = {"model": "early_fusion", "kwargs": {"width": 4}, "train": cfg.identity(), "k": 2, "seed": 0,
              "loso": False, "data": clips.fingerprint(), "init": None}
    assert not hit and [p.name for p in tmp_path.iterdir()] == [f"cv-{config_hash(config)[:8]}.json"]
    monkeypatch.setattr(crossval, "run_crossval", lambda *a, **k: pytest.fail("retrained a stored result"))
    again, hit = cached_crossval("cv", "early_fusion", clips, cfg, tmp_path, **args)
    assert hit and again.summary() == pytest.approx(first.summary())


def test_crossval_from_two_folders_hashes_the_same(tmp_path, monkeypatch):
    """The same cross-validation run from another checkout (init checkpoint and results elsewhere) is found."""
    import shutil

    import fer_utils.experiments.crossval as crossval
    from fer_utils.models.checkpoints import save_checkpoint

    clips = make_clips(synthetic_frames(subjects=4), length=3)
    cfg = TrainConfig(**{**FAST.to_dict(), "epochs": 1})
    here, there = tmp_path / "checkout_a", tmp_path / "checkout_b"
    torch.manual_seed(0)
    init = save_checkpoint(here / "results" / "frame_cnn.pt", create_model("frame_cnn", num_classes=3, width=4),
                           model_name="frame_cnn", classes=list(clips.classes), model_kwargs={"width": 4})
    args = dict(k=2, model_kwargs={"width": 4}, device="cpu", progress=False)
    first, hit = cached_crossval("cv", "early_fusion", clips, cfg, here / "results", init_checkpoint=init, **args)
    assert not hit
    run_crossval("early_fusion", clips, cfg, init_checkpoint=init, fold_dir=here / "folds", **args)  # kept folds
    shutil.copytree(here, there)
    monkeypatch.setattr(crossval, "fit", lambda *a, **k: pytest.fail("retrained a stored result or fold"))
    moved = there / "results" / "frame_cnn.pt"
    again, hit = cached_crossval("cv", "early_fusion", clips, cfg, there / "results", init_checkpoint=moved, **args)
    assert hit and again.summary() == pytest.approx(first.summary())
    resumed = run_crossval("early_fusion", clips, cfg, init_checkpoint=moved, fold_dir=there / "folds", **args)
    assert len(resumed.folds) == 2  # both folds found by the checkpoint's content, not its path


# --- batched cross-validation ---------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:The least populated class")  # 12 subjects: some classes are rare
def test_batched_crossval_matches_fold_by_fold(ckplus48_clips, monkeypatch):
    """``batched=True`` (all folds in one vmapped step) trains each fold as ``fit`` does, on real CK+48.

    12 subjects in 3 folds of 23, 25 and 26 clips: 2, 3 and 3 steps per epoch, so fold 0 has its own
    epoch boundaries and sits out the last 3 steps; dropout, light augmentation, class weights and
    label smoothing are on. Tolerances: the grouped convolutions round differently, and where a
    max-pool window holds equal values (flat image regions) the gradient then goes to another of
    them, so losses drift apart slowly (about 1e-6 here, up to 3e-3 seen for other settings);
    the first epoch and the learning rates agree to rounding.
    """
    import fer_utils.experiments.crossval as crossval

    clips = subset_subjects(ckplus48_clips, 12, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, optimizer="adamw", weight_decay=0.01, augment="light",
                      class_weighting=True, label_smoothing=0.1, amp=False, channels_last=False)  # fp32, one layout
    fitted: dict[str, list] = {"fit": [], "fit_folds": []}
    monkeypatch.setattr(crossval, "fit", lambda *a, **k: fitted["fit"].append(fit(*a, **k)) or fitted["fit"][-1])
    monkeypatch.setattr(crossval, "fit_folds", lambda *a, **k: fitted["fit_folds"].extend(fit_folds(*a, **k))
                        or fitted["fit_folds"])
    args = dict(k=3, model_kwargs={"width": 4}, device="cpu", progress=False)
    one_by_one = run_crossval("early_fusion", clips, cfg, **args)
    batched = run_crossval("early_fusion", clips, cfg, batched=True, **args)
    assert len(fitted["fit"]) == 3 and len(fitted["fit_folds"]) == 3  # the batched run never called fit
    folds = make_folds(clips, k=3, seed=0)
    assert [len(fold.history) for fold in fitted["fit_folds"]] == [3, 3, 3]
    assert [len(train) // cfg.batch_size for train, _ in folds] == [2, 3, 3]
    for (_, test_idx), ref, got in zip(folds, fitted["fit"], fitted["fit_folds"]):
        assert got.history["lr"].tolist() == pytest.approx(ref.history["lr"].tolist(), rel=1e-12)
        assert got.history["train_loss"][0] == pytest.approx(ref.history["train_loss"][0], abs=1e-5)
        assert got.history["train_loss"].tolist() == pytest.approx(ref.history["train_loss"].tolist(), abs=1e-3)
        test = clips.subset(test_idx)
        np.testing.assert_allclose(predict_proba(got.model, test), predict_proba(ref.model, test), atol=1e-3)
    assert [f.accuracy for f in batched.folds] == [f.accuracy for f in one_by_one.folds]
    assert [(f.n_train, f.n_test, f.epochs) for f in batched.folds] == \
        [(f.n_train, f.n_test, f.epochs) for f in one_by_one.folds]
    pd.testing.assert_frame_equal(batched.predictions, one_by_one.predictions)


def test_batched_crossval_falls_back_with_a_reason():
    clips = make_clips(synthetic_frames(subjects=4), length=3)
    cfg = TrainConfig(**{**FAST.to_dict(), "early_stopping_patience": 1})
    with pytest.warns(UserWarning, match="not batched: early stopping"):
        result = run_crossval("early_fusion", clips, cfg, k=2, model_kwargs={"width": 4}, device="cpu",
                              progress=False, batched=True)
    assert len(result.folds) == 2
    with pytest.warns(UserWarning, match="no batching rule for GRU/LSTM"):
        run_crossval("cnn_gru", clips, FAST, k=2, model_kwargs={"width": 4}, device="cpu", progress=False,
                     batched=True)


def test_fit_folds_rejects_bad_input():
    train = make_clips(synthetic_frames(subjects=4), length=3)
    models = [create_model("early_fusion", 3, width=4), create_model("early_fusion", 3, width=8)]
    cfg = TrainConfig(**{**FAST.to_dict(), "batch_size": 4})
    with pytest.raises(ValueError, match="one training set per model"):
        fit_folds(models, [train], cfg, device="cpu")
    with pytest.raises(ValueError, match="one architecture"):
        fit_folds(models, [train, train], cfg, device="cpu")
    with pytest.raises(ValueError, match="no more training samples than one batch"):
        fit_folds(models[:1], [train.subset(np.arange(4))], cfg, device="cpu")
