"""The whole story, over HTTPS against the real server (issue 3's "done when").

Security officers and a release manager make the repository offline; the
server imports it (``fwserver import``); an administrator adds alice
(``fwserver user add``), who finishes her first login over HTTPS (password
change, TOTP enrolment); alice adds firmware 2.4.0 and signs it, bob signs it
too (2 of 2, R9); alice runs ``fwsign publish``, which logs in with password
and TOTP and confirms with a second, fresh code; a stock ``tuf.ngclient``
updater (the demo's device, ``demo/device.py``), trusting only root v1 and the
server's CA file, downloads and verifies the firmware; the audit log of all of
it verifies.

Offline keys are generated in the test (the mock-HSM and PKCS#11 signers are
tested with ``fwsign`` in ``tests/signer``); the server's online keys are in
its own mock-HSM token, as ``fwserver init`` makes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from securesystemslib.signer import CryptoSigner, Signer

from demo.device import stock_updater
from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.e2e.conftest import REPO_ROOT, RunningServer, new_data_dir, start_server
from tests.unprivileged import invoke_fwserver
from update_server.config import ServerConfig
from update_server.mfa.totp import INTERVAL, code_at

PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob")
LINE = "pump-x100"
TARGET = f"{LINE}/pump-fw-2.4.0.bin"
NEW_PASSWORD = "a long passphrase nobody guesses 42"
PUBLISH_TIMEOUT = 120


def _offline_repository(path: Path, config: ServerConfig, keys: Mapping[str, Signer]) -> Path:
    """Root 2 of 3 officers, targets the manager, pump-x100 2 of 2 alice and bob."""
    now = _now()
    online = {r: public_key_from_uri(config.online_keys[r]) for r in ("snapshot", "timestamp")}
    init_repository(
        OfflineRepository(
            path,
            now=now,
            signers=[keys["officer1"], keys["officer2"], keys["manager"]],
            create=True,
        ),
        root=RoleKeys([keys[n].public_key for n in ("officer1", "officer2", "officer3")], 2),
        targets=RoleKeys([keys["manager"].public_key], 1),
        snapshot=online["snapshot"],
        timestamp=online["timestamp"],
    )
    delegate(
        OfflineRepository(path, now=now, signers=[keys["manager"]]),
        name=LINE,
        path_prefix=f"{LINE}/",
        keys=RoleKeys([keys["alice"].public_key, keys["bob"].public_key], 2),
    )
    for engineer in ("alice", "bob"):
        sign_roles(OfflineRepository(path, now=now, signers=[keys[engineer]]), roles=[LINE])
    return path


def _now() -> datetime:
    return datetime.now(UTC)


def _fwserver(*args: str) -> str:
    """Run an ``fwserver`` command in this process (the server is not running yet)."""
    result = invoke_fwserver(args)
    assert result.exit_code == 0, result.output
    return result.output


def _api(
    pool: urllib3.PoolManager,
    server: RunningServer,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: str = "",
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = pool.request(
        "POST", f"{server.url}/api/v1{path}", body=json.dumps(body or {}), headers=headers
    )
    assert response.status == 200, (path, response.status, response.data[:500])
    answer: dict[str, Any] = response.json()
    return answer


def _first_login(server: RunningServer, name: str, password: str) -> tuple[str, int]:
    """Password-only login, TOTP enrolment and confirmation, new password.

    Returns the TOTP secret and the time step the confirmation used.
    """
    with server.pool() as pool:
        login = _api(pool, server, "/auth/login", {"username": name, "password": password})
        assert login["must_change_password"] and not login["totp_enrolled"]
        token = login["token"]
        secret = _api(pool, server, "/auth/totp/enroll", token=token)["secret"]
        step = _step()
        confirm = {"otp": code_at(secret, step)}
        assert _api(pool, server, "/auth/totp/confirm", confirm, token=token)["totp_enrolled"]
        change = {"current_password": password, "new_password": NEW_PASSWORD}
        _api(pool, server, "/auth/password", change, token=token)
    return secret, step


def _step() -> int:
    return int(time.time()) // INTERVAL


def _two_fresh_steps(used: set[int]) -> tuple[int, int]:
    """A login step and a later publish step, both after every step used, in the window.

    The server accepts only a step later than the last one it accepted for
    the person (R25), so both must come after ``used``. Waits (at most one
    step and 3 s) until two such steps fit the server's window of one step
    either side, with the login's step not about to leave it.
    """
    while True:
        if INTERVAL - time.time() % INTERVAL < 3:
            time.sleep(INTERVAL - time.time() % INTERVAL + 0.1)
        now = _step()
        fresh = [step for step in (now - 1, now, now + 1) if step > max(used, default=-1)]
        if len(fresh) >= 2:  # a login and a publish
            return fresh[0], fresh[1]
        time.sleep(INTERVAL - time.time() % INTERVAL + 0.1)


def _fwsign_publish(
    server: RunningServer, repo: Path, targets: Path, secret: str, used: set[int]
) -> subprocess.CompletedProcess[str]:
    """``fwsign publish`` as alice runs it, secrets from the environment."""
    login_step, publish_step = _two_fresh_steps(used)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSIGN_")}
    env |= {
        "FWSIGN_PASSWORD": NEW_PASSWORD,
        "FWSIGN_OTP": code_at(secret, login_step),
        "FWSIGN_PUBLISH_OTP": code_at(secret, publish_step),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    }
    args = ["--repo", str(repo), "--server", server.url, "--ca", str(server.ca)]
    args += ["--user", "alice", "--targets-dir", str(targets)]
    return subprocess.run(
        [*_fwsign_command(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=PUBLISH_TIMEOUT,
        check=False,
    )


def _fwsign_command() -> list[str]:
    from signer import cli as fwsign  # noqa: PLC0415

    flags = ["-S"] if sys.flags.no_site else []
    if "publish" in fwsign.main.commands:
        return [sys.executable, *flags, "-c", "from signer.cli import main; main()", "publish"]
    entry = "from signer.publish_cli import publish_command; publish_command()"
    return [sys.executable, *flags, "-c", entry]


def _device_download(server: RunningServer, trusted_root: bytes, workdir: Path) -> bytes:
    """The demo's stock ngclient device: refresh, find the target, download and verify it."""
    updater = stock_updater(server.url, ca=server.ca, root=trusted_root, workdir=workdir)
    updater.refresh()
    info = updater.get_targetinfo(TARGET)
    assert info is not None, f"{TARGET} is not in the published metadata"
    return Path(updater.download_target(info)).read_bytes()


