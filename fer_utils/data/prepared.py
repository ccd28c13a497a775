"""Faces made by ``python -m fer_utils prepare-faces``: its ``.npz`` back as :class:`FaceData`.

The file holds aligned crops, the relative paths they came from, class labels (from emotion-named
folders) and the preprocessing record the crops were cut with, which the returned data carries
into training and from there into every checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError
from fer_utils.data.preprocessing import Preprocessing

#: Split name given to every prepared face (hold out validation/test with a split function).
PREPARED_SPLIT = "Training"


def load_prepared_faces(path: str | os.PathLike) -> FaceData:
    """Read a ``prepare-faces`` output; ``DatasetError`` when it is not one or has no labels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared faces not found: {path} (make it with python -m fer_utils prepare-faces)")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    missing = {"images", "paths", "preprocessing"} - arrays.keys()
    if missing:
        raise DatasetError(f"{path}: not a prepare-faces output (lacks {sorted(missing)})")
    if "labels" not in arrays:
        raise DatasetError(f"{path}: no labels; prepare-faces takes them from emotion-named class folders")
    paths = [str(p) for p in arrays["paths"]]
    meta = pd.DataFrame({"split": PREPARED_SPLIT, "subject": "", "sequence": paths, "frame": 0, "source": paths})
    return FaceData(arrays["images"], arrays["labels"], tuple(str(c) for c in arrays["classes"]), meta,
                    name=path.stem, preprocessing=Preprocessing.from_dict(json.loads(str(arrays["preprocessing"]))))
