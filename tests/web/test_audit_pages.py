"""The auditor's pages (AP1-AP4 of ``web.audit_pages``), driven as a browser drives them.

R27 (every read of the log is itself audited), R28 (the chain checked
against its signed checkpoint with the audit key, and where it breaks),
R32/R61 (the export is ``fwserver audit export``'s file and verifies
offline). The entries searched are appended in the test with known fields
and times; the pages read the real log of the app, anchored and signed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update

from tests.clocks import FakeClock
from tests.update_server.people import otp_at
from tests.web.pages import Browser, WebPerson, web_person
from update_server.audit import Actor, append, audit_event
from update_server.audit.checkpoint import checkpoint_now
from update_server.audit.export import verify_export, write_export
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.models import AuditEntry, Role
from update_server.web.audit_pages import PAGE, FilterError, parse_filters

NURSE = Actor("nurse-ann", "technician", "10.0.0.7")


def logged_in(app: Flask, browser: Browser, clock: FakeClock, name: str, role: Role) -> WebPerson:
    person = web_person(app, browser, clock, name, role)
    assert browser.log_in(name, person.password, otp_at(person.totp, clock)).status_code == 302
    return person


def add_entry(
    app: Flask, clock: FakeClock, action: str, *, at: datetime | None = None, **fields: str
) -> int:
    """One entry appended (now, or ``at``) by ``fields.actor`` (default the nurse); its seq."""
    actor = Actor(fields.pop("actor", NURSE.name), NURSE.role, NURSE.source)
    with transaction(app.extensions["fw"].sessions) as db:
        entry = append(
            db,
            audit_event(
                action,
                actor=actor,
                object=fields.pop("object", "pump-0001"),
                outcome=fields.pop("outcome", "success"),
                time=at or clock.now,
                detail=fields,
            ),
        )
        return entry.seq


def entries(app: Flask, **where: str) -> list[AuditEntry]:
    with transaction(app.extensions["fw"].sessions) as db:
        query = select(AuditEntry).filter_by(**where).order_by(AuditEntry.seq)
        return list(db.scalars(query))


def shown_seqs(page: str) -> list[int]:
    return [int(part.split('"')[0]) for part in page.split('id="entry-')[1:]]


@pytest.fixture
def auditor(app: Flask, browser: Browser, clock: FakeClock) -> WebPerson:
    return logged_in(app, browser, clock, "audrey", Role.AUDITOR)


def test_ap2_a_search_by_actor_action_family_outcome_and_object_finds_newest_first(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    freeze = add_entry(app, clock, "freeze.enter", object="system")
    clock.advance(minutes=1)
    vote = add_entry(app, clock, "freeze.vote", object="system", outcome="refused")
    clock.advance(minutes=1)
    other = add_entry(app, clock, "freeze.enter", actor="someone-else", object="system")
    report = add_entry(app, clock, "device.report", object="PUMP-0042/ward-3")

    browser.get("/audit?actor=nurse-ann&action=freeze")
    assert shown_seqs(browser.last_page) == [vote, freeze]
    assert other not in shown_seqs(browser.last_page)
    browser.get("/audit?actor=nurse-ann&action=freeze&outcome=refused")
    assert shown_seqs(browser.last_page) == [vote]
    browser.get("/audit?object=pump-0042")  # contains, any case
    assert shown_seqs(browser.last_page) == [report]
    browser.get("/audit?action=freeze.ent")  # a family is whole names, not a prefix
    assert shown_seqs(browser.last_page) == []
    assert "No entry found" in browser.last_page


def test_ap2_a_time_range_includes_each_end_at_its_precision(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    start = clock.now + timedelta(days=3)  # the entries' own times: the session stays fresh
    first = add_entry(app, clock, "release.publish", at=start)
    second = add_entry(app, clock, "release.publish", at=start + timedelta(minutes=3, seconds=20))
    add_entry(app, clock, "release.publish", at=start + timedelta(days=1))
    day = start.strftime("%Y-%m-%d")
    minute = (start + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")

    browser.get(f"/audit?action=release.publish&since={day}&until={minute}")
    assert shown_seqs(browser.last_page) == [second, first]
    earlier = (start + timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M")
    browser.get(f"/audit?action=release.publish&until={earlier}")
    assert shown_seqs(browser.last_page) == [first]


def test_ap2_pages_of_the_newest_first_then_older_by_sequence_number(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    added = [add_entry(app, clock, "device.change", object=f"pump-{n}") for n in range(PAGE + 5)]
    browser.get("/audit?action=device.change")
    assert shown_seqs(browser.last_page) == added[::-1][:PAGE]
    browser.get(_older_link(browser.last_page))
    assert shown_seqs(browser.last_page) == added[::-1][PAGE:]
    assert 'id="older"' not in browser.last_page
    assert 'id="newest"' in browser.last_page


def _older_link(page: str) -> str:
    before = page.split('id="older"', 1)[0]
    return before.rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def test_ap1_each_search_is_itself_audited_with_its_filters_r27(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    assert browser.get("/audit?action=login&outcome=failure").status_code == 200
    reads = entries(app, action="audit.read", actor="audrey")
    assert len(reads) == 1
    detail = json.loads(reads[0].detail)
    assert detail["action"] == "login"
    assert detail["outcome"] == "failure"
    assert reads[0].object == "audit_log"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("outcome=maybe", "outcome is one of"),
        ("since=yesterday", "since must be a UTC date"),
        ("since=2026-12-02&until=2026-12-01", "the range ends before it starts"),
        ("actor=" + "a" * 65, "actor is at most 64 characters"),
        ("before=-3", "before must be a sequence number"),
        ("object=%01", "object holds a control character"),
    ],
)
def test_ap2_a_bad_filter_shows_the_form_again_with_what_is_wrong_nothing_recorded(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson, query: str, problem: str
) -> None:
    before = len(entries(app))
    response = browser.get(f"/audit?{query}")
    assert response.status_code == 400
    assert problem in browser.last_page
    assert 'id="search-form"' in browser.last_page
    assert 'id="error"' in browser.last_page
    assert len(entries(app)) == before


def test_ap2_parse_filters_names_every_problem_at_once() -> None:
    with pytest.raises(FilterError) as raised:
        parse_filters({"outcome": "maybe", "until": "soon"})
    assert len(raised.value.problems) == 2


def test_ap1_readers_only_a_technician_is_refused_and_sees_no_link(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    browser.get("/")
    assert 'href="/audit"' not in browser.last_page
    for path in ("/audit", "/audit/verify", "/audit/export", "/alerts"):
        assert browser.get(path).status_code == 403, path


def test_ap1_a_security_officer_reads_the_log_and_the_alerts_from_home(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    logged_in(app, browser, clock, "olga", Role.SECURITY_OFFICER)
    browser.get("/")
    for link in ('href="/audit"', 'href="/audit/verify"', 'href="/alerts"', 'href="/freeze"'):
        assert link in browser.last_page, link
    assert browser.get("/audit").status_code == 200
    assert browser.get("/audit/verify").status_code == 200


def test_ap3_an_intact_log_says_how_many_entries_which_checkpoint_and_which_key_r28(
    app: Flask, browser: Browser, clock: FakeClock, config: ServerConfig, auditor: WebPerson
) -> None:
    browser.get("/")
    assert 'href="/audit/export"' in browser.last_page
    services = app.extensions["fw"]
    signed = add_entry(app, clock, "release.publish")
    with transaction(services.sessions) as db:
        checkpoint_now(db, services.signer("audit"), now=clock.now)
    add_entry(app, clock, "release.publish")
    key = audit_public_key(config)
    head = entries(app)[-1].seq
    response = browser.get("/audit/verify")
    assert response.status_code == 200
    page = browser.last_page
    assert 'data-ok="yes"' in page
    assert f"{head} entries, hash-chained from the first to entry {head}" in page
    assert f"signed up to entry {signed}, the head anchored at entry {head}" in page
    assert f'<dd id="checkpoint">entry {signed}, signed ' in page
    assert f'by key <span class="mono">{key.keyid[:16]}' in page
    assert f'<p class="mono" id="key">{key.keyid}</p>' in page
    checked = entries(app, action="audit.verify")
    assert [row.outcome for row in checked] == ["success"]
    assert json.loads(checked[0].detail) == {"first_bad": None, "head": head}


def test_ap3_a_tampered_entry_is_named_where_the_chain_breaks_r28(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    victim = add_entry(app, clock, "release.publish", object="pump-x100/fw-2.0.0.bin")
    add_entry(app, clock, "release.publish")
    with transaction(app.extensions["fw"].sessions) as db:
        db.execute(
            update(AuditEntry).where(AuditEntry.seq == victim).values(object="pump-x100/evil.bin")
        )
    browser.get("/audit/verify")
    page = browser.last_page
    assert 'data-ok="no"' in page
    assert f"It breaks at entry <strong>{victim}</strong>: content altered" in page
    assert f'href="/audit?before={victim + 1}"' in page
    assert [row.outcome for row in entries(app, action="audit.verify")] == ["failure"]
    browser.get(f"/audit?before={victim + 1}")
    assert shown_seqs(browser.last_page)[0] == victim


def _download(browser: Browser, form: dict[str, str]) -> bytes:
    browser.get("/audit/export")
    response = browser.post("/audit/export", form)
    assert response.status_code == 200, browser.last_page
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return response.get_data()


def test_ap4_the_export_is_fwserver_audit_exports_file_signed_to_its_end_and_verifies_r32(
    app: Flask,
    browser: Browser,
    clock: FakeClock,
    config: ServerConfig,
    auditor: WebPerson,
    tmp_path: Path,
) -> None:
    add_entry(app, clock, "release.publish")
    body = _download(browser, {"since": "", "until": ""})
    exported = entries(app, action="audit.export")
    assert [row.outcome for row in exported] == ["success"]
    assert exported[0].actor == "audrey"
    lines = body.splitlines()
    assert json.loads(lines[-2])["seq"] == exported[0].seq, "recorded before it is made"
    checkpoint = json.loads(lines[-1])["checkpoint"]
    assert checkpoint["seq"] == exported[0].seq, "the head is signed first"
    file = tmp_path / "export.jsonl"
    file.write_bytes(body)
    report = verify_export(file, audit_public_key(config))
    assert report.ok, report.reason
    assert report.head_seq == exported[0].seq
    with transaction(app.extensions["fw"].sessions) as db:
        again = BytesIO()
        write_export(db, again)
    assert again.getvalue() == body, "byte for byte what fwserver audit export writes"


def test_ap4_a_range_gives_the_same_lines_of_its_entries_and_the_checkpoint_line(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    at = clock.now - timedelta(days=2)
    inside = add_entry(app, clock, "release.publish", at=at)
    day = at.strftime("%Y-%m-%d")
    whole = _download(browser, {"since": "", "until": ""}).splitlines()
    ranged = _download(browser, {"since": day, "until": day}).splitlines()
    by_seq = {json.loads(line).get("seq"): line for line in whole[:-1]}
    assert ranged[:-1] == [by_seq[inside]]
    checkpoint = json.loads(ranged[-1])["checkpoint"]
    assert checkpoint["seq"] == entries(app, action="audit.export")[-1].seq
    detail = json.loads(entries(app, action="audit.export")[-1].detail)
    assert detail["since"].startswith(day)


def test_ap4_a_bad_range_shows_the_form_again_and_records_nothing(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    before = len(entries(app))
    browser.get("/audit/export")
    response = browser.post("/audit/export", {"since": "2026-13-45", "until": ""})
    assert response.status_code == 400
    assert "since must be a UTC date" in browser.last_page
    assert 'id="export-form"' in browser.last_page
    assert len(entries(app)) == before


def test_ap4_an_export_without_the_forms_csrf_token_is_refused_w3(
    app: Flask, browser: Browser, clock: FakeClock, auditor: WebPerson
) -> None:
    browser.get("/audit/export")
    response = browser.post("/audit/export", {}, token="forged")
    assert response.status_code == 400
    assert entries(app, action="audit.export") == []
