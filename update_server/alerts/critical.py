"""Which audit entries are critical, and how severe (R31). Pure: no I/O.

An alert is an audit entry that this table calls critical: every alert has
its entry in the hash-chained log first, and the entry is the alert's
identity (``alert_id``). The table ``RULES`` is the only place that says
which entries alert; the outbox (``outbox``) and syslog's severity
(``audit.syslog``) both ask ``classify``.

Rules:

* A1 A rule matches an entry by its action name and, when it names them,
  its outcomes; a few look at one field of the detail too (a device
  report's event types, a publication's roles). Keyed on names (strings),
  so a rule may name an action another part adds later.
* A2 One entry is at most one alert, however many rules match: its classes
  are every class matched, most severe first, and its severity the most
  severe one's (RFC 5424: lower is more severe).
* A3 A device report alerts on the event types of its new log entries
  (``detail["events"]``, written by ``devices.views.device_report``); a
  report refused because it does not continue the device's chain is the
  broken chain's alert.
* A4 ``alert_id`` is stable for one entry: its sequence number and the
  start of its hash, so a retried delivery carries the same id and a
  receiver dedups on it; a restored database that reuses a sequence number
  for another entry gives another id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final


class Severity(IntEnum):
    """RFC 5424 severities an alert may have (section 6.2.1)."""

    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5


class AlertClass(StrEnum):
    """What kind of alert an entry raises: the alerts' fixed vocabulary (issue 11)."""

    DEVICE_ATTACK_REFUSED = "device_attack_refused"
    DEVICE_INTEGRITY_FAILURE = "device_integrity_failure"
    DEVICE_LOG_BROKEN = "device_log_broken"
    DEVICE_FAILSAFE = "device_failsafe"
    DEVICE_UPDATE_FAILED = "device_update_failed"
    WITHDRAWN_RELEASE_RUNNING = "withdrawn_release_running"
    FREEZE_CHANGED = "freeze_changed"
    ROOT_CHANGE_PUBLISHED = "root_change_published"
    LOCKOUT = "lockout"
    OTP_REPLAY = "otp_replay"
    UPLOAD_REJECTED = "upload_rejected"
    DEPLOYMENT_STOPPED = "deployment_stopped"
    RENEWAL_FAILED = "renewal_failed"
    METADATA_EXPIRING = "metadata_expiring"
    TLS_EXPIRING = "tls_expiring"


SEVERITY: Final[Mapping[AlertClass, Severity]] = {
    AlertClass.DEVICE_ATTACK_REFUSED: Severity.CRITICAL,
    AlertClass.DEVICE_INTEGRITY_FAILURE: Severity.CRITICAL,
    AlertClass.DEVICE_LOG_BROKEN: Severity.CRITICAL,
    AlertClass.DEVICE_FAILSAFE: Severity.ERROR,
    AlertClass.DEVICE_UPDATE_FAILED: Severity.ERROR,
    AlertClass.WITHDRAWN_RELEASE_RUNNING: Severity.ERROR,
    AlertClass.FREEZE_CHANGED: Severity.ALERT,
    AlertClass.ROOT_CHANGE_PUBLISHED: Severity.WARNING,
    AlertClass.LOCKOUT: Severity.WARNING,
    AlertClass.OTP_REPLAY: Severity.CRITICAL,
    AlertClass.UPLOAD_REJECTED: Severity.WARNING,
    AlertClass.DEPLOYMENT_STOPPED: Severity.ERROR,
    AlertClass.RENEWAL_FAILED: Severity.CRITICAL,
    AlertClass.METADATA_EXPIRING: Severity.CRITICAL,
    AlertClass.TLS_EXPIRING: Severity.WARNING,
}

#: Device event types (``client.events.EventType``) of an update refused as an attack.
ATTACK_EVENTS: Final = frozenset(
    {
        "rollback_attack",
        "freeze_attack",
        "mix_and_match",
        "bad_signature",
        "bad_hash",
        "too_long",
        "firmware_downgrade",
        "hardware_mismatch",
        "authorization_replayed",
        "authorization_wrong_device",
        "authorization_wrong_release",
        "authorization_bad_signature",
        "authorization_untrusted_key",
        "authorization_malformed",
    }
)
INTEGRITY_EVENTS: Final = frozenset({"integrity_failure"})
FAILSAFE_EVENTS: Final = frozenset({"failsafe_entered", "failsafe_refused"})
UPDATE_FAILED_EVENTS: Final = frozenset({"rolled_back", "health_check_failed"})
#: Damage the device's own log found in itself (the server's check is the refusal).
LOG_EVENTS: Final = frozenset({"log_damaged"})
#: The signed set lists neither the running release nor a newer one (R56, R57).
WITHDRAWN_EVENTS: Final = frozenset({"running_not_listed"})

ANY: Final = None
#: A predicate on an entry's detail (parsed JSON).
Detail = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """Entries of ``action`` (with one of ``outcomes``; ANY: every one) raise ``alert``
    when ``when`` (if given) holds for their detail."""

    action: str
    outcomes: frozenset[str] | None
    alert: AlertClass
    when: Callable[[Detail], bool] | None = None


