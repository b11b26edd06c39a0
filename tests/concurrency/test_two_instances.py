"""Two server instances on one PostgreSQL behave as one, under real concurrent requests (issue 12).

One pair of real ``fwserver serve`` instances (gunicorn, TLS, ``WORKERS``
workers each) for the module, sharing one PostgreSQL database and one data
directory (``tests.concurrency.pair``). Each test sends its requests from
threads released together, spread over both instances, each on a
connection of its own, and checks what the server then holds: the audit
log (read over the API as an auditor), the published repository, the
webhook receiver. No mock stands in for a worker, an instance or the
database.

Already proven elsewhere, and not repeated here: two apps in one process
on one database for the same properties (``tests/update_server``:
test_auth_otp's concurrent replays, test_auth_login's lockout across
workers, test_audit_store's concurrent appends, test_audit_anchor's
concurrent anchor writers, test_devices_nonces N1, test_alerts_delivery
O3, test_publication_crash's serialised publications); one instance with
several workers under a database fault (tests/e2e/test_server_database)
and its /metrics totals (test_metrics_gunicorn).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.concurrency.pair import (
    IMPORT_AGE,
    LINES,
    REQUEST_WAIT,
    WORKERS,
    Pair,
    at_once,
    audit_entries,
    audit_log_held,
    configure,
    fresh,
    import_in_the_past,
    make_offline,
    serving_pair,
    shared_data_dir,
    upload,
)
from tests.e2e.conftest import RunningServer
from tests.e2e.people import LOGIN, PASSWORD, Person, call, enrolled
from tests.e2e.ward import Ward, pump
from tests.hsm_mock.helpers import skip_or_fail
from tests.pg import PostgresServer, PostgresUnavailableError, postgres_session
from tests.update_server.webhook_receiver import receiving
from update_server.config import ServerConfig

ME = "/api/v1/auth/me"
#: How long the alert workers (a pass every 2 s in each worker) may take.
DELIVERY_WAIT = 30.0
Answer = tuple[int, dict[str, Any], float]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own."""
    for server in postgres_session():
        if isinstance(server, PostgresUnavailableError):
            skip_or_fail(f"PostgreSQL: {server}")
        yield server


@pytest.fixture(scope="module")
def schema(postgres: PostgresServer) -> str:
    return postgres.fresh_schema()


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, schema: str
) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("pair")
    data_dir = shared_data_dir(work, postgres.url(schema))
    offline = make_offline(work, ServerConfig.load(data_dir))
    import_in_the_past(data_dir, offline, age=IMPORT_AGE)
    secret = b"a webhook secret of the hospital's receiver, 32+ bytes"
    with receiving(secret, time.time) as receiver:
        configure(data_dir, receiver, secret)
        with serving_pair(data_dir, workers=WORKERS) as (a, b):
            yield Pair(a, b, receiver, offline)


@pytest.fixture(scope="module")
def auditor(pair: Pair) -> Person:
    return enrolled(pair.a, "audra", role="auditor")


def _entries(pair: Pair, auditor: Person, action: str) -> list[dict[str, Any]]:
    return [entry for entry in audit_entries(pair.b, auditor) if entry["action"] == action]


def _login(server: RunningServer, body: dict[str, str]) -> Answer:
    return call(server, "POST", LOGIN, body)


# -- R9: lockout ------------------------------------------------------------------------


