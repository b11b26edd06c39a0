"""Fixtures shared by the client tests that work on a signed line and one device.

A module that needs another shape (a bigger update, a simulator) defines a
fixture of the same name, which takes precedence over these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.state import StateDir
from tests.client.helpers_state import Release, SignedLine, provision


@pytest.fixture
def line(tmp_path: Path) -> SignedLine:
    return SignedLine(tmp_path / "repo")


@pytest.fixture
def factory(line: SignedLine) -> Release:
    """The firmware the device leaves the factory with."""
    return line.release("1.0.0", 1)


@pytest.fixture
def update(line: SignedLine) -> Release:
    """A newer release, with a higher security version."""
    return line.release("1.1.0", 2)


@pytest.fixture
def state(tmp_path: Path, line: SignedLine, factory: Release) -> StateDir:
    """A provisioned device running ``factory`` in slot a."""
    return provision(tmp_path / "device", line, factory)
