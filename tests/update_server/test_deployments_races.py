"""Deployments changed by two requests at once, on PostgreSQL (rollout D2, D4, D9; R9).

SQLite serialises its writers at ``BEGIN IMMEDIATE``; PostgreSQL runs the
two transactions side by side, which is where a check made on a state the
other request changed meanwhile slips through. Each test makes the race
certain rather than likely: a third connection holds the lock the race is
about (the deployment's row, or the audit log's lock a creation takes),
both requests are sent, each from its own app (two gunicorn workers), and
the lock is let go only once both wait on a lock. Without D9's locks both
requests then apply from the state they read before the other committed;
with them they apply one after the other, and the result is what one of
the two serial orders gives, audit entries included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from tests.update_server.deployments_helpers import (
    DEPLOYMENTS,
    Pump,
    add_pump,
    create,
    in_waves,
    manager,
    publish,
    shown,
)
from tests.update_server.devices_helpers import audit_entries, detail
from tests.update_server.repo_world import World
from update_server.app import create_app
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.deployments import rollout
from update_server.deployments.models import Deployment
from update_server.keys import signer_loader

PATH = "pump-x100/fw-2.0.0.bin"
#: How long the requests may take to reach the held lock (a hang is a failure, not a skip).
REACH_LOCK_SECONDS = 60

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def fleet(world: World) -> dict[str, Pump]:
    """Eight pumps on 1.0.0 and release 2.0.0 published."""
    publish(world, "2.0.0")
    return {f"pump-{n:02}": add_pump(world, f"pump-{n:02}") for n in range(8)}


@pytest.fixture
def workers(config: ServerConfig, clock: FakeClock, world: World) -> Iterator[list[FlaskClient]]:
    """Two more apps on the same database, as two gunicorn workers are."""
    apps = [create_app(config, clock=clock, signer_loader=signer_loader(config)) for _ in range(2)]
    yield [application.test_client() for application in apps]
    for application in apps:
        application.extensions["fw"].engine.dispose()


# -- two people's changes at once (D4, D9) ---------------------------------------------

#: (state the deployment is in, one change, the other change at the same moment):
#: each change once, against another or against itself.
RACES = [
    ("awaiting_approval", "approve", "abort"),
    ("running", "pause", "pause"),
    ("paused", "resume", "abort"),
]


@pytest.mark.parametrize(("start", "one", "other"), RACES, ids=["-".join(r) for r in RACES])
def test_d9_two_changes_of_one_deployment_at_once_apply_one_after_the_other(
    world: World,
    fleet: dict[str, Pump],
    workers: list[FlaskClient],
    start: str,
    one: str,
    other: str,
) -> None:
    """D4, D9 (R9): the outcome, the final state and the audit are those of a serial order."""
    number = _deployment_in(world, start)
    changes = [(one, "manager2"), (other, "manager3")]
    requests = [
        _change_request(world, worker, number, change, who)
        for worker, (change, who) in zip(workers, changes, strict=True)
    ]

    answers = _at_once(world, _ROW_LOCK.format(number=number), requests)

    observed = _outcome(world, number, changes, answers)
    serial = [_serially(start, changes), _serially(start, changes[::-1])]
    assert observed in serial, f"not a serial order: {observed} (expected one of {serial})"


def test_d9_the_automatic_stop_and_an_abort_at_once_one_of_them_ends_it(
    world: World, fleet: dict[str, Pump], workers: list[FlaskClient]
) -> None:
    """D4, D5, D9: a failure report that stops the wave, and an abort: one ends it, truthfully."""
    number = _stopping_deployment(world)
    failing = fleet[in_waves(world, number)[0][0]]
    requests = [
        _failure_report(world, workers[0], failing),
        _change_request(world, workers[1], number, "abort", "manager3"),
    ]

    report, abort = _at_once(world, _ROW_LOCK.format(number=number), requests)

    assert report.status_code == 200, report.get_json()
    stops = audit_entries(world.app, Action.DEPLOYMENT_STOPPED)
    aborts = [(e.outcome, detail(e)) for e in audit_entries(world.app, Action.DEPLOYMENT_ABORT)]
    final = shown(world, number)["state"]
    if abort.status_code == 200:  # the abort first: nothing left to stop
        assert (final, stops) == ("aborted", [])
        assert [(o, d["before"]) for o, d in aborts] == [("success", "running")]
    else:  # the stop first: the abort finds it ended
        assert abort.status_code == 409, abort.get_json()
        assert "it has ended" in abort.get_json()["detail"]
        assert final == "stopped"
        assert [detail(e)["before"] for e in stops] == ["running"]
        assert [o for o, _ in aborts] == ["refused"]


def test_d9_two_reports_that_each_cross_the_failure_threshold_stop_it_once(
    world: World, fleet: dict[str, Pump], workers: list[FlaskClient]
) -> None:
    """D5, D9: two failures reported at once stop the deployment once, audited once."""
    number = _stopping_deployment(world)
    first, second = (fleet[name] for name in in_waves(world, number)[0][:2])
    requests = [
        _failure_report(world, workers[0], first),
        _failure_report(world, workers[1], second),
    ]

    answers = _at_once(world, _ROW_LOCK.format(number=number), requests)

    assert [answer.status_code for answer in answers] == [200, 200]
    assert shown(world, number)["state"] == "stopped"
    [stopped] = audit_entries(world.app, Action.DEPLOYMENT_STOPPED)
    assert detail(stopped)["before"] == "running"


# -- two creations at once (D2, D9) ----------------------------------------------------


def test_d2_two_deployments_of_the_same_devices_made_at_once_the_second_is_refused(
    world: World, fleet: dict[str, Pump], workers: list[FlaskClient]
) -> None:
    """D2, D9: the second creation sees the first's devices, 409, audited; one deployment."""
    body = {"target_path": PATH, "fleets": ["pump-x100"], "success_percent": 90,
            "failure_percent": 10}  # fmt: skip
    requests = [
        _post(worker, DEPLOYMENTS, manager(world, who), body)
        for worker, who in zip(workers, ["manager1", "manager2"], strict=True)
    ]

    answers = _at_once(world, "LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE", requests)

    assert sorted(answer.status_code for answer in answers) == [201, 409]
    [made] = [answer.get_json() for answer in answers if answer.status_code == 201]
    [refused] = [answer.get_json() for answer in answers if answer.status_code == 409]
    assert f"(deployment {made['id']})" in refused["detail"]
    with transaction(world.services.sessions) as db:
        assert list(db.scalars(select(Deployment.id))) == [made["id"]]
    outcomes = sorted(e.outcome for e in audit_entries(world.app, Action.DEPLOYMENT_CREATE))
    assert outcomes == ["refused", "success"]


