"""The audit anchor fails closed (R27, R28): no action is answered while its entry is unanchored.

A reviewer's proof against the first version: with the anchor unwritable,
five actions were committed and answered, their rows deleted, and ``verify``
said intact. Now the action whose anchoring fails is answered 503, every
later action is refused until the anchor can be written, and then the first
append anchors the head that was left behind before its own.
"""

from __future__ import annotations

import shutil

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.clocks import FakeClock
from tests.update_server.people import enrolled_user, login
from tests.update_server.repo_world import World
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.checkpoint import verify_database
from update_server.audit.errors import AnchorError
from update_server.audit.public_key import audit_public_key
from update_server.audit.store import head
from update_server.config import ServerConfig
from update_server.models import AuditEntry, Role
from update_server.publication.renewal import renew_if_due


def _break_anchor(config: ServerConfig) -> None:
    """The anchor's lock file cannot be opened (a directory), even by root."""
    lock = anchor_file(config.data_dir).with_name("audit-head.json.lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()


def _mend_anchor(config: ServerConfig) -> None:
    shutil.rmtree(anchor_file(config.data_dir).with_name("audit-head.json.lock"))


def _entries(app: Flask) -> int:
    with app.extensions["fw"].sessions() as db:
        return int(db.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_an_action_whose_entry_cannot_be_anchored_is_not_answered_as_done_r27_r28(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """R27/R28: the commit's anchoring fails: 503, and the next action is refused outright."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    anchored_before = read_anchor(anchor_file(config.data_dir))
    assert anchored_before is not None
    _break_anchor(config)

    first = login(client, "alice", alice.password, alice.next_otp(clock))
    assert first.status_code == 503, first.get_json()
    assert "anchored" in first.get_json()["detail"]
    assert "token" not in first.get_json()
    after_first = _entries(app)

    second = login(client, "alice", alice.password, alice.next_otp(clock))
    assert second.status_code == 503, second.get_json()
    assert _entries(app) == after_first  # refused before anything was committed
    assert read_anchor(anchor_file(config.data_dir)) == anchored_before


def test_once_the_anchor_can_be_written_the_head_left_behind_is_anchored_first_r27_r28(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """R27/R28: the entries committed while anchoring failed are covered before new ones."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    _break_anchor(config)
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 503
    with app.extensions["fw"].sessions() as db:
        left_behind = head(db)
    anchored = read_anchor(anchor_file(config.data_dir))
    assert anchored is not None
    assert anchored.seq < left_behind[0]

    _mend_anchor(config)
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 200

    anchored = read_anchor(anchor_file(config.data_dir))
    with app.extensions["fw"].sessions() as db:
        assert anchored is not None
        assert (anchored.seq, anchored.head_hash) == head(db)
        report = verify_database(db, audit_public_key(config), anchor=anchored, every=100)
    assert report.ok, report.summary()
    assert not report.warnings


def test_a_renewal_whose_entries_cannot_be_anchored_is_not_reported_done_r27_r28(
    world: World, clock: FakeClock
) -> None:
    """R27/R28: the timestamp is switched and committed, but the renewal raises, never "renewed".

    Found by review: publish, renewal and import commit sessions of their own,
    which dropped the anchoring failure and reported success.
    """
    _break_anchor(world.config)
    with pytest.raises(AnchorError, match="could not be anchored"):
        renew_if_due(world.services, clock(), force=True)
    with pytest.raises(AnchorError, match="cannot be anchored"):  # the next one is refused
        renew_if_due(world.services, clock(), force=True)


def test_a_publish_while_the_anchor_cannot_be_written_answers_503_r27_r28(
    world: World, clock: FakeClock
) -> None:
    """R27/R28: a publish is never answered 200 while its entries are not anchored."""
    world.login("alice", "release_engineer")
    release = world.release("alice", "2.4.0")
    _break_anchor(world.config)
    answer = world.publish("alice", release)
    assert answer.status_code == 503, answer.get_json()
    assert "anchor" in answer.get_json()["detail"]
