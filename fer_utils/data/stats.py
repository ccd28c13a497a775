"""Dataset statistics for exploration: class balance, pixel statistics, exact duplicates."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData


def class_balance(data: FaceData) -> pd.DataFrame:
    """Items per class and split (rows: classes, columns: splits, plus ``share`` of the total)."""
    table = pd.crosstab(
        pd.Categorical([data.classes[i] for i in data.labels], categories=list(data.classes)),
        data.meta["split"].replace("", "all").to_numpy(), rownames=["class"], colnames=["split"],
    )
    table["share"] = table.sum(axis=1) / table.to_numpy().sum()
    return table


def pixel_statistics(data: FaceData) -> pd.DataFrame:
    """Per-class mean/std of pixel values and counts of near-blank images (std < 5)."""
    flat = data.images.reshape(len(data), -1).astype(np.float32)
    per_image = pd.DataFrame({
        "class": [data.classes[i] for i in data.labels], "mean": flat.mean(axis=1), "std": flat.std(axis=1),
    })
    per_image["near_blank"] = per_image["std"] < 5
    return per_image.groupby("class", sort=False).agg(
        images=("mean", "size"), mean=("mean", "mean"), std=("std", "mean"), near_blank=("near_blank", "sum"),
    ).reindex(list(data.classes))


def image_hashes(data: FaceData) -> np.ndarray:
    """SHA-1 of each item's raw bytes (exact duplicate detection)."""
    return np.array([hashlib.sha1(img.tobytes()).hexdigest() for img in data.images])


def duplicates(data: FaceData) -> pd.DataFrame:
    """Groups of byte-identical images: one row per duplicated image with its splits and labels."""
    hashes = image_hashes(data)
    frame = pd.DataFrame({
        "hash": hashes, "split": data.meta["split"].to_numpy(), "source": data.meta["source"].to_numpy(),
        "label": [data.classes[i] for i in data.labels],
    })
    dup = frame[frame.duplicated("hash", keep=False)].sort_values(["hash", "split"])
    return dup.reset_index(drop=True)


def seen_in(reference: FaceData, data: FaceData) -> np.ndarray:
    """Boolean mask over ``data``: items byte-identical to some item of ``reference`` (e.g. test
    faces with a twin in Training, which a memorising model gets right for free)."""
    return np.isin(image_hashes(data), image_hashes(reference))


def duplicate_summary(data: FaceData) -> dict[str, int]:
    """Counts: duplicate groups, groups spanning several splits, groups with conflicting labels."""
    dup = duplicates(data)
    groups = dup.groupby("hash")
    return {
        "duplicate_images": int(len(dup)),
        "duplicate_groups": int(groups.ngroups),
        "groups_across_splits": int((groups["split"].nunique() > 1).sum()),
        "groups_with_conflicting_labels": int((groups["label"].nunique() > 1).sum()),
    }
