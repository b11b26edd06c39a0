"""The server's answers in the tests, checked against its OpenAPI document.

Every response the app gives in a server test is matched to the operation the
document describes for its route: its status must be one the document lists
for that operation, and a JSON body must validate against the schema the
document gives for that status. So the document and the routes cannot drift
apart without a test failing: the whole server suite is the check (the way in
is held by ``update_server.request_validation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request, request_finished

from update_server.request_validation import openapi_path, operation, pointer, validator

_JSON = ("application/json", "application/problem+json")


def answer_problems(method: str, rule: str, status: int, mimetype: str, body: Any) -> list[str]:
    """What, in one answer, the document does not describe (empty if all is)."""
    method = "GET" if method == "HEAD" else method  # HEAD is GET without the body
    path = openapi_path(rule)
    where = f"{method} {path} -> {status}"
    documented = operation(method, rule)
    if documented is None:
        return [f"{where}: the operation is not in the document"]
    response = documented["responses"].get(str(status))
    if response is None:
        listed = ", ".join(sorted(documented["responses"]))
        return [f"{where}: status not documented (documented: {listed})"]
    content = response.get("content", {})
    if not content:
        return [] if body is None else [f"{where}: answered a body, documented none"]
    if mimetype not in content:
        return [f"{where}: answered {mimetype or 'no body'}, documented {', '.join(content)}"]
    if mimetype not in _JSON:
        return []
    reference = pointer("paths", path, method.lower(), "responses", str(status), "content")
    return [
        f"{where}: body at {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator(reference + pointer(mimetype, "schema")).iter_errors(body)
    ]


@dataclass
class ContractRecorder:
    """Collects the undocumented answers an app gives while connected.

    Only the routes the app had when connected are checked: a route a test
    adds for itself (to provoke an error, say) is not part of the API. A 500
    is never documented (it is always a bug), except where a test crashes the
    server on purpose (``crash_expected``).
    """

    crash_expected: bool = False
    problems: list[str] = field(default_factory=list)
    _rules: frozenset[str] = frozenset()

    def __call__(self, sender: Flask, response: Response, **_: Any) -> None:
        rule = request.url_rule
        if rule is None or rule.rule not in self._rules:  # routing answered, or a test's route
            return
        if self.crash_expected and response.status_code == 500:
            return
        body = response.get_json(silent=True) if response.is_json else None
        if request.method == "HEAD" or response.status_code in (204, 206, 304):
            body = None
        mimetype = response.mimetype if response.content_length != 0 else ""
        self.problems += answer_problems(
            request.method, rule.rule, response.status_code, mimetype or "", body
        )

    def connect(self, app: Flask) -> None:
        self._rules = frozenset(rule.rule for rule in app.url_map.iter_rules())
        request_finished.connect(self, app, weak=False)
