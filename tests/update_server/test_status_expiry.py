"""Which published roles the status warns about (observability.expiry X1-X4, R38)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from update_server.observability.expiry import (
    CRITICAL_WITHIN,
    OFFLINE_NOTICE,
    RENEWAL_GRACE,
    Kind,
    RoleExpiry,
    Severity,
    expiry_warnings,
)

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def _offline(role: str, left: timedelta) -> RoleExpiry:
    return RoleExpiry(role, 3, NOW + left)


def _online(role: str, left: timedelta, *, renew_in: timedelta) -> RoleExpiry:
    return RoleExpiry(role, 9, NOW + left, renew_at=NOW + renew_in)


def test_a_role_at_or_past_its_expiry_is_expired_and_critical_x1() -> None:
    (at, past) = expiry_warnings(
        [_offline("root", timedelta(0)), _offline("targets", -timedelta(hours=1))], now=NOW
    )
    assert {(w.role, w.kind, w.severity) for w in (at, past)} == {
        ("root", Kind.EXPIRED, Severity.CRITICAL),
        ("targets", Kind.EXPIRED, Severity.CRITICAL),
    }


def test_an_expired_online_role_is_expired_even_if_its_renewal_is_not_due_x1() -> None:
    (warning,) = expiry_warnings(
        [_online("timestamp", -timedelta(seconds=1), renew_in=timedelta(hours=1))], now=NOW
    )
    assert warning.kind is Kind.EXPIRED


def test_an_offline_role_warns_within_30_days_of_its_expiry_x2() -> None:
    inside = _offline("root", OFFLINE_NOTICE - timedelta(minutes=1))
    outside = _offline("targets", OFFLINE_NOTICE)
    (warning,) = expiry_warnings([inside, outside], now=NOW)
    assert (warning.role, warning.kind, warning.severity) == (
        "root",
        Kind.EXPIRING,
        Severity.WARNING,
    )
    assert "fwsign" in warning.message


def test_an_online_role_near_its_expiry_is_no_warning_while_its_renewal_is_on_time_x3() -> None:
    """A one-day timestamp renewed at half its life has 12 h left at its renewal: normal."""
    due_now = _online("timestamp", timedelta(hours=12), renew_in=timedelta(0))
    just_late = _online("snapshot", timedelta(hours=11), renew_in=-RENEWAL_GRACE)
    assert expiry_warnings([due_now, just_late], now=NOW) == []


def test_an_online_role_whose_renewal_is_overdue_warns_and_says_what_to_run_x3() -> None:
    late = _online("snapshot", timedelta(days=3), renew_in=-(RENEWAL_GRACE + timedelta(seconds=1)))
    (warning,) = expiry_warnings([late], now=NOW)
    assert (warning.kind, warning.severity) == (Kind.RENEWAL_OVERDUE, Severity.WARNING)
    assert "fwserver renew" in warning.message


def test_a_warning_within_12_hours_of_expiry_is_critical_x4() -> None:
    late = _online(
        "timestamp", CRITICAL_WITHIN - timedelta(minutes=1), renew_in=-timedelta(hours=1)
    )
    close = _offline("pump-x100", CRITICAL_WITHIN - timedelta(minutes=1))
    warnings = expiry_warnings([late, close], now=NOW)
    assert [w.severity for w in warnings] == [Severity.CRITICAL, Severity.CRITICAL]


def test_warnings_come_most_urgent_first() -> None:
    later = _offline("root", timedelta(days=20))
    sooner = _offline("targets", timedelta(days=2))
    assert [w.role for w in expiry_warnings([later, sooner], now=NOW)] == ["targets", "root"]
