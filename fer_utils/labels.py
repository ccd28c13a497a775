"""The canonical emotion label space and each dataset's explicit mapping onto it."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Canonical order: FER2013's seven classes, then contempt (CK+, FER+).
CANONICAL_CLASSES: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt",
)

#: FER2013 CSV ``emotion`` column -> canonical name.
FER2013_CODES: Mapping[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

#: CK+ ``Emotion/*_emotion.txt`` codes -> canonical name.
CKPLUS_CODES: Mapping[int, str] = {
    0: "neutral", 1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad",
    7: "surprise",
}

#: FER+ vote columns (``fer2013new.csv``) in file order -> canonical name (None = not an emotion).
FERPLUS_COLUMNS: Mapping[str, str | None] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
    "unknown": None, "NF": None,
}

#: Folder / file names used by CK+48, Oulu-CASIA, MUG, Kaggle image folders, JAFFE-style sets.
NAME_SYNONYMS: Mapping[str, str] = {
    "angry": "angry", "anger": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": "contempt", "co": "contempt",
}


def canonical_name(name: str) -> str:
    """Map a dataset's class name (any case, common synonyms) to the canonical name.

    Raises ``KeyError`` naming the accepted names when ``name`` is unknown.
    """
    key = name.strip().lower()
    if key not in NAME_SYNONYMS:
        raise KeyError(
            f"unknown emotion name {name!r}; expected one of {sorted(set(NAME_SYNONYMS))}"
        )
    return NAME_SYNONYMS[key]


def ordered_classes(names: Iterable[str]) -> tuple[str, ...]:
    """The given canonical names, deduplicated, in canonical order."""
    present = set(names)
    unknown = present - set(CANONICAL_CLASSES)
    if unknown:
        raise KeyError(f"not canonical class names: {sorted(unknown)}")
    return tuple(c for c in CANONICAL_CLASSES if c in present)
