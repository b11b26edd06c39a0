"""The alert worker: a daemon thread per server process that drains the outbox (R31).

Rules:

* K1 Never on a request's path: requests only add outbox rows (``outbox``);
  this thread does every network wait, so a dead or slow webhook never
  slows a request.
* K2 One row at a time: claim it (a short transaction), POST it outside any
  transaction, settle it (another short one). Several workers, in one
  process or many, never deliver one row at once (``outbox`` O3).
* K3 A webhook whose attempt failed is left alone for the rest of the pass:
  its other rows keep their turn for the next pass, so a dead webhook costs
  one timeout per pass, not one per row, and never delays the others.
* K4 The thread survives anything a pass raises (a database down, a
  receiver's nonsense): logged, and the next pass retries.
* K5 Each attempt is counted in ``/metrics`` (sent or failed).
* K6 Once every ``WATCH_EVERY``, before a pass, the watch raises what
  comes close to its expiry (``watch``: metadata, TLS certificates), each
  once, with or without webhooks (syslog has every alert), and prunes the
  rows delivered long ago (``outbox`` O6).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from random import Random, SystemRandom
from typing import Final

from flask import Flask

from update_server.alerts import outbox, watch
from update_server.alerts.delivery import CONNECT_TIMEOUT, DEADLINE, Sender
from update_server.alerts.retry import RetryPolicy
from update_server.app import Services
from update_server.db import transaction
from update_server.observability import metrics
from update_server.observability.metrics import AlertOutcome

logger = logging.getLogger(__name__)

#: Seconds between two passes over the outbox.
DEFAULT_INTERVAL: Final = 2.0
#: How long a claim holds (O3): more than three times one delivery's deadline (W5).
LEASE: Final = timedelta(seconds=3 * DEADLINE + CONNECT_TIMEOUT)
#: K6: how often the watch looks for expiries.
WATCH_EVERY: Final = timedelta(minutes=1)


class AlertWorker(threading.Thread):
    """Delivers due alerts every ``interval`` seconds until stopped."""

    def __init__(
        self,
        services: Services,
        sender: Sender,
        *,
        policy: RetryPolicy,
        rng: Random,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        super().__init__(name="fw-alerts", daemon=True)
        self.services = services
        self.sender = sender
        self.policy = policy
        self.rng = rng
        self.interval = interval
        self.worker_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._stopping = threading.Event()
        self._next_watch: datetime | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            self.watch()
            self.drain()
            self._stopping.wait(self.interval)

    def watch(self) -> int:
        """K6: raise what comes close to its expiry, if the watch is due; never raises."""
        now = self.services.clock()
        if self._next_watch is not None and now < self._next_watch:
            return 0
        self._next_watch = now + WATCH_EVERY
        try:
            with transaction(self.services.sessions) as db:
                outbox.prune(db, now=now, keep=outbox.DELIVERED_KEPT)  # O6
            items = watch.coming(self.services, now=now)
            if not items:
                return 0
            with transaction(self.services.sessions) as db:
                return len(watch.raise_new(db, items, now=now))
        except Exception:
            logger.exception("expiry watch failed; retrying in %s", WATCH_EVERY)
            return 0

    def drain(self) -> int:
        """One pass (K2, K3): deliver what is due; the number delivered. Never raises (K4)."""
        try:
            return self._drain()
        except Exception:
            logger.exception("alert delivery pass failed; retrying in %.0f s", self.interval)
            return 0

    def _drain(self) -> int:
        delivered = 0
        webhooks = set(self.sender.webhooks)
        while webhooks and not self._stopping.is_set():
            claimed = self._claim(webhooks)
            if claimed is None:
                break
            error = self.sender.post(
                claimed.webhook,
                alert_id=claimed.alert_id,
                body=claimed.body,
                timestamp=int(self.services.clock().timestamp()),
            )
            self._settle(claimed, error)
            # R38: alerts sent and failed, in /metrics.
            metrics.count_alert(AlertOutcome.SENT if error is None else AlertOutcome.FAILED)
            if error is None:
                delivered += 1
            else:
                logger.warning(
                    "alert %s not delivered to webhook %s: %s",
                    claimed.alert_id,
                    claimed.webhook,
                    error,
                )
                webhooks.discard(claimed.webhook)  # K3
        return delivered

    def _claim(self, webhooks: set[str]) -> outbox.Claimed | None:
        with transaction(self.services.sessions) as db:
            return outbox.claim(
                db,
                worker=self.worker_id,
                now=self.services.clock(),
                lease=LEASE,
                webhooks=webhooks,
            )

    def _settle(self, claimed: outbox.Claimed, error: str | None) -> None:
        with transaction(self.services.sessions) as db:
            kept = outbox.settle(
                db,
                claimed,
                worker=self.worker_id,
                now=self.services.clock(),
                error=error,
                policy=self.policy,
                rng=self.rng,
            )
        if not kept:
            logger.warning("alert %s: claim lapsed before its answer was kept", claimed.alert_id)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
        self.sender.close()


def alert_worker(services: Services, *, interval: float = DEFAULT_INTERVAL) -> AlertWorker:
    """The worker for ``services``' configured webhooks (secrets read now: W4)."""
    config = services.config
    return AlertWorker(
        services,
        Sender(config.alert_webhooks),
        policy=RetryPolicy(cap=config.alert_retry_cap),
        rng=SystemRandom(),
        interval=interval,
    )


def start_alert_worker(app: Flask, *, interval: float = DEFAULT_INTERVAL) -> AlertWorker:
    """Start delivering alerts in the background of this process (call once per worker)."""
    worker = alert_worker(app.extensions["fw"], interval=interval)
    worker.start()
    return worker
