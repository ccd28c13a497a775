"""Dataset figures: samples per class, class balance, pixel histograms, clips as strips."""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from fer_utils.data.dataset import FaceData
from fer_utils.data.stats import class_balance
from fer_utils.plots._figure import finish, new_figure
from fer_utils.plots.images import _off


def plot_samples_per_class(
    data: FaceData, per_class: int = 8, path: str | os.PathLike | None = None, seed: int = 0,
    title: str | None = None,
) -> Figure:
    """A grid with one row per class of ``per_class`` random faces (clips: last frame)."""
    rng = np.random.default_rng(seed)
    images = data.images[:, -1] if data.is_clip else data.images
    fig = new_figure(1.1 * per_class + 1.2, 1.15 * len(data.classes))
    axes = np.asarray(fig.subplots(len(data.classes), per_class, squeeze=False))
    for row, name in enumerate(data.classes):
        idx = np.flatnonzero(data.labels == row)
        chosen = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else idx
        for col in range(per_class):
            ax = axes[row, col]
            _off(ax)
            if col < len(chosen):
                ax.imshow(images[chosen[col]], cmap="gray", vmin=0, vmax=255)
            else:
                ax.set_axis_off()
        axes[row, 0].set_ylabel(f"{name}\n({len(idx)})", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title or f"{data.name}: random faces per class (count in brackets)")
    return finish(fig, path)


def plot_class_balance(data: FaceData, path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """Bar chart of items per class, one bar group per split."""
    table = class_balance(data).drop(columns="share")
    fig = new_figure(8, 4)
    ax = fig.subplots()
    width = 0.8 / table.shape[1]
    x = np.arange(len(table))
    for i, split in enumerate(table.columns):
        ax.bar(x + i * width - 0.4 + width / 2, table[split], width, label=split)
    ax.set_xticks(x, table.index, rotation=30)
    ax.set_xlabel("class")
    ax.set_ylabel("items")
    ax.legend(title="split")
    ax.set_title(title or f"{data.name}: class balance")
    return finish(fig, path)


def plot_pixel_histograms(data: FaceData, path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """Grey-level histograms per class (density), to compare exposure and contrast."""
    fig = new_figure(8, 4)
    ax = fig.subplots()
    bins = np.arange(0, 257, 8)
    for i, name in enumerate(data.classes):
        values = data.images[data.labels == i].ravel()
        hist, _ = np.histogram(values, bins=bins, density=True)
        ax.plot(bins[:-1] + 4, hist, label=name)
    ax.set_xlabel("grey level")
    ax.set_ylabel("density")
    ax.legend(ncol=2, fontsize=8)
    ax.set_title(title or f"{data.name}: pixel value distribution per class")
    return finish(fig, path)


def plot_clips(clips: FaceData, count: int = 6, path: str | os.PathLike | None = None, seed: int = 0,
               title: str | None = None) -> Figure:
    """``count`` random clips, one row each, frames left to right, labelled with class and subject."""
    if not clips.is_clip:
        raise ValueError(f"{clips.name}: expected clips (N,T,H,W)")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(clips), min(count, len(clips)), replace=False)
    t = clips.images.shape[1]
    fig = new_figure(1.3 * t + 1.5, 1.3 * len(chosen))
    axes = np.asarray(fig.subplots(len(chosen), t, squeeze=False))
    for row, i in enumerate(chosen):
        for col in range(t):
            _off(axes[row, col])
            axes[row, col].imshow(clips.images[i, col], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(f"{clips.classes[clips.labels[i]]}\n{clips.meta['subject'].iat[i]}",
                                rotation=0, ha="right", va="center", fontsize=9)
    for col in range(t):
        axes[0, col].set_title(f"frame {col}", fontsize=9)
    fig.suptitle(title or f"{clips.name}: clips (rows) over time (columns)")
    return finish(fig, path)