def test_r9_wrong_passwords_spread_over_both_instances_lock_after_exactly_the_threshold(
    pair: Pair, auditor: Person
) -> None:
    """R9 lockout: ``max_failed_logins`` + 5 wrong passwords at once, on both instances.

    Exactly the threshold are checked (a password verified, a failure
    counted); the one that reaches it locks the name, once; every other is
    refused as locked without password work. Then the right password and
    code are refused on both instances, and the session the person had is
    refused on both at once (the lock ended it).

    The attempts on one name queue on its row lock, each for a whole
    argon2 check (so the count is exact): the module's database timeout is
    long enough for that queue on a loaded 2-core machine (``configure``).
    """
    victim = enrolled(pair.a, "vera")
    threshold = ServerConfig.load(pair.a.data_dir).max_failed_logins
    wrong = {"username": "vera", "password": "not the passphrase at all 7"}
    tries = pair.spread(threshold + 5)
    answers = at_once([lambda s=server: _login(s, wrong) for server in tries])

    assert [status for status, _, _ in answers] == [401] * len(tries), answers
    logins = [e for e in _entries(pair, auditor, "login") if e["actor"] == "vera"]
    assert Counter(e["outcome"] for e in logins if e["outcome"] != "success") == {
        "failure": threshold
    }
    locks = [e for e in _entries(pair, auditor, "login.locked") if e["actor"] == "vera"]
    assert Counter(e["outcome"] for e in locks) == {"failure": 1, "refused": 5}, locks
    for server in pair.instances:
        status, _, _ = _login(server, victim.login_body())
        assert status == 401
        assert call(server, "GET", ME, None, victim.headers)[0] == 401


# -- R25: one-time codes ------------------------------------------------------------------


def test_r25_one_login_code_sent_to_both_instances_at_once_is_accepted_once(
    pair: Pair, auditor: Person
) -> None:
    """R25 anti-replay: the same code in four logins at once, two per instance: one session."""
    person = enrolled(pair.b, "tom")
    body = person.login_body()
    answers = at_once([lambda s=server: _login(s, body) for server in pair.spread(4)])

    assert sorted(status for status, _, _ in answers) == [200, 401, 401, 401], answers
    logins = [e for e in _entries(pair, auditor, "login") if e["actor"] == "tom"]
    # Enrolment logged in twice (first login, then with TOTP); the race added one.
    assert Counter(e["outcome"] for e in logins) == {"success": 3, "replay": 3}


def test_r9_r25_one_confirmation_code_on_both_instances_at_once_confirms_one_action(
    pair: Pair, auditor: Person
) -> None:
    """R9 two-step confirmation, R25: one fresh code in four sensitive requests at once.

    The requests publish an upload that does not exist: one gets past the
    code check (404), the three others are refused as replays, audited so.
    """
    person = enrolled(pair.a, "tess")
    headers, _ = fresh(person)
    publish = f"/api/v1/releases/{'0' * 32}/publish"
    answers = at_once(
        [lambda s=server: call(s, "POST", publish, None, headers) for server in pair.spread(4)]
    )

    assert Counter(status for status, _, _ in answers) == {404: 1, 401: 3}, answers
    confirms = [e for e in _entries(pair, auditor, "otp.confirm") if e["actor"] == "tess"]
    assert [e["outcome"] for e in confirms] == ["replay"] * 3, confirms


# -- R9, R25: sessions ---------------------------------------------------------------------


def _me_everywhere(server: RunningServer, person: Person) -> list[int]:
    """``/me`` with the person's session, twice per worker of ``server``, at once."""
    calls = [lambda: call(server, "GET", ME, None, person.headers)] * (2 * WORKERS)
    return [status for status, _, _ in at_once(calls)]


def test_r9_a_session_ended_on_one_instance_is_refused_by_every_worker_of_the_other_at_once(
    pair: Pair,
) -> None:
    """R9, R25: logout on a; the very next requests with that token, on b's workers, are 401.

    Then a password change on b ends a session the person holds on a.
    """
    person = enrolled(pair.a, "sam")
    other = Person(person.name, _login(pair.b, person.login_body())[1]["token"], person.secret, 0)
    assert _me_everywhere(pair.b, person) == [200] * 2 * WORKERS
    assert call(pair.a, "POST", "/api/v1/auth/logout", None, person.headers)[0] == 204
    assert _me_everywhere(pair.b, person) == [401] * 2 * WORKERS

    assert _me_everywhere(pair.a, other) == [200] * 2 * WORKERS
    change = {"current_password": PASSWORD, "new_password": "another passphrase, long enough 43"}
    assert call(pair.b, "POST", "/api/v1/auth/password", change, other.headers)[0] == 200
    assert _me_everywhere(pair.a, other) == [401] * 2 * WORKERS


