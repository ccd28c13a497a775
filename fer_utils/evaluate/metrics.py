"""Classification metrics from true labels and class probabilities, all JSON-serialisable.

scikit-learn and SciPy are imported by the functions that use them: ``predict`` imports this package (for
the size correction) and computes no metric, and loading them would slow its cold start.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fer_utils.evaluate.calibration import reliability_data


def _check(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs must be (N, {len(classes)}) for classes {list(classes)}, got {probs.shape}")
    if y_true.ndim != 1 or len(y_true) != len(probs) or len(y_true) == 0:
        raise ValueError(f"expected {len(probs)} labels (N >= 1), got shape {y_true.shape}")
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ValueError(f"labels must be in 0..{len(classes) - 1}, got {y_true.min()}..{y_true.max()}")


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts: row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction whose true class is among the ``k`` most probable (scikit-learn's)."""
    from sklearn.metrics import top_k_accuracy_score

    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(probs.shape[1])))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def paired_comparison(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """Two classifiers on the same items: accuracies, how many only one got right, and the exact
    McNemar p-value (two-sided binomial test on those discordant items; 1.0 when there are none)."""
    from scipy.stats import binomtest

    right_a, right_b = np.asarray(pred_a) == y_true, np.asarray(pred_b) == y_true
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p_value = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"n": len(y_true), "accuracy_a": float(right_a.mean()), "accuracy_b": float(right_b.mean()),
            "only_a": only_a, "only_b": only_b, "p_value": float(p_value)}


def most_confused(confusion: np.ndarray, classes: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """Off-diagonal (true, predicted) pairs by count, then by rate (share of the true class)."""
    support = confusion.sum(axis=1)
    pairs = [
        {"true": classes[i], "predicted": classes[j], "count": int(confusion[i, j]),
         "rate": float(confusion[i, j] / support[i])}
        for i in range(len(classes)) for j in range(len(classes)) if i != j and confusion[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p["count"], -p["rate"]))
    return pairs[:top]


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    beta: float = 1.0,
    top_k: Sequence[int] = (2, 3),
    n_bins: int = 15,
    top_confused: int = 10,
) -> dict[str, Any]:
    """Accuracy, top-k, per-class/macro/weighted precision, recall, F1 and F-beta, confusion
    matrix (counts and row-normalised), most-confused pairs, NLL and calibration.

    Keys: ``n``, ``classes``, ``accuracy``, ``top{k}_accuracy`` (for k < C), ``{macro,weighted}_{precision,
    recall,f1,fbeta}``, ``beta``, ``nll``, ``per_class`` (class -> precision, recall, f1, fbeta,
    support), ``confusion`` (classes, counts, normalized), ``most_confused`` (list of true,
    predicted, count, rate), ``calibration`` (see :func:`reliability_data`). Classes absent
    from ``y_true`` count in macro averages with recall 0 (as scikit-learn with all labels).
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    _check(y_true, probs, classes)
    c = len(classes)
    y_pred = probs.argmax(axis=1)
    cm = confusion_counts(y_true, y_pred, c)
    scores = dict(labels=np.arange(c), zero_division=0)
    precision, recall, fbeta, support = precision_recall_fscore_support(y_true, y_pred, beta=beta, **scores)
    f1 = precision_recall_fscore_support(y_true, y_pred, **scores)[2]
    weights = support / support.sum()
    out: dict[str, Any] = {"n": int(len(y_true)), "classes": list(classes), "accuracy": float(np.trace(cm) / len(y_true))}
    for k in top_k:
        if k < c:
            out[f"top{k}_accuracy"] = top_k_accuracy(y_true, probs, k)
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1), ("fbeta", fbeta)):
        out[f"macro_{name}"] = float(values.mean())
        out[f"weighted_{name}"] = float((values * weights).sum())
    out["beta"] = float(beta)
    out["nll"] = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None))))
    out["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "fbeta": float(fbeta[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    out["confusion"] = {
        "classes": list(classes), "counts": cm.tolist(),
        "normalized": _ratio(cm.astype(np.float64), support[:, None].astype(np.float64)).tolist(),
    }
    out["most_confused"] = most_confused(cm, classes, top_confused)
    out["calibration"] = reliability_data(y_true, probs, n_bins)
    return out


def summary_row(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of :func:`classification_metrics` plus ECE (one table row)."""
    row = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    row["ece"] = metrics["calibration"]["ece"]
    return row
