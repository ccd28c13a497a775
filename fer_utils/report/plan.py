"""What the report trains and what it costs (``--plan``), and a time-boxed share of it (``--budget-minutes``).

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
``figures/``. An experiment requested twice (notebook 09 reuses 03's ``vgg_small-aug``) is
listed once, under its first notebook.

Cost: FLOPs of one forward pass of one input (a 48x48 face or a clip), counted with
``torch.utils.flop_counter.FlopCounterMode``; training is taken as 3 forward passes per input
per epoch (forward + backward), validation and testing left out (RNN cells of ``cnn_gru`` and
``cnn_lstm`` are not counted by the FLOP counter: their convolutions dominate). Seconds: inputs
x epochs / the training images/s that ``python -m fer_utils bench train`` stored for that model
(``results/bench/train-cuda.json``), else FLOPs / an assumed effective throughput (``--tflops``,
25 TFLOP/s by default, for an H100 on these small models).

``--budget-minutes N`` runs the notebooks the same way on the real device, but computes missing
results in the notebooks' order (dependencies come first: the FER2013 trunk before the CK+48
transfers, the encoder before its classifiers, the lr range test before the schedules) while
their estimates fit in what is left (a run interrupted before counts only the epochs after its
``last.pt``). The first one that does not fit still starts when a minute
or more is left, so that long runs progress across sessions; every later one gets a stand-in.
At the deadline (N minutes less a packing margin) training is interrupted as Ctrl-C would:
``last.pt`` keeps the last finished epoch and a cross-validation keeps its finished folds, which
the same command resumes. The interrupt waits for a file being written
(:func:`~fer_utils.files.interrupts_deferred`); a cell that fails after it counts as the stop (library code
may turn it into another error), and the alarm repeats until the run stops (a ``__del__`` drops it).
Notebook figures and tables go to a temporary folder: render later.
``--select REGEX`` trains only the missing experiments whose name matches (the rest get stand-ins),
so that budget runs side by side on one GPU can share out experiments that do not depend on one
another, each packing its share with ``--pack-mib``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from fer_utils.arguments import positive_float
from fer_utils.data import to_model_input
from fer_utils.experiments.cache import PLANNER, Work
from fer_utils.report.notebook import SCRATCH_OUTPUTS
from fer_utils.report.pack import MAX_PARTS, PART_BYTES, TOTAL_BYTES, PackError, check_pack_folder, pack, unpack
from fer_utils.report.script import notebook_parameters, notebook_paths, run_as_script
from fer_utils.train.run_folder import epochs_saved

#: The notebooks that train: what ``--plan`` and ``--budget-minutes`` run unless ``--only`` says otherwise.
TRAINING_NOTEBOOKS = "03,04,05,06,07,08,09,10"
#: Effective training throughput assumed where no benchmark was stored (FLOP/s).
DEFAULT_TFLOPS = 25.0
#: Forward + backward of one input, in forward passes.
TRAIN_PASSES = 3


def bench_file(device_type: str) -> Path:
    """Where ``bench train`` stores training images/s per model on ``device_type`` (relative to the repository root)."""
    return Path("results") / "bench" / f"train-{device_type}.json"


#: Time kept after the deadline to pack, and the least time worth starting an experiment that will not finish.
PACK_MARGIN_S, MIN_PARTIAL_S = 60.0, 60.0
#: Seconds between repeats of the deadline's alarm until the run stops.
ALARM_REPEAT_S = 20.0


def forward_flops(work: Work) -> int:
    """FLOPs of one forward pass of ``work``'s model on one input, counted on the meta device."""
    model = work.build().eval().to("meta")
    x = to_model_input(torch.zeros((1, *work.sample_shape), dtype=torch.uint8, device="meta"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def bench_rates(path: Path) -> dict[str, float]:
    """Training images/s per model stored by ``bench train`` at ``path`` (empty when absent)."""
    if not path.is_file():
        return {}
    return {model: float(r["pipeline_images_per_s"]) for model, r in json.loads(path.read_text()).items()}


@dataclass
class Rates:
    """How seconds are estimated: measured images/s per model, else FLOPs at ``tflops``."""

    tflops: float = DEFAULT_TFLOPS
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

    def __init__(self, rates: Rates) -> None:
        self.rates = rates
        self.notebook = ""
        self.rows: dict[Path, PlanRow] = {}
        self.failed_cells: list[str] = []

    def __call__(self, name: str, path: Path, hit: bool, work: Work) -> bool:
        row = self.rows.get(path)
        if row is None:
            done = epochs_saved(path) if work.kind == "experiment" and not hit else 0
            row = self.rows[path] = PlanRow(self.notebook, name, work, path, hit, forward_flops(work), 0.0, "", done)
            row.seconds, row.rate_source = self.rates.seconds(work, row.training_flops)
        return self.decide(row)

    def decide(self, row: PlanRow) -> bool:
        """Whether to compute ``row``'s missing result now: never, for a plan."""
        return False

    def cell_failed(self, cell: int, error: Exception) -> None:
        self.failed_cells.append(f"{self.notebook} cell {cell}: {type(error).__name__}: {str(error)[:100]}")


class BudgetRecorder(Recorder):
    """A planner that computes missing results in order while their estimates fit before ``deadline``
    (only those whose name ``select`` matches, when given)."""

    def __init__(self, rates: Rates, deadline: float, select: re.Pattern[str] | None = None) -> None:
        super().__init__(rates)
        self.deadline, self.select = deadline, select
        self.started: list[PlanRow] = []
        self.stopped = False
        self.spent = False  # the deadline's alarm went off
        self.stopping = False  # the run caught the interrupt and is winding up

    def interrupt(self, _signum: int, _frame: object) -> None:
        """The deadline's alarm: stop the run as Ctrl-C would. It repeats (:data:`ALARM_REPEAT_S`)
        until the run stops, in case code that ignores exceptions (a ``__del__``) swallowed one."""
        if self.stopping:
            return
        self.spent = True
        raise KeyboardInterrupt("time budget spent")

    def cell_failed(self, cell: int, error: Exception) -> None:
        """After the alarm, a failing cell is the interrupt seen through library code (say, a
        ``RuntimeError`` from a write it cut): stop; before it, record and go on."""
        if self.spent:
            raise KeyboardInterrupt("time budget spent") from error
        super().cell_failed(cell, error)

    def decide(self, row: PlanRow) -> bool:
        if row.cached or self.stopped or row in self.started:
            return False
        if self.select is not None and not self.select.search(row.name):
            return False
        left = self.deadline - time.monotonic()
        if row.seconds * row.part_left > left:  # the first that does not fit: later ones wait for it
            self.stopped = True
            if left < MIN_PARTIAL_S:
                return False
        self.started.append(row)
        print(f"budget: training {row.name} (estimated {row.seconds * row.part_left / 60:.1f} min, "
              f"{left / 60:.1f} min left{_progress(row, ', from epoch ')})",
              flush=True)
        return True


def run_notebooks(recorder: Recorder, profile: str, device: str, root: Path, only: str = "",
                  quiet: bool = True) -> None:
    """Run the notebooks' code cells with ``recorder`` as planner, figures and tables in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="fer-plan-") as scratch, _set(PLANNER, recorder), \
            _set(SCRATCH_OUTPUTS, Path(scratch)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for notebook in notebook_paths(root, only or TRAINING_NOTEBOOKS):
            recorder.notebook = notebook.name[:2]
            output = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
            with output:
                run_as_script(notebook, notebook_parameters(notebook, profile, device), recorder.cell_failed)


def make_plan(profile: str, root: Path, rates: Rates, only: str = "") -> Recorder:
    """Every experiment the notebooks would request in ``profile``, with costs; nothing is trained or written."""
    recorder = Recorder(rates)
    with contextlib.redirect_stderr(io.StringIO()):
        run_notebooks(recorder, profile, "meta", root, only)
    return recorder


def format_plan(recorder: Recorder, rates: Rates, root: Path) -> str:
    """The plan as a text table with per-notebook and overall totals (all, and still to train)."""
    lines = [f"{'nb':2s} {'experiment':34s} {'kind':10s} {'model':16s} {'epochs':>6s} {'folds':>5s} "
             f"{'inputs':>9s} {'GFLOP/fwd':>9s} {'PFLOP':>8s} {'est min':>8s}  stored"]
    rows = list(recorder.rows.values())
    for r in rows:
        lines.append(f"{r.notebook:2s} {r.name[:34]:34s} {r.work.kind:10s} {r.work.model[:16]:16s} {r.work.epochs:6d} "
                     f"{r.work.folds or '':>5} {r.work.items:9,d} {r.forward_flops / 1e9:9.3f} "
                     f"{r.training_flops / 1e15:8.2f} {r.seconds / 60:8.1f}  {'yes' if r.cached else 'no'}"
                     f"{_progress(r, ', after epoch ')}"
                     f"{'' if r.rate_source == 'assumed' else ' (bench)'}")
    lines.append("")
    for notebook in dict.fromkeys(r.notebook for r in rows):
        lines.append(_total(f"notebook {notebook}", [r for r in rows if r.notebook == notebook]))
    lines.append(_total("all", rows))
    measured = sorted(m for m in rates.images_per_s)
    lines.append(f"inputs: training images (clips for crossval) per epoch, summed over folds; training = "
                 f"{TRAIN_PASSES} x forward. Seconds: {'bench images/s for ' + ', '.join(measured) + '; ' if measured else ''}"
                 f"{rates.tflops:g} TFLOP/s assumed otherwise. Stored: in {_relative(rows, root)}.")
    return "\n".join(lines + failed_cells_lines(recorder))


def failed_cells_lines(recorder: Recorder) -> list[str]:
    """The cells that failed (each skipped from there on), for the plan's and the budget's summaries."""
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


def result_files(row: PlanRow) -> list[Path]:
    """Everything stored for ``row``'s result: ``<name>-<hash8>`` and its siblings (``.folds/``, ``.json``...)."""
    stem = re.match(r".*-[0-9a-f]{8}", row.path.name).group(0)
    found = [p for p in row.path.parent.glob(f"{stem}*") if p.name == stem or p.name.startswith(stem + ".")]
    return sorted(f for p in found for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def run_budget(profile: str, minutes: float, device: str, root: Path, rates: Rates, only: str = "",
               select: re.Pattern[str] | None = None) -> BudgetRecorder:
    """Run the notebooks, training missing results in order within ``minutes`` (see the module docstring)."""
    start = time.monotonic()
    budget_s = minutes * 60 - min(PACK_MARGIN_S, 0.1 * minutes * 60)
    recorder = BudgetRecorder(rates, start + budget_s, select)
    previous = signal.signal(signal.SIGALRM, recorder.interrupt)
    signal.setitimer(signal.ITIMER_REAL, budget_s, ALARM_REPEAT_S)
    try:
        run_notebooks(recorder, profile, device, root, only, quiet=False)
    except KeyboardInterrupt:
        recorder.stopping = True
        print(f"budget: stopped after {(time.monotonic() - start) / 60:.1f} min; the same command resumes", flush=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return recorder


@contextlib.contextmanager
def _set(var, value) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plan``, ``--budget-minutes``, ``--pack``, ``--unpack`` and the throughput options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--plan", action="store_true",
                       help="list every experiment of the profile with its cost and whether it is stored; trains nothing")
    group.add_argument("--budget-minutes", type=positive_float, metavar="N",
                       help="train the missing experiments, in the notebooks' order, that fit in N minutes; resumable")
    group.add_argument("--unpack", type=Path, metavar="DIR", help="extract a --pack folder into the repository")
    parser.add_argument("--pack", type=Path, metavar="DIR",
                        help=f"with --budget-minutes: pack what was made into at most {MAX_PARTS} files of "
                             f"{PART_BYTES // 2**20} MiB in DIR, --pack-mib in all")
    parser.add_argument("--pack-mib", type=positive_float, default=TOTAL_BYTES / 2**20,
                        help="the pack's size limit in MiB (default: all a device command brings back; "
                             "a share of it when several budget runs pack in one command)")
    parser.add_argument("--select", type=re.compile, metavar="REGEX",
                        help="with --budget-minutes: train only the missing experiments whose name matches (the "
                             "rest get stand-ins), to share independent experiments out among concurrent runs")
    parser.add_argument("--tflops", type=positive_float, default=DEFAULT_TFLOPS,
                        help="effective training TFLOP/s assumed for models without a `bench train` figure")
    parser.add_argument("--bench", type=Path, default=None,
                        help=f"`bench train` results to read images/s from (default: {bench_file('cuda')})")


def plan_command(args: argparse.Namespace, profile: str, root: Path) -> int:
    """``--plan`` (print the plan) or ``--budget-minutes`` (train within it, then ``--pack``)."""
    rates = Rates(args.tflops, bench_rates(args.bench or root / bench_file("cuda")))
    if args.plan:
        print(format_plan(make_plan(profile, root, rates, args.only), rates, root))
        return 0
    try:
        if args.pack is not None:
            check_pack_folder(args.pack)
    except PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    recorder = run_budget(profile, args.budget_minutes, args.device, root, rates, args.only, args.select)
    files = [f for row in recorder.started for f in result_files(row)]
    print("\n".join([f"budget: {len(recorder.started)} experiment(s) started, {len(files)} files made"]
                    + failed_cells_lines(recorder)))
    if args.pack is not None:
        parts, left_out = pack(files, root, args.pack, int(args.pack_mib * 2**20))
        for path in left_out:
            print(f"pack: left out {path.relative_to(root)} ({path.stat().st_size / 2**20:.1f} MiB): too large")
        print(f"pack: {len(parts)} file(s) in {args.pack}; on the other machine, from the repository root: "
              f"python -m fer_utils.report --unpack {args.pack}")
    return 0


def unpack_command(folder: Path, root: Path) -> int:
    """``--unpack DIR``: extract a pack into the repository; exit status 2 when it cannot."""
    try:
        names = unpack(folder, root)
    except PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"unpacked {len(names)} files into {root}")
    return 0
