"""Face-sequence datasets: CK+ (full and CK+48), Oulu-CASIA VIS and MUG.

Each loader returns *frames* (``(N, H, W)``) with ``subject``, ``sequence`` and ``frame``
metadata; :func:`fer_utils.data.clips.make_clips` turns them into fixed-length clips.
Full-size frames are resized whole; crop faces first with ``python -m fer_utils
prepare-faces`` or pass ``preprocess=`` (a function from a uint8 grey frame to a face).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError, MissingDatasetError
from fer_utils.data.skips import SkipLog
from fer_utils.data.images import is_image_file, list_files, read_image, to_grey
from fer_utils.data.paths import data_root
from fer_utils.labels import CKPLUS_CODES, canonical_name, ordered_classes

Preprocess = Callable[[np.ndarray], np.ndarray]
_CK48_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


@dataclass
class SequenceRecord:
    """One labelled sequence on disk: its frames in temporal order."""

    subject: str
    sequence: str
    label: str
    frames: list[Path]


def _first_dir(base: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (base / name).is_dir():
            return base / name
    return None


def _load_records(
    records: list[SequenceRecord], name: str, size: int, log: SkipLog, root: Path,
    preprocess: Preprocess | None = None,
) -> FaceData:
    """Read every frame of ``records`` into one frames FaceData (unreadable frames: see ``log``)."""
    arrays, rows, label_names = [], [], []
    for rec in records:
        for index, path in enumerate(rec.frames):
            try:
                grey = to_grey(read_image(path))
            except DatasetError as exc:
                log.bad("unreadable_image", f"{exc} (sequence {rec.sequence}, frame {index})")
                continue
            face = preprocess(grey) if preprocess else grey
            if face.shape != (size, size):
                face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
            arrays.append(face)
            label_names.append(rec.label)
            rows.append((rec.subject, rec.sequence, index, str(path.relative_to(root))))
    if not arrays:
        raise DatasetError(f"{root}: no readable frames found for {name}")
    classes = ordered_classes(label_names)
    meta = pd.DataFrame(rows, columns=["subject", "sequence", "frame", "source"])
    meta.insert(0, "split", "")
    labels = np.array([classes.index(n) for n in label_names], dtype=np.int64)
    return FaceData(np.stack(arrays), labels, classes, meta, name=name, skipped=log.report(name))


def load_ckplus48(root: str | os.PathLike | None = None, errors: str = "raise") -> FaceData:
    """CK+48: ``<root>[/ckplus48]/<emotion>/S<subject>_<sequence>_<frame>.png`` (48x48 grey)."""
    base = data_root(root)
    base = _first_dir(base, ("ckplus48", "CK+48")) or base
    log = SkipLog(errors)
    groups: dict[str, SequenceRecord] = {}
    frame_numbers: dict[Path, int] = {}
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
    if not class_dirs:
        raise MissingDatasetError(
            "CK+48", base / "<emotion>/S010_004_00000017.png",
            "CK+48 is the 48x48 crop of CK+'s last three frames per labelled sequence (Kaggle 'CK+48').",
        )
    for folder in class_dirs:
        try:
            label = canonical_name(folder.name)
        except KeyError as exc:
            log.bad("unknown_class_folder", f"{folder}: folder name is not an emotion ({exc.args[0]})")
            continue
        files = list_files(folder, log)
        if not files:
            log.bad("empty_class_folder", f"{folder}: class folder contains no images")
        for path in files:
            match = _CK48_NAME.match(path.name)
            if not match:
                log.bad("bad_file_name", f"{path}: expected a name like S010_004_00000017.png")
                continue
            subject, seq, frame = match.group(1).upper(), match.group(2), int(match.group(3))
            key = f"{subject}_{seq}"
            rec = groups.setdefault(key, SequenceRecord(subject, key, label, []))
            if rec.label != label:
                raise DatasetError(f"{path}: sequence {key} also appears under class {rec.label!r}")
            rec.frames.append(path)
            frame_numbers[path] = frame
    for rec in groups.values():
        rec.frames.sort(key=frame_numbers.__getitem__)
    return _load_records(list(groups.values()), "ckplus48", 48, log, base)


def load_ckplus(
    root: str | os.PathLike | None = None, size: int = 48, errors: str = "raise",
    preprocess: Preprocess | None = None,
) -> FaceData:
    """Full CK+: ``cohn-kanade-images/Sxxx/yyy/*.png`` with ``Emotion/Sxxx/yyy/*_emotion.txt``.

    Only sequences with an emotion file are loaded (CK+ codes 1-7; see
    :data:`fer_utils.labels.CKPLUS_CODES`); every frame carries the sequence's label (sequences
    run from neutral to apex: use ``make_clips(window="last")`` for apex clips).
    """
    base = data_root(root)
    base = _first_dir(base, ("ckplus", "CK+", "ck+")) or base
    images_dir, emotion_dir = base / "cohn-kanade-images", base / "Emotion"
    if not images_dir.is_dir() or not emotion_dir.is_dir():
        raise MissingDatasetError(
            "CK+", f"{images_dir} and {emotion_dir}",
            "Request the Extended Cohn-Kanade dataset (CK+) from its authors and unpack both folders.",
        )
    log = SkipLog(errors)
    records = []
    for label_file in sorted(emotion_dir.glob("S*/*/*_emotion.txt")):
        subject, seq = label_file.parent.parent.name, label_file.parent.name
        code = _read_ckplus_code(label_file, log)
        if code is None:
            continue
        frames_dir = images_dir / subject / seq
        frames = [p for p in list_files(frames_dir, log) if is_image_file(p)] if frames_dir.is_dir() else []
        if not frames:
            log.bad("missing_frames", f"{label_file}: no frames in {images_dir / subject / seq}")
            continue
        records.append(SequenceRecord(subject, f"{subject}_{seq}", CKPLUS_CODES[code], frames))
    if not records:
        raise DatasetError(f"{emotion_dir}: no *_emotion.txt label files with frames found")
    return _load_records(records, "ckplus", size, log, base, preprocess)


def _read_ckplus_code(path: Path, log: SkipLog) -> int | None:
    text = path.read_text(errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        log.bad("bad_label_file", f"{path}: expected one number like '3.0000000e+00', got {text[:40]!r}")
        return None
    if not math.isfinite(value) or value != int(value) or int(value) not in CKPLUS_CODES or int(value) == 0:
        log.bad("bad_label_file", f"{path}: emotion code {text!r} is not an integer 1-7")
        return None
    return int(value)


def load_oulu_casia(
    root: str | os.PathLike | None = None, illumination: str = "Strong", size: int = 48,
    errors: str = "raise", preprocess: Preprocess | None = None,
) -> FaceData:
    """Oulu-CASIA VIS: ``.../VL.../<illumination>/P001/<Emotion>/*.jpeg`` (cropped or original).

    Searches below ``<root>[/oulu_casia]`` for the visible-light (``VL*``) folders of the given
    illumination (``Strong``, ``Weak`` or ``Dark``).
    """
    base = data_root(root)
    base = _first_dir(base, ("oulu_casia", "Oulu_CASIA", "OuluCASIA")) or base
    subject_dirs = sorted(
        d for d in base.glob(f"**/{illumination}/P[0-9][0-9][0-9]")
        if d.is_dir() and any(part.upper().startswith("VL") for part in d.relative_to(base).parts)
    ) if base.is_dir() else []
    if not subject_dirs:
        raise MissingDatasetError(
            "Oulu-CASIA VIS", base / f"VL/{illumination}/P001/Anger/000.jpeg",
            "Request Oulu-CASIA NIR&VIS from the University of Oulu.",
        )
    log = SkipLog(errors)
    records = []
    for subject_dir in subject_dirs:
        for emotion_dir in sorted(d for d in subject_dir.iterdir() if d.is_dir()):
            records.extend(_sequence_dir_records(
                emotion_dir, subject_dir.name, f"{subject_dir.name}/{emotion_dir.name}", emotion_dir.name, log))
    return _load_records(records, "oulu_casia", size, log, base, preprocess)


