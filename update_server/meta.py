"""Public meta endpoints: health (liveness).

Readiness (``/readyz``: database, repository, online keys) lives beside it
in ``observability.views``, with the status and the metrics.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from update_server.access import public

blueprint = Blueprint("meta", __name__)


@blueprint.get("/api/v1/health")
@public
def health() -> ResponseReturnValue:
    return jsonify({"status": "ok"})
