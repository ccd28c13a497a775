"""Face figures: right/wrong prediction grids, versions of the same faces, first-layer kernels,
activation maps, Grad-CAM."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from fer_utils.plots._figure import finish, last_frames, new_figure


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_prediction_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike | None = None,
    probs: np.ndarray | None = None,
    per_group: int = 8,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Random correct (green titles) and wrong (red, ``true -> predicted``) predictions.

    ``images``: uint8 faces ``(N,H,W)`` (clips: last frame). ``probs`` adds the confidence.
    """
    images, y_true, y_pred = last_frames(images), np.asarray(y_true), np.asarray(y_pred)
    if not len(images) == len(y_true) == len(y_pred):
        raise ValueError(f"{len(images)} images, {len(y_true)} labels, {len(y_pred)} predictions")
    rng = np.random.default_rng(seed)
    groups = []
    for name, mask in (("correct", y_true == y_pred), ("wrong", y_true != y_pred)):
        idx = np.flatnonzero(mask)
        groups.append((name, rng.choice(idx, min(per_group, len(idx)), replace=False) if len(idx) else idx))
    cols = max(1, max(len(g) for _, g in groups))
    fig = new_figure(1.45 * cols, 3.6)
    axes = np.asarray(fig.subplots(2, cols, squeeze=False))
    for row, (name, idx) in enumerate(groups):
        for col in range(cols):
            ax = axes[row, col]
            _off(ax)
            if col >= len(idx):
                ax.set_axis_off()
                continue
            i = idx[col]
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            text = classes[y_true[i]] if name == "correct" else f"{classes[y_true[i]]}\n-> {classes[y_pred[i]]}"
            if probs is not None:
                text += f" {probs[i, y_pred[i]]:.2f}"
            ax.set_title(text, fontsize=8, color="tab:green" if name == "correct" else "tab:red")
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.suptitle(title or "Predictions: correct (top) and wrong (bottom, true -> predicted)")
    return finish(fig, path)


def plot_face_rows(
    rows: dict[str, np.ndarray],
    captions: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """The same faces in several versions, one row per version (named on the left), one column
    per face; ``captions`` go above the first row's faces."""
    stacks = {name: last_frames(images) for name, images in rows.items()}
    cols = len(next(iter(stacks.values())))
    if any(len(images) != cols for images in stacks.values()):
        raise ValueError(f"every row needs {cols} faces, got {[len(v) for v in stacks.values()]}")
    fig = new_figure(1.3 * cols + 0.8, 1.35 * len(stacks) + 0.6)
    axes = np.asarray(fig.subplots(len(stacks), cols, squeeze=False))
    for row, (name, images) in enumerate(stacks.items()):
        for col in range(cols):
            _off(axes[row, col])
            axes[row, col].imshow(images[col], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(name, fontsize=9)
    for col, caption in enumerate(captions or []):
        axes[0, col].set_title(caption, fontsize=8)
    fig.suptitle(title or "Faces")
    return finish(fig, path)


def plot_kernels(
    kernels: np.ndarray, path: str | os.PathLike | None = None, title: str | None = None
) -> Figure:
    """First-layer conv kernels ``(out, in, kh, kw)`` as a grid, each scaled to its own range.

    Multi-channel kernels show their channel mean. Get them with
    :func:`fer_utils.evaluate.visualize.first_layer_kernels`.
    """
    kernels = np.asarray(kernels)
    if kernels.ndim != 4:
        raise ValueError(f"expected kernels (out, in, kh, kw), got shape {kernels.shape}")
    maps = kernels.mean(axis=1)
    cols = int(np.ceil(np.sqrt(len(maps))))
    rows = int(np.ceil(len(maps) / cols))
    fig = new_figure(0.9 * cols + 0.5, 0.9 * rows + 0.6)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        _off(ax)
        if i >= len(maps):
            ax.set_axis_off()
            continue
        ax.imshow(maps[i], cmap="gray", interpolation="nearest")
    fig.suptitle(title or f"First-layer kernels ({kernels.shape[0]} x {kernels.shape[2]}x{kernels.shape[3]})")
    return finish(fig, path)


def plot_activations(
    image: np.ndarray,
    activations: dict[str, np.ndarray],
    path: str | os.PathLike | None = None,
    index: int = 0,
    max_channels: int = 12,
    title: str | None = None,
) -> Figure:
    """One face and, per layer, its first ``max_channels`` activation maps (one row per layer).

    ``activations``: :func:`fer_utils.evaluate.visualize.activation_maps` output; ``index`` picks the
    face within the batch; ``image``: that face, uint8 ``(H, W)``.
    """
    maps = {name: a[index] for name, a in activations.items() if np.ndim(a) == 4}
    if not maps:
        raise ValueError("no 4-D (B, C, h, w) activations to show")
    cols = 1 + min(max_channels, max(m.shape[0] for m in maps.values()))
    fig = new_figure(1.2 * cols, 1.35 * len(maps) + 0.5)
    axes = np.asarray(fig.subplots(len(maps), cols, squeeze=False))
    for row, (name, layer_maps) in enumerate(maps.items()):
        for col in range(cols):
            ax = axes[row, col]
            _off(ax)
            if col == 0:
                ax.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255)
                ax.set_ylabel(name, fontsize=9)
            elif col - 1 < len(layer_maps):
                ax.imshow(layer_maps[col - 1], cmap="viridis")
                ax.set_title(f"ch {col - 1}", fontsize=7)
            else:
                ax.set_axis_off()
    fig.suptitle(title or "Activation maps (rows: layers)")
    return finish(fig, path)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """RGB float image: grey face ``(H, W)`` uint8 blended with ``heat`` in [0, 1] coloured by ``cmap``."""
    face = np.repeat((np.asarray(image, dtype=np.float64) / 255.0)[..., None], 3, axis=2)
    colour = colormaps[cmap](np.clip(heat, 0, 1))[..., :3]
    return (1 - alpha) * face + alpha * colour


def plot_gradcam(
    images: np.ndarray,
    cams: np.ndarray,
    path: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.45,
    title: str | None = None,
) -> Figure:
    """Faces (top row) and their Grad-CAM maps overlaid (bottom row); ``labels`` as titles.

    ``cams``: :func:`fer_utils.evaluate.visualize.grad_cam` output ``(N, H, W)`` in [0, 1].
    """
    images, cams = last_frames(images), np.asarray(cams)
    if images.shape != cams.shape:
        raise ValueError(f"images {images.shape} and maps {cams.shape} must have the same shape")
    n = len(images)
    fig = new_figure(1.6 * n + 0.3, 3.8)
    axes = np.asarray(fig.subplots(2, n, squeeze=False))
    for i in range(n):
        for row in range(2):
            _off(axes[row, i])
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[1, i].imshow(overlay_heatmap(images[i], cams[i], alpha))
        if labels is not None:
            axes[0, i].set_title(labels[i], fontsize=9)
    axes[0, 0].set_ylabel("face")
    axes[1, 0].set_ylabel("Grad-CAM")
    fig.suptitle(title or "Grad-CAM: where the evidence for the class lies")
    return finish(fig, path)
