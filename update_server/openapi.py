"""The OpenAPI 3.1 description of every endpoint, served at /api/v1/openapi.json.

Written as data next to the contract in docs/api.md; a test checks that every
route the app registers is described here (and nothing else), and a
well-kept validator checks that the document is valid OpenAPI.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from update_server.access import public

blueprint = Blueprint("openapi", __name__)

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_OBJECT: dict[str, Any] = {"type": "object"}
_FRESH = " Needs a fresh TOTP code in X-OTP (two-step confirmation, R9)."


def _op(
    summary: str,
    *,
    roles: str,
    ok: int = 200,
    body: dict[str, Any] | None = None,
    body_type: str = "application/json",
    fresh_otp: bool = False,
    errors: tuple[int, ...] = (400, 401, 403),
    ok_type: str = "application/json",
    database: bool = True,
) -> dict[str, Any]:
    # Every body is bounded (413); a database or disk that fails answers 503 or 507.
    errors = tuple(sorted({*errors, 413} | ({503, 507} if database else set())))
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Who: {roles}."
        + (" Needs a fresh TOTP code in X-OTP." if fresh_otp else ""),
        "responses": {
            str(ok): {"description": "success", "content": {ok_type: {"schema": _OBJECT}}}
            if ok != 204
            else {"description": "done"},
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
    if fresh_otp:
        operation["parameters"] = [{"$ref": "#/components/parameters/OTP"}]
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    return operation


def _fields(*names: str, required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": list(required if required is not None else names),
    }


_PATH_PARAM = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_RELEASE_ROLES = "release_engineer, release_manager, security_officer"

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/health": {"get": _op("Liveness", roles="anyone", errors=(), database=False)},
    "/api/v1/openapi.json": {
        "get": _op("This document", roles="anyone", errors=(), database=False)
    },
    "/api/v1/auth/login": {
        "post": _op(
            "Log in with password and TOTP; shows the last login (R11)",
            roles="anyone",
            body=_fields("username", "password", "otp", required=("username", "password")),
            errors=(400, 401, 429),
        )
    },
    "/api/v1/auth/totp/enroll": {
        "post": _op("Start TOTP enrolment (first login)", roles="every role")
    },
    "/api/v1/auth/totp/confirm": {
        "post": _op("Confirm TOTP enrolment with a code", roles="every role", body=_fields("otp"))
    },
    "/api/v1/auth/password": {
        "post": _op(
            "Change password; ends every session",
            roles="every role",
            body=_fields("current_password", "new_password"),
        )
    },
    "/api/v1/auth/logout": {"post": _op("End this session", roles="every role", ok=204)},
    "/api/v1/auth/me": {"get": _op("Who is logged in", roles="every role")},
    "/api/v1/repository": {"get": _op("Published role versions and expiries", roles="every role")},
    "/api/v1/releases": {
        "post": _op(
            "Upload signed roles; verified against the trusted state",
            roles=_RELEASE_ROLES,
            ok=201,
            body={
                "type": "object",
                "properties": {"metadata": {"type": "object"}},
                "required": ["metadata"],
            },
            errors=(400, 401, 403, 413, 422, 503),
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
        ),
    },
    "/api/v1/releases/{id}/publish": {
        "parameters": [_ID_PARAM],
        "post": _op(
            "Publish: new snapshot and timestamp, switched atomically",
            roles="the uploader",
            fresh_otp=True,
            errors=(401, 403, 404, 409, 410, 422, 503),
        ),
    },
    "/api/v1/audit": {
        "get": _op(
            "Audit entries in order",
            roles="auditor, security_officer",
        )
    },
    "/api/v1/audit/verify": {
        "get": _op("Verify the audit chain and checkpoint", roles="auditor, security_officer")
    },
    "/metadata/{path}": {
        "parameters": [_PATH_PARAM],
        "get": _op("TUF metadata (ETag, 304)", roles="anyone", errors=(404,), database=False),
    },
    "/targets/{path}": {
        "parameters": [_PATH_PARAM],
        "get": _op(
            "Firmware (ETag, 304, Range)",
            roles="anyone",
            errors=(404, 416),
            ok_type="application/octet-stream",
            database=False,
        ),
    },
}

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
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
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
