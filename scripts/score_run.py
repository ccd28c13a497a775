"""Score a finished FER2013 run the way every results folder here was scored, and file it there.

1. The evaluation view (``crop_pct`` of the single view) is chosen on the Training hold-out, the
   split ``train --val-split holdout`` selected its checkpoint on (``holdout_views.json``). Ten-crop
   needs no choice: it enlarges on its own.
2. The test split is scored once per view: the chosen single view, its flip, and ten-crop, whose
   probabilities are kept for ensembles (``evaluate --probs``).
3. The run's record (config, history, metrics with the whole-face test score, predictions) is copied,
   and its ``best.pt`` shipped as ``best_fp16.pt`` with the chosen view recorded (``ship --half --crop-pct``).

    python scripts/score_run.py runs/vgg_gap-w32-s1-90 --dest results/vgg_gap_w32-cpu-s1-90

A run without ``metrics.json`` is unfinished and refused, as is a ``--dest`` that already holds
scores (unless ``--overwrite``); each in one line, exit status 2.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from fer_utils.data import load_dataset, random_subset, training_holdout
from fer_utils.evaluate.command import choose_crop_pct, evaluate_checkpoint
from fer_utils.experiments.ship import ship_model
from fer_utils.files import repository_relative, write_json

#: The views the hold-out chooses among (the shipped model's sweep).
CROP_PCTS = (1.0, 0.95, 0.9, 0.875, 0.85, 0.8)
#: What a finished run folder holds that a results folder keeps (best.pt is shipped in fp16 instead).
RUN_RECORD = ("config.json", "history.csv", "history.json", "metrics.json", "predictions.npz")


def view_tag(crop_pct: float) -> str:
    """File-name form of a view: 0.85 -> ``crop085``, 0.9 -> ``crop09``, 1.0 -> ``crop10``."""
    return "crop" + str(float(crop_pct)).replace(".", "")


def score_run(run_dir: Path, dest: Path, *, crop_pcts: tuple[float, ...] = CROP_PCTS, test_split: str = "PublicTest",
              subset: int | None = None, device: str | None = None, amp: bool = True,
              overwrite: bool = False) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns the summary also written to ``dest/scores.json``."""
    if not (run_dir / "metrics.json").is_file():
        raise ValueError(f"{run_dir}: unfinished run (no metrics.json); finish it with train --resume first")
    if (dest / "scores.json").exists() and not overwrite:
        raise ValueError(f"{dest}: already holds scores (scores.json); choose another folder or pass --overwrite")
    checkpoint, recorded = run_dir / "best.pt", {"checkpoint": repository_relative(run_dir / "best.pt")}
    data = load_dataset("fer2013")
    holdout = random_subset(training_holdout(data.split("Training"))[1], subset)
    test = random_subset(data.split(test_split), subset)
    options = dict(device=device, amp=amp, progress=True)
    dest.mkdir(parents=True, exist_ok=True)

    choice = choose_crop_pct(checkpoint, holdout, crop_pcts, **options)
    write_json(dest / "holdout_views.json", {"data": "fer2013", "split": "holdout", **choice, **recorded})
    chosen, tag, split = choice["chosen_crop_pct"], view_tag(choice["chosen_crop_pct"]), test_split.lower()
    scores = {}
    for name, tta, crop_pct in ((tag, "none", chosen), (f"{tag}_flip", "flip", chosen), ("tencrop", "tencrop", None)):
        probs = dest / f"predictions_{split}_tencrop.npz" if tta == "tencrop" else None
        metrics = evaluate_checkpoint(checkpoint, test, tta=tta, crop_pct=crop_pct, save_probs=probs, **options)
        write_json(dest / f"metrics_{split}_{name}.json", {"data": "fer2013", "split": test_split, **metrics, **recorded})
        scores[name] = metrics["accuracy"]
    for name in RUN_RECORD:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)
    ship_model(run_dir, dest / "best_fp16.pt", overwrite=overwrite, half=True, crop_pct=chosen)
    summary = {"run": repository_relative(run_dir), "holdout_chosen_crop_pct": chosen,
               "holdout_accuracy_by_crop_pct": choice["accuracy_by_crop_pct"],
               f"{split}_accuracy": scores, "precision": choice["precision"], "subset": subset}
    write_json(dest / "scores.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder (best.pt, metrics.json)")
    parser.add_argument("--dest", type=Path, required=True, help="results folder to write")
    parser.add_argument("--crop-pcts", type=float, nargs="+", default=list(CROP_PCTS),
                        help=f"views the hold-out chooses among (default {' '.join(map(str, CROP_PCTS))})")
    parser.add_argument("--test-split", default="PublicTest", help="scored once per view (default PublicTest)")
    parser.add_argument("--subset", type=int, default=None, help="N random faces of each split (quick checks)")
    parser.add_argument("--device", default=None, help="cuda, cpu ... (default: cuda if available)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="plain fp32")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier scoring in --dest")
    args = parser.parse_args(argv)
    try:
        summary = score_run(args.run, args.dest, crop_pcts=tuple(args.crop_pcts), test_split=args.test_split,
                            subset=args.subset, device=args.device, amp=args.amp, overwrite=args.overwrite)
    except (OSError, ValueError) as err:  # an unfinished run, a missing dataset, a taken folder
        print(f"score_run: {err}")
        return 2
    scores = ", ".join(f"{name} {100 * acc:.2f}%" for name, acc in summary[f"{args.test_split.lower()}_accuracy"].items())
    print(f"{args.run}: view chosen on the hold-out --crop-pct {summary['holdout_chosen_crop_pct']}; "
          f"{args.test_split}: {scores} ({summary['precision']}); files in {args.dest}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
