"""Fixtures for the signer: people with keys, a clock, and a fresh repository.

Keys are generated in the test (securesystemslib ``CryptoSigner``): the
library functions take ``Signer`` objects, so the same code paths run with
the mock HSM and PKCS#11 tokens in the CLI tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer

from signer.authoring import RoleKeys, delegate, init_repository
from signer.repository import OfflineRepository
from tests.clocks import RUN_START

NOW = RUN_START  # metadata signed here is read by a stock ngclient
PEOPLE = (
    "officer1", "officer2", "officer3", "manager1", "manager2",
    "alice", "bob", "carol", "snapshot", "timestamp",
)  # fmt: skip


@pytest.fixture(scope="session")
def people() -> dict[str, Signer]:
    """One key per person and per online role (R47: one key, one use)."""
    return {name: CryptoSigner.generate_ed25519() for name in PEOPLE}


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def open_repo(people: dict[str, Signer], now: datetime) -> Callable[..., OfflineRepository]:
    """Open a repository as the named people (each signs with their own key)."""

    def opener(path: Path, *names: str, at: datetime | None = None) -> OfflineRepository:
        return OfflineRepository(path, now=at or now, signers=[people[n] for n in names])

    return opener


@pytest.fixture
def repo(tmp_path: Path, people: dict[str, Signer], now: datetime) -> Path:
    """A repository made by two of three officers and a release manager."""
    path = tmp_path / "repo"
    signers = [people["officer1"], people["officer2"], people["manager1"]]
    init_repository(
        OfflineRepository(path, now=now, signers=signers, create=True),
        root=RoleKeys([people[n].public_key for n in ("officer1", "officer2", "officer3")], 2),
        targets=RoleKeys([people["manager1"].public_key, people["manager2"].public_key], 1),
        snapshot=people["snapshot"].public_key,
        timestamp=people["timestamp"].public_key,
    )
    return path


def dir_snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` as {relative path: bytes}."""
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


@pytest.fixture
def unchanged() -> Callable[[Path], AbstractContextManager[None]]:
    """Assert that a block leaves a directory byte for byte as it was.

    Use around a refused operation: ``with unchanged(repo), pytest.raises(...)``.
    Also asserts that no staged temporary file (``.*.tmp``) was left behind.
    """

    @contextmanager
    def check(path: Path) -> Iterator[None]:
        before = dir_snapshot(path)
        yield
        assert dir_snapshot(path) == before
        assert not list(path.rglob(".*.tmp")), "stray temporary files"

    return check


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A firmware image file outside the repository."""
    file = tmp_path / "pump-fw.bin"
    file.write_bytes(b"\x7fFW" + bytes(range(256)) * 64)
    return file


@pytest.fixture
def line(
    repo: Path, open_repo: Callable[..., OfflineRepository], people: dict[str, Signer]
) -> Path:
    """``repo`` with product line pump-x100 delegated to alice and bob, 2 of 2."""
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=RoleKeys([people["alice"].public_key, people["bob"].public_key], 2),
    )
    return repo
