"""The ``web`` blueprint: login, first login, home, logout (rules W1-W5 in ``web``).

Views orchestrate, as the API's do, and call the API's own functions
(``auth.views.log_in``, ``enrolment_secret``, ``confirm_enrolment``,
``log_out``): one login, one lockout, one audit for both. A refusal the
person can fix re-renders the form with the API's message and status;
nothing is half done (the API's rules commit or refuse as a whole).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import segno
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException

from update_server import bodies, users
from update_server.access import ALL_ROLES, SESSION_COOKIE, allow, public
from update_server.app import Services, _as_server_error
from update_server.auth import login, sessions
from update_server.auth.views import (
    change_own_password,
    confirm_enrolment,
    enrolment_secret,
    log_in,
    log_out,
)
from update_server.errors import AuthenticationError, ServerError
from update_server.mfa import totp
from update_server.models import Role, User
from update_server.web import (
    alert_pages,
    audit_pages,
    bundle_pages,
    deployment_pages,
    device_pages,
    fleet_pages,
    freeze_pages,
    technician_pages,
)
from update_server.web.forms import FirstLoginForm, LoginForm, LogoutForm

logger = logging.getLogger(__name__)

blueprint = Blueprint("web", __name__, template_folder="templates", static_folder=None)
# Nested: its routes are web pages (cookie session, CSRF, CSP, these error pages).
blueprint.register_blueprint(device_pages.blueprint)
blueprint.register_blueprint(technician_pages.blueprint)
blueprint.register_blueprint(freeze_pages.blueprint)
blueprint.register_blueprint(audit_pages.blueprint)
blueprint.register_blueprint(alert_pages.blueprint)
blueprint.register_blueprint(deployment_pages.blueprint)
blueprint.register_blueprint(fleet_pages.blueprint)
blueprint.register_blueprint(bundle_pages.blueprint)
csrf = CSRFProtect()
STATIC_DIR = Path(__file__).parent / "static"

#: W4: the pages' Content-Security-Policy: no inline script or style, no eval.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
#: The pages each role finds on the home page: (endpoint, label).
ROLE_PAGES: dict[str, tuple[tuple[str, str], ...]] = {
    Role.ADMIN: (
        ("web.devices.pending", "Pending devices: accept or reject"),
        ("web.devices.enrolment_token_form", "Issue an enrolment token"),
        ("web.technician.devices", "Devices and their offered releases"),
        ("web.technician.authorizations", "Technicians' authorizations and their status"),
        ("web.fleet.inventory", "Fleet inventory: versions, withdrawn releases, deployments"),
        ("web.deployments.listed", "Deployments and their waves"),
    ),
    Role.TECHNICIAN: (
        ("web.technician.devices", "Your devices: authorize an update"),
        ("web.technician.authorizations", "Authorizations you issued and their status"),
        ("web.devices.pending", "Pending devices of your sites"),
        ("web.fleet.inventory", "Fleet inventory of your sites"),
    ),
    Role.RELEASE_MANAGER: (
        ("web.deployments.listed", "Deployments: approve, pause, abort, watch the waves"),
        ("web.deployments.new", "Deploy a published release in waves"),
    ),
    Role.RELEASE_ENGINEER: (("web.deployments.listed", "Deployments and their waves"),),
    Role.SECURITY_OFFICER: (
        ("web.freeze.page", "The failsafe freeze: freeze, or vote to lift"),
        ("web.alerts.page", "Alerts and their delivery to the webhooks"),
        ("web.audit.search", "Search the audit log"),
        ("web.audit.verify", "Check the audit log against its signed checkpoint"),
    ),
    Role.AUDITOR: (
        ("web.audit.search", "Search the audit log"),
        ("web.audit.verify", "Check the audit log against its signed checkpoint"),
        ("web.audit.export_form", "Export the audit log"),
        ("web.alerts.page", "Alerts and their delivery to the webhooks"),
    ),
}
#: The Flask session key of the R11 notice shown on the home page.
PREVIOUS_LOGIN = "previous_login"
CSRF_REFUSED = (
    "this form is out of date or did not come from this site, so nothing was done:"
    " reload the page and send it again"
)


@blueprint.before_request
def check_csrf() -> None:
    """W3: every POST to a page carries a valid CSRF token (after ``access.enforce``)."""
    csrf.protect()


@blueprint.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    # The CSRF check's Referer must reach this server; no other site sees a URL.
    response.headers["Referrer-Policy"] = "same-origin"
    if g.get("retry_after") is not None:
        response.headers["Retry-After"] = str(g.retry_after)
    return response


@blueprint.get("/static/<path:name>")
@public
def static(name: str) -> ResponseReturnValue:
    return send_from_directory(STATIC_DIR, name)


@blueprint.get("/login")
@public
def login_page() -> ResponseReturnValue:
    return render_template("login.html", form=LoginForm())


@blueprint.post("/login")
@public
def login_submit() -> ResponseReturnValue:
    form = LoginForm()
    try:
        success, token = log_in(_attempt(form))
    except login.LoginFailedError as failure:
        return render_template("login.html", form=form, error=failure.detail), failure.status
    _end_previous_session()
    session.clear()  # W2: a new CSRF token with the new session
    # R11: the previous login and the failed attempts since, shown on the home page.
    session[PREVIOUS_LOGIN] = {
        "at": _shown(success.previous_at) if success.previous_at else None,
        "source": success.previous_source or "",
        "failures": success.failures_since,
    }
    response = redirect(url_for("web.home" if _finished(success.user) else "web.first_login"))
    response.set_cookie(
        SESSION_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/"
    )
    return response


@blueprint.get("/")
@allow(*ALL_ROLES, during_first_login=True)
def home() -> ResponseReturnValue:
    user: User = g.user
    if not _finished(user):
        return redirect(url_for("web.first_login"))
    expires = users.aware(g.session.expires_at)
    return render_template(
        "home.html",
        user=user,
        previous=session.get(PREVIOUS_LOGIN),
        expires=_shown(expires),
        idle_minutes=int(_services().config.session_idle.total_seconds() // 60),
        pages=ROLE_PAGES.get(user.role, ()),
        logout=LogoutForm(),
    )


@blueprint.get("/first-login")
@allow(*ALL_ROLES, during_first_login=True)
def first_login() -> ResponseReturnValue:
    user: User = g.user
    if _finished(user):
        return redirect(url_for("web.home"))
    return _first_login_page(user, FirstLoginForm())


@blueprint.post("/first-login")
@allow(*ALL_ROLES, during_first_login=True)
def first_login_submit() -> ResponseReturnValue:
    """The API's one-step confirm (C2): the code, and a new password when one is due."""
    user: User = g.user
    if _finished(user):
        return redirect(url_for("web.home"))
    form = FirstLoginForm()
    current, new, problem = _typed_passwords(user, form)
    if problem:
        return _first_login_page(user, form, problem, 422)
    try:
        changed = _finish_first_login(user, form, current=current, new=new)
    except ServerError as refused:
        problems = refused.extra.get("problems", [])
        return _first_login_page(user, form, refused.detail, refused.status, problems)
    if not changed:
        return redirect(url_for("web.home"))
    # The password changed, so every session has ended (the API's rule).
    return _to_login("Your password is set and your authenticator enrolled: log in with them now.")


