"""Experiments: configs cached by content hash, subject-independent cross-validation, study tables.

The stage that composes training and evaluation; the ``train`` and ``crossval`` commands live
here because each trains and then tests.
"""
from fer_utils.experiments.cache import config_hash
from fer_utils.experiments.crossval import CrossvalResult, cached_crossval, comparison_table, make_folds, run_crossval
from fer_utils.experiments.lr_search import cached_lr_find
from fer_utils.experiments.runs import DataSpec, Splits, load_splits, run_experiment, train_and_evaluate
from fer_utils.experiments.ship import ship_model

__all__ = [
    "CrossvalResult", "DataSpec", "Splits", "cached_crossval", "cached_lr_find", "comparison_table", "config_hash", "load_splits",
    "make_folds", "run_crossval", "run_experiment", "ship_model", "train_and_evaluate",
]
