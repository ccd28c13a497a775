"""What the report trains and what it costs (``--plan``).

How the list is made: the notebooks' own code cells run as a script (:func:`run_as_script`) with a
:data:`~fer_utils.experiments.cache.PLANNER` set. Every cached computation of the report
(``run_experiment``, ``cached_crossval``, ``cached_lr_find``, ``cached_pretrain_encoder``) goes
through :func:`~fer_utils.experiments.cache.cached`, which reports the request, its result path,
whether it is stored, and its :class:`~fer_utils.experiments.cache.Work` (model, epochs, inputs,
folds). So the list comes from the code that trains, never from a copy of it.

Why this holds up: a stored result is returned as it is (its numbers, checkpoint and learning
rate feed later configs exactly); a missing one is answered by a stand-in of the right type (NaN
scores, no files; an lr-finder stand-in suggests the recipe's rate, a missing weights file is
named ``missing:<file>`` in configs), so the loops that request the next experiment keep going.
Cells that then fail on a stand-in (plots of a history that does not exist, a checkpoint not
made yet) are recorded and skipped, and the next cell runs: later cells still request their
experiments. The notebooks run on the ``meta`` device, so nothing computes (inference on a
stored model stops at once), and with :data:`~fer_utils.report.notebook.SCRATCH_OUTPUTS` their
figures and result files go to a temporary folder: a plan writes nothing under ``results/`` or
``figures/``. An experiment requested twice is listed once, under its first notebook. A cell
tagged ``no-experiments`` (a figure or a print of results) declares that it requests nothing: its
failure on a stand-in is passed over, so it neither fills the list of failed cells nor blocks ``--prune``.
An experiment of the full profile that a notebook leaves out of the profile planned is declared with
:meth:`~fer_utils.report.notebook.NotebookContext.not_run`, and listed under the table with its reason.

Cost: FLOPs of one forward pass of one input (a 48x48 face or a clip), counted with
``torch.utils.flop_counter.FlopCounterMode``; training is taken as 3 forward passes per input
per epoch (forward + backward), validation and testing left out (RNN cells of ``cnn_gru`` and
``cnn_lstm`` are not counted by the FLOP counter: their convolutions dominate). Seconds are seconds of
the whole machine: a stored run's own ``train_seconds`` times the share of the machine it trained on
(its ``cpu_threads / cpu_cores``, so two one-thread runs side by side on 2 cores cost half their wall
time each; :data:`UNRECORDED_SHARE` for runs stored before that was recorded); for a missing
experiment whose model has stored runs in the plan, its FLOPs at their FLOP/s (what this profile's
runs really took, validation and all); else inputs
x epochs / the training images/s that ``python -m fer_utils bench train`` stored for that model
in the precision this profile trains in (:func:`training_precision`: ``results/bench/train-cpu-bf16.json`` for the
cpu profile on a CPU with native bf16, ``train-cpu-fp32.json`` on one without, ``train-cuda-bf16.json`` for the
others), else FLOPs / an assumed effective throughput (``--tflops``,
25 TFLOP/s by default for CUDA, an H100 on these small models; 0.27 for the cpu profile).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_utils.arguments import positive_float
from fer_utils.devices import Precision, machine_seconds, resolve_precision
from fer_utils.data import to_model_input
from fer_utils.experiments.cache import PLANNER, Work
from fer_utils.models import count_forward_flops
from fer_utils.report.notebook import NOT_RUN, SCRATCH_OUTPUTS, profile_dirs
from fer_utils.report.script import notebook_parameters, notebook_paths, run_as_script
from fer_utils.train.run_folder import epochs_saved

#: The notebooks that train: what ``--plan`` runs unless ``--only`` says otherwise.
TRAINING_NOTEBOOKS = "03,04,05,06,07,08"
#: Effective training throughput assumed where no benchmark was stored, per device type (TFLOP/s): an H100
#: on these small models; the 2-core Zen 4 CPU in bf16 (vgg_small: 0.52 GFLOP per training image at 512 images/s).
DEFAULT_TFLOPS = {"cuda": 25.0, "cpu": 0.27}
#: What a profile may cost (hours of the machine): per experiment, and all of it (the cpu profile: the 2-core CPU,
#: trained over sessions).
PROFILE_LIMITS: dict[str, tuple[float, float]] = {"cpu": (2.0, 12.0)}
#: The share of the machine a stored run trained on when its metrics do not record it (runs stored before
#: ``cpu_threads``/``cpu_cores`` were): the cpu profile's were rendered two side by side, one thread each.
UNRECORDED_SHARE: dict[str, float] = {"cpu": 0.5}
#: Forward + backward of one input, in forward passes.
TRAIN_PASSES = 3


def bench_file(precision: str) -> Path:
    """Where ``bench train`` stores training images/s per model measured in ``precision`` (a label such as
    ``"cpu bf16"``), relative to the repository root. One file per precision, so that rates measured on
    another kind of CPU never stand in for this one's: bf16 autocast trained vgg_small 12x slower than fp32
    on an AVX2-only EPYC (README, "Training on a CPU")."""
    return Path("results") / "bench" / f"train-{precision.replace(' ', '-')}.json"


def training_precision(device_type: str) -> str:
    """The precision a profile's runs train in on ``device_type`` with the default ``amp``: on the CPU as
    this CPU resolves it, on CUDA bf16 (not resolved: a plan needs no GPU)."""
    if device_type == "cpu":
        return resolve_precision("cpu").label
    return Precision("cuda", torch.bfloat16).label


def forward_flops(work: Work) -> int:
    """FLOPs of one forward pass of ``work``'s model on one input, counted on the meta device."""
    x = to_model_input(torch.zeros((1, *work.sample_shape), dtype=torch.uint8, device="meta"))
    return count_forward_flops(work.build(), x.shape)


