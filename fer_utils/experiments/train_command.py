"""``python -m fer_utils train``: train one model into a run folder and test its best weights.

The folder gets ``config.json``, ``history.csv``/``.json``, ``best.pt``, ``last.pt``,
``predictions.npz`` and ``metrics.json`` (test metrics of the best checkpoint). A non-empty
folder is refused unless ``--resume`` (continue it) or ``--overwrite`` (replace its run files);
``OUT/.lock`` keeps a second process out while one trains.
Validation: the ``PublicTest`` split, or ``--val-split holdout`` (stratified 10% of
``Training``). Test: ``PrivateTest``, or ``PublicTest`` when the file lacks it. ``--init-from``
starts from a trained checkpoint's weights (fine-tuning); ``--distill-from`` trains towards teachers'
probabilities mixed with the labels (:mod:`fer_utils.experiments.distill`).
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

import torch

from fer_utils.arguments import add_errors_argument, non_negative_float, positive_float, positive_int
from fer_utils.errors import FerError, UsageError, RunFolderError, first_line
from fer_utils.data import FaceData, list_augments
from fer_utils.devices import resolve_precision
from fer_utils.experiments.distill import with_distillation_targets
from fer_utils.experiments.runs import DataSpec, load_splits, train_and_evaluate
from fer_utils.models import create_model_for
from fer_utils.models.checkpoints import init_from_checkpoint
from fer_utils.models.pretrained import LoadReport, file_digest
from fer_utils.files import write_json
from fer_utils.train.config import AMP_DTYPES, OPTIMIZERS, SCHEDULERS, TrainConfig
from fer_utils.train.distributed import Rank, process_group, rank_device
from fer_utils.train.recipes import RECIPES
from fer_utils.train.run_folder import LOCK_NAME, run_lock

#: Printed after Ctrl-C or SIGTERM (the run writes ``last.pt`` as it stops).
INTERRUPTED_HINT = "OUT/last.pt keeps the last finished epoch: run the same command with --resume to go on"
#: Files a run folder gets (``--overwrite`` removes them, nothing else).
RUN_FILES: tuple[str, ...] = ("config.json", "history.csv", "history.json", "best.pt", "last.pt",
                              "predictions.npz", "metrics.json")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``train`` command."""
    parser.add_argument("--model", required=True, help="registered model name (see fer_utils.models.list_models)")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON",
                        help='extra model arguments as JSON, e.g. \'{"dropout": 0.3}\'')
    parser.add_argument("--data", default="fer2013", help="dataset name for load_dataset (default fer2013)")
    parser.add_argument("--data-dir", default=None, help="datasets folder (default $FER_DATA_DIR)")
    parser.add_argument("--train-split", default="Training", help="split to train on (default Training)")
    parser.add_argument("--val-split", default="PublicTest",
                        help="validation split name, 'holdout' (10%% of Training) or 'none'")
    parser.add_argument("--test-split", default="PrivateTest", help="split to test on ('none' to skip)")
    parser.add_argument("--subset", type=positive_int, default=None, metavar="N", help="N random items per split (smoke runs)")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    existing.add_argument("--overwrite", action="store_true", help="replace the run files already in OUT")
    add_errors_argument(parser)
    parser.add_argument("--device", default=None, help="cuda, cpu, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                        help="start from a trained checkpoint's weights (e.g. results/best_model.pt, to fine-tune "
                             "it); a classifier head for other classes keeps its initialisation")
    parser.add_argument("--distill-from", nargs="+", type=Path, default=[], metavar="NPZ",
                        help="teachers' predictions on the training split (evaluate --save-probs; several are "
                             "averaged): train towards them mixed with the labels (fer_utils.experiments.distill)")
    parser.add_argument("--distill-weight", type=positive_float, default=0.5, metavar="W",
                        help="weight of the teachers' probabilities in the targets, in (0, 1] (default 0.5)")
    add_training_arguments(parser, recipes=True)