def load_mug(
    root: str | os.PathLike | None = None, size: int = 48, errors: str = "raise",
    preprocess: Preprocess | None = None,
) -> FaceData:
    """MUG: ``<root>[/mug][/subjects3]/<subject>/<emotion>/<take>/*.jpg``."""
    base = data_root(root)
    base = _first_dir(base, ("mug", "MUG")) or base
    base = _first_dir(base, ("subjects3", "subjects")) or base
    subject_dirs = sorted(d for d in base.iterdir() if d.is_dir() and d.name.isdigit()) if base.is_dir() else []
    if not subject_dirs:
        raise MissingDatasetError(
            "MUG", base / "subjects3/001/happiness/take000/img_0000.jpg",
            "Request the MUG Facial Expression Database from its authors (Aristotle University of Thessaloniki).",
        )
    log = SkipLog(errors)
    records = []
    for subject_dir in subject_dirs:
        for emotion_dir in sorted(d for d in subject_dir.iterdir() if d.is_dir()):
            for take_dir in sorted(d for d in emotion_dir.iterdir() if d.is_dir()):
                sequence = f"{subject_dir.name}/{emotion_dir.name}/{take_dir.name}"
                records.extend(_sequence_dir_records(take_dir, subject_dir.name, sequence, emotion_dir.name, log))
    return _load_records(records, "mug", size, log, base, preprocess)


def _sequence_dir_records(
    frames_dir: Path, subject: str, sequence: str, emotion: str, log: SkipLog
) -> list[SequenceRecord]:
    """The one sequence whose frames are in ``frames_dir``, labelled ``emotion`` (or none, logged)."""
    try:
        label = canonical_name(emotion)
    except KeyError as exc:
        log.bad("unknown_class_folder", f"{frames_dir}: {emotion!r} is not an emotion ({exc.args[0]})")
        return []
    frames = [p for p in list_files(frames_dir, log) if is_image_file(p)]
    if not frames:
        log.bad("missing_frames", f"{frames_dir}: sequence folder has no image frames")
        return []
    return [SequenceRecord(subject, sequence, label, frames)]
