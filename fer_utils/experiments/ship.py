"""Shipping a run's best checkpoint as a file of its own, never over a different one by accident.

``python -m fer_utils ship RUN [RUN ...] --dest FILE [--half] [--overwrite]``: of the given run
folders, the one whose ``best.pt`` has the highest validation accuracy is shipped (never chosen
by a test split).
"""
from __future__ import annotations

import argparse
import io
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from fer_utils.errors import UsageError, CheckpointError
from fer_utils.files import atomic_write
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_checkpoint


def ship_model(run_dir: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False,
               half: bool = False, crop_pct: float | None = None) -> Path:
    """Copy ``run_dir/best.pt`` to ``dest`` (atomically) after checking it loads without pickle.

    ``half``: its floating-point weights stored as float16 (half the size); ``load_model`` loads
    them into the float32 model, on CPU and CUDA alike. ``crop_pct``: recorded in the checkpoint's
    preprocessing record, the view ``predict`` and ``evaluate`` then use (chosen on validation data with
    ``evaluate --split holdout --crop-pct``). An existing ``dest`` with other content
    raises ``FileExistsError`` unless ``overwrite``; an identical one is left as is. Returns ``Path(dest)``.
    """
    source, dest = Path(run_dir) / "best.pt", Path(dest)
    ckpt = load_checkpoint(source)  # refuses missing, truncated, pickled or non-finite checkpoints
    if crop_pct is not None:
        ckpt["preprocessing"] = replace(checkpoint_preprocessing(ckpt), crop_pct=crop_pct).to_dict()
    if half:
        ckpt["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model_state"].items()}
    if half or crop_pct is not None:
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        content = buffer.getvalue()
    else:
        content = source.read_bytes()
    if dest.is_file():
        if dest.read_bytes() == content:
            return dest
        if not overwrite:
            raise FileExistsError(f"{dest} exists and differs from {source}; pass overwrite=True to replace it")
    with atomic_write(dest) as out:
        out.write(content)
    return dest


def best_run(run_dirs: Sequence[str | os.PathLike]) -> tuple[Path, float]:
    """The run folder whose ``best.pt`` has the highest validation accuracy, and that accuracy
    (``CheckpointError`` if a checkpoint records none: it was trained without validation)."""
    scores = {}
    for run_dir in map(Path, run_dirs):
        val_acc = load_checkpoint(run_dir / "best.pt").get("val_acc")
        if val_acc is None:
            raise CheckpointError(f"{run_dir / 'best.pt'} records no validation accuracy; ship it by name alone")
        scores[run_dir] = float(val_acc)
    chosen = max(scores, key=scores.__getitem__)
    return chosen, scores[chosen]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``ship`` command."""
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with a best.pt)")
    parser.add_argument("--dest", required=True, type=Path, help="file to write, e.g. results/best_model.pt")
    parser.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="record this evaluation view in the preprocessing record (see evaluate --crop-pct)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different existing DEST")


def run(args: argparse.Namespace) -> int:
    """Ship the best run (by validation accuracy); prints which."""
    chosen, val_acc = best_run(args.runs)
    try:
        ship_model(chosen, args.dest, overwrite=args.overwrite, half=args.half, crop_pct=args.crop_pct)
    except FileExistsError as exc:
        raise UsageError(f"{exc} (--overwrite)") from None
    print(f"shipped {chosen / 'best.pt'} (validation accuracy {val_acc:.4f}) as {args.dest}"
          f" ({args.dest.stat().st_size / 1e6:.1f} MB{', float16 weights' if args.half else ''})")
    return 0