def add_training_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig = TrainConfig(),
                           recipes: bool = False) -> None:
    """The TrainConfig flags (shared by ``train`` and ``crossval``). A flag left out takes its value
    from ``--recipe`` (offered when ``recipes``; see :data:`~fer_utils.train.recipes.RECIPES`), else
    from ``defaults``."""
    parser.set_defaults(training_defaults=defaults, recipe=None)
    group = parser.add_argument_group("training (see fer_utils.train.TrainConfig; defaults: "
                                      + ", ".join(f"{k}={v}" for k, v in defaults.to_dict().items()) + ")")
    if recipes:
        group.add_argument("--recipe", choices=sorted(RECIPES),
                           help="start from a named recipe (fer_utils.train.recipes); flags given override it")
    add = partial(group.add_argument, default=argparse.SUPPRESS)
    add("--epochs", type=positive_int)
    add("--batch-size", type=positive_int)
    add("--lr", type=positive_float, help="peak / base learning rate")
    add("--optimizer", choices=OPTIMIZERS)
    add("--momentum", type=non_negative_float)
    add("--weight-decay", type=non_negative_float)
    add("--scheduler", choices=SCHEDULERS)
    add("--warmup-epochs", type=non_negative_float)
    add("--min-lr", type=non_negative_float, help="final learning rate of the cosine schedule")
    add("--label-smoothing", type=non_negative_float)
    add("--class-weighting", action="store_true", help="inverse-frequency class weights")
    add("--augment", choices=list_augments(), help="augmentation preset (clips: the same transform on every frame)")
    add("--amp", action=argparse.BooleanOptionalAction,
        help="autocast (default on): --amp-dtype on CUDA; bf16 on a CPU with native bf16, else fp32")
    add("--amp-dtype", choices=AMP_DTYPES, help="autocast dtype (float16: CUDA only, with a gradient scaler)")
    add("--channels-last", action=argparse.BooleanOptionalAction,
        help="channels-last layout for 2-D convolutional models (default on)")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--grad-clip", type=positive_float, help="max gradient norm")
    add("--patience", dest="early_stopping_patience", type=positive_int, metavar="N", help="early-stopping patience (epochs)")
    add("--ema-decay", type=positive_float, help="validate and keep an EMA of the weights (e.g. 0.999)")
    add("--ema-warmup", action="store_true",
        help="warm the EMA up: decay min(ema_decay, (1 + t) / (10 + t)) at update t (timm's)")
    add("--mixup-alpha", type=non_negative_float, help="mixup Beta(a, a) per batch (0: off)")
    add("--cutmix-alpha", type=non_negative_float, help="CutMix Beta(a, a) per batch (0: off)")
    add("--sam-rho", type=non_negative_float, help="sharpness-aware minimisation radius (e.g. 0.05; 0: off; "
                                                   "two passes per step)")
    add("--seed", type=int)
    add("--checkpoint-every", type=positive_int, metavar="N",
        help="write last.pt every N epochs (and at the end or on interruption); "
             "default: every epoch, every 5 for models over 50 MB")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed arguments describe: defaults, then the recipe, then the flags given
    (``UsageError`` if inconsistent)."""
    values = {**args.training_defaults.to_dict(), **(RECIPES[args.recipe] if args.recipe else {})}
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _split_arg(value: str) -> str | None:
    return None if value.lower() == "none" else value


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Check ``out`` may be trained into (call with its lock held); ``--overwrite`` clears its run files."""
    if resume:
        if not (out / "last.pt").is_file():
            raise RunFolderError(f"--resume: {out / 'last.pt'} does not exist; nothing to resume")
        return
    present = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    if present and not overwrite:
        raise RunFolderError(f"{out}: run folder is not empty ({', '.join(present[:5])}); "
                             "pass --resume to continue that run or --overwrite to replace it")
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def check_model_fits(model_name: str, model_kwargs: dict, train: FaceData,
                     init_from: Path | None = None) -> LoadReport | None:
    """``UsageError`` in one line when the model cannot be built with ``model_kwargs`` or cannot take two of
    ``train``'s items (a still model on clips, an ``img_size`` that is not the data's...);
    ``CheckpointError`` when the weights of ``init_from`` do not fit it. Returns what ``init_from`` loads."""
    report = None
    try:
        model = create_model_for(model_name, train.preprocessing, len(train.classes), **model_kwargs).eval()
        if init_from is not None:
            report = init_from_checkpoint(model, init_from, train.classes)
        batch = torch.as_tensor(train.images[:2]).float().unsqueeze(-3)  # (2, [T,] 1, H, W), as the iterator makes
        with torch.no_grad():
            model(batch)
    except FerError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--model {model_name} with --model-kwargs {json.dumps(model_kwargs)} cannot take "
                         f"{train.name}'s items of shape {tuple(train.images.shape[1:])}: {first_line(exc)}"
                         ) from None
    return report


