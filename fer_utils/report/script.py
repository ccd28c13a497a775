"""The notebooks as plain Python: which ones, their parameters, and their code cells executed in order.

No Jupyter, papermill or IPython: what ``--engine script`` and ``--plan`` use.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

#: Notebooks that train nothing GPU-sized: the cpu profile runs them at their full settings.
CPU_RUNS_FULL = ("01", "02")
#: The tag of a code cell that requests no experiment (a figure or a print of results): with ``on_error``
#: (the plan), its failure on a stand-in result is passed over, since no request can be lost with it.
NO_EXPERIMENTS_TAG = "no-experiments"


def notebook_paths(root: Path, only: str = "") -> list[Path]:
    """``notebooks/NN_*.ipynb`` under ``root`` in order; ``only``: comma-separated number prefixes."""
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [n for n in notebooks if n.name[:2] in only.split(",")] if only else notebooks


def check_notebooks(root: Path, only: str = "") -> None:
    """``ValueError`` naming the numbers of ``only`` that match no notebook, or a notebook that is not one."""
    numbers = {nb.name[:2] for nb in notebook_paths(root)}
    unknown = [n for n in only.split(",") if n and n not in numbers] if only else []
    if unknown:
        raise ValueError(f"--only {only}: no notebook numbered {', '.join(unknown)}; "
                         f"there are {', '.join(sorted(numbers))}")
    for notebook in notebook_paths(root, only):
        notebook_cells(notebook)


def notebook_parameters(notebook: Path, profile: str, device: str) -> dict[str, object]:
    """The parameters a report run injects into ``notebook``: its profile and device."""
    return {"profile": "full" if profile == "cpu" and notebook.name[:2] in CPU_RUNS_FULL else profile,
            "device": device}


def notebook_cells(notebook: Path) -> list[dict]:
    """The cells of ``notebook``; ``ValueError`` naming it and the place when it is not a notebook's JSON."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
        if not all(isinstance(cell, dict) and "cell_type" in cell and "source" in cell for cell in cells):
            raise TypeError("a cell without cell_type or source")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{notebook}: not a Jupyter notebook ({type(err).__name__}: {err})") from None
    return cells


def run_as_script(notebook: Path, parameters: dict[str, object],
                  on_error: Callable[[int, Exception], None] | None = None) -> None:
    """Execute ``notebook``'s code cells in order in one namespace, from its folder.

    ``parameters`` are assigned after the cell tagged ``parameters``, as papermill injects them.
    Output is printed, not stored. A failing cell's traceback names the notebook and cell number;
    with ``on_error`` the error is handed to it (with the cell number) and the next cell runs, or
    passed over where the cell is tagged :data:`NO_EXPERIMENTS_TAG`.
    """
    cells = notebook_cells(notebook)
    namespace: dict[str, object] = {"__name__": "__main__"}
    previous = Path.cwd()
    os.chdir(notebook.parent)
    try:
        for number, cell in enumerate(cells, start=1):
            if cell["cell_type"] != "code":
                continue
            tags = cell.get("metadata", {}).get("tags", [])
            try:
                exec(compile("".join(cell["source"]), f"{notebook.name}, cell {number}", "exec"), namespace)
            except Exception as exc:
                if on_error is None:
                    raise
                if NO_EXPERIMENTS_TAG not in tags:
                    on_error(number, exc)
            if "parameters" in tags:
                namespace.update(parameters)
    finally:
        os.chdir(previous)
