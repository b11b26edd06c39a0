"""Atomic writes: a file is replaced whole or not at all, and no temp file is left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fwcommon.files import FileBatch, atomic_write


class BuildFailedError(Exception):
    pass


def stray_temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


def test_atomic_write_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "metadata" / "root.json"
    atomic_write(path, b"{}", mode=0o600)
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stray_temp_files(tmp_path) == []


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_bytes(b"a much longer previous content")
    atomic_write(path, b"short")
    assert path.read_bytes() == b"short"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stray_temp_files(tmp_path) == []


def test_atomic_write_that_fails_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError, match="occupied"):
        atomic_write(target, b"data")
    assert target.is_dir()
    assert stray_temp_files(tmp_path) == []


def test_batch_applies_every_file_on_success(tmp_path: Path) -> None:
    first, second = tmp_path / "1.targets.json", tmp_path / "sub" / "snapshot.json"
    first.write_bytes(b"old")
    with FileBatch() as batch:
        batch.add(first, b"new 1")
        batch.add(second, b"new 2")
        assert first.read_bytes() == b"old"  # nothing moves before the block ends
        assert not second.exists()
    assert first.read_bytes() == b"new 1"
    assert second.read_bytes() == b"new 2"
    assert stray_temp_files(tmp_path) == []


def test_batch_interrupted_by_an_exception_changes_nothing(tmp_path: Path) -> None:
    existing, fresh = tmp_path / "targets.json", tmp_path / "pump-x100.json"
    existing.write_bytes(b"trusted")
    with pytest.raises(BuildFailedError), FileBatch() as batch:
        batch.add(existing, b"half-made")
        batch.add(fresh, b"half-made")
        assert len(stray_temp_files(tmp_path)) == 2
        raise BuildFailedError
    assert existing.read_bytes() == b"trusted"
    assert not fresh.exists()
    assert stray_temp_files(tmp_path) == []


def test_batch_that_fails_while_staging_discards_what_was_staged(tmp_path: Path) -> None:
    existing, blocked = tmp_path / "targets.json", tmp_path / "file" / "snapshot.json"
    existing.write_bytes(b"trusted")
    (tmp_path / "file").write_bytes(b"a file where a directory should be")
    with pytest.raises(OSError), FileBatch() as batch:
        batch.add(existing, b"new")
        batch.add(blocked, b"new")
    assert existing.read_bytes() == b"trusted"
    assert stray_temp_files(tmp_path) == []


def test_batch_whose_rename_fails_leaves_no_temp_file(tmp_path: Path) -> None:
    first, occupied, last = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    (occupied / "inside").mkdir(parents=True)
    with pytest.raises(OSError, match=r"b\.json"), FileBatch() as batch:
        batch.add(first, b"1")
        batch.add(occupied, b"2")
        batch.add(last, b"3")
    # Renames already done stay done (documented); nothing half-made remains.
    assert first.read_bytes() == b"1"
    assert occupied.is_dir()
    assert not last.exists()
    assert stray_temp_files(tmp_path) == []
