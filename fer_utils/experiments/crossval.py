"""Subject-independent cross-validation of clip models (k-fold by subject or leave-one-subject-out).

Each fold trains a fresh model (optionally with its frame-CNN trunk initialised from a
FER2013 ``frame_cnn`` checkpoint) on the fold's training subjects and tests on the others.
The test fold is never seen during training: without early stopping the last epoch is
kept; with ``cfg.early_stopping_patience`` the model is validated on a subject-disjoint part
of the training fold. Sequences cut into several sliding windows are scored once, by
voting across their windows; ``single_frame`` models also report frame-voting accuracies.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from torch import nn

from fer_utils.devices import resolve_device
from fer_utils.files import write_json
from fer_utils.data import FaceData, Preprocessing, leave_one_subject_out, subject_holdout, subject_kfold
from fer_utils.evaluate import predict_proba
from fer_utils.evaluate.metrics import confusion_counts
from fer_utils.evaluate.voting import window_vote
from fer_utils.experiments.cache import Planned, Work, cached
from fer_utils.experiments.runs import architecture
from fer_utils.models import count_parameters, model_and_data, model_entry
from fer_utils.models.pretrained import identify_weight_file, identify_weight_files
from fer_utils.models.temporal import init_frame_cnn_from_checkpoint
from fer_utils.train import FitResult, TrainConfig, fit
from fer_utils.train.batched import batch_refusal, fit_folds

#: Frame-voting rules reported for models with ``frame_logits`` (single_frame).
FRAME_VOTES: tuple[str, ...] = ("majority", "sum")


@dataclass
class FoldResult:
    """One fold: its test subjects, sizes, scores and training time.

    ``n_test`` counts evaluated sequences (one per clip unless sliding windows);
    ``vote_accuracy`` maps a frame-voting rule to its accuracy (single_frame only).
    """

    fold: int
    test_subjects: list[str]
    n_train: int
    n_val: int
    n_test: int
    accuracy: float
    macro_f1: float
    train_seconds: float
    epochs: int
    vote_accuracy: dict[str, float] = field(default_factory=dict)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


@dataclass
class CrossvalResult:
    """All folds of one model family, with pooled per-sequence predictions.

    ``predictions``: one row per evaluated sequence with ``sequence``, ``subject``, ``fold``,
    ``y_true``, ``y_pred`` (and ``vote_<rule>`` for frame voting).
    """

    model_name: str
    dataset: str
    protocol: str
    classes: list[str]
    num_frames: int
    trainable_params: int
    model_kwargs: dict[str, Any]
    config: dict[str, Any]
    init_checkpoint: str | None  # the file's name (no machine path); the config's digest identifies its bytes
    folds: list[FoldResult]
    predictions: pd.DataFrame

    @property
    def confusion(self) -> np.ndarray:
        """``(C, C)`` counts pooled over all folds (rows: true class)."""
        p = self.predictions
        return confusion_counts(p["y_true"].to_numpy(), p["y_pred"].to_numpy(), len(self.classes))

    def summary(self) -> dict[str, float]:
        """Mean/std over folds of accuracy and macro F1, pooled scores, time per fold, votes."""
        acc, acc_std = _mean_std([f.accuracy for f in self.folds])
        f1, f1_std = _mean_std([f.macro_f1 for f in self.folds])
        p = self.predictions
        out = {
            "accuracy_mean": acc, "accuracy_std": acc_std, "macro_f1_mean": f1, "macro_f1_std": f1_std,
            "pooled_accuracy": float((p["y_true"] == p["y_pred"]).mean()),
            "pooled_macro_f1": float(f1_score(p["y_true"], p["y_pred"], average="macro", zero_division=0)),
            "train_seconds_per_fold": float(np.mean([f.train_seconds for f in self.folds])),
        }
        for rule in self.folds[0].vote_accuracy:
            mean, std = _mean_std([f.vote_accuracy[rule] for f in self.folds])
            out[f"{rule}_vote_accuracy_mean"], out[f"{rule}_vote_accuracy_std"] = mean, std
        return out

    def describe(self) -> str:
        """One line: family, protocol, accuracy mean +/- std, macro F1, params, time per fold."""
        s = self.summary()
        text = (f"{self.model_name} ({self.protocol}, {len(self.folds)} folds): accuracy "
                f"{100 * s['accuracy_mean']:.2f} +/- {100 * s['accuracy_std']:.2f} %, macro F1 "
                f"{s['macro_f1_mean']:.3f}, {self.trainable_params:,} params, "
                f"{s['train_seconds_per_fold']:.1f} s/fold")
        votes = [f"{rule} vote {100 * s[f'{rule}_vote_accuracy_mean']:.2f} %" for rule in self.folds[0].vote_accuracy]
        return text + (f" ({', '.join(votes)})" if votes else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the fields, the summary and the pooled confusion matrix."""
        data = {k: v for k, v in asdict(self).items() if k != "predictions"}
        data["summary"] = self.summary()
        data["confusion"] = self.confusion.tolist()
        data["predictions"] = self.predictions.to_dict(orient="list")
        return data

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically (folders created)."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "CrossvalResult":
        """Read a result written by :meth:`to_json`."""
        data = json.loads(Path(path).read_text())
        data.pop("summary"), data.pop("confusion")
        data["folds"] = [FoldResult(**f) for f in data["folds"]]
        data["predictions"] = pd.DataFrame(data["predictions"])
        return cls(**data)


