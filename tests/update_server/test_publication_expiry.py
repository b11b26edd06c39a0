"""Abandoned uploads expire: staging removed, row kept, expiry audited, refused after.

An upload that nobody publishes or cancels would keep unpublished firmware
in staging and its session open for ever. After ``upload_lifetime`` (24 h
here, the default) it is swept by the renewal thread, by the next upload
or by ``fwserver repo sweep``; until then the clock alone refuses it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.test import TestResponse

from tests.clocks import RUN_START as START
from tests.clocks import FakeClock, iso_z
from tests.update_server.repo_world import World, repository_files
from update_server import cli
from update_server.audit.chain import verify_chain
from update_server.audit.store import iter_entries
from update_server.cli_common import CommandClock
from update_server.config import ConfigError, ServerConfig
from update_server.models import AuditEntry, Role
from update_server.publication.lock import publication_lock
from update_server.publication.models import ReleaseUpload
from update_server.publication.renewal import RenewalThread

LIFETIME = timedelta(hours=24)


def _later(world: World, clock: FakeClock, **delta: float) -> None:
    """Move the clock; alice logs in again (sessions end after 8 h)."""
    clock.advance(**delta)
    world.login("alice", Role.RELEASE_ENGINEER)


def _state(world: World, release: str) -> str:
    with world.services.sessions() as db:
        upload = db.get(ReleaseUpload, release)
        assert upload is not None, "an upload's row is never deleted"
        return upload.state


def _staged(world: World, release: str) -> list[str]:
    directory = world.config.staging_dir / release
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _audit_rows(world: World, action: str) -> list[AuditEntry]:
    with world.services.sessions() as db:
        return list(db.query(AuditEntry).filter_by(action=action).order_by(AuditEntry.seq))


def _gone(answer: TestResponse) -> None:
    assert answer.status_code == 410, answer.get_json()
    assert answer.mimetype == "application/problem+json"
    body = answer.get_json()
    assert body["rule"] == "release-expired"
    assert "start a new upload" in body["detail"]
    assert iso_z(START + timedelta(days=1)) in body["detail"]


def test_an_abandoned_upload_expires_and_its_staging_is_removed(
    world: World, clock: FakeClock
) -> None:
    assert world.config.upload_lifetime == LIFETIME  # the default
    release = world.release("alice", "2.4.0")
    assert _staged(world, release)
    _later(world, clock, hours=24)

    RenewalThread(world.services).tick()

    assert _state(world, release) == "expired"
    assert not (world.config.staging_dir / release).exists()


def test_an_upload_within_its_lifetime_is_kept_and_publishes(
    world: World, clock: FakeClock
) -> None:
    release = world.release("alice", "2.4.0")
    _later(world, clock, hours=23, minutes=59)

    RenewalThread(world.services).tick()

    assert _state(world, release) == "open"
    assert _staged(world, release)
    assert world.publish("alice", release).status_code == 200


@pytest.mark.parametrize("swept", [True, False], ids=["swept", "not-yet-swept"])
def test_publishing_an_expired_upload_is_refused_and_changes_nothing(
    world: World, clock: FakeClock, swept: bool
) -> None:
    """Between two sweeps the clock alone refuses it: the deadline holds to the second."""
    release = world.release("alice", "2.4.0")
    _later(world, clock, hours=24)
    if swept:
        RenewalThread(world.services).tick()
    state, staged = _state(world, release), _staged(world, release)
    before = repository_files(world.repository)

    _gone(world.publish("alice", release))

    assert repository_files(world.repository) == before
    assert (_state(world, release), _staged(world, release)) == (state, staged)
    refusal = _audit_rows(world, "release.publish")[-1]
    assert (refusal.object, refusal.outcome) == (f"release:{release}", "refused")
    assert '"rule":"release-expired"' in refusal.detail


def test_uploading_a_file_to_an_expired_upload_is_refused_and_stages_nothing(
    world: World, clock: FakeClock
) -> None:
    path, data = world.add_release("2.4.0")
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    release = answer.get_json()["id"]
    _later(world, clock, hours=24)

    _gone(world.put("alice", release, path, data))

    assert _staged(world, release) == []
    assert _state(world, release) == "open"  # the next sweep expires it


def test_cancelling_an_expired_upload_says_it_expired(world: World, clock: FakeClock) -> None:
    release = world.release("alice", "2.4.0")
    _later(world, clock, hours=25)
    RenewalThread(world.services).tick()

    _gone(world.client.delete(f"/api/v1/releases/{release}", headers=world.as_("alice")))

    assert _state(world, release) == "expired"


def test_expiry_is_audited(world: World, clock: FakeClock) -> None:
    """R27: one chained entry per expired upload, by the server, naming the uploader."""
    first = world.release("alice", "2.4.0")
    _later(world, clock, hours=1)
    second = world.release("alice", "2.5.0")
    _later(world, clock, hours=23)
    RenewalThread(world.services).tick()  # only the first is 24 h old
    _later(world, clock, hours=1)
    RenewalThread(world.services).tick()
    RenewalThread(world.services).tick()  # nothing left to expire: no new entry

    rows = _audit_rows(world, "release.expire")
    assert [row.object for row in rows] == [f"release:{first}", f"release:{second}"]
    assert {(row.actor, row.role, row.outcome) for row in rows} == {
        ("fwserver", "system", "success")
    }
    assert '"uploader":"alice"' in rows[0].detail
    assert f'"opened":"{iso_z(START)}"' in rows[0].detail
    with world.services.sessions() as db:
        assert verify_chain(iter_entries(db)).ok


def test_a_new_upload_sweeps_expired_ones(world: World, clock: FakeClock) -> None:
    """Even with no renewal thread running, abandoned firmware does not pile up."""
    old = world.release("alice", "2.4.0")
    _later(world, clock, days=2)

    new = world.release("alice", "2.5.0")

    assert (_state(world, old), _staged(world, old)) == ("expired", [])
    assert _state(world, new) == "open"


def test_a_new_upload_is_not_held_up_by_a_busy_publication_lock(
    world: World, clock: FakeClock
) -> None:
    old = world.release("alice", "2.4.0")
    _later(world, clock, days=2)
    world.add_release("2.5.0")

    with publication_lock(world.config.data_dir):
        answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})

    assert answer.status_code == 201, answer.get_json()
    assert _state(world, old) == "open"  # swept later, by whoever gets the lock
    _gone(world.publish("alice", old))


def test_fwserver_repo_sweep_expires_and_removes(
    world: World, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = world.release("alice", "2.4.0")
    kept = world.release("alice", "2.5.0")
    _later(world, clock, hours=24)
    with world.services.sessions() as db, db.begin():
        upload = db.get(ReleaseUpload, kept)
        assert upload is not None
        upload.created_at = clock() - timedelta(hours=1)
    result = CliRunner().invoke(
        cli.main,
        ["repo", "sweep", "--data-dir", str(world.config.data_dir)],
        env={"FWSERVER_DATA_DIR": None},
        obj=CommandClock(clock),
    )

    assert result.exit_code == 0, result.output
    assert "expired 1 upload(s)" in result.output
    assert f"release:{release}" in result.output
    assert (_state(world, release), _staged(world, release)) == ("expired", [])
    assert _state(world, kept) == "open"
    assert _staged(world, kept)


@pytest.mark.parametrize("seconds", ["0", "599", "2592001", "-3600"])
def test_an_upload_lifetime_outside_its_range_stops_the_server(
    tmp_path: Path, seconds: str
) -> None:
    with pytest.raises(ConfigError, match="upload_lifetime"):
        ServerConfig.load(tmp_path, env={"FWSERVER_UPLOAD_LIFETIME": seconds})


def test_the_upload_lifetime_is_configurable(tmp_path: Path) -> None:
    config = ServerConfig.load(tmp_path, env={"FWSERVER_UPLOAD_LIFETIME": "3600"})
    assert config.upload_lifetime == timedelta(hours=1)
