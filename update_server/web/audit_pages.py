"""The auditor's read-only pages, nested in the ``web`` blueprint: search, verify, export.

They orchestrate what ``audit.views`` and ``fwserver audit`` do, over the
same cores (``audit.store``, ``audit.checkpoint``, ``audit.export``).
Rules:

AP1 Auditors and security officers read (the API's ``audit.views.READERS``);
    each read is itself audited (R27): a search as ``audit.read`` with its
    filters, a check as ``audit.verify`` with its outcome, a download as
    ``audit.export``.
AP2 A search filters on actor (exact), action (exact, or a family:
    ``freeze`` finds ``freeze.enter`` and ``freeze.leave``), outcome (one of
    the vocabulary's), object (contains, any case) and a UTC time range
    (a date, or a date and time, each end included at its precision), and
    shows the newest entries first, ``PAGE`` at a time, older pages by
    sequence number. A filter that is not valid shows the form again with
    what is wrong (400); nothing is read, nothing recorded.
AP3 The check is the API's (``checkpoint.verify_database`` with the audit
    public key and the head anchored outside the database): the page says
    how many entries, up to which one they are signed, by which key, and on
    failure the first bad entry, why, and a link to the entries around it.
AP4 The export is a POST (CSRF): the current head is signed first, as
    ``fwserver audit export`` does, then the file is the command's, byte
    for byte: every entry, then the latest signed checkpoint. A time range
    gives the same lines for the entries in it, then the same checkpoint
    line; only the whole log can be checked on its own
    (``fwserver audit verify --export FILE --key KEY``). The download is
    recorded before it is made; a failure to make it is recorded too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from update_server.access import allow
from update_server.app import Services
from update_server.audit.actions import Action
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.chain import canonical_time
from update_server.audit.checkpoint import (
    AuditReport,
    checkpoint_now,
    latest_checkpoint,
    verify_database,
)
from update_server.audit.errors import CheckpointError
from update_server.audit.export import entry_json, write_export
from update_server.audit.public_key import audit_public_key
from update_server.audit.recording import record, request_event
from update_server.audit.store import READ_BATCH
from update_server.audit.views import READERS
from update_server.audit.vocabulary import FIELDS, OUTCOMES
from update_server.errors import ServiceUnavailableError
from update_server.models import AuditEntry
from update_server.web.forms import ActionForm

blueprint = Blueprint("audit", __name__, url_prefix="/audit")

PAGE = 50
#: Text filters and the longest each may be (their columns' lengths).
LENGTHS: Mapping[str, int] = {
    spec.name: spec.length or 0 for spec in FIELDS if spec.name in {"actor", "action", "object"}
}
#: The time filters' spellings: their precision is what "included" means (AP2).
TIME_FORMATS = (
    ("%Y-%m-%d", timedelta(days=1)),
    ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
    ("%Y-%m-%d %H:%M", timedelta(minutes=1)),
    ("%Y-%m-%dT%H:%M:%S", timedelta(seconds=1)),
    ("%Y-%m-%d %H:%M:%S", timedelta(seconds=1)),
)
TIME_HINT = "a UTC date (2026-12-01) or a date and time (2026-12-01T14:30)"
#: What a ``before`` cursor may be: a sequence number.
MAX_SEQ = 2**62
#: Whole-log exports are spooled in memory up to this size, then on disk.
SPOOL_BYTES = 8 * 1024 * 1024


class FilterError(ValueError):
    """AP2: the filters as typed, and what is wrong with them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class Filters:
    """AP2: a search, validated. Times are UTC; ``until`` is exclusive."""

    actor: str = ""
    action: str = ""
    outcome: str = ""
    object: str = ""
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.actor:
            found.append(AuditEntry.actor == self.actor)
        if self.action:
            family = AuditEntry.action.startswith(f"{self.action}.", autoescape=True)
            found.append(or_(AuditEntry.action == self.action, family))
        if self.outcome:
            found.append(AuditEntry.outcome == self.outcome)
        if self.object:
            lowered = func.lower(AuditEntry.object)
            found.append(lowered.contains(self.object.lower(), autoescape=True))
        if self.since is not None:
            found.append(AuditEntry.time >= self.since)
        if self.until is not None:
            found.append(AuditEntry.time < self.until)
        return found

    def query(self, *, limit: int) -> Select[Any]:
        """Newest first, older than ``before``."""
        query = select(AuditEntry).where(*self.conditions())
        if self.before is not None:
            query = query.where(AuditEntry.seq < self.before)
        return query.order_by(AuditEntry.seq.desc()).limit(limit)

    def args(self) -> dict[str, str]:
        """The filters as the form's fields (to link to the next page)."""
        shown = {
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "object": self.object,
            "since": _typed(self.since),
            "until": _typed(self.until, end=True),
        }
        return {name: value for name, value in shown.items() if value}

    def detail(self) -> dict[str, Any]:
        """What the audit entry of this read says of it (AP1)."""
        return {**self.args(), **({"before": self.before} if self.before else {})}


