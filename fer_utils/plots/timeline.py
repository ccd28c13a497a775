"""Per-frame emotion probabilities of video face tracks, one row per track."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from fer_utils.faces.draw import LABEL_COLOURS
from fer_utils.plots._figure import finish, new_figure


def plot_timeline(
    tracks: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    classes: Sequence[str],
    path: str | os.PathLike | None = None,
    title: str = "",
    max_tracks: int = 8,
) -> Figure:
    """One row per track id of ``tracks`` = ``{id: (times, (T, C) probabilities, (T,) labels)}``
    (the ``max_tracks`` longest, in id order): class probabilities over time, and the label per frame
    as a coloured strip above them."""
    shown = sorted(sorted(tracks, key=lambda t: -len(tracks[t][0]))[:max_tracks])
    fig = new_figure(10, 1.0 + 2.2 * max(1, len(shown)))
    axes = fig.subplots(max(1, len(shown)), 1, sharex=True, squeeze=False)[:, 0]
    colours = [np.array(LABEL_COLOURS.get(name, (0, 0, 0))) / 255 for name in classes]
    for ax, tid in zip(axes, shown):
        times, probs, labels = tracks[tid]
        for c, name in enumerate(classes):
            ax.plot(times, probs[:, c], color=colours[c], label=name, linewidth=1.4)
        ax.scatter(times, np.full(len(times), 1.06), c=[colours[int(lab)] for lab in labels], s=12, marker="s",
                   clip_on=False)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}\nprobability")
    axes[0].legend(loc="upper right", fontsize=8, ncol=min(4, len(classes)))
    hidden = len(tracks) - len(shown)
    axes[0].set_title(title + (f" ({hidden} shorter track(s) not shown)" if hidden else ""), pad=14)
    axes[-1].set_xlabel("time (s)")
    return finish(fig, path, dpi=100)
