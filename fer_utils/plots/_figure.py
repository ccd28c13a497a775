"""Figures without pyplot: an Agg-rendered ``Figure`` that is saved where asked and returned.

No GUI window opens and no global figure state accumulates; notebooks display the
returned ``Figure`` as usual.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

def set_theme() -> None:
    """The report's look (seaborn whitegrid, notebook scale); notebooks apply it when they start."""
    sns.set_theme(style="whitegrid", context="notebook")


def new_figure(width: float, height: float, **kw) -> Figure:
    """An empty figure of ``width`` x ``height`` inches (constrained layout)."""
    return Figure(figsize=(width, height), layout="constrained", **kw)


def finish(fig: Figure, path: str | os.PathLike | None, dpi: int = 120) -> Figure:
    """Save ``fig`` as PNG at ``path`` (parent folders created) when given; return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def last_frames(images: np.ndarray) -> np.ndarray:
    """Stills ``(N, H, W)`` as they are; clips ``(N, T, H, W)`` by their last frame."""
    images = np.asarray(images)
    if images.ndim == 4:
        return images[:, -1]
    if images.ndim != 3:
        raise ValueError(f"expected faces (N,H,W) or clips (N,T,H,W), got shape {images.shape}")
    return images
