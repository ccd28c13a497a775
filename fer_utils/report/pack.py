"""Bring results back from a GPU machine in at most :data:`MAX_PARTS` files of :data:`PART_BYTES` each,
:data:`TOTAL_BYTES` in all (less when several packs share one command's return).

``pack`` writes the given files (paths relative to the repository root) as one gzipped tar cut
into ``results.tar.gz.part<i>`` files; when they would not fit, the largest files are left out
(checkpoints first, being the largest) and named in ``PACK_NOTE.txt`` inside the archive.
``unpack`` joins the parts and, after checking every member, extracts them under the repository's
results folders, refusing any member that would land elsewhere or over an existing file.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from fer_utils.errors import FerError

#: What one command may bring back from the GPU machine: this many files of at most this size, this much in all.
MAX_PARTS, PART_BYTES, TOTAL_BYTES = 8, 16 * 2**20, 64 * 2**20
PART_PREFIX, NOTE = "results.tar.gz.part", "PACK_NOTE.txt"
#: ``unpack`` writes only under these (relative to the repository root): the cached experiments ``pack`` brings
#: back (the full and cpu profiles' results, the smoke profile's).
UNPACK_FOLDERS = ("results", "scratch/smoke/results")
#: Room kept for tar headers and gzip's worst case on incompressible checkpoints.
HEADROOM = 0.97


class PackError(FerError):
    """A pack folder that cannot be written or read (bad input: one line, exit status 2)."""


class _PartWriter(io.RawIOBase):
    """A write-only stream cut into ``PART_PREFIX<i>`` files of at most ``PART_BYTES`` under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.parts, self.handle, self.left = folder, [], None, 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self.left == 0:
                self._next_part()
            n = min(self.left, len(view))
            self.handle.write(view[:n])
            view, self.left = view[n:], self.left - n
        return len(data)

    def _next_part(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if len(self.parts) == MAX_PARTS:
            raise PackError(f"the archive needs more than {MAX_PARTS} parts of {PART_BYTES} bytes")
        self.parts.append(self.folder / f"{PART_PREFIX}{len(self.parts)}")
        self.handle, self.left = open(self.parts[-1], "wb"), PART_BYTES

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()


def check_pack_folder(out: Path) -> None:
    """Refuse a ``--pack`` folder that exists and is not empty (checked before training, and again to write)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PackError(f"--pack {out}: needs an empty or new folder")


def pack(files: list[Path], root: Path, out: Path, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """Archive ``files`` (under ``root``) into parts in the empty or new folder ``out``, at most ``limit``
    bytes in all (default :data:`TOTAL_BYTES`).

    Returns the parts written and the files left out (largest first) because they did not fit.
    """
    check_pack_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    room = HEADROOM * min(TOTAL_BYTES if limit is None else limit, MAX_PARTS * PART_BYTES)
    kept, left_out = [], []
    for path in sorted(files, key=lambda p: p.stat().st_size):
        size = path.stat().st_size + 1024  # header and padding
        (kept if size <= room else left_out).append(path)
        room -= size if size <= room else 0
    note = "\n".join(["left out (too large to bring back; re-run or copy them by other means):",
                      *(f"  {p.relative_to(root)} ({p.stat().st_size / 2**20:.1f} MiB)" for p in left_out)]) + "\n"
    writer = _PartWriter(out)
    with writer, tarfile.open(fileobj=writer, mode="w|gz") as tar:
        for path in sorted(kept):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
        if left_out:
            info = tarfile.TarInfo(NOTE)
            info.size = len(note.encode())
            tar.addfile(info, io.BytesIO(note.encode()))
    return writer.parts, sorted(left_out, key=lambda p: -p.stat().st_size)


class _Joined(io.RawIOBase):
    """The parts read one after another as one stream."""

    def __init__(self, parts: list[Path]) -> None:
        self.parts, self.handle = list(parts), None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self.handle is None:
                if not self.parts:
                    return 0
                self.handle = open(self.parts.pop(0), "rb")
            n = self.handle.readinto(buffer)
            if n:
                return n
            self.handle.close()
            self.handle = None


def _members(parts: list[Path]) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BufferedReader(_Joined(parts)), mode="r|gz")


def unpack(folder: Path, root: Path) -> list[str]:
    """Extract the parts in ``folder`` under ``root``'s :data:`UNPACK_FOLDERS` (cached experiments);
    returns the member names (the note, if any, is printed). Every member is checked before any is written:
    a plain file or folder under ``results/``, not over an existing file."""
    parts = sorted(folder.glob(f"{PART_PREFIX}*"), key=lambda p: int(p.name.removeprefix(PART_PREFIX) or -1))
    if not parts:
        raise PackError(f"--unpack {folder}: no {PART_PREFIX}* files there")
    try:
        with _members(parts) as tar:  # first pass: check every member, write nothing
            for member in tar:
                if member.name != NOTE:
                    _check_member(member, root, folder)
        names = []
        with _members(parts) as tar:
            for member in tar:
                if member.name == NOTE:
                    print(tar.extractfile(member).read().decode(), end="")
                    continue
                tar.extract(member, root, set_attrs=False, filter="data")
                names.append(member.name)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PackError(f"--unpack {folder}: unreadable archive ({err}); are all {len(parts)} parts there?") from err
    return names


def _check_member(member: tarfile.TarInfo, root: Path, folder: Path) -> None:
    """``PackError`` unless ``member`` is a plain file or folder under :data:`UNPACK_FOLDERS`, not an existing file."""
    path = PurePosixPath(member.name)
    inside = any(path.parts[:len(PurePosixPath(top).parts)] == PurePosixPath(top).parts for top in UNPACK_FOLDERS)
    if path.is_absolute() or ".." in path.parts or not inside or not (member.isfile() or member.isdir()):
        raise PackError(f"--unpack {folder}: refusing member {member.name!r} (not a plain file under "
                        f"{' or '.join(UNPACK_FOLDERS)}); nothing was extracted")
    target = root / path
    if member.isfile() and (target.exists() or target.is_symlink()):
        raise PackError(f"--unpack {folder}: {target} exists already; nothing was extracted (move it away to "
                        "take the packed one)")
