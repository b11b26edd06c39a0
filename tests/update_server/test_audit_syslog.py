"""Audit entries to syslog for the hospital's SIEM (R31): RFC 5424, after commit only."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask

from tests.clocks import FakeClock
from update_server.app import create_app
from update_server.audit import Event, append
from update_server.audit.chain import EntryRecord
from update_server.audit.syslog import MAX_OCTETS, SyslogSender, format_message, parse_address
from update_server.config import ConfigError, ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader

PRINTUSASCII = r"[\x21-\x7e]"
SD_NAME = r"[!#-<>-\\^-~]{1,32}"  # PRINTUSASCII except '=', SP, ']', '"'
PARAM_VALUE = r'(?:[^"\\\]]|\\["\\\]])*'  # the three specials only ever escaped
SYSLOG_MSG = re.compile(
    rf"""
    <(?P<pri>\d{{1,3}})>(?P<version>[1-9]\d{{0,2}})\x20
    (?P<timestamp>-|\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d{{1,6}})?(?:Z|[+-]\d{{2}}:\d{{2}}))\x20
    (?P<hostname>-|{PRINTUSASCII}{{1,255}})\x20
    (?P<app>-|{PRINTUSASCII}{{1,48}})\x20
    (?P<procid>-|{PRINTUSASCII}{{1,128}})\x20
    (?P<msgid>-|{PRINTUSASCII}{{1,32}})\x20
    (?P<sd>-|(?:\[{SD_NAME}(?:\x20{SD_NAME}="{PARAM_VALUE}")*\])+)
    (?:\x20(?P<msg>.*))?
    """,
    re.VERBOSE | re.DOTALL,
)
SD_PARAM = re.compile(rf'\x20({SD_NAME})="({PARAM_VALUE})"')


def parse_rfc5424(datagram: bytes) -> dict[str, str]:
    """Parse one message strictly by the RFC 5424 ABNF; unescape SD-PARAM values."""
    text = datagram.decode("utf-8")  # MSG-UTF8 and PARAM-VALUE are UTF-8
    match = SYSLOG_MSG.fullmatch(text)
    assert match, f"not RFC 5424: {text!r}"
    assert 0 <= int(match["pri"]) <= 191
    msg = match["msg"] or ""
    assert msg.startswith("\ufeff"), "MSG in UTF-8 must start with a BOM"
    elements = re.findall(rf'\[({SD_NAME})((?:\x20{SD_NAME}="{PARAM_VALUE}")*)\]', match["sd"])
    params = {}
    for sd_id, body in elements:
        assert re.fullmatch(r"[^@]+@\d+", sd_id), "a private SD-ID is name@enterprise-number"
        for name, value in SD_PARAM.findall(body):
            params[f"{sd_id}/{name}"] = re.sub(r'\\(["\\\]])', r"\1", value)
    return {**match.groupdict(), "msg": msg[1:], **params}


def entry(**changes: object) -> EntryRecord:
    base = EntryRecord(
        seq=42,
        time=datetime(2026, 11, 23, 9, 0, 1, 500, tzinfo=UTC),
        actor="alice",
        role="release_engineer",
        action="release.publish",
        object="line-a/fw-1.2.0.bin",
        outcome="success",
        source="192.0.2.7",
        detail='{"version":"1.2.0"}',
        prev_hash="a" * 64,
        hash="b" * 64,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_message_follows_rfc5424_r31() -> None:
    parsed = parse_rfc5424(format_message(entry(), hostname="fw1.example", procid=4242))
    assert parsed["pri"] == str(13 * 8 + 5)  # facility log audit, severity notice
    assert parsed["version"] == "1"
    assert parsed["timestamp"] == "2026-11-23T09:00:01.000500Z"
    assert (parsed["hostname"], parsed["app"], parsed["procid"]) == (
        "fw1.example",
        "fwserver",
        "4242",
    )
    assert parsed["msgid"] == "release.publish"
    sd = {k.split("/", 1)[1]: v for k, v in parsed.items() if k.startswith("fwaudit@32473/")}
    assert sd == {
        "seq": "42",
        "actor": "alice",
        "role": "release_engineer",
        "outcome": "success",
        "object": "line-a/fw-1.2.0.bin",
        "source": "192.0.2.7",
        "hash": "b" * 64,
    }
    assert "alice (release_engineer) release.publish line-a/fw-1.2.0.bin: success" in parsed["msg"]
    assert '{"version":"1.2.0"}' in parsed["msg"]


@pytest.mark.parametrize("outcome", ["failure", "refused"])
def test_failures_and_refusals_are_warnings(outcome: str) -> None:
    parsed = parse_rfc5424(format_message(entry(outcome=outcome), hostname="h", procid=1))
    assert parsed["pri"] == str(13 * 8 + 4)


def test_a_replayed_code_is_critical_as_its_alert_r25_r31() -> None:
    """An alert's entry has the alert's severity (``alerts.critical``): a replay is critical."""
    parsed = parse_rfc5424(format_message(entry(outcome="replay"), hostname="h", procid=1))
    assert parsed["pri"] == str(13 * 8 + 2)


def test_sd_param_values_escape_quote_backslash_and_bracket() -> None:
    nasty = 'ev"il\\name]x'
    message = format_message(entry(actor=nasty, object="a]b"), hostname="h", procid=1)
    assert b'actor="ev\\"il\\\\name\\]x"' in message
    parsed = parse_rfc5424(message)
    assert parsed["fwaudit@32473/actor"] == nasty
    assert parsed["fwaudit@32473/object"] == "a]b"


def test_control_characters_cannot_forge_a_second_line() -> None:
    forged = "eve\n<13>1 2026-01-01T00:00:00Z host fwserver 1 login - \ufeffadmin login: success"
    message = format_message(entry(actor=forged, object="x\r\ny"), hostname="h", procid=1)
    assert b"\n" not in message
    assert b"\r" not in message
    parsed = parse_rfc5424(message)
    assert parsed["fwaudit@32473/actor"].startswith("eve\ufffd<13>1")


def test_header_fields_are_printable_ascii_or_nil() -> None:
    message = format_message(entry(action="lo gin\u00e9"), hostname="", procid="a b")
    parsed = parse_rfc5424(message)
    assert parsed["hostname"] == "-"
    assert parsed["procid"] == "a_b"
    assert parsed["msgid"] == "lo_gin_"


def test_message_is_cut_to_2048_octets_on_a_utf8_boundary() -> None:
    detail = json.dumps({"notes": "é" * 5000}, ensure_ascii=False)
    message = format_message(entry(detail=detail), hostname="h", procid=1)
    assert len(message) <= MAX_OCTETS
    parse_rfc5424(message)  # still valid UTF-8 and RFC 5424


def test_address_forms() -> None:
    assert parse_address("udp://127.0.0.1:514") == ("127.0.0.1", 514)
    assert parse_address("udp://[::1]:5514") == ("::1", 5514)
    assert parse_address("/dev/log") == "/dev/log"
    for bad in ("tcp://host:514", "udp://host", "host:514", "udp://host:99999", "udp://h:1/x"):
        with pytest.raises(ConfigError, match="syslog_address"):
            parse_address(bad)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    """A real syslog receiver: a UDP socket bound by the test on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_udp_delivery(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    SyslogSender(f"udp://127.0.0.1:{port}", hostname="fw1").send_entries(
        [entry(seq=1), entry(seq=2)]
    )
    first, second = receiver.recv(4096), receiver.recv(4096)
    assert parse_rfc5424(first)["fwaudit@32473/seq"] == "1"
    assert parse_rfc5424(second)["fwaudit@32473/seq"] == "2"


def test_undeliverable_syslog_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SyslogSender(str(tmp_path / "no-such-socket")).send_entries([entry()])
    assert "not delivered to syslog" in caplog.text


@pytest.fixture
def syslog_app(config: ServerConfig, clock: FakeClock, receiver: socket.socket) -> Iterator[Flask]:
    port = receiver.getsockname()[1]
    changed = config.with_changes(syslog_address=f"udp://127.0.0.1:{port}")
    app = create_app(changed, clock=clock, signer_loader=signer_loader(config))
    yield app
    app.extensions["fw"].engine.dispose()


def login_event(clock: FakeClock, outcome: str) -> Event:
    return Event(
        time=clock(),
        actor="bob",
        role="technician",
        action="login",
        object="bob",
        outcome=outcome,
        source="198.51.100.4",
    )


def test_sent_after_commit_and_never_for_a_rolled_back_action_r31(
    syslog_app: Flask, clock: FakeClock, receiver: socket.socket
) -> None:
    sessions = syslog_app.extensions["fw"].sessions
    with sessions() as db:
        append(db, login_event(clock, "failure"))
        db.rollback()  # the action was refused: its entry never existed
    with transaction(sessions) as db:
        append(db, login_event(clock, "success"))
        receiver.settimeout(0.2)
        with pytest.raises(TimeoutError):
            receiver.recv(4096)  # nothing before the commit
    receiver.settimeout(5)
    parsed = parse_rfc5424(receiver.recv(4096))
    assert parsed["fwaudit@32473/outcome"] == "success"
    assert parsed["fwaudit@32473/seq"] == "1"  # the rolled-back entry took no number
    receiver.settimeout(0.2)
    with pytest.raises(TimeoutError):
        receiver.recv(4096)


def test_entry_of_a_rolled_back_savepoint_is_not_sent(
    syslog_app: Flask, clock: FakeClock, receiver: socket.socket
) -> None:
    sessions = syslog_app.extensions["fw"].sessions
    with transaction(sessions) as db:
        append(db, login_event(clock, "success"))
        savepoint = db.begin_nested()
        append(db, login_event(clock, "failure"))
        savepoint.rollback()
    parsed = parse_rfc5424(receiver.recv(4096))
    assert (parsed["fwaudit@32473/seq"], parsed["fwaudit@32473/outcome"]) == ("1", "success")
    receiver.settimeout(0.2)
    with pytest.raises(TimeoutError):
        receiver.recv(4096)
