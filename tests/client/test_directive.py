"""The poll answer's strict parser (rule P1 of ``client.directive``) and P3's fail-closed rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from client.device_api import DeviceApiError
from client.directive import (
    STANDALONE,
    Assignment,
    Directive,
    DirectiveError,
    Install,
    ServerMode,
    Window,
    obtain,
    parse,
)

SHA = "0f" * 32


def answer(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mode": "normal",
        "install": "assigned",
        "assignment": {
            "deployment": 12,
            "target_path": "pump-x100/fw-2.0.0.bin",
            "sha256": SHA,
            "version": "2.0.0",
        },
        "window": {"opens": "2030-05-04T22:00:00Z", "closes": "2030-05-05T02:00:00+00:00"},
    }
    return body | changes


def with_assignment(**changes: Any) -> dict[str, Any]:
    return answer(assignment=answer()["assignment"] | changes)


def test_a_full_answer_is_parsed() -> None:
    directive = parse(answer())
    assert directive.mode is ServerMode.NORMAL and not directive.frozen
    assert directive.selection.install is Install.ASSIGNED
    assert directive.selection.assignment == Assignment(12, "pump-x100/fw-2.0.0.bin", SHA, "2.0.0")
    assert directive.window == Window(
        datetime(2030, 5, 4, 22, tzinfo=UTC), datetime(2030, 5, 5, 2, tzinfo=UTC)
    )
    assert directive.unanswered is None


def test_p7_an_offer_to_leave_a_withdrawn_release_has_no_deployment() -> None:
    """P7 (R56, R57): ``"deployment": null`` is the server's offer of a successor."""
    directive = parse(with_assignment(deployment=None))
    assert directive.selection.assignment == Assignment(
        None, "pump-x100/fw-2.0.0.bin", SHA, "2.0.0"
    )


def test_a_frozen_newest_answer_without_assignment_or_window() -> None:
    directive = parse(answer(mode="frozen", install="newest", assignment=None, window=None))
    assert directive.frozen
    assert directive.selection.install is Install.NEWEST
    assert (directive.selection.assignment, directive.window) == (None, None)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "not a JSON object"),
        (answer(mode="thawed"), "mode 'thawed' is not one of: normal, frozen"),
        (answer(mode=["normal"]), "mode ['normal'] is not one of"),
        (answer(install="latest"), "install 'latest' is not one of: assigned, newest"),
        ({k: v for k, v in answer().items() if k != "window"}, "missing: window"),
        (answer(extra=1), "unknown: extra"),
        (with_assignment(sha256="0F" * 32), "not 64 lowercase hex digits"),
        (with_assignment(sha256=SHA[:-1]), "not 64 lowercase hex digits"),
        (with_assignment(deployment=0), "not a positive integer"),
        (with_assignment(deployment=True), "not a positive integer"),
        (with_assignment(deployment="12"), "not a positive integer or null"),
        (with_assignment(target_path="/etc/passwd"), "is not a target path"),
        (with_assignment(target_path="pump-x100/../x.bin"), "is not a target path"),
        (with_assignment(target_path=""), "is not a target path"),
        (with_assignment(version="two"), "not a semantic version"),
        (with_assignment(version=2), "not a semantic version"),
        (answer(assignment="pump-x100/fw-2.0.0.bin"), "assignment is not a JSON object"),
        (answer(window={"opens": "2030-05-04T22:00:00"}), "missing: closes"),
        (
            answer(window={"opens": "2030-05-04T22:00:00", "closes": "2030-05-05T02:00:00Z"}),
            "window.opens '2030-05-04T22:00:00' is not an ISO 8601 time in UTC",
        ),
        (
            answer(window={"opens": "2030-05-04T22:00:00+02:00", "closes": "2030-05-05T02:00Z"}),
            "is not an ISO 8601 time in UTC",
        ),
        (
            answer(window={"opens": "tonight", "closes": "2030-05-05T02:00:00Z"}),
            "is not an ISO 8601 time in UTC",
        ),
        (
            answer(window={"opens": "2030-05-05T02:00:00Z", "closes": "2030-05-05T02:00:00Z"}),
            "is not before window.closes",
        ),
    ],
)
def test_a_bad_answer_is_a_clear_error_p1(body: object, says: str) -> None:
    with pytest.raises(DirectiveError) as raised:
        parse(body)
    assert says in str(raised.value)


def test_the_window_holds_opens_and_not_closes_p6() -> None:
    window = Window(datetime(2030, 5, 4, 22, tzinfo=UTC), datetime(2030, 5, 5, 2, tzinfo=UTC))
    assert window.is_open(window.opens)
    assert not window.is_open(window.closes)
    assert not window.is_open(datetime(2030, 5, 4, 21, 59, tzinfo=UTC))


def test_no_valid_answer_installs_nothing_new_and_says_why_p3() -> None:
    def refused() -> Directive:
        raise DeviceApiError("the server refused it (404): not found", status=404)

    def malformed() -> Directive:
        return parse({"mode": "normal"})

    for poll, why in ((refused, "refused it (404)"), (malformed, "missing: assignment")):
        directive = obtain(poll)
        assert directive.unanswered is not None and why in directive.unanswered
        assert directive.selection.install is Install.ASSIGNED
        assert directive.selection.assignment is None
        assert not directive.frozen


def test_a_device_with_no_server_takes_the_newest_p4() -> None:
    assert STANDALONE.selection.install is Install.NEWEST
    assert STANDALONE.selection.assignment is None
    assert (STANDALONE.window, STANDALONE.unanswered, STANDALONE.frozen) == (None, None, False)
