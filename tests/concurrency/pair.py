"""Two ``fwserver serve`` instances, each with several gunicorn workers, on one PostgreSQL.

What an operator runs past one machine (ARCHITECTURE "Storage and scale"):
two server instances, each its own gunicorn master and workers, sharing one
PostgreSQL database and one data directory (the repository nginx serves,
the online keys, the audit anchor, the publication lock: a shared volume).
Each instance reaches the data directory by a path of its own (a symlink
here, another mount point on another machine), so each has its own log
files beside it. They are started at the same time, so the workers of both
wake up together (the renewal race at start is real).

The offline repository holds three product lines (``LINES``; each test that
publishes has lines of its own, so the tests hold in any order), each
delegated to the two engineers (2 of 2), whose keys are kept to sign more
releases. It is imported with the clock ``IMPORT_AGE``
in the past, so the timestamp the server signed then is past half its
lifetime (renewal due) when the instances start.

``at_once`` sends requests from threads released together by a barrier;
each request has a connection of its own, so any worker of either
instance may take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import urllib3
from click.testing import CliRunner
from securesystemslib.signer import CryptoSigner, Signer

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer import layout
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from tests.e2e.conftest import RunningServer, start_server
from tests.e2e.offline import LINE
from tests.e2e.people import Person, call, step_now
from tests.hsm_mock.helpers import FAST_KDF
from tests.pg import DATABASE, SUPERUSER, PostgresServer
from tests.unprivileged import served
from tests.update_server.webhook_receiver import WebhookReceiver
from update_server import cli as fwserver
from update_server.cli_common import CommandClock
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.mfa.totp import code_at
from update_server.setup import init_data_dir

#: The first is the e2e ward's line (``tests.e2e.ward.pump`` provisions its pumps).
LINES = (LINE, "pump-y200", "pump-z300")
PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob")
#: How long before the instances start the repository was imported: past
#: half the timestamp's one-day lifetime, so its renewal is due at start.
IMPORT_AGE = timedelta(hours=13)
#: Workers per instance (a 2-core machine: 6 workers and PostgreSQL).
WORKERS = 3
#: The database timeout of the pair (``configure``).
DATABASE_TIMEOUT = 30
#: How long a request may take on a shared, loaded machine.
REQUEST_WAIT = 120.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Pair:
    """Two instances of one server, the webhook receiver and the offline side."""

    a: RunningServer
    b: RunningServer
    receiver: WebhookReceiver
    offline: Offline

    @property
    def instances(self) -> tuple[RunningServer, RunningServer]:
        return (self.a, self.b)

    def spread(self, count: int) -> list[RunningServer]:
        """``count`` instances, a and b in turn."""
        return [self.instances[n % 2] for n in range(count)]


@dataclass(frozen=True)
class Offline:
    """The offline repository (its directory, the people's keys) and its firmware images."""

    directory: Path
    keys: dict[str, Signer]
    work: Path

    @property
    def images(self) -> Path:
        """The firmware images, at their target paths (``fwserver import --targets-dir``)."""
        return self.work / "images"

    @property
    def root(self) -> Path:
        return self.directory / "metadata" / "1.root.json"

    def fork(self, name: str) -> Offline:
        """A copy of the repository as it is now, to sign a release that may lose a race."""
        copy = self.work / name
        shutil.copytree(self.directory, copy)
        return Offline(copy, self.keys, self.work)

    def sign(self, line: str, version: str) -> tuple[str, bytes]:
        """The engineers sign ``version`` of ``line`` here; returns its target path and bytes."""
        image = self.images / line / f"pump-fw-{version}.bin"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(os.urandom(4096))
        info = FirmwareInfo(version=version, security_version=1, hardware_models=(line,))
        engineers = [self.keys["alice"], self.keys["bob"]]
        repo = OfflineRepository(self.directory, now=datetime.now(UTC), signers=engineers)
        add_firmware(repo, image=image, name="pump-fw", info=info)
        return f"{line}/pump-fw-{version}.bin", image.read_bytes()

    def role(self, line: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(layout.role_file(self.directory, line).read_bytes())
        return loaded


def make_offline(work: Path, config: ServerConfig) -> Offline:
    """Root (officers 2 of 3), targets (the manager), both lines (alice and bob, 2 of 2)."""
    keys: dict[str, Signer] = {name: CryptoSigner.generate_ed25519() for name in PEOPLE}
    directory = work / "offline"
    now = datetime.now(UTC)
    online = {
        role: public_key_from_uri(config.online_keys[role]) for role in ("snapshot", "timestamp")
    }
    officers = [keys[n] for n in ("officer1", "officer2", "officer3")]
    init_repository(
        OfflineRepository(
            directory, now=now, signers=[*officers[:2], keys["manager"]], create=True
        ),
        root=RoleKeys([k.public_key for k in officers], 2),
        targets=RoleKeys([keys["manager"].public_key], 1),
        snapshot=online["snapshot"],
        timestamp=online["timestamp"],
        authorization=[],
    )
    engineers = RoleKeys([keys["alice"].public_key, keys["bob"].public_key], 2)
    for line in LINES:
        signers = [keys["manager"], keys["alice"], keys["bob"]]
        repo = OfflineRepository(directory, now=now, signers=signers)
        delegate(repo, name=line, path_prefix=f"{line}/", keys=engineers)
    offline = Offline(directory, keys, work)
    for line in LINES:
        offline.sign(line, "2.0.0")
    return offline


def import_in_the_past(data_dir: Path, offline: Offline, *, age: timedelta) -> None:
    """``fwserver import`` as the operator ran it ``age`` ago (its timestamp is that old)."""
    then = datetime.now(UTC) - age
    argv = ["import", "--data-dir", str(data_dir), "--targets-dir", str(offline.images)]
    imported = CliRunner().invoke(
        fwserver.main, [*argv, str(offline.directory)], obj=CommandClock(lambda: then)
    )
    assert imported.exit_code == 0, imported.output


def configure(data_dir: Path, receiver: WebhookReceiver, secret: bytes) -> None:
    """The webhook; limits that would answer for the test machine, not for the property tested.

    Every request comes from 127.0.0.1: a per-source login limit no test
    reaches. Logins of one name at once queue on the name's row lock, each
    for a whole argon2 check (about 0.6 s alone, several seconds on a
    loaded 2-core machine): a database timeout that waits for that queue
    (the timeout's own 503 is tests/e2e/test_server_database's).
    """
    (data_dir / "siem.secret").write_bytes(secret)
    (data_dir / "siem.secret").chmod(0o600)
    settings = json.loads((data_dir / CONFIG_FILE).read_text())
    settings["alert_webhooks"] = [
        {"name": "siem", "url": receiver.url, "secret_file": "siem.secret"}
    ]
    settings["max_failed_logins_per_source"] = 10_000
    settings["database_timeout"] = DATABASE_TIMEOUT
    (data_dir / CONFIG_FILE).write_text(json.dumps(settings))


def shared_data_dir(work: Path, database_url: str) -> Path:
    """A data directory on ``database_url``, made by ``fwserver init`` (fast KDF for the token)."""
    made = init_data_dir(work / "data", database_url=database_url, kdf=FAST_KDF)
    return made.config.data_dir


@contextlib.contextmanager
def serving_pair(data_dir: Path, *, workers: int) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Instance a on ``data_dir``, b on a second path to it; started and stopped together.

    b's path leads to where the servers' user reaches the directory
    (``served``), not through the tests' temporary tree, which only root may
    enter (pytest keeps it 0700).
    """
    with served(data_dir) as reachable, tempfile.TemporaryDirectory(prefix="fwtest-b-") as b:
        mount = Path(b)
        mount.chmod(0o711)  # enter, not list
        (mount / data_dir.name).symlink_to(reachable, target_is_directory=True)
        with _started(data_dir, mount / data_dir.name, workers=workers) as pair:
            yield pair


@contextlib.contextmanager
def _started(a: Path, b: Path, *, workers: int) -> Iterator[tuple[RunningServer, RunningServer]]:
    stacks = (contextlib.ExitStack(), contextlib.ExitStack())
    paths = (a, b)
    with ThreadPoolExecutor(max_workers=2) as threads:
        starting = [
            threads.submit(stack.enter_context, start_server(path, workers=workers))
            for stack, path in zip(stacks, paths, strict=True)
        ]
        wait(starting)  # both started or failed before either is stopped
        try:
            a, b = (future.result() for future in starting)
            yield a, b
        finally:
            for stopping in [threads.submit(stack.close) for stack in stacks]:
                stopping.result()


@contextlib.contextmanager
def audit_log_held(postgres: PostgresServer, schema: str) -> Iterator[Callable[[int], None]]:
    """The audit log's lock held by another client for the block, as a long command holds it.

    Every audited change queues behind it (``audit.store.lock_log``), so
    requests sent at once reach the database's locks together instead of
    one after the other. Yields ``wait_for(n)``: returns once ``n`` of the
    server's connections wait for a lock (bounded).
    """
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=SUPERUSER, password=postgres.password,
        dbname=DATABASE, options=f"-csearch_path={schema}", connect_timeout=10,
    ) as holder, holder.transaction():  # fmt: skip
        holder.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
        yield partial(_wait_for_waiters, postgres, schema)


def _wait_for_waiters(postgres: PostgresServer, schema: str, count: int) -> None:
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + REQUEST_WAIT
    while time.monotonic() < deadline:
        row = postgres.admin().execute(query, (schema,)).fetchone()
        if row is not None and int(str(row[0])) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} requests waited for a lock")


def at_once(calls: Sequence[Callable[[], _T]]) -> list[_T]:
    """Run every call in a thread of its own, all released together; their results in order."""
    barrier = threading.Barrier(len(calls))

    def released(work: Callable[[], _T]) -> _T:
        barrier.wait(timeout=REQUEST_WAIT)
        return work()

    with ThreadPoolExecutor(max_workers=len(calls)) as threads:
        futures = [threads.submit(released, work) for work in calls]
        return [future.result(timeout=REQUEST_WAIT) for future in futures]


def fresh(person: Person, *, after: int = 0) -> tuple[dict[str, str], int]:
    """Headers of a sensitive request (R9): the session and a code of a step after ``after``.

    The step is later than the login's and ``after`` (the last one this
    person used) and valid now; when the next one is not yet (one step of
    skew), this waits for it, as a person waits for their app's next code:
    the server runs on the real clock. Returns the headers and the step.
    """
    step = max(after + 1, person.login_step + 1, step_now())
    while step > step_now() + 1:
        time.sleep(0.2)
    return {**person.headers, "X-OTP": code_at(person.secret, step)}, step


def upload(
    server: RunningServer, person: Person, offline: Offline, line: str, target: tuple[str, bytes]
) -> str:
    """The line's role and the release's bytes uploaded (the API fwsign uses); the upload's id."""
    status, staged, _ = call(
        server, "POST", "/api/v1/releases", {"metadata": {line: offline.role(line)}}, person.headers
    )
    assert status == 201, staged
    path, data = target
    with server.pool() as pool:
        sent = pool.request(
            "PUT",
            f"{server.url}/api/v1/releases/{staged['id']}/targets/{path}",
            body=data,
            headers={**person.headers, "Content-Type": "application/octet-stream"},
            timeout=urllib3.Timeout(total=REQUEST_WAIT),
        )
    assert sent.status == 201, sent.data
    release: str = staged["id"]
    return release


def audit_entries(server: RunningServer, reader: Person) -> list[dict[str, Any]]:
    """Every entry of the audit log, in sequence order (each page read is itself audited)."""
    entries: list[dict[str, Any]] = []
    while True:
        path = f"/api/v1/audit?after={entries[-1]['seq'] if entries else 0}&limit=500"
        status, page, _ = call(server, "GET", path, None, reader.headers)
        assert status == 200, page
        entries += page["entries"]
        if len(page["entries"]) < 500:
            return entries
