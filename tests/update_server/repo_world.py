"""A world for publication tests: people with keys, an offline repository, server users.

Keys are generated in the test (``CryptoSigner``); the offline repository is
made with ``fwsign``'s library, its snapshot and timestamp keys being the
server's online keys, and imported with ``import_repository``. Users and
sessions go straight into the database; the fresh one-time code that
publishing needs is checked by ``FakeOtp`` (each code accepted once).
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata
from tuf.ngclient import FetcherInterface, Updater
from werkzeug.test import TestResponse

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer import layout
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from update_server.app import Services
from update_server.auth import otp, sessions
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.errors import AuthenticationError
from update_server.models import Role, User
from update_server.publication.bootstrap import ImportResult, import_repository

PEOPLE = (
    "officer1", "officer2", "officer3", "manager1", "manager2",
    "alice", "bob", "carol", "dave",
)  # fmt: skip
_KEYS: dict[str, Signer] = {}
LINES = {"pump-x100": ("alice", "bob"), "monitor-m20": ("carol", "dave")}


def key(name: str) -> Signer:
    """One key per person, made once per test run (R47: one key, one use)."""
    if name not in _KEYS:
        _KEYS[name] = CryptoSigner.generate_ed25519()
    return _KEYS[name]


def image_bytes(tag: str, size: int = 20_000) -> bytes:
    seed = tag.encode() * (size // max(1, len(tag)) + 1)
    return b"\x7fFW" + seed[: size - 3]


class FakeOtp:
    """Stands in for ``auth.otp.consume``: six digits, each accepted once per user."""

    def __init__(self) -> None:
        self.used: set[tuple[int, str]] = set()
        self.next = 100_000

    def code(self) -> str:
        self.next += 1
        return str(self.next)

    def __call__(self, db: Any, user: User, code: str, **_: Any) -> int:
        if not (code.isdigit() and len(code) == 6) or (user.id, code) in self.used:
            raise AuthenticationError("one-time code refused")
        self.used.add((user.id, code))
        return int(code)


class ClientFetcher(FetcherInterface):
    """A stock ngclient's network: the Flask test client of the server."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.requests: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = urlparse(url).path
        self.requests.append(path)
        with self.client.get(path) as response:
            if response.status_code != 200:
                raise DownloadHTTPError(f"{path}: {response.status_code}", response.status_code)
            data = response.get_data()
        yield data