def comparison_table(results: Sequence[CrossvalResult]) -> pd.DataFrame:
    """One row per family: trainable parameters, training time per fold, accuracy mean/std, F1, votes."""
    rows = []
    for r in results:
        s = r.summary()
        rows.append({
            "model": r.model_name, "protocol": r.protocol, "folds": len(r.folds),
            "trainable_params": r.trainable_params, "train_seconds_per_fold": s["train_seconds_per_fold"],
            "accuracy_mean": s["accuracy_mean"], "accuracy_std": s["accuracy_std"],
            "macro_f1_mean": s["macro_f1_mean"], "pooled_accuracy": s["pooled_accuracy"],
            **{f"{rule}_vote_accuracy": s.get(f"{rule}_vote_accuracy_mean", np.nan) for rule in FRAME_VOTES},
        })
    return pd.DataFrame(rows)


class _FrameLogits(nn.Module):
    """Per-frame logits of a model with ``frame_logits``, flattened to ``(B*T, C)`` for ``predict_proba``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.frame_logits(x).flatten(0, 1)


def make_folds(data: FaceData, k: int = 10, seed: int = 0, loso: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-independent folds: ``k`` folds by subject, or one per subject with ``loso``."""
    return leave_one_subject_out(data) if loso else subject_kfold(data, k=k, seed=seed)


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    return float((y_true == y_pred).mean()), float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _evaluate_fold(
    model: nn.Module, test: FaceData, sequences: np.ndarray, fold: int, batch_size: int,
    preprocessing: Preprocessing,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-sequence predictions (voting across windows) and, for frame models, frame-vote accuracies;
    ``preprocessing``: the record the model trained with."""
    probs = predict_proba(model, test, batch_size=batch_size, preprocessing=preprocessing)
    record = pd.DataFrame({"sequence": sequences, "subject": test.subjects, "fold": fold, "y_true": test.labels})
    record = record.drop_duplicates("sequence", ignore_index=True)  # first appearance, as window_vote
    record["y_pred"] = window_vote(probs, sequences)[1]
    votes = {}
    if hasattr(model, "frame_logits"):
        frame_probs = predict_proba(_FrameLogits(model), test, batch_size=batch_size, preprocessing=preprocessing)
        frame_probs = frame_probs.reshape(len(test), test.images.shape[1], -1)
        for rule in FRAME_VOTES:
            record[f"vote_{rule}"] = window_vote(frame_probs, sequences, method=rule)[1]
            votes[rule] = float((record[f"vote_{rule}"] == record["y_true"]).mean())
    return record, votes


def _fold_path(fold_dir: str | os.PathLike, fold: int) -> Path:
    return Path(fold_dir) / f"fold{fold}.json"


def _save_fold(fold_dir: str | os.PathLike | None, fold: int, key: dict[str, Any], result: FoldResult,
               record: pd.DataFrame, params: int) -> None:
    """Store one finished fold (atomically) so that an interrupted run can resume after it."""
    if fold_dir is None:
        return
    payload = {"key": key, "result": asdict(result), "record": record.to_dict(orient="list"), "params": params}
    write_json(_fold_path(fold_dir, fold), payload)


def _load_fold(fold_dir: str | os.PathLike | None, fold: int,
               key: dict[str, Any]) -> tuple[FoldResult, pd.DataFrame, int] | None:
    """A fold stored by :func:`_save_fold` with the same ``key``, or None (absent, other settings, unreadable)."""
    path = None if fold_dir is None else _fold_path(fold_dir, fold)
    if path is None or not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if payload.get("key") != json.loads(json.dumps(key)):
        return None
    return FoldResult(**payload["result"]), pd.DataFrame(payload["record"]), int(payload["params"])


def _init_digest(init_checkpoint: str | os.PathLike | None) -> str | None:
    """The initialising checkpoint by content, not path: the SHA-1 of its bytes (bare, as stored results
    were keyed), or ``missing:<file name>`` when not made yet (see :func:`identify_weight_file`)."""
    return None if init_checkpoint is None else identify_weight_file(init_checkpoint, "sha1").removeprefix("sha1:")


def _model_kwargs(model_kwargs: dict[str, Any] | None, clips: FaceData) -> dict[str, Any]:
    """``model_kwargs`` with the clips' ``num_frames`` and ``img_size`` (an error if they contradict them)."""
    num_frames, (height, _) = clips.images.shape[1], clips.image_size
    kwargs = {"num_frames": num_frames, "img_size": height, **(model_kwargs or {})}
    if kwargs["num_frames"] != num_frames or kwargs["img_size"] != height:
        raise ValueError(f"model_kwargs {model_kwargs} contradict the clips' shape {clips.images.shape[1:]}")
    return kwargs


@dataclass
class _Fold:
    """A fold ready to train: its index, data and fresh model."""

    index: int
    train: FaceData
    val: FaceData | None
    test: FaceData
    test_idx: np.ndarray
    model: nn.Module


def _prepare_fold(model_name: str, kwargs: dict[str, Any], clips: FaceData, cfg: TrainConfig, fold: int,
                  train_idx: np.ndarray, test_idx: np.ndarray, seed: int, val_fraction: float,
                  init_checkpoint: str | os.PathLike | None) -> _Fold:
    """The fold's training (and, with early stopping, validation) part and its model seeded by ``cfg.seed + fold``."""
    train, test, val = clips.subset(train_idx), clips.subset(test_idx), None
    if cfg.early_stopping_patience is not None:
        fit_idx, val_idx = subject_holdout(train, test_size=val_fraction, seed=seed + fold)
        train, val = train.subset(fit_idx), train.subset(val_idx)
    torch.manual_seed(cfg.seed + fold)
    model, train = model_and_data(model_name, train, **kwargs)
    if init_checkpoint is not None:
        init_frame_cnn_from_checkpoint(model, init_checkpoint)
    return _Fold(fold, train, val, test, test_idx, model)


def _fit_folds(folds: list[_Fold], cfg: TrainConfig, device: torch.device, model_name: str,
               kwargs: dict[str, Any], batched: bool) -> Iterator[tuple[_Fold, FitResult]]:
    """Each fold with its training result: all trained at once with ``batched`` (when
    :func:`batch_refusal` allows, else a warning says why not), else one by one as they are asked for."""
    reason = batch_refusal([f.model for f in folds], [f.train for f in folds], cfg) if batched else None
    if reason is not None:
        warnings.warn(f"{model_name}: folds trained one by one, not batched: {reason}", stacklevel=3)
    if batched and reason is None and len(folds) > 1:
        yield from zip(folds, fit_folds([f.model for f in folds], [f.train for f in folds], cfg, device))
        return
    for f in folds:
        yield f, fit(f.model, f.train, f.val, cfg, device=device, progress=False, model_name=model_name,
                     model_kwargs=kwargs)


def run_crossval(
    model_name: str,
    clips: FaceData,
    cfg: TrainConfig,
    k: int = 10,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    loso: bool = False,
    val_fraction: float = 0.15,
    fold_dir: str | os.PathLike | None = None,
    batched: bool = False,
) -> CrossvalResult:
    """Subject-independent cross-validation of the clip model ``model_name`` on ``clips``.

    ``k`` folds by subject (``seed`` shuffles subjects) or leave-one-subject-out with ``loso``.
    ``model_kwargs`` go to the model factory (``num_frames`` and ``img_size`` come from the
    clips). ``init_checkpoint``: a ``frame_cnn`` checkpoint whose trunk initialises every fold's
    model. ``val_fraction``: share of the training fold's subjects held out for early stopping
    (used only when ``cfg.early_stopping_patience`` is set). ``fold_dir``: each finished fold is
    stored there (``fold<i>.json``) and reused by a later call with the same settings and data,
    so an interrupted run resumes at the first unfinished fold. ``batched``: train the unfinished
    folds together (:func:`fer_utils.train.batched.fit_folds`: the same training as ``fit``, up to
    rounding, far fewer GPU kernel launches); they are stored once all are trained, and settings it
    cannot batch (early stopping, GRU/LSTM...) fall back to one fold at a time with a warning.
    """
    if model_entry(model_name).input_kind != "clip":
        raise ValueError(f"{model_name!r} is not a clip model; clip models: see list_models(input_kind='clip')")
    if not clips.is_clip:
        raise ValueError(f"{clips.name}: cross-validation needs clips (N, T, H, W); use make_clips first")
    num_frames, kwargs = clips.images.shape[1], _model_kwargs(model_kwargs, clips)
    device = resolve_device(device)
    folds = make_folds(clips, k=k, seed=seed, loso=loso)
    sequences = clips.meta["sequence"].astype(str).to_numpy()
    done: dict[int, tuple[FoldResult, pd.DataFrame]] = {}
    params = 0
    fold_key = {"model": model_name, "kwargs": kwargs, "train": cfg.identity(), "k": k, "seed": seed, "loso": loso,
                "val_fraction": val_fraction, "data": clips.fingerprint(),
                "init": _init_digest(init_checkpoint)}
    todo = []
    for i, (train_idx, test_idx) in enumerate(folds):
        stored = _load_fold(fold_dir, i, fold_key)
        if stored is None:
            todo.append(_prepare_fold(model_name, kwargs, clips, cfg, i, train_idx, test_idx, seed, val_fraction,
                                      init_checkpoint))
            continue
        fold_result, record, params = stored
        done[i] = fold_result, record
        if progress:
            print(f"{model_name} fold {i + 1}/{len(folds)}: done before, accuracy "
                  f"{100 * fold_result.accuracy:.1f} %", flush=True)
    if todo:
        params = count_parameters(todo[0].model)
    started = time.perf_counter()
    for fold, fitted in _fit_folds(todo, cfg, device, model_name, kwargs, batched):
        i = fold.index
        record, votes = _evaluate_fold(fitted.model, fold.test, sequences[fold.test_idx], i, cfg.eval_batch_size,
                                        fold.train.preprocessing)
        accuracy, macro_f1 = _scores(record["y_true"].to_numpy(), record["y_pred"].to_numpy())
        done[i] = FoldResult(
            fold=i, test_subjects=sorted(set(fold.test.subjects)), n_train=len(fold.train),
            n_val=0 if fold.val is None else len(fold.val), n_test=len(record), accuracy=accuracy,
            macro_f1=macro_f1, train_seconds=fitted.train_seconds, epochs=len(fitted.history), vote_accuracy=votes,
        ), record
        _save_fold(fold_dir, i, fold_key, done[i][0], record, params)
        if progress:
            print(f"{model_name} fold {i + 1}/{len(folds)}: accuracy {100 * accuracy:.1f} % "
                  f"({len(record)} test, {fitted.train_seconds:.1f} s training, "
                  f"{time.perf_counter() - started:.1f} s in all)", flush=True)
        started = time.perf_counter()
    return CrossvalResult(
        model_name=model_name, dataset=clips.name, protocol="loso" if loso else f"{k}-fold",
        classes=list(clips.classes), num_frames=num_frames, trainable_params=params, model_kwargs=kwargs,
        config=cfg.to_dict(), init_checkpoint=None if init_checkpoint is None else Path(init_checkpoint).name,
        folds=[done[i][0] for i in sorted(done)], predictions=pd.concat([done[i][1] for i in sorted(done)],
                                                                          ignore_index=True),
    )


def _standin(model_name: str, clips: FaceData, cfg: TrainConfig, kwargs: dict[str, Any], folds: int) -> CrossvalResult:
    """A result of ``folds`` untrained folds (NaN scores, no predictions) for plans: it prints and tabulates."""
    nan = float("nan")
    return CrossvalResult(
        model_name=model_name, dataset=clips.name, protocol="planned", classes=list(clips.classes),
        num_frames=clips.images.shape[1], trainable_params=0, model_kwargs=kwargs, config=cfg.to_dict(),
        init_checkpoint=None, folds=[FoldResult(i, [], 0, 0, 0, nan, nan, nan, 0) for i in range(folds)],
        predictions=pd.DataFrame({"sequence": [""], "subject": [""], "fold": [0], "y_true": [0], "y_pred": [0]}))


def cached_crossval(
    name: str,
    model_name: str,
    clips: FaceData,
    cfg: TrainConfig,
    results_root: str | os.PathLike = "results",
    *,
    k: int = 10,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    loso: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    batched: bool = False,
) -> tuple[CrossvalResult, bool]:
    """:func:`run_crossval`, or its stored result when one with the same config exists.

    The config (model, kwargs, training config, protocol, a fingerprint of the clips and of the
    initialising checkpoint's file) is hashed into ``<results_root>/<name>-<hash8>.json``; finished
    folds wait in ``<name>-<hash8>.folds/`` until all are done, so an interrupted run resumes at the
    first unfinished fold. ``batched`` (passed on) is not part of the hash: it changes how the folds
    train, not what. Returns ``(result, cached)``.
    """
    config = {"model": model_name, "kwargs": identify_weight_files(model_kwargs or {}), "train": cfg.identity(),
              "k": k, "seed": seed, "loso": loso, "data": clips.fingerprint(), "init": _init_digest(init_checkpoint)}

    def load(path: Path, _digest: str) -> CrossvalResult | None:
        return CrossvalResult.from_json(path) if path.is_file() else None

    def compute(path: Path, _digest: str) -> CrossvalResult:
        fold_dir = path.with_suffix(".folds")
        result = run_crossval(model_name, clips, cfg, k=k, seed=seed, model_kwargs=model_kwargs,
                              init_checkpoint=init_checkpoint, device=device, progress=progress, loso=loso,
                              fold_dir=fold_dir, batched=batched)
        result.to_json(path)
        shutil.rmtree(fold_dir, ignore_errors=True)
        return result

    def plan() -> Planned[CrossvalResult]:
        kwargs = _model_kwargs(model_kwargs, clips)
        folds = make_folds(clips, k=k, seed=seed, loso=loso)
        work = Work("crossval", model_name, architecture(model_name, len(clips.classes), kwargs),
                    clips.images.shape[1:], cfg.epochs, sum(len(train) for train, _ in folds), len(folds))
        return Planned(work, _standin(model_name, clips, cfg, kwargs, len(folds)))

    entry = cached(results_root, name, config, load, compute, plan, suffix=".json")
    return entry.value, entry.hit
