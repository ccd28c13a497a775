"""What travels to the GPU machine, and making it fit in the device tool's 64 MiB.

The device tool sends the working tree (tracked files present on disk, untracked files git does not
ignore) plus the carried paths, at most 64 MiB in all. The tracked files (about 20 MB: executed
notebooks, figures, committed checkpoints) plus the packed data in ``.devdata/`` (about 57 MB) are
over it. No GPU command reads the figures, the notebooks' outputs or those checkpoints, so:

    python scripts/device_tree.py size --carry .devdata   # what would travel; exit 2 when over 64 MiB
    python scripts/device_tree.py slim --carry .devdata   # before the device calls
    python scripts/device_tree.py restore                 # after them, before committing anything

``slim`` deletes the tracked figures, CPU checkpoints and shipped model (issue 11's ``ship`` writes a
new one there) from the working tree and clears the notebooks' outputs (their code stays: the report's
script engine reads it). It refuses when one of those files has uncommitted changes, and records the
commit it left; ``restore`` brings back from that commit every file still as ``slim`` left it, and
names any file changed since (left alone: a new shipped model, say). Hand-written: no library knows
the device tool's rule.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

LIMIT = 64 * 2**20
ROOT = Path(__file__).resolve().parents[1]
#: Tracked files no GPU command reads: deleted by ``slim`` (notebooks only lose their outputs).
DROPPED = ("figures/*.png", "results/cpu/*.pt", "results/best_model.pt")
STRIPPED = ("notebooks/*.ipynb",)


def git(*args: str, root: Path = ROOT) -> str:
    """Output of a git command run in ``root``."""
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def travelling(root: Path, carry: list[str]) -> dict[str, int]:
    """Bytes that would travel, per top-level folder (or file) of the working tree."""
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", root=root).split("\0")
    paths = [root / name for name in files if name and (root / name).is_file()]
    for name in carry:
        carried = root / name
        paths += [carried] if carried.is_file() else [p for p in carried.rglob("*") if p.is_file()]
    sizes: dict[str, int] = {}
    for path in set(paths):
        top = path.relative_to(root).parts[0]
        sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sizes


def report_size(root: Path, carry: list[str]) -> bool:
    """Print what would travel, largest first; True when it fits."""
    sizes = travelling(root, carry)
    total = sum(sizes.values())
    for top, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]:
        print(f"{size / 2**20:8.2f} MiB  {top}")
    fits = total <= LIMIT
    print(f"{total / 2**20:8.2f} MiB  in all, carry {carry or 'nothing'}: "
          f"{'fits' if fits else 'OVER'} the device's {LIMIT / 2**20:.0f} MiB")
    return fits


def state_file(root: Path) -> Path:
    """Where ``slim`` records what it did (inside .git, so it never travels or gets committed)."""
    return root / git("rev-parse", "--git-path", "device-slim.json", root=root).strip()


def digest(path: Path) -> str | None:
    """sha256 of a file, None when it is absent."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def strip_outputs(path: Path) -> None:
    """Clear a notebook's outputs and execution counts, keeping its cells."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def slim(root: Path) -> list[str]:
    """Drop or strip the files no GPU command reads; exits 2 when one has uncommitted changes."""
    if state_file(root).exists():
        sys.exit(f"{state_file(root)}: already slimmed; run `restore` first")
    dropped, stripped = (git("ls-files", "-z", "--", *patterns, root=root).split("\0")[:-1]
                         for patterns in (DROPPED, STRIPPED))
    names = dropped + stripped
    changed = git("status", "--porcelain", "--", *names, root=root).strip() if names else ""  # none: whole tree
    if changed:
        print(f"slim: uncommitted changes, commit or stash them first:\n{changed}", file=sys.stderr)
        sys.exit(2)
    for name in dropped:
        (root / name).unlink()
    for name in stripped:
        strip_outputs(root / name)
    state = {"commit": git("rev-parse", "HEAD", root=root).strip(),
             "files": {name: digest(root / name) for name in names}}
    state_file(root).write_text(json.dumps(state, indent=1) + "\n")
    print(f"slim: {len(dropped)} files deleted, {len(stripped)} notebooks stripped of outputs; "
          "do not commit before `restore`")
    return names


def restore(root: Path) -> list[str]:
    """Bring back from the recorded commit every file ``slim`` changed that is still as it left it."""
    path = state_file(root)
    if not path.exists():
        sys.exit("restore: nothing to restore (no slim recorded)")
    state = json.loads(path.read_text())
    untouched = [name for name, sha in state["files"].items() if digest(root / name) == sha]
    touched = sorted(set(state["files"]) - set(untouched))
    if untouched:
        git("checkout", state["commit"], "--", *untouched, root=root)
    path.unlink()
    print(f"restore: {len(untouched)} files restored from {state['commit'][:8]}")
    for name in touched:
        print(f"restore: {name} changed since slim, left as it is", file=sys.stderr)
    return untouched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["size", "slim", "restore"])
    parser.add_argument("--carry", nargs="*", default=[], help="ignored paths the device calls will carry")
    args = parser.parse_args(argv)
    if args.action == "slim":
        slim(ROOT)
    elif args.action == "restore":
        restore(ROOT)
        return 0
    return 0 if report_size(ROOT, args.carry) else 2


if __name__ == "__main__":
    sys.exit(main())