def bench_rates(path: Path) -> dict[str, float]:
    """Training images/s per model stored by ``bench train`` at ``path`` (empty when absent)."""
    if not path.is_file():
        return {}
    return {model: float(r["pipeline_images_per_s"]) for model, r in json.loads(path.read_text()).items()}


@dataclass
class Rates:
    """How seconds are estimated: measured images/s per model, else FLOPs at ``tflops``."""

    tflops: float = DEFAULT_TFLOPS["cuda"]
    images_per_s: dict[str, float] = field(default_factory=dict)

    def seconds(self, work: Work, flops: float) -> tuple[float, str]:
        """Estimated training seconds of ``work`` (``flops`` in all) and where the rate comes from."""
        rate = self.images_per_s.get(work.model) if work.kind == "experiment" else None
        if rate:
            return work.items * work.epochs / rate, "bench"
        return flops / (self.tflops * 1e12), "assumed"


@dataclass
class PlanRow:
    """One experiment of the report: where it is requested, what it trains, what it costs, whether stored."""

    notebook: str
    name: str
    work: Work
    path: Path
    cached: bool
    forward_flops: int
    seconds: float
    rate_source: str
    epochs_done: int = 0  # saved in ``last.pt`` by an interrupted run, which resumes after them

    @property
    def training_flops(self) -> float:
        return TRAIN_PASSES * self.forward_flops * self.work.items * self.work.epochs

    @property
    def part_left(self) -> float:
        """The share of the training still to do: 0 when stored, less than 1 after an interruption."""
        return 0.0 if self.cached else 1 - self.epochs_done / self.work.epochs


class Recorder:
    """A planner that lists every request (once per result path) and computes nothing."""

    def __init__(self, rates: Rates, unrecorded_share: float = 1.0) -> None:
        self.rates = rates
        self.unrecorded_share = unrecorded_share
        self.notebook = ""
        self.rows: dict[Path, PlanRow] = {}
        self.failed_cells: list[str] = []
        self.not_run: list[str] = []  # "notebook name: why", as notebooks declare them (NotebookContext.not_run)

    def __call__(self, name: str, path: Path, hit: bool, work: Work) -> bool:
        row = self.rows.get(path)
        if row is None:
            done = epochs_saved(path) if work.kind == "experiment" and not hit else 0
            row = self.rows[path] = PlanRow(self.notebook, name, work, path, hit, forward_flops(work), 0.0, "", done)
            row.seconds, row.rate_source = self.rates.seconds(work, row.training_flops)
            stored = stored_machine_seconds(path, self.unrecorded_share) if hit and work.kind == "experiment" else None
            if stored:
                row.seconds, row.rate_source = stored, "stored"
        return self.decide(row)

    def use_stored_rates(self) -> None:
        """Estimate each missing experiment from the stored runs of its model in this plan, where there are
        some: their FLOP/s (median), scaled by its FLOPs. What this profile's runs really took beats a bare-step
        benchmark or an assumed throughput, for models whose cost FLOPs predict badly (depthwise convolutions)."""
        measured: dict[str, list[float]] = {}
        for row in self.rows.values():
            if row.rate_source == "stored":
                measured.setdefault(row.work.model, []).append(row.training_flops / row.seconds)
        for row in self.rows.values():
            if not row.cached and row.work.kind == "experiment" and row.work.model in measured:
                row.seconds = row.training_flops / float(np.median(measured[row.work.model]))
                row.rate_source = "runs"

    def decide(self, row: PlanRow) -> bool:
        """Whether to compute ``row``'s missing result now: never, for a plan."""
        return False

    def declare_not_run(self, name: str, why: str) -> None:
        """Note an experiment the current notebook does not run in this profile (NotebookContext.not_run)."""
        self.not_run.append(f"{self.notebook} {name}: {why}")

    def cell_failed(self, cell: int, error: Exception) -> None:
        self.failed_cells.append(f"{self.notebook} cell {cell}: {type(error).__name__}: {str(error)[:100]}")


