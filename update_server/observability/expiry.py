"""Which published roles need someone, from their expiries and the time (pure: no I/O).

``fwserver status`` and ``GET /api/v1/status`` show every published role with
its version and expiry (R38); this module decides which of them to warn
about. A device refuses an expired role (a TUF freeze attack looks the same),
so each warning comes early enough to act. The rules:

- X1 A role whose expiry is at or before now is ``expired``, whoever signs it.
- X2 A role signed offline (root, targets, each delegated role) warns when
  less than ``OFFLINE_NOTICE`` is left (``expiring``): officers and
  engineers must meet to sign it again. The same 30 days as ``fwsign status``.
- X3 A role the server signs itself (snapshot, timestamp: ``renew_at`` is
  when it renews it) warns only when its renewal is overdue by more than
  ``RENEWAL_GRACE`` (``renewal_overdue``): renewal failing is the problem,
  and an online role close to its expiry is otherwise normal (a one-day
  timestamp renewed at half its life always has 12 h or less left just
  before its renewal).
- X4 A warning is ``critical`` when the role has expired or less than
  ``CRITICAL_WITHIN`` (12 h) is left, else a ``warning``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

#: X2: as ``fwsign status`` warns (``signer.inspect.EXPIRY_WARNING``).
OFFLINE_NOTICE = timedelta(days=30)
#: X3: the renewal thread ticks every minute; fifteen missed ticks is a failure.
RENEWAL_GRACE = timedelta(minutes=15)
#: X4: what the alerts call "metadata within 12 h of expiry" (issue 11).
CRITICAL_WITHIN = timedelta(hours=12)


class Kind(StrEnum):
    EXPIRED = "expired"
    EXPIRING = "expiring"
    RENEWAL_OVERDUE = "renewal_overdue"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class RoleExpiry:
    """One published role: its version, its expiry and, if the server renews it, when."""

    role: str
    version: int
    expires: datetime
    #: When the server signs it anew (snapshot, timestamp); None: signed offline.
    renew_at: datetime | None = None


@dataclass(frozen=True)
class ExpiryWarning:
    role: str
    version: int
    kind: Kind
    severity: Severity
    expires: datetime
    message: str


def expiry_warnings(roles: Iterable[RoleExpiry], *, now: datetime) -> list[ExpiryWarning]:
    """X1-X4 for each role; the most urgent first."""
    found = [warning for role in roles if (warning := _warning(role, now)) is not None]
    return sorted(found, key=lambda warning: (warning.expires, warning.role))


def _warning(role: RoleExpiry, now: datetime) -> ExpiryWarning | None:
    left = role.expires - now
    if left <= timedelta(0):
        return _made(role, Kind.EXPIRED, left, f"{role.role} v{role.version} has expired")
    if role.renew_at is None:
        if left < OFFLINE_NOTICE:
            return _made(role, Kind.EXPIRING, left, _offline_message(role, left))
        return None
    if now - role.renew_at > RENEWAL_GRACE:
        late = _duration(now - role.renew_at)
        message = (
            f"{role.role} v{role.version} was due for renewal {late} ago and expires in"
            f" {_duration(left)}: check the server's log, then run 'fwserver renew'"
        )
        return _made(role, Kind.RENEWAL_OVERDUE, left, message)
    return None


def _offline_message(role: RoleExpiry, left: timedelta) -> str:
    return (
        f"{role.role} v{role.version} expires in {_duration(left)}: sign a new version"
        " offline (fwsign) and publish it before then"
    )


def _made(role: RoleExpiry, kind: Kind, left: timedelta, message: str) -> ExpiryWarning:
    critical = kind is Kind.EXPIRED or left < CRITICAL_WITHIN
    severity = Severity.CRITICAL if critical else Severity.WARNING
    return ExpiryWarning(role.role, role.version, kind, severity, role.expires, message)


def _duration(span: timedelta) -> str:
    """``3 days``, ``5 h``, ``12 min``: enough to act on."""
    seconds = int(span.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(seconds // 60, 0)} min"
