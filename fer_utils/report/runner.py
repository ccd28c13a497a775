"""``make report``: run every numbered notebook in order with papermill.

The ``full`` and ``cpu`` profiles execute ``notebooks/NN_*.ipynb`` in place (outputs kept, to
be committed) and refresh the README results table from the profile's ``comparison.md``
(``results/`` or ``results/cpu/``). The ``smoke`` profile runs the same pipeline on tiny
subsets and writes executed copies under ``scratch/smoke/`` only.

``--engine script`` runs the notebooks' code cells as a plain Python script instead, with no
Jupyter, papermill or IPython: the way to train on a machine that has only PyTorch and the
scientific stack. Its results land in ``results/`` (experiments are cached by config), so a
later papermill run anywhere renders the notebooks without training again. ``--plan``: see
:mod:`fer_utils.report.plan`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from pathlib import Path

from fer_utils.errors import DatasetError
from fer_utils.data import load_dataset
from fer_utils.data.fer2013 import find_fer2013_file
from fer_utils.data.paths import CACHE_DIR_ENV, DATA_DIR_ENV
from fer_utils.report.notebook import PROFILES, profile_dirs, repo_root
from fer_utils.report.plan import add_plan_arguments, plan_command
from fer_utils.report.script import check_notebooks, notebook_parameters, notebook_paths, run_as_script

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
INJECTED_TAG = "injected-parameters"


def check_datasets() -> list[str]:
    """Problems that stop the report (missing or bad FER2013 / CK+48), each with how to fix it."""
    problems = []
    try:
        find_fer2013_file()  # raises FileNotFoundError itself when $FER_DATA_DIR is unset
    except (FileNotFoundError, DatasetError) as exc:
        problems.append(str(exc))
    try:
        load_dataset("ckplus48")
    except (FileNotFoundError, DatasetError) as exc:
        problems.append(str(exc))
    return problems


def prepare_environment() -> None:
    """Set up before any notebook runs. Notebooks run from ``notebooks/``, so relative
    ``$FER_DATA_DIR``/``$FER_CACHE_DIR`` are resolved first. Kernels also start with ``GLOG_minloglevel=2``: MediaPipe's C++ logs (absl warnings, LiteRT's
    XNNPACK line) read it at process start only, so a notebook cannot set it itself."""
    for name in (DATA_DIR_ENV, CACHE_DIR_ENV):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())
    os.environ.setdefault("GLOG_minloglevel", "2")


def update_readme(readme: Path, table: Path) -> bool:
    """Replace the README block between the results markers by ``table``'s text."""
    if not table.is_file():
        return False
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(f"{README_START}\n{table.read_text().strip()}\n{README_END}", text))
    return True


def tidy_executed_notebook(notebook: Path, root: Path) -> int:
    """Remove papermill's ``injected-parameters`` cells from ``notebook`` in place, and write the paths
    papermill records in its metadata relative to ``root`` (no machine paths in committed notebooks);
    returns how many cells were removed.

    A committed notebook carrying an injected cell (``smoke = False``) would run in full mode under nbval.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    kept = [cell for cell in nb.cells if INJECTED_TAG not in cell.metadata.get("tags", [])]
    removed = len(nb.cells) - len(kept)
    nb.cells = kept
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if record.get(key) and Path(record[key]).is_relative_to(root):
            record[key] = Path(record[key]).relative_to(root).as_posix()
    nbformat.write(nb, notebook)
    return removed


def _run_with_papermill(notebook: Path, out: Path, parameters: dict[str, object], root: Path) -> None:
    """Execute ``notebook`` into ``out`` with papermill, then tidy it (:func:`tidy_executed_notebook`)."""
    import papermill

    papermill.execute_notebook(str(notebook), str(out), cwd=str(notebook.parent), kernel_name="python3",
                               parameters=parameters, progress_bar=False)
    tidy_executed_notebook(out, root)


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks; exit status 2 when datasets are missing, 1 when a notebook fails."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default="full",
                        help="full: the published settings; cpu: scaled to 2 CPU cores; smoke: tiny subsets (tests)")
    parser.add_argument("--smoke", type=int, choices=(0, 1), default=0, help="1: same as --profile smoke")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default="", help="comma-separated notebook number prefixes, e.g. 03,08")
    parser.add_argument("--engine", choices=("papermill", "script"), default="papermill",
                        help="script: run the code cells without Jupyter (GPU machines); nothing is rendered")
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    profile = "smoke" if args.smoke else args.profile
    prepare_environment()
    problems = check_datasets()
    if problems:
        print("make report needs the datasets:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    root = repo_root()
    try:
        check_notebooks(root, args.only)
    except ValueError as err:
        parser.error(str(err))
    if args.plan:
        return plan_command(args, profile, root)
    notebooks = notebook_paths(root, args.only)
    out_dir = root / "scratch" / "smoke" / "notebooks" if profile == "smoke" else root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        start = time.perf_counter()
        parameters = notebook_parameters(nb, profile, args.device)
        print(f"== {nb.name} (profile {parameters['profile']}, device {args.device}, {args.engine})", flush=True)
        try:
            if args.engine == "script":
                run_as_script(nb, parameters)
            else:
                _run_with_papermill(nb, out_dir / nb.name, parameters, root)
        except Exception as exc:  # papermill's or the notebook's own error: report it and stop
            if args.engine == "script":
                traceback.print_exc()
            print(f"{nb.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"   done in {time.perf_counter() - start:.0f} s", flush=True)
    table = profile_dirs(profile, root)[0] / "comparison.md"
    if args.engine == "papermill" and profile != "smoke" and update_readme(root / "README.md", table):
        print(f"README results table updated from {table.relative_to(root)}")
    return 0

