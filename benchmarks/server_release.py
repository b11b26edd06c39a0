"""A server data directory with a repository, enrolled people, and real publications.

Set up as in production and the end-to-end story (tests/e2e): the server's
data directory made by ``init_data_dir`` (its own mock-HSM token with the
online keys, default KDF), an offline repository made with the signer
library (root 2 of 3 officers, targets the release manager, product line
``pump-x100`` 2 of 2 alice and bob) and ``fwserver import``-ed, then one
release engineer per publication, added with ``fwserver user add`` and
walked through first login over HTTPS (TOTP enrolment, new password).

A publication is what ``fwsign publish`` does, through the same client
class (``signer.publish.ServerSession``): log in with password and TOTP,
open a release with the product line's new version, stream the firmware
from disk with ``PUT``, publish with a fresh code. Each release engineer
publishes once, so no one ever waits for a new TOTP time step.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import urllib3

from benchmarks.fixtures import People
from benchmarks.server_procs import Service, run_fwserver
from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.publish import (
    Credentials,
    ServerSession,
    find_target_files,
    local_roles,
    roles_to_publish,
)
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.unprivileged import hand_over
from update_server.config import ServerConfig
from update_server.mfa.totp import INTERVAL, code_at
from update_server.publication.repository import target_file
from update_server.setup import init_data_dir

LINE = "pump-x100"
IMAGE_NAME = "pump-fw"


@dataclass(frozen=True)
class Engineer:
    """A release engineer who finished first login."""

    name: str
    password: str
    secret: str


@dataclass(frozen=True)
class Publication:
    """One release published: its target and how long each part took (wall, s)."""

    path: str
    url_path: str
    length: int
    sha256: str
    upload_seconds: float
    publish_seconds: float
    #: From the first byte of the PUT to the answer of the POST publish.
    latency_seconds: float


def _no_watch(_phase: str) -> AbstractContextManager[object]:
    return nullcontext()


class ServerWorld:
    """The data directory, the offline repository and the people who publish to it."""

    def __init__(self, workdir: Path, people: People, *, database_url: str = "") -> None:
        self.workdir = workdir
        self.people = people
        self.data_dir = init_data_dir(workdir / "data", database_url=database_url).config.data_dir
        hand_over(self.data_dir)  # the server's user's, as in production (R6)
        self.config = ServerConfig.load(self.data_dir)
        self.offline = workdir / "offline"
        self.build = workdir / "build"
        self._make_offline()
        run_fwserver("import", "--data-dir", str(self.data_dir), str(self.offline))
        self._count = 0

    def _make_offline(self) -> None:
        people, now = self.people, _now()
        officers = [people[n] for n in ("officer1", "officer2", "officer3")]
        online = {
            role: public_key_from_uri(self.config.online_keys[role])
            for role in ("snapshot", "timestamp")
        }
        init_repository(
            OfflineRepository(
                self.offline, now=now, signers=[*officers[:2], people["manager"]], create=True
            ),
            root=RoleKeys([s.public_key for s in officers], 2),
            targets=RoleKeys([people["manager"].public_key], 1),
            snapshot=online["snapshot"],
            timestamp=online["timestamp"],
        )
        delegate(
            OfflineRepository(self.offline, now=now, signers=[people["manager"]]),
            name=LINE,
            path_prefix=f"{LINE}/",
            keys=RoleKeys([s.public_key for s in people.engineers], 2),
        )
        for engineer in people.engineers:
            sign_roles(OfflineRepository(self.offline, now=now, signers=[engineer]), roles=[LINE])

    def image_path(self, version: str) -> Path:
        """Where the build output of firmware ``version`` goes (``--targets-dir`` layout)."""
        path = self.build / LINE / f"{IMAGE_NAME}-{version}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def sign_release(self, version: str) -> None:
        """alice adds the image (hashing it) and signs, bob signs: 2 of 2."""
        alice, bob = self.people.engineers
        info = FirmwareInfo(version=version, security_version=1, hardware_models=(LINE,))
        add_firmware(
            OfflineRepository(self.offline, now=_now(), signers=[alice]),
            image=self.image_path(version),
            name=IMAGE_NAME,
            info=info,
        )
        sign_roles(OfflineRepository(self.offline, now=_now(), signers=[bob]), roles=[LINE])

    def new_engineer(self, server: Service, *, role: str = "release_engineer") -> Engineer:
        """``fwserver user add``, then first login over HTTPS: enrol TOTP, new password."""
        self._count += 1
        name = f"{role.rsplit('_', maxsplit=1)[-1]}{self._count}"
        added = run_fwserver("user", "add", "--data-dir", str(self.data_dir), "--role", role, name)
        initial = added.rsplit(": ", 1)[1].strip()
        with server.pool() as pool:
            login = _post(pool, server, "/auth/login", {"username": name, "password": initial})
            token = login["token"]
            secret = _post(pool, server, "/auth/totp/enroll", token=token)["secret"]
            # The step before the current one confirms; the login and the
            # publication then use the current step and later ones.
            confirm = {"otp": code_at(secret, _step() - 1)}
            _post(pool, server, "/auth/totp/confirm", confirm, token=token)
            password = secrets.token_urlsafe(24)
            change = {"current_password": initial, "new_password": password}
            _post(pool, server, "/auth/password", change, token=token)
        return Engineer(name, password, secret)

    def publish(
        self,
        server: Service,
        engineer: Engineer,
        version: str,
        *,
        watch: Callable[[str], AbstractContextManager[object]] = _no_watch,
    ) -> Publication:
        """Sign release ``version`` offline, then publish it as ``fwsign publish`` does.

        Timed from the first byte of the PUT to the publish's answer.
        ``watch("upload")`` is entered around the PUT, ``watch("publish")``
        around the POST publish; the login before them stays outside.
        """
        self.sign_release(version)
        session = ServerSession(server.url, ca=server.ca)
        login_step = _step()
        try:
            code = code_at(engineer.secret, login_step)
            session.login(Credentials(engineer.name, engineer.password, code))
            names = roles_to_publish(local_roles(self.offline), session.published_versions())
            metadata = {
                name: json.loads(role.path.read_bytes())
                for name, role in local_roles(self.offline).items()
                if name in names
            }
            release = session.open_release(metadata)
            ((target, file),) = find_target_files(release.expected_targets, self.build)
            with watch("upload"):
                start = time.perf_counter()
                session.upload_target(release, target, file, sent=lambda _n: None)
                uploaded = time.perf_counter()
            # A code later than the login's, inside the server's +/-1 step window.
            otp = code_at(engineer.secret, max(login_step + 1, _step() - 1))
            with watch("publish"):
                before_publish = time.perf_counter()
                session.publish(release, otp=otp)
                published = time.perf_counter()
            session.logout()
        finally:
            session.close()
        return Publication(
            path=target.path,
            url_path="/" + target_file(target.path, target.sha256),
            length=target.length,
            sha256=target.sha256,
            upload_seconds=uploaded - start,
            publish_seconds=published - before_publish,
            latency_seconds=published - start,
        )


def _post(
    pool: urllib3.PoolManager,
    server: Service,
    path: str,
    body: dict[str, str] | None = None,
    *,
    token: str = "",
) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = pool.request(
        "POST", f"{server.url}/api/v1{path}", body=json.dumps(body or {}), headers=headers
    )
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status} {response.data[:300]!r}")
    answer: dict[str, str] = response.json()
    return answer


def _step() -> int:
    return int(time.time()) // INTERVAL


def _now() -> datetime:
    return datetime.now(UTC)
