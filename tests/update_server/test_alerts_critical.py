"""Which audit entries are alerts (R31, ``alerts.critical`` A1-A4): the table, unit tested."""

from __future__ import annotations

import pytest

from client.events import EventType
from update_server.alerts.critical import (
    ATTACK_EVENTS,
    FAILSAFE_EVENTS,
    INTEGRITY_EVENTS,
    LOG_EVENTS,
    RULES,
    SEVERITY,
    UPDATE_FAILED_EVENTS,
    WITHDRAWN_EVENTS,
    AlertClass,
    Severity,
    alert_id,
    classify,
    event_types,
)
from update_server.audit.actions import Action
from update_server.audit.vocabulary import OUTCOMES

#: Rules that name actions other parts of issue 11 add later (none: each has landed).
PENDING: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("action", "outcome", "detail", "expected"),
    [
        ("login.locked", "failure", {"until": "x", "failures": 5}, AlertClass.LOCKOUT),
        ("login", "replay", {"reason": "replayed"}, AlertClass.OTP_REPLAY),
        ("otp.confirm", "replay", {}, AlertClass.OTP_REPLAY),
        ("release.upload", "refused", {"rule": "signature"}, AlertClass.UPLOAD_REJECTED),
        ("release.upload_target", "refused", {}, AlertClass.UPLOAD_REJECTED),
        ("release.publish", "refused", {}, AlertClass.UPLOAD_REJECTED),
        (
            "release.publish",
            "success",
            {"published": {"root": 3, "targets": 7}},
            AlertClass.ROOT_CHANGE_PUBLISHED,
        ),
        ("release.publish", "success", {"directory": "/r"}, AlertClass.ROOT_CHANGE_PUBLISHED),
        ("deployment.stopped", "success", {"reason": "failures"}, AlertClass.DEPLOYMENT_STOPPED),
        ("freeze.enter", "success", {"reason": "key leak"}, AlertClass.FREEZE_CHANGED),
        ("freeze.leave", "success", {}, AlertClass.FREEZE_CHANGED),
        ("repository.renew", "failure", {}, AlertClass.RENEWAL_FAILED),
        ("device.report", "refused", {"refused": "fork"}, AlertClass.DEVICE_LOG_BROKEN),
        (
            "device.report",
            "success",
            {"events": ["checked", "running_not_listed"]},
            AlertClass.WITHDRAWN_RELEASE_RUNNING,
        ),
        ("device.report", "success", {"events": ["bad_hash"]}, AlertClass.DEVICE_ATTACK_REFUSED),
        (
            "device.report",
            "success",
            {"events": ["integrity_failure"]},
            AlertClass.DEVICE_INTEGRITY_FAILURE,
        ),
        ("device.report", "success", {"events": ["failsafe_entered"]}, AlertClass.DEVICE_FAILSAFE),
        ("device.report", "success", {"events": ["rolled_back"]}, AlertClass.DEVICE_UPDATE_FAILED),
        ("device.report", "success", {"events": ["log_damaged"]}, AlertClass.DEVICE_LOG_BROKEN),
        ("expiry.warning", "failure", {"what": "metadata:timestamp"}, AlertClass.METADATA_EXPIRING),
        ("expiry.warning", "failure", {"what": "tls:server"}, AlertClass.TLS_EXPIRING),
    ],
)
def test_a1_each_critical_event_of_issue_11_is_an_alert(
    action: str, outcome: str, detail: dict[str, object], expected: AlertClass
) -> None:
    found = classify(action, outcome, detail)
    assert found is not None
    assert found.alert_class is expected


@pytest.mark.parametrize(
    ("action", "outcome", "detail"),
    [
        ("login", "success", {}),
        ("login", "failure", {"reason": "bad password"}),
        # Attempts while the lock holds: audited, but the lock was the alert.
        ("login.locked", "refused", {"until": "x"}),
        ("release.upload", "success", {}),
        # A server-side failure (busy, disk full) is not an attacker's upload.
        ("release.upload", "failure", {"rule": "busy"}),
        ("release.publish", "success", {"published": {"targets": 7}}),
        ("device.report", "success", {"events": ["checked", "no_update", "updated"]}),
        ("device.report", "success", {"running_version": "1.0", "head": 3}),
        ("deployment.approve", "success", {}),
        # A refused freeze (already frozen) changes nothing; a first vote lifts nothing yet.
        ("freeze.enter", "refused", {}),
        ("freeze.vote", "success", {}),
        ("audit.read", "success", {}),
    ],
)
def test_a1_routine_entries_raise_no_alert(
    action: str, outcome: str, detail: dict[str, object]
) -> None:
    assert classify(action, outcome, detail) is None


def test_a2_one_entry_is_one_alert_most_severe_class_first() -> None:
    found = classify("device.report", "success", {"events": ["rolled_back", "bad_signature"]})
    assert found is not None
    assert found.classes == (AlertClass.DEVICE_ATTACK_REFUSED, AlertClass.DEVICE_UPDATE_FAILED)
    assert found.severity is Severity.CRITICAL


def test_a1_a_detail_of_the_wrong_shape_raises_no_alert_and_no_error() -> None:
    assert classify("device.report", "success", {"events": "bad_hash"}) is None
    assert classify("release.publish", "success", {"published": ["root"]}) is None


def test_a1_every_rule_names_an_action_of_the_vocabulary_and_known_outcomes() -> None:
    actions = {action.value for action in Action}
    missing = {rule.action for rule in RULES} - actions - PENDING
    assert missing == set(), "rules naming no audit action: add the action or mark it pending"
    for rule in RULES:
        assert rule.outcomes is None or rule.outcomes <= OUTCOMES


def test_a3_device_event_sets_are_event_types_the_client_writes() -> None:
    written = {event.value for event in EventType}
    for events in (
        ATTACK_EVENTS,
        INTEGRITY_EVENTS,
        FAILSAFE_EVENTS,
        UPDATE_FAILED_EVENTS,
        LOG_EVENTS,
        WITHDRAWN_EVENTS,
    ):
        assert events <= written


def test_a3_a_reports_event_types_are_listed_once_sorted_and_bounded() -> None:
    entries = [{"type": "checked"}, {"type": "bad_hash"}, {"type": "checked"}]
    assert event_types(entries) == ["bad_hash", "checked"]
    assert len(event_types({"type": f"t{n}"} for n in range(500))) == 64


def test_every_alert_class_has_an_rfc5424_severity() -> None:
    assert set(SEVERITY) == set(AlertClass)
    assert all(1 <= severity <= 7 for severity in SEVERITY.values())


def test_a4_the_alert_id_is_stable_and_tells_entries_apart() -> None:
    digest = "ab" * 32
    assert alert_id(7, digest) == alert_id(7, digest) == "7-" + "ab" * 8
    assert alert_id(7, "cd" * 32) != alert_id(7, digest)
