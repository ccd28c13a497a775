"""Experiments as named configs, cached by content under ``results/<name>-<hash8>/``.

A config is the model (name, kwargs), the data (a :class:`DataSpec`, or a fingerprint of
given :class:`Splits`) and the :class:`~fer_utils.train.TrainConfig`. Its hash names the
folder (:func:`fer_utils.experiments.cache.cached`); when ``metrics.json`` there is complete the
run is not repeated. A run folder holds ``config.json``, ``history.csv``/``.json``, ``metrics.json``,
``predictions.npz`` (test labels and probabilities, :func:`~fer_utils.evaluate.ensemble.save_predictions`) and, when asked, ``best.pt``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from fer_utils.experiments.cache import Planned, Work, cached
from fer_utils.files import write_json
from fer_utils.devices import machine_share, resolve_device, seed_everything
from fer_utils.data import FaceData, load_dataset, official_test_split, random_subset, stratified_holdout, training_holdout
from fer_utils.evaluate import classification_metrics, predict_proba
from fer_utils.evaluate.ensemble import save_predictions
from fer_utils.models import count_parameters, create_model, model_and_data
from fer_utils.models.checkpoints import init_from_checkpoint
from fer_utils.models.pretrained import architecture_kwargs, identify_weight_files
from fer_utils.train import TrainConfig, fit

#: Bump when the meaning of a stored result changes, so old caches are not reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class DataSpec:
    """Which data an experiment uses, by dataset name and split names.

    val: a split name, ``"holdout"`` (stratified ``holdout_size`` of the training split,
    seed 0) or ``None``. test: a split name or ``None``; ``"PrivateTest"`` falls back to
    ``PublicTest`` with a warning when absent. subset: keep ``subset`` random items (seed 0)
    of each split, for smoke runs. train_subset: keep a stratified ``train_subset`` of the
    training part only (seed 0; validation and test stay whole), for the CPU profile.
    load_kwargs: passed to ``load_dataset``.
    """

    dataset: str = "fer2013"
    train: str = "Training"
    val: str | None = "PublicTest"
    test: str | None = "PrivateTest"
    holdout_size: float = 0.1
    subset: int | None = None
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    train_subset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as a dict; ``train_subset`` only when set, so older experiment hashes still match."""
        values = asdict(self)
        if values["train_subset"] is None:
            del values["train_subset"]
        return values


@dataclass
class Splits:
    """Training, validation and test sets of one experiment (val/test may be ``None``)."""

    train: FaceData
    val: FaceData | None = None
    test: FaceData | None = None
    test_split: str | None = None


def fingerprint(data: FaceData | None) -> str | None:
    """SHA-1 of a dataset's images, labels and classes (identifies given data in configs)."""
    return None if data is None else data.fingerprint()


def load_splits(spec: DataSpec, root: str | os.PathLike | None = None, data: FaceData | None = None) -> Splits:
    """The splits ``spec`` describes, from ``data`` if given, else ``load_dataset(spec.dataset, root)``."""
    data = data if data is not None else load_dataset(spec.dataset, root, **spec.load_kwargs)
    train = data.split(spec.train)
    val = None
    if spec.val == "holdout":
        train, val = training_holdout(train, spec.holdout_size)
    elif spec.val is not None:
        val = data.split(spec.val)
    test_split = None if spec.test is None else (
        official_test_split(data) if spec.test == "PrivateTest" else spec.test)
    test = None if test_split is None else data.split(test_split)
    if spec.train_subset is not None and spec.train_subset < len(train):
        train = train.subset(stratified_holdout(train, test_size=spec.train_subset, seed=0)[1])
    return Splits(random_subset(train, spec.subset), None if val is None else random_subset(val, spec.subset),
                  None if test is None else random_subset(test, spec.subset), test_split)


