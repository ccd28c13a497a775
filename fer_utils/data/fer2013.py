"""FER2013 in its Kaggle CSV form (plain or .gz), its image-folder form, and FER+ relabels."""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError, MissingDatasetError
from fer_utils.data.skips import SkipLog
from fer_utils.data.folders import load_class_folders
from fer_utils.data.paths import CACHE_DIR_ENV, cache_path, data_root
from fer_utils.files import atomic_write
from fer_utils.labels import FER2013_CODES, FERPLUS_COLUMNS, ordered_classes

FER2013_SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FER2013_CLASSES: tuple[str, ...] = tuple(FER2013_CODES[i] for i in range(7))
FER2013_PIXELS = 48 * 48
_CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz", "icml_face_data.csv", "icml_face_data.csv.gz")
_HOW_TO_GET = (
    "Download fer2013.csv from the Kaggle 'Challenges in Representation Learning: Facial "
    "Expression Recognition Challenge' and place it (optionally gzipped) in <data>/fer2013/."
)
_FOLDER_SPLITS = {
    "train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
    "validation": "PublicTest", "publictest": "PublicTest", "privatetest": "PrivateTest", "test": "Test",
}


def find_fer2013_file(root: str | os.PathLike | None = None) -> Path:
    """The FER2013 file: ``root`` itself if it is a file, else ``root[/fer2013]/fer2013.csv[.gz]``.
    Several candidates (say ``fer2013.csv`` beside ``fer2013.csv.gz``) are a ``DatasetError``."""
    base = data_root(root)
    if base.is_file():
        return base
    found = [folder / name for name in _CSV_NAMES for folder in (base / "fer2013", base)
             if (folder / name).is_file()]
    if len(found) > 1:
        raise DatasetError(f"{base}: several FER2013 files {[str(p) for p in found]}; expected one "
                           "(remove or move the others, or pass the file itself as the data dir)")
    if found:
        return found[0]
    raise MissingDatasetError("FER2013 CSV", base / "fer2013" / "fer2013.csv[.gz]", _HOW_TO_GET)


def load_fer2013(root: str | os.PathLike | None = None, errors: str = "raise", cache: bool = True) -> FaceData:
    """Load the FER2013 CSV (columns ``emotion,pixels,Usage``) with its official splits.

    Every row is validated (label 0-6, 2304 integer pixels in 0-255, known Usage); a bad row
    raises ``DatasetError`` naming file and line, or is skipped and counted with ``errors="skip"``.
    The parsed arrays are cached (``$FER_CACHE_DIR``, default
    ``~/.cache/fer_utils``) keyed by the file's path, size and modification time.
    """
    path = find_fer2013_file(root)
    cached = cache_path(path, f"v2-{errors}") if cache else None
    arrays = _read_cache(cached) if cached is not None else None
    if arrays is None:
        arrays = _parse_csv(path, errors)
        if cached is not None:
            _write_cache(cached, arrays)
    if len(arrays["labels"]) == 0:
        raise DatasetError(f"{path}: no valid rows; expected lines 'emotion,pixels,Usage' after the header")
    lines = arrays["lines"]
    meta = pd.DataFrame({
        "split": arrays["usage"].astype(str), "subject": "", "sequence": lines.astype(str), "frame": 0,
        "source": [f"{arrays['source_name']}:{n}" for n in lines],
    })
    skipped = dict(zip(arrays["skip_reasons"].tolist(), arrays["skip_counts"].tolist()))
    return FaceData(arrays["images"], arrays["labels"], FER2013_CLASSES, meta, name="fer2013", skipped=skipped)


