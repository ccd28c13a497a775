"""`FaceData`: images as one uint8 array plus labels and per-item metadata."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fer_utils.data.preprocessing import Preprocessing
from fer_utils.errors import DatasetError

#: Metadata columns every loader fills (one row per item).
META_COLUMNS: tuple[str, ...] = ("split", "subject", "sequence", "frame", "source")


@dataclass
class FaceData:
    """A labelled set of greyscale faces (stills or clips) with metadata.

    Attributes:
        images: uint8 array, ``(N, H, W)`` for stills or ``(N, T, H, W)`` for clips.
        labels: int64 array ``(N,)`` indexing ``classes``.
        classes: class names in canonical order (see :mod:`fer_utils.labels`).
        meta: one row per item with at least :data:`META_COLUMNS`:
            ``split`` (official split or ``""``), ``subject`` (person id or ``""``),
            ``sequence`` (sequence/clip id), ``frame`` (frame index in the sequence,
            or first frame of a clip), ``source`` (file and line/path it came from).
        name: dataset name, for messages and experiment configs.
        skipped: count of bad inputs skipped with ``errors="skip"``, by reason.
        preprocessing: how the faces were cut (margin, channels, normalisation); its size and
            frames always match ``images``. Training records it in checkpoints.
        soft_labels: optional float32 ``(N, len(classes))`` class probabilities that training aims
            at instead of the one-hot labels (distillation targets); ``labels`` stay the truth.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    meta: pd.DataFrame
    name: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    soft_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"{self.name}: images must be uint8 (N,H,W) or (N,T,H,W), got "
                f"{self.images.dtype} {self.images.shape}"
            )
        if len(self.labels) != n or len(self.meta) != n:
            raise ValueError(
                f"{self.name}: {n} images, {len(self.labels)} labels, {len(self.meta)} meta rows"
            )
        missing = [c for c in META_COLUMNS if c not in self.meta.columns]
        if missing:
            raise ValueError(f"{self.name}: meta lacks columns {missing}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"{self.name}: labels outside 0..{len(self.classes) - 1}")
        self.meta = self.meta.reset_index(drop=True)
        self.preprocessing = self.preprocessing.for_images(self.images)
        if self.soft_labels is not None:
            self.soft_labels = np.asarray(self.soft_labels, dtype=np.float32)
            if self.soft_labels.shape != (n, len(self.classes)):
                raise ValueError(f"{self.name}: soft_labels must be ({n}, {len(self.classes)}), "
                                 f"got {self.soft_labels.shape}")
            if n and not (np.isfinite(self.soft_labels).all() and (self.soft_labels >= 0).all()
                          and np.allclose(self.soft_labels.sum(1), 1.0, atol=1e-3)):
                raise ValueError(f"{self.name}: soft_labels must be non-negative rows summing to 1")

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """SHA-1 of the images, labels, classes and soft labels if any (identifies the data in configs
        and checkpoints)."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(json.dumps(list(self.classes)).encode())
        if self.soft_labels is not None:
            h.update(np.ascontiguousarray(self.soft_labels).tobytes())
        return h.hexdigest()

    @property
    def is_clip(self) -> bool:
        """True for ``(N, T, H, W)`` clips."""
        return self.images.ndim == 4

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of one frame."""
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    @property
    def subjects(self) -> np.ndarray:
        """Subject id per item (empty strings where unknown)."""
        return self.meta["subject"].to_numpy()

    def subset(self, index: np.ndarray | list[int] | pd.Series) -> "FaceData":
        """Items selected by a boolean mask or integer index."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FaceData(
            images=self.images[idx], labels=self.labels[idx], classes=self.classes,
            meta=self.meta.iloc[idx], name=self.name, skipped=dict(self.skipped),
            preprocessing=self.preprocessing, soft_labels=None if self.soft_labels is None else self.soft_labels[idx],
        )

    def split(self, *names: str) -> "FaceData":
        """Items whose ``split`` is one of ``names`` (``DatasetError`` if none match)."""
        mask = self.meta["split"].isin(names).to_numpy()
        if not mask.any():
            have = sorted(self.meta["split"].unique())
            raise DatasetError(f"{self.name}: no items in split(s) {names}; splits present: {have}")
        return self.subset(mask)

    def class_counts(self) -> pd.Series:
        """Number of items per class name, in class order."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return pd.Series(counts, index=list(self.classes), name="count")

    def summary(self) -> str:
        """One line: name, item count, shape, classes, skipped inputs."""
        text = f"{self.name}: {len(self)} items of {self.images.shape[1:]}, {len(self.classes)} classes"
        if self.skipped:
            text += f", skipped {sum(self.skipped.values())} ({self.skipped})"
        return text