# -- publication -----------------------------------------------------------------------------


def _publish(server: RunningServer, headers: dict[str, str], release: str) -> Answer:
    return call(server, "POST", f"/api/v1/releases/{release}/publish", None, headers)


def _repository(server: RunningServer, person: Person) -> dict[str, Any]:
    status, shown, _ = call(server, "GET", "/api/v1/repository", None, person.headers)
    assert status == 200, shown
    return shown


def test_two_managers_publishing_other_lines_at_once_are_serialised_and_both_published(
    pair: Pair,
) -> None:
    """R13, R9: two release managers publish at once on the two instances: both published.

    The publication lock makes one wait for the other (no one is asked to
    retry: the releases do not conflict); each gets its own snapshot and
    timestamp version, and both instances then serve both lines' new roles.
    """
    x100, y200 = LINES[0], LINES[1]
    managers = [enrolled(pair.a, name, role="release_manager") for name in ("mia", "max")]
    releases = [
        upload(server, manager, pair.offline, line, pair.offline.sign(line, "2.1.0"))
        for server, manager, line in zip(pair.instances, managers, (x100, y200), strict=True)
    ]
    before = _repository(pair.a, managers[0])
    codes = [fresh(manager)[0] for manager in managers]
    started = time.monotonic()
    answers = at_once(
        [
            lambda s=server, h=headers, r=release: _publish(s, h, r)
            for server, headers, release in zip(pair.instances, codes, releases, strict=True)
        ]
    )

    assert [status for status, _, _ in answers] == [200, 200], answers
    # They ran at once: together they took less than one after the other.
    assert time.monotonic() - started < sum(elapsed for _, _, elapsed in answers)
    snapshots = sorted(body["snapshot"] for _, body, _ in answers)
    timestamps = sorted(body["timestamp"] for _, body, _ in answers)
    assert snapshots == [before["snapshot"]["version"] + 1, before["snapshot"]["version"] + 2]
    assert timestamps == [before["timestamp"]["version"] + 1, before["timestamp"]["version"] + 2]
    for server in pair.instances:
        shown = _repository(server, managers[1])
        assert shown["snapshot"]["version"] == snapshots[-1]
        for line in (x100, y200):
            assert shown["roles"][line]["version"] == before["roles"][line]["version"] + 1


def test_two_managers_publishing_one_line_at_once_one_wins_the_other_rebuilds_and_succeeds(
    pair: Pair,
) -> None:
    """R13, R9: two releases of one line, each built on what is published, published at once.

    One is published; the other is refused with 409 (the line changed since
    it was built: rebuild on the current repository and upload again), and
    nothing of it is published. Rebuilt on the winner's role, its retry
    succeeds. Each publication needs a fresh code (R9): the retry, the
    manager's next one.
    """
    line = LINES[2]
    names = ("mona", "milo")
    managers = {name: enrolled(pair.b, name, role="release_manager") for name in names}
    forks = {name: pair.offline.fork(f"offline-{name}") for name in names}
    versions = {"mona": "2.1.0", "milo": "2.2.0"}
    releases = {
        name: upload(
            server, managers[name], forks[name], line, forks[name].sign(line, versions[name])
        )
        for server, name in zip(pair.instances, names, strict=True)
    }
    confirmations = {name: fresh(managers[name]) for name in names}
    answers = dict(
        zip(
            names,
            at_once(
                [
                    lambda s=server, n=name: _publish(s, confirmations[n][0], releases[n])
                    for server, name in zip(pair.instances, names, strict=True)
                ]
            ),
            strict=True,
        )
    )

    assert sorted(status for status, _, _ in answers.values()) == [200, 409], answers
    winner = next(name for name in names if answers[name][0] == 200)
    loser = next(name for name in names if name != winner)
    detail = answers[loser][1]["detail"]
    assert "changed since this release was uploaded" in detail, detail
    assert "rebuild it on the current repository and upload it again" in detail, detail
    published = _repository(pair.a, managers[winner])["roles"][line]["version"]

    rebuilt = forks[winner].fork(f"offline-{loser}-rebuilt")
    target = rebuilt.sign(line, versions[loser])
    retry = upload(pair.a, managers[loser], rebuilt, line, target)
    headers, _ = fresh(managers[loser], after=confirmations[loser][1])
    status, body, _ = _publish(pair.b, headers, retry)
    assert status == 200, body
    assert body["published"] == {line: published + 1}


