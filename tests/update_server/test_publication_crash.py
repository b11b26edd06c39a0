"""A publication that fails or dies half-way changes nothing devices can see.

Each step of the switch is made to fail (an exception: the server undoes the
change at once) or to die (the process is gone: the next writer finds the
journal and undoes it). Either way the published files are byte for byte as
before, no orphan is left, and publishing again succeeds. Concurrent
publications are serialised by the publication lock.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.clocks import FakeClock
from tests.update_server.repo_world import LINES, World, repository_files
from update_server.models import AuditEntry
from update_server.publication import publish, switch
from update_server.publication.errors import BusyError
from update_server.publication.lock import publication_lock
from update_server.publication.models import ReleaseUpload
from update_server.publication.renewal import RenewalThread

#: Every step of a release's switch, in order (see ``switch.apply``).
STEPS = (
    "journal",
    "targets",
    "metadata/2.pump-x100.json",
    "metadata/2.snapshot.json",
    "before-timestamp",
)


class CrashError(Exception):
    """The simulated failure."""


def _crash_at(step: str) -> Callable[[str], None]:
    def reached(name: str) -> None:
        if name == step:
            raise CrashError(f"crash after {step}")

    return reached


def _staged_release(world: World) -> tuple[str, str, bytes]:
    path, data = world.add_release("2.4.0")
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    release: str = answer.get_json()["id"]
    assert world.put("alice", release, path, data).status_code == 201
    return release, path, data


def _expected_after(before: dict[str, bytes], data: bytes) -> set[str]:
    digest = hashlib.sha256(data).hexdigest()
    return set(before) | {
        f"targets/pump-x100/{digest}.fw-2.4.0.bin",
        "metadata/2.pump-x100.json",
        "metadata/2.snapshot.json",
    }


def _device_gets(world: World, tmp_path: Path, path: str, data: bytes) -> None:
    updater = world.updater(tmp_path / "device")
    updater.refresh()
    info = updater.get_targetinfo(path)
    assert info is not None
    assert Path(updater.download_target(info, str(tmp_path / "fw.bin"))).read_bytes() == data


@pytest.mark.simulated_crash
@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_each_step_leaves_the_repository_as_before(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    release, path, data = _staged_release(world)
    before = repository_files(world.repository)
    monkeypatch.setattr(switch, "_reached", _crash_at(step))

    answer = world.publish("alice", release)

    assert answer.status_code == 500
    assert "CrashError" not in answer.get_data(as_text=True)  # no internal detail leaks
    assert repository_files(world.repository) == before
    assert (world.config.staging_dir / release).is_dir()
    monkeypatch.setattr(switch, "_reached", lambda _step: None)
    assert world.publish("alice", release).status_code == 200
    assert set(repository_files(world.repository)) == _expected_after(before, data)
    assert not switch.journal_path(world.config.data_dir).exists()
    _device_gets(world, tmp_path, path, data)


@pytest.mark.simulated_crash
@pytest.mark.parametrize("step", STEPS)
def test_a_process_dying_at_each_step_is_undone_by_the_next_writer(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """No cleanup runs in a dead process: the journal lets the next publication undo it."""
    release, path, data = _staged_release(world)
    before = repository_files(world.repository)
    with monkeypatch.context() as dying:
        dying.setattr(switch, "_reached", _crash_at(step))
        dying.setattr(switch, "recover", lambda *_args: None)
        dying.setattr(publish, "_record_failure", lambda *_args, **_kw: None)
        assert world.publish("alice", release).status_code == 500
    # What devices follow is untouched: the same timestamp, so the same snapshot.
    after_crash = repository_files(world.repository)
    assert after_crash["metadata/timestamp.json"] == before["metadata/timestamp.json"]
    assert switch.journal_path(world.config.data_dir).exists()

    assert world.publish("alice", release).status_code == 200

    assert set(repository_files(world.repository)) == _expected_after(before, data)
    assert not switch.journal_path(world.config.data_dir).exists()
    _device_gets(world, tmp_path, path, data)
    with world.services.sessions() as db:
        outcomes = [
            (row.outcome, row.actor)
            for row in db.query(AuditEntry).filter_by(object=f"release:{release}")
            if row.action == "release.publish"
        ]
    assert ("failure", "fwserver") in outcomes  # the interrupted attempt, recorded
    assert outcomes[-1][0] == "success"


def test_a_crash_after_timestamp_is_published_and_recovery_only_cleans_up(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, path, data = _staged_release(world)
    before = repository_files(world.repository)
    monkeypatch.setattr(switch, "_reached", _crash_at("timestamp"))
    assert world.publish("alice", release).status_code == 200
    _device_gets(world, tmp_path, path, data)
    assert switch.journal_path(world.config.data_dir).exists()

    monkeypatch.setattr(switch, "_reached", lambda _step: None)
    found = publish.recover(world.services, now=world.now)

    assert found is not None
    assert found.committed
    assert set(repository_files(world.repository)) == _expected_after(before, data)
    assert not (world.config.staging_dir / release).exists()
    with world.services.sessions() as db:
        upload = db.get(ReleaseUpload, release)
        assert upload is not None
        assert upload.state == "published"


def test_concurrent_publications_are_serialised(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers publishing at once: one switch after the other, no lost snapshot."""
    releases = {line: world.release("alice", "3.0.0", line=line) for line in LINES}
    events: list[tuple[str, str]] = []

    def slow(step: str) -> None:
        events.append((threading.current_thread().name, step))
        time.sleep(0.05)

    monkeypatch.setattr(switch, "_reached", slow)
    codes = {line: world.otp.code() for line in releases}
    answers: dict[str, int] = {}

    def run(line: str) -> None:
        client = world.app.test_client()
        headers = {**world.as_("alice"), "X-OTP": codes[line]}
        answer = client.post(f"/api/v1/releases/{releases[line]}/publish", headers=headers)
        answers[line] = answer.status_code

    threads = [threading.Thread(target=run, args=(line,), name=line) for line in releases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert answers == dict.fromkeys(releases, 200)
    names = [name for name, _step in events]
    first = names[0]
    switch_over = names.index(next(n for n in names if n != first))
    assert set(names[:switch_over]) == {first}
    assert first not in names[switch_over:]
    status = world.client.get("/api/v1/repository", headers=world.as_("alice")).get_json()
    assert status["snapshot"]["version"] == 3
    assert {status["roles"][line]["version"] for line in releases} == {2}


def test_the_lock_excludes_other_writers_renewal_included(world: World, clock: FakeClock) -> None:
    clock.advance(hours=13)  # timestamp renewal is due
    renewal = RenewalThread(world.services)
    with publication_lock(world.config.data_dir):
        with pytest.raises(BusyError), publication_lock(world.config.data_dir, timeout=0.1):
            pass
        assert renewal.tick() == []  # busy: another writer holds the lock
    assert renewal.tick() == ["timestamp"]


def test_a_publication_that_finds_the_lock_busy_is_told_when_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R5: a lock held past the wait is a 503 with ``Retry-After``; nothing is published."""
    release = world.release("alice", "2.4.0")
    # The real lock, held by another writer; only the publication's wait is shortened.
    monkeypatch.setattr(
        publish, "publication_lock", partial(publication_lock, timeout=0.1), raising=True
    )
    with publication_lock(world.config.data_dir):
        answer = world.publish("alice", release)
    assert answer.status_code == 503, answer.get_json()
    assert answer.headers["Retry-After"] == "5"
    assert answer.get_json()["rule"] == "busy"
    with world.services.sessions() as db:
        upload = db.get(ReleaseUpload, release)
        assert upload is not None
        assert upload.state == "open"
