"""Turning frame sequences into fixed-length clips ``(N, T, H, W)``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError

WINDOWS = ("last", "uniform", "sliding")


def make_clips(frames: FaceData, length: int, window: str = "last", stride: int = 1) -> FaceData:
    """Group frames by ``sequence`` (in ``frame`` order) and cut clips of ``length`` frames.

    ``window``: ``"last"`` one clip of the last ``length`` frames (the apex in CK+),
    ``"uniform"`` one clip of ``length`` frames evenly spaced over the sequence,
    ``"sliding"`` every window of ``length`` frames with step ``stride`` (vote across the
    windows of a sequence with :func:`fer_utils.evaluate.voting.window_vote`).
    A sequence shorter than ``length`` raises ``DatasetError`` naming it.
    Clip metadata: the sequence's ``split``/``subject``/``sequence``, ``frame`` = first frame
    index of the clip, ``source`` = first frame's source, and ``window`` = index in its sequence.
    """
    if frames.is_clip:
        raise ValueError(f"{frames.name}: already clips")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    if length < 1 or stride < 1:
        raise ValueError("length and stride must be >= 1")
    meta = frames.meta.assign(_row=np.arange(len(frames))).sort_values(["sequence", "frame"], kind="stable")
    clip_rows, clip_meta = [], []
    for sequence, group in meta.groupby("sequence", sort=False):
        rows = group["_row"].to_numpy()
        if len(rows) < length:
            raise DatasetError(f"{frames.name}: sequence {sequence} has {len(rows)} frames, fewer than {length}")
        if len(set(frames.labels[rows])) != 1:
            raise DatasetError(f"{frames.name}: sequence {sequence} mixes labels")
        for w, start in enumerate(_window_starts(len(rows), length, window, stride)):
            picked = rows[np.linspace(0, len(rows) - 1, length).round().astype(int)] if window == "uniform" \
                else rows[start:start + length]
            clip_rows.append(picked)
            first = meta.loc[picked[0]]
            clip_meta.append({"split": first["split"], "subject": first["subject"], "sequence": sequence,
                              "frame": int(first["frame"]), "source": first["source"], "window": w})
    index = np.stack(clip_rows)
    return FaceData(
        images=frames.images[index], labels=frames.labels[index[:, 0]], classes=frames.classes,
        meta=pd.DataFrame(clip_meta), name=frames.name, skipped=dict(frames.skipped),
        preprocessing=frames.preprocessing,
    )


def _window_starts(n: int, length: int, window: str, stride: int) -> range:
    if window == "last":
        return range(n - length, n - length + 1)
    if window == "uniform":
        return range(0, 1)
    return range(0, n - length + 1, stride)
