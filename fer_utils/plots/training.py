"""Training curves and the LR range test."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fer_utils.plots._figure import finish, new_figure


def _history_frame(history: pd.DataFrame | str | os.PathLike | list[dict[str, Any]]) -> pd.DataFrame:
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        return pd.read_json(path) if path.suffix == ".json" else pd.read_csv(path)
    frame = pd.DataFrame(history)
    missing = {"epoch", "train_loss", "train_acc"} - set(frame.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}; has {list(frame.columns)}")
    return frame


def plot_history(
    history: pd.DataFrame | str | os.PathLike | list[dict[str, Any]],
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """Loss, accuracy (train vs validation) and learning rate per epoch; best epoch marked.

    ``history``: ``fit``'s DataFrame, its records, or a ``history.csv``/``.json`` path. The
    training loss is the training objective (with any label smoothing / class weights).
    """
    frame = _history_frame(history)
    has_val = "val_acc" in frame and frame["val_acc"].notna().any()
    fig = new_figure(13, 3.8)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for ax, key, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(frame["epoch"], frame[f"train_{key}"], marker="o", ms=3, label="train")
        if has_val:
            ax.plot(frame["epoch"], frame[f"val_{key}"], marker="o", ms=3, label="validation")
        ax.set(xlabel="epoch", ylabel=label, title=label.capitalize())
        ax.legend()
    if has_val:
        best = frame.loc[frame["val_acc"].idxmax()]
        for ax in (ax_loss, ax_acc):
            ax.axvline(best["epoch"], color="grey", ls="--", lw=1)
        ax_acc.set_title(f"Accuracy (best validation {best['val_acc']:.3f}, epoch {int(best['epoch'])})")
    if "lr" in frame:
        ax_lr.plot(frame["epoch"], frame["lr"], marker="o", ms=3, color="tab:green")
        ax_lr.set_yscale("log")
    ax_lr.set(xlabel="epoch", ylabel="learning rate (epoch start)", title="Learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or "Training history")
    return finish(fig, path)


#: Titles and axis labels of the history columns :func:`plot_histories` draws.
HISTORY_COLUMNS: dict[str, str] = {
    "train_acc": "training accuracy", "val_acc": "hold-out accuracy", "train_loss": "training loss",
    "val_loss": "hold-out loss", "lr": "learning rate",
}


def plot_histories(
    histories: dict[str, pd.DataFrame | str | os.PathLike],
    columns: tuple[str, ...] = ("train_acc", "val_acc"),
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """Several runs' curves on shared axes, one panel per history column (``lr`` on a log scale).

    ``histories``: label -> ``fit``'s DataFrame or a ``history.csv``/``.json`` path; one legend below.
    """
    unknown = set(columns) - set(HISTORY_COLUMNS)
    if unknown:
        raise ValueError(f"unknown history column(s) {sorted(unknown)}; choose from {sorted(HISTORY_COLUMNS)}")
    fig = new_figure(5.5 * len(columns), 5.2)
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    for label, history in histories.items():
        frame = _history_frame(history)
        for ax, column in zip(axes, columns):
            ax.plot(frame["epoch"], frame[column], marker="o", ms=2.5, label=label)
    for ax, column in zip(axes, columns):
        ax.set(title=HISTORY_COLUMNS[column], xlabel="epoch", ylabel=HISTORY_COLUMNS[column],
               yscale="log" if column == "lr" else "linear")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
    fig.suptitle(title or "Training histories")
    return finish(fig, path)


def plot_lr_find(result: Any, path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """Loss vs learning rate (log scale) of an ``LRFindResult``; the suggested lr is marked."""
    lrs, losses = np.asarray(result.lrs), np.asarray(result.losses)
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    raw = getattr(result, "raw_losses", None)
    if raw is not None:
        ax.plot(lrs, raw, color="tab:blue", alpha=0.25, lw=1, label="raw loss")
    ax.plot(lrs, losses, color="tab:blue", lw=2, label="smoothed loss")
    suggested = result.suggested_lr
    ax.axvline(suggested, color="tab:red", ls="--", lw=1.2, label=f"suggested lr {suggested:.2e}")
    finite = losses[np.isfinite(losses)]
    if len(finite):
        low, high = finite.min(), min(finite.max(), finite[0] * 1.5 if finite[0] > 0 else finite.max())
        pad = 0.05 * max(high - low, 1e-6)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale)", ylabel="training loss", title=title or "LR range test")
    ax.legend()
    return finish(fig, path)