@blueprint.post("/logout")
@allow(*ALL_ROLES, during_first_login=True)
def logout() -> ResponseReturnValue:
    log_out(g.user, g.session)
    return _to_login("You are logged out.")


@blueprint.app_template_filter("grouped")
def _grouped(secret: str) -> str:
    """A TOTP secret in groups of four, easier to type into an authenticator."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def error_page(exc: Exception) -> ResponseReturnValue:
    """W5: the web blueprint's errors: to the login page without a session, else HTML.

    A refused fresh code (a session, but a wrong code) is a page of its own.
    """
    exc = _as_server_error(exc)
    if isinstance(exc, AuthenticationError) and g.get("user") is None:
        response = redirect(url_for("web.login_page"))
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, samesite="Strict")
        return response
    if isinstance(exc, CSRFError):
        status, title, detail = 400, "Form refused", CSRF_REFUSED
    elif isinstance(exc, ServerError):
        status, title, detail = exc.status, exc.title, exc.detail
    elif isinstance(exc, HTTPException):
        status, title, detail = exc.code or 500, exc.name, exc.description or exc.name
    else:
        logger.exception("unhandled error on a page")
        status, title, detail = 500, "Server error", "the server failed; see its log"
    page = render_template("error.html", title=title, detail=detail, status=status)
    response = make_response(page, status)
    # Read what is left of a refused body once the answer is out (bodies, B3).
    response.call_on_close(partial(bodies.drain, request.environ))
    return response


blueprint.register_error_handler(Exception, error_page)
# T2: a refused code on the authorize form shows the form again (else as above).
technician_pages.blueprint.register_error_handler(
    AuthenticationError,
    lambda exc: technician_pages.refused_code(exc) or error_page(exc),
)
# FP2: a refused code on a freeze form shows the freeze page again (else as above).
freeze_pages.blueprint.register_error_handler(
    AuthenticationError,
    lambda exc: freeze_pages.refused_code(exc) or error_page(exc),
)
# DP3: a refused code on an approve or abort form shows the deployment again (else as above).
deployment_pages.blueprint.register_error_handler(
    AuthenticationError,
    lambda exc: deployment_pages.refused_code(exc) or error_page(exc),
)
# BP2: a refused code on a device's bundle form shows its page again (else as above).
bundle_pages.blueprint.register_error_handler(
    AuthenticationError,
    lambda exc: bundle_pages.refused_code(exc) or error_page(exc),
)


def _attempt(form: LoginForm) -> login.Attempt:
    """The login typed in ``form``; an empty field is the core's malformed login."""
    name, password = form.username.data or "", form.password.data or ""
    code = (form.otp.data or "").strip() or None
    now, source = _services().clock(), (request.remote_addr or "")[:64]
    if not name or not password:
        return login.Attempt(
            name=name,
            password="",
            code=None,
            source=source,
            now=now,
            malformed="username and password must be non-empty strings, otp a string",
        )
    return login.Attempt(name=name, password=password, code=code, source=source, now=now)


