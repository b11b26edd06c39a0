"""A technician carries a bundle to a pump with no network (issue 13, R13), command by command.

The repository is made offline with fwsign's library and imported by
``fwserver import`` (no server is started at all); ``fwserver bundle``
writes the bundle for the model; ``fwclient`` then runs in its own process,
as a device runs it, with no server to reach: ``provision`` with the first
root, ``update --bundle`` with a health check, ``status``, ``log verify``.
A copy of the bundle with one firmware byte changed installs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import fwclient, new_data_dir
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.unprivileged import invoke_fwserver
from update_server.config import ServerConfig

HEALTHY = f"{sys.executable} -c 'raise SystemExit(0)'"


def _bundle(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """``fwserver bundle`` for the model, from a repository imported, never served."""
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    image = tmp_path / "pump-fw-1.0.0.bin"
    image.write_bytes(os.urandom(200 * 1024))
    offline = tmp_path / "offline"
    info = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(offline, config, image, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=tmp_path)
    bundle = tmp_path / "usb" / "pump.tar"
    bundle.parent.mkdir()
    made = invoke_fwserver(
        ["bundle", "--data-dir", str(data_dir), "--model", LINE, "-o", str(bundle)]
    )
    assert made.exit_code == 0, made.output
    return bundle, offline / "metadata" / "1.root.json", image.read_bytes()


def _provisioned(root: Path, path: Path) -> list[str]:
    result = fwclient(
        "provision", "--state", str(path), "--root", str(root),
        "--hardware-model", LINE, "--device-id", "pump-001",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return ["--state", str(path)]


def test_a_pump_with_no_network_installs_the_bundle_the_server_made_r13(tmp_path: Path) -> None:
    bundle, root, image = _bundle(tmp_path)
    device = _provisioned(root, tmp_path / "pump")
    updated = fwclient("update", *device, "--bundle", str(bundle), "--health-check", HEALTHY)
    assert updated.returncode == 0, updated.stderr
    status = json.loads(fwclient("status", *device, "--json").stdout)
    assert status["running_version"] == "1.0.0"
    slot_file = tmp_path / "pump" / "slots" / f"slot_{status['slot']}.bin"
    assert hashlib.sha256(slot_file.read_bytes()).digest() == hashlib.sha256(image).digest()
    assert fwclient("log", "verify", *device).returncode == 0
    log = (tmp_path / "pump" / "events.log").read_text().splitlines()
    types = [json.loads(line)["type"] for line in log]
    assert types.index("offline_install") + 1 == types.index("installed")


def test_a_bundle_with_one_firmware_byte_changed_installs_nothing(tmp_path: Path) -> None:
    """One firmware byte changed: nothing installs (R13; TUF arbitrary software attack)."""
    bundle, root, image = _bundle(tmp_path)
    data = bytearray(bundle.read_bytes())
    at = data.find(image[:64])
    assert at > 0
    data[at + 100] ^= 1
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(data))
    device = _provisioned(root, tmp_path / "pump")
    result = fwclient("update", *device, "--bundle", str(tampered))
    assert result.returncode == 1
    assert result.stderr.startswith("fwclient: bad_hash: "), result.stderr
    status = json.loads(fwclient("status", *device, "--json").stdout)
    assert status["pending"] is None
