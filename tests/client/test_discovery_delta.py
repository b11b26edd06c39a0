"""A delta target is never an install candidate (issue 13; client.discovery, client.policy).

A delta only carries the bytes of a release chosen on its own full image. The
repository is the simulator's (python-tuf's Metadata API, published as the
server does), so the delta targets here are signed as the contract writes
them, and one as a confused or malicious signer might: firmware fields
beside its ``delta`` field, at a version above every release (TUF arbitrary
software attack: bytes that are not a signed image must never be installed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from client import discovery
from client.directive import STANDALONE
from client.state import StateDir
from client.update import Outcome, check, refresh_metadata
from tests.client.sim import MODEL, Sim, provision, sha256
from tests.client.tuf_repo import firmware_custom

BASE = f"{MODEL}/fw-1.0.0.bin"
RELEASE = f"{MODEL}/fw-1.1.0.bin"
DELTA = f"{RELEASE}.from-1.0.0.bsdiff"


def _delta_field(sim: Sim) -> dict[str, Any]:
    base = sim.images[BASE]
    return {
        "image": RELEASE,
        "base": BASE,
        "base_sha256": sha256(base),
        "base_length": len(base),
        "format": "bsdiff4",
    }


def _sign(sim: Sim, path: str, custom: dict[str, Any]) -> None:
    data = b"BSDIFF40 not really a patch, never installed"
    sim.repo.add_target(MODEL, path, data, custom, "alice", "bob")
    sim.images[path] = data
    sim.publish()


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    sim = Sim(tmp_path / "sim")
    sim.release("1.0.0", 1)
    sim.release("1.1.0", 1)
    _sign(sim, DELTA, {"delta": _delta_field(sim)})
    return sim


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def _roles(device: StateDir, sim: Sim) -> list[discovery.SignedRole]:
    now = datetime.now(UTC)  # ngclient reads the real clock; the simulator signs from it
    cache = device.metadata_dir
    updater, _ = refresh_metadata(sim.remote(), cache=cache, root=sim.root(1), at=now, state=device)
    return list(discovery.walk(updater, cache, prefix=f"{MODEL}/", at=now))


def _offered(device: StateDir, sim: Sim) -> list[str]:
    offered = []
    for role in _roles(device, sim):
        offered += [path for path, _ in discovery.install_targets(role, f"{MODEL}/")]
    return sorted(offered)


def test_discovery_offers_the_releases_and_never_a_delta(device: StateDir, sim: Sim) -> None:
    """Issue 13: the delta is signed in the line beside its release, but not offered.

    Answers the TUF arbitrary software attack.
    """
    assert _offered(device, sim) == [BASE, RELEASE]


def test_a_delta_is_never_chosen_the_full_release_is(
    device: StateDir, sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    """The delta is left out before it is read as firmware: no warning at every check.

    Answers the TUF arbitrary software attack.
    """
    with caplog.at_level(logging.WARNING):
        result = check(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.AVAILABLE, result.message
    assert result.candidate is not None
    assert result.candidate.path == RELEASE
    assert [r.getMessage() for r in caplog.records if DELTA in r.getMessage()] == []


def test_a_delta_carrying_firmware_fields_is_never_a_candidate(device: StateDir, sim: Sim) -> None:
    """TUF arbitrary software: a delta signed as if it were release 9.9.9 is not installable."""
    forged = f"{MODEL}/fw-9.9.9.bin.from-1.0.0.bsdiff"
    custom = {**firmware_custom("9.9.9", 1, (MODEL,)), "delta": _delta_field(sim)}
    _sign(sim, forged, custom)
    assert forged not in _offered(device, sim)
    result = check(device, sim.remote(), directive=STANDALONE)
    assert result.candidate is not None
    assert result.candidate.path == RELEASE


def test_install_targets_leaves_out_paths_outside_the_prefix_and_deltas(
    device: StateDir, sim: Sim
) -> None:
    """TUF arbitrary software attack: of the role that signs the delta, only its releases
    are installable under the model's prefix, and nothing under another model's."""
    (line,) = [role for role in _roles(device, sim) if DELTA in role.signed.targets]
    assert sorted(path for path, _ in discovery.install_targets(line, f"{MODEL}/")) == [
        BASE,
        RELEASE,
    ]
    assert list(discovery.install_targets(line, "ventilator-v5/")) == []
