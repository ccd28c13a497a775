"""The GPU notebooks' code runs as a script with Jupyter and facenet-pytorch imports blocked, as on
the GPU image (``python -m fer_utils.report --engine script --smoke 1``, in a subprocess).

Notebooks 03 (FER2013 training: ``run_experiment``, cache, checkpoints, plots) and 08 (CK+48
cross-validation of the spatio-temporal families, initialised from a FER2013 checkpoint) cover
the training path in about 3 CPU-minutes. Skipped on purpose: 02 (MTCNN face detection) and
06 (O-Net features) truly need facenet-pytorch, which a GPU run carries as a wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("03", "08")
#: Modules absent from the GPU image: importing one (or a submodule) raises ModuleNotFoundError.
BLOCKED = ("IPython", "papermill", "nbformat", "nbclient", "ipykernel", "facenet_pytorch")
BLOCKER = f'''"""Put first on PYTHONPATH: imports of {BLOCKED} and jupyter* fail, as on the GPU image."""
import sys
from importlib.abc import MetaPathFinder


class _Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in {BLOCKED!r} or top.startswith("jupyter"):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not on the GPU image)", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
'''


def blocked_env(tmp_path: Path, repo: Path) -> dict[str, str]:
    """The environment of a subprocess whose ``sitecustomize`` blocks :data:`BLOCKED`, importing ``repo``."""
    site = tmp_path / "blocked_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join((str(site), str(repo))), "MPLBACKEND": "Agg",
            "FER_SMOKE": "1"}


def copy_repo(tmp_path: Path) -> Path:
    """The package and the chosen notebooks in a fresh tree: smoke outputs land in its ``scratch/``,
    so nothing is found cached from an earlier run and the repository stays untouched."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "fer_utils", repo / "fer_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    (repo / "notebooks").mkdir()
    for number in NOTEBOOKS:
        (notebook,) = (REPO / "notebooks").glob(f"{number}_*.ipynb")
        shutil.copy2(notebook, repo / "notebooks" / notebook.name)
    return repo


def test_blocker_blocks(tmp_path):
    env = blocked_env(tmp_path, REPO)
    probe = """import importlib
for name in ("IPython.display", "papermill", "jupyter_client", "facenet_pytorch"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        print("blocked", name)
"""
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.count("blocked") == 4, out


@pytest.mark.slow
def test_training_notebooks_run_as_scripts_without_jupyter_or_facenet(tmp_path, data_dir):
    repo = copy_repo(tmp_path)
    cmd = [sys.executable, "-m", "fer_utils.report", "--engine", "script", "--smoke", "1", "--device", "cpu",
           "--only", ",".join(NOTEBOOKS)]
    done = subprocess.run(cmd, cwd=repo, env=blocked_env(tmp_path, repo), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.count("done in") == len(NOTEBOOKS), done.stdout[-2000:]
    assert any((repo / "scratch" / "smoke" / "results").iterdir())  # trained, not found cached
