"""scripts/device_tree.py: what travels to the GPU machine, and slim / restore leaving the tree as it was."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import load_script

#: Size of .devdata/ (57,297,562 bytes) from `python -m fer_utils pack-data .devdata` (FER2013 + CK+48).
PACKED_DATA_BYTES = 57_300_000


@pytest.fixture(scope="module")
def device_tree():
    return load_script("device_tree")


def commit_all(root: Path) -> None:
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True)


@pytest.fixture
def repo(tmp_path):
    """A small repository shaped like ours: figures, a CPU checkpoint, an executed notebook, ignored data."""
    files = {"figures/a.png": b"p" * 1000, "results/cpu/run/best.pt": b"w" * 2000,
             "results/best_model.pt": b"m" * 300, "fer_utils/x.py": b"x = 1\n", ".gitignore": b"/.devdata/\n"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "execution_count": 3,
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n" * 500}]},
                          {"cell_type": "markdown", "source": "# t", "metadata": {}}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks/01.ipynb").write_text(json.dumps(notebook))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit_all(tmp_path)
    (tmp_path / ".devdata").mkdir()
    (tmp_path / ".devdata/data.bin").write_bytes(b"d" * 5000)
    (tmp_path / "untracked.txt").write_bytes(b"u" * 7)
    return tmp_path


def test_size_counts_tracked_untracked_and_carried_not_ignored(device_tree, repo):
    sizes = device_tree.travelling(repo, [])
    assert sizes["figures"] == 1000 and sizes["results"] == 2300 and sizes["untracked.txt"] == 7
    assert ".devdata" not in sizes
    assert device_tree.travelling(repo, [".devdata"])[".devdata"] == 5000


def test_slim_then_restore_gives_the_committed_tree_back(device_tree, repo):
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    device_tree.slim(repo)
    assert not (repo / "figures/a.png").exists() and not (repo / "results/cpu/run/best.pt").exists()
    assert not (repo / "results/best_model.pt").exists() and (repo / "fer_utils/x.py").exists()
    cell = json.loads((repo / "notebooks/01.ipynb").read_text())["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None and cell["source"] == "print(1)"
    assert sum(device_tree.travelling(repo, []).values()) < sum(len(b) for b in before.values()) - 3300
    with pytest.raises(SystemExit, match="already slimmed"):
        device_tree.slim(repo)
    device_tree.restore(repo)
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout == ""


def test_restore_leaves_a_file_changed_since_slim(device_tree, repo, capsys):
    device_tree.slim(repo)
    (repo / "figures/a.png").write_bytes(b"new figure from the GPU run")
    restored = device_tree.restore(repo)
    assert "figures/a.png" not in restored and "notebooks/01.ipynb" in restored
    assert (repo / "figures/a.png").read_bytes() == b"new figure from the GPU run"
    assert "figures/a.png changed since slim" in capsys.readouterr().err


def test_slim_refuses_uncommitted_changes(device_tree, repo, capsys):
    (repo / "figures/a.png").write_bytes(b"edited")
    with pytest.raises(SystemExit) as stop:
        device_tree.slim(repo)
    assert stop.value.code == 2 and "figures/a.png" in capsys.readouterr().err
    assert (repo / "figures/a.png").read_bytes() == b"edited"
    assert not device_tree.state_file(repo).exists()


def test_this_repository_slimmed_leaves_room_for_the_packed_data(device_tree, tmp_path):
    """Fails when the repository outgrows what a device call can take along with .devdata/."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(device_tree.ROOT), str(clone)], check=True)
    device_tree.slim(clone)
    assert sum(device_tree.travelling(clone, []).values()) + PACKED_DATA_BYTES <= device_tree.LIMIT
