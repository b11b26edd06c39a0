"""``fwsign bundle`` from a technician's laptop against the real server over TLS (issue 13).

The ward (``tests.e2e.ward``): release 2.0.0 needs a technician's
authorization; pump-0001 of ward 3 is registered. Tom, a technician of
ward 3, logs in with password and code and confirms with a fresh code (R9,
R25); the file he gets is the device's bundle with an authorization bound to
pump-0001 and to the SHA-256 of the signed image, what the pump imports from
removable media (R46). A refusal leaves no file, partial or whole. Each
technician is enrolled without a login of its own, so the login and the
confirmation take the next two steps and no test waits for a TOTP step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fwcommon.bundle import AUTHORIZATION, Bundle
from repo_metadata.authorization import SignedAuthorization
from signer.cli import main as fwsign
from tests.e2e.conftest import RunningServer
from tests.e2e.people import LOGIN, PASSWORD, _ok, step_now
from tests.e2e.ward import TARGET, Ward, fwserver_cli, pump, serve_ward
from tests.unprivileged import invoke_fwserver
from update_server.mfa.totp import code_at

BOUND = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    with serve_ward(tmp_path_factory.mktemp("fwsign-bundle")) as served:
        pump(served, "pump-0001")
        yield served


def technician(server: RunningServer, name: str, *sites: str) -> tuple[str, int]:
    """A technician whose first login is finished, never logged in since: (secret, step)."""
    argv = ["user", "add", "--data-dir", str(server.data_dir), "--role", "technician", name]
    added = invoke_fwserver(argv)
    assert added.exit_code == 0, added.output
    initial = added.output.strip().split()[-1]
    first = _ok(server, LOGIN, {"username": name, "password": initial})["token"]
    secret = _ok(server, "/api/v1/auth/totp/enroll", None, first)["secret"]
    step = step_now()
    _ok(server, "/api/v1/auth/totp/confirm", {"otp": code_at(secret, step - 1)}, first)
    change = {"current_password": initial, "new_password": PASSWORD}
    _ok(server, "/api/v1/auth/password", change, first)
    for site in sites:
        fwserver_cli(server, "user", "scope", name, "--site", site)
    return secret, step


def fwsign_bundle(server: RunningServer, name: str, secret: str, step: int, *args: str) -> Result:
    """``fwsign bundle`` as the technician runs it: login code, then the next step's."""
    login = max(step, step_now())
    env = {
        "FWSIGN_PASSWORD": PASSWORD,
        "FWSIGN_OTP": code_at(secret, login),
        "FWSIGN_BUNDLE_OTP": code_at(secret, login + 1),
    }
    argv = ["bundle", "--server", server.url, "--ca", str(server.ca), "--user", name, *args]
    return CliRunner().invoke(fwsign, argv, env=env)


def test_a_technician_downloads_the_pumps_bundle_with_its_authorization_r9_r46_r58(
    ward: Ward, tmp_path: Path
) -> None:
    secret, step = technician(ward.server, "tom", "ward-3")
    output = tmp_path / "usb" / "pump-0001.tar"
    output.parent.mkdir()
    made = fwsign_bundle(
        ward.server, "tom", secret, step, "--device", "pump-0001", "-o", str(output)
    )
    assert made.exit_code == 0, made.output
    data = output.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    image = hashlib.sha256((ward.work / "pump-fw-2.0.0.bin").read_bytes()).hexdigest()
    with Bundle.open(output, max_bytes=BOUND) as bundle:
        manifest = bundle.manifest
        signed = SignedAuthorization.from_bytes(bundle.read(AUTHORIZATION, limit=16 * 1024))
    auth = signed.authorization
    assert (manifest.device, manifest.release) == ("pump-0001", TARGET)
    assert (auth.device_id, auth.target_path, auth.sha256, auth.technician) == (
        "pump-0001",
        TARGET,
        image,
        "tom",
    )
    assert f"release: {TARGET}" in made.stdout
    assert f"authorization: included, expires {auth.expires.isoformat()}" in made.stdout
    assert f"sha256: {sha256}" in made.stdout
    assert PASSWORD not in made.output
    assert sorted(p.name for p in output.parent.iterdir()) == ["pump-0001.tar"]

    again = CliRunner().invoke(
        fwsign,
        ["bundle", "--server", ward.server.url, "--ca", str(ward.server.ca), "--user", "tom",
         "--device", "pump-0001", "-o", str(output)],
    )  # fmt: skip
    assert again.exit_code != 0
    assert "exists: give a new file name" in again.output
    assert output.read_bytes() == data, "an existing bundle is never replaced"


def test_a_device_outside_the_technicians_sites_is_refused_and_no_file_is_left_r6(
    ward: Ward, tmp_path: Path
) -> None:
    secret, step = technician(ward.server, "sue", "ward-9")
    output = tmp_path / "pump-0001.tar"
    refused = fwsign_bundle(
        ward.server, "sue", secret, step, "--device", "pump-0001", "-o", str(output)
    )
    assert refused.exit_code != 0
    assert "the server refused (404): no device pump-0001" in refused.output
    assert list(tmp_path.iterdir()) == [], "no file, partial or whole"
