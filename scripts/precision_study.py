"""Does bf16 autocast + channels_last cost accuracy on this CPU? The same recipe in both precisions, several seeds.

Each run is ``python -m fer_utils train`` (all of Training but the 10% hold-out, tested on PublicTest)
with the defaults (``cpu bf16`` + channels_last where the CPU has native bf16) or with
``--no-amp --no-channels-last`` (plain fp32). Finished runs are kept, an interrupted one resumes; then
``OUT/summary.json`` gets mean and sample std per precision::

    python scripts/precision_study.py --out results/cpu_precision10 --epochs 10 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

#: precision -> extra ``train`` flags.
PRECISIONS: dict[str, list[str]] = {"bf16": [], "fp32": ["--no-amp", "--no-channels-last"]}


def train(run_dir: Path, model: str, epochs: int, seed: int, flags: list[str]) -> None:
    """Train ``run_dir`` unless it is finished; resume it when it was cut."""
    if (run_dir / "metrics.json").is_file():
        return
    resume = ["--resume"] if (run_dir / "last.pt").is_file() else []
    subprocess.run([sys.executable, "-m", "fer_utils", "train", "--model", model, "--recipe", "fer2013",
                    "--epochs", str(epochs), "--seed", str(seed), "--val-split", "holdout",
                    "--test-split", "PublicTest", "--device", "cpu", "--no-progress", "--out", str(run_dir),
                    *resume, *flags], check=True)


def summarise(runs: dict[str, list[Path]]) -> dict[str, dict[str, float]]:
    """Mean and sample std of test and hold-out accuracy, and mean train seconds, per precision."""
    summary = {}
    for precision, run_dirs in runs.items():
        metrics = [json.loads((run_dir / "metrics.json").read_text()) for run_dir in run_dirs]
        test = [m["test"]["accuracy"] for m in metrics]
        val = [m["best_val_acc"] for m in metrics]
        summary[precision] = {
            "publictest_accuracy_mean": statistics.mean(test), "publictest_accuracy_std": statistics.stdev(test),
            "val_accuracy_mean": statistics.mean(val), "val_accuracy_std": statistics.stdev(val),
            "train_seconds_mean": statistics.mean(m["train_seconds"] for m in metrics), "seeds": len(metrics),
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and summary.json")
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="at least two")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds: give at least two, for a standard deviation")
    runs: dict[str, list[Path]] = {}
    for seed in args.seeds:  # precisions alternate, so a slower period of the machine hits both alike
        for precision, flags in PRECISIONS.items():
            run_dir = args.out / f"{args.model}-{precision}-s{seed}"
            train(run_dir, args.model, args.epochs, seed, flags)
            runs.setdefault(precision, []).append(run_dir)
    summary = {**summarise(runs), "recipe": f"{args.model}, --recipe fer2013 --epochs {args.epochs}, 10% hold-out "
                                            f"of Training, seeds {args.seeds}"}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