# -- helpers ----------------------------------------------------------------------------

_ROW_LOCK = "SELECT id FROM deployments WHERE id = {number} FOR UPDATE"
_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND application_name = current_setting('application_name')"
    " AND pid <> pg_backend_pid()"
)


def _at_once(world: World, hold: str, requests: list[Callable[[], TestResponse]]) -> list[Any]:
    """Each request in its own thread, held behind ``hold`` until all wait on a lock."""
    engine: Engine = world.services.engine
    answers: list[Any] = [None] * len(requests)

    def run(index: int) -> None:
        try:
            answers[index] = requests[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            answers[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    with engine.connect() as blocker:
        blocker.execute(text(hold))
        for thread in threads:
            thread.start()
        _until_waiting(engine, len(requests))
        blocker.commit()
    for thread in threads:
        thread.join(timeout=REACH_LOCK_SECONDS)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


def _until_waiting(engine: Engine, count: int) -> None:
    """Until ``count`` other connections of this test wait on a lock (a state, not a time)."""
    deadline = time.monotonic() + REACH_LOCK_SECONDS
    with engine.connect() as watcher:
        while watcher.execute(_WAITING).scalar_one() < count:
            watcher.rollback()  # a fresh snapshot of pg_stat_activity
            assert time.monotonic() < deadline, f"{count} requests never waited on the lock"
            threading.Event().wait(0.01)


def _deployment_in(world: World, state: str) -> int:
    made = create(world, "manager1", target_path=PATH, fleets=["pump-x100"],
                  success_percent=90, failure_percent=10)  # fmt: skip
    assert made.status_code == 201, made.get_json()
    number: int = made.get_json()["id"]
    steps = {"awaiting_approval": [], "running": ["approve"], "paused": ["approve", "pause"]}
    for step in steps[state]:
        headers = {**manager(world, "manager4"), "X-OTP": world.otp.code()}
        done = world.client.post(f"{DEPLOYMENTS}/{number}/{step}", headers=headers)
        assert done.status_code == 200, done.get_json()
    assert shown(world, number)["state"] == state
    return number


def _stopping_deployment(world: World) -> int:
    """Running, a first wave of 4: one failure in it (25%) is past the 20% threshold."""
    made = create(world, "manager1", target_path=PATH, fleets=["pump-x100"],
                  waves=[{"count": 4}], success_percent=100, failure_percent=20)  # fmt: skip
    assert made.status_code == 201, made.get_json()
    number: int = made.get_json()["id"]
    headers = {**manager(world, "manager2"), "X-OTP": world.otp.code()}
    approved = world.client.post(f"{DEPLOYMENTS}/{number}/approve", headers=headers)
    assert approved.status_code == 200, approved.get_json()
    return number


def _change_request(
    world: World, worker: FlaskClient, number: int, change: str, who: str
) -> Callable[[], TestResponse]:
    headers = manager(world, who)
    if change in {"approve", "abort"}:  # the changes that take a fresh code
        headers = {**headers, "X-OTP": world.otp.code()}
    return lambda: worker.post(f"{DEPLOYMENTS}/{number}/{change}", headers=headers)


def _failure_report(world: World, worker: FlaskClient, pump: Pump) -> Callable[[], TestResponse]:
    """``pump`` reports a refused download of the target (a failure, S2), on ``worker``."""
    pump.logs("bad_hash", "not the signed bytes", target=PATH)
    entries = list(pump.log.entries())
    new, pump.sent = entries[pump.sent :], len(entries)
    now = world.now
    return lambda: pump.device.report(worker, now=now, running_version=pump.running, entries=new)


def _post(
    worker: FlaskClient, path: str, headers: dict[str, str], body: dict[str, Any]
) -> Callable[[], TestResponse]:
    return lambda: worker.post(path, json=body, headers=headers)


def _next_state(state: str, change: str) -> str | None:
    """D3, D4: where ``change`` leads from ``state``; None: refused (409)."""
    if change == "approve":
        return "running" if state == "awaiting_approval" else None
    sources, target, _ = rollout.CHANGES[change]
    return target.value if state in sources else None


Outcome = tuple[tuple[int, ...], str, list[tuple[str, str, str | None]]]


def _serially(start: str, changes: list[tuple[str, str]]) -> Outcome:
    """What ``changes`` give one after the other: statuses by person, final state, audit."""
    state, statuses, audited = start, {}, []
    for change, who in changes:
        after = _next_state(state, change)
        statuses[who] = 409 if after is None else 200
        before = None if change == "approve" or after is None else state
        audited.append((who, "refused" if after is None else "success", before))
        state = after or state
    return tuple(statuses[who] for who in sorted(statuses)), state, sorted(audited)


def _outcome(
    world: World, number: int, changes: list[tuple[str, str]], answers: list[TestResponse]
) -> Outcome:
    statuses = {who: answer.status_code for (_, who), answer in zip(changes, answers, strict=True)}
    actions = {rollout.CHANGES[c][2] if c != "approve" else Action.DEPLOYMENT_APPROVE
               for c, _ in changes}  # fmt: skip
    audited = [
        (entry.actor, entry.outcome, _before(entry))
        for action in actions
        for entry in audit_entries(world.app, action)
        if entry.actor in statuses
    ]
    return (
        tuple(statuses[who] for who in sorted(statuses)),
        shown(world, number)["state"],
        sorted(audited),
    )


def _before(entry: Any) -> str | None:
    """The state a change says it started from (an approval's is awaiting approval)."""
    if entry.outcome != "success" or entry.action == Action.DEPLOYMENT_APPROVE:
        return None
    before: str = detail(entry)["before"]
    return before
