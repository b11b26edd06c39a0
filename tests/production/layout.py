"""The production layout, brought up for real: PostgreSQL, gunicorn, nginx (deploy/).

``production_layout`` starts, in one temporary directory that the
unprivileged users can reach:

- PostgreSQL from Debian (``tests.pg``), one schema for the server;
- a data directory made by ``fwserver init`` on it, with
  ``trusted_proxy_hops`` 1 (nginx alone in front) and 3 failed logins per
  source, holding release 2.0.0 of the ward's pumps (a technician's
  authorization required), signed offline by keys this module keeps so
  that a later release can be signed;
- ``fwserver serve`` with 3 gunicorn workers (``tests.e2e.conftest``);
- nginx from Debian with ``deploy/nginx``'s configuration in front of it
  (``tests.production.nginx``), serving the repository directory itself.

``Front`` is the server as clients see it through nginx: its ``pool()``
connects from a loopback address of its own (127.0.0.5 by default), so the
address nginx sees differs from nginx's own (127.0.0.1) and the audit log
shows which one the server took. Everything is stopped and removed on leaving.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from securesystemslib.signer import Signer
from sqlalchemy import select

from fwcommon.files import atomic_write
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import add_firmware
from signer.repository import OfflineRepository
from tests.e2e.conftest import RunningServer, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.people import Person, enrolled
from tests.e2e.ward import Ward, fwserver_cli
from tests.hsm_mock.helpers import FAST_KDF, skip_or_fail
from tests.pg import PostgresServer, PostgresUnavailableError, postgres_session
from tests.production.nginx import RunningNginx, grant_repository, nginx_binary, start_nginx
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.db import make_engine
from update_server.models import AuditEntry
from update_server.setup import init_data_dir
from update_server.tls import CA_CERT_FILE, CERT_FILE, KEY_FILE, TLS_DIR

#: Where people's clients connect from: not nginx's own address (127.0.0.1).
PERSON_ADDRESS = "127.0.0.5"
WORKERS = 3
SOURCE_LIMIT = 3
#: Small enough for a test to reach, large enough for the logins of the story.
LOGIN_RATE, LOGIN_BURST = "10r/m", "8"


@dataclass(frozen=True)
class Front(RunningServer):
    """The server through nginx; people's requests come from ``source``."""

    source: str = PERSON_ADDRESS

    def pool(self, **settings: Any) -> urllib3.PoolManager:
        return super().pool(source_address=(self.source, 0), **settings)

    def from_address(self, source: str) -> Front:
        return replace(self, source=source)


@dataclass(frozen=True)
class Layout:
    gunicorn: RunningServer
    front: Front
    nginx: RunningNginx
    ward: Ward
    keys: dict[str, Signer]
    offline: Path
    alice: Person
    work: Path

    def audit(self) -> list[dict[str, Any]]:
        """Every audit entry in order, read from the database."""
        engine = make_engine(ServerConfig.load(self.gunicorn.data_dir).database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(select(AuditEntry.__table__).order_by(AuditEntry.seq))
                return [dict(row._mapping) for row in rows]
        finally:
            engine.dispose()

    def access_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.nginx.access_log.read_text().splitlines()]


@contextlib.contextmanager
def production_layout() -> Iterator[Layout]:
    nginx_binary()  # skip (fail under CI) before starting anything
    time.monotonic()
    with _postgres() as postgres, _work_dir() as work:
        schema = postgres.fresh_schema()
        data_dir = init_data_dir(
            work / "data", database_url=postgres.url(schema), kdf=FAST_KDF
        ).config.data_dir
        _configure(data_dir, trusted_proxy_hops=1, max_failed_logins_per_source=SOURCE_LIMIT)
        offline = work / "offline"
        keys = _offline_release(offline, ServerConfig.load(data_dir), work)
        import_repository(data_dir, offline, targets_dir=work)
        with start_server(data_dir, workers=WORKERS) as gunicorn:
            fwserver_cli(gunicorn, "fleet", "install", LINE, "newest")
            grant_repository(data_dir)
            tls = data_dir / TLS_DIR
            values = {
                "SERVER_NAME": "localhost",
                "REPOSITORY": str(data_dir / "repository"),
                "UPSTREAM": gunicorn.url.removeprefix("https://"),
                "LOGIN_RATE": LOGIN_RATE,
                "LOGIN_BURST": LOGIN_BURST,
            }
            with start_nginx(
                values,
                certificate=tls / CERT_FILE,
                key=tls / KEY_FILE,
                upstream_ca=tls / CA_CERT_FILE,
            ) as nginx:
                front = Front(
                    nginx.url,
                    gunicorn.ca,
                    data_dir,
                    gunicorn.process,
                    gunicorn.log,
                    gunicorn.stdout,
                )
                ward = Ward(front, offline / "metadata" / "1.root.json", work)
                alice = enrolled(front, "alice")
                yield Layout(gunicorn, front, nginx, ward, keys, offline, alice, work)
        postgres.drop_schema(schema)


def sign_release(layout: Layout, version: str, *, security_version: int) -> Path:
    """Alice and bob sign ``version`` offline; the directory fwsign publish takes it from."""
    build = layout.work / f"build-{version}"
    image = build / LINE / f"pump-fw-{version}.bin"
    image.parent.mkdir(parents=True)
    image.write_bytes(os.urandom(64 * 1024))
    info = FirmwareInfo(version=version, security_version=security_version, hardware_models=(LINE,))
    engineers = [layout.keys["alice"], layout.keys["bob"]]
    repository = OfflineRepository(layout.offline, now=datetime.now(UTC), signers=engineers)
    add_firmware(repository, image=image, name="pump-fw", info=info)
    return build


def _offline_release(path: Path, config: ServerConfig, work: Path) -> dict[str, Signer]:
    """tests.e2e.offline's repository (2.0.0, authorization required), its keys kept."""
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(64 * 1024))
    info = FirmwareInfo(
        version="2.0.0", security_version=1, hardware_models=(LINE,), requires_authorization=True
    )
    return make_repository(path, config, image, info, authorization=True)


def _configure(data_dir: Path, **settings: Any) -> None:
    """Change settings in server.json, as an operator edits it."""
    config = ServerConfig.load(data_dir).with_changes(**settings)
    atomic_write(
        data_dir / CONFIG_FILE, json.dumps(config.to_file_json(), indent=2).encode(), mode=0o600
    )


@contextlib.contextmanager
def _postgres() -> Iterator[PostgresServer]:
    sessions = postgres_session()
    server = next(sessions)
    try:
        if isinstance(server, PostgresUnavailableError):
            skip_or_fail(f"the production layout needs PostgreSQL: {server}")
        yield server
    finally:
        for _ in sessions:  # resumed past its yield, the session stops the server
            pass


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    """A directory the server's and nginx's users can enter (pytest's own is private)."""
    work = Path(tempfile.mkdtemp(prefix="fwtest-layout-", dir="/tmp"))
    work.chmod(0o711)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
