"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.softhsm import KeyConfig, make_softhsm_key


@pytest.fixture(scope="session")
def softhsm_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyConfig]:
    """One SoftHSM2 token with an ECDSA P-256 key, for the whole session."""
    yield from make_softhsm_key(tmp_path_factory)