def parse_filters(args: Mapping[str, str]) -> Filters:
    """AP2: the search typed in ``args``; ``FilterError`` naming every problem."""
    problems: list[str] = []
    texts = {name: args.get(name, "").strip() for name in (*LENGTHS, "outcome")}
    for name, limit in LENGTHS.items():
        if len(texts[name]) > limit:
            problems.append(f"{name} is at most {limit} characters")
        elif any(not char.isprintable() for char in texts[name]):
            problems.append(f"{name} holds a control character")
    if texts["outcome"] and texts["outcome"] not in OUTCOMES:
        problems.append(f"outcome is one of {', '.join(sorted(OUTCOMES))}, or empty for any")
    since = _time(args.get("since", ""), "since", problems)
    until = _time(args.get("until", ""), "until", problems, end=True)
    if since is not None and until is not None and until <= since:
        problems.append("the range ends before it starts: 'until' comes after 'since'")
    before = _before(args.get("before", ""), problems)
    if problems:
        raise FilterError(problems)
    return Filters(**texts, since=since, until=until, before=before)


def _time(raw: str, name: str, problems: list[str], *, end: bool = False) -> datetime | None:
    """A UTC moment; for the range's end, the first moment after it (included at its precision)."""
    text = raw.strip()
    if not text:
        return None
    for spelling, precision in TIME_FORMATS:
        try:
            moment = datetime.strptime(text, spelling).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment + precision if end else moment
    problems.append(f"{name} must be {TIME_HINT}, not {text[:40]!r}")
    return None


def _typed(moment: datetime | None, *, end: bool = False) -> str:
    """A filter's time as typed back into the form (the end: the last second it includes)."""
    if moment is None:
        return ""
    return (moment - timedelta(seconds=1) if end else moment).strftime("%Y-%m-%dT%H:%M:%S")


def _before(raw: str, problems: list[str]) -> int | None:
    text = raw.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) < 20) or not 1 <= int(text) <= MAX_SEQ:
        problems.append(f"before must be a sequence number from 1 to {MAX_SEQ}")
        return None
    return int(text)


@blueprint.get("")
@allow(*READERS)
def search() -> ResponseReturnValue:
    """AP2: the entries the filters find, newest first; AP1: the read audited."""
    try:
        filters = parse_filters(request.args)
    except FilterError as refused:
        return _search_page(request.args, error=refused.problems, status=400)
    rows = list(g.db.scalars(filters.query(limit=PAGE + 1)))
    shown, older = rows[:PAGE], len(rows) > PAGE
    detail = {**filters.detail(), "returned": len(shown)}
    record(request_event(Action.AUDIT_READ, object="audit_log", outcome="success", detail=detail))
    g.db.commit()
    older_url = _search_url({**filters.args(), "before": shown[-1].seq}) if older else None
    return _search_page(request.args, entries=shown, older_url=older_url, filtered=filters.args())


def _search_url(args: Mapping[str, Any]) -> str:
    values: dict[str, Any] = dict(args)
    return url_for(".search", **values)


