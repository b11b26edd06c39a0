"""Atomic file writes.

Every file we write is written whole or not at all: bytes go to a temporary
file in the same directory, are synced, then renamed over the target, and the
directory is synced. ``FileBatch`` extends this to a change that touches
several files: all contents are staged (and synced) before the first rename,
so any failure while preparing leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (durable once this returns)."""
    tmp = _stage(path, data, mode)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class FileBatch:
    """Several atomic writes that are prepared together and applied in order.

    Use as a context manager: ``add()`` stages, leaving the block normally
    renames every staged file into place in the order added; leaving it with
    an exception discards every staged file and changes nothing.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def add(self, path: Path, data: bytes, *, mode: int = 0o644) -> None:
        self._staged.append((path, _stage(path, data, mode)))

    def discard(self) -> None:
        for _, tmp in self._staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()

    def commit(self) -> None:
        directories = set()
        try:
            for path, tmp in self._staged:
                tmp.replace(path)
                directories.add(path.parent)
        except BaseException:
            self.discard()  # files not yet renamed must not be left behind
            raise
        self._staged.clear()
        for directory in directories:
            fsync_dir(directory)

    def __enter__(self) -> FileBatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
