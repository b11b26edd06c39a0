"""Failed logins per source address (R9): one source cannot try every name.

The per-name lockout (``auth.login``) stops guessing one person's password;
this stops one source from trying many names, each try costing the server
an argon2id hash. The rules:

- S1: every refused login (a wrong factor, an unknown, locked or
  impossible name, an unreadable body) counts against its source, in fixed
  windows of ``login_source_window`` (1 minute). Once a source has
  ``max_failed_logins_per_source`` (20) failures in the current window,
  its logins are refused with 429 and ``Retry-After`` (the seconds left in
  the window), before any other work; those refusals are not counted.
- S2: a successful login does not reset the count, so one valid account
  cannot wipe out a guessing run.
- S3: the count is in the database (``SourceThrottle``), so it holds across
  gunicorn workers and restarts. The check reads it without a lock, so
  logins from one busy address (a hospital behind one NAT) are not
  serialised; a failure increments it under a row lock. Requests in flight
  at once from one source can therefore pass the limit by at most their
  number.
- S4: an IPv6 source is counted by its /64 network (a host usually holds a
  whole /64), an IPv4 one by its address. The source is the address the
  server sees: behind a reverse proxy, that proxy must pass the client's.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server import users
from update_server.config import ServerConfig
from update_server.models import SourceThrottle

IPV6_PREFIX = 64


def source_key(source: str) -> str:
    """What ``source`` is counted as (S4); anything that is not an address, as is."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def retry_after(db: Session, source: str, *, now: datetime, config: ServerConfig) -> int | None:
    """Seconds until ``source`` may try again, or None if it may now (S1)."""
    query = select(SourceThrottle).where(SourceThrottle.source == source_key(source))
    found = db.scalars(query).first()
    if found is None or found.failures < config.max_failed_logins_per_source:
        return None
    left = _window_end(found, config.login_source_window) - now
    return math.ceil(left.total_seconds()) if left > timedelta(0) else None


def count_failure(db: Session, source: str, *, now: datetime, config: ServerConfig) -> int:
    """Count one refused login of ``source``; returns its failures in this window."""
    row = _locked_row(db, source_key(source), now=now, window=config.login_source_window)
    if now >= _window_end(row, config.login_source_window):
        row.window_start, row.failures = now, 0
    row.failures += 1
    return row.failures


def _locked_row(db: Session, key: str, *, now: datetime, window: timedelta) -> SourceThrottle:
    query = select(SourceThrottle).where(SourceThrottle.source == key).with_for_update()
    row = db.scalars(query).first()
    if row is not None:
        return row
    # A new source: prune those whose window has ended, so the table stays small.
    db.execute(
        delete(SourceThrottle)
        .where(SourceThrottle.window_start <= now - window)
        .execution_options(synchronize_session=False)
    )
    try:
        with db.begin_nested():
            row = SourceThrottle(source=key, window_start=now, failures=0)
            db.add(row)
            db.flush()
    except IntegrityError:  # another worker created it meanwhile
        row = db.scalars(query).one()
    return row


def _window_end(row: SourceThrottle, window: timedelta) -> datetime:
    return users.aware(row.window_start) + window
