"""``python -m fer_utils evaluate``: metrics of a checkpoint on a dataset split, as JSON; with several
``--crop-pct`` values, the evaluation view chosen on a validation split; or, with ``--probs``, an
ensemble re-scored from saved predictions (each member's and their average's)."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from fer_utils.arguments import add_errors_argument, positive_int
from fer_utils.errors import UsageError, CheckpointError
from fer_utils.data import FaceData, load_dataset, official_test_split, random_subset, training_holdout
from fer_utils.data.paths import check_output_file
from fer_utils.data.stats import seen_in
from fer_utils.devices import resolve_device, resolve_precision
from fer_utils.files import atomic_write
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_model
from fer_utils.evaluate.ensemble import (
    Predictions, average_predictions, load_predictions, save_predictions, write_predictions,
)
from fer_utils.evaluate.inference import model_device, predict_proba
from fer_utils.evaluate.metrics import classification_metrics
from fer_utils.evaluate.tta import TTA_MODES


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: FaceData,
    *,
    tta: str = "none",
    batch_size: int = 512,
    device: str | None = None,
    save_probs: str | os.PathLike | None = None,
    amp: bool = True,
    crop_pct: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``data`` (device default: CUDA if available);
    ``CheckpointError`` if the checkpoint's classes differ from ``data.classes`` or its
    preprocessing record from the way ``data``'s faces were made. ``save_probs``: also write the
    probabilities there (:func:`~fer_utils.evaluate.ensemble.save_predictions`). ``crop_pct``: evaluate
    with this view instead of the record's (to choose one on validation data). ``progress``: a bar over batches."""
    model, ckpt = _load_checked(checkpoint, data, device)
    metrics, probs = _score(model, ckpt, data, tta=tta, batch_size=batch_size, amp=amp, crop_pct=crop_pct,
                            progress=progress)
    if save_probs is not None:
        save_predictions(save_probs, data, probs)
    return {"checkpoint": str(checkpoint), **metrics}