def stored_machine_seconds(run_dir: Path, unrecorded_share: float = 1.0) -> float | None:
    """:func:`~fer_utils.devices.machine_seconds` of a stored run's ``metrics.json`` (None when unreadable)."""
    try:
        return machine_seconds(json.loads((run_dir / "metrics.json").read_text()), unrecorded_share)
    except (OSError, ValueError):
        return None


def run_notebooks(recorder: Recorder, profile: str, device: str, root: Path, only: str = "",
                  quiet: bool = True) -> None:
    """Run the notebooks' code cells with ``recorder`` as planner, figures and tables in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="fer-plan-") as scratch, _set(PLANNER, recorder), \
            _set(SCRATCH_OUTPUTS, Path(scratch)), _set(NOT_RUN, recorder.declare_not_run), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for notebook in notebook_paths(root, only or TRAINING_NOTEBOOKS):
            recorder.notebook = notebook.name[:2]
            output = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
            with output:
                run_as_script(notebook, notebook_parameters(notebook, profile, device), recorder.cell_failed)


def make_plan(profile: str, root: Path, rates: Rates, only: str = "") -> Recorder:
    """Every experiment the notebooks would request in ``profile``, with costs; nothing is trained or written."""
    recorder = Recorder(rates, UNRECORDED_SHARE.get(profile, 1.0))
    with contextlib.redirect_stderr(io.StringIO()):
        run_notebooks(recorder, profile, "meta", root, only)
    recorder.use_stored_rates()
    return recorder


def format_plan(recorder: Recorder, rates: Rates, root: Path, limits: tuple[float, float] | None = None) -> str:
    """The plan as a text table with per-notebook and overall totals (all, and still to train); with ``limits``
    (hours per experiment, hours in all) the rows over the first are marked and both are checked."""
    lines = [f"{'nb':2s} {'experiment':34s} {'kind':10s} {'model':16s} {'epochs':>6s} {'folds':>5s} "
             f"{'inputs':>9s} {'GFLOP/fwd':>9s} {'PFLOP':>8s} {'est min':>8s}  stored"]
    rows = list(recorder.rows.values())
    for r in rows:
        lines.append(f"{r.notebook:2s} {r.name[:34]:34s} {r.work.kind:10s} {r.work.model[:16]:16s} {r.work.epochs:6d} "
                     f"{r.work.folds or '':>5} {r.work.items:9,d} {r.forward_flops / 1e9:9.3f} "
                     f"{r.training_flops / 1e15:8.2f} {r.seconds / 60:8.1f}  {'yes' if r.cached else 'no'}"
                     f"{_progress(r, ', after epoch ')}"
                     f"{'' if r.rate_source == 'assumed' else f' ({r.rate_source})'}"
                     f"{'  OVER ' + format(limits[0], 'g') + ' h' if limits and r.seconds > limits[0] * 3600 else ''}")
    lines.append("")
    for notebook in dict.fromkeys(r.notebook for r in rows):
        lines.append(_total(f"notebook {notebook}", [r for r in rows if r.notebook == notebook]))
    lines.append(_total("all", rows))
    measured = sorted(m for m in rates.images_per_s)
    lines.append(f"inputs: training images (clips for crossval) per epoch, summed over folds; training = "
                 f"{TRAIN_PASSES} x forward. Minutes of the whole machine: (stored) the run's recorded time x the share "
                 f"of the machine it used (its threads / cores; {recorder.unrecorded_share:g} where it did not record "
                 f"them); (runs) at the machine FLOP/s of the model's stored runs; {'(bench) at bench images/s for ' + ', '.join(measured) + '; ' if measured else ''}"
                 f"{rates.tflops:g} TFLOP/s assumed otherwise. Stored: in {_relative(rows, root)}.")
    if limits:
        over = [r.name for r in rows if r.seconds > limits[0] * 3600]
        hours = sum(r.seconds for r in rows) / 3600
        lines.append(f"limits of this profile: {limits[0]:g} h per experiment ({len(over)} over: {', '.join(over) or 'none'}); "
                     f"{limits[1]:g} h in all ({hours:.1f} h of the machine: {'within' if hours <= limits[1] else 'OVER'}).")
    if recorder.not_run:
        lines += ["not run in this profile (declared by the notebooks):"] + [f"  {line}" for line in recorder.not_run]
    return "\n".join(lines + failed_cells_lines(recorder))


def failed_cells_lines(recorder: Recorder) -> list[str]:
    """The cells that failed (each skipped from there on), for the plan's summary."""
    if not recorder.failed_cells:
        return []
    return ["cells that failed, mostly on stand-ins (the rest of each was skipped):"] + \
        [f"  {line}" for line in recorder.failed_cells]


