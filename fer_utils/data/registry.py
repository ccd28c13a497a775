"""``load_dataset(name, root, ...)``: one entry point for every dataset loader."""
from __future__ import annotations

import os
from collections.abc import Callable

from fer_utils.data.dataset import FaceData
from fer_utils.errors import UnknownNameError
from fer_utils.data.fer2013 import load_fer2013, load_fer2013_folders, load_ferplus
from fer_utils.data.folders import load_class_folders
from fer_utils.data.paths import data_root
from fer_utils.data.prepared import load_prepared_faces
from fer_utils.data.sequences import load_ckplus, load_ckplus48, load_mug, load_oulu_casia

DATASETS: dict[str, Callable[..., FaceData]] = {
    "fer2013": load_fer2013,
    "fer2013_folders": load_fer2013_folders,
    "ferplus": load_ferplus,
    "ckplus": load_ckplus,
    "ckplus48": load_ckplus48,
    "oulu_casia": load_oulu_casia,
    "mug": load_mug,
    "folders": load_class_folders,
    "prepared": load_prepared_faces,
}


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs) -> FaceData:
    """Load dataset ``name`` from ``root`` (default ``$FER_DATA_DIR``); kwargs go to its loader.

    A ``prepare-faces`` output loads as ``load_dataset("faces.npz")`` or
    ``load_dataset("prepared", "faces.npz")``.
    """
    if name.endswith(".npz"):
        return load_prepared_faces(name)
    if name == "prepared":
        return load_prepared_faces(root)
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {list_datasets()}")
    if name == "folders":
        return load_class_folders(data_root(root), **kwargs)
    return DATASETS[name](root, **kwargs)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(DATASETS)
