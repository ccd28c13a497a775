"""Metric figures: confusion matrix, reliability diagram, per-class scores, result comparison."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from fer_utils.plots._figure import finish, new_figure


def plot_confusion_matrix(
    confusion: dict[str, Any] | np.ndarray,
    classes: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    show: str = "both",
    title: str | None = None,
) -> Figure:
    """Heat map(s) of a confusion matrix (rows: true class, columns: predicted).

    ``confusion``: ``metrics["confusion"]`` (classes taken from it) or a ``(C, C)`` count array.
    ``show``: ``"counts"``, ``"normalized"`` (row-normalised: recall on the diagonal) or ``"both"``.
    """
    if isinstance(confusion, dict):
        counts, classes = np.asarray(confusion["counts"]), confusion["classes"]
    else:
        counts = np.asarray(confusion)
    if classes is None or counts.shape != (len(classes), len(classes)):
        raise ValueError(f"need a (C, C) matrix and C class names, got {counts.shape} and {classes}")
    if show not in ("counts", "normalized", "both"):
        raise ValueError(f"show must be 'counts', 'normalized' or 'both', got {show!r}")
    support = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    panels = [("counts", counts, "d", "Blues"), ("normalized", normalized, ".2f", "Blues")]
    panels = [p for p in panels if show in (p[0], "both")]
    size = 1.0 + 0.65 * len(classes)
    fig = new_figure(size * len(panels) + 1.0, size)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, values, fmt, cmap) in zip(axes, panels):
        sns.heatmap(values, annot=True, fmt=fmt, cmap=cmap, square=True, cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes, vmin=0, vmax=1 if name == "normalized" else None)
        ax.set(xlabel="predicted class", ylabel="true class",
               title="Counts" if name == "counts" else "Row-normalised (recall on diagonal)")
        ax.tick_params(axis="x", rotation=45)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(title or "Confusion matrix")
    return finish(fig, path)


def plot_reliability(
    calibration: dict[str, Any], path: str | os.PathLike | None = None, title: str | None = None
) -> Figure:
    """Reliability diagram: accuracy vs confidence per bin, the diagonal, gaps, and bin counts.

    ``calibration``: ``metrics["calibration"]`` or :func:`fer_utils.evaluate.reliability_data`.
    """
    lower, upper = np.asarray(calibration["lower"]), np.asarray(calibration["upper"])
    acc, conf, count = (np.asarray(calibration[k], dtype=float) for k in ("accuracy", "confidence", "count"))
    centres, width = (lower + upper) / 2, upper - lower
    used = count > 0
    fig = new_figure(5.5, 6.2)
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.bar(centres[used], acc[used], width=width[used], edgecolor="black", color="tab:blue", label="accuracy")
    ax.bar(centres[used], conf[used] - acc[used], bottom=acc[used], width=width[used], color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
           title=title or f"Reliability diagram (ECE {calibration['ece']:.3f})")
    ax.legend(loc="upper left")
    ax_count.bar(centres, count, width=width, color="tab:grey", edgecolor="black")
    ax_count.set(xlabel="confidence (top-class probability)", ylabel="items")
    return finish(fig, path)


def plot_per_class(
    metrics: dict[str, Any],
    path: str | os.PathLike | None = None,
    scores: Sequence[str] = ("precision", "recall", "f1"),
    title: str | None = None,
) -> Figure:
    """Grouped bars of per-class scores from ``classification_metrics`` output (support in labels)."""
    per_class = metrics["per_class"]
    rows = [{"class": f"{name}\n(n={v['support']})", "score": s, "value": v[s]}
            for name, v in per_class.items() for s in scores]
    fig = new_figure(1.2 + 1.1 * len(per_class), 4.2)
    ax = fig.subplots()
    sns.barplot(pd.DataFrame(rows), x="class", y="value", hue="score", ax=ax)
    ax.set(xlabel="class", ylabel="score", ylim=(0, 1), title=title or "Per-class scores")
    ax.legend(loc="upper right", ncols=len(scores))
    return finish(fig, path)


def plot_comparison(
    table: pd.DataFrame | Sequence[dict[str, Any]],
    metric: str = "accuracy",
    label: str = "name",
    path: str | os.PathLike | None = None,
    hue: str | None = None,
    title: str | None = None,
    sort: bool = True,
    errorbar: str | None = None,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Horizontal bars of ``metric`` per row of a results table, values annotated; best on top
    unless ``sort=False`` (rows in table order, for ordered groups such as pose bins).

    Several rows per bar (e.g. one per fold or seed) are averaged; ``errorbar="sd"`` then draws
    their mean +/- one standard deviation (any seaborn ``errorbar`` works), and the values are
    written inside the bars, clear of the error bars. ``hue`` colours follow the sorted hue values,
    so the same groups get the same colours in every figure. ``references``: dashed vertical lines,
    named in the legend (a majority-class rate, a published result).
    """
    frame = pd.DataFrame(table)
    missing = {metric, label, *([hue] if hue else [])} - set(frame.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}; has {list(frame.columns)}")
    means = frame.groupby(label, sort=False)[metric].mean()
    order = list((means.sort_values(ascending=False) if sort else means).index)
    bars = len(frame.drop_duplicates([label, *([hue] if hue else [])]))
    dodge = hue is not None and bool((frame.groupby(label)[hue].nunique() > 1).any())  # side by side only when shared
    fig = new_figure(7.5 + (3.0 if hue is not None or references else 0.0), 1.0 + 0.45 * bars)
    ax = fig.subplots()
    sns.barplot(frame, y=label, x=metric, hue=hue, order=order, ax=ax, orient="h", dodge=dodge,
                hue_order=sorted(frame[hue].unique()) if hue else None, errorbar=errorbar,
                capsize=0.2 if errorbar else 0)
    for container in ax.containers:
        if errorbar:
            ax.bar_label(container, fmt="%.3f", label_type="center", fontsize=9, color="white")
        else:
            ax.bar_label(container, fmt="%.3f", padding=3, fontsize=9)
    for (name, value), style in zip((references or {}).items(), ("--", ":", "-.")):
        ax.axvline(value, color="0.3", linestyle=style, linewidth=1.2, label=f"{name}: {value:.3f}")
    top = max([frame[metric].max(), *(references or {}).values()])
    if top <= 1:  # a rate: leave room for the labels, stay within [0, 1]
        ax.set_xlim(0, min(1.0, top * 1.15))
    if hue is not None or references:  # beside the bars, never over them
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set(xlabel=metric.replace("_", " "), ylabel="", title=title or f"Comparison: {metric.replace('_', ' ')}")
    return finish(fig, path)


