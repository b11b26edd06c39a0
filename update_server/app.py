"""The Flask application factory (flaskr's shape, SecureDrop's discipline).

``create_app(config)`` binds a frozen ``ServerConfig``, one database engine,
the clock and the online signers; registers one blueprint per concern; bounds
every request body (``bodies``); runs ``access.enforce`` before every request
(default deny); answers only trusted Host names; answers every error
as ``application/problem+json`` without a traceback; and sets security
headers on every response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from flask import Flask, Response, g, jsonify, request
from securesystemslib.signer import Signer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import IntegerConverter, Map

from update_server import access, bodies, proxy, request_validation
from update_server.audit.errors import AnchorError
from update_server.clock import Clock, system_clock
from update_server.config import ServerConfig
from update_server.db import failure_of, make_engine, make_sessionmaker
from update_server.errors import (
    InsufficientStorageError,
    ServerError,
    ServiceUnavailableError,
    problem,
)
from update_server.migrations import check_schema
from update_server.observability import counting
from update_server.storage import storage_failure
from update_server.tls import certificate_names

logger = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=31536000",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_DEFAULT_HEADERS = (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store"))
DATABASE_UNAVAILABLE = (
    "the database is unavailable (locked, unreachable or failing); nothing was done:"
    " try again later, and tell the administrator if it lasts"
)
#: A locked or restarting database usually answers again within seconds.
DATABASE_RETRY_AFTER = 5
STORAGE_FULL = "the server's storage is full; nothing was changed: tell the administrator"
STORAGE_READ_ONLY = "the server's storage is read-only; nothing was changed: tell the administrator"
#: The answer to an untrusted Host (werkzeug's would quote the name back).
UNTRUSTED_HOST = "this server does not answer for that host name; use its own name"
#: The largest id the tables hold (their ids are Integer: PostgreSQL's 4-byte integer).
LARGEST_ID = 2**31 - 1


class DatabaseInteger(IntegerConverter):
    """``<int:...>`` bounded to the databases' integers: a larger number matches no route.

    werkzeug's converter takes any number of digits; PostgreSQL fails on an id
    past ``LARGEST_ID`` and SQLite past 2**63 - 1 (a 500; found by the API
    fuzz, R42). Unmatched, it is not found (404), like any unknown id.
    """

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None) -> None:  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=LARGEST_ID)


@dataclass
class Services:
    """What views reach through ``current_app.extensions['fw']``."""

    config: ServerConfig
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    #: Online signers by role (snapshot, timestamp, audit, authorization),
    #: loaded on first use so that a server without keys can still start.
    signer_loader: Callable[[str], Signer] | None = None
    _signers: dict[str, Signer] = field(default_factory=dict)

    def signer(self, role: str) -> Signer:
        if role not in self._signers:
            if self.signer_loader is None:
                raise ServerError(f"no online {role} key is configured")
            self._signers[role] = self.signer_loader(role)
        return self._signers[role]


def build_services(
    config: ServerConfig,
    *,
    clock: Clock = system_clock,
    signer_loader: Callable[[str], Signer] | None = None,
) -> Services:
    """The database (at the schema this code knows, M3), clock and online signers."""
    engine = make_engine(config.database_url, timeout=config.database_timeout)
    try:
        check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return Services(config, clock, engine, make_sessionmaker(engine), signer_loader=signer_loader)


def create_app(
    config: ServerConfig,
    *,
    clock: Clock = system_clock,
    signer_loader: Callable[[str], Signer] | None = None,
) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=None,
        PROPAGATE_EXCEPTIONS=False,
        JSON_SORT_KEYS=False,
        # Host header injection: any other Host is refused (400), so no URL
        # is ever built from a name the client chose.
        TRUSTED_HOSTS=trusted_hosts(config),
    )
    # No redirect at all: '//' is not merged into a redirect, it is not found.
    app.url_map.merge_slashes = False
    # Before any route is added: routes bind their converters when added.
    app.url_map.converters["int"] = DatabaseInteger
    app.extensions["fw"] = build_services(config, clock=clock, signer_loader=signer_loader)
    # The metrics' clock first (counting H1), then the body bound: before
    # authentication and the database.
    app.before_request(counting.start_clock)
    app.before_request(bodies.bound)
    app.before_request(_open_db)
    app.before_request(access.enforce)
    # After authentication: the document's rules are told to callers who may call.
    app.before_request(request_validation.check_request)
    app.teardown_request(_close_db)
    app.after_request(_security_headers)
    app.register_error_handler(Exception, _error)
    _register_blueprints(app)
    # R9, R27, R31: the client's address from exactly the configured proxies (proxy P1-P4).
    proxy.trust_proxies(app, hops=config.trusted_proxy_hops)
    return app


def trusted_hosts(config: ServerConfig) -> list[str]:
    """The names clients may send as Host: configured, or the certificate's and loopback."""
    return list(config.trusted_host_names or certificate_names(config))


