"""The request hooks that feed the metrics (``metrics``), registered by ``init_app``.

- H1 ``start_clock`` runs before every other ``before_request`` hook, so a
  request's latency includes the body bound, authentication and the checks.
- H2 ``count_answer`` runs after every answer, refusals and errors included,
  and labels it with its URL rule (P1). A signed device request (a
  ``@device_route``) is a device check-in too; a publication answered 2xx is
  a publication.
- H3 A device report's new log entries are those after the head the server
  had accepted before the report (``device_log`` D6), up to the head the
  answer acknowledges: ``note_report_head`` keeps the first (it runs after
  the device is authenticated), ``count_answer`` reads the second. A
  repeated entry (a lost acknowledgement) is not counted twice; a refused
  report counts nothing.
- H4 Counting reads the request and response only and never raises into
  the answer (P5): a failure of its own is logged and the answer goes out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from flask import Response, current_app, g, request

from update_server.access import access_of
from update_server.observability import metrics

logger = logging.getLogger(__name__)

#: The view that keeps a device's report, and the one that publishes a release.
REPORT_ENDPOINT: Final = "devices.device_report"
PUBLISH_ENDPOINT: Final = "publication.publish"


def start_clock() -> None:
    """H1: ``before_request``, registered first."""
    g.metrics_started = time.perf_counter()


def note_report_head() -> None:
    """H3: ``before_request`` after authentication: the device's accepted head, before the view."""
    device = g.get("device")
    if request.endpoint == REPORT_ENDPOINT and device is not None:
        g.metrics_report_head = device.log_head_seq or 0


def count_answer(response: Response) -> Response:
    """H2, H4: ``after_request``."""
    try:
        _count(response)
    except Exception:  # H4: a metric never costs an answer
        logger.warning("counting %s %s failed", request.method, request.endpoint, exc_info=True)
    return response


def _count(response: Response) -> None:
    route = request.url_rule.rule if request.url_rule is not None else metrics.UNMATCHED
    started = g.get("metrics_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    status = response.status_code
    metrics.count_request(route=route, method=request.method, status=status, seconds=seconds)
    if request.endpoint is None:
        return
    access = access_of(current_app.view_functions.get(request.endpoint))
    if access is not None and access.device:
        metrics.count_device_checkin(route=route, status=status)
    if request.endpoint == PUBLISH_ENDPOINT and 200 <= status < 300:
        metrics.count_publication()
    if request.endpoint == REPORT_ENDPOINT and status == 200:
        metrics.count_device_events(_new_entries(response))


def _new_entries(response: Response) -> list[Mapping[str, Any]]:
    """H3: the report's entries after the head accepted before it, up to the one acknowledged."""
    before = g.get("metrics_report_head")
    answer = response.get_json(silent=True)
    body = request.get_json(silent=True)
    if before is None or not isinstance(answer, dict) or not isinstance(body, dict):
        return []
    acked = answer.get("acked_seq")
    if type(acked) is not int:
        return []  # refused: nothing of the report was kept
    return [entry for entry in _entries(body.get("entries")) if before < entry["seq"] <= acked]


def _entries(raw: object) -> Iterable[Mapping[str, Any]]:
    if not isinstance(raw, list):
        return []
    return [entry for entry in raw if isinstance(entry, dict) and type(entry.get("seq")) is int]
