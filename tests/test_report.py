"""`make report`: refuses clearly without data; README results block refresh; the script engine."""
import json
import re
import os
import sys
import traceback

import pytest

from fer_utils.report import runner as report
from fer_utils.report.script import NO_EXPERIMENTS_TAG


def test_report_refuses_without_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path))
    assert report.main(["--smoke", "1"]) == 2
    err = capsys.readouterr().err
    assert "make report needs the datasets" in err and "FER2013" in err and "CK+48" in err


def test_relative_data_dir_is_resolved_before_notebooks_change_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FER_DATA_DIR", "devdata")
    assert report.main(["--smoke", "1", "--engine", "script"]) == 2
    assert os.environ["FER_DATA_DIR"] == str(tmp_path / "devdata")
    assert str(tmp_path / "devdata") in capsys.readouterr().err


def test_update_readme_replaces_only_the_results_block(tmp_path):
    readme, table = tmp_path / "README.md", tmp_path / "comparison.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\nrest\n")
    assert not report.update_readme(readme, table)  # no table yet
    table.write_text("| model | accuracy |\n|---|---|\n| vgg | 72.9 |\n")
    assert report.update_readme(readme, table)
    text = readme.read_text()
    assert "old" not in text and "| vgg | 72.9 |" in text and text.startswith("intro") and text.endswith("rest\n")