def _total(label: str, rows: list[PlanRow]) -> str:
    todo = [r for r in rows if not r.cached]
    return (f"{label:12s} {len(rows):3d} experiments, {sum(r.training_flops for r in rows) / 1e15:9.2f} PFLOP, "
            f"{sum(r.seconds for r in rows) / 60:7.1f} min; to train: {len(todo):3d}, "
            f"{sum(r.training_flops * r.part_left for r in todo) / 1e15:9.2f} PFLOP, "
            f"{sum(r.seconds * r.part_left for r in todo) / 60:7.1f} min")


def _progress(row: PlanRow, lead: str) -> str:
    """``lead`` + the resumed run's saved epochs (``12/40``), or nothing for a fresh run."""
    return f"{lead}{row.epochs_done}/{row.work.epochs}" if row.epochs_done else ""


def _relative(rows: list[PlanRow], root: Path) -> str:
    folders = {str(r.path.parent.relative_to(root)) if r.path.is_relative_to(root) else str(r.path.parent) for r in rows}
    return ", ".join(sorted(folders)) or "-"


@contextlib.contextmanager
def _set(var, value) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


#: How the cache names a stored result (:func:`~fer_utils.experiments.cache.cached`): ``<name>-<hash8>[.suffix]``.
CACHED_NAME = re.compile(r"^(?P<stem>.+-[0-9a-f]{8})(?P<suffix>\..*)?$")


def stale_results(recorder: Recorder, results_dir: Path) -> list[Path]:
    """Stored results in ``results_dir`` that no request of the plan uses (older configs of the same
    experiments, experiments no notebook requests any more); other files are never listed."""
    requested = {CACHED_NAME.match(r.path.name)["stem"] for r in recorder.rows.values()}
    found = (CACHED_NAME.match(p.name) for p in results_dir.iterdir()) if results_dir.is_dir() else ()
    return sorted(results_dir / m.string for m in found if m and m["stem"] not in requested)


def prune(recorder: Recorder, results_dir: Path, root: Path) -> int:
    """Delete :func:`stale_results`; refused (exit 1) when a cell failed, since its later requests are unknown."""
    if recorder.failed_cells:
        print("not pruning: cells failed during the plan, so some requests may be missing", file=sys.stderr)
        return 1
    for path in stale_results(recorder, results_dir):
        print(f"removing {path.relative_to(root)}")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return 0


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plan`` and the throughput options."""
    parser.add_argument("--plan", action="store_true",
                        help="list every experiment of the profile with its cost and whether it is stored; trains nothing")
    parser.add_argument("--prune", action="store_true",
                        help="with --plan: delete the profile's stored results that no notebook requests any more "
                             "(older configs); refused with --only or when a cell fails")
    parser.add_argument("--tflops", type=positive_float, default=None,
                        help="effective training TFLOP/s assumed for models without a `bench train` figure "
                             f"(default: {DEFAULT_TFLOPS['cpu']:g} for the cpu profile, else {DEFAULT_TFLOPS['cuda']:g})")
    parser.add_argument("--bench", type=Path, default=None,
                        help="`bench train` results to read images/s from (default: results/bench/train-<precision>.json "
                             "of the precision the profile trains in here, such as train-cpu-bf16.json)")


def plan_command(args: argparse.Namespace, profile: str, root: Path) -> int:
    """``--plan``: print every experiment of ``profile`` with its cost."""
    device_type = "cpu" if profile == "cpu" else "cuda"
    rates = Rates(args.tflops or DEFAULT_TFLOPS[device_type],
                  bench_rates(args.bench or root / bench_file(training_precision(device_type))))
    if args.prune and (args.only or profile == "full"):
        print("--prune plans every training notebook of the cpu or smoke profile (results/ of the full profile "
              "also holds notebooks 01-02's and the commands' runs): drop --only, pick --profile cpu", file=sys.stderr)
        return 2
    recorder = make_plan(profile, root, rates, args.only)
    print(format_plan(recorder, rates, root, PROFILE_LIMITS.get(profile)))
    return prune(recorder, profile_dirs(profile, root)[0], root) if args.prune else 0