def run(args: argparse.Namespace) -> int:
    """Train, test, write ``metrics.json``; prints the test summary. Under ``torchrun`` every
    process trains its shard (DistributedDataParallel); rank 0 holds the lock, tests and writes."""
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"{args.out}: --out must be a run folder, found a file")
    device = rank_device(args.device)
    with process_group(device) as ddp:
        main_rank = ddp is None or ddp.is_main
        with run_lock(args.out) if main_rank else nullcontext():
            return _run_locked(args, device, ddp)


def _run_locked(args: argparse.Namespace, device: torch.device, ddp: Rank | None) -> int:
    cfg = config_from_args(args)
    resolve_precision(device, cfg.amp, cfg.amp_dtype)  # a dtype the device cannot run: refused before any work
    spec = DataSpec(dataset=args.data, train=args.train_split, val=_split_arg(args.val_split),
                    test=_split_arg(args.test_split), subset=args.subset,
                    load_kwargs={"errors": args.errors})
    run_info: dict[str, object] = {"data": spec.to_dict()}
    splits = load_splits(spec, args.data_dir)
    init = check_model_fits(args.model, args.model_kwargs, splits.train, args.init_from)  # before anything is written
    if init is not None:
        run_info["init_from"] = {"file": args.init_from.name, "sha256": file_digest(args.init_from, "sha256"),
                                 "kept_initialisation": init.skipped}
        print(f"init from {args.init_from}: {len(init.loaded)} tensors loaded"
              + (f", kept initialisation: {', '.join(init.skipped)}" if init.skipped else ""))
    if ddp is None or ddp.is_main:
        prepare_run_dir(args.out, args.resume, args.overwrite)
    if ddp is not None:
        ddp.barrier()  # the run folder is ready
        run_info["processes"] = ddp.world_size
    if args.distill_from:
        splits = replace(splits, train=with_distillation_targets(splits.train, args.distill_from, args.distill_weight))
        run_info["distillation"] = {"from": [str(p) for p in args.distill_from], "weight": args.distill_weight,
                                    "sha256": [file_digest(p, "sha256") for p in args.distill_from]}
    if ddp is not None and not ddp.is_main:  # trains its shard; rank 0 tests and writes
        train_and_evaluate(args.model, args.model_kwargs, replace(splits, test=None), cfg, args.out,
                           device=device, progress=False, resume=args.resume, run_info=run_info,
                           init_from=args.init_from)
        return 0
    print(f"train {len(splits.train)}, val {0 if splits.val is None else len(splits.val)}, "
          f"test {0 if splits.test is None else len(splits.test)} ({splits.test_split}); model {args.model}"
          + ("" if ddp is None else f"; {ddp.world_size} processes"))
    summary = train_and_evaluate(
        args.model, args.model_kwargs, splits, cfg, args.out, device=device,
        progress=not args.no_progress, resume=args.resume, run_info=run_info, init_from=args.init_from,
    )
    write_json(args.out / "metrics.json", {"complete": True, **summary})
    test = summary["test"]
    line = f"best epoch {summary['best_epoch']}, val acc {summary['best_val_acc']}"
    if test is not None:
        line += f"; {summary['test_split']}: accuracy {test['accuracy']:.4f}, macro F1 {test['macro_f1']:.4f}"
    print(line)
    print(f"run folder: {args.out}")
    return 0
