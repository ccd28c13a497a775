"""Train/test splits: stratified hold-out, and subject-independent k-fold / leave-one-subject-out.

scikit-learn is imported by each function, not with the module: ``predict`` imports ``fer_utils.data`` and
makes no split, and loading scikit-learn would add about half a second to its cold start.
"""
from __future__ import annotations

import numpy as np

from fer_utils.data.dataset import FaceData
from fer_utils.errors import DatasetError

Fold = tuple[np.ndarray, np.ndarray]


def training_holdout(train: FaceData, size: float = 0.1) -> tuple[FaceData, FaceData]:
    """``train`` split into what trains and the stratified hold-out that validates (seed 0): the
    hold-out of ``train --val-split holdout`` and of ``evaluate --split holdout``."""
    train_idx, val_idx = stratified_holdout(train, test_size=size, seed=0)
    return train.subset(train_idx), train.subset(val_idx)


def stratified_holdout(data: FaceData, test_size: float = 0.1, seed: int = 0) -> Fold:
    """Indices ``(train, held_out)`` keeping class proportions."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(data))
    train, held = train_test_split(index, test_size=test_size, random_state=seed, stratify=data.labels)
    return np.sort(train), np.sort(held)


def _subjects(data: FaceData) -> np.ndarray:
    subjects = data.subjects
    if (subjects == "").any():
        raise ValueError(f"{data.name}: subject-independent splits need a subject for every item")
    return subjects


def _check_disjoint(data: FaceData, folds: list[Fold]) -> list[Fold]:
    subjects = data.subjects
    for i, (train, test) in enumerate(folds):
        shared = set(subjects[train]) & set(subjects[test])
        assert not shared, f"fold {i}: subjects {sorted(shared)[:5]} on both sides"
    return folds


def subject_holdout(data: FaceData, test_size: float = 0.2, seed: int = 0) -> Fold:
    """Indices ``(train, held_out)`` with no subject on both sides."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, held = next(splitter.split(np.zeros(len(data)), data.labels, _subjects(data)))
    return _check_disjoint(data, [(np.sort(train), np.sort(held))])[0]


def subject_kfold(data: FaceData, k: int = 10, seed: int = 0) -> list[Fold]:
    """``k`` folds by subject, class-stratified as far as groups allow; each item tested once."""
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = _subjects(data)
    if len(set(subjects)) < k:
        raise ValueError(f"{data.name}: {len(set(subjects))} subjects, fewer than k={k} folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(data)), data.labels, subjects)]
    return _check_disjoint(data, folds)


def leave_one_subject_out(data: FaceData) -> list[Fold]:
    """One fold per subject: that subject's items are the test set."""
    from sklearn.model_selection import LeaveOneGroupOut

    subjects = _subjects(data)
    folds = [(tr, te) for tr, te in LeaveOneGroupOut().split(np.zeros(len(data)), data.labels, subjects)]
    return _check_disjoint(data, folds)


def random_subset(data: FaceData, n: int | None, seed: int = 0) -> FaceData:
    """``n`` random items of ``data`` in their original order (all of it if ``n`` is None or larger)."""
    if n is None or n >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))


def subset_subjects(data: FaceData, n: int, seed: int = 0) -> FaceData:
    """The items of ``n`` randomly chosen subjects."""
    subjects = np.unique(data.subjects)
    if not 0 < n <= len(subjects):
        raise DatasetError(f"number of subjects must be in 1..{len(subjects)}, got {n}")
    keep = np.random.default_rng(seed).choice(subjects, size=n, replace=False)
    return data.subset(np.isin(data.subjects, keep))
