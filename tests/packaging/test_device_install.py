"""A device-only install updates a device (issue 12's done-when; R3, R4, R45).

The ``fwupdate-device`` wheel is built from this checkout (tools/dist.py)
and installed into an empty virtual environment with its dependencies
from wheels of the device's lock only (``--no-index``, ``--require-hashes``:
each file must be the one the lock's hashes name). In that environment the
server's packages and its web, database and WSGI libraries cannot be
imported; its ``fwclient`` then provisions a pump, registers it with the
real server over TLS, installs a release, boots it and sends a signed report.

The lock's wheels are downloaded once into ``build/wheels/device-<digest of
the lock>`` and reused by later runs (no network then). When they are not
there yet and the package index cannot be reached, the test skips locally
and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.ward import fwserver_cli
from tests.hsm_mock.helpers import skip_or_fail
from tests.packaging.imports import ROOT, read_lock
from update_server.config import ServerConfig

LOCK = ROOT / "requirements-device.lock"
CACHE = ROOT / "build" / "wheels"
#: What a device must not be able to import (issue 12): the server's own
#: packages and what only they use.
ABSENT = (
    "flask", "werkzeug", "jinja2", "sqlalchemy", "gunicorn", "alembic", "psycopg",
    "prometheus_client", "update_server", "signer", "hsm_mock",
)  # fmt: skip
#: Signs of an index the machine cannot reach, in pip's words.
UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "ConnectTimeoutError",
    "Network is unreachable",
    "Could not fetch URL",
)
DEVICE_ID = "pump-dev-1"


def pip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"pip {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def lock_wheels() -> Path:
    """The directory of the device lock's wheels, downloaded on first use."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    wheels = CACHE / f"device-{digest}"
    download = ["download", "--only-binary", ":all:", "--require-hashes", "--no-deps"]
    if wheels.is_dir():
        offline = [*download, "--no-index", "--find-links", str(wheels), "-d", str(wheels)]
        if pip(*offline, "-r", str(LOCK), check=False).returncode == 0:
            return wheels
        shutil.rmtree(wheels)  # damaged: fetched again below
    partial = CACHE / f".device-{digest}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    fetched = pip(
        *download, "--retries", "1", "--timeout", "20", "-d", str(partial), "-r", str(LOCK),
        check=False,
    )  # fmt: skip
    if fetched.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        if any(sign in fetched.stdout + fetched.stderr for sign in UNREACHABLE):
            skip_or_fail("the package index is unreachable: cannot download the device's wheels")
        pytest.fail(f"pip download of the device lock failed:\n{fetched.stderr}")
    partial.rename(wheels)  # whole or not at all: a later run trusts what is there
    return wheels


@dataclass(frozen=True)
class DeviceEnv:
    """An empty virtual environment with only fwupdate-device and its locked wheels."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        """A command of this environment, with none of the checkout on its path."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FWCLIENT_"))}
        return subprocess.run(
            [str(arg) for arg in argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.path,
            timeout=120,
            check=False,
        )

    def fwclient(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run(self.path / "bin" / "fwclient", *args)


@pytest.fixture(scope="module")
def device_env(tmp_path_factory: pytest.TempPathFactory) -> DeviceEnv:
    work = tmp_path_factory.mktemp("device-install")
    wheels = lock_wheels()
    built = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "dist.py"), "--device-only", str(work / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("fwupdate_device-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = ["--isolated", "--python", str(venv / "bin" / "python")]
    pip(*target, "install", "--no-index", "--find-links", str(wheels), "--require-hashes",
        "-r", str(LOCK))  # fmt: skip
    pip(*target, "install", "--no-index", "--no-deps", str(wheel))
    pip(*target, "check")  # every Requires-Dist of fwupdate-device is met by the lock
    return DeviceEnv(venv)


def test_the_device_environment_holds_the_lock_and_nothing_of_the_server(
    device_env: DeviceEnv,
) -> None:
    """Issue 12: no Flask, SQLAlchemy, gunicorn or database driver on a device (R3)."""
    probe = (
        "import importlib.util, importlib.metadata, json, sys\n"
        f"absent = {ABSENT!r}\n"
        "print(json.dumps({'importable': [m for m in absent if importlib.util.find_spec(m)],"
        " 'installed': sorted(d.metadata['Name'] for d in importlib.metadata.distributions()),"
        " 'client': importlib.util.find_spec('client').origin}))"
    )
    result = device_env.run(device_env.python, "-I", "-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["importable"] == []
    locked = {pin.name for pin in read_lock(LOCK).values()}
    installed = {name.lower().replace("_", "-") for name in found["installed"]}
    assert installed == locked | {"fwupdate-device"}
    assert found["client"].startswith(str(device_env.path)), "the client comes from the venv"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """The real server publishing pump-fw 1.0.0, its fleet taking the newest release."""
    work = tmp_path_factory.mktemp("device-install-server")
    data_dir = new_data_dir(work)
    image = work / "pump-fw-1.0.0.bin"
    image.write_bytes(os.urandom(64 * 1024))
    offline = work / "offline"
    info = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(offline, ServerConfig.load(data_dir), image, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=work)
    with start_server(data_dir) as running:
        fwserver_cli(running, "fleet", "install", LINE, "newest")
        yield running, offline / "metadata" / "1.root.json"


def test_a_device_only_install_registers_updates_boots_and_reports(
    device_env: DeviceEnv, server: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    """Issue 12's done-when: the device-only fwclient updates a device on the real server."""
    running, root = server
    state = tmp_path / DEVICE_ID
    remote = ["--server", running.url, "--ca", str(running.ca)]
    provisioned = device_env.fwclient(
        "provision", "--state", state, "--root", root, "--hardware-model", LINE,
        "--device-id", DEVICE_ID,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    enrolment = fwserver_cli(
        running, "device", "enrol-token", "--model", LINE, "--device-id", DEVICE_ID,
        "--site", "ward-3", "--accept",
    )  # fmt: skip
    token = tmp_path / "token"
    token.write_text(enrolment.strip().splitlines()[-1])
    token.chmod(0o600)
    registered = device_env.fwclient("register", "--state", state, *remote, "--token-file", token)
    assert registered.returncode == 0, registered.stderr

    updated = device_env.fwclient("update", "--state", state, *remote)
    assert updated.returncode == 0, updated.stderr
    assert "pending a reboot" in updated.stdout, updated.stdout
    healthy = f"{device_env.python} -c 'raise SystemExit(0)'"
    booted = device_env.fwclient("boot", "--state", state, "--health-check", healthy)
    assert booted.returncode == 0, booted.stderr
    status = device_env.fwclient("status", "--state", state, "--json")
    assert json.loads(status.stdout)["running_version"] == "1.0.0", status.stdout
    reported = device_env.fwclient("report", "--state", state, *remote)
    assert reported.returncode == 0, reported.stderr
    assert "acknowledged up to entry" in reported.stdout
    shown = fwserver_cli(running, "device", "show", DEVICE_ID)
    assert "1.0.0" in shown, shown


def test_a_software_token_key_is_refused_in_one_line_on_a_device(
    device_env: DeviceEnv, server: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    """R3: the device install has no software token; fwhsm: is refused, no traceback."""
    _running, root = server
    refused = device_env.fwclient(
        "provision", "--state", tmp_path / "pump", "--root", root, "--hardware-model", LINE,
        "--device-id", "pump-dev-2", "--device-key", "fwhsm:/nonexistent/token?key=device",
    )  # fmt: skip
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "software token (fwhsm:) is not installed here" in lines[0], lines
