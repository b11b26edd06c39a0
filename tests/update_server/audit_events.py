"""Filling the audit log in server tests: one committed transaction per event, as requests do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import Flask

from update_server.audit import Event, append
from update_server.db import transaction


def append_events(app: Flask, numbers: range, make: Callable[[int, datetime], Event]) -> None:
    """Append ``make(number, now)`` for each number, each in its own transaction."""
    services = app.extensions["fw"]
    for number in numbers:
        with transaction(services.sessions) as db:
            append(db, make(number, services.clock()))
