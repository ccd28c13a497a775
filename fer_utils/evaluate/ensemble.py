"""Ensembles: average the class probabilities of several models (or of saved predictions)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from fer_utils.files import atomic_write
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_model
from fer_utils.errors import PredictionsFileError
from fer_utils.data import FaceData
from fer_utils.evaluate.inference import predict_proba


def average_probs(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of ``(N, C)`` probability arrays (equal weights by default)."""
    if not probs:
        raise ValueError("average_probs: no probability arrays given")
    shapes = {np.shape(p) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"average_probs: arrays differ in shape: {sorted(shapes)}")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need {len(probs)} non-negative weights with a positive sum, got {list(w)}")
    return np.tensordot(w / w.sum(), np.stack(probs).astype(np.float64), axes=1)


def ensemble_proba(
    members: Sequence[nn.Module | str | os.PathLike],
    data: FaceData | np.ndarray | torch.Tensor,
    *,
    weights: Sequence[float] | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    tta: str = "none",
    amp: bool = True,
) -> np.ndarray:
    """Average probabilities of models or checkpoint paths on ``data``.

    Checkpoints are loaded one at a time on ``device`` (default CPU), each applied with its own preprocessing
    record; with a FaceData their class list must equal ``data.classes`` (else ``CheckpointError``).
    ``amp``: as in :func:`~fer_utils.evaluate.predict_proba`.
    """
    expected = data.classes if isinstance(data, FaceData) else None
    probs = []
    for member in members:
        if isinstance(member, nn.Module):
            model, record = member, None
        else:
            model, ckpt = load_model(member, device=device or "cpu", expected_classes=expected)
            record = checkpoint_preprocessing(ckpt)
        probs.append(predict_proba(model, data, batch_size=batch_size, device=device, tta=tta, amp=amp,
                                   preprocessing=record))
    return average_probs(probs, weights)


class Predictions(NamedTuple):
    """A predictions file: true labels, ``(N, C)`` probabilities, class names, the items' fingerprint
    and each item's source (file and line or path; None in files written before sources were kept)."""

    y_true: np.ndarray
    probs: np.ndarray
    classes: list[str]
    items: str
    sources: np.ndarray | None


def save_predictions(path: str | os.PathLike, data: FaceData, probs: np.ndarray) -> None:
    """``probs`` of ``data``'s items as ``.npz`` (atomically, see :class:`Predictions`), so that members
    can be averaged later without models or data, and serve as distillation targets."""
    write_predictions(path, Predictions(data.labels, probs, list(data.classes), data.fingerprint(),
                                        data.meta["source"].to_numpy(dtype=str)))


def write_predictions(path: str | os.PathLike, predictions: Predictions) -> None:
    """Write a :class:`Predictions` record as ``.npz`` (atomically)."""
    optional = {} if predictions.sources is None else {"sources": predictions.sources}
    with atomic_write(path) as handle:
        np.savez_compressed(handle, y_true=predictions.y_true, probs=predictions.probs,
                            classes=np.array(predictions.classes), items=np.array(predictions.items), **optional)


def read_predictions(path: str | os.PathLike) -> Predictions:
    """A :func:`save_predictions` file; ``PredictionsFileError`` naming it when it is no such file or its arrays
    do not fit: ``probs`` must be ``(N, classes)`` non-negative finite rows summing to 1, with ``N`` labels
    (and sources) in the class range."""
    try:
        with np.load(path) as saved:
            record = {k: saved[k] for k in ("y_true", "probs", "classes", "items")}
            sources = saved["sources"] if "sources" in saved.files else None
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise PredictionsFileError(f"{path}: not a predictions file with y_true, probs, classes and items "
                           f"(written by evaluate --save-probs or train) ({exc})") from None
    classes = [str(c) for c in np.atleast_1d(record["classes"])]
    probs, y_true = record["probs"], record["y_true"]
    n = len(y_true) if y_true.ndim == 1 else -1
    problem = (
        "y_true is not a 1-D array of labels" if n < 0 or not np.issubdtype(y_true.dtype, np.integer) else
        f"probs has shape {probs.shape}, expected ({n}, {len(classes)}): one row per label, one column per class"
        if probs.shape != (n, len(classes)) or not np.issubdtype(probs.dtype, np.floating) else
        "probs holds NaN, infinite or negative values" if not (np.isfinite(probs).all() and (probs >= 0).all()) else
        "probs rows do not sum to 1" if n and not np.allclose(probs.sum(1), 1.0, atol=1e-3) else
        f"y_true holds labels outside 0..{len(classes) - 1}" if n and (y_true.min() < 0 or y_true.max() >= len(classes))
        else f"sources has {len(sources)} entries for {n} rows" if sources is not None and len(sources) != n else None)
    if problem:
        raise PredictionsFileError(f"{path}: {problem}")
    return Predictions(y_true, probs, classes, str(record["items"]), sources)


def _aligned(path: str | os.PathLike, record: Predictions, first: Predictions, first_path: str | os.PathLike
             ) -> Predictions:
    """``record``'s rows in ``first``'s order, matched by source (by position when either lacks sources,
    then only for the same items); ``PredictionsFileError`` when the items or their labels differ."""
    if record.classes != first.classes:
        raise PredictionsFileError(f"{path}: classes {record.classes} differ from {first_path}'s {first.classes}")
    if record.sources is None or first.sources is None:
        if record.items != first.items:
            raise PredictionsFileError(f"{path}: made on other items than {first_path}; re-score members of one split")
        return record
    row_of = {source: row for row, source in enumerate(record.sources)}
    if len(row_of) != len(record.sources) or len(set(first.sources)) != len(first.sources):
        raise PredictionsFileError(f"{path}: item sources repeat, so members cannot be matched by source")
    rows = np.array([row_of.get(source, -1) for source in first.sources], dtype=np.int64)
    if (rows < 0).any():
        raise PredictionsFileError(f"{path}: lacks {int((rows < 0).sum())} of the {len(rows)} items of {first_path} "
                           f"(first: {first.sources[rows < 0][0]}); re-score members of one split")
    if len(record.sources) != len(rows):
        raise PredictionsFileError(f"{path}: holds {len(record.sources)} items, {first_path} {len(rows)}; "
                           "re-score members of one split")
    differ = np.flatnonzero(record.y_true[rows] != first.y_true)
    if len(differ):
        raise PredictionsFileError(f"{path}: {len(differ)} items have other labels than in {first_path} (first: "
                           f"{first.sources[differ[0]]}); the members were made on other data")
    return record._replace(y_true=record.y_true[rows], probs=record.probs[rows], sources=first.sources,
                           items=first.items)


def load_predictions(paths: Sequence[str | os.PathLike]) -> list[Predictions]:
    """The :func:`save_predictions` files of an ensemble's members, each in the first's row order (matched by
    item source); ``PredictionsFileError`` naming a file that is no such file or holds other items, labels or classes."""
    if not paths:
        raise PredictionsFileError("no predictions files given")
    first = read_predictions(paths[0])
    return [first, *(_aligned(path, read_predictions(path), first, paths[0]) for path in paths[1:])]


def average_predictions(members: Sequence[Predictions]) -> Predictions:
    """The ensemble of :func:`load_predictions` members: their probabilities averaged, with the first
    member's labels, classes, items and sources."""
    return members[0]._replace(probs=average_probs([member.probs for member in members]))
