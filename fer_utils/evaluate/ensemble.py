"""Ensembles: average the class probabilities of several models (or of saved predictions)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from fer_utils.files import atomic_write
from fer_utils.models.checkpoints import load_model
from fer_utils.data import DatasetError, FaceData
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
) -> np.ndarray:
    """Average probabilities of models or checkpoint paths on ``data``.

    Checkpoints are loaded one at a time on ``device`` (default CPU); with a FaceData their
    class list must equal ``data.classes`` (else ``CheckpointMismatchError``).
    """
    expected = data.classes if isinstance(data, FaceData) else None
    probs = []
    for member in members:
        if isinstance(member, nn.Module):
            model = member
        else:
            model, _ = load_model(member, device=device or "cpu", expected_classes=expected)
        probs.append(predict_proba(model, data, batch_size=batch_size, device=device, tta=tta))
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
    """A :func:`save_predictions` file; ``DatasetError`` naming it when it is no such file."""
    try:
        with np.load(path) as saved:
            record = {k: saved[k] for k in ("y_true", "probs", "classes", "items")}
            sources = saved["sources"] if "sources" in saved.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a predictions file with y_true, probs, classes and items "
                           f"(written by evaluate --save-probs or train) ({exc})") from None
    return Predictions(record["y_true"], record["probs"], [str(c) for c in record["classes"]],
                       str(record["items"]), sources)


def load_predictions(paths: Sequence[str | os.PathLike]) -> list[Predictions]:
    """The :func:`save_predictions` files of an ensemble's members, made on one split; ``DatasetError``
    naming a file that is no such file or was made on other items or classes than the first."""
    if not paths:
        raise DatasetError("no predictions files given")
    members = [read_predictions(paths[0])]
    for path in paths[1:]:
        record = read_predictions(path)
        if record.items != members[0].items or record.classes != members[0].classes:
            raise DatasetError(f"{path}: made on other items or classes than {paths[0]}; "
                               "re-score members of one split")
        members.append(record)
    return members


def average_predictions(members: Sequence[Predictions]) -> Predictions:
    """The ensemble of :func:`load_predictions` members: their probabilities averaged, with the first
    member's labels, classes, items and sources."""
    return members[0]._replace(probs=average_probs([member.probs for member in members]))
