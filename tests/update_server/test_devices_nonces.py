"""The device nonce store (``devices.authentication`` N1, N2; D5, R25) on both databases.

Two apps on one database stand for two gunicorn workers: each has its own
engine and pool, so only the database is shared between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from tests.clocks import FakeClock
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.devices import authentication
from update_server.devices.models import DeviceNonce
from update_server.devices.signatures import DeviceRequestRefused, Refusal, SignedRequest
from update_server.keys import signer_loader

SKEW = timedelta(seconds=60)


@pytest.fixture
def other_worker(config: ServerConfig, clock: FakeClock) -> Iterator[Flask]:
    application = create_app(config, clock=clock, signer_loader=signer_loader(config))
    yield application
    application.extensions["fw"].engine.dispose()


def _remember(app: Flask, nonce: str, clock: FakeClock, device: str = "pump-1") -> None:
    signed = SignedRequest(device, nonce, clock.now)
    with transaction(app.extensions["fw"].sessions) as db:
        authentication.remember_nonce(db, signed, now=clock.now, skew=SKEW)


def _kept(app: Flask) -> set[str]:
    with transaction(app.extensions["fw"].sessions) as db:
        return set(db.scalars(select(DeviceNonce.nonce)))


def test_n1_a_nonce_spent_on_one_worker_is_refused_on_the_other_r25(
    app: Flask, other_worker: Flask, clock: FakeClock
) -> None:
    _remember(app, "once", clock)
    clock.advance(seconds=30)
    with pytest.raises(DeviceRequestRefused) as refused:
        _remember(other_worker, "once", clock)
    assert refused.value.reason is Refusal.REPLAYED
    assert refused.value.device_id == "pump-1"
    # Another device's nonce of the same text is its own (the key is (device, nonce)).
    _remember(other_worker, "once", clock, device="pump-2")


def test_n2_a_nonce_is_kept_while_a_replay_could_pass_d4_then_pruned_r25(
    app: Flask, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept for at least twice the skew window, pruned at most ``PRUNE_EVERY`` after that."""
    monkeypatch.setattr(authentication, "_pruner", authentication._Pruner())
    _remember(app, "first", clock)
    clock.now += 2 * SKEW  # a prune runs here, the row is not past it yet
    _remember(app, "second", clock)
    with pytest.raises(DeviceRequestRefused):
        _remember(app, "first", clock)
    assert _kept(app) == {"first", "second"}
    clock.now += authentication.PRUNE_EVERY + timedelta(seconds=1)
    _remember(app, "third", clock)
    assert _kept(app) == {"second", "third"}
