"""The learning-rate range test as a cached experiment: ``results/<name>-<hash8>.json``."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from fer_utils.data import FaceData
from fer_utils.devices import resolve_device, seed_everything
from fer_utils.experiments.cache import Planned, Work, cached
from fer_utils.experiments.runs import CACHE_VERSION, architecture, model_config
from fer_utils.files import write_json
from fer_utils.models import model_and_data
from fer_utils.train import LRFindResult, TrainConfig, lr_find


def cached_lr_find(
    name: str,
    model_name: str,
    train: FaceData,
    cfg: TrainConfig,
    results_root: str | os.PathLike = "results",
    *,
    model_kwargs: dict[str, Any] | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    device: str | torch.device | None = None,
) -> LRFindResult:
    """:func:`~fer_utils.train.lr_find` on a fresh model seeded by ``cfg.seed``, or its stored result.

    The file is named by the hash of the model, the data's fingerprint, ``cfg`` and the sweep
    (device excluded): a CUDA run's result is what a later CPU render reads. A plan's stand-in
    suggests ``cfg.lr``.
    """
    config = {"version": CACHE_VERSION, "kind": "lr_find", "model": model_config(model_name, model_kwargs),
              "data": train.fingerprint(), "train": cfg.identity(),
              "sweep": {"start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter}}

    def load(path: Path, _digest: str) -> LRFindResult | None:
        return LRFindResult(**json.loads(path.read_text())["result"]) if path.is_file() else None

    def compute(path: Path, digest: str) -> LRFindResult:
        run_device = resolve_device(device)
        seed_everything(cfg.seed)
        model, swept = model_and_data(model_name, train, **(model_kwargs or {}))
        result = lr_find(model, swept, cfg, start_lr, end_lr, num_iter, run_device)
        write_json(path, {"name": name, "hash": digest, "config": config, "device": str(run_device),
                          "result": asdict(result)})
        return result

    def plan() -> Planned[LRFindResult]:
        work = Work("lr_find", model_name, architecture(model_name, len(train.classes), model_kwargs),
                    train.images.shape[1:], 1, num_iter * cfg.batch_size)
        return Planned(work, LRFindResult([], [], [], cfg.lr, cfg.lr))

    return cached(results_root, name, config, load, compute, plan, suffix=".json").value
