"""``/api/v1/audit``: the log, and its check, for auditors and security officers.

Reading the log is itself an access to security data, so each read and each
check is recorded (R27). Registering this blueprint binds the audit sink to
the app's sessions (``recording.install``): checkpoints and syslog (R28, R31).
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue

from update_server.access import allow
from update_server.audit.actions import Action
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.checkpoint import verify_database
from update_server.audit.errors import CheckpointError
from update_server.audit.export import entry_json
from update_server.audit.public_key import audit_public_key
from update_server.audit.recording import install, record, request_event
from update_server.audit.store import page
from update_server.errors import BadRequestError, ServiceUnavailableError
from update_server.models import Role

blueprint = Blueprint("audit", __name__)
READERS = (Role.AUDITOR, Role.SECURITY_OFFICER)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def _install(state: BlueprintSetupState) -> None:
    install(cast("Flask", state.app))


blueprint.record_once(_install)


@blueprint.get("/api/v1/audit")
@allow(*READERS)
def entries() -> ResponseReturnValue:
    """Entries after ``after`` in sequence order, at most ``limit`` of them."""
    after = _int_arg("after", default=0, low=0, high=2**62)
    limit = _int_arg("limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    rows = page(g.db, after=after, limit=limit)
    body = {
        "entries": [entry_json(row) for row in rows],
        "next_after": rows[-1].seq if rows else after,
    }
    detail = {"after": after, "limit": limit, "returned": len(rows)}
    record(request_event(Action.AUDIT_READ, object="audit_log", outcome="success", detail=detail))
    g.db.commit()
    return jsonify(body)


@blueprint.get("/api/v1/audit/verify")
@allow(*READERS)
def verify() -> ResponseReturnValue:
    """The whole log checked against the audit key: ``{ok, first_bad, reason, ...}``."""
    config = current_app.extensions["fw"].config
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
    return jsonify(report.to_json())


def _int_arg(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) < 20) or not low <= int(raw) <= high:
        raise BadRequestError(f"{name} must be an integer from {low} to {high}")
    return int(raw)
