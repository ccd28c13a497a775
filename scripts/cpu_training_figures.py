"""Figures of the FER2013 models trained on this project's 2-core CPU, for the README's "Training on a CPU".

- ``figures/cpu_accuracy_vs_hours.png``: PublicTest accuracy against training hours for every run folder
  under ``results/`` trained on all of Training on a CPU (single view; ten-crop too where
  ``metrics_publictest_tencrop.json`` exists), with its precision; the notebooks' own runs (the cpu
  profile's folder, ``results/cpu/``) are left to notebook 10's comparison, and so are runs started from
  another run's weights (``train --init-from``), whose hours are not the cost of their model;
- ``figures/cpu_shipped_history.png``: the history of the run named by ``--shipped``.

    python scripts/cpu_training_figures.py --shipped results/vgg_gap_w32-cpu-s1-90
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fer_utils.plots import finish, new_figure, plot_history
from fer_utils.report.notebook import profile_dirs

#: A run counts when it trained on at least this many faces (all of Training but a hold-out).
FULL_TRAINING = 25_000


def cpu_runs(results: Path) -> pd.DataFrame:
    """One row per finished full-Training CPU run under ``results``: name, precision, hours, epochs, accuracies."""
    rows = []
    notebook_runs = profile_dirs("cpu", results.parent)[0]  # notebook 10 compares those
    for metrics_file in sorted(results.rglob("metrics.json")):
        run_dir = metrics_file.parent
        if run_dir.is_relative_to(notebook_runs):
            continue
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("device") != "cpu" or metrics.get("train_size", 0) < FULL_TRAINING or not metrics.get("test"):
            continue
        config = json.loads((run_dir / "config.json").read_text())
        if "init_from" in config:
            continue
        tencrop_file = run_dir / "metrics_publictest_tencrop.json"
        tencrop = json.loads(tencrop_file.read_text())["accuracy"] if tencrop_file.is_file() else None
        rows.append({"run": str(run_dir.relative_to(results)), "model": metrics["model_name"],
                     "precision": config.get("precision", "cpu fp32"), "epochs": metrics["epochs_run"],
                     "hours": metrics["train_seconds"] / 3600, "accuracy": metrics["test"]["accuracy"],
                     "tencrop_accuracy": tencrop})
    return pd.DataFrame(rows)


def label_heights(points: list[tuple[float, float]], width: float, step: float = 0.9) -> list[float]:
    """A height for each point's name, just under the point, moved down by ``step`` until it is at least
    ``step`` from every name placed before it within ``width`` hours (names run right of their point)."""
    placed: list[tuple[float, float]] = []
    heights = [0.0] * len(points)
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):  # from the top down
        x, y = points[i]
        height = y - 0.6
        while any(abs(x - px) < width and abs(height - py) < step for px, py in placed):
            height -= step
        placed.append((x, height))
        heights[i] = height
    return heights


def plot_accuracy_vs_hours(runs: pd.DataFrame, path: Path) -> None:
    """Scatter of PublicTest accuracy (%) against training hours, coloured by precision, ten-crop as stars."""
    fig = new_figure(9, 5.5)
    ax = fig.subplots()
    for precision, part in runs.groupby("precision"):
        ax.scatter(part["hours"], part["accuracy"] * 100, s=40, label=f"{precision}, single view")
        crops = part.dropna(subset=["tencrop_accuracy"])
        if len(crops):
            ax.scatter(crops["hours"], crops["tencrop_accuracy"] * 100, marker="*", s=140,
                       label=f"{precision}, ten-crop")
    named = runs[~runs["run"].str.contains("/")]  # a study's runs (e.g. cpu_precision/...): named once, below
    points = list(zip(named["hours"], named["accuracy"] * 100))
    name_width = 0.3 * runs["hours"].max()  # a name's length in hours on this axis (x runs to 1.3 x the max)
    for row, (x, y), label_y in zip(named.itertuples(), points, label_heights(points, width=name_width)):
        ax.annotate(f"{row.run} ({row.epochs} ep)", (x, y), xytext=(x + 0.03, label_y), fontsize=7,
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if y - label_y > 1.0 else None)
    for study, part in runs[runs["run"].str.contains("/")].groupby(runs["run"].str.split("/").str[0]):
        ax.annotate(f"{study}: {part['model'].iloc[0]}, {part['epochs'].iloc[0]} ep, {len(part)} runs",
                    (part["hours"].max(), part["accuracy"].min() * 100), fontsize=7, xytext=(6, -14),
                    textcoords="offset points")
    ax.set(xlabel="training wall-clock hours on the 2-core CPU", ylabel="FER2013 PublicTest accuracy (%)",
           title="FER2013 models trained on the 2-core CPU: accuracy against training time")
    ax.margins(x=0.3)  # room for the names right of the points
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    finish(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--figures", type=Path, default=Path("figures"))
    parser.add_argument("--shipped", type=Path, required=True, help="run folder of the shipped model")
    args = parser.parse_args(argv)
    runs = cpu_runs(args.results)
    print(runs.to_string(index=False))
    plot_accuracy_vs_hours(runs, args.figures / "cpu_accuracy_vs_hours.png")
    plot_history(args.shipped / "history.csv", args.figures / "cpu_shipped_history.png",
                 title=f"Shipped model: {args.shipped.name} trained on the 2-core CPU (EMA weights validated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