def model_config(model_name: str, model_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The model part of a config: name and kwargs, weights files identified by content, not path."""
    return {"name": model_name, "kwargs": identify_weight_files(model_kwargs or {})}


def architecture(model_name: str, num_classes: int, model_kwargs: dict[str, Any] | None) -> Callable[[], nn.Module]:
    """A factory of the untrained model (init-only kwargs such as weights files left out): plans count its FLOPs."""
    return partial(create_model, model_name, num_classes, 1, **architecture_kwargs(model_kwargs or {}))


def experiment_config(model_name: str, model_kwargs: dict[str, Any] | None, data: DataSpec | Splits,
                      cfg: TrainConfig) -> dict[str, Any]:
    """The JSON-able dict whose hash identifies an experiment."""
    if isinstance(data, DataSpec):
        data_cfg: dict[str, Any] = data.to_dict()
    else:
        data_cfg = {"fingerprints": {k: fingerprint(getattr(data, k)) for k in ("train", "val", "test")},
                    "test_split": data.test_split}
    return {"version": CACHE_VERSION, "model": model_config(model_name, model_kwargs), "data": data_cfg,
            "train": cfg.identity()}


def train_and_evaluate(
    model_name: str,
    model_kwargs: dict[str, Any] | None,
    splits: Splits,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    device: str | None = None,
    progress: bool = True,
    resume: bool = False,
    run_info: dict[str, Any] | None = None,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Build the model (seeded; started from the checkpoint ``init_from`` if given), ``fit`` it into
    ``run_dir``, evaluate the best weights on the test set; writes ``predictions.npz`` and returns the
    summary stored in ``metrics.json``."""
    device = resolve_device(device)
    model_kwargs = dict(model_kwargs or {})
    seed_everything(cfg.seed)
    model, train = model_and_data(model_name, splits.train, **model_kwargs)
    if init_from is not None:
        init_from_checkpoint(model, init_from, train.classes)
    params = count_parameters(model)
    result = fit(model, train, splits.val, cfg, run_dir, device, progress, resume=resume,
                 model_name=model_name, model_kwargs=model_kwargs, run_info=run_info)
    summary: dict[str, Any] = {
        "model_name": model_name, "params": params, "device": str(device), "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds, **machine_share(device), "train_size": len(splits.train),
        "val_size": 0 if splits.val is None else len(splits.val), "test_split": splits.test_split, "test": None,
    }
    if splits.test is not None:
        probs = predict_proba(result.model, splits.test, batch_size=cfg.eval_batch_size, device=device,
                              amp=cfg.amp, preprocessing=train.preprocessing)
        save_predictions(run_dir / "predictions.npz", splits.test, probs)
        summary["test"] = classification_metrics(splits.test.labels, probs, splits.test.classes)
    return summary


def run_paths(run_dir: Path) -> dict[str, str | None]:
    """Absolute paths of a run folder's files (None where absent) and ``run_dir`` itself."""
    names = {"config": "config.json", "history": "history.csv", "metrics": "metrics.json",
             "predictions": "predictions.npz", "checkpoint": "best.pt"}
    paths: dict[str, str | None] = {k: str(run_dir / v) if (run_dir / v).is_file() else None
                                    for k, v in names.items()}
    paths["run_dir"] = str(run_dir)
    return paths


def _load_complete(run_dir: Path, digest: str) -> dict[str, Any] | None:
    """The stored results of a finished run, None where there are none (a run cut short resumes); a
    ``metrics.json`` that does not parse raises, so :func:`cached` names it and trains again."""
    try:
        stored = json.loads((run_dir / "metrics.json").read_text())
    except FileNotFoundError:
        return None
    complete = stored.get("complete") is True and stored.get("hash") == digest
    return stored if complete and (run_dir / "history.csv").is_file() else None


def run_experiment(
    name: str,
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
    data: DataSpec | Splits = DataSpec(),
    cfg: TrainConfig = TrainConfig(),
    results_root: str | os.PathLike = "results",
    seed: int | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    dataset: FaceData | None = None,
    device: str | None = None,
    keep_checkpoint: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate an experiment, or return its stored results if already complete.

    ``seed`` overrides ``cfg.seed``. ``data``: a :class:`DataSpec` (loaded from ``data_root``,
    or split from an already loaded ``dataset``) or explicit :class:`Splits`. An interrupted
    run (``last.pt`` without complete metrics) resumes. ``keep_checkpoint`` keeps ``best.pt``
    (for small checkpoints meant to be shipped); ``last.pt`` is always removed when done.

    Returns the stored ``metrics.json`` content (``test``: see
    :func:`~fer_utils.evaluate.classification_metrics`) plus ``cached`` (True when nothing was
    trained) and ``paths`` (absolute paths of the run's files; None where absent).
    """
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    config = experiment_config(model_name, model_kwargs, data, cfg)

    def splits() -> Splits:
        return data if isinstance(data, Splits) else load_splits(data, data_root, dataset)

    def train(run_dir: Path, digest: str) -> dict[str, Any]:
        run_dir.mkdir(parents=True, exist_ok=True)
        summary = train_and_evaluate(
            model_name, model_kwargs, splits(), cfg, run_dir, device=device, progress=progress,
            resume=(run_dir / "last.pt").is_file(), run_info={"experiment": name, "hash": digest, "config": config},
        )
        (run_dir / "last.pt").unlink()
        if not keep_checkpoint:
            (run_dir / "best.pt").unlink(missing_ok=True)
        stored = {"complete": True, "name": name, "hash": digest, "config": config, **summary}
        write_json(run_dir / "metrics.json", stored)
        return stored

    def plan() -> Planned[dict[str, Any]]:
        train_data = splits().train
        work = Work("experiment", model_name, architecture(model_name, len(train_data.classes), model_kwargs),
                    train_data.images.shape[1:], cfg.epochs, len(train_data))
        return Planned(work, {"complete": False, "name": name, "config": config, "model_name": model_name,
                              "train_seconds": float("nan"), "test": None})

    result = cached(results_root, name, config, _load_complete, train, plan)
    paths = run_paths(result.path)
    if keep_checkpoint and result.value["complete"] is False:  # a plan's stand-in: the checkpoint it will keep
        paths["checkpoint"] = str(result.path / "best.pt")
    return {**result.value, "cached": result.hit, "paths": paths}
