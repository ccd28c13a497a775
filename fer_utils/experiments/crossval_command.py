"""``python -m fer_utils crossval``: subject-independent k-fold comparison of clip model families.

Finished folds are kept in ``OUT/<model>.folds/`` until the family is done, so re-running an
interrupted command resumes at the first unfinished fold.

Writes ``OUT/<model>.json`` (per-fold and pooled results, see
:class:`fer_utils.experiments.crossval.CrossvalResult`) and ``OUT/comparison.csv`` (one row per family:
trainable parameters, training time per fold, accuracy mean and std, macro F1, votes).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from fer_utils.arguments import add_errors_argument, positive_int
from fer_utils.errors import UnknownNameError
from fer_utils.data import load_dataset, make_clips, subset_subjects
from fer_utils.experiments.crossval import comparison_table, run_crossval
from fer_utils.models import list_models
from fer_utils.experiments.train_command import add_training_arguments, config_from_args
from fer_utils.train.config import TrainConfig
from fer_utils.train.recipes import CKPLUS_RECIPE

#: The clip families compared by default.
DEFAULT_MODELS = "single_frame,early_fusion,late_fusion,slow_fusion,c3d,cnn_gru,cnn_lstm"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``crossval`` command."""
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated clip models (default {DEFAULT_MODELS})")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON",
                        help='extra arguments for every model, e.g. \'{"width": 16}\'')
    parser.add_argument("--data", default="ckplus48", help="sequence dataset for load_dataset (default ckplus48)")
    parser.add_argument("--data-dir", default=None, help="datasets folder (default $FER_DATA_DIR)")
    parser.add_argument("--clip-length", type=positive_int, default=3, help="frames per clip T (default 3)")
    parser.add_argument("--window", choices=("last", "uniform", "sliding"), default="last",
                        help="clip per sequence: last frames, evenly spaced, or sliding windows voted per sequence")
    parser.add_argument("--stride", type=positive_int, default=1, help="sliding-window step")
    parser.add_argument("--folds", type=positive_int, default=10, help="subject-independent folds (default 10)")
    parser.add_argument("--loso", action="store_true", help="leave-one-subject-out instead of k folds")
    parser.add_argument("--subset-subjects", type=positive_int, default=None, metavar="N",
                        help="use N random subjects only (smoke runs)")
    parser.add_argument("--init-checkpoint", type=Path, default=None,
                        help="frame_cnn checkpoint (e.g. trained on FER2013) initialising every trunk")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--device", default=None, help="cuda, cpu ... (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no per-fold lines")
    add_errors_argument(parser)
    add_training_arguments(parser, TrainConfig(**CKPLUS_RECIPE))


def run(args: argparse.Namespace) -> int:
    """Cross-validate each family, write its JSON and the comparison CSV, print the table."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(list_models(input_kind="clip")))
    if unknown:
        raise UnknownNameError(f"unknown clip model(s) {unknown}; clip models: {list_models(input_kind='clip')}")
    cfg = config_from_args(args)
    data = load_dataset(args.data, args.data_dir, errors=args.errors)
    clips = data if data.is_clip else make_clips(data, args.clip_length, window=args.window, stride=args.stride)
    if args.subset_subjects:
        clips = subset_subjects(clips, args.subset_subjects, cfg.seed)
    print(f"{clips.summary()}, {len(np.unique(clips.subjects))} subjects")
    results = []
    for name in models:
        result = run_crossval(
            name, clips, cfg, k=args.folds, seed=cfg.seed, model_kwargs=args.model_kwargs,
            init_checkpoint=args.init_checkpoint, device=args.device, progress=not args.quiet, loso=args.loso,
            fold_dir=args.out / f"{name}.folds",
        )
        result.to_json(args.out / f"{name}.json")
        shutil.rmtree(args.out / f"{name}.folds", ignore_errors=True)
        print(result.describe(), flush=True)
        results.append(result)
    table = comparison_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "comparison.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"results in {args.out}")
    return 0
