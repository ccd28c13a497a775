"""``python -m fer_utils pack-data OUT``: a compact copy of the datasets to carry to a GPU machine.

FER2013 is written as the packed ``fer2013/fer2013.npz.xz`` (:mod:`fer_utils.data.packed`);
the other datasets' folders are copied as they are. Point ``FER_DATA_DIR`` at ``OUT`` there.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fer_utils.arguments import add_errors_argument
from fer_utils.errors import DatasetError
from fer_utils.data.fer2013 import load_fer2013
from fer_utils.data.packed import PACKED_NAME, pack_fer2013
from fer_utils.data.paths import data_root


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pack-data``."""
    parser.add_argument("out", help="folder to write (used as FER_DATA_DIR on the other machine)")
    parser.add_argument("--data-dir", help="datasets folder (default $FER_DATA_DIR)")
    parser.add_argument("--datasets", default="fer2013,ckplus48",
                        help="comma-separated folders of the datasets folder (default fer2013,ckplus48)")
    add_errors_argument(parser)


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def run(args: argparse.Namespace) -> int:
    """Pack each dataset into ``args.out``; a missing or bad dataset raises (the CLI exits 2)."""
    out = Path(args.out)
    root = data_root(args.data_dir)
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        if name == "fer2013":
            target = pack_fer2013(load_fer2013(root, errors=args.errors), out / "fer2013" / PACKED_NAME)
        else:
            if not (root / name).is_dir():
                raise DatasetError(f"{root / name}: no such dataset folder")
            target = out / name
            shutil.copytree(root / name, target, dirs_exist_ok=True)
        print(f"{name}: {target} ({_size_mb(target):.1f} MB)")
    return 0
