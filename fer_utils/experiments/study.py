"""Study-level tables: one row per experiment or cross-validation, read from ``results/``."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fer_utils.data import FaceData, load_dataset
from fer_utils.devices import machine_seconds
from fer_utils.errors import first_line
from fer_utils.files import repository_relative
from fer_utils.experiments.runs import DataSpec, run_experiment, run_paths
from fer_utils.models import count_parameters, create_model
from fer_utils.models.checkpoints import load_checkpoint
from fer_utils.models.pretrained import architecture_kwargs
from fer_utils.train import TrainConfig
from fer_utils.train.recipes import CKPLUS_RECIPE, FER2013_RECIPE, FRAME_CNN_OVERRIDES, recipe

__all__ = [
    "CKPLUS_RECIPE", "CPU_EPOCHS", "FER2013_RECIPE", "FRAME_CNN_OVERRIDES", "FER2013Study",
    "experiment_row", "load_results", "rank_by_validation", "recipe", "results_table", "seed_spread",
]


#: Epochs of a FER2013 experiment in the cpu profile unless its notebook says otherwise. Every one trains on all
#: of Training but the validation hold-out (25,838 faces), bf16 + channels_last: at 30 epochs the one-cycle
#: schedule has annealed and the hold-out curve is flat (vgg_small: about 25 CPU-minutes a run).
CPU_EPOCHS = 30
#: The cpu profile's FER2013 trunk (in its results folder): the model shipped before the vgg_gap, a ``frame_cnn``
#: of width 16 trained 24 epochs on all of Training on CPU (61.8% on PublicTest). A fixed copy, so that
#: shipping another model leaves the cpu profile's stored CK+48 results (keyed by the trunk's bytes) valid.
CPU_TRUNK = "frame_cnn_w16-trunk.pt"


class RunContext(Protocol):
    """What a study needs from its caller (a notebook's ``NotebookContext`` has it)."""

    profile: str
    smoke: bool
    device: Any
    results_dir: Path


class FER2013Study:
    """Runs FER2013 experiments of a notebook: loads the data once, same splits for every run.

    Model selection uses a 10% stratified hold-out of Training; the test split is PrivateTest,
    or PublicTest when PrivateTest is absent (a warning says so). The smoke profile keeps
    ``subset`` random items per split; the full and cpu profiles train on all of Training but the
    hold-out, the cpu profile for :data:`CPU_EPOCHS` epochs unless a notebook asks for more or fewer.
    """

    def __init__(self, ctx: RunContext, subset: int = 400) -> None:
        self.ctx = ctx
        self.data: FaceData = load_dataset("fer2013")
        self.spec = DataSpec("fer2013", val="holdout", test="PrivateTest", subset=subset if ctx.smoke else None)

    def recipe(self, seed: int | None = None, cpu_epochs: int = CPU_EPOCHS, **overrides: Any) -> TrainConfig:
        """:data:`FER2013_RECIPE` with ``overrides`` (seed: the context's); ``cpu_epochs`` in the cpu profile."""
        cfg = recipe(FER2013_RECIPE, self.ctx.smoke, self.ctx.seed if seed is None else seed, **overrides)
        return replace(cfg, epochs=cpu_epochs) if self.ctx.profile == "cpu" else cfg

    def frame_trunk(self) -> tuple[str, dict[str, Any]]:
        """Checkpoint and model kwargs of the FER2013 ``frame_cnn`` that starts CK+48 models (notebooks 06, 08).

        Trained here with :data:`FRAME_CNN_OVERRIDES` (cached, so both notebooks share it). The cpu
        profile takes :data:`CPU_TRUNK` instead (``frame_cnn`` width 16, 24 epochs on all of Training,
        on CPU): a far stronger start than 8 epochs on 5,000 faces.
        """
        if self.ctx.profile == "cpu":
            trunk = self.ctx.results_dir / CPU_TRUNK
            return str(trunk), load_checkpoint(trunk)["model_kwargs"]
        result = self.run("frame_cnn-fer2013", "frame_cnn", self.recipe(**FRAME_CNN_OVERRIDES), keep_checkpoint=True)
        return result["paths"]["checkpoint"], {}

    def data_spec(self, train_fraction: float | None = None) -> DataSpec:
        """The splits of every run; with ``train_fraction``, that stratified share of the training faces only."""
        if train_fraction is None:
            return self.spec
        faces = len(self.data.split(self.spec.train)) * (1 - self.spec.holdout_size)
        return replace(self.spec, train_subset=round(train_fraction * faces))

    def run(self, name: str, model: str, cfg: TrainConfig, model_kwargs: dict[str, Any] | None = None,
            keep_checkpoint: bool = False, train_fraction: float | None = None) -> dict[str, Any]:
        """Train (or load from the results folder) one experiment and print one line about it.

        ``train_fraction``: train on that stratified share of the training faces only (a small-data study,
        whose name should say so); validation and test stay whole.
        """
        result = run_experiment(name, model, model_kwargs, self.data_spec(train_fraction), cfg,
                                results_root=self.ctx.results_dir, dataset=self.data, device=self.ctx.device,
                                keep_checkpoint=keep_checkpoint, progress=False)
        row = experiment_row(result, name)
        print(f"{name:28s} test acc {row['accuracy']:.4f}  macro F1 {row['macro_f1']:.4f}  "
              f"{row['train_seconds']:.0f} s{'  (cached)' if result['cached'] else ''}")
        return result


def experiment_row(result: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """One table row of a :func:`fer_utils.experiments.run_experiment` or :func:`load_results` result."""
    model = result["config"]["model"]
    test = result.get("test") or {}
    record = _run_record(result)
    num_classes = len(test.get("classes", [None] * 7))
    return {
        "name": label or result["name"], "model": model["name"],
        "params": result.get("params") or _count_parameters(model["name"], num_classes, model["kwargs"]),
        "dataset": result["config"]["data"].get("dataset", "given"), "val_split": result["config"]["data"].get("val"),
        "train_subset": result["config"]["data"].get("train_subset"),
        "test_split": result.get("test_split"),
        "accuracy": test.get("accuracy", np.nan), "macro_f1": test.get("macro_f1", np.nan),
        "top2_accuracy": test.get("top2_accuracy", np.nan), "best_val_acc": result.get("best_val_acc"),
        "epochs": result.get("epochs_run"), "train_seconds": result.get("train_seconds"),
        "machine_seconds": machine_seconds(result),
        "device": _precision(result, record), "seed": result["config"]["train"]["seed"],
        "init_from": (record.get("init_from") or {}).get("file"), "run_dir": _run_dir(result),
    }


def _run_dir(result: dict[str, Any]) -> str | None:
    """The run folder relative to its repository (``results/cpu/vgg_small-aug-1a2b3c4d``): no machine path in tables."""
    run_dir = (result.get("paths") or {}).get("run_dir")
    return None if run_dir is None else repository_relative(run_dir)


def _run_record(result: dict[str, Any]) -> dict[str, Any]:
    """The run folder's ``config.json`` (empty where the run has none)."""
    config = (result.get("paths") or {}).get("config")  # run_paths: None where the run has no config.json
    return json.loads(Path(config).read_text()) if config else {}


def _precision(result: dict[str, Any], record: dict[str, Any]) -> str:
    """Where and how a run trained, e.g. ``cpu bf16``: its ``config.json``'s ``record``, else (runs from before
    it was kept, when autocast was off on CPU) ``cpu fp32`` for CPU runs and the device for others."""
    recorded = record.get("precision")
    device = result.get("device", "")
    return recorded or ("cpu fp32" if device == "cpu" else device)


def _count_parameters(name: str, num_classes: int, kwargs: dict[str, Any]) -> float:
    """Parameters of a run stored before ``metrics.json`` recorded them: the model rebuilt, or NaN when
    it cannot be here (``onet_features`` without facenet-pytorch on a GPU image)."""
    try:
        return count_parameters(create_model(name, num_classes, **architecture_kwargs(kwargs)))
    except ImportError:
        return np.nan


def rank_by_validation(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a :func:`results_table` fit for model selection, best validation accuracy first.

    A row qualifies when it validated on a split other than its test split: test accuracy never picks.
    """
    fair = table[table["val_split"].notna() & (table["val_split"] != table["test_split"])]
    return fair.sort_values("best_val_acc", ascending=False)


def seed_spread(results: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, float]:
    """Mean, sample std, min and max of a test metric over runs that differ only by seed."""
    values = np.array([r["test"][metric] for r in results], dtype=float)
    return {"runs": len(values), "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


def load_results(results_root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete run (``*/metrics.json`` with ``complete: true``) under ``results_root``, with ``paths``;
    a ``metrics.json`` that cannot be read is named in one warning and left out.

    Runs of notebooks (:func:`run_experiment`) and of the ``train`` command mix freely: a
    command's ``metrics.json`` has no ``name`` nor ``config``, so the folder name and the
    ``config.json`` beside it give them.
    """
    found = []
    for path in sorted(Path(results_root).glob("*/metrics.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.warn(f"{repository_relative(path)}: cannot be read ({first_line(exc)}); left out of the table",
                          stacklevel=2)
            continue
        if data.get("complete") is True:
            run_dir = path.parent
            config = data["config"] if "config" in data else _command_config(run_dir)
            found.append({"name": run_dir.name, **data, "config": config, "paths": run_paths(run_dir)})
    return found


def _command_config(run_dir: Path) -> dict[str, Any]:
    """The experiment config (model, data, train) of a ``train`` command's run folder, from its ``config.json``."""
    stored = json.loads((run_dir / "config.json").read_text())
    return {"model": {"name": stored["model_name"], "kwargs": stored["model_kwargs"]},
            "data": stored.get("data", {}), "train": stored["train"]}


def results_table(results_root: str | os.PathLike) -> pd.DataFrame:
    """:func:`experiment_row` of every complete experiment under ``results_root``."""
    return pd.DataFrame([experiment_row(r) for r in load_results(results_root)])
