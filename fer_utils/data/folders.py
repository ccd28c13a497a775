"""Generic class-folder datasets (``<root>/<emotion>/*.png``): JAFFE-, IEFDB-, Kaggle-style sets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError, MissingDatasetError
from fer_utils.data.skips import SkipLog
from fer_utils.data.images import is_image_file, list_files, read_grey
from fer_utils.labels import canonical_name, ordered_classes


def load_class_folders(
    root: str | os.PathLike, size: int = 48, errors: str = "raise", split: str = "",
) -> FaceData:
    """Load ``<root>/<class>/*`` images as greyscale ``size x size`` stills.

    Class folder names are mapped to canonical names (``anger`` -> ``angry`` ...); an unknown
    folder name, an empty class folder or an unreadable image raises ``DatasetError`` naming
    the path, or is skipped and counted with ``errors="skip"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingDatasetError("class-folder dataset", root / "<emotion>/*.png", "Check the path.")
    log = SkipLog(errors)
    files: list[tuple[str, Path]] = []
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        try:
            name = canonical_name(folder.name)
        except KeyError as exc:
            log.bad("unknown_class_folder", f"{folder}: folder name is not an emotion ({exc.args[0]})")
            continue
        images = [p for p in list_files(folder, log) if is_image_file(p)]
        if not images:
            log.bad("empty_class_folder", f"{folder}: class folder contains no image files")
        files.extend((name, p) for p in images)
    if not files:
        raise DatasetError(f"{root}: no class folders with images (expected <root>/<emotion>/*.png)")
    arrays, names, sources = [], [], []
    for name, path in files:
        try:
            arrays.append(read_grey(path, size))
        except DatasetError as exc:
            log.bad("unreadable_image", str(exc))
            continue
        names.append(name)
        sources.append(str(path.relative_to(root)))
    if not arrays:
        raise DatasetError(f"{root}: none of the {len(files)} image files could be read")
    classes = ordered_classes(names)
    meta = pd.DataFrame({
        "split": split, "subject": "", "sequence": sources, "frame": 0, "source": sources,
    })
    labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    return FaceData(np.stack(arrays), labels, classes, meta, name=root.name, skipped=log.report(str(root)))