def _register_blueprints(app: Flask) -> None:
    """Every blueprint, imported by name: a missing one fails the start, never skipped."""
    # Imported here, not at the top: the blueprints import this module (Services).
    from update_server import distribution, meta, openapi  # noqa: PLC0415
    from update_server.audit import views as audit_views  # noqa: PLC0415
    from update_server.auth import views as auth_views  # noqa: PLC0415
    from update_server.authorizations import views as authorization_views  # noqa: PLC0415
    from update_server.bundles import views as bundle_views  # noqa: PLC0415
    from update_server.deployments import views as deployment_views  # noqa: PLC0415
    from update_server.devices import views as device_views  # noqa: PLC0415
    from update_server.freeze import views as freeze_views  # noqa: PLC0415
    from update_server.observability import views as observability_views  # noqa: PLC0415
    from update_server.publication import views as publication_views  # noqa: PLC0415
    from update_server.web import init_app as init_web  # noqa: PLC0415

    for blueprint in (
        meta.blueprint,
        openapi.blueprint,
        auth_views.blueprint,
        audit_views.blueprint,
        publication_views.blueprint,
        device_views.blueprint,
        authorization_views.blueprint,
        bundle_views.blueprint,
        freeze_views.blueprint,
        deployment_views.blueprint,
        distribution.blueprint,
    ):
        app.register_blueprint(blueprint)
    # Status, readiness, metrics: their blueprint, the metrics' access, the counting hooks.
    observability_views.init_app(app)
    # The web pages: their blueprint, CSRF protection and cookie settings.
    init_web(app, app.extensions["fw"].config)


def _open_db() -> None:
    from flask import current_app  # noqa: PLC0415

    g.db = current_app.extensions["fw"].sessions()


def _close_db(_exc: BaseException | None) -> None:
    db: Session | None = g.pop("db", None)
    if db is not None:
        try:
            db.rollback()
            db.close()
        except SQLAlchemyError as exc:  # the answer (a 503) is already made
            logger.warning("closing the request's database session: %s", type(exc).__name__)


def _security_headers(response: Response) -> Response:
    # One pass over the headers present (werkzeug's setdefault scans them
    # once per call), then only the missing ones are added.
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118 - Headers
    for name, value in _DEFAULT_HEADERS:
        if name.lower() not in present:
            response.headers.add(name, value)
    return response


def _error(exc: Exception) -> Response:
    headers: list[tuple[str, str]] = []
    exc = _as_server_error(exc)
    if isinstance(exc, ServerError):
        body = problem(exc.status, exc.title, exc.detail, **exc.extra)
        status = exc.status
        if exc.retry_after is not None:
            headers.append(("Retry-After", str(exc.retry_after)))
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        detail = UNTRUSTED_HOST if isinstance(exc, SecurityError) else exc.description
        body = problem(status, exc.name, detail or exc.name)
        # werkzeug's own headers (Allow on a 405, ...), not its Content-Type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    else:
        logger.exception("unhandled error")
        status = 500
        body = problem(500, "Internal server error", "the server failed; see its log")
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.extend(headers)
    # Read what is left of a refused body once the answer is out, so that
    # the client reads the answer instead of a reset (bodies.py, B3).
    response.call_on_close(partial(bodies.drain, request.environ))
    return response


def _as_server_error(exc: Exception) -> Exception:
    """A database or disk that fails is the server's state, not a bug: 503 or 507."""
    if isinstance(exc, AnchorError):  # R27/R28: the audit head cannot be anchored
        return ServiceUnavailableError(str(exc))
    failure = failure_of(exc) if isinstance(exc, SQLAlchemyError) else storage_failure(exc)
    if failure is None:
        return exc
    # Only the class: a database error's text quotes the statement's parameters.
    logger.error("request refused, %s: %s", failure, type(exc).__name__)
    if failure == "full":
        return InsufficientStorageError(STORAGE_FULL)
    if failure == "read-only":
        return ServiceUnavailableError(STORAGE_READ_ONLY)
    return ServiceUnavailableError(DATABASE_UNAVAILABLE, retry_after=DATABASE_RETRY_AFTER)