def _end_previous_session() -> None:
    """W2: the session this browser held before this login ends now (rotation)."""
    old = request.cookies.get(SESSION_COOKIE, "")
    services = _services()
    try:
        _, previous = sessions.authenticate(g.db, old, now=services.clock(), config=services.config)
    except AuthenticationError:
        return  # none, or already ended
    sessions.revoke(g.db, previous)
    g.db.commit()


def _first_login_page(
    user: User,
    form: FirstLoginForm,
    error: str | None = None,
    status: int = 200,
    problems: list[str] | None = None,
) -> ResponseReturnValue:
    """The enrolment form, with the pending secret as a QR code drawn here (no third party).

    A person whose authenticator is enrolled already (through the API) sees
    the password fields only.
    """
    secret, qr = "", ""
    if not user.totp_enrolled:
        secret = enrolment_secret(user)
        uri = totp.provisioning_uri(secret, name=user.name)
        qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    page = render_template(
        "first_login.html",
        form=form,
        user=user,
        secret=secret,
        qr=qr,
        error=error,
        problems=problems or [],
        min_length=_services().config.password_min_length,
        logout=LogoutForm(),
    )
    return page, status


def _finish_first_login(user: User, form: FirstLoginForm, *, current: str, new: str) -> bool:
    """The API's C2 confirm; or, TOTP already enrolled, its password change alone.

    Returns whether the password changed (then every session has ended).
    """
    if user.totp_enrolled:
        change_own_password(user, current=current, new=new)
        return True
    code = (form.otp.data or "").strip()
    return confirm_enrolment(user, g.session, code=code, current=current, new=new)


def _typed_passwords(user: User, form: FirstLoginForm) -> tuple[str, str, str]:
    """The current and new passwords typed, and what is wrong with them as typed ('' if none)."""
    if not user.must_change_password:
        return "", "", ""
    current, new = form.current_password.data or "", form.new_password.data or ""
    if not current or not new:
        return current, new, "enter the one-time password you were given and a new one"
    if new != (form.new_password_again.data or ""):
        return current, new, "the two new passwords differ: type them again"
    return current, new, ""


def _to_login(message: str) -> ResponseReturnValue:
    """To the login page with ``message``; this browser's session cookie and CSRF token go."""
    session.clear()
    flash(message)
    response = redirect(url_for("web.login_page"))
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, samesite="Strict")
    return response


def _finished(user: User) -> bool:
    return not user.must_change_password and user.totp_enrolled


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
