"""Turning frame- or window-level probabilities into one label per clip or sequence."""
from __future__ import annotations

import numpy as np


def _frame_probs(frame_probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(frame_probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[1] < 1:
        raise ValueError(f"expected frame probabilities (N, T, C) with T >= 1, got shape {probs.shape}")
    return probs


def majority_vote(frame_probs: np.ndarray) -> np.ndarray:
    """``(N, T, C)`` -> ``(N,)``: the class most frames predict ("maximum probability" voting).

    Ties between classes with equally many votes go to the one with the larger summed
    probability (then the lower class index).
    """
    probs = _frame_probs(frame_probs)
    votes = np.zeros(probs.shape[::2], dtype=np.int64)  # (N, C)
    np.add.at(votes, (np.arange(len(probs))[:, None], probs.argmax(axis=2)), 1)
    sums = probs.sum(axis=1)
    return np.where(votes == votes.max(axis=1, keepdims=True), sums, -np.inf).argmax(axis=1)


def sum_vote(frame_probs: np.ndarray) -> np.ndarray:
    """``(N, T, C)`` -> ``(N,)``: the class with the largest summed probability over the frames."""
    return _frame_probs(frame_probs).sum(axis=1).argmax(axis=1)


VOTES = {"majority": majority_vote, "sum": sum_vote}


def window_vote(
    window_probs: np.ndarray, sequence_ids: np.ndarray, method: str = "sum",
) -> tuple[np.ndarray, np.ndarray]:
    """One label per sequence from the probabilities of its sliding windows.

    ``window_probs``: ``(N, C)`` per window, or ``(N, T, C)`` per frame of each window (all
    frames of a sequence's windows then vote); ``sequence_ids``: ``(N,)`` sequence of each window.
    ``method``: ``"sum"`` (summed probabilities) or ``"majority"`` (:func:`majority_vote`).
    Returns ``(ids, labels)``: the sequences in order of first appearance and their labels.
    """
    if method not in VOTES:
        raise ValueError(f"method must be one of {sorted(VOTES)}, got {method!r}")
    probs = np.asarray(window_probs, dtype=np.float64)
    ids = np.asarray(sequence_ids)
    if probs.ndim not in (2, 3) or ids.shape != probs.shape[:1]:
        raise ValueError(
            f"expected window probabilities (N, C) or (N, T, C) and N sequence ids, got {probs.shape} "
            f"and {ids.shape}"
        )
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    labels = np.array([
        VOTES[method](probs[inverse == i].reshape(1, -1, probs.shape[-1]))[0] for i in order
    ], dtype=np.int64)
    return unique[order], labels
