"""/api/v1/openapi.json describes every endpoint and is valid OpenAPI."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from update_server.openapi import SPEC

_IGNORED = {"HEAD", "OPTIONS"}


def _routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("web."):
            continue  # the web pages are HTML for people, not the API (tests/web)
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {
            (path, method.lower()) for method in rule.methods or () if method not in _IGNORED
        }
    return routes


def test_the_document_is_valid_openapi(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    validate(response.get_json())


def test_every_registered_route_is_described(app: Flask) -> None:
    described = {
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method != "parameters"
    }
    missing = _routes(app) - described
    assert missing == set()


def test_every_described_endpoint_exists(app: Flask) -> None:
    described = {
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert described - _routes(app) == set()
