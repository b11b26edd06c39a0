"""``/api/v1/audit`` for auditors and security officers, and the rule that an
action whose audit entry cannot be written is refused (R27, R28)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from sqlalchemy import select, text

from tests.update_server.audit_events import append_events
from update_server.access import allow
from update_server.audit import Event
from update_server.audit.actions import Action
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.chain import OUTCOMES
from update_server.audit.recording import REFUSED_DETAIL, record, request_event
from update_server.auth import sessions
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.errors import ForbiddenError
from update_server.models import AuditEntry, Role, User

API_DOC = Path(__file__).parents[2] / "docs" / "api.md"


def login(app: Flask, role: Role, name: str | None = None) -> dict[str, str]:
    """A user who has finished first login, and a session; no auth views needed."""
    services = app.extensions["fw"]
    with transaction(services.sessions) as db:
        user = User(
            name=name or role.value,
            role=role.value,
            password_hash="!not-a-hash",
            must_change_password=False,
            totp_enrolled=True,
            created_at=services.clock(),
        )
        db.add(user)
        db.flush()
        token = sessions.create(
            db, user, now=services.clock(), config=services.config, login_step=0, source="test"
        )
    return {"Authorization": f"Bearer {token}"}


def fill(app: Flask, count: int) -> None:
    def login_attempt(number: int, now: datetime) -> Event:
        return Event(
            time=now,
            actor="erin",
            role="technician",
            action="login",
            object="erin",
            outcome="failure" if number % 2 else "success",
            source="198.51.100.1",
        )

    append_events(app, range(1, count + 1), login_attempt)


def entries(app: Flask) -> list[AuditEntry]:
    with app.extensions["fw"].sessions() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_auditor_reads_the_log_in_pages_r27(app: Flask, client: FlaskClient) -> None:
    fill(app, 5)
    auditor = login(app, Role.AUDITOR, "ann")
    first = client.get("/api/v1/audit?limit=3", headers=auditor).get_json()
    assert [e["seq"] for e in first["entries"]] == [1, 2, 3]
    assert first["next_after"] == 3
    assert set(first["entries"][0]) >= {"seq", "time", "actor", "action", "prev_hash", "hash"}
    rest = client.get("/api/v1/audit?after=3", headers=auditor).get_json()
    assert [e["seq"] for e in rest["entries"]] == [4, 5, 6]  # 6: the first read, recorded
    assert rest["entries"][-1]["action"] == "audit.read"
    assert rest["entries"][-1]["actor"] == "ann"


def test_security_officer_may_read(app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/audit", headers=login(app, Role.SECURITY_OFFICER))
    assert response.status_code == 200
    assert response.get_json()["entries"] == []


@pytest.mark.parametrize(
    "role", [Role.ADMIN, Role.RELEASE_ENGINEER, Role.RELEASE_MANAGER, Role.TECHNICIAN]
)
@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_other_roles_may_not_read_the_log_r6(
    app: Flask, client: FlaskClient, role: Role, path: str
) -> None:
    response = client.get(path, headers=login(app, role))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


def test_reading_needs_a_session(client: FlaskClient) -> None:
    assert client.get("/api/v1/audit").status_code == 401


@pytest.mark.parametrize("query", ["after=-1", "limit=0", "limit=1001", "limit=abc", "after=²"])
def test_bad_paging_is_a_400(app: Flask, client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/v1/audit?{query}", headers=login(app, Role.AUDITOR))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_verify_endpoint_reports_an_intact_log(app: Flask, client: FlaskClient) -> None:
    fill(app, 3)
    body = client.get("/api/v1/audit/verify", headers=login(app, Role.AUDITOR)).get_json()
    assert (body["ok"], body["entries"], body["first_bad"]) == (True, 3, None)
    assert body["anchor"]["seq"] == 3
    assert entries(app)[-1].action == "audit.verify"


def test_verify_endpoint_names_the_first_bad_entry(app: Flask, client: FlaskClient) -> None:
    fill(app, 4)
    with app.extensions["fw"].engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET outcome = 'success' WHERE seq = 3"))
    body = client.get("/api/v1/audit/verify", headers=login(app, Role.AUDITOR)).get_json()
    assert (body["ok"], body["first_bad"]) == (False, 3)
    assert "content altered" in body["reason"]
    last = entries(app)[-1]
    assert (last.action, last.outcome) == ("audit.verify", "failure")


# -- "If an audit entry cannot be written, the action it records is refused" --


@pytest.fixture
def disable_view(app: Flask) -> Flask:
    """A sensitive action as views write them: change, record, commit once."""

    @allow(Role.ADMIN)
    def disable(name: str) -> ResponseReturnValue:
        user = g.db.scalars(select(User).where(User.name == name)).one()
        user.disabled = True
        record(request_event(Action.USER_CHANGE, object=name, outcome="success"))
        g.db.commit()
        return "", 204

    @allow(Role.ADMIN)
    def refuse(name: str) -> ResponseReturnValue:
        record(request_event(Action.USER_CHANGE, object=name, outcome="refused"), commit=True)
        raise ForbiddenError("refused")

    app.add_url_rule("/test/disable/<name>", "test_disable", disable, methods=["POST"])
    app.add_url_rule("/test/refuse/<name>", "test_refuse", refuse, methods=["POST"])
    return app


def break_audit_storage(app: Flask) -> None:
    """The database refuses every new audit row, as a full disk or a bad grant would."""
    engine = app.extensions["fw"].engine
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'audit storage failure'; END $$"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
                    " BEGIN SELECT RAISE(ABORT, 'audit storage failure'); END"
                )
            )


def disabled(app: Flask, name: str) -> bool:
    with app.extensions["fw"].sessions() as db:
        return db.scalars(select(User.disabled).where(User.name == name)).one()


def test_action_is_done_with_its_entry(disable_view: Flask, client: FlaskClient) -> None:
    admin = login(disable_view, Role.ADMIN)
    login(disable_view, Role.TECHNICIAN, "frank")
    assert client.post("/test/disable/frank", headers=admin).status_code == 204
    assert disabled(disable_view, "frank")
    assert [(e.action, e.object) for e in entries(disable_view)] == [("user.change", "frank")]


def test_an_answered_action_has_its_entry_anchored_outside_the_database_r27_r28(
    disable_view: Flask, client: FlaskClient, config: ServerConfig
) -> None:
    """R27/R28: when the 204 arrives, the head anchored outside the database is the
    action's own entry: deleting it from the database afterwards would be named."""
    admin = login(disable_view, Role.ADMIN)
    login(disable_view, Role.TECHNICIAN, "frank")
    assert client.post("/test/disable/frank", headers=admin).status_code == 204
    anchored = read_anchor(anchor_file(config.data_dir))
    entry = entries(disable_view)[-1]
    assert anchored is not None
    assert (anchored.seq, anchored.head_hash, entry.action) == (
        entry.seq,
        entry.hash,
        "user.change",
    )