def _notebook(path, *sources, tags=None):
    cells = [{"cell_type": "code", "metadata": {"tags": tags or []} if i == 0 else {}, "source": src,
              "outputs": [], "execution_count": None} for i, src in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_script_engine_injects_parameters_and_needs_no_ipython(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "IPython", None)  # importing IPython now fails, as on a bare GPU image
    nb = _notebook(tmp_path / "01_demo.ipynb", "smoke = None\ndevice = 'auto'",
                   "import os, pandas as pd\nfrom fer_utils.report.notebook import display\n"
                   "display(pd.DataFrame({'accuracy': [0.5]}).style.format('{:.1%}'))\nprint('cwd', os.getcwd())",
                   "print('smoke is', smoke, device)", tags=["parameters"])
    report.run_as_script(nb, {"smoke": True, "device": "cpu"})
    out = capsys.readouterr().out
    assert "accuracy" in out and "0.5" in out and f"cwd {tmp_path}" in out and "smoke is True cpu" in out


def test_script_engine_error_names_the_notebook_cell(tmp_path):
    nb = _notebook(tmp_path / "02_bad.ipynb", "x = 1", "y = x / 0")
    with pytest.raises(ZeroDivisionError) as err:
        report.run_as_script(nb, {})
    assert any(frame.filename == "02_bad.ipynb, cell 2" for frame in traceback.extract_tb(err.value.__traceback__))


def test_with_on_error_a_failing_cell_is_handed_on_unless_tagged_no_experiments(tmp_path):
    nb = _notebook(tmp_path / "03_plan.ipynb", "x = 1", "y = x / 0", "z = undefined_name", "w = x + 1")
    cells = json.loads(nb.read_text())
    cells["cells"][2]["metadata"] = {"tags": [NO_EXPERIMENTS_TAG]}  # the NameError cell declares no requests
    nb.write_text(json.dumps(cells))
    failed = []
    report.run_as_script(nb, {}, on_error=lambda number, exc: failed.append((number, type(exc).__name__)))
    assert failed == [(2, "ZeroDivisionError")]


def test_notebooks_run_without_ipython_imports():
    for nb in sorted((report.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        sources = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
        assert "IPython" not in sources, f"{nb.name} imports IPython: use fer_utils.report.notebook.display"


def test_committed_notebooks_carry_no_injected_parameters():
    """A papermill ``injected-parameters`` cell (``smoke = False``) would make nbval run a notebook in full mode."""
    for nb in sorted((report.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        tags = [tag for c in json.loads(nb.read_text())["cells"] for tag in c.get("metadata", {}).get("tags", [])]
        assert report.INJECTED_TAG not in tags, f"{nb.name}: remove its {report.INJECTED_TAG} cell"


def test_tidy_keeps_every_other_cell_and_writes_relative_paths(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nb = _notebook(tmp_path / "notebooks" / "03_demo.ipynb", "smoke = None", "x = 1", tags=["parameters"])
    cells = json.loads(nb.read_text())["cells"]
    injected = {**cells[1], "id": "inj", "metadata": {"tags": [report.INJECTED_TAG]}, "source": "smoke = False"}
    cells = [{**c, "id": f"c{i}"} for i, c in enumerate(cells)]
    papermill = {"input_path": str(nb), "output_path": str(nb), "parameters": {}}
    nb.write_text(json.dumps({"cells": [cells[0], injected, cells[1]], "metadata": {"papermill": papermill},
                              "nbformat": 4, "nbformat_minor": 5}))
    assert report.tidy_executed_notebook(nb, tmp_path) == 1
    tidy = json.loads(nb.read_text())
    assert ["".join(c["source"]) for c in tidy["cells"]] == ["smoke = None", "x = 1"]
    assert tidy["metadata"]["papermill"]["input_path"] == tidy["metadata"]["papermill"]["output_path"] == \
        "notebooks/03_demo.ipynb"
    assert report.tidy_executed_notebook(nb, tmp_path) == 0


def test_committed_notebooks_hold_no_machine_paths_in_papermill_metadata():
    for nb in sorted((report.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        record = json.loads(nb.read_text())["metadata"].get("papermill", {})
        assert not any(str(record.get(k, "")).startswith("/") for k in ("input_path", "output_path")), nb.name


def test_profiles_pick_values_and_output_folders(monkeypatch):
    from fer_utils.report.notebook import notebook_context, resolve_profile

    monkeypatch.delenv("FER_PROFILE", raising=False)
    monkeypatch.setenv("FER_SMOKE", "1")
    assert resolve_profile() == "smoke" and resolve_profile("cpu") == "cpu"
    monkeypatch.setenv("FER_PROFILE", "cpu")
    assert resolve_profile() == "cpu"
    with pytest.raises(ValueError, match="profile must be one of"):
        resolve_profile("gpu")
    root = report.repo_root()
    for profile, results, figures, picked in (("full", "results", "figures", 60), ("cpu", "results/cpu", "figures", 8),
                                              ("smoke", "scratch/smoke/results", "scratch/smoke/figures", 1)):
        ctx = notebook_context(profile, "cpu")
        assert (ctx.results_dir, ctx.figures_dir) == (root / results, root / figures)
        assert ctx.pick(60, 1, cpu=8) == picked and ctx.pick(60, 1) == (1 if profile == "smoke" else 60)
        assert ctx.smoke == (profile == "smoke")


def test_every_committed_figure_is_made_by_a_notebook():
    root = report.repo_root()
    code = "".join("".join(cell["source"]) for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                   for cell in json.loads(nb.read_text())["cells"] if cell["cell_type"] == "code")
    made = set(re.findall(r'\.figure\("([^"]+)"', code))
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):  # named by the notebook that makes them
        own = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert all(name.startswith(nb.name[:3]) for name in re.findall(r'\.figure\("([^"]+)"', own)), nb.name
    assert {"03_augmented_samples", "07_lr_find", "09_gradcam", "09_reliability", "08_families"} <= made
    scripts = "".join(p.read_text() for p in sorted((root / "scripts").glob("*.py")))
    by_scripts = set(re.findall(r'figures / "([^"/]+)\.png"', scripts))  # e.g. scripts/cpu_training_figures.py
    assert {"cpu_accuracy_vs_hours", "cpu_shipped_history"} <= by_scripts
    stray = sorted(p.name for p in (root / "figures").glob("*.png") if p.stem not in made | by_scripts)
    assert not stray, f"figures no notebook or script writes (make them in one or delete them): {stray}"


def test_every_figure_an_executed_cell_saves_is_shown_in_it():
    """A rendered cell shows at least as many images as it saves figures (a cell not yet executed is left alone)."""
    for nb in sorted((report.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for number, cell in enumerate(json.loads(nb.read_text())["cells"], start=1):
            if cell["cell_type"] != "code" or cell.get("execution_count") is None:
                continue
            saved = re.findall(r'\.figure\("([^"]+)"', "".join(cell["source"]))
            shown = sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
            assert shown >= len(saved), f"{nb.name}, cell {number}: saves {saved} but shows {shown} image(s)"


def test_notebook_warnings_carry_no_machine_path(monkeypatch):
    import warnings

    from fer_utils.report.notebook import notebook_context

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    notebook_context("smoke", "cpu")
    text = warnings.formatwarning("PrivateTest is not in this file", UserWarning, "/home/me/fer_utils/runs.py", 80)
    assert text == "UserWarning: PrivateTest is not in this file\n"


def test_tables_name_run_folders_relative_to_the_repository(tmp_path):
    from fer_utils.files import repository_relative

    root = report.repo_root()
    assert repository_relative(root / "results" / "cpu" / "vgg_small-aug-1a2b3c4d") == "results/cpu/vgg_small-aug-1a2b3c4d"
    assert repository_relative(tmp_path / "run") == str(tmp_path / "run")  # outside any repository: as given


#: An absolute path of some machine ("/work/...", "/home/me/..."), not a URL's path or a relative one.
MACHINE_PATH = re.compile(r"(?<![\w.~:/])/(?:work|root|home|tmp|Users|mnt|opt|var)/")


def test_no_machine_path_in_committed_results_notebooks_or_readme():
    """Tables, metrics and executed notebooks name files relative to the repository, never as one machine saw them."""
    root = report.repo_root()
    files = [*(root / "results").rglob("*"), *(root / "notebooks").glob("*.ipynb"), root / "README.md"]
    found = []
    for path in files:
        if not path.is_file() or path.suffix not in {".json", ".csv", ".md", ".ipynb", ".txt"}:
            continue
        text = path.read_text(errors="replace")
        found += [f"{path.relative_to(root)}: ...{text[max(0, m.start() - 40):m.end() + 30]}..."
                  for m in MACHINE_PATH.finditer(text)]
    assert not found, "\n".join(found[:10])