def _search_page(
    typed: Mapping[str, str],
    *,
    entries: list[AuditEntry] | None = None,
    older_url: str | None = None,
    filtered: Mapping[str, str] | None = None,
    error: list[str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    page = render_template(
        "audit.html",
        typed=typed,
        entries=entries or [],
        searched=entries is not None,
        older_url=older_url,
        newest_url=_search_url(filtered) if filtered is not None else None,
        paged="before" in typed,
        actions=sorted(action.value for action in Action),
        outcomes=sorted(OUTCOMES),
        time_hint=TIME_HINT,
        page_size=PAGE,
        shown=_shown,
        error=error or [],
        logout=ActionForm(),
    )
    return page, status


@blueprint.get("/verify")
@allow(*READERS)
def verify() -> ResponseReturnValue:
    """AP3: the whole log checked against the audit key; the result page."""
    config = _services().config
    try:
        key = audit_public_key(config)
        anchor = read_anchor(anchor_file(config.data_dir))
    except CheckpointError as exc:
        raise ServiceUnavailableError(f"cannot check the audit log: {exc}") from None
    report = verify_database(g.db, key, anchor=anchor, every=config.audit_checkpoint_every)
    outcome = "success" if report.ok else "failure"
    detail = {"first_bad": report.first_bad, "head": report.head_seq}
    record(request_event(Action.AUDIT_VERIFY, object="audit_log", outcome=outcome, detail=detail))
    g.db.commit()
    return render_template(
        "audit_verify.html",
        report=report,
        key_id=key.keyid,
        bad_url=_around(report),
        shown=_shown,
        logout=ActionForm(),
    )


def _around(report: AuditReport) -> str | None:
    """AP3: the entries from the first bad one back, newest first."""
    if report.first_bad is None:
        return None
    return _search_url({"before": report.first_bad + 1})


class ExportForm(ActionForm):
    """AP4: the range to export (empty: the whole log); the CSRF token."""


@blueprint.get("/export")
@allow(*READERS)
def export_form() -> ResponseReturnValue:
    return _export_page(ExportForm())


@blueprint.post("/export")
@allow(*READERS)
def export() -> ResponseReturnValue:
    """AP4: sign the head, record the download, then send the file."""
    typed = {name: request.form.get(name, "") for name in ("since", "until")}
    try:
        filters = parse_filters(typed)
    except FilterError as refused:
        return _export_page(ExportForm(), typed=typed, error=refused.problems, status=400)
    detail = filters.detail()
    record(request_event(Action.AUDIT_EXPORT, object="audit_log", outcome="success", detail=detail))
    checkpoint_now(g.db, _services().signer("audit"), now=_services().clock())
    g.db.commit()
    try:
        body = _export_file(filters)
    except (OSError, SQLAlchemyError) as exc:
        g.db.rollback()
        failed = {**detail, "error": type(exc).__name__}
        record(
            request_event(Action.AUDIT_EXPORT, object="audit_log", outcome="failure", detail=failed)
        )
        g.db.commit()
        raise ServiceUnavailableError("the export could not be written: try again") from None
    name = f"audit-export-{_services().clock().strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    return Response(
        _chunks(body),
        mimetype="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def _export_file(filters: Filters) -> IO[bytes]:
    """AP4: the export, whole (``write_export``) or of the range, rewound."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by _chunks
    try:
        if filters.since is None and filters.until is None:
            write_export(g.db, out)
        else:
            _write_range(filters, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _write_range(filters: Filters, out: IO[bytes]) -> None:
    """The export's lines for the entries in the range, then its checkpoint line.

    The checkpoint is read first, as ``write_export`` does.
    """
    checkpoint = latest_checkpoint(g.db)
    query = (
        select(AuditEntry)
        .where(*filters.conditions())
        .order_by(AuditEntry.seq)
        .execution_options(yield_per=READ_BATCH)
    )
    with closing(g.db.scalars(query)) as entries:
        for entry in entries:
            out.write(_line(entry_json(entry)))
    out.write(_line({"checkpoint": checkpoint.to_json() if checkpoint else None}))


def _line(obj: Mapping[str, Any]) -> bytes:
    """One line as ``audit.export`` writes it (its test compares the two byte for byte)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode() + b"\n"


def _chunks(body: IO[bytes]) -> Iterator[bytes]:
    with body:
        while chunk := body.read(64 * 1024):
            yield chunk


def _export_page(
    form: ExportForm,
    *,
    typed: Mapping[str, str] | None = None,
    error: list[str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    page = render_template(
        "audit_export.html",
        form=form,
        typed=typed or {},
        time_hint=TIME_HINT,
        error=error or [],
        logout=ActionForm(),
    )
    return page, status


def _shown(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return canonical_time(moment)[:19].replace("T", " ") + " UTC"


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