def _reports(events: frozenset[str]) -> Callable[[Detail], bool]:
    """A3: the report's new entries hold one of ``events``."""

    def holds(detail: Detail) -> bool:
        reported = detail.get("events")
        return isinstance(reported, list) and not events.isdisjoint(map(str, reported))

    return holds


#: A3: the most event types one report's detail names (the device's vocabulary is smaller).
MAX_EVENT_TYPES: Final = 64


def event_types(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """A3: what a device report's audit detail says of its new entries: their types."""
    return sorted({str(entry.get("type", ""))[:64] for entry in entries})[:MAX_EVENT_TYPES]


def _publishes_root(detail: Detail) -> bool:
    published = detail.get("published")
    return isinstance(published, Mapping) and "root" in published


def _imports(detail: Detail) -> bool:
    """``fwserver repo import``: a whole repository, its root with it."""
    return "directory" in detail


def _names(what: str) -> Callable[[Detail], bool]:
    def holds(detail: Detail) -> bool:
        return str(detail.get("what", "")).startswith(what)

    return holds


_SUCCESS = frozenset({"success"})
_REFUSED = frozenset({"refused"})
_FAILURE = frozenset({"failure"})

#: A1: the critical entries.
RULES: Final = (
    Rule("device.report", _SUCCESS, AlertClass.DEVICE_ATTACK_REFUSED, _reports(ATTACK_EVENTS)),
    Rule(
        "device.report", _SUCCESS, AlertClass.DEVICE_INTEGRITY_FAILURE, _reports(INTEGRITY_EVENTS)
    ),
    Rule("device.report", _SUCCESS, AlertClass.DEVICE_FAILSAFE, _reports(FAILSAFE_EVENTS)),
    Rule(
        "device.report", _SUCCESS, AlertClass.DEVICE_UPDATE_FAILED, _reports(UPDATE_FAILED_EVENTS)
    ),
    Rule("device.report", _SUCCESS, AlertClass.DEVICE_LOG_BROKEN, _reports(LOG_EVENTS)),
    Rule("device.report", _REFUSED, AlertClass.DEVICE_LOG_BROKEN),
    Rule(
        "device.report", _SUCCESS, AlertClass.WITHDRAWN_RELEASE_RUNNING, _reports(WITHDRAWN_EVENTS)
    ),
    Rule("release.publish", _SUCCESS, AlertClass.ROOT_CHANGE_PUBLISHED, _publishes_root),
    Rule("release.publish", _SUCCESS, AlertClass.ROOT_CHANGE_PUBLISHED, _imports),
    # The lock itself; attempts refused while it holds are audited, not alerted.
    Rule("login.locked", _FAILURE, AlertClass.LOCKOUT),
    Rule("release.upload", _REFUSED, AlertClass.UPLOAD_REJECTED),
    Rule("release.upload_target", _REFUSED, AlertClass.UPLOAD_REJECTED),
    Rule("release.publish", _REFUSED, AlertClass.UPLOAD_REJECTED),
    Rule("deployment.stopped", ANY, AlertClass.DEPLOYMENT_STOPPED),
    Rule("freeze.enter", _SUCCESS, AlertClass.FREEZE_CHANGED),
    Rule("freeze.leave", _SUCCESS, AlertClass.FREEZE_CHANGED),
    Rule("repository.renew", _FAILURE, AlertClass.RENEWAL_FAILED),
    Rule("expiry.warning", ANY, AlertClass.METADATA_EXPIRING, _names("metadata:")),
    Rule("expiry.warning", ANY, AlertClass.TLS_EXPIRING, _names("tls:")),
)
#: R25: a replayed one-time code, whatever the action it was sent with.
REPLAY_OUTCOME: Final = "replay"


@dataclass(frozen=True)
class Classified:
    """A2: an entry's alert: its classes, most severe first, and its severity."""

    classes: tuple[AlertClass, ...]

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.classes[0]]

    @property
    def alert_class(self) -> AlertClass:
        return self.classes[0]


def classify(action: str, outcome: str, detail: Detail) -> Classified | None:
    """The alert an entry raises, or None when it is not critical."""
    found = {
        rule.alert
        for rule in RULES
        if rule.action == action
        and (rule.outcomes is None or outcome in rule.outcomes)
        and (rule.when is None or rule.when(detail))
    }
    if outcome == REPLAY_OUTCOME:
        found.add(AlertClass.OTP_REPLAY)
    if not found:
        return None
    order = list(AlertClass)
    return Classified(tuple(sorted(found, key=lambda c: (SEVERITY[c], order.index(c)))))


def alert_id(seq: int, entry_hash: str) -> str:
    """A4: the alert's id, the same for every delivery of one entry."""
    return f"{seq}-{entry_hash[:16]}"


def detail_of(text: str) -> dict[str, Any]:
    """A stored entry's detail (JSON text) as ``classify`` reads it; {} if not an object."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
