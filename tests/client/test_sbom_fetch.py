"""A release's SBOM fetched through ngclient and verified like any target (R41, R56).

Against real signed metadata (``tests.client.sim``: python-tuf's Metadata
API, the server's publication layout, consistent snapshots). One test per
way the SBOM could be swapped or inflated, named after it (``client.sbom``
B1-B6); each refusal hands out no bytes, and an attack is logged in the
device's log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from client import cli
from client.boot import boot
from client.directive import STANDALONE
from client.errors import ClientError
from client.events import EventType
from client.sbom import fetch_sbom
from client.state import StateDir
from client.update import Outcome, Remote, update
from tests.client.sim import MODEL, Sim, event_types, image_bytes, provision, sha256
from tests.client.tuf_repo import firmware_custom

SBOM = json.dumps({"bomFormat": "CycloneDX", "components": [{"name": "zlib"}]}).encode()


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def release_with_sbom(
    sim: Sim, version: str, sbom: bytes = SBOM, *, named: bytes | None = None, signed: bool = True
) -> tuple[str, str]:
    """Sign firmware ``version`` naming an SBOM (``named``: the bytes it names); its paths."""
    path, sbom_path = f"{MODEL}/fw-{version}.bin", f"{MODEL}/fw-{version}.sbom.json"
    if signed:
        sim.repo.add_target(MODEL, sbom_path, sbom, {}, "alice", "bob")
        sim.images[sbom_path] = sbom
    ref = {"path": sbom_path, "sha256": sha256(sbom if named is None else named)}
    sim.repo.add_target(
        MODEL,
        path,
        image_bytes(version),
        firmware_custom(version, 1, (MODEL,), sbom=ref),
        "alice",
        "bob",
    )
    sim.images[path] = image_bytes(version)
    sim.publish()
    return path, sbom_path


def fetch(device: StateDir, sim: Sim, release: str | None = None) -> bytes:
    return fetch_sbom(device, sim.remote(), release=release, clock=datetime.now(UTC)).data


def refused(device: StateDir, sim: Sim, release: str, event: EventType) -> str:
    with pytest.raises(ClientError) as caught:
        fetch(device, sim, release)
    assert caught.value.event is event
    logged = event_types(device)[-1:]
    if event is EventType.ERROR:  # B6: an answer to the asker, not a fact about the device
        assert logged != [event.value]
    else:
        assert logged == [event.value], "an attack is logged (B6)"
    return str(caught.value)


def test_the_running_releases_sbom_is_the_signed_one_r41(device: StateDir, sim: Sim) -> None:
    release_with_sbom(sim, "1.0.0")
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    assert fetch(device, sim) == SBOM


def test_a_named_releases_sbom_is_fetched_without_installing_it(device: StateDir, sim: Sim) -> None:
    path, _sbom_path = release_with_sbom(sim, "2.0.0")
    assert fetch(device, sim, path) == SBOM
    assert sim.fetched("/targets/") == [f"/targets/{MODEL}/{sha256(SBOM)}.fw-2.0.0.sbom.json"]


def test_a_swapped_sbom_on_the_mirror_is_refused_bad_hash(device: StateDir, sim: Sim) -> None:
    path, sbom_path = release_with_sbom(sim, "1.0.0")
    sim.override[sim.target_url(sbom_path)] = SBOM.replace(b"zlib", b"zlub")
    assert "zlub" not in refused(device, sim, path, EventType.BAD_HASH)


def test_an_endless_sbom_is_cut_at_its_signed_length_too_long(device: StateDir, sim: Sim) -> None:
    path, sbom_path = release_with_sbom(sim, "1.0.0")
    sim.endless.add(sim.target_url(sbom_path))
    refused(device, sim, path, EventType.TOO_LONG)


def test_an_sbom_the_metadata_does_not_sign_is_refused_before_download(
    device: StateDir, sim: Sim
) -> None:
    path, _sbom_path = release_with_sbom(sim, "1.0.0", signed=False)
    assert "which no role signs" in refused(device, sim, path, EventType.ERROR)
    assert sim.fetched("/targets/") == []


def test_an_sbom_signed_with_other_bytes_than_the_release_names_is_refused_b4(
    device: StateDir, sim: Sim
) -> None:
    path, _sbom_path = release_with_sbom(sim, "1.0.0", named=b"another document")
    assert "other bytes" in refused(device, sim, path, EventType.BAD_HASH)
    assert sim.fetched("/targets/") == []


def test_a_release_not_signed_now_has_no_trusted_sbom_r56(device: StateDir, sim: Sim) -> None:
    path, _sbom_path = release_with_sbom(sim, "1.0.0")
    sim.repo.remove_target(MODEL, path, "alice", "bob")  # withdrawn (fwsign revoke-release)
    sim.publish()
    assert "not a release the repository signs now" in refused(device, sim, path, EventType.ERROR)


def test_frozen_metadata_is_refused_before_any_sbom_is_asked_for_b2(
    device: StateDir, sim: Sim
) -> None:
    path, _sbom_path = release_with_sbom(sim, "1.0.0")
    sim.resign(
        "/metadata/timestamp.json",
        lambda t: setattr(t, "expires", datetime(2020, 1, 1, tzinfo=UTC)),
        "timestamp",
    )
    refused(device, sim, path, EventType.FREEZE_ATTACK)
    assert sim.fetched("/targets/") == []


def test_fwclient_sbom_prints_or_writes_the_verified_bytes(
    device: StateDir, sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _sbom_path = release_with_sbom(sim, "1.0.0")
    monkeypatch.setattr(cli, "_remote", lambda *_args: Remote("https://updates.test", sim))
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: the simulated network stands in for HTTPS\n")
    common = [
        "sbom",
        "--state",
        str(device.root),
        "--server",
        "https://updates.test",
        "--ca",
        str(ca),
    ]
    printed = CliRunner().invoke(cli.main, [*common, "--release", path])
    assert (printed.exit_code, printed.stdout_bytes) == (0, SBOM)
    out = tmp_path / "out.json"
    written = CliRunner().invoke(cli.main, [*common, "--release", path, "--output", str(out)])
    assert written.exit_code == 0 and out.read_bytes() == SBOM
    running = CliRunner().invoke(cli.main, common)  # nothing installed: no running release
    assert running.exit_code == 1 and "name the release with --release" in running.stderr
