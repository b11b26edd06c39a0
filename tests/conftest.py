"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from tests.softhsm import KeyConfig, make_softhsm_key
from tests.update_server.people import fast_password_hashing


@pytest.fixture(scope="session")
def softhsm_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyConfig]:
    """One SoftHSM2 token with an ECDSA P-256 key, for the whole session."""
    yield from make_softhsm_key(tmp_path_factory)


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters, for a module that logs people in often.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("fast_hashing")``,
    a package with an autouse fixture that requests it (not autouse for every
    test: the password tests check the production parameters).
    """
    fast_password_hashing(monkeypatch)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Under ``CI=true`` a skipped test is a failed test, whatever skipped it."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {report.longrepr}"
