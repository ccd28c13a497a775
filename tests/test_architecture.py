"""The one-way flow of ``fer_utils``, checked on its import graph.

Every ``import`` in the package counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import still couples two modules.

Rule: a module imports only modules of its own stage or of earlier stages in :data:`FLOW`,
and the module graph has no cycle. Command modules (``python -m fer_utils COMMAND``) obey the
same rule: each lives in the earliest stage that holds all it runs (``train`` trains and then
tests, so it lives in ``experiments``), and ``cli.py`` names them as strings, importing one only
when its command runs.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from fer_utils.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "fer_utils"

#: The flow, earliest first. ``base``: the shared leaves (labels, devices, files, arguments, errors); ``entry``:
#: the command dispatcher and benchmarks. Everything else is the package of that name.
FLOW = ("base", "data", "faces", "models", "train", "evaluate", "plots", "predict", "experiments", "report", "entry")
BASE_MODULES = {"labels", "devices", "files", "arguments", "errors"}
ENTRY_MODULES = {"", "__main__", "cli", "bench"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> str:
    top = module.split(".")[1] if "." in module else ""
    if top in BASE_MODULES:
        return "base"
    if top in ENTRY_MODULES:
        return "entry"
    assert top in FLOW, f"{module}: package {top!r} has no place in FLOW"
    return top


def import_graph() -> dict[str, set[str]]:
    """``module -> fer_utils modules it imports`` (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names)
        graph[name] = {t for t in targets if t.split(".")[0] == "fer_utils" and t != name}
        unknown = graph[name] - paths.keys()
        assert not unknown, f"{name} imports unknown fer_utils modules {sorted(unknown)}"
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_no_module_imports_a_later_stage():
    backward = [
        f"{src} ({stage(src)}) -> {dst} ({stage(dst)})"
        for src, targets in sorted(import_graph().items()) for dst in sorted(targets)
        if FLOW.index(stage(dst)) > FLOW.index(stage(src))
    ]
    assert not backward, "imports against the flow:\n" + "\n".join(backward)


def test_predict_loads_no_training_code():
    graph = import_graph()
    seen, todo = set(), [m for m in graph if stage(m) == "predict"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    assert not {m for m in seen if stage(m) in ("train", "experiments")}


def test_the_checks_catch_a_cycle_and_a_backward_edge():
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(cyclic) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert FLOW.index(stage("fer_utils.train.engine")) > FLOW.index(stage("fer_utils.models.checkpoints"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_module_exists(command):
    module = COMMANDS[command][0]
    assert importlib.util.find_spec(module) is not None, module
    assert stage(module) in FLOW


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{path.relative_to(PACKAGE)}:{node.name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_functions_stay_short():
    """Readable code: no function over 80 lines (signature and docstring included), ``fit`` at most 60."""
    lengths = _function_lengths()
    assert {name: n for name, n in lengths.items() if n > 80} == {}
    assert lengths["train/engine.py:fit"] <= 60


def test_every_expected_error_is_a_fer_error():
    """The CLI's one-line exit-2 path catches ``FerError``: every error class of the package derives from it."""
    import fer_utils.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) >= 10 and all(issubclass(c, errors.FerError) for c in classes)
    defined_elsewhere = [f"{path.name}: {node.name}" for path in PACKAGE.rglob("*.py") if path.name != "errors.py"
                         for node in ast.walk(ast.parse(path.read_text()))
                         if isinstance(node, ast.ClassDef) and node.name.endswith("Error")]
    assert defined_elsewhere == []
    assert issubclass(errors.UnknownNameError, KeyError) and issubclass(errors.MissingDatasetError, FileNotFoundError)