def _read_cache(cached: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or unreadable (a corrupt entry is rebuilt, with a warning)."""
    if not cached.is_file():
        return None
    try:
        with np.load(cached, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{cached}: corrupt cache entry ({type(exc).__name__}); rebuilding it", stacklevel=3)
        return None
    if not {"images", "labels", "usage", "lines"} <= set(arrays):
        warnings.warn(f"{cached}: incomplete cache entry; rebuilding it", stacklevel=3)
        return None
    return arrays


_UNWRITABLE_CACHES: set[Path] = set()


def _write_cache(cached: Path, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` atomically; an unwritable cache folder means no cache (one warning per folder)."""
    try:
        with atomic_write(cached) as handle:
            np.savez(handle, **arrays)
    except OSError as exc:
        if cached.parent not in _UNWRITABLE_CACHES:
            _UNWRITABLE_CACHES.add(cached.parent)
            warnings.warn(f"cache folder {cached.parent} is not writable ({exc.strerror or exc}); "
                          f"loading without a cache (set {CACHE_DIR_ENV} to a writable folder)", stacklevel=3)


def _parse_csv(path: Path, errors: str) -> dict[str, np.ndarray]:
    """Validate and parse the CSV into arrays (images, labels, usage, line numbers...)."""
    log = SkipLog(errors)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty file; expected a FER2013 CSV with header 'emotion,pixels,Usage'") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable FER2013 CSV ({exc})") from exc
    missing = [c for c in ("emotion", "pixels", "Usage") if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; expected header 'emotion,pixels,Usage', "
            f"found {list(frame.columns)}"
        )
    lines = np.arange(len(frame)) + 2  # header is line 1; blank lines are read (then dropped) to keep numbering
    blank = (frame == "").all(axis=1).to_numpy()
    frame, lines = frame[~blank].reset_index(drop=True), lines[~blank]
    if len(frame) == 0:
        raise DatasetError(f"{path}: header only, no data rows; expected lines 'emotion,pixels,Usage'")
    keep = np.ones(len(frame), dtype=bool)

    emotion = pd.to_numeric(frame["emotion"], errors="coerce").to_numpy()
    for i in np.flatnonzero(~np.isin(emotion, list(FER2013_CODES))):
        keep[i] = False
        log.bad("label", f"{path}, line {lines[i]}: emotion {frame['emotion'].iat[i]!r} is not an integer 0-6")
    usage = frame["Usage"].to_numpy()
    for i in np.flatnonzero(keep & ~np.isin(usage, FER2013_SPLITS)):
        keep[i] = False
        log.bad("usage", f"{path}, line {lines[i]}: Usage {usage[i]!r} is not one of {FER2013_SPLITS}")

    pixels = frame["pixels"].str.strip()
    counts = pixels.str.split().str.len().fillna(0).to_numpy()
    for i in np.flatnonzero(keep & (counts != FER2013_PIXELS)):
        keep[i] = False
        log.bad("pixel_count", f"{path}, line {lines[i]}: expected {FER2013_PIXELS} pixel values, got {counts[i]}")
    values = _parse_pixels(pixels[keep].tolist())
    if values is None:  # some row has a non-integer token: find which, row by row
        values_rows = []
        for i in np.flatnonzero(keep):
            try:
                values_rows.append(np.array(pixels.iat[i].split(), dtype=np.int64))
            except ValueError:
                keep[i] = False
                log.bad("pixel_value", f"{path}, line {lines[i]}: pixels must be integers 0-255")
        values = np.stack(values_rows) if values_rows else np.zeros((0, FER2013_PIXELS), np.int64)
    values = values.reshape(-1, FER2013_PIXELS)
    in_range = ((values >= 0) & (values <= 255)).all(axis=1)
    kept_idx = np.flatnonzero(keep)
    for j in np.flatnonzero(~in_range):
        log.bad("pixel_value", f"{path}, line {lines[kept_idx[j]]}: pixel values must be in 0-255")
        keep[kept_idx[j]] = False
    images = values[in_range].astype(np.uint8).reshape(-1, 48, 48)
    skipped = log.report(str(path))
    return {"images": images, "labels": emotion[keep].astype(np.int64), "usage": usage[keep].astype(str),
            "lines": lines[keep], "source_name": np.array(path.name),
            "skip_reasons": np.array(list(skipped), dtype=str),
            "skip_counts": np.array(list(skipped.values()), dtype=np.int64)}


def _parse_pixels(rows: list[str]) -> np.ndarray | None:
    """All rows' pixels as one int array (fast C parser), or None if any token is not an integer."""
    if not rows:
        return np.zeros((0, FER2013_PIXELS), np.int64)
    try:
        flat = np.fromstring(" ".join(rows), dtype=np.int64, sep=" ")
    except ValueError:
        return None
    return flat if flat.size == len(rows) * FER2013_PIXELS else None


def load_fer2013_folders(
    root: str | os.PathLike | None = None, size: int = 48, errors: str = "raise"
) -> FaceData:
    """FER2013 as image folders: ``<root>[/fer2013]/<split>/<emotion>/*.png|jpg``.

    Split folders ``train``/``test`` (Kaggle layout) map to ``Training``/``Test``; folders named
    after the official splits (``PublicTest``, ``PrivateTest``) keep their names.
    """
    base = data_root(root)
    if (base / "fer2013").is_dir() and not any((base / d).is_dir() for d in ("train", "Training")):
        base = base / "fer2013"
    split_dirs = sorted(d for d in base.iterdir() if d.is_dir() and d.name.lower() in _FOLDER_SPLITS) \
        if base.is_dir() else []
    if not split_dirs:
        raise MissingDatasetError(
            "FER2013 image folders", base / "train/<emotion>/*.png",
            "Download the Kaggle FER2013 image-folder export (train/ and test/ with one folder per emotion).",
        )
    parts = [load_class_folders(d, size=size, errors=errors, split=_FOLDER_SPLITS[d.name.lower()])
             for d in split_dirs]
    classes = ordered_classes(c for p in parts for c in p.classes)
    images = np.concatenate([p.images for p in parts])
    labels = np.concatenate([[classes.index(p.classes[i]) for i in p.labels] for p in parts]).astype(np.int64)
    meta = pd.concat([p.meta for p in parts], ignore_index=True)
    skipped: dict[str, int] = {}
    for p in parts:
        for k, v in p.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return FaceData(images, labels, classes, meta, name="fer2013_folders", skipped=skipped)