def choose_crop_pct(
    checkpoint: str | os.PathLike,
    data: FaceData,
    crop_pcts: Sequence[float],
    *,
    tta: str = "none",
    batch_size: int = 512,
    device: str | None = None,
    amp: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """The evaluation view of ``checkpoint`` chosen on validation ``data``: the metrics of the single
    (``tta="none"``) or flipped view at each of ``crop_pcts`` and ``chosen_crop_pct``, the most accurate
    (a tie goes to the larger value, the less enlarged view). The model is loaded once."""
    if tta not in ("none", "flip"):
        raise UsageError(f"tta {tta!r}: crop_pct sets the single and flipped views only (ten-crop enlarges on "
                         f"its own); choose a view with tta 'none' or 'flip'")
    model, ckpt = _load_checked(checkpoint, data, device)
    views = {pct: _score(model, ckpt, data, tta=tta, batch_size=batch_size, amp=amp, crop_pct=pct,
                         progress=progress)[0] for pct in sorted(set(crop_pcts), reverse=True)}
    chosen = max(views, key=lambda pct: views[pct]["accuracy"])  # max keeps the first, largest, of ties
    first = next(iter(views.values()))
    return {"checkpoint": str(checkpoint), "model_name": first["model_name"], "tta": tta,
            "precision": first["precision"], "n": first["n"], "chosen_crop_pct": chosen,
            "accuracy_by_crop_pct": {str(pct): m["accuracy"] for pct, m in views.items()},
            "views": {str(pct): m for pct, m in views.items()}}


def _load_checked(checkpoint: str | os.PathLike, data: FaceData, device: str | None) -> tuple[nn.Module, dict]:
    """The checkpoint's model and dictionary, refused (``CheckpointError``) if its classes or the way its
    faces were cut differ from ``data``'s."""
    model, ckpt = load_model(checkpoint, device=resolve_device(device), expected_classes=data.classes)
    differences = checkpoint_preprocessing(ckpt).differences(data.preprocessing)
    if differences:
        raise CheckpointError(
            f"{checkpoint}: trained on faces made differently from {data.name}'s ({'; '.join(differences)})")
    return model, ckpt


def _score(model: nn.Module, ckpt: dict, data: FaceData, *, tta: str, batch_size: int, amp: bool,
           crop_pct: float | None, progress: bool) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of a loaded model on ``data`` (with the record's view, or ``crop_pct``'s) and its probabilities."""
    preprocessing = checkpoint_preprocessing(ckpt)
    if crop_pct is not None:
        preprocessing = replace(preprocessing, crop_pct=crop_pct)
    probs = predict_proba(model, data, batch_size=batch_size, tta=tta, amp=amp, preprocessing=preprocessing,
                          progress=progress)
    metrics = classification_metrics(data.labels, probs, data.classes)
    precision = resolve_precision(model_device(model), amp).label
    return {"model_name": ckpt["model_name"], "tta": tta, "precision": precision,
            "crop_pct": preprocessing.crop_pct, **metrics}, probs


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``evaluate`` command."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a best.pt / last.pt checkpoint")
    source.add_argument("--probs", nargs="+", type=Path, metavar="NPZ",
                        help="re-score saved predictions (--save-probs, a train run's predictions.npz): "
                             "each file's and their average's metrics; no model or data is loaded")
    parser.add_argument("--save-probs", type=Path, metavar="NPZ",
                        help="also write the probabilities (labels, classes, items, sources) for --probs or "
                             "train --distill-from; with --probs: their average")
    parser.add_argument("--data", default="fer2013", help="dataset name for load_dataset (default fer2013)")
    parser.add_argument("--data-dir", default=None, help="datasets folder (default $FER_DATA_DIR)")
    parser.add_argument("--split", default="PrivateTest",
                        help="split to evaluate (PrivateTest falls back to PublicTest when absent; 'all': every item; "
                             "'holdout': the 10%% of Training that train --val-split holdout validates on)")
    parser.add_argument("--crop-pct", type=float, nargs="+", default=None, metavar="PCT",
                        help="evaluation view (single and flip): enlarge to size/crop_pct, keep the centre; default: "
                             "the checkpoint's record. Several values choose one: each view's metrics and the "
                             "most accurate, on a validation split only (--split holdout), never on a test split")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation: flip (2 views) or tencrop (10 views)")
    parser.add_argument("--drop-twins-of", default=None, metavar="SPLIT",
                        help="leave out items byte-identical to an item of SPLIT (e.g. Training: FER2013 "
                             "PublicTest holds 280 such twins, which a memorising model gets right for free)")
    parser.add_argument("--subset", type=positive_int, default=None, metavar="N", help="N random items (smoke runs)")
    parser.add_argument("--batch-size", type=positive_int, default=512)
    parser.add_argument("--device", default=None, help="cuda, cpu ... (default: cuda if available)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 autocast where the device runs it natively, channels-last (default on)")
    parser.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out / --save-probs file (never one of the inputs)")
    add_errors_argument(parser)


def _split(data: FaceData, split: str) -> FaceData:
    """A named split, every item (``all``), or the validation hold-out of Training (``holdout``: the same
    stratified 10%, seed 0, that ``train --val-split holdout`` selects on)."""
    if split == "all":
        return data
    if split == "holdout":
        return training_holdout(data.split("Training"))[1]
    return data.split(split)


def rescore(members: dict[Path, Predictions], ensemble: Predictions) -> dict[str, Any]:
    """Metrics of ``ensemble`` (the members' average), with each member's accuracy, their mean and
    sample standard deviation."""
    accuracies = [float((m.probs.argmax(1) == m.y_true).mean()) for m in members.values()]
    return {"members": {str(p): a for p, a in zip(members, accuracies)},
            "member_accuracy_mean": float(np.mean(accuracies)),
            "member_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
            **classification_metrics(ensemble.y_true, ensemble.probs, ensemble.classes)}


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a summary and the JSON path (``--out`` and ``--save-probs`` are checked first: writable,
    not an input, new unless ``--overwrite``)."""
    if args.out is not None and args.out == args.save_probs:
        raise UsageError(f"{args.out}: given as both --out and --save-probs; choose two files")
    inputs = (args.checkpoint, *(args.probs or ()))
    for path in (args.out, args.save_probs):
        if path is not None:
            check_output_file(path, inputs, args.overwrite)
    if args.probs is not None:
        members = dict(zip(args.probs, load_predictions(args.probs)))
        ensemble = average_predictions(list(members.values()))
        metrics = rescore(members, ensemble)
        if args.save_probs is not None:  # the ensemble, e.g. as distillation targets (train --distill-from)
            write_predictions(args.save_probs, ensemble)
        print(f"ensemble of {len(args.probs)} ({metrics['n']} items): accuracy {metrics['accuracy']:.4f}; "
              f"members {metrics['member_accuracy_mean']:.4f} +- {metrics['member_accuracy_std']:.4f}")
        return _write(metrics, args.out)
    crop_pcts = args.crop_pct or [None]
    if len(crop_pcts) > 1:
        _check_view_choice(args)
    data = load_dataset(args.data, args.data_dir, errors=args.errors)
    split = official_test_split(data) if args.split == "PrivateTest" else args.split
    subset = random_subset(_split(data, split), args.subset)
    dropped = {}
    if args.drop_twins_of is not None:
        twins = seen_in(data.split(args.drop_twins_of), subset)
        subset, dropped = subset.subset(np.flatnonzero(~twins)), {"twins_dropped": int(twins.sum())}
    if len(crop_pcts) > 1:
        choice = choose_crop_pct(args.checkpoint, subset, crop_pcts, tta=args.tta, batch_size=args.batch_size,
                                 device=args.device, amp=args.amp, progress=True)
        for pct, accuracy in choice["accuracy_by_crop_pct"].items():
            print(f"crop_pct {pct}: accuracy {accuracy:.4f}")
        print(f"{args.checkpoint} on {args.data}/{split} ({len(subset)} items, tta={args.tta}): {choice['precision']}: "
              f"chosen --crop-pct {choice['chosen_crop_pct']} (ship --crop-pct {choice['chosen_crop_pct']} records it)")
        return _write({"data": args.data, "split": split, **dropped, **choice}, args.out)
    metrics = evaluate_checkpoint(args.checkpoint, subset, tta=args.tta, batch_size=args.batch_size,
                                  device=args.device, save_probs=args.save_probs, amp=args.amp,
                                  crop_pct=crop_pcts[0], progress=True)
    metrics = {"data": args.data, "split": split, **dropped, **metrics}
    print(f"{args.checkpoint} on {args.data}/{split} ({len(subset)} items, tta={args.tta}): "
          f"{metrics['precision']}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
          f"ECE {metrics['calibration']['ece']:.4f}")
    return _write(metrics, args.out)


def _check_view_choice(args: argparse.Namespace) -> None:
    """Several ``--crop-pct`` values choose a view: refused on a test split (or ``all``, which holds
    one) and with ``--save-probs`` (whose view?); :func:`choose_crop_pct` refuses ten-crop."""
    if args.split == "all" or "test" in args.split.lower():
        raise UsageError(f"--crop-pct {' '.join(map(str, args.crop_pct))}: several values choose the evaluation "
                         f"view, which is done on validation data (--split holdout), never on {args.split!r}")
    if args.save_probs is not None:
        raise UsageError("--save-probs takes one view: give one --crop-pct value")


def _write(metrics: dict[str, Any], out: Path | None) -> int:
    """The metrics JSON to ``out`` (printed when None)."""
    text = json.dumps(metrics, indent=1)
    if out is not None:
        with atomic_write(out, "w") as handle:
            handle.write(text)
        print(f"metrics written to {out}")
    else:
        print(text)
    return 0