# -- R27, R28: the audit chain ----------------------------------------------------------------


def test_r27_r28_audited_actions_at_once_on_both_instances_leave_one_chain_no_fork_no_gap(
    pair: Pair, auditor: Person
) -> None:
    """R27, R28: 32 audited actions at once over both instances: one chain, each action once.

    Sixteen audit reads and sixteen failed logins of unknown names (one
    each: attempts on one name queue on its row lock, see the lockout test)
    one is in the log, the sequence numbers run from 1 without a gap or a
    repeat, each entry names the previous entry's hash, and the server's
    check (signed checkpoints, anchored head) finds the log intact.
    """
    ghosts = [f"ghost{n}" for n in range(16)]
    read = "/api/v1/audit?after=0&limit=1"
    calls = [
        lambda s=server: call(s, "GET", read, None, auditor.headers) for server in pair.spread(16)
    ]
    calls += [
        lambda s=server, n=name: _login(s, {"username": n, "password": "wrong guess 1"})
        for server, name in zip(pair.spread(16), ghosts, strict=True)
    ]
    before = len(audit_entries(pair.a, auditor))
    answers = at_once(calls)

    assert [status for status, _, _ in answers] == [200] * 16 + [401] * 16, answers
    entries = audit_entries(pair.b, auditor)
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    for previous, entry in itertools.pairwise(entries):
        assert entry["prev_hash"] == previous["hash"], entry["seq"]
    new = entries[before:]
    reads = [
        e for e in new if e["action"] == "audit.read" and json.loads(e["detail"])["limit"] == 1
    ]
    assert len(reads) == 16
    assert len([e for e in new if e["action"] == "login" and e["actor"] in ghosts]) == 16
    status, verified, _ = call(pair.a, "GET", "/api/v1/audit/verify", None, auditor.headers)
    assert (status, verified["ok"]) == (200, True), verified
    assert verified["head"]["seq"] >= len(entries)


# -- R13: timestamp renewal --------------------------------------------------------------------


def test_r13_the_timestamp_due_when_both_instances_start_is_renewed_once(
    pair: Pair, auditor: Person
) -> None:
    """R13 (TUF freeze attack): all workers of both instances wake with the renewal due: one renews.

    The repository was imported ``IMPORT_AGE`` ago, past half the
    timestamp's lifetime; the renewal threads of all the workers tick as
    they start. Exactly one ``repository.renew`` entry (none failed), and
    each timestamp version was signed once: the import signed version 1,
    and the published one counts one more per renewal and publication.
    Both instances serve the same timestamp.json.
    """
    renewals = _entries(pair, auditor, "repository.renew")
    assert [(e["actor"], e["outcome"]) for e in renewals] == [("fwserver", "success")], renewals
    assert json.loads(renewals[0]["detail"])["renewed"] == {"timestamp": "v2"}
    publications = [
        e for e in _entries(pair, auditor, "release.publish") if e["outcome"] == "success"
    ]
    served = []
    for server in pair.instances:
        with server.pool() as pool:
            served.append(pool.request("GET", f"{server.url}/metadata/timestamp.json").data)
    assert served[0] == served[1]
    # The import is audited as the first publication.
    assert json.loads(served[0])["signed"]["version"] == len(publications) + len(renewals)


# -- R9: deployments --------------------------------------------------------------------------


