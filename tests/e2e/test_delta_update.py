"""A delta update end to end (issue 13): fwsign's library, the real server, a real fwclient.

The engineers sign 2.0.0 offline and ``fwserver import`` publishes it; a
pump (``fwclient`` in its own process, trusting only the first root and the
server's CA) installs it and boots it. The engineers then sign 2.1.0, which
changes a few scattered blocks of 2.0.0, with its delta from 2.0.0
(``add_firmware(deltas=...)``, as ``fwsign add --delta-from 2.0.0``), and a
release engineer uploads the line, the image and the delta and publishes
them with a fresh code. The pump's next update downloads the delta, not the
image, installs 2.1.0 byte for byte as signed, and boots it. A second pump
running nothing yet downloads the full image of the same release.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import Signer

from client.state import StateDir
from repo_metadata.firmware import FirmwareInfo
from signer import layout
from signer.authoring import DeltaSources, add_firmware
from signer.repository import OfflineRepository
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.people import Person, enrolled, publish_role
from update_server.config import ServerConfig

NEW = f"{LINE}/pump-fw-2.1.0.bin"
DELTA = f"{NEW}.from-2.0.0.bsdiff"
HEALTHY = f"{sys.executable} -c 'raise SystemExit(0)'"
SIZE = 512 * 1024


def _images(directory: Path) -> tuple[Path, Path]:
    rng = random.Random(13)  # noqa: S311  test data, not secrets
    old = bytearray(rng.randbytes(SIZE))
    new = bytearray(old)
    for block in rng.sample(range(SIZE // 4096), 4):
        new[block * 4096 : (block + 1) * 4096] = rng.randbytes(4096)
    paths = directory / "pump-fw-2.0.0.bin", directory / "pump-fw-2.1.0.bin"
    paths[0].write_bytes(bytes(old))
    paths[1].write_bytes(bytes(new))
    return paths


def _sign_with_delta(offline: Path, keys: dict[str, Signer], image: Path, work: Path) -> Path:
    """2.1.0 and its delta from 2.0.0, signed by both engineers; the delta's file."""
    info = FirmwareInfo(version="2.1.0", security_version=1, hardware_models=(LINE,))
    repo = OfflineRepository(offline, now=datetime.now(UTC), signers=[keys["alice"], keys["bob"]])
    deltas = DeltaSources(versions=["2.0.0"], base_dir=image.parent, work_dir=work)
    add_firmware(repo, image=image, name="pump-fw", info=info, deltas=deltas)
    return work / DELTA


def _publish(
    server: RunningServer, engineer: Person, offline: Path, files: dict[str, Path]
) -> None:
    """Upload the line, send ``files``' bytes, publish with a fresh code."""
    document = json.loads(layout.role_file(offline, LINE).read_bytes())
    publish_role(server, engineer, LINE, document, files)


def _device(server: RunningServer, root: Path, state: Path, device_id: str) -> list[str]:
    provisioned = fwclient(
        "provision", "--state", str(state), "--root", str(root),
        "--hardware-model", LINE, "--device-id", device_id,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    return ["--state", str(state), "--server", server.url, "--ca", str(server.ca)]


def _installed(state: Path) -> dict[str, object]:
    entries = [e for e in StateDir(state).events.entries() if e["type"] == "installed"]
    detail: dict[str, object] = entries[-1]["detail"]
    return detail


def test_a_pump_on_2_0_0_updates_to_2_1_0_by_its_delta_through_the_real_server(
    tmp_path: Path,
) -> None:
    """Issue 13 end to end: the delta rebuilds 2.1.0 exactly as signed (R13)."""
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    old, new = _images(tmp_path)
    offline = tmp_path / "offline"
    info = FirmwareInfo(version="2.0.0", security_version=1, hardware_models=(LINE,))
    keys = make_repository(offline, config, old, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=tmp_path)
    root = offline / "metadata" / "1.root.json"
    with start_server(data_dir) as server:
        pump = _device(server, root, tmp_path / "pump", "pump-0201")
        first = fwclient("update", *pump)
        assert first.returncode == 0, first.stderr
        assert fwclient("boot", "--state", pump[1], "--health-check", HEALTHY).returncode == 0

        delta = _sign_with_delta(offline, keys, new, tmp_path / "deltas")
        _publish(server, enrolled(server, "engineer1"), offline, {NEW: new, DELTA: delta})

        second = fwclient("update", *pump)
        assert second.returncode == 0, second.stderr
        assert f"by delta {DELTA}" in second.stdout, second.stdout
        detail = _installed(Path(pump[1]))
        assert (detail["transfer"], detail["delta"]) == ("delta", DELTA)
        assert detail["downloaded"] == delta.stat().st_size < SIZE // 10
        state = StateDir(Path(pump[1]))
        pending = state.bootenv().pending
        assert pending is not None
        assert state.slot_image(pending).read_bytes() == new.read_bytes()
        booted = fwclient("boot", "--state", pump[1], "--health-check", HEALTHY)
        assert booted.returncode == 0 and "committed" in booted.stdout, booted.stdout
        assert fwclient("verify", "--state", pump[1]).returncode == 0

        fresh = _device(server, root, tmp_path / "fresh", "pump-0202")
        full = fwclient("update", *fresh)
        assert full.returncode == 0, full.stderr
        assert "full image" in full.stdout, full.stdout
        assert _installed(Path(fresh[1]))["downloaded"] == SIZE
        digest = hashlib.sha256(new.read_bytes()).hexdigest()
        fresh_state = StateDir(Path(fresh[1]))
        record = fresh_state.slot_record(fresh_state.bootenv().pending or "")
        assert record is not None and record.sha256 == digest