def official_test_split(data: FaceData) -> str:
    """``PrivateTest`` when present; otherwise say so once and use ``PublicTest`` (or ``Test``)."""
    present = set(data.meta["split"])
    if "PrivateTest" in present:
        return "PrivateTest"
    fallback = "PublicTest" if "PublicTest" in present else "Test"
    if fallback not in present:
        raise DatasetError(f"{data.name}: no test split; splits present: {sorted(present)}")
    warnings.warn(f"{data.name}: PrivateTest is not in this file; reporting on {fallback} instead", stacklevel=2)
    return fallback


def load_ferplus(
    root: str | os.PathLike | None = None, ferplus_csv: str | os.PathLike | None = None,
    errors: str = "raise",
) -> FaceData:
    """FER2013 images relabelled by FER+ majority vote (``fer2013new.csv``, merged by row order).

    The vote follows the FER+ reference code: single (outlier) votes are ignored, and the
    winning emotion needs more than half of the remaining votes. Rows whose winner is
    ``unknown``/``NF`` (not a face) or that have no majority are dropped and counted in
    ``skipped``. Classes: FER2013's seven plus contempt.
    """
    base = data_root(root)
    fer = load_fer2013(base, errors=errors)
    path = Path(ferplus_csv) if ferplus_csv else _find_ferplus(base)
    try:
        votes = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable FER+ CSV ({exc})") from exc
    vote_cols = list(FERPLUS_COLUMNS)
    missing = [c for c in ["Usage", *vote_cols] if c not in votes.columns]
    if missing:
        raise DatasetError(f"{path}: missing FER+ column(s) {missing}; found {list(votes.columns)}")
    if fer.skipped or len(votes) != len(fer):
        raise DatasetError(
            f"{path}: {len(votes)} FER+ rows but the FER2013 CSV has {len(fer)} valid rows; "
            "FER+ labels are merged by row order, so both files must be complete and unskipped"
        )
    counts = votes[vote_cols].apply(pd.to_numeric, errors="coerce")
    bad_rows = np.flatnonzero(counts.isna().any(axis=1).to_numpy() | (counts.to_numpy() < 0).any(axis=1))
    if len(bad_rows):
        raise DatasetError(f"{path}, line {bad_rows[0] + 2}: vote counts must be non-negative numbers")
    labels_by_name, keep = _majority_vote(counts.to_numpy(dtype=float), vote_cols)
    classes = ordered_classes(n for n in FERPLUS_COLUMNS.values() if n)
    skipped = {"no_majority_or_not_a_face": int((~keep).sum())}
    meta = fer.meta.copy()
    meta["split"] = votes["Usage"].astype(str).to_numpy()
    labels = np.array([classes.index(n) for n in labels_by_name[keep]], dtype=np.int64)
    return FaceData(fer.images[keep], labels, classes, meta[keep], name="ferplus", skipped=skipped)


def _find_ferplus(base: Path) -> Path:
    for folder in (base / "ferplus", base / "fer2013", base):
        if (folder / "fer2013new.csv").is_file():
            return folder / "fer2013new.csv"
    raise MissingDatasetError(
        "FER+ labels", base / "ferplus" / "fer2013new.csv",
        "Get fer2013new.csv from Microsoft's FERPlus repository (it relabels the FER2013 CSV rows).",
    )


def _majority_vote(counts: np.ndarray, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Winning canonical name per row and a mask of rows with a real-emotion majority."""
    votes = np.where(counts <= 1, 0.0, counts)  # a single vote is an outlier (FER+ reference code)
    total = votes.sum(axis=1)
    winner = votes.argmax(axis=1)
    has_majority = votes.max(axis=1) > 0.5 * total
    names = np.array([FERPLUS_COLUMNS[c] or "" for c in columns], dtype=object)[winner]
    keep = has_majority & (names != "") & (total > 0)
    return names, keep
