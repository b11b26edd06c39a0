"""A bundle the server makes, installed by the device's own client with no network (issue 13).

The server side is ``update_server.bundles`` over a repository published by
``fwsign`` and the server (``tests.update_server.bundle_world``); the device
is ``fwclient``'s code (``client.bundle_source``) on a state directory
provisioned with root 1. The two halves agree on the format only through
``fwcommon.bundle``: this test is where their names, chains and manifest
meet (R13: the device installs only what it would have installed online).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client import provisioning
from client.bundle_source import update_from_bundle
from client.events import EventType
from client.offline import BundleMismatchError
from client.state import DEFAULT_SLOT_CAPACITY, DeviceIdentity, StateDir
from client.update import Outcome
from tests.update_server.bundle_world import (
    Published,
    make_bundle,
    publish_releases,
)
from tests.update_server.repo_world import World
from update_server.bundles.making import Request


def _device(world: World, path: Path, device_id: str = "pump-0001") -> StateDir:
    state = StateDir(path)
    provisioning.provision(
        state,
        root=(world.repository / "metadata" / "1.root.json").read_bytes(),
        identity=DeviceIdentity(device_id, "pump-x100", DEFAULT_SLOT_CAPACITY),
        now=datetime.now(UTC),
        built=provisioning.BUILT,
    )
    return state


@pytest.fixture
def releases(world: World) -> tuple[Published, Published]:
    return publish_releases(world)


def test_a_bundle_the_server_makes_installs_on_a_device_with_root_1_and_no_network_r13(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    _, new = releases
    bundle = make_bundle(world, Request(hardware_model="pump-x100"), tmp_path / "pump.tar")
    state = _device(world, tmp_path / "device")
    result = update_from_bundle(state, bundle)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.path == new.path
    pending = state.bootenv().pending
    assert pending is not None
    assert hashlib.sha256(state.slot_image(pending).read_bytes()).hexdigest() == (
        hashlib.sha256(new.data).hexdigest()
    )
    entry = state.events.last(EventType.OFFLINE_INSTALL)
    assert entry is not None and entry["detail"]["bundle"] == "pump.tar"


def test_a_named_older_release_bundle_installs_that_release_not_the_newest_s5(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """The manifest's release narrows the device's choice (O7), as the server chose it."""
    old, _ = releases
    request = Request(hardware_model="pump-x100", version="1.0.0")
    bundle = make_bundle(world, request, tmp_path / "old.tar")
    state = _device(world, tmp_path / "device")
    result = update_from_bundle(state, bundle)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.path == old.path


def test_a_bundle_for_a_root_the_device_does_not_trust_yet_is_refused_by_name_o7(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    request = Request(hardware_model="pump-x100", root_from=3)
    bundle = make_bundle(world, request, tmp_path / "short.tar")
    state = _device(world, tmp_path / "device")
    with pytest.raises(BundleMismatchError, match="starts after root version 3; this device"):
        update_from_bundle(state, bundle)
    assert state.bootenv().pending is None
