"""Ensembles: average the class probabilities of several models (or of saved predictions)."""
from __future__ import annotations

import os
from collections.abc import Sequence

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


def save_predictions(path: str | os.PathLike, data: FaceData, probs: np.ndarray) -> None:
    """``probs`` of ``data``'s items as ``.npz`` (atomically): ``y_true``, ``probs``, ``classes`` and
    ``items`` (``data``'s fingerprint), so that members can be averaged later without models or data."""
    with atomic_write(path) as handle:
        np.savez_compressed(handle, y_true=data.labels, probs=probs, classes=np.array(data.classes),
                            items=np.array(data.fingerprint()))


def load_predictions(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Labels, the probabilities of each file and the classes of :func:`save_predictions` files;
    ``DatasetError`` naming a file that is no such file or was made on other items or classes."""
    first, members = None, []
    for path in paths:
        try:
            with np.load(path) as saved:
                record = {k: saved[k] for k in ("y_true", "probs", "classes", "items")}
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"{path}: not a predictions file with y_true, probs, classes and items "
                               f"(written by evaluate --save-probs or train) ({exc})") from None
        first = first or (path, record)
        if str(record["items"]) != str(first[1]["items"]) or list(record["classes"]) != list(first[1]["classes"]):
            raise DatasetError(f"{path}: made on other items or classes than {first[0]}; re-score members of one split")
        members.append(record["probs"])
    if first is None:
        raise DatasetError("no predictions files given")
    return first[1]["y_true"], members, [str(c) for c in first[1]["classes"]]
