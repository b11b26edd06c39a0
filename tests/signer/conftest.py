"""Fixtures for the signer: people with keys, a clock, and a fresh repository.

Keys are generated in the test (securesystemslib ``CryptoSigner``): the
library functions take ``Signer`` objects, so the same code paths run with
the mock HSM and PKCS#11 tokens in the CLI tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer

from signer.authoring import RoleKeys, init_repository
from signer.repository import OfflineRepository

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
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
