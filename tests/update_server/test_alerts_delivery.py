"""Webhook delivery (R31, ``alerts.worker`` K1-K4, ``outbox`` O3-O5, ``retry`` R1).

A real HTTP receiver on loopback (``webhook_receiver``, its own HMAC check)
and the worker the server runs, on both database legs: a webhook down while
critical events keep coming, then back, gets every alert exactly once per
id; a hanging webhook slows no request; two workers never deliver one row
twice; back-off grows, capped, with jitter.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import pytest
from flask import Flask

from tests.clocks import FakeClock
from tests.update_server.alerts_helpers import (
    RETRY_CAP,
    lock_out,
    outbox,
    server,
    with_webhooks,
    worker,
    write_secret,
)
from tests.update_server.webhook_receiver import WebhookReceiver
from update_server.alerts import backlog
from update_server.alerts.delivery import READ_TIMEOUT
from update_server.alerts.outbox import claim
from update_server.alerts.retry import RetryPolicy, ceiling, delay
from update_server.alerts.worker import LEASE
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.observability.metrics import exposition

pytestmark = pytest.mark.usefixtures("fast_hashing")

NAMES = [f"intruder{n}" for n in range(6)]


@pytest.fixture
def receiver(tmp_path: Path, clock: FakeClock) -> Iterator[WebhookReceiver]:
    secret = write_secret(tmp_path / "siem.key")
    hook = WebhookReceiver(secret, now=clock.monotonic)
    hook.start()
    yield hook
    hook.stop()


@pytest.fixture
def app(
    config: ServerConfig, clock: FakeClock, receiver: WebhookReceiver, tmp_path: Path
) -> Iterator[Flask]:
    with server(
        with_webhooks(config, ("siem", receiver.url, tmp_path / "siem.key")), clock
    ) as made:
        yield made


def test_an_alert_is_posted_signed_and_marked_delivered(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    lock_out(app.test_client(), "mallory")
    assert worker(app).drain() == 1
    [received] = receiver.received
    assert received.status == 200  # the receiver's own HMAC and timestamp checks held
    assert received.alert is not None
    assert received.alert["class"] == "lockout"
    assert received.alert["audit"]["object"].endswith("mallory")
    [row] = outbox(app)
    assert row.delivered_at is not None
    assert row.attempts == 1
    assert worker(app).drain() == 0  # O4: delivered is never sent again


def test_webhook_down_while_events_flow_then_back_gets_each_alert_exactly_once(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    """Issue 11's test: a dead webhook loses nothing; on return, one delivery per event id."""
    client = app.test_client()
    delivering = worker(app)
    receiver.stop()  # down: the connection is refused
    for name in NAMES:
        lock_out(client, name)
        delivering.drain()
        clock.advance(seconds=30)
    with app.extensions["fw"].sessions() as db:
        waiting = backlog(db, webhooks=["siem"], now=clock())
    assert waiting.undelivered == len(NAMES)
    assert waiting.webhooks[0].oldest_age_seconds == 30 * len(NAMES)
    assert waiting.webhooks[0].last_error is not None
    assert "refused" in waiting.webhooks[0].last_error.lower()

    receiver.start()  # back, on the same port
    receiver.mode = "failing"  # first it answers 503: not a delivery (W1)
    clock.advance(seconds=RETRY_CAP.total_seconds())
    assert delivering.drain() == 0
    receiver.mode = "up"
    for _ in range(len(NAMES) + 2):
        clock.advance(seconds=RETRY_CAP.total_seconds())
        delivering.drain()
    ids = {row.alert_id for row in outbox(app)}
    assert len(ids) == len(NAMES)
    assert sorted(receiver.first_deliveries()) == sorted(ids)
    assert set(receiver.alerts) == ids
    assert all(row.delivered_at is not None for row in outbox(app))
    with app.extensions["fw"].sessions() as db:
        after = backlog(db, webhooks=["siem"], now=clock())
    assert (after.undelivered, after.webhooks[0].last_error) == (0, None)


