"""Offline bundles for the client's tests, made from the simulator's published repository.

A bundle is written with ``fwcommon.bundle.write_bundle`` from exactly what
the simulated server serves (``Sim.files``, or an earlier publication): its
URL paths are the bundle's member names. Crafted bundles (a member that
escapes, a link) are written with ``tarfile`` directly, since the writer
refuses them.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.boot import boot
from client.bundle_source import update_from_bundle
from client.offline import DEFAULT_MAX_AGE
from client.state import Floor, StateDir
from client.update import Outcome
from fwcommon.bundle import AUTHORIZATION, DEFAULT_MAX_BYTES, Manifest, write_bundle
from fwcommon.files import atomic_write
from repo_metadata.authorization import SignedAuthorization
from tests.client.sim import MODEL, Sim, provision, tree

#: How long the devices of these tests have been offline (their time floor).
OFFLINE_FOR = timedelta(days=20)


def make_bundle(
    path: Path,
    sim: Sim,
    *,
    release: str | None,
    files: Mapping[str, bytes] | None = None,
    model: str = MODEL,
    device: str | None = None,
    authorization: SignedAuthorization | bytes | None = None,
    changed: Mapping[str, bytes] | None = None,
    dropped: Iterable[str] = (),
    root_from: int = 1,
) -> Path:
    """A bundle of what ``sim`` serves (or ``files``), ``changed`` and without ``dropped``.

    The root chain starts after ``root_from``: the roots up to it are left out.
    """
    served = {url.removeprefix("/"): data for url, data in (files or sim.files).items()}
    for version in range(1, root_from + 1):
        served.pop(f"metadata/{version}.root.json", None)
    served |= changed or {}
    for name in dropped:
        del served[name]
    members: list[tuple[str, Path | bytes]] = sorted(served.items())
    if isinstance(authorization, SignedAuthorization):
        authorization = authorization.to_bytes()
    if authorization is not None:
        members.append((AUTHORIZATION, authorization))
    manifest = Manifest(
        hardware_model=model,
        device=device,
        created=datetime.now(UTC).replace(microsecond=0),
        root_from=root_from,
        release=release,
        authorization=AUTHORIZATION if authorization is not None else None,
    )
    write_bundle(path, manifest, members, max_bytes=DEFAULT_MAX_BYTES)
    return path


def crafted_bundle(path: Path, members: Iterable[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A tar the writer would refuse: a manifest for ``MODEL``, then ``members`` as given."""
    manifest = {
        "format": "fwupdate-bundle",
        "format_version": 1,
        "created": "2026-12-01T00:00:00Z",
        "hardware_model": MODEL,
        "device": None,
        "root_from": 1,
        "release": None,
        "authorization": None,
    }
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "bundle.json", json.dumps(manifest).encode())
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                _add(tar, *member)
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    """A link member (symbolic by default) named ``name``, pointing at ``target``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def set_time_floor(state: StateDir, moment: datetime) -> None:
    """Write the device's time floor record as it would stand after a refresh at ``moment``."""
    atomic_write(state.time_floor_file, json.dumps({"time": moment.isoformat()}).encode())


def snapshot_of(state: StateDir) -> dict[str, bytes]:
    """Every file of the state directory, byte for byte (its lock file aside)."""
    return {name: data for name, data in tree(state.root).items() if name != "lock"}


def offline_device(
    path: Path, sim: Sim, *, offline_max_age: timedelta = DEFAULT_MAX_AGE
) -> StateDir:
    """A device running 1.0.0 from a first bundle, its last trusted time ``OFFLINE_FOR`` ago.

    ``offline_max_age``: its provisioned offline bound (``client.offline`` O3).
    """
    release = sim.release("1.0.0", 1)
    state = provision(path / "device", sim, offline_max_age=offline_max_age)
    set_time_floor(state, datetime.now(UTC) - OFFLINE_FOR)
    first = make_bundle(path / "first.fwbundle", sim, release=release)
    assert update_from_bundle(state, first).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    assert state.floor() == Floor(1, "1.0.0")
    return state


def refuse_connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """S1: every socket connection and name lookup fails the test; what was tried is recorded."""
    attempts: list[object] = []

    def refuse(_sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"an offline update tried to connect to {address}")

    def refuse_lookup(host: object, *_args: object, **_kwargs: object) -> None:
        attempts.append(host)
        raise AssertionError(f"an offline update tried to look up {host}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    return attempts
