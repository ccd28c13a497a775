"""FER2013 packed for travel: its parsed arrays in one xz-compressed ``.npz``.

The Kaggle ``fer2013.csv.gz`` spells every pixel out in decimal (83 MB for Training +
PublicTest); the same uint8 arrays compressed with xz take about 56 MB, small enough to
carry to a GPU machine. :func:`load_fer2013` reads a packed file when no CSV is present, so
``load_dataset("fer2013")`` gives identical images, labels, splits and provenance either way.
"""
from __future__ import annotations

import io
import lzma
import os
from pathlib import Path

import numpy as np

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError
from fer_utils.files import atomic_write

PACKED_NAME = "fer2013.npz.xz"
#: xz filters: a byte delta at one image row (48 pixels) ahead of LZMA2 takes about 4% off.
_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 48},
            {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 4, "pb": 0}]
#: Arrays a packed file holds, with their dtype kinds (u: unsigned, i: signed int, U: text).
_FIELDS = {"images": "u", "labels": "i", "usage": "U", "lines": "i", "source_name": "U",
           "skip_reasons": "U", "skip_counts": "i"}


def pack_fer2013(data: FaceData, path: str | os.PathLike) -> Path:
    """Write ``data`` (as loaded from the FER2013 CSV, or a subset) to the packed file ``path``."""
    if data.name != "fer2013":
        raise ValueError(f"pack_fer2013 packs the FER2013 CSV dataset, got {data.name!r}")
    sources = data.meta["source"].astype(str).str.rsplit(":", n=1)
    path = Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, images=data.images.astype(np.uint8), labels=data.labels.astype(np.int64),
             usage=data.meta["split"].to_numpy(dtype=str), lines=sources.str[1].astype(np.int64).to_numpy(),
             source_name=np.array(sources.iat[0][0] if len(data) else "fer2013.csv"),
             skip_reasons=np.array(list(data.skipped), dtype=str),
             skip_counts=np.array(list(data.skipped.values()), dtype=np.int64))
    with atomic_write(path) as handle:
        handle.write(lzma.compress(buffer.getvalue(), filters=_FILTERS))
    return path


def read_packed_fer2013(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a packed file, checked: ``DatasetError`` naming the file on any defect."""
    path = Path(path)
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (lzma.LZMAError, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable packed FER2013 file ({exc}); "
                           "re-create it with `python -m fer_utils pack-data`") from exc
    missing = [name for name in _FIELDS if name not in arrays]
    if missing:
        raise DatasetError(f"{path}: packed FER2013 file lacks array(s) {missing}")
    wrong = [f"{name} ({arrays[name].dtype})" for name, kind in _FIELDS.items() if arrays[name].dtype.kind != kind]
    if wrong:
        raise DatasetError(f"{path}: unexpected dtype of {wrong}")
    n = len(arrays["labels"])
    if arrays["images"].shape != (n, 48, 48) or len(arrays["usage"]) != n or len(arrays["lines"]) != n:
        raise DatasetError(
            f"{path}: expected images (N, 48, 48) and N labels, usages and lines; got images "
            f"{arrays['images'].shape}, {n} labels, {len(arrays['usage'])} usages, {len(arrays['lines'])} lines")
    return arrays
