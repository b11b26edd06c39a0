"""The OpenAPI 3.1 description of every endpoint, served at /api/v1/openapi.json.

Written as data next to the contract in docs/api.md, and binding both ways:
every request is validated against it before a view reads it
(``request_validation``), and every answer the app gives in the server tests
is checked against it (status and body schema,
``tests/update_server/openapi_contract.py``). A test checks that every route
the app registers is described here (and nothing else), and a well-kept
validator checks that the document is valid OpenAPI.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from update_server.access import public

VIEW_CHECKS_BODY = "x-body-checked-by-view"

blueprint = Blueprint("openapi", __name__)

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_FRESH = " Needs a fresh TOTP code in X-OTP (two-step confirmation, R9)."
# What every body's text field is: never empty, and bounded.
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}
_INSTANT: dict[str, Any] = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
#: An id in a path: a larger one is no route (404; app.DatabaseInteger).
_ID: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object with these fields (an answer may gain fields later: more are allowed)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


def _body(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request body: exactly these fields (an unknown one is a mistake, refused)."""
    return {**_object(required, optional), "additionalProperties": False}


def _op(
    summary: str,
    *,
    roles: str,
    ok: int = 200,
    answer: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    body_type: str = "application/json",
    fresh_otp: bool = False,
    errors: tuple[int, ...] = (400, 401, 403),
    ok_type: str = "application/json",
    database: bool = True,
    also_ok: tuple[int, ...] = (),
    query: tuple[dict[str, Any], ...] = (),
    checked_by_view: bool = False,
) -> dict[str, Any]:
    """One operation: its success answer (typed), its problems, its inputs."""
    # Every body is bounded (413); a database or disk that fails answers 503 or 507.
    errors = tuple(sorted({*errors, 413} | ({503, 507} if database else set())))
    success: dict[str, Any] = {"description": "success"}
    if ok != 204:
        success["content"] = {ok_type: {"schema": answer if answer is not None else {}}}
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Who: {roles}." + (_FRESH if fresh_otp else ""),
        "responses": {
            str(ok): success,
            **{str(code): {"description": "success, without a new body"} for code in also_ok},
            **{
                str(code): {
                    "description": "problem",
                    "content": {"application/problem+json": {"schema": _PROBLEM}},
                }
                for code in errors
            },
        },
    }
    if roles == "anyone":
        operation["security"] = []
    parameters: list[dict[str, Any]] = (
        [{"$ref": "#/components/parameters/OTP"}] if fresh_otp else []
    )
    parameters += [{"in": "query", "required": False, **parameter} for parameter in query]
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    if checked_by_view:
        # request_validation V4: the view checks the body itself (a malformed
        # login is counted and audited like any failed one; signed metadata
        # is read from the stream by the strict TUF loader, which refuses more).
        operation[VIEW_CHECKS_BODY] = True
    return operation


_PATH_PARAM = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_RELEASE_ROLES = "release_engineer, release_manager, security_officer"
_LAST_LOGIN = {"oneOf": [{"type": "null"}, _object({"at": _INSTANT, "source": {"type": "string"}})]}
_VERSION_EXPIRES = _object({"version": {"type": "integer", "minimum": 1}, "expires": _INSTANT})
_TARGET = _object(
    {
        "path": {"type": "string"},
        "length": _COUNT,
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    }
)
_VERSIONS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}}
_AUDIT_ENTRY = _object(
    {"seq": {"type": "integer", "minimum": 1}, "time": _INSTANT},
    {name: {"type": "string"} for name in ("actor", "role", "action", "object", "outcome")},
)

_NAME: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_OPTIONAL_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_AUTHORIZATION = _object(
    {
        "id": {"type": "integer"},
        "device_id": {"type": "string"},
        "target_path": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "technician": {"type": "string"},
        "issued_at": _INSTANT,
        "expires_at": _INSTANT,
        "status": {"enum": ["pending", "delivered", "accepted", "used", "refused", "expired"]},
        "outcome": {"type": ["string", "null"]},
    }
)
_AUTHORIZATION_DOC = {
    **_AUTHORIZATION,
    "properties": {
        **_AUTHORIZATION["properties"],
        "document": _object({"signed": {"type": "object"}, "signatures": {"type": "array"}}),
    },
    "required": [*_AUTHORIZATION["required"], "document"],
}
_DEVICE_ID_PARAM = {"name": "device_id", "in": "path", "required": True, "schema": _NAME}
_DEVICE = _object(
    {
        "device_id": {"type": "string"},
        "state": {"enum": ["pending", "accepted", "rejected", "decommissioned"]},
        "hardware_model": {"type": "string"},
        "site": _OPTIONAL_TEXT,
        "key_id": {"type": "string"},
        "registered_at": _INSTANT,
    },
    dict.fromkeys(
        (
            "running_version",
            "slot",
            "mode",
            "last_result",
            "last_seen_at",
            "last_report_at",
            "state_changed_by",
            "state_changed_at",
        ),
        _OPTIONAL_TEXT,
    )
    | {
        "security_floor": {"type": ["integer", "null"]},
        "running_withdrawn": {"type": ["boolean", "null"]},
        "offered_for_authorization": {
            "oneOf": [
                {"type": "null"},
                _object({"target_path": {"type": "string"}, "version": {"type": "string"}}),
            ]
        },
    },
)
_SIGNED = (
    " Signed by the device key (RFC 9421: @method, @path, @query, content-digest;"
    " created, nonce, keyid = device id; devices.signatures D1-D6); any refusal is 401."
)
_DEVICE_SECURITY: list[dict[str, list[str]]] = [{"device": []}]