def test_o5_an_acknowledgement_lost_is_sent_again_and_the_receiver_dedups_it(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    """A worker dies after the 2xx, before it records it: at least once, deduped to once."""
    lock_out(app.test_client(), "mallory")
    crashed = worker(app)
    sessions = app.extensions["fw"].sessions
    with transaction(sessions) as db:
        held = claim(db, worker=crashed.worker_id, now=clock(), lease=LEASE, webhooks={"siem"})
    assert held is not None
    error = crashed.sender.post(
        "siem", alert_id=held.alert_id, body=held.body, timestamp=int(clock.now.timestamp())
    )
    assert error is None  # delivered, and then the worker died
    assert worker(app, seed=8).drain() == 0  # K2: the claim still holds
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert worker(app, seed=8).drain() == 1
    assert [r.status for r in receiver.received] == [200, 200]
    assert receiver.first_deliveries() == [held.alert_id]


def test_k1_a_hanging_webhook_does_not_slow_requests(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    """The worker thread waits on the webhook; requests meanwhile answer at once."""
    receiver.mode = "hanging"
    client = app.test_client()
    lock_out(client, "mallory")
    background = worker(app, interval=0.05)
    background.start()
    try:
        _wait_for(lambda: len(receiver.in_flight) > 0)  # the worker is stuck in its POST
        started = time.monotonic()
        lock_out(client, *NAMES)
        elapsed = time.monotonic() - started
        assert len(receiver.in_flight) > 0  # still stuck while the requests were answered
    finally:
        receiver.stop()  # releases the hanging request
        background.stop()
    assert elapsed < READ_TIMEOUT / 2
    assert len(outbox(app)) == 1 + len(NAMES)


def test_o3_two_workers_never_deliver_one_alert_twice(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    """Two gunicorn workers' threads drain the same outbox at once."""
    lock_out(app.test_client(), *NAMES, *(f"other{n}" for n in range(6)))
    receiver.delay = 0.02
    first, second = worker(app, seed=1), worker(app, seed=2)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda w=w: results.append(w.drain())) for w in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    posted = Counter(r.alert_id for r in receiver.received)
    assert sum(results) == 12
    assert len(posted) == 12
    assert set(posted.values()) == {1}  # not one repeat, deduped or not


def test_r1_backoff_ceiling_doubles_from_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(minutes=1))
    ceilings = [ceiling(n, policy=policy).total_seconds() for n in range(1, 7)]
    assert ceilings == [5, 10, 20, 40, 60, 60]


def test_r1_backoff_draws_each_wait_between_zero_and_the_ceiling_full_jitter() -> None:
    policy = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(hours=1))
    rngs = [Random(seed) for seed in range(50)]  # noqa: S311 - back-off jitter, not a secret
    waits = [delay(6, policy=policy, rng=rng).total_seconds() for rng in rngs]
    assert all(0 <= wait <= 160 for wait in waits)
    assert len(set(waits)) == 50  # spread, not one instant for every alert
    assert min(waits) < 40 and max(waits) > 120


def test_r1_failed_attempts_are_spaced_by_growing_jittered_waits(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    receiver.mode = "failing"
    lock_out(app.test_client(), "mallory")
    delivering = worker(app, seed=3)
    policy = delivering.policy
    waits = []
    for attempt in range(1, 8):
        before = clock()
        assert delivering.drain() == 0
        [row] = outbox(app)
        assert row.attempts == attempt
        wait = _aware(row.next_attempt_at) - before
        assert timedelta(0) <= wait <= ceiling(attempt, policy=policy)
        waits.append(wait)
        clock.advance(seconds=wait.total_seconds())
    assert len(set(waits)) == len(waits)  # jittered
    assert max(waits[4:]) > max(waits[:2])  # and growing


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until another thread reached a state (not a wait for time to pass)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker never reached the webhook")
        time.sleep(0.01)


def _alerts_counted(outcome: str) -> float:
    text = exposition()[0].decode()
    found = re.search(rf'^fwserver_alerts_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_k5_deliveries_sent_and_failed_are_counted_in_metrics(
    app: Flask, receiver: WebhookReceiver, clock: FakeClock
) -> None:
    sent, failed = _alerts_counted("sent"), _alerts_counted("failed")
    lock_out(app.test_client(), "mallory")
    receiver.mode = "failing"
    worker(app).drain()
    receiver.mode = "up"
    clock.advance(seconds=RETRY_CAP.total_seconds())
    worker(app).drain()
    assert (_alerts_counted("sent") - sent, _alerts_counted("failed") - failed) == (1, 1)
