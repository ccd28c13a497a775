"""Per-frame emotion probabilities of a video face track."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from fer_utils.faces.draw import LABEL_COLOURS
from fer_utils.plots._figure import finish, new_figure


def plot_timeline(
    times: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike | None = None,
    title: str = "",
) -> Figure:
    """Class probabilities over time (top) and the label per frame (bottom)."""
    fig = new_figure(10, 5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    colours = [np.array(LABEL_COLOURS.get(name, (0, 0, 0))) / 255 for name in classes]
    for c, name in enumerate(classes):
        top.plot(times, probs[:, c], color=colours[c], label=name, linewidth=1.4)
    top.set_ylabel("probability")
    top.set_ylim(0, 1)
    top.legend(loc="upper right", fontsize=8, ncol=min(4, len(classes)))
    top.set_title(title)
    bottom.scatter(times, labels, c=[colours[int(lab)] for lab in labels], s=10, marker="s")
    bottom.set_yticks(range(len(classes)), classes, fontsize=8)
    bottom.set_ylim(-0.5, len(classes) - 0.5)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("label")
    return finish(fig, path, dpi=100)
