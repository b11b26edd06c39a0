"""``/api/v1/status``, ``/readyz`` and ``/metrics``: the server seen from outside (R38).

Views orchestrate: the status is ``status``'s, readiness ``readiness``'s,
the metrics ``metrics``'s and who may read them ``metrics_access``'s.
``init_app`` registers the blueprint, the metrics' access policy (read at
start: a token file missing or weak stops the start) and the request hooks
that count (``counting``; ``counting.start_clock`` itself is registered
first of all by ``create_app``).

- V1 ``/api/v1/status`` is for every authenticated role (it shows key ids,
  the fleet and the reasons a check failed, nothing secret).
- V2 ``/readyz`` is public and says only which checks passed (200) or
  failed (503); the reasons go to the server's log.
- V3 ``/metrics`` is public to the access layer and closed by its own rule
  (A1, A2); a refusal (403 off the loopback, 401 without the token) is
  audited like the access layer's, coalesced per window (``auth.refusals``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from update_server.access import ALL_ROLES, allow, public
from update_server.app import Services
from update_server.audit.actions import Action
from update_server.audit.recording import record
from update_server.auth import refusals
from update_server.errors import AuthenticationError, ForbiddenError, ServerError
from update_server.observability import clock_sync, counting, metrics
from update_server.observability.metrics_access import MetricsAccess, Refused
from update_server.observability.readiness import readiness
from update_server.observability.status import server_status

blueprint = Blueprint("observability", __name__)
#: Where the running app keeps its ``MetricsAccess``.
ACCESS_EXTENSION = "fw_metrics_access"


def init_app(app: Flask) -> None:
    """The blueprint, the metrics' access policy, and the counting hooks (after ``access``)."""
    app.extensions[ACCESS_EXTENSION] = MetricsAccess.from_config(app.extensions["fw"].config)
    app.register_blueprint(blueprint)
    app.before_request(counting.note_report_head)
    app.after_request(counting.count_answer)


@blueprint.get("/api/v1/status")
@allow(*ALL_ROLES)
def status() -> ResponseReturnValue:
    """V1."""
    return jsonify(server_status(_services(), g.db))


@blueprint.get("/readyz")
@public
def readyz() -> ResponseReturnValue:
    """V2."""
    result = readiness(_services(), g.db)
    return jsonify(result.to_json()), 200 if result.ready else 503


@blueprint.get("/metrics")
@public  # V3: closed by its own rule, below
def metrics_text() -> ResponseReturnValue:
    access: MetricsAccess = current_app.extensions[ACCESS_EXTENSION]
    refused = access.refusal(
        remote_addr=request.remote_addr, authorization=request.headers.get("Authorization")
    )
    if refused is not None:
        raise _refused(refused)
    body, content_type = metrics.exposition(clock=clock_sync.sync_of(_services().clock))
    return Response(body, content_type=content_type)


def _refused(reason: Refused) -> ServerError:
    """V3: the refusal, audited (coalesced) and committed before the answer."""
    error: ServerError
    if reason is Refused.NOT_LOOPBACK:
        error = ForbiddenError(
            "the metrics are served to this host only (metrics_access loopback); scrape them"
            " from the server's host, or configure metrics_access token"
        )
    else:
        error = AuthenticationError(
            "the metrics need the bearer token of metrics_token_file in the Authorization header"
        )
    services = _services()
    refusal = refusals.Refusal(
        action=Action.ACCESS_REFUSED,
        actor="-",
        role="-",
        source=request.remote_addr or "-",
        route=f"{request.method} {request.url_rule.rule if request.url_rule else request.path}",
        reason=reason.value,
        status=error.status,
        now=services.clock(),
    )
    for event in refusals.tally(g.db, refusal, window=services.config.refusal_audit_window):
        record(event)
    g.db.commit()
    return error


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
