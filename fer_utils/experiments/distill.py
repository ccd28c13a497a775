"""Distillation targets: a training set whose soft labels mix its labels with teachers' probabilities.

The teachers' probabilities come from predictions files (``evaluate --checkpoint T.pt --split
Training --tta tencrop --save-probs T.npz``, one per teacher, or their average written by
``evaluate --probs ... --save-probs``), matched to the training items by source (file and line), so
a hold-out or subset of the split the teachers saw finds its rows. The target of item ``i`` is
``(1 - weight) x one_hot(label_i) + weight x teacher_probs_i``: cross-entropy to it is the
label loss plus ``weight`` x the KL divergence to the teachers at temperature 1, up to a constant
(Hinton et al. 2015; "born-again" students, Furlanello et al. 2018, learn from teachers' outputs on
the teachers' own training set, as here). Offline targets, not teachers run on every augmented
batch: the file is small enough (1.5 MiB for FER2013 Training) to travel to a GPU machine that
never held the teachers.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fer_utils.errors import UsageError, PredictionsFileError
from fer_utils.data import FaceData
from fer_utils.evaluate.ensemble import average_predictions, load_predictions


def with_distillation_targets(train: FaceData, paths: Sequence[str | os.PathLike], weight: float) -> FaceData:
    """``train`` with soft labels from the teachers' predictions in ``paths`` (averaged), mixed with its
    one-hot labels by ``weight`` in (0, 1]; ``PredictionsFileError`` naming the file when its items, classes or
    labels do not cover ``train``."""
    if not 0.0 < weight <= 1.0:
        raise UsageError(f"distillation weight must be in (0, 1], got {weight}")
    teachers = average_predictions(load_predictions(paths))
    if teachers.sources is None:
        raise PredictionsFileError(f"{paths[0]}: holds no item sources (written by an older version); "
                           "save the teachers' predictions again with evaluate --save-probs")
    if teachers.classes != list(train.classes):
        raise PredictionsFileError(f"{paths[0]}: classes {teachers.classes} differ from the training set's "
                           f"{list(train.classes)}")
    row_of = {source: row for row, source in enumerate(teachers.sources)}
    if len(row_of) != len(teachers.sources):
        raise PredictionsFileError(f"{paths[0]}: item sources repeat, so items cannot be matched by source")
    rows = np.array([row_of.get(source, -1) for source in train.meta["source"]], dtype=np.int64)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        raise PredictionsFileError(f"{paths[0]}: no teacher probabilities for {len(missing)} of the {len(train)} training "
                           f"items (first: {train.meta['source'].iat[missing[0]]}); save them on the split "
                           "being trained on")
    differ = int((teachers.y_true[rows] != train.labels).sum())
    if differ:
        raise PredictionsFileError(f"{paths[0]}: {differ} matched items have other labels than the training set's; "
                           "the predictions were made on other data")
    one_hot = np.eye(len(train.classes), dtype=np.float64)[train.labels]
    return replace(train, soft_labels=(1.0 - weight) * one_hot + weight * teachers.probs[rows])
