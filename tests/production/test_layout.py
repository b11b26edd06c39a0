"""The production layout for real (issue 12): nginx, gunicorn, PostgreSQL, started by the tests.

One layout for the module (``tests.production.layout``): nginx from Debian
with deploy/nginx's configuration, 3 gunicorn workers of ``fwserver serve``,
PostgreSQL from Debian, all unprivileged, in one temporary directory. Through
nginx only: a technician authorizes a pump, which installs the release, a
release engineer publishes the next one with fwsign, and the pump installs
that too, its metadata and firmware served by nginx from the repository
directory itself (R45). The server trusts nginx alone (``trusted_proxy_hops``
1): the audit log and the per-source login limit see the client's address,
whatever X-Forwarded-For it sends (R9, R27, R31). nginx limits logins per
source itself, with a problem+json 429.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT, fwclient
from tests.e2e.people import PASSWORD, call, enrolled
from tests.e2e.ward import TARGET, fwserver_cli, pump
from tests.production.layout import (
    PERSON_ADDRESS,
    SOURCE_LIMIT,
    Layout,
    production_layout,
    sign_release,
)
from update_server.mfa.totp import INTERVAL, code_at
from update_server.publication.release import ExpectedTarget
from update_server.publication.upload import receive, staged_file

FORGED = "203.0.113.66"
LOGIN = "/api/v1/auth/login"
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def layout() -> Iterator[Layout]:
    with production_layout() as running:
        yield running


def test_a_technician_authorization_an_update_and_a_publication_all_go_through_nginx(
    layout: Layout,
) -> None:
    """Issue 12: the layout updates a device; metadata and firmware come from nginx itself."""
    ward, front = layout.ward, layout.front
    pump1 = pump(ward, "pump-0001")
    waiting = fwclient("update", *pump1)
    assert waiting.returncode == 0, waiting.stderr
    assert "needs a technician's authorization" in waiting.stdout

    tom = enrolled(front, "tom", role="technician")
    fwserver_cli(front, "user", "scope", "tom", "--site", "ward-3")
    body = {"device_ids": ["pump-0001"], "target_path": TARGET}
    headers = {**tom.headers, "X-OTP": tom.unused_code()}
    status, answer, _ = call(front, "POST", "/api/v1/authorizations", body, headers)
    assert status == 201, answer
    _install(pump1, "2.0.0")

    build = sign_release(layout, "2.1.0", security_version=2)
    published = _fwsign_publish(layout, build)
    assert published.returncode == 0, published.stderr
    _install(pump1, "2.1.0")

    log = layout.access_log()
    static = [e for e in log if e["uri"].startswith(("/metadata/", "/targets/"))]
    firmware = [e for e in static if e["uri"].startswith("/targets/") and e["status"] == 200]
    assert {Path(e["uri"]).name.split(".", 1)[1] for e in firmware} >= {
        "pump-fw-2.0.0.bin",
        "pump-fw-2.1.0.bin",
    }
    assert all(entry["upstream"] == "" for entry in static), "nginx serves the repository itself"
    polls = [e for e in log if e["uri"].startswith("/api/v1/device/")]
    assert polls and all(entry["upstream"] for entry in polls), "device requests reach gunicorn"
    uploads = [e for e in log if e["method"] == "PUT" or e["uri"].startswith("/api/v1/releases")]
    assert uploads and all(entry["upstream"] for entry in uploads)

    toms = [entry for entry in layout.audit() if entry["actor"] == "tom"]
    assert any(entry["action"] == "authorization.issue" for entry in toms)
    assert {entry["source"] for entry in toms} == {PERSON_ADDRESS}


def test_the_client_address_reaches_the_audit_log_and_the_login_limit_not_a_forged_one(
    layout: Layout,
) -> None:
    """R9, R27, R31: nginx appends the peer it saw; the server takes that, not what was sent."""
    guesser, other = layout.front.from_address("127.0.0.2"), layout.front.from_address("127.0.0.3")
    statuses = []
    for number in range(SOURCE_LIMIT + 1):
        forged = {"X-Forwarded-For": f"{FORGED}, 198.51.100.{number}"}
        status, answer, _ = call(guesser, "POST", LOGIN, _wrong_login(), forged)
        statuses.append((status, answer.get("detail", "")))
    assert [status for status, _ in statuses] == [401] * SOURCE_LIMIT + [429]
    assert "failed logins from your address" in statuses[-1][1], "the server's limit, not nginx's"
    status, _, _ = call(other, "POST", LOGIN, _wrong_login(), {"X-Forwarded-For": "127.0.0.2"})
    assert status == 401, "another address is not limited, whatever it claims to be"

    entries = layout.audit()
    failed = [e["source"] for e in entries if e["action"] == "login" and e["outcome"] == "failure"]
    assert failed[-SOURCE_LIMIT - 1 :] == ["127.0.0.2"] * SOURCE_LIMIT + ["127.0.0.3"]
    assert not any(FORGED in e["source"] or "198.51" in e["source"] for e in entries)


def test_nginx_limits_logins_per_source_with_a_problem_json_429(layout: Layout) -> None:
    """R9: past its burst one source is refused by nginx itself, before gunicorn; others are not."""
    flooder = layout.front.from_address("127.0.0.6")
    answers = [call(flooder, "POST", LOGIN, _wrong_login())[:2] for _ in range(12)]
    refused = [
        answer for status, answer in answers if status == 429 and "requests" in answer["detail"]
    ]
    assert refused, [status for status, _ in answers]
    assert refused[0]["title"] == "Too Many Requests"
    status, _, _ = call(layout.front.from_address("127.0.0.7"), "POST", LOGIN, _wrong_login())
    assert status == 401
    entries = [e for e in layout.access_log() if e["client"] == "127.0.0.6" and e["uri"] == LOGIN]
    assert any(e["status"] == 429 and e["upstream"] == "" for e in entries)


def test_nginx_serves_metadata_and_firmware_with_tufs_caching_and_the_servers_headers(
    layout: Layout,
) -> None:
    """Timestamp and root are revalidated, versioned files immutable; nothing else is served."""
    pool = layout.front.pool()
    url = layout.front.url
    timestamp = pool.request("GET", f"{url}/metadata/timestamp.json")
    assert timestamp.status == 200
    assert timestamp.headers["Cache-Control"] == "public, no-cache"
    assert timestamp.headers["Content-Type"] == "application/json"
    assert timestamp.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in timestamp.headers["Strict-Transport-Security"]
    etag = timestamp.headers["ETag"]
    again = pool.request("GET", f"{url}/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert again.status == 304
    root = pool.request("GET", f"{url}/metadata/1.root.json")
    assert (root.status, root.headers["Cache-Control"]) == (200, IMMUTABLE)

    repository = layout.gunicorn.data_dir / "repository"
    firmware = next(p for p in (repository / "targets").rglob("*.bin"))
    path = "/" + firmware.relative_to(repository).as_posix()
    whole = pool.request("GET", f"{url}{path}")
    assert whole.status == 200
    assert hashlib.sha256(whole.data).hexdigest() == firmware.name.split(".", 1)[0]
    assert whole.headers["Cache-Control"] == IMMUTABLE
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"] == "attachment"
    part = pool.request("GET", f"{url}{path}", headers={"Range": "bytes=10-19"})
    assert (part.status, part.data) == (206, whole.data[10:20])

    for hidden in (
        "/metadata/../../server.json",
        "/metadata/.hidden.json",
        "/targets/pump-x100/pump-fw-2.0.0.bin",  # not a consistent-snapshot name
        f"/targets/{'0' * 64}.missing.bin",
        "/metrics",
    ):
        refused = pool.request("GET", f"{url}{hidden}", redirect=False)
        assert refused.status in (400, 404), hidden
        assert b"server.json" not in refused.data
    pool.clear()


def test_nginx_follows_no_symbolic_link_in_the_repository(layout: Layout) -> None:
    """R6: a link planted in the repository under a name nginx serves reveals nothing.

    ``disable_symlinks on from=$document_root``: only the repository's own
    path (the operator's) is exempt from the check.
    """
    data_dir = layout.gunicorn.data_dir
    secret = data_dir / "not-published.json"  # readable by nginx's group, outside the repository
    secret.write_bytes(b'{"planted": "secret"}')
    secret.chmod(0o644)
    planted = data_dir / "repository" / "metadata" / "999.snapshot.json"
    planted.symlink_to(secret)
    try:
        answer = layout.front.pool().request("GET", f"{layout.front.url}/metadata/{planted.name}")
    finally:
        planted.unlink()
        secret.unlink()
    assert answer.status in (403, 404), answer.status
    assert b"planted" not in answer.data


def test_nginx_speaks_http2_over_tls_12_or_13_only(layout: Layout) -> None:
    """A modern TLS profile: HTTP/2 by ALPN, TLS 1.3 by default, nothing below 1.2."""
    context = ssl.create_default_context(cafile=str(layout.front.ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", layout.nginx.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() == "TLSv1.3"
    tls12 = ssl.create_default_context(cafile=str(layout.front.ca))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", layout.nginx.port), timeout=10) as raw,
        tls12.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        assert "GCM" in tls.cipher()[0] or "CHACHA20" in tls.cipher()[0]
    old = ssl.create_default_context(cafile=str(layout.front.ca))
    with warnings.catch_warnings():  # the point is to offer what is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", layout.nginx.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname="localhost")


def test_published_firmware_is_readable_by_the_web_servers_group(tmp_path: Path) -> None:
    """deploy/README.md: nginx reads the repository as a group member; firmware is public anyway."""
    data = os.urandom(1024)
    target = ExpectedTarget(
        path="pump-x100/pump-fw-9.0.0.bin",
        length=len(data),
        hashes={"sha256": hashlib.sha256(data).hexdigest()},
    )
    with (tmp_path / "image").open("wb+") as stream:
        stream.write(data)
        stream.seek(0)
        receive(stream, target, directory=tmp_path / "staging", limit=1 << 20)
    mode = staged_file(tmp_path / "staging", target).stat().st_mode
    assert mode & 0o040, oct(mode)


def _install(pump_args: list[str], version: str) -> None:
    """One update through nginx that installs ``version``, then boot and report."""
    installed = fwclient("update", *pump_args)
    assert installed.returncode == 0, installed.stderr
    assert version in installed.stdout, installed.stdout
    booted = fwclient("boot", "--state", pump_args[1])
    assert booted.returncode == 0, booted.stderr
    reported = fwclient("report", *pump_args)
    assert reported.returncode == 0, reported.stderr


def _wrong_login() -> dict[str, str]:
    return {"username": "nobody-here", "password": "not the password"}


def _fwsign_publish(layout: Layout, build: Path) -> subprocess.CompletedProcess[str]:
    """``fwsign publish`` as alice runs it, through nginx, secrets from the environment."""
    alice = layout.alice
    login_step, publish_step = _two_fresh_steps(after=alice.login_step)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSIGN_")}
    env |= {
        "FWSIGN_PASSWORD": PASSWORD,
        "FWSIGN_OTP": code_at(alice.secret, login_step),
        "FWSIGN_PUBLISH_OTP": code_at(alice.secret, publish_step),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-c", "from signer.cli import main; main()", "publish"]
    argv += ["--repo", str(layout.offline), "--server", layout.front.url]
    argv += ["--ca", str(layout.front.ca), "--user", "alice", "--targets-dir", str(build)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def _two_fresh_steps(*, after: int) -> tuple[int, int]:
    """Two TOTP steps later than ``after`` that the server accepts now (one step of skew).

    Waits only when fewer than two fit, or when the current step ends within 3 s.
    """
    while True:
        if INTERVAL - time.time() % INTERVAL < 3:
            time.sleep(INTERVAL - time.time() % INTERVAL + 0.1)
        now = int(time.time()) // INTERVAL
        fresh = [step for step in (now - 1, now, now + 1) if step > after]
        if len(fresh) >= 2:
            return fresh[0], fresh[1]
        time.sleep(INTERVAL - time.time() % INTERVAL + 0.1)