@dataclass
class World:
    """The server under test plus everyone around it."""

    app: Flask
    config: ServerConfig
    clock: Any
    tmp: Path
    otp: FakeOtp
    offline: Path = field(init=False)
    client: FlaskClient = field(init=False)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    user_roles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offline = self.tmp / "offline"
        self.client = self.app.test_client()

    @property
    def services(self) -> Services:
        services: Services = self.app.extensions["fw"]
        return services

    @property
    def now(self) -> datetime:
        now: datetime = self.clock()
        return now

    @property
    def repository(self) -> Path:
        return self.config.repository_dir

    # -- offline side (fwsign) --------------------------------------------------

    def open_offline(self, *names: str) -> OfflineRepository:
        return OfflineRepository(self.offline, now=self.now, signers=[key(n) for n in names])

    def make_offline(self) -> None:
        """Root 2-of-3 officers, targets 1-of-2 managers, two product lines 2-of-2."""
        online = {
            role: public_key_from_uri(self.config.online_keys[role])
            for role in ("snapshot", "timestamp")
        }
        repo = OfflineRepository(
            self.offline,
            now=self.now,
            signers=[key("officer1"), key("officer2"), key("manager1")],
            create=True,
        )
        init_repository(
            repo,
            root=RoleKeys([key(n).public_key for n in ("officer1", "officer2", "officer3")], 2),
            targets=RoleKeys([key("manager1").public_key, key("manager2").public_key], 1),
            snapshot=online["snapshot"],
            timestamp=online["timestamp"],
        )
        for line, engineers in LINES.items():
            delegate(
                self.open_offline("manager1"),
                name=line,
                path_prefix=f"{line}/",
                keys=RoleKeys([key(n).public_key for n in engineers], 2),
            )
            for engineer in engineers:
                sign_roles(self.open_offline(engineer), roles=[line])

    def bootstrap(self) -> ImportResult:
        self.make_offline()
        return import_repository(self.config, self.services.signer, self.offline, self.now)

    def add_release(
        self,
        version: str,
        *,
        line: str = "pump-x100",
        data: bytes | None = None,
        sign: int = 2,
        requires_authorization: bool = False,
    ) -> tuple[str, bytes]:
        """Sign a firmware into ``line`` offline; return its target path and bytes."""
        data = image_bytes(f"{line}-{version}") if data is None else data
        image = self.tmp / f"{line}-{version}.bin"
        image.write_bytes(data)
        info = FirmwareInfo(
            version=version,
            security_version=1,
            hardware_models=(line,),
            requires_authorization=requires_authorization,
        )
        engineers = LINES[line]
        add_firmware(self.open_offline(engineers[0]), image=image, name="fw", info=info)
        if sign > 1:
            sign_roles(self.open_offline(*engineers[1:sign]), roles=[line])
        return f"{line}/fw-{version}.bin", data

    def role_json(self, role: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(layout.role_file(self.offline, role).read_bytes())
        return loaded

    # -- server side ----------------------------------------------------------------

    def login(self, name: str, role: str) -> dict[str, str]:
        """A user with finished first login and a session; returns auth headers."""
        with transaction(self.services.sessions) as db:
            user = db.query(User).filter_by(name=name).one_or_none()
            if user is None:
                user = User(
                    name=name,
                    role=role,
                    password_hash="!",
                    must_change_password=False,
                    totp_enrolled=True,
                    created_at=self.now,
                )
                db.add(user)
                db.flush()
            token = sessions.create(
                db, user, now=self.now, config=self.config, login_step=0, source="test"
            )
        self.headers[name] = {"Authorization": f"Bearer {token}"}
        return self.headers[name]

    def as_(self, name: str, role: str = Role.RELEASE_ENGINEER) -> dict[str, str]:
        return self.headers.get(name) or self.login(name, role)

    def upload(
        self, who: str, roles: dict[str, Any], role: str = Role.RELEASE_ENGINEER
    ) -> TestResponse:
        return self.client.post(
            "/api/v1/releases", json={"metadata": roles}, headers=self.as_(who, role)
        )

    def put(self, who: str, release: str, path: str, data: bytes) -> TestResponse:
        return self.client.put(
            f"/api/v1/releases/{release}/targets/{path}",
            data=data,
            headers={**self.as_(who), "Content-Type": "application/octet-stream"},
        )

    def publish(self, who: str, release: str, code: str | None = None) -> TestResponse:
        headers = {**self.as_(who), "X-OTP": code or self.otp.code()}
        return self.client.post(f"/api/v1/releases/{release}/publish", headers=headers)

    def release(
        self,
        who: str,
        version: str,
        *,
        line: str = "pump-x100",
        requires_authorization: bool = False,
    ) -> str:
        """Sign, upload and stage one firmware; return the upload id (not published)."""
        path, data = self.add_release(
            version, line=line, requires_authorization=requires_authorization
        )
        answer = self.upload(who, {line: self.role_json(line)})
        assert answer.status_code == 201, answer.get_json()
        release: str = answer.get_json()["id"]
        assert self.put(who, release, path, data).status_code == 201
        return release

    def updater(self, workdir: Path) -> Updater:
        """A stock ngclient that trusts root v1 and reads this server."""
        (workdir / "metadata").mkdir(parents=True, exist_ok=True)
        (workdir / "targets").mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(workdir / "metadata"),
            metadata_base_url="https://server.test/metadata/",
            target_dir=str(workdir / "targets"),
            target_base_url="https://server.test/targets/",
            fetcher=ClientFetcher(self.client),
            bootstrap=(self.repository / "metadata" / "1.root.json").read_bytes(),
        )


def make_world(
    app: Flask, config: ServerConfig, clock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    """A world whose server already publishes the imported repository."""
    fake = FakeOtp()
    monkeypatch.setattr(otp, "consume", fake)
    world = World(app, config, clock, tmp_path, fake)
    world.bootstrap()
    return world


def resign(
    document: dict[str, Any], *signers: str, mutate: Callable[[Any], object] | None = None
) -> dict[str, Any]:
    """``document`` changed by ``mutate`` and signed anew by ``signers``."""
    md = Metadata.from_dict(copy.deepcopy(document))
    if mutate is not None:
        mutate(md.signed)
    md.signatures.clear()
    for name in signers:
        md.sign(key(name), append=True)
    return md.to_dict()


def repository_files(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (hidden ones too) as {relative path: bytes}."""
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


class Body(io.RawIOBase):
    """A request body made on the fly: ``block`` repeated up to ``total`` bytes.

    It declares ``declared`` bytes (default ``total``) to the test client,
    which seeks to the end to measure a body, and counts what the server read.
    ``total=None`` never ends (the TUF endless data attack).
    """

    def __init__(self, block: bytes, total: int | None, declared: int | None = None) -> None:
        self.block = block
        self.total = total
        self.declared = declared if declared is not None else (total or 10**12)
        self.read_bytes = 0
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = self.declared if whence == io.SEEK_END else offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        if self.total is not None:
            size = min(size, self.total - self.read_bytes)
        start = self.read_bytes % len(self.block)
        # The block repeated from where the last read stopped, in one copy (a one-byte
        # block read byte by byte made an endless body's drain take seconds).
        pattern = self.block[start:] + self.block * (size // len(self.block) + 1)
        memoryview(buffer)[:size] = pattern[:size]
        self.read_bytes += size
        return size

    def content(self) -> bytes:
        """Everything a finite body holds (for small bodies in assertions)."""
        if self.total is None:
            raise ValueError("an endless body has no content")
        repeats = self.total // len(self.block) + 1
        return (self.block * repeats)[: self.total]
