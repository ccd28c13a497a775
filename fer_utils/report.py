"""``make report``: run every numbered notebook in order with papermill.

Full mode executes ``notebooks/NN_*.ipynb`` in place (outputs kept, to be committed) and
refreshes the README results table from ``results/comparison.md``. Smoke mode runs the same
pipeline on tiny subsets and writes executed copies under ``scratch/smoke/`` only.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from fer_utils.data import MissingDatasetError, data_root, load_dataset
from fer_utils.data.fer2013 import find_fer2013_csv
from fer_utils.notebook import repo_root

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def check_datasets() -> list[str]:
    """Problems that stop the report (missing FER2013 / CK+48), each with how to fix it."""
    problems = []
    try:
        data_root()
        find_fer2013_csv()
    except (FileNotFoundError, MissingDatasetError) as exc:
        problems.append(str(exc))
    try:
        load_dataset("ckplus48")
    except (FileNotFoundError, MissingDatasetError) as exc:
        problems.append(str(exc))
    return problems


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


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks; exit status 2 when datasets are missing, 1 when a notebook fails."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils.report", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", type=int, default=0, help="1: tiny subsets, outputs under scratch/smoke")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default="", help="comma-separated notebook number prefixes, e.g. 03,08")
    args = parser.parse_args(argv)
    problems = check_datasets()
    if problems:
        print("make report needs the datasets:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    import papermill

    root = repo_root()
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [n for n in notebooks if n.name[:2] in args.only.split(",")]
    out_dir = root / "scratch" / "smoke" / "notebooks" if args.smoke else root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        start = time.perf_counter()
        print(f"== {nb.name} ({'smoke' if args.smoke else 'full'}, device {args.device})", flush=True)
        try:
            papermill.execute_notebook(
                str(nb), str(out_dir / nb.name), cwd=str(nb.parent), kernel_name="python3",
                parameters={"smoke": bool(args.smoke), "device": args.device}, progress_bar=False,
            )
        except papermill.PapermillExecutionError as exc:
            print(f"{nb.name} failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
            return 1
        print(f"   done in {time.perf_counter() - start:.0f} s", flush=True)
    if not args.smoke and update_readme(root / "README.md", root / "results" / "comparison.md"):
        print("README results table updated from results/comparison.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
