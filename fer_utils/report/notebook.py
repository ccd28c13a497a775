"""What every notebook needs first: its profile (full, cpu, smoke), device, where outputs go, and ``display``.

Profiles: ``full`` is the report as published (GPU settings, outputs in ``results/`` and
``figures/``); ``cpu`` runs the same experiments scaled to 2 CPU cores (each notebook's
header says how; results in ``results/cpu/``, figures in ``figures/``, which a full run
replaces); ``smoke`` runs tiny subsets for tests (everything under ``scratch/smoke/``).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from fer_utils.devices import resolve_device, seed_everything
from fer_utils.files import repo_root
from fer_utils.plots import set_theme

SMOKE_ENV = "FER_SMOKE"
PROFILE_ENV = "FER_PROFILE"
PROFILES = ("full", "cpu", "smoke")
#: Set by plans: notebooks write figures and result files under this folder instead,
#: so that a plan changes nothing in the repository.
SCRATCH_OUTPUTS: ContextVar[Path | None] = ContextVar("fer_utils_scratch_outputs", default=None)
#: Set by plans: told of each experiment a notebook declares it does not run in this profile, and why.
NOT_RUN: ContextVar[Callable[[str, str], None] | None] = ContextVar("fer_utils_not_run", default=None)
_SAME = object()


@dataclass(frozen=True)
class NotebookContext:
    """Settings of one notebook run. Smoke runs write under ``scratch/smoke``, never the report."""

    profile: str
    device: torch.device
    seed: int
    results_dir: Path
    figures_dir: Path
    scratch: Path | None = None

    def figure(self, name: str) -> Path:
        """Path of a PNG figure ``name`` (created folders; under ``scratch`` when set)."""
        folder = self.figures_dir if self.scratch is None else self.scratch / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (name if name.endswith(".png") else f"{name}.png")

    def result(self, name: str) -> Path:
        """Path of a results file or folder ``name`` (parent folder created; under ``scratch`` when set)."""
        path = (self.results_dir if self.scratch is None else self.scratch / "results") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def pick(self, full, smoke, cpu=_SAME):
        """The value for this profile (epochs, subset sizes...); ``cpu`` defaults to ``full``."""
        if self.profile == "smoke":
            return smoke
        return full if self.profile == "full" or cpu is _SAME else cpu

    def not_run(self, name: str, why: str) -> None:
        """Declare that this profile does not run experiment ``name`` of the full one, and why: printed
        here, and listed under ``--plan``'s cost table."""
        print(f"not run in the {self.profile} profile: {name} ({why})")
        tell_plan = NOT_RUN.get()
        if tell_plan is not None:
            tell_plan(name, why)


def resolve_profile(profile: str | None = None) -> str:
    """``profile``, else ``$FER_PROFILE``, else ``smoke`` when ``$FER_SMOKE=1``, else ``full``."""
    profile = profile or os.environ.get(PROFILE_ENV) or ("smoke" if os.environ.get(SMOKE_ENV) == "1" else "full")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return profile


def profile_dirs(profile: str, root: Path | None = None) -> tuple[Path, Path]:
    """The results and figures folders of ``profile`` under the repository ``root``."""
    root = root or repo_root()
    return {"full": (root / "results", root / "figures"),
            "cpu": (root / "results" / "cpu", root / "figures"),
            "smoke": (root / "scratch" / "smoke" / "results", root / "scratch" / "smoke" / "figures")}[profile]


def notebook_context(profile: str | None = None, device: str = "auto", seed: int = 0) -> NotebookContext:
    """Seed everything, set the figure theme and decide output folders (see :func:`resolve_profile`)."""
    profile = resolve_profile(profile)
    seed_everything(seed)
    set_theme()
    _show_figures_inline()
    warnings.formatwarning = _warning_without_path
    root = repo_root()
    ctx = NotebookContext(profile, resolve_device(device), seed, *profile_dirs(profile, root), SCRATCH_OUTPUTS.get())
    print(f"profile={profile} device={ctx.device} seed={seed} results -> {ctx.results_dir.relative_to(root)} "
          f"figures -> {ctx.figures_dir.relative_to(root)}")
    return ctx


def _warning_without_path(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                          line: str | None = None) -> str:
    """A warning as notebooks show it: its category and message, without this machine's file path."""
    return f"{category.__name__}: {message}\n"


def _ipython_shell():
    """The running IPython shell (inside Jupyter), or None (plain Python, or IPython not installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _show_figures_inline() -> None:
    """Inside Jupyter, render returned ``Figure`` objects as PNG whatever ``MPLBACKEND`` says.

    The plots are pyplot-free ``Figure`` objects; without this, a kernel started with
    ``MPLBACKEND=Agg`` (as ``make report`` does) would show ``<Figure size ...>`` instead of the plot.
    """
    shell = _ipython_shell()
    if shell is not None:
        from IPython.core.pylabtools import print_figure

        shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png", dpi=80))


def display(*objects: object) -> None:
    """Show ``objects``: IPython's rich display inside Jupyter, printed text elsewhere.

    Notebooks use this instead of ``IPython.display.display`` so that their code also runs as a
    plain script (``python -m fer_utils.report --engine script``) where IPython is not installed.
    """
    if _ipython_shell() is not None:
        from IPython.display import display as rich_display

        rich_display(*objects)
        return
    for obj in objects:
        print(obj.data if isinstance(obj, Styler) else obj)
