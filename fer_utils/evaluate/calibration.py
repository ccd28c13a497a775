"""Calibration: expected calibration error and reliability-diagram data (Guo et al., 2017), and a
per-class logit bias fitted on held-out data (a prior correction)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def reliability_data(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Equal-width confidence bins ``(lower, upper]`` of the top-class probability.

    Returns JSON-able lists per bin (``lower``, ``upper``, ``count``, mean ``confidence``,
    ``accuracy``; the last two are 0 for empty bins), ``n_bins`` and ``ece``: the
    count-weighted mean of ``|accuracy - confidence|`` over the bins.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if probs.ndim != 2 or len(probs) != len(y_true) or len(y_true) == 0:
        raise ValueError(f"expected probs (N, C) and N labels, got {probs.shape} and {y_true.shape}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")  # bin i holds (edges[i], edges[i+1]]
    count = np.bincount(bins, minlength=n_bins)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / safe
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / safe
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / len(y_true))
    return {
        "n_bins": int(n_bins), "ece": ece,
        "lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": count.tolist(),
        "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (0 = perfectly calibrated)."""
    return reliability_data(y_true, probs, n_bins)["ece"]


def fit_class_bias(logits: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """The per-class bias ``b`` (zero mean) that minimises the cross-entropy of ``logits + b`` on ``y_true``.

    A prior correction: at the optimum the mean predicted probability of each class equals its share
    of ``y_true``, so a systematic lean towards one class on shifted inputs is taken out. Fit it on
    validation data, never on the test split. Convex; L-BFGS converges in a few dozen steps.
    """
    logits, y_true = np.asarray(logits, dtype=np.float64), np.asarray(y_true)
    if logits.ndim != 2 or len(logits) != len(y_true) or len(y_true) == 0:
        raise ValueError(f"expected logits (N, C) and N labels, got {logits.shape} and {y_true.shape}")
    x, y = torch.from_numpy(logits), torch.from_numpy(y_true).long()
    bias = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x + bias, y)
        value.backward()
        return value

    optimizer.step(loss)
    return (bias - bias.mean()).detach().numpy()
