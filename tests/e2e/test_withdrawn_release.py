"""A device on a withdrawn release leaves it with no deployment (issue 11, R56, R57), end to end.

The real ``fwserver serve`` (gunicorn, TLS) and a real ``fwclient`` pump,
registered, on a fleet left at "assigned" (R9):

1. The pump installs 2.0.0 while its fleet takes the newest, then the fleet
   is set back to "assigned" (no deployment assigns anything from now on).
2. The engineers sign 2.1.0 and withdraw 2.0.0 offline (``fwsign
   revoke-release``'s library), and a release engineer uploads the line and
   publishes it through the API with a fresh code. The inventory shows the
   pump running a withdrawn release.
3. The pump's next update takes the server's offer (an assignment with
   "deployment": null, ``client.directive`` P7), installs 2.1.0 and boots
   it; it reports, on the way, that it ran a release the signed metadata
   signs no more (``running_not_listed``, policy rule 7). After its report
   the inventory no longer flags it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from client.state import StateDir
from repo_metadata.firmware import FirmwareInfo
from signer import layout
from signer.authoring import add_firmware, revoke_release
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.people import Person, call, enrolled, publish_role
from tests.e2e.ward import Ward, fwserver_cli, pump
from update_server.config import ServerConfig

OLD = f"{LINE}/pump-fw-2.0.0.bin"
NEW = f"{LINE}/pump-fw-2.1.0.bin"
DEVICE = "pump-0101"
ONLINE = ("snapshot", "timestamp")


def _offline(path: Path, config: ServerConfig, image: Path) -> dict[str, Signer]:
    """``tests.e2e.offline.make_repository``'s repository with 2.0.0, keeping the keys."""
    info = FirmwareInfo(version="2.0.0", security_version=1, hardware_models=(LINE,))
    return make_repository(path, config, image, info, authorization=False)


def _sign_release(path: Path, keys: Mapping[str, Signer], image: Path, version: str) -> None:
    info = FirmwareInfo(version=version, security_version=1, hardware_models=(LINE,))
    now = datetime.now(UTC)
    repo = OfflineRepository(path, now=now, signers=[keys["alice"], keys["bob"]])
    add_firmware(repo, image=image, name="pump-fw", info=info)


def _publish(
    server: RunningServer, engineer: Person, offline: Path, files: dict[str, Path]
) -> None:
    """Upload the line, send ``files``' bytes, publish with a fresh code."""
    document = json.loads(layout.role_file(offline, LINE).read_bytes())
    publish_role(server, engineer, LINE, document, files)


def _inventory(server: RunningServer, admin: Person) -> dict[str, Any]:
    status, shown, _ = call(server, "GET", f"/api/v1/devices/{DEVICE}", None, admin.headers)
    assert status == 200, shown
    return shown


def test_a_pump_on_a_withdrawn_release_installs_its_successor_without_a_deployment(
    tmp_path: Path,
) -> None:
    """R56, R57: withdrawn 2.0.0, 2.1.0 published, no deployment: the pump leaves 2.0.0."""
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    old, new = tmp_path / "pump-fw-2.0.0.bin", tmp_path / "pump-fw-2.1.0.bin"
    old.write_bytes(os.urandom(32 * 1024))
    new.write_bytes(os.urandom(32 * 1024))
    offline = tmp_path / "offline"
    keys = _offline(offline, config, old)
    import_repository(data_dir, offline, targets_dir=tmp_path)
    with start_server(data_dir) as server:
        ward = Ward(server, offline / "metadata" / "1.root.json", tmp_path)
        device = pump(ward, DEVICE)
        fwserver_cli(server, "fleet", "install", LINE, "newest")
        first = fwclient("update", *device, "--boot")
        assert first.returncode == 0, first.stderr
        fwserver_cli(server, "fleet", "install", LINE, "assigned")
        admin = enrolled(server, "admin1", role="admin")
        shown = _inventory(server, admin)
        assert (shown["running_version"], shown["running_withdrawn"]) == ("2.0.0", False), shown

        _sign_release(offline, keys, new, "2.1.0")
        now = datetime.now(UTC)
        revoke_release(OfflineRepository(offline, now=now, signers=[keys["alice"]]), path=OLD)
        sign_roles(OfflineRepository(offline, now=now, signers=[keys["bob"]]), roles=[LINE])
        _publish(server, enrolled(server, "engineer1"), offline, {NEW: new})
        assert _inventory(server, admin)["running_withdrawn"] is True

        second = fwclient("update", *device, "--boot")
        assert second.returncode == 0, second.stderr
        assert NEW in second.stdout and "2.1.0" in second.stdout, second.stdout
        logged = [
            (entry["type"], entry["detail"].get("target"))
            for entry in StateDir(Path(device[1])).events.entries()
        ]
        assert ("running_not_listed", OLD) in logged, logged
        shown = _inventory(server, admin)
        assert (shown["running_version"], shown["running_withdrawn"]) == ("2.1.0", False), shown
