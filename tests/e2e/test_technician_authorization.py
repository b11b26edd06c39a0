"""A technician authorizes one pump's update, end to end on the real server over TLS.

Issue 10's "done when" (R9, R25, R58): the officers list the server's
authorization key in root; release 2.0.0 requires an authorization; two
pumps of ward 3 are registered. Without an authorization a pump waits
(exit 0). Tom, a technician of ward 3, logs in with password and code and
authorizes pump 1 with a fresh code; pump 1 picks it up at its next update,
installs it, and reports; the server shows who authorized what and that it
was used. The same document handed to pump 2 is refused; pump 1 cannot use
it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from securesystemslib.signer import CryptoSigner

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.people import call, enrolled
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


def _repository(path: Path, config: ServerConfig, image: Path) -> None:
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


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    work = tmp_path_factory.mktemp("technician-e2e")
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir)
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(64 * 1024))
    offline = work / "offline"
    _repository(offline, config, image)
    imported = CliRunner().invoke(
        fwserver.main,
        ["import", "--data-dir", str(data_dir), "--targets-dir", str(work), str(offline)],
    )
    assert imported.exit_code == 0, imported.output
    with start_server(data_dir) as server:
        yield Ward(server, offline / "metadata" / "1.root.json", work)


def _pump(ward: Ward, device_id: str) -> list[str]:
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


def test_a_technician_authorizes_one_pump_with_a_fresh_code_and_only_that_pump_installs_it(
    ward: Ward,
) -> None:
    pump1, pump2 = _pump(ward, "pump-0001"), _pump(ward, "pump-0002")

    waiting = fwclient("update", *pump1)
    assert waiting.returncode == 0, waiting.stderr
    assert "needs a technician's authorization" in waiting.stdout

    tom = enrolled(ward.server, "tom", role="technician")
    fwserver_cli(ward.server, "user", "scope", "tom", "--site", "ward-3")
    body = {"device_ids": ["pump-0001"], "target_path": TARGET}
    status, answer, _ = call(ward.server, "POST", "/api/v1/authorizations", body, tom.headers)
    assert status == 401, "a fresh code is required (R9)"
    headers = {**tom.headers, "X-OTP": tom.unused_code()}
    status, answer, _ = call(ward.server, "POST", "/api/v1/authorizations", body, headers)
    assert status == 201, answer
    document = answer["authorizations"][0]["document"]

    installed = fwclient("update", *pump1)
    assert installed.returncode == 0, installed.stderr
    assert "in slot b" in installed.stdout
    booted = fwclient("boot", "--state", pump1[1])
    assert booted.returncode == 0, booted.stderr
    reported = fwclient("report", *pump1)
    assert reported.returncode == 0, reported.stderr

    status, listed, _ = call(ward.server, "GET", "/api/v1/authorizations", None, tom.headers)
    assert status == 200
    [issued] = listed["authorizations"]
    assert (issued["device_id"], issued["technician"], issued["status"]) == (
        "pump-0001",
        "tom",
        "used",
    )
    shown = fwserver_cli(ward.server, "device", "show", "pump-0001")
    assert "2.0.0" in shown

    handed = ward.work / "authorization.json"
    handed.write_text(json.dumps(document))
    refused = fwclient("update", *pump2, "--authorization", str(handed))
    assert refused.returncode == 1
    assert "authorization_wrong_device" in refused.stderr
    again = fwclient("update", *pump1, "--authorization", str(handed))
    assert again.returncode == 0
    assert "no newer firmware" in again.stdout
