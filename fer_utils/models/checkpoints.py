"""Checkpoints that describe themselves and load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values:
``model_name``, ``model_kwargs``, ``classes``, ``preprocessing``, ``config``,
``model_state`` and optional training state (``optimizer_state``, ``scheduler_state``,
``epoch``, ``rng_state``, ``history``...).
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_utils.errors import CheckpointError, first_line
from fer_utils.data.preprocessing import Preprocessing
from fer_utils.files import atomic_write
from fer_utils.models.inputs import create_model_for
from fer_utils.models.pretrained import LoadReport, load_backbone_weights


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | dict[str, torch.Tensor],
    *,
    model_name: str,
    classes: Sequence[str],
    model_kwargs: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    **state: Any,
) -> Path:
    """Write a checkpoint of ``model`` (a module or its state dict) atomically (unique temp file +
    rename) and return its path."""
    weights = model if isinstance(model, dict) else getattr(model, "_orig_mod", model).state_dict()  # unwrap compile
    payload = {
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs or {}),
        "classes": list(classes),
        "preprocessing": Preprocessing.from_dict(preprocessing).to_dict(),
        "config": dict(config or {}),
        "model_state": {k: v.detach().cpu() for k, v in weights.items()},
        **state,
    }
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dict with ``weights_only=True``.

    ``FileNotFoundError`` if missing; ``CheckpointError`` naming ``path`` if it is
    empty, truncated, holds arbitrary pickled objects, is no fer_utils checkpoint or has
    non-finite weights (a diverged run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, IndexError,
            KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:  # a text or other file: any of these
        reason = "empty file" if path.stat().st_size == 0 else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable fer_utils checkpoint ({reason}); expected a best.pt/last.pt "
            "written by fer_utils (truncated copies and pickled objects are refused)") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state"), dict) or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a fer_utils checkpoint (no model_state/model_name)")
    bad = [k for k, v in ckpt["model_state"].items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite (NaN/inf) weights in {bad[:3]}"
                                      f"{' ...' if len(bad) > 3 else ''}; the run that wrote it diverged")
    return ckpt


def update_checkpoint(path: str | os.PathLike, **entries: Any) -> Path:
    """Add or replace top-level ``entries`` of the checkpoint at ``path`` (atomically, weights untouched)."""
    ckpt = load_checkpoint(path)
    ckpt.update(entries)
    with atomic_write(path) as handle:
        torch.save(ckpt, handle)
    return Path(path)


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    expected_classes: Sequence[str] | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint, in eval mode on ``device``.

    Refuses (``CheckpointError``) a checkpoint whose class list differs from
    ``expected_classes``. Returns ``(model, checkpoint_dict)``.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if expected_classes is not None and list(expected_classes) != list(ckpt["classes"]):
        raise CheckpointError(
            f"{path}: checkpoint classes {ckpt['classes']} differ from expected {list(expected_classes)}"
        )
    try:
        model = create_model_for(ckpt["model_name"], checkpoint_preprocessing(ckpt), len(ckpt["classes"]),
                                 **ckpt["model_kwargs"])
        model.load_state_dict(ckpt["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: its weights do not fit the model it names ({ckpt.get('model_name')!r} with "
            f"{ckpt.get('model_kwargs')}): {first_line(exc)}") from exc
    return model.to(device).eval(), ckpt


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike, classes: Sequence[str]) -> LoadReport:
    """Start ``model`` from the weights of a trained checkpoint (``train --init-from``, e.g. fine-tuning
    ``results/best_model.pt`` on other data): every tensor, except a classifier head for other ``classes``,
    which keeps its initialisation. ``CheckpointError`` in one line, naming the checkpoint's architecture,
    when the model's differs."""
    ckpt = load_checkpoint(path)
    try:
        return load_backbone_weights(model, path, classes=classes)
    except ValueError as exc:
        example = str(exc).splitlines()[1].strip() if "\n" in str(exc) else first_line(exc)
        raise CheckpointError(
            f"{path}: its weights ({ckpt['model_name']!r}, model kwargs {ckpt['model_kwargs']}) do not fit "
            f"this {type(model).__name__} ({example}); train with that --model and --model-kwargs") from None


def checkpoint_preprocessing(ckpt: dict) -> Preprocessing:
    """The preprocessing record of a loaded checkpoint (defaults for checkpoints without one)."""
    return Preprocessing.from_dict(ckpt.get("preprocessing"))
