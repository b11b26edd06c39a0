"""A ward for the technician's tests: the real server, a release that needs an authorization.

The officers list the server's authorization key in root; release 2.0.0 of
``pump-x100`` requires a technician's authorization; pumps of ward 3 are
provisioned and registered with pre-authorized enrolment tokens. Used by the
end-to-end API story and by the browser's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from securesystemslib.signer import CryptoSigner

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from update_server import cli as fwserver
from update_server.config import ServerConfig

LINE = "pump-x100"
TARGET = f"{LINE}/pump-fw-2.0.0.bin"
PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob")


@dataclass(frozen=True)
class Ward:
    server: RunningServer
    root: Path
    work: Path


def repository(path: Path, config: ServerConfig, image: Path) -> None:
    """Root 2 of 3 officers, with the server's authorization key listed (R47)."""
    keys = {name: CryptoSigner.generate_ed25519() for name in PEOPLE}
    now = datetime.now(UTC)
    online = {
        role: public_key_from_uri(config.online_keys[role])
        for role in ("snapshot", "timestamp", "authorization")
    }
    officers = [keys[n] for n in ("officer1", "officer2", "officer3")]
    init_repository(
        OfflineRepository(path, now=now, signers=[*officers[:2], keys["manager"]], create=True),
        root=RoleKeys([k.public_key for k in officers], 2),
        targets=RoleKeys([keys["manager"].public_key], 1),
        snapshot=online["snapshot"],
        timestamp=online["timestamp"],
        authorization=[online["authorization"]],
    )
    delegate(
        OfflineRepository(path, now=now, signers=[keys["manager"], keys["alice"], keys["bob"]]),
        name=LINE,
        path_prefix=f"{LINE}/",
        keys=RoleKeys([keys["alice"].public_key, keys["bob"].public_key], 2),
    )
    info = FirmwareInfo(
        version="2.0.0", security_version=1, hardware_models=(LINE,), requires_authorization=True
    )
    add_firmware(
        OfflineRepository(path, now=now, signers=[keys["alice"], keys["bob"]]),
        image=image,
        name="pump-fw",
        info=info,
    )


def fwserver_cli(server: RunningServer, *args: str) -> str:
    argv = [args[0], args[1], "--data-dir", str(server.data_dir), *args[2:]]
    result = CliRunner().invoke(fwserver.main, argv)
    assert result.exit_code == 0, result.output
    return result.output


@contextlib.contextmanager
def serve_ward(work: Path, *, image_size: int = 64 * 1024) -> Iterator[Ward]:
    """The server of the ward in ``work``, publishing 2.0.0; stopped on leaving."""
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir)
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(image_size))
    offline = work / "offline"
    repository(offline, config, image)
    imported = CliRunner().invoke(
        fwserver.main,
        ["import", "--data-dir", str(data_dir), "--targets-dir", str(work), str(offline)],
    )
    assert imported.exit_code == 0, imported.output
    with start_server(data_dir) as server:
        yield Ward(server, offline / "metadata" / "1.root.json", work)


def pump(ward: Ward, device_id: str) -> list[str]:
    """A pump of ward 3: provisioned, registered with a pre-authorized token."""
    state = ward.work / device_id
    remote = ["--server", ward.server.url, "--ca", str(ward.server.ca)]
    provisioned = fwclient(
        "provision", "--state", str(state), "--root", str(ward.root),
        "--hardware-model", LINE, "--device-id", device_id,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    output = fwserver_cli(
        ward.server, "device", "enrol-token", "--model", LINE, "--device-id", device_id,
        "--site", "ward-3", "--accept",
    )  # fmt: skip
    token = ward.work / f"{device_id}.token"
    token.write_text(output.strip().splitlines()[-1])
    registered = fwclient("register", "--state", str(state), *remote, "--token-file", str(token))
    assert registered.returncode == 0, registered.stderr
    return ["--state", str(state), *remote]
