"""Requests are held to the server's OpenAPI document before a view reads them.

The document (``update_server.openapi.SPEC``) is the API's contract; this
module makes it binding on the way in, so the routes cannot accept what the
document refuses (and the server tests check every answer against it on the
way out, ``tests/update_server/openapi_contract.py``):

- V1 A JSON body must parse, and every string in it must be text: a body that
  is not JSON, nests deeper than ``MAX_DEPTH`` levels, or holds a lone UTF-16
  surrogate (``\\ud800``) is 400, never a 500 further in.
- V2 A JSON body is validated against the operation's documented schema
  (JSON Schema 2020-12): one that does not match is 400 naming the first
  field and the rule it breaks. An empty string where the document asks for
  text is refused here, not by a view.
- V3 Each documented query parameter is validated against its schema; an
  integer parameter must be written as a plain decimal number.
- V4 An operation marked ``x-body-checked-by-view`` is left to its view: login
  counts and audits a malformed body like any failed login (R9, R27); a
  release upload reads its signed metadata from the stream with the strict
  TUF loader (duplicate keys, booleans as numbers), which refuses more.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import request
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from update_server.errors import BadRequestError
from update_server.mfa.passwords import valid_unicode
from update_server.openapi import SPEC, VIEW_CHECKS_BODY

_DOCUMENT = "urn:fwupdate:openapi"
_REGISTRY: Registry[Any] = Registry().with_resource(_DOCUMENT, DRAFT202012.create_resource(SPEC))
_FLASK_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_DECIMAL = re.compile(r"[0-9]{1,18}")
MAX_DEPTH = 64  # TUF metadata, the deepest body, nests about 8 levels


def openapi_path(rule: str) -> str:
    """A Flask rule as the document writes its path (``<path:path>`` is ``{path}``)."""
    return _FLASK_PARAM.sub(r"{\1}", rule)


def pointer(*parts: str) -> str:
    """A JSON pointer into the document (RFC 6901 escapes ``~`` and ``/``)."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


@functools.cache
def validator(reference: str) -> Draft202012Validator:
    """A validator for the schema at ``reference`` (a JSON pointer into the document).

    By reference into the whole document, so its own ``#/components/...`` resolve.
    """
    return Draft202012Validator({"$ref": f"{_DOCUMENT}#{reference}"}, registry=_REGISTRY)


def operation(method: str, rule: str) -> dict[str, Any] | None:
    """The documented operation for a route, or None if the document has none."""
    item: dict[str, Any] = SPEC["paths"].get(openapi_path(rule), {})
    found: dict[str, Any] | None = item.get(method.lower())
    return found


def body_problems(method: str, rule: str, body: Any) -> list[str]:
    """V1, V2: what in a parsed JSON body the document refuses (empty when none)."""
    refused = _not_text(body)
    if refused is not None:
        return [f"{refused} is not accepted"]
    path = openapi_path(rule)
    documented = operation(method, rule) or {}
    if "application/json" not in documented.get("requestBody", {}).get("content", {}):
        return []
    where = pointer("paths", path, method.lower(), "requestBody", "content", "application/json")
    errors = sorted(validator(where + "/schema").iter_errors(body), key=lambda e: e.path)
    return [_say(error.absolute_path, _rule(error)) for error in errors]


def check_request() -> None:
    """Flask ``before_request``: V1-V4 for the request about to be served."""
    rule = request.url_rule
    if rule is None:
        return
    documented = operation(request.method, rule.rule)
    if documented is None:
        return
    _check_query(rule.rule, documented)
    if documented.get(VIEW_CHECKS_BODY) or "requestBody" not in documented:
        return
    if "application/json" not in documented["requestBody"].get("content", {}):
        return
    problems = body_problems(request.method, rule.rule, parsed_json())
    if problems:
        raise BadRequestError(f"the request body does not fit the API: {problems[0]}")


def parsed_json() -> Any:
    """V1: the request's JSON body, or a 400 that says what is wrong with it."""
    try:
        return request.get_json(force=True, silent=False, cache=True)
    except RecursionError:
        raise BadRequestError("the JSON body nests too deeply; send a flat object") from None
    except Exception:  # noqa: BLE001 - werkzeug raises BadRequest for any parse failure
        raise BadRequestError("the request body is not a JSON object; send one") from None


def _check_query(rule: str, documented: dict[str, Any]) -> None:
    path = openapi_path(rule)
    for index, parameter in enumerate(documented.get("parameters", ())):
        if parameter.get("in") != "query" or parameter["name"] not in request.args:
            continue
        raw = request.args[parameter["name"]]
        value: Any = raw
        if parameter["schema"].get("type") == "integer":
            value = int(raw) if _DECIMAL.fullmatch(raw) else raw
        where = pointer("paths", path, request.method.lower(), "parameters", str(index), "schema")
        error = next(iter(validator(where).iter_errors(value)), None)
        if error is not None:
            name = parameter["name"]
            raise BadRequestError(f"query parameter {name}: {_rule(error)}")


def _not_text(body: Any) -> str | None:
    """The first place in a parsed JSON value that is not valid text, or None.

    Walked with a stack, not recursion, and only ``MAX_DEPTH`` deep: a body
    nested deeper is refused as a whole.
    """
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where or 'the body'} (nested deeper than {MAX_DEPTH} levels)"
        if isinstance(value, str) and not valid_unicode(value):
            return f"{where or 'the body'} (a lone UTF-16 surrogate)"
        if isinstance(value, dict):
            for key, item in value.items():
                if not valid_unicode(key):
                    return f"a key under {where or 'the body'} (a lone UTF-16 surrogate)"
                stack.append((item, f"{where}/{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}/{index}", depth + 1) for index, item in enumerate(value))
    return None


def _say(location: Any, message: str) -> str:
    field = "/".join(str(part) for part in location)
    return f"{field}: {message}" if field else message


def _rule(error: ValidationError) -> str:
    """The rule a value breaks, never the value: a refused body may hold a password."""
    value = error.validator_value
    said = {
        "type": f"must be of type {value}",
        "minLength": "must not be empty"
        if value == 1
        else f"must have at least {value} characters",
        "maxLength": f"must have at most {value} characters",
        "pattern": "does not have the expected form",
        "minimum": f"must be at least {value}",
        "maximum": f"must be at most {value}",
        "const": f"must be {value!r}",
        "enum": f"must be one of {value!r}",
        "minProperties": "must not be empty",
    }.get(str(error.validator))
    if said is not None:
        return said
    if error.validator in ("required", "additionalProperties"):
        return error.message  # names fields the caller sent or left out, never a value
    return f"breaks the document's {error.validator!r} rule"