def test_a_release_signed_by_two_engineers_is_published_through_mfa_and_installed(
    tmp_path: Path,
) -> None:
    keys = {name: CryptoSigner.generate_ed25519() for name in PEOPLE}
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    offline = _offline_repository(tmp_path / "offline", config, keys)
    _fwserver("import", "--data-dir", str(data_dir), str(offline))
    added = _fwserver(
        "user", "add", "--data-dir", str(data_dir), "--role", "release_engineer", "alice"
    )
    initial_password = added.rsplit(": ", 1)[1].strip()

    firmware = os.urandom(300 * 1024)
    targets = tmp_path / "build"
    (targets / LINE).mkdir(parents=True)
    (targets / TARGET).write_bytes(firmware)
    info = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=(LINE,))
    alice = OfflineRepository(offline, now=_now(), signers=[keys["alice"]])
    add_firmware(alice, image=targets / TARGET, name="pump-fw", info=info)
    sign_roles(OfflineRepository(offline, now=_now(), signers=[keys["bob"]]), roles=[LINE])

    with start_server(data_dir) as server:
        secret, confirm_step = _first_login(server, "alice", initial_password)
        started = time.monotonic()
        published = _fwsign_publish(server, offline, targets, secret, {confirm_step})
        publish_seconds = time.monotonic() - started
        assert published.returncode == 0, published.stderr
        assert f"published: {LINE} v2" in published.stdout
        assert "failed attempts since: 0" in published.stderr
        for secret_value in (NEW_PASSWORD, initial_password, secret):
            assert secret_value not in published.stdout + published.stderr

        trusted_root = (offline / "metadata" / "1.root.json").read_bytes()
        assert _device_download(server, trusted_root, tmp_path / "device") == firmware

    assert publish_seconds < PUBLISH_TIMEOUT
    # R27/R28: the log of all of it verifies (fwserver audit verify exits 0).
    report = json.loads(_fwserver("audit", "verify", "--data-dir", str(data_dir), "--json"))
    assert report["ok"] is True
    assert report["entries"] >= 10


def test_a_release_imported_without_its_firmware_gets_it_from_fwsign_publish(
    tmp_path: Path,
) -> None:
    """README order: add and sign 2.4.0, import it without files, then publish sends the file.

    Before, publish said "nothing to publish" and the signed release could never
    be downloaded; now it finds the published target without a file and uploads it
    (PUT /api/v1/targets/<path>), and a stock device installs it.
    """
    keys = {name: CryptoSigner.generate_ed25519() for name in PEOPLE}
    data_dir = new_data_dir(tmp_path)
    offline = _offline_repository(tmp_path / "offline", ServerConfig.load(data_dir), keys)
    firmware = os.urandom(64 * 1024)
    targets = tmp_path / "build"
    (targets / LINE).mkdir(parents=True)
    (targets / TARGET).write_bytes(firmware)
    info = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=(LINE,))
    add_firmware(
        OfflineRepository(offline, now=_now(), signers=[keys["alice"]]),
        image=targets / TARGET,
        name="pump-fw",
        info=info,
    )
    sign_roles(OfflineRepository(offline, now=_now(), signers=[keys["bob"]]), roles=[LINE])
    _fwserver("import", "--data-dir", str(data_dir), "--allow-missing-files", str(offline))
    added = _fwserver(
        "user", "add", "--data-dir", str(data_dir), "--role", "release_engineer", "alice"
    )
    initial_password = added.rsplit(": ", 1)[1].strip()

    with start_server(data_dir) as server:
        secret, confirm_step = _first_login(server, "alice", initial_password)
        published = _fwsign_publish(server, offline, targets, secret, {confirm_step})
        assert published.returncode == 0, published.stderr
        assert f"firmware of releases published before: {TARGET}" in published.stdout
        assert "nothing to publish" not in published.stdout
        trusted_root = (offline / "metadata" / "1.root.json").read_bytes()
        assert _device_download(server, trusted_root, tmp_path / "device") == firmware