def _device_op(summary: str, **kwargs: Any) -> dict[str, Any]:
    """An operation of a device route: opened by a device signature only, never a session."""
    operation = _op(summary + _SIGNED, roles="an accepted device", errors=(400, 401), **kwargs)
    operation["security"] = _DEVICE_SECURITY
    return operation


def _device_change(summary: str, *, roles: str, fresh_otp: bool = False) -> dict[str, Any]:
    return {
        "parameters": [_DEVICE_ID_PARAM],
        "post": _op(
            summary,
            roles=roles,
            fresh_otp=fresh_otp,
            errors=(400, 401, 403, 404, 409),
            answer=_DEVICE,
        ),
    }


_READINESS = _object(
    {
        "ready": {"type": "boolean"},
        "checks": _object(
            {
                check: {"enum": ["ok", "failed"]}
                for check in ("database", "repository", "online_keys")
            }
        ),
    }
)
_STATUS = _object(
    {
        "server": _object(
            {
                "version": {"type": "string"},
                "schema": {"type": ["string", "null"]},
                "schema_expected": {"type": "string"},
            }
        ),
        "mode": _object(
            {"mode": {"enum": ["normal", "frozen"]}},
            dict.fromkeys(("since", "frozen_by", "reason"), _OPTIONAL_TEXT),
        ),
        "ready": {
            **_READINESS,
            "properties": {
                **_READINESS["properties"],
                "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "online_keys": {
            "type": "object",
            "additionalProperties": _object(
                {},
                {
                    "keyid": {"type": "string"},
                    "trusted_by_root": {"type": "boolean"},
                    "error": {"type": "string"},
                },
            ),
        },
        "metadata": _object(
            {
                "roles": {
                    "type": "object",
                    "additionalProperties": _object(
                        {"version": {"type": "integer", "minimum": 1}, "expires": _INSTANT},
                        {"renew_at": _INSTANT},
                    ),
                },
                "warnings": {
                    "type": "array",
                    "items": _object(
                        {
                            "role": {"type": "string"},
                            "kind": {"enum": ["expired", "expiring", "renewal_overdue"]},
                            "severity": {"enum": ["warning", "critical"]},
                            "expires": _INSTANT,
                            "message": {"type": "string"},
                        }
                    ),
                },
            }
        ),
        "fleet": _object(
            {
                "devices": _COUNT,
                "by_state": {"type": "object", "additionalProperties": _COUNT},
                "by_model": {"type": "object", "additionalProperties": _COUNT},
                "by_running_version": {"type": "object", "additionalProperties": _COUNT},
            }
        ),
        "deployments": {"type": ["array", "null"]},
        "alerts": {"type": ["object", "null"]},
        "warnings": {"type": "array", "items": {"type": "string"}},
    }
)


def _readiness_op() -> dict[str, Any]:
    """``/readyz``: 200 ready, 503 not, each with which checks passed (no reasons: public)."""
    operation = _op(
        "Readiness: database reachable at this code's schema, repository published, online"
        " keys usable (observability.readiness Y1-Y3); beside the liveness /api/v1/health",
        roles="anyone",
        errors=(),
        database=False,
        answer=_READINESS,
    )
    operation["responses"]["503"] = {
        "description": "not ready: the checks that failed",
        "content": {"application/json": {"schema": _READINESS}},
    }
    return operation


PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/health": {
        "get": _op(
            "Liveness",
            roles="anyone",
            errors=(),
            database=False,
            answer=_object({"status": {"const": "ok"}}),
        )
    },
    "/readyz": {
        "get": _readiness_op(),
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics (text format): requests and latency by route, publications,"
            " device check-ins, update results and refusals by event type, alerts sent and"
            " failed; the totals of every worker (observability.metrics P1-P5)",
            roles="the server's host (metrics_access loopback, the default), or the bearer"
            " token of metrics_token_file (metrics_access token); 403 off the loopback, 401"
            " without the token",
            errors=(401, 403),
            ok_type="text/plain",
        )
    },
    "/api/v1/status": {
        "get": _op(
            "Server and schema versions, mode, readiness, online key ids, metadata versions"
            " and expiries with warnings, fleet summary, deployments, alert backlog (R38)",
            roles="every role",
            errors=(401, 403),
            answer=_STATUS,
        )
    },
    "/api/v1/openapi.json": {
        "get": _op(
            "This document",
            roles="anyone",
            errors=(),
            database=False,
            answer=_object({"openapi": {"type": "string"}, "paths": {"type": "object"}}),
        )
    },
    "/api/v1/auth/login": {
        "post": _op(
            "Log in with password and TOTP; shows the last login (R11)",
            roles="anyone",
            body=_body(
                {"username": _TEXT, "password": _TEXT}, {"otp": {"type": "string", "maxLength": 64}}
            ),
            checked_by_view=True,
            errors=(400, 401, 429),
            answer=_object(
                {
                    "token": {"type": "string", "minLength": 32},
                    "expires_at": _INSTANT,
                    "must_change_password": {"type": "boolean"},
                    "totp_enrolled": {"type": "boolean"},
                    "last_login": _LAST_LOGIN,
                    "failed_attempts_since_last_login": _COUNT,
                }
            ),
        )
    },
    "/api/v1/auth/totp/enroll": {
        "post": _op(
            "Start TOTP enrolment (first login); the same pending secret until confirmed",
            roles="every role",
            errors=(400, 401, 403, 409),
            answer=_object(
                {
                    "provisioning_uri": {"type": "string", "pattern": "^otpauth://totp/"},
                    "secret": {"type": "string", "pattern": "^[A-Z2-7]+=*$"},
                }
            ),
        )
    },
    "/api/v1/auth/totp/confirm": {
        "post": _op(
            "Confirm TOTP enrolment with a code; with current_password and new_password,"
            " also replace the password, all or nothing, and end every session (first login"
            " in one step). 422 with field 'new_password' (and 'problems'): the policy refuses"
            " the new password, nothing changed; 422 with field 'otp': wrong code, the same"
            " secret stays pending (at the lockout it is discarded); 401: wrong current password",
            roles="every role",
            body=_body({"otp": _TEXT}, {"current_password": _TEXT, "new_password": _TEXT}),
            errors=(400, 401, 403, 409, 422),
            answer=_object(
                {"totp_enrolled": {"const": True}},
                {"password_changed": {"const": True}, "detail": {"type": "string"}},
            ),
        )
    },
    "/api/v1/auth/password": {
        "post": _op(
            "Change password; ends every session (422: the policy refuses the new one)",
            roles="every role",
            body=_body({"current_password": _TEXT, "new_password": _TEXT}),
            errors=(400, 401, 403, 422),
            answer=_object({"password_changed": {"const": True}, "detail": {"type": "string"}}),
        )
    },
    "/api/v1/auth/logout": {
        "post": _op("End this session", roles="every role", ok=204, errors=(401,))
    },
    "/api/v1/auth/me": {
        "get": _op(
            "Who is logged in",
            roles="every role",
            errors=(401,),
            answer=_object(
                {
                    "name": {"type": "string"},
                    "role": {"type": "string"},
                    "must_change_password": {"type": "boolean"},
                    "totp_enrolled": {"type": "boolean"},
                    "last_login": _LAST_LOGIN,
                    "session_expires_at": _INSTANT,
                }
            ),
        )
    },
    "/api/v1/repository": {
        "get": _op(
            "Published role versions and expiries",
            roles="every role",
            errors=(401, 403),
            answer=_object(
                {
                    "roles": {"type": "object", "additionalProperties": _VERSION_EXPIRES},
                    "snapshot": _VERSION_EXPIRES,
                    "timestamp": _VERSION_EXPIRES,
                }
            ),
        )
    },
    "/api/v1/releases": {
        "post": _op(
            "Upload signed roles; verified against the trusted state. 423: the system is"
            " frozen (freeze.rules F3)",
            roles=_RELEASE_ROLES,
            ok=201,
            body=_body({"metadata": {"type": "object", "minProperties": 1}}),
            checked_by_view=True,
            errors=(400, 401, 403, 409, 413, 422, 423, 503),
            answer=_object(
                {
                    "id": {"type": "string", "minLength": 1},
                    "roles": _VERSIONS,
                    "expected_targets": {"type": "array", "items": _TARGET},
                }
            ),
        )
    },
    "/api/v1/releases/{id}": {
        "parameters": [_ID_PARAM],
        "delete": _op(
            "Abandon an upload", roles="the uploader", ok=204, errors=(401, 403, 404, 409, 410)
        ),
    },
    "/api/v1/releases/{id}/targets/{path}": {
        "parameters": [_ID_PARAM, _PATH_PARAM],
        "put": _op(
            "Stream one firmware file; checked against its signed length and hash",
            roles="the uploader",
            ok=201,
            body={"type": "string", "format": "binary"},
            body_type="application/octet-stream",
            errors=(400, 401, 403, 404, 409, 410, 413, 422),
            answer=_TARGET,
        ),
    },
    "/api/v1/targets/{path}": {
        "parameters": [_PATH_PARAM],
        "put": _op(
            "Stream the missing file of a published target (one imported without its file);"
            " checked while it streams against its signed length and every signed hash,"
            " stored whole or not at all. 201: stored; 404 (rule unknown-target): the"
            " published metadata lists no such target; 409 (rule target-present): the server"
            " has its file already, (target-changed) it was signed anew meanwhile; 413: more"
            " bytes than signed; 422 (wrong-length, wrong-hash): not the signed bytes; 423:"
            " the system is frozen (freeze.rules F3)",
            roles=_RELEASE_ROLES,
            ok=201,
            body={"type": "string", "format": "binary"},
            body_type="application/octet-stream",
            errors=(400, 401, 403, 404, 409, 413, 422, 423, 503),
            answer=_TARGET,
        ),
    },
    "/api/v1/releases/{id}/publish": {
        "parameters": [_ID_PARAM],
        "post": _op(
            "Publish: new snapshot and timestamp, switched atomically. 423: the system is"
            " frozen (freeze.rules F3)",
            roles="the uploader",
            fresh_otp=True,
            errors=(400, 401, 403, 404, 409, 410, 422, 423, 503),
            answer=_object(
                {
                    "published": _VERSIONS,
                    "snapshot": {"type": "integer", "minimum": 1},
                    "timestamp": {"type": "integer", "minimum": 1},
                }
            ),
        ),
    },
    "/api/v1/audit": {
        "get": _op(
            "Audit entries in order, after a sequence number, a page at a time",
            roles="auditor, security_officer",
            query=(
                {"name": "after", "schema": {"type": "integer", "minimum": 0, "maximum": 2**62}},
                {"name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ),
            answer=_object(
                {"entries": {"type": "array", "items": _AUDIT_ENTRY}, "next_after": _COUNT}
            ),
        )
    },
    "/api/v1/audit/verify": {
        "get": _op(
            "Verify the audit chain, its checkpoints and its anchored head",
            roles="auditor, security_officer",
            answer=_object(
                {
                    "ok": {"type": "boolean"},
                    "entries": _COUNT,
                    "first_bad": {"type": ["integer", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "checkpoint": {"type": ["object", "null"]},
                },
                {"anchor": {"type": ["object", "null"]}, "warnings": {"type": "array"}},
            ),
        )
    },
    "/api/v1/authorizations": {
        "post": _op(
            "Authorize one published release for a list of devices in the technician's scope:"
            " one signed document per device (device id, target path and SHA-256, a nonce, an"
            " expiry of minutes), R9/R58. 404: a device out of scope or a release not"
            " published; 409: a device not accepted, another model, or a release that needs no"
            " authorization; 423: the system is frozen (freeze.rules F3)",
            roles="technician",
            fresh_otp=True,
            ok=201,
            body=_body(
                {
                    "device_ids": {
                        "type": "array",
                        "items": _NAME,
                        "maxItems": 100,
                    },
                    "target_path": {"type": "string", "minLength": 1, "maxLength": 512},
                },
                {"lifetime_minutes": {"type": "integer", "minimum": 1, "maximum": 60}},
            ),
            errors=(400, 401, 403, 404, 409, 423),
            answer=_object({"authorizations": {"type": "array", "items": _AUTHORIZATION_DOC}}),
        ),
        "get": _op(
            "Authorizations issued, newest first, with their status (pending, delivered, used,"
            " refused, expired); a technician sees those of their sites' devices",
            roles="technician, admin, security_officer, auditor",
            answer=_object({"authorizations": {"type": "array", "items": _AUTHORIZATION}}),
        ),
    },
    "/api/v1/devices/{device_id}/bundle": {
        "parameters": [_DEVICE_ID_PARAM],
        "post": _op(
            "The offline bundle for one device of the technician's sites (issue 13, what"
            " fwsign bundle downloads): the published root chain after from_root (1 by"
            " default), timestamp, snapshot, the targets roles and files of the release the"
            " device would install, and, when that release requires one, an authorization"
            " issued for this device (R9/R58), as an application/x-tar attachment; audited"
            " (bundle.create). 404: a device out of scope (as if it did not exist); 409: a"
            " device not accepted, or nothing to carry; 413: the bundle is over the bound;"
            " 423: the system is frozen; 503: a publication in progress, try again. A refusal"
            " issues nothing",
            roles="technician",
            fresh_otp=True,
            body=_body({}, {"from_root": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}),
            errors=(400, 401, 403, 404, 409, 423),
            ok_type="application/x-tar",
            answer={"type": "string", "format": "binary"},
        ),
    },
    "/api/v1/authorizations/{authorization_id}": {
        "get": _op(
            "One authorization with its signed document (to hand over as a file)",
            roles="technician, admin, security_officer, auditor",
            errors=(400, 401, 403, 404),
            answer=_AUTHORIZATION_DOC,
        ),
        "parameters": [
            {
                "name": "authorization_id",
                "in": "path",
                "required": True,
                "schema": _ID,
            }
        ],
    },
    "/api/v1/enrolment-tokens": {
        "post": _op(
            "Issue a one-time enrolment token (shown once; stored as its SHA-256)",
            roles="admin",
            fresh_otp=True,
            ok=201,
            body=_body(
                {"hardware_model": _NAME},
                {
                    "device_id": _NAME,
                    "site": _NAME,
                    "accept": {"type": "boolean"},
                    "expires_in_hours": {"type": "integer", "minimum": 1, "maximum": 720},
                },
            ),
            answer=_object(
                {
                    "id": {"type": "integer"},
                    "token": {"type": "string", "minLength": 1},
                    "hardware_model": {"type": "string"},
                    "pre_authorized": {"type": "boolean"},
                    "expires_at": _INSTANT,
                },
                {"device_id": _OPTIONAL_TEXT, "site": _OPTIONAL_TEXT},
            ),
        )
    },
    "/api/v1/devices/register": {
        "post": _op(
            "Register a device with an enrolment token; the request is signed (RFC 9421)"
            " by the key it registers (proof of possession). 401: token unknown, expired or"
            " used, or the signature refused; 403: token bound to another model or device"
            " id; 409: the device id is registered already",
            roles="anyone",
            ok=201,
            body=_body(
                {
                    "device_id": _NAME,
                    "hardware_model": _NAME,
                    "public_key": _object(
                        {
                            "keytype": {"type": "string"},
                            "scheme": {"type": "string"},
                            "keyval": _object({"public": {"type": "string"}}),
                        }
                    ),
                    "token": {"type": "string", "minLength": 1, "maxLength": 128},
                }
            ),
            errors=(400, 401, 403, 409),
            answer=_object(
                {"device_id": {"type": "string"}, "state": {"enum": ["pending", "accepted"]}}
            ),
        )
    },
    "/api/v1/devices": {
        "get": _op(
            "The devices the caller sees (a technician: their sites')",
            roles="admin, technician",
            answer=_object({"devices": {"type": "array", "items": _DEVICE}}),
        )
    },
    "/api/v1/devices/{device_id}": {
        "parameters": [_DEVICE_ID_PARAM],
        "get": _op(
            "One device (404 also when out of the technician's scope)",
            roles="admin, technician",
            errors=(400, 401, 403, 404),
            answer=_DEVICE,
        ),
    },
    "/api/v1/devices/{device_id}/accept": _device_change(
        "Accept a pending (or rejected) device", roles="admin, technician (their sites)"
    ),
    "/api/v1/devices/{device_id}/reject": _device_change(
        "Reject a pending device", roles="admin, technician (their sites)"
    ),
    "/api/v1/devices/{device_id}/decommission": _device_change(
        "Decommission a device: its key is revoked at once, its records stay (R62)",
        roles="admin",
        fresh_otp=True,
    ),
    "/api/v1/device/reports": {
        "post": _device_op(
            "Report what the device runs and its event-log entries not acknowledged yet"
            " (R37, R38; client.report.build_report). Answer: the head accepted"
            " {acked_seq, acked_hash}, or {refused, seq, reason} when the entries do not"
            " continue the device's chain from the head the server holds (malformed,"
            " oversized, rewrite, gap, fork: update_server/device_log.py); a refusal is"
            " the device's alert, shown in the inventory and audited",
            body={"type": "object"},
            checked_by_view=True,
            answer={
                "oneOf": [
                    _object(
                        {
                            "acked_seq": _COUNT,
                            "acked_hash": {"type": ["string", "null"]},
                        }
                    ),
                    _object(
                        {
                            "refused": {"type": "string"},
                            "seq": {"type": ["integer", "null"]},
                            "reason": {"type": "string"},
                        }
                    ),
                ]
            },
        )
    },
    "/api/v1/device/authorizations": {
        "get": _device_op(
            "Authorizations addressed to this device",
            answer=_object({"authorizations": {"type": "array"}}),
        )
    },
    "/metadata/{path}": {
        "parameters": [_PATH_PARAM],
        "get": _op(
            "TUF metadata (ETag, 304)",
            roles="anyone",
            errors=(404,),
            database=False,
            also_ok=(304,),
        ),
    },
    "/targets/{path}": {
        "parameters": [_PATH_PARAM],
        "get": _op(
            "Firmware (ETag, 304, Range: 206, 416)",
            roles="anyone",
            errors=(404, 416),
            ok_type="application/octet-stream",
            database=False,
            also_ok=(206, 304),
        ),
    },
}

# -- Fleet operations (issue 11, update_server.deployments) ----------------------------
_GROUP_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": _NAME}
_DEPLOYMENT_ID_PARAM = {
    "name": "deployment_id",
    "in": "path",
    "required": True,
    "schema": _ID,
}
_FLEET_ROLES = "release_manager, release_engineer, admin, security_officer, auditor"
_CRITERIA = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"enum": ["hardware_model", "site", "running_version", "mode", "slot"]},
    "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 64},
}
_WINDOW_BODY = _body(
    {
        "days": {
            "type": "array",
            "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "minItems": 1,
            "maxItems": 7,
            "uniqueItems": True,
        },
        "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
        "duration_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
    }
)
_WINDOW = {"oneOf": [{"type": "null"}, _object({k: {} for k in _WINDOW_BODY["properties"]})]}
_GROUP = _object(
    {
        "name": {"type": "string"},
        "kind": {"enum": ["static", "dynamic"]},
        "criteria": {"type": ["object", "null"]},
        "window": _WINDOW,
    },
    {"devices": {"type": "array", "items": {"type": "string"}}},
)
_FLEET = _object(
    {"hardware_model": {"type": "string"}, "install": {"enum": ["assigned", "newest"]}},
    {"changed_by": _OPTIONAL_TEXT},
)
_DEPLOYMENT_STATES = ["awaiting_approval", "running", "paused", "completed", "stopped", "aborted"]
_DEVICE_STATUSES = [
    "assigned",
    "downloading",
    "activating",
    "deferred",
    "installed",
    "failed",
    "refused",
]
_DEPLOYMENT = _object(
    {
        "id": {"type": "integer"},
        "target_path": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "version": {"type": "string"},
        "state": {"enum": _DEPLOYMENT_STATES},
        "reason": _OPTIONAL_TEXT,
        "groups": {"type": "array", "items": {"type": "string"}},
        "fleets": {"type": "array", "items": {"type": "string"}},
        "waves": {
            "type": "array",
            "items": _object(
                {
                    "wave": {"type": "integer", "minimum": 1},
                    "devices": _COUNT,
                    "installed": _COUNT,
                    "failed": _COUNT,
                    "started": {"type": "boolean"},
                }
            ),
        },
        "success_percent": {"type": "integer"},
        "failure_percent": {"type": "integer"},
        "statuses": {"type": "object", "additionalProperties": _COUNT},
        "created_by": {"type": "string"},
        "created_at": _INSTANT,
    },
    {
        "approved_by": _OPTIONAL_TEXT,
        "approved_at": _OPTIONAL_TEXT,
        "devices": {
            "type": "array",
            "items": _object(
                {
                    "device_id": {"type": "string"},
                    "wave": {"type": "integer", "minimum": 1},
                    "status": {"enum": _DEVICE_STATUSES},
                },
                dict.fromkeys(
                    ("event", "reason", "status_at", "assigned_at", "checked_in_at"),
                    _OPTIONAL_TEXT,
                ),
            ),
        },
    },
)


def _deployment_change(summary: str, *, fresh_otp: bool = False) -> dict[str, Any]:
    return {
        "parameters": [_DEPLOYMENT_ID_PARAM],
        "post": _op(
            summary,
            roles="release_manager",
            fresh_otp=fresh_otp,
            errors=(400, 401, 403, 404, 409, 423),
            answer=_DEPLOYMENT,
        ),
    }


def _group_edit(summary: str, **kwargs: Any) -> dict[str, Any]:
    return _op(
        summary,
        roles="release_manager, admin",
        errors=(400, 401, 403, 404, 409),
        answer=_GROUP,
        **kwargs,
    )


PATHS.update(
    {
        "/api/v1/groups": {
            "get": _op(
                "Device groups: static (members by id) and dynamic (by model, site or a"
                " device field), with their maintenance windows",
                roles=_FLEET_ROLES,
                answer=_object({"groups": {"type": "array", "items": _GROUP}}),
            ),
            "post": _group_edit(
                "Make a group (GR1): static, or dynamic with criteria",
                ok=201,
                body=_body(
                    {"name": _NAME, "kind": {"enum": ["static", "dynamic"]}},
                    {"criteria": _CRITERIA},
                ),
            ),
        },
        "/api/v1/groups/{name}": {
            "parameters": [_GROUP_NAME_PARAM],
            "get": _op(
                "One group with its devices now",
                roles=_FLEET_ROLES,
                errors=(400, 401, 403, 404),
                answer=_GROUP,
            ),
            "delete": _op(
                "Delete a group (deployments made with it keep their devices)",
                roles="release_manager, admin",
                ok=204,
                errors=(400, 401, 403, 404),
            ),
        },
        "/api/v1/groups/{name}/members": {
            "parameters": [_GROUP_NAME_PARAM],
            "post": _group_edit(
                "Add registered devices to a static group (GR2)",
                body=_body(
                    {
                        "device_ids": {
                            "type": "array",
                            "items": _NAME,
                            "minItems": 1,
                            "maxItems": 1000,
                        }
                    }
                ),
            ),
        },
        "/api/v1/groups/{name}/members/{device_id}": {
            "parameters": [_GROUP_NAME_PARAM, _DEVICE_ID_PARAM],
            "delete": _group_edit("Remove a device from a static group (GR2)"),
        },
        "/api/v1/groups/{name}/window": {
            "parameters": [_GROUP_NAME_PARAM],
            "put": _group_edit(
                "Set the group's maintenance window: days, local start time, duration, the"
                " site's IANA time zone (MW1-MW4); devices activate only inside it",
                body=_WINDOW_BODY,
            ),
            "delete": _group_edit("Remove the group's maintenance window"),
        },
        "/api/v1/fleets": {
            "get": _op(
                "Per-fleet (hardware model) install settings; a model not listed is 'assigned'",
                roles=_FLEET_ROLES,
                answer=_object(
                    {
                        "default": {"const": "assigned"},
                        "fleets": {"type": "array", "items": _FLEET},
                    }
                ),
            ),
        },
        "/api/v1/fleets/{hardware_model}": {
            "parameters": [
                {"name": "hardware_model", "in": "path", "required": True, "schema": _NAME}
            ],
            "put": _op(
                "Set a fleet's install setting (GR4): 'assigned' (only what a deployment"
                " assigns) or 'newest' (the newest eligible release). 423: 'newest' while the"
                " system is frozen (rollout D10)",
                roles="release_manager",
                fresh_otp=True,
                errors=(400, 401, 403, 423),
                body=_body({"install": {"enum": ["assigned", "newest"]}}),
                answer=_FLEET,
            ),
        },
        "/api/v1/deployments": {
            "get": _op(
                "Deployments, newest first, with their waves and device counts by status",
                roles=_FLEET_ROLES,
                answer=_object({"deployments": {"type": "array", "items": _DEPLOYMENT}}),
            ),
            "post": _op(
                "Deploy a published target to groups and fleets, in waves (D1, W1); it waits"
                " for another release manager's approval (R9). 404: no such group or"
                " published target; 409: no device left, or devices in another open deployment",
                roles="release_manager",
                ok=201,
                body=_body(
                    {
                        "target_path": {"type": "string", "minLength": 1, "maxLength": 512},
                        "success_percent": {"type": "integer", "minimum": 1, "maximum": 100},
                        "failure_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                    {
                        "groups": {"type": "array", "items": _NAME, "maxItems": 100},
                        "fleets": {"type": "array", "items": _NAME, "maxItems": 100},
                        "waves": {
                            "type": "array",
                            "maxItems": 20,
                            "items": {
                                "oneOf": [
                                    _body({"count": {"type": "integer", "minimum": 1}}),
                                    _body(
                                        {
                                            "percent": {
                                                "type": "integer",
                                                "minimum": 1,
                                                "maximum": 100,
                                            }
                                        }
                                    ),
                                ]
                            },
                        },
                    },
                ),
                errors=(400, 401, 403, 404, 409),
                answer=_DEPLOYMENT,
            ),
        },
        "/api/v1/deployments/{deployment_id}": {
            "parameters": [_DEPLOYMENT_ID_PARAM],
            "get": _op(
                "One deployment with each device's status (assigned, downloading, activating,"
                " deferred, installed, failed, refused)",
                roles=_FLEET_ROLES,
                errors=(400, 401, 403, 404),
                answer=_DEPLOYMENT,
            ),
        },
        "/api/v1/deployments/{deployment_id}/approve": _deployment_change(
            "Approve (four eyes, R9): another release manager than the creator (403)",
            fresh_otp=True,
        ),
        "/api/v1/deployments/{deployment_id}/pause": _deployment_change(
            "Pause a running deployment: no wave starts, no assignment is served"
        ),
        "/api/v1/deployments/{deployment_id}/resume": _deployment_change(
            "Resume a paused deployment"
        ),
        "/api/v1/deployments/{deployment_id}/abort": _deployment_change(
            "Abort a deployment for good", fresh_otp=True
        ),
        "/api/v1/device/poll": {
            "get": _device_op(
                "The device's directive (update_server/deployments/poll.py P1-P6): mode,"
                " install setting, the signed target a deployment assigns it now, and its"
                " maintenance window (open now or next)",
                answer={
                    **_body(
                        {
                            "mode": {"enum": ["normal", "frozen"]},
                            "install": {"enum": ["assigned", "newest"]},
                            "assignment": {
                                "oneOf": [
                                    {"type": "null"},
                                    _body(
                                        {
                                            # null: the server's offer to leave a
                                            # withdrawn release (poll P6).
                                            "deployment": {
                                                "type": ["integer", "null"],
                                                "minimum": 1,
                                            },
                                            "target_path": {"type": "string", "minLength": 1},
                                            "sha256": {
                                                "type": "string",
                                                "pattern": "^[0-9a-f]{64}$",
                                            },
                                            "version": {"type": "string", "minLength": 1},
                                        }
                                    ),
                                ]
                            },
                            "window": {
                                "oneOf": [
                                    {"type": "null"},
                                    _body({"opens": _INSTANT, "closes": _INSTANT}),
                                ]
                            },
                        }
                    )
                },
            )
        },
    }
)

_VOTE = _object({"by": {"type": "string"}, "at": _INSTANT, "lapses_at": _INSTANT})
_FREEZE = _object(
    {
        "mode": {"enum": ["normal", "frozen"]},
        "since": {"oneOf": [{"type": "null"}, _INSTANT]},
        "by": _OPTIONAL_TEXT,
        "reason": _OPTIONAL_TEXT,
        "lifted_by": {"type": "array", "items": {"type": "string"}},
        "pending_vote": {"oneOf": [{"type": "null"}, _VOTE]},
        "unfreeze_window_seconds": _COUNT,
    }
)
_FREEZE_VOTE = {
    **_FREEZE,
    "properties": {
        **_FREEZE["properties"],
        "vote": {"enum": ["first", "lifted"]},
        "message": {"type": "string"},
    },
    "required": [*_FREEZE["required"], "vote", "message"],
}
PATHS.update(
    {
        "/api/v1/freeze": {
            "get": _op(
                "The failsafe freeze (R24): the mode, who froze, since when and why, and the"
                " pending vote to lift it",
                roles="any role",
                answer=_FREEZE,
            ),
            "post": _op(
                "Freeze the system (R24, freeze.rules F1): no publication, no authorization, no"
                " deployment progress until two security officers lift it; the online roles are"
                " still renewed. 409: already frozen (nothing changes)",
                roles="security_officer",
                fresh_otp=True,
                body=_body({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}),
                errors=(400, 401, 403, 409),
                answer=_FREEZE,
            ),
        },
        "/api/v1/freeze/lift": {
            "post": _op(
                "Vote to lift the freeze (freeze.rules F2): the first vote is recorded, a second"
                " by a different security officer within unfreeze_window lifts it; a vote older"
                " than that has lapsed and this one is a new first vote. 409: not frozen, or the"
                " pending vote is the caller's own",
                roles="security_officer",
                fresh_otp=True,
                errors=(400, 401, 403, 409),
                answer=_FREEZE_VOTE,
            )
        },
    }
)

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "fwupdate distribution server",
        "version": "1",
        "description": "Firmware publication (MFA) and TUF distribution. See docs/api.md.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "device": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature",
                "description": "RFC 9421 HTTP Message Signature by the device key"
                " (Signature-Input and Signature, label 'device'; Content-Digest).",
            },
        },
        "parameters": {
            "OTP": {
                "name": "X-OTP",
                "in": "header",
                "required": True,
                "description": "A fresh TOTP code, not used before (two-step confirmation, R9).",
                "schema": {"type": "string", "pattern": "^[0-9]{6}$"},
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
                "required": ["title", "status", "detail"],
            }
        },
    },
}


@blueprint.get("/api/v1/openapi.json")
@public
def openapi() -> ResponseReturnValue:
    return jsonify(SPEC)