def test_append_failure_refuses_the_action_r27(disable_view: Flask, client: FlaskClient) -> None:
    admin = login(disable_view, Role.ADMIN)
    login(disable_view, Role.TECHNICIAN, "frank")
    break_audit_storage(disable_view)
    response = client.post("/test/disable/frank", headers=admin)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == REFUSED_DETAIL
    assert not disabled(disable_view, "frank")  # the action's own change was rolled back
    assert entries(disable_view) == []


def test_a_recorded_refusal_survives_the_error_response(
    disable_view: Flask, client: FlaskClient
) -> None:
    admin = login(disable_view, Role.ADMIN)
    assert client.post("/test/refuse/frank", headers=admin).status_code == 403
    [entry] = entries(disable_view)
    assert (entry.action, entry.outcome, entry.actor, entry.source) == (
        "user.change",
        "refused",
        "admin",
        "127.0.0.1",
    )


def test_audit_verify_answer_and_outcomes_are_documented_field_by_field_r27(
    app: Flask, client: FlaskClient
) -> None:
    """R27: an auditor finds every field of the check, and every outcome, in docs/api.md."""
    fill(app, 3)
    report = client.get("/api/v1/audit/verify", headers=login(app, Role.AUDITOR)).get_json()
    assert report["anchor"] is not None
    doc = API_DOC.read_text()
    [row] = [line for line in doc.splitlines() if line.startswith("| `GET /api/v1/audit/verify`")]
    assert {*report, *report["head"]} <= set(re.findall(r"\w+", row.split("→")[-1]))
    anchor_form = re.search(r"`\{(_type[^}]*)\}`", doc)
    assert anchor_form is not None
    assert set(report["anchor"]) == set(anchor_form.group(1).split(", "))
    assert [outcome for outcome in sorted(OUTCOMES) if f"`{outcome}`" not in doc] == []
