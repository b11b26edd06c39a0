"""The hash-chained usage log: every kind of tampering is named by its first bad seq."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hsm_mock import Purpose, Session, Token
from hsm_mock.errors import PinIncorrectError, PurposeMismatchError, UsageLogError
from hsm_mock.usage_log import GENESIS, Event, LogHead, Record, next_entry, verify_chain
from tests.clocks import FakeClock
from tests.hsm_mock.helpers import canonical, payload

SECOND = timedelta(seconds=1)  # every entry of a chain at its own time
Tamper = Callable[[list[bytes]], list[bytes]]


def _chain(length: int) -> tuple[list[bytes], LogHead]:
    clock, head, lines = FakeClock(tick=SECOND), GENESIS, []
    for number in range(length):
        line, head = next_entry(head, Record(Event.SIGN, label=f"key-{number}"), now=clock())
        lines.append(line.rstrip(b"\n"))
    return lines, head


def _edit(index: int, *, rehash: bool) -> Tamper:
    def tamper(lines: list[bytes]) -> list[bytes]:
        entry = json.loads(lines[index])
        entry["purpose"] = "root"
        if rehash:
            body = {name: value for name, value in entry.items() if name != "hash"}
            entry["hash"] = hashlib.sha256(canonical(body)).hexdigest()
        return [*lines[:index], json.dumps(entry).encode(), *lines[index + 1 :]]

    return tamper


def _rewrite_tail(lines: list[bytes]) -> list[bytes]:
    """Forge a consistent chain from entry 3 on: only the recorded head betrays it."""
    clock, head = FakeClock(tick=SECOND), LogHead(2, json.loads(lines[1])["hash"])
    forged = lines[:2]
    for _ in range(3):
        line, head = next_entry(head, Record(Event.SIGN, label="forged"), now=clock())
        forged.append(line.rstrip(b"\n"))
    return forged


def _append_chained(lines: list[bytes]) -> list[bytes]:
    last = json.loads(lines[-1])
    extra, _ = next_entry(
        LogHead(last["seq"], last["hash"]), Record(Event.SIGN), now=FakeClock(tick=SECOND)()
    )
    return [*lines, extra.rstrip(b"\n")]


def _float_label(index: int) -> Tamper:
    """A float where a string was: canonical JSON cannot encode it, so it cannot match."""

    def tamper(lines: list[bytes]) -> list[bytes]:
        entry = json.loads(lines[index])
        entry["label"] = 1.5
        return [*lines[:index], json.dumps(entry).encode(), *lines[index + 1 :]]

    return tamper


TAMPERING: dict[str, tuple[Tamper, int]] = {
    "edit-entry": (_edit(2, rehash=False), 3),
    "edit-entry-and-recompute-its-hash": (_edit(2, rehash=True), 4),
    "delete-entry": (lambda lines: lines[:2] + lines[3:], 3),
    "insert-copied-entry": (lambda lines: [*lines[:2], lines[1], *lines[2:]], 3),
    "reorder-entries": (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2),
    "truncate-tail": (lambda lines: lines[:3], 4),
    "truncate-everything": (lambda lines: [], 1),
    "rewrite-tail-consistently": (_rewrite_tail, 5),
    "append-chained-entry-beyond-head": (_append_chained, 6),
    "garbage-line": (lambda lines: [*lines[:1], b"{not json", *lines[2:]], 2),
    "value-without-canonical-json": (_float_label(2), 3),
}


def test_intact_chain_verifies_to_its_head() -> None:
    lines, head = _chain(5)
    assert verify_chain(lines, head) == head


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_log_tampering_detected_at_first_bad_seq(attack: str) -> None:
    """Threat: hiding a signature by editing, deleting, inserting, reordering or cutting."""
    tamper, bad_seq = TAMPERING[attack]
    lines, head = _chain(5)
    with pytest.raises(UsageLogError) as caught:
        verify_chain(tamper(lines), head)
    assert caught.value.seq == bad_seq
    assert str(bad_seq) in str(caught.value)


def test_naive_clock_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next_entry(GENESIS, Record(Event.INIT), now=datetime(2026, 1, 1))


def _use_token(session: Session, make_key: Callable[..., object]) -> None:
    make_key(Purpose.TIMESTAMP)
    session.sign(label="timestamp", payload=payload("timestamp"))
    with pytest.raises(PurposeMismatchError):
        session.sign(label="timestamp", payload=payload("root"))
    session.sign(label="timestamp", payload=payload("timestamp"))


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_token_log_verify_detects_tampering_on_disk(
    attack: str, token: Token, session: Session, make_key: Callable[..., object]
) -> None:
    _use_token(session, make_key)
    log = token.path / "usage.log"
    lines = log.read_bytes().splitlines()
    assert len(lines) == 5
    tamper, bad_seq = TAMPERING[attack]
    log.write_bytes(b"\n".join(tamper(lines)) + b"\n")
    with pytest.raises(UsageLogError) as caught:
        token.verify_log()
    assert caught.value.seq == bad_seq


def test_token_log_records_signatures_and_refusals(
    token: Token, session: Session, make_key: Callable[..., object]
) -> None:
    _use_token(session, make_key)
    entries = [json.loads(line) for line in (token.path / "usage.log").read_bytes().splitlines()]
    assert [entry["event"] for entry in entries] == [
        "init",
        "generate",
        "sign",
        "refuse-purpose",
        "sign",
    ]
    sign, refused = entries[2], entries[3]
    assert sign["payload_type"] == "timestamp" and sign["purpose"] == "timestamp"
    assert refused["payload_type"] == "root"
    assert token.verify_log() == LogHead(5, entries[4]["hash"])


def test_log_entries_never_contain_a_pin(token: Token, session: Session, token_dir: Path) -> None:
    with pytest.raises(PinIncorrectError):
        token.login("wrong-pin-123")
    log = (token_dir / "usage.log").read_text()
    assert "wrong-pin-123" not in log
    assert "refuse-user-pin" in log
