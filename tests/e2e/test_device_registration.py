"""A device's identity end to end, on the real server over TLS (R10, R25, R62).

``fwclient provision`` makes the device key; an administrator issues an
enrolment token (``fwserver device enrol-token``); ``fwclient register``
reads it from a file and registers with a request signed by that key; the
token works once; the administrator accepts the device; ``fwclient
report`` sends a signed report the server anchors; a replayed request is
refused; after ``fwserver device decommission`` every request is refused,
and the records stay.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import Result

from client.device_api import DeviceApi
from client.identity import device_signer
from client.state import StateDir
from fwcommon.message_signatures import signed_headers
from tests.client.sim import Sim
from tests.e2e.conftest import RunningServer, fwclient
from tests.unprivileged import invoke_fwserver

MODEL = "pump-x100"


def admin(server: RunningServer, *args: str) -> Result:
    """``fwserver`` as the administrator runs it on the server's host."""
    argv = [args[0], args[1], "--data-dir", str(server.data_dir), *args[2:]]
    return invoke_fwserver(argv)


def provision(tmp_path: Path, root: Path, device_id: str) -> list[str]:
    state = tmp_path / device_id
    result = fwclient(
        "provision", "--state", str(state), "--root", str(root),
        "--hardware-model", MODEL, "--device-id", device_id,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "PRIVATE" not in result.stdout
    return ["--state", str(state)]


def test_provision_enrol_register_accept_report_replay_decommission(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "1.root.json"
    root.write_bytes(Sim(tmp_path / "sim").root(1))
    remote = ["--server", server.url, "--ca", str(server.ca)]
    pump = provision(tmp_path, root, "pump-e2e-1")

    issued = admin(server, "device", "enrol-token", "--model", MODEL, "--site", "ward-3")
    assert issued.exit_code == 0, issued.output
    token_file = tmp_path / "token"
    token_file.write_text(issued.output.strip().splitlines()[-1])
    token_file.chmod(0o600)

    registered = fwclient("register", *pump, *remote, "--token-file", str(token_file))
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "registered pump-e2e-1: pending"

    # The token works once, even for a device that holds a key of its own.
    other = provision(tmp_path, root, "pump-e2e-2")
    token = token_file.read_text()
    reused = fwclient("register", *other, *remote, env={"FWCLIENT_ENROLMENT_TOKEN": token})
    assert reused.returncode == 1 and "used already" in reused.stderr

    pending = fwclient("report", *pump, *remote)
    assert pending.returncode == 1 and "accept it" in pending.stderr

    assert admin(server, "device", "accept", "pump-e2e-1").exit_code == 0
    reported = fwclient("report", *pump, *remote)
    assert reported.returncode == 0, reported.stderr
    assert "acknowledged up to entry" in reported.stdout
    shown = admin(server, "device", "show", "pump-e2e-1").output
    assert "state:             accepted" in shown and "mode:              normal" in shown

    _replayed_request_is_refused(server, tmp_path / "pump-e2e-1")
    _requests_share_one_connection(server, tmp_path / "pump-e2e-1")

    gone = admin(server, "device", "decommission", "--yes", "pump-e2e-1")
    assert gone.exit_code == 0, gone.output
    refused = fwclient("report", *pump, *remote)
    assert refused.returncode == 1 and "decommissioned" in refused.stderr
    kept = admin(server, "device", "show", "pump-e2e-1").output
    assert "state:             decommissioned" in kept and "site:              ward-3" in kept


def _requests_share_one_connection(server: RunningServer, state_dir: Path) -> None:
    """A1: the device's signed requests go on one reused TLS connection."""
    api = DeviceApi(StateDir(state_dir), server=server.url, ca=server.ca, timeout=10)
    try:
        for _ in range(3):
            assert api.authorizations() == []
        assert api.connections == 1
    finally:
        api.close()


def _replayed_request_is_refused(server: RunningServer, state_dir: Path) -> None:
    """R25: the same signed request sent twice: the second is refused (nonce replayed)."""
    state = StateDir(state_dir)
    url = f"{server.url}/api/v1/device/authorizations"
    headers = signed_headers(
        "GET",
        url,
        body=b"",
        signer=device_signer(state),
        key_id="pump-e2e-1",
        created=datetime.now(UTC),
    )
    with server.pool() as pool:
        first = pool.request("GET", url, headers=headers)
        replay = pool.request("GET", url, headers=headers)
    assert first.status == 200, first.data
    assert json.loads(first.data) == {"authorizations": []}
    assert replay.status == 401
    assert "seen before" in json.loads(replay.data)["detail"]