def test_r9_three_managers_approving_one_deployment_at_once_on_both_instances_approve_it_once(
    pair: Pair, auditor: Person, postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    """R9 four eyes, D9: three other release managers approve at once over both instances: once.

    The approvals are lined up: another client holds the audit log's lock
    until all three wait in the database, so each has read the deployment
    awaiting approval before any commits. One is answered 200, the others
    409 (nothing to approve); the deployment names the one approver; the
    log holds one approval and two refusals; its one device is in its first
    wave once.
    """
    line = LINES[0]
    pump(Ward(pair.a, pair.offline.root, tmp_path), "pump-0001")
    creator = enrolled(pair.a, "dana", role="release_manager")
    names = ("dirk", "dora", "dave")
    approvers = [enrolled(pair.b, name, role="release_manager") for name in names]
    plan = {
        "target_path": f"{line}/pump-fw-2.0.0.bin", "fleets": [line], "waves": [{"count": 1}],
        "success_percent": 100, "failure_percent": 0,
    }  # fmt: skip
    status, made, _ = call(pair.a, "POST", "/api/v1/deployments", plan, creator.headers)
    assert status == 201, made
    approve = f"/api/v1/deployments/{made['id']}/approve"
    confirmations = [fresh(approver)[0] for approver in approvers]
    calls = [
        lambda s=server, h=headers: call(s, "POST", approve, None, h)
        for server, headers in zip(pair.spread(len(approvers)), confirmations, strict=True)
    ]
    with ThreadPoolExecutor(max_workers=1) as sender:
        with audit_log_held(postgres, schema) as wait_for:
            sent = sender.submit(at_once, calls)
            wait_for(len(calls))
        answers = sent.result(timeout=REQUEST_WAIT)

    assert sorted(status for status, _, _ in answers) == [200, 409, 409], answers
    winner = names[[status for status, _, _ in answers].index(200)]
    path = f"/api/v1/deployments/{made['id']}"
    status, shown, _ = call(pair.b, "GET", path, None, creator.headers)
    assert (shown["state"], shown["approved_by"]) == ("running", winner), shown
    assert [row["device_id"] for row in shown["devices"]] == ["pump-0001"], shown
    approvals = _entries(pair, auditor, "deployment.approve")
    assert sorted(e["outcome"] for e in approvals) == ["refused", "refused", "success"], approvals


# -- R31: the alert outbox -----------------------------------------------------------------------


def _undelivered(postgres: PostgresServer, schema: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.alert_outbox WHERE delivered_at IS NULL")
    row = postgres.admin().execute(query.format(sql.Identifier(schema))).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_r31_alerts_raised_on_both_instances_are_delivered_once_each_by_all_their_workers(
    pair: Pair, auditor: Person, postgres: PostgresServer, schema: str
) -> None:
    """R31: four names locked out at once over both instances: four alerts, each posted once.

    Each round sends one wrong password for each name at once, spread over
    both instances; the last round locks all four. Every worker of both
    instances runs an alert delivery thread on the one outbox. Once the
    outbox holds nothing undelivered, the webhook receiver has had each
    alert id exactly once (not even a repeat it deduped), among them one
    lockout alert per name.
    """
    names = [f"intruder{n}" for n in range(4)]
    pair.receiver.delay = 0.05  # a slower receiver widens the race between workers
    threshold = ServerConfig.load(pair.a.data_dir).max_failed_logins
    wrong = [{"username": name, "password": "wrong guess 2"} for name in names]
    for _ in range(threshold):
        calls = [
            lambda s=server, b=body: _login(s, b)
            for server, body in zip(pair.spread(len(names)), wrong, strict=True)
        ]
        assert [status for status, _, _ in at_once(calls)] == [401] * len(names)
    deadline = time.monotonic() + DELIVERY_WAIT
    while _undelivered(postgres, schema) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert _undelivered(postgres, schema) == 0
    posted = Counter(received.alert_id for received in pair.receiver.received)
    assert set(posted.values()) == {1}, posted
    lockouts = [
        alert["audit"]["actor"]
        for alert in pair.receiver.alerts.values()
        if "lockout" in alert["classes"] and alert["audit"]["actor"] in names
    ]
    assert sorted(lockouts) == names
