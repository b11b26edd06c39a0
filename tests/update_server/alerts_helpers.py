"""The alert tests' server: webhooks configured, a worker to drive, critical events to make."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from random import Random

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.people import login
from update_server.alerts.delivery import Sender
from update_server.alerts.models import AlertDelivery
from update_server.alerts.retry import RetryPolicy
from update_server.alerts.worker import AlertWorker
from update_server.app import create_app
from update_server.config import ServerConfig, Webhook
from update_server.keys import signer_loader

#: The back-off's ceiling in these tests: a clock moved past it makes every row due.
RETRY_CAP = timedelta(minutes=10)


def write_secret(path: Path) -> bytes:
    secret = secrets.token_hex(32).encode()
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return secret


def with_webhooks(config: ServerConfig, *hooks: tuple[str, str, Path]) -> ServerConfig:
    """``config`` with the webhooks (name, url, secret file), and one failure locking a name."""
    return config.with_changes(
        alert_webhooks=tuple(
            Webhook(name=name, url=url, secret_file=file) for name, url, file in hooks
        ),
        alert_retry_cap=RETRY_CAP,
        max_failed_logins=1,
        max_failed_logins_per_source=10_000,
    )


@contextmanager
def server(config: ServerConfig, clock: FakeClock) -> Iterator[Flask]:
    """One server process's app (no worker of its own: tests start or drive one)."""
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    app.testing = True
    try:
        yield app
    finally:
        app.extensions["fw"].engine.dispose()


def worker(app: Flask, *, seed: int = 7, interval: float = 0.05) -> AlertWorker:
    """A worker on ``app``'s webhooks with a seeded random source."""
    services = app.extensions["fw"]
    return AlertWorker(
        services,
        Sender(services.config.alert_webhooks),
        policy=RetryPolicy(cap=services.config.alert_retry_cap),
        rng=Random(seed),  # noqa: S311 - back-off jitter, not a secret
        interval=interval,
    )


def lock_out(client: FlaskClient, *names: str) -> None:
    """A critical event per name, through real requests: a failed login locks it (R9)."""
    for name in names:
        assert login(client, name, "not-the-password-at-all").status_code == 401


def outbox(app: Flask) -> list[AlertDelivery]:
    with app.extensions["fw"].sessions() as db:
        return list(db.scalars(select(AlertDelivery).order_by(AlertDelivery.id)))
