"""Shared fixtures: the real datasets (when FER_DATA_DIR is set) and small CPU settings."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_dir() -> Path | None:
    root = os.environ.get("FER_DATA_DIR")
    return Path(root) if root else None


def _needs_data(item: pytest.Item) -> bool:
    """Notebooks read the datasets; a test does when it uses ``data_dir`` (directly or through a fixture)."""
    return item.path.suffix == ".ipynb" or "data_dir" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the datasets, leave out the real-data tests and the notebooks: pytest counts them as
    deselected, and one line at the end says why (no per-test skip lines)."""
    root = _data_dir()
    if root is not None and root.is_dir():
        return
    left_out = [item for item in items if _needs_data(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _needs_data(item)]
        config.stash[_SKIPPED_FOR_DATA] = len(left_out)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED_FOR_DATA, 0)
    if skipped:
        terminalreporter.write_line(f"FER_DATA_DIR is not set: {skipped} real-data tests and notebooks skipped "
                                    "(counted as deselected; export FER_DATA_DIR=/path/to/datasets to run them)")


_SKIPPED_FOR_DATA = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$FER_DATA_DIR``; tests needing real data skip (with the reason) when unset."""
    root = _data_dir()
    if root is None or not root.is_dir():
        pytest.skip("FER_DATA_DIR is not set to the datasets folder")
    return root


@pytest.fixture(scope="session")
def fer2013(data_dir):
    """The real FER2013 CSV as a FaceData (all splits present in the file)."""
    from fer_utils.data import load_dataset

    return load_dataset("fer2013", data_dir)


@pytest.fixture(scope="session")
def ckplus48_frames(data_dir):
    """The real CK+48 frames (981) with subject/sequence metadata."""
    from fer_utils.data import load_dataset

    return load_dataset("ckplus48", data_dir)


@pytest.fixture(scope="session")
def ckplus48_clips(ckplus48_frames):
    """The real CK+48 as 327 three-frame clips."""
    from fer_utils.data import make_clips

    return make_clips(ckplus48_frames, length=3)
