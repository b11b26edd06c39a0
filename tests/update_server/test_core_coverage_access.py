"""Who may call what, at the edges of the access layer (R6, R9, R27).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): default deny for a view that declares nothing (audited), an unknown
path left to Flask's 404, and the declarations themselves.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from update_server.access import ALL_ROLES, allow, declared, public
from update_server.audit.actions import Action
from update_server.models import AuditEntry

UNDECLARED = "/api/v1/test/undeclared"


def test_r6_a_view_allowed_to_no_role_cannot_be_declared() -> None:
    """An empty role list would read as "everyone" to a careless eye: refused at import."""
    with pytest.raises(ValueError, match="at least one role"):
        allow()


def test_r6_declared_lists_exactly_the_views_that_declare_no_access() -> None:
    def closed() -> str:
        return "closed"

    @public
    def open_to_all() -> str:
        return "open"

    @allow(*ALL_ROLES)
    def any_role() -> str:
        return "any"

    assert declared([closed, open_to_all, any_role]) == [closed]


def test_r6_a_view_that_declares_no_access_is_closed_and_the_refusal_audited(
    app: Flask, client: FlaskClient
) -> None:
    """Default deny: a route someone forgot to declare is a 403 for everyone, never open."""
    app.add_url_rule(UNDECLARED, "test_undeclared", lambda: "open", methods=["GET"])
    answer = client.get(UNDECLARED)
    assert answer.status_code == 403
    assert "declares no access rule" in answer.get_json()["detail"]
    with app.extensions["fw"].sessions() as db:
        refused = db.scalars(
            select(AuditEntry).where(AuditEntry.action == Action.ACCESS_REFUSED)
        ).all()
    assert [row.object for row in refused] == [f"GET {UNDECLARED}"]
    assert json.loads(refused[0].detail)["reason"]


def test_r6_a_path_no_route_matches_is_flasks_404_not_an_access_refusal(
    app: Flask, client: FlaskClient
) -> None:
    assert client.get("/api/v1/no-such-route").status_code == 404
    with app.extensions["fw"].sessions() as db:
        assert (
            db.scalars(select(AuditEntry).where(AuditEntry.action == Action.ACCESS_REFUSED)).all()
            == []
        )