def plot_tradeoff(
    table: pd.DataFrame,
    costs: Mapping[str, str],
    metric: str = "accuracy",
    label: str = "name",
    path: str | os.PathLike | None = None,
    title: str | None = None,
    min_span: float = 0.04,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """``metric`` against each cost column of ``table`` (``costs``: column -> axis label, e.g. parameters and
    training hours), one panel per cost on a log scale with plain-number ticks, every point named by its
    ``label`` (below the point where another label already sits above a close neighbour). The metric axis
    spans at least ``min_span`` (4 points of accuracy), so that a gap within seed noise does not fill the
    panel. ``references``: dashed horizontal lines in every panel (a smaller network's accuracy), named
    in the first panel's legend."""
    missing = {metric, label, *costs} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}; has {list(table.columns)}")
    fig = new_figure(5.5 * len(costs), 4.5)
    axes = np.atleast_1d(fig.subplots(1, len(costs)))
    values = [*table[metric], *(references or {}).values()]
    low, high = min(values), max(values)
    pad = max(min_span - (high - low), 0.0) / 2 + 0.15 * (high - low)
    for ax, (column, axis_label) in zip(axes, costs.items()):
        ax.scatter(table[column], table[metric], s=45)
        for (name, value), style in zip((references or {}).items(), ("--", ":", "-.")):
            ax.axhline(value, color="0.3", linestyle=style, linewidth=1.2, label=f"{name}: {value:.3f}")
        ax.set_xscale("log")
        ax.margins(x=0.25)
        ax.set_ylim(low - pad, high + pad)
        left, right = ax.get_xlim()
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
        # Every minor tick labelled within one decade, only 2 and 5 over more, so that labels never collide.
        ax.xaxis.set_minor_formatter(FuncFormatter(_plain_number if right / left <= 10 else _two_or_five))
        points = list(zip(table[label].astype(str), table[column], table[metric]))
        for (name, x, y), below in zip(points, _labels_below(ax, [(x, y) for _, x, y in points])):
            ax.annotate(name, (x, y), fontsize=8, xytext=(5, -11 if below else 4), textcoords="offset points")
        ax.set(xlabel=axis_label, ylabel=metric.replace("_", " "))
    if references:
        axes[0].legend(loc="lower left", fontsize=8, frameon=False)
    fig.suptitle(title or f"{metric.replace('_', ' ')} against cost")
    return finish(fig, path)


def _labels_below(ax: Axes, points: list[tuple[float, float]], near: float = 0.12) -> list[bool]:
    """Which points' labels go below them: those within ``near`` of the panel's width and half that of its
    height from a point (earlier from the left) whose label sits above, so that two labels never overlap."""
    to_panel = ax.transData + ax.transAxes.inverted()  # data -> panel fractions, log scale included
    placed: list[tuple[float, float, bool]] = []
    below = [False] * len(points)
    for index in sorted(range(len(points)), key=lambda i: points[i][0]):
        x, y = to_panel.transform(points[index])
        below[index] = any(not lower and abs(x - px) < near and abs(y - py) < near / 2 for px, py, lower in placed)
        placed.append((x, y, below[index]))
    return below


def _plain_number(value: float, _position: int | None = None) -> str:
    """A log axis' tick as a plain number (``0.5``, ``20``), not matplotlib's ``5 x 10^-1``."""
    return f"{value:g}"


def _two_or_five(value: float, _position: int | None = None) -> str:
    """A log axis' minor tick labelled only at 2 and 5 times a power of ten."""
    leading = round(value / 10 ** np.floor(np.log10(value)), 6)
    return _plain_number(value) if leading in (2, 5) else ""
