"""``/api/v1/auth``: login, first-login enrolment, password change, logout.

Views orchestrate: the rules live in ``auth.login`` (throttle, code,
password), ``auth.otp`` (codes used once), ``users`` (password policy and
history) and ``auth.sessions``. Each security event is audited in the
transaction of the change it records; failures are audited and committed
before the refusal is answered. Nothing here logs a password, code, token
or secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue

from update_server import users
from update_server.access import ALL_ROLES, allow, audit_ended_refusals, public, secrets_box
from update_server.app import Services
from update_server.audit.actions import Action
from update_server.audit.chain import Outcome
from update_server.audit.recording import record, request_event
from update_server.auth import login, otp, refusals, sessions
from update_server.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    UnprocessableError,
)
from update_server.mfa import passwords, totp
from update_server.models import SessionToken, User

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


@blueprint.record_once
def _warm_dummy_hash(_state: BlueprintSetupState) -> None:
    # Made at start, not during the first login for an unknown name, whose
    # extra 0.1 s would otherwise tell that the name does not exist.
    passwords.dummy_hash()


@blueprint.after_request
def _retry_after(response: Response) -> Response:
    # RFC 9110 section 10.2.3: when a throttled client may try again.
    if g.get("retry_after") is not None:
        response.headers["Retry-After"] = str(g.retry_after)
    return response


@blueprint.post("/login")
@public
def login_view() -> ResponseReturnValue:
    services = _services()
    attempt = _login_attempt(services.clock())
    success, token = log_in(attempt)
    user = success.user
    return jsonify(
        {
            "token": token,
            "expires_at": _iso(attempt.now + services.config.session_absolute),
            "must_change_password": user.must_change_password,
            "totp_enrolled": user.totp_enrolled,
            # R11: the previous login and the failed attempts since.
            "last_login": _login_record(success.previous_at, success.previous_source),
            "failed_attempts_since_last_login": success.failures_since,
        }
    )


def log_in(attempt: login.Attempt) -> tuple[login.Success, str]:
    """Check ``attempt``; on success a new session, audited and committed: (success, token).

    The one login of the API and the web pages. A refusal is audited and
    committed, then ``LoginFailedError`` raised (``g.retry_after`` set when
    the source is throttled).
    """
    services = _services()
    try:
        success = login.attempt(g.db, attempt, config=services.config, box=secrets_box())
    except login.LoginFailedError as failure:
        # Row locks in one order everywhere: throttles, refusal tallies, then the audit log.
        audit_ended_refusals(attempt.now)
        _audit_failed_login(attempt, failure)
        g.db.commit()
        if isinstance(failure, login.SourceThrottledError):
            g.retry_after = failure.retry_after
        raise
    user = success.user
    token = sessions.create(
        g.db,
        user,
        now=attempt.now,
        config=services.config,
        login_step=success.step,
        source=attempt.source,
    )
    first_login = user.must_change_password or not user.totp_enrolled
    audit_ended_refusals(attempt.now)
    _audit(Action.LOGIN, "success", user, detail={"first_login": first_login})
    g.db.commit()
    return success, token


@blueprint.post("/totp/enroll")
@allow(*ALL_ROLES, during_first_login=True)
def enroll() -> ResponseReturnValue:
    """The pending TOTP secret: the same one until it is confirmed or discarded.

    Asking again (a retry, a rerun of the client) shows the secret already
    issued, so the entry made in the authenticator stays good; a new one
    is issued only when none is pending (first call, after an
    administrator's reset, after too many wrong codes).
    """
    user: User = g.user
    secret = enrolment_secret(user)
    return jsonify(
        {"provisioning_uri": totp.provisioning_uri(secret, name=user.name), "secret": secret}
    )


def enrolment_secret(user: User) -> str:
    """The secret ``user`` enrols: the pending one again, else a new one; audited, committed."""
    if user.totp_enrolled:
        raise ConflictError(
            "TOTP is already enrolled for you; to move it to a new device,"
            " ask an administrator to reset it"
        )
    box = secrets_box()
    secret, stage = otp.pending_secret(user, box), "secret shown again"
    if secret is None:
        secret, stage = otp.new_secret(user, box), "secret issued"
    _audit(Action.TOTP_ENROL, "success", user, detail={"stage": stage})
    g.db.commit()
    return secret


@blueprint.post("/totp/confirm")
@allow(*ALL_ROLES, during_first_login=True)
def confirm() -> ResponseReturnValue:
    """Confirm the pending secret with a code; with a new password, finish first login at once.

    C1 A wrong code keeps the pending secret (ask again, same authenticator
       entry) and counts like a failed login (R9): when the name locks, every
       session ends and the pending secret is discarded (audited); the next
       enrolment issues a new one.
    C2 With ``current_password`` and ``new_password`` the request is one
       unit: the current password, then the new one against the policy, are
       checked before the code; a refusal changes nothing else (the code is
       not spent, the secret stays pending). On success TOTP is enrolled and
       the password replaced in one transaction, and every session ends.
    """
    user: User = g.user
    body = _json_body()
    code = _text(body, "otp")
    current = _text(body, "current_password", required=False)
    new = _text(body, "new_password", required=False)
    if bool(current) != bool(new):
        raise BadRequestError("send 'current_password' and 'new_password' together, or neither")
    if not confirm_enrolment(user, g.session, code=code, current=current, new=new):
        return jsonify({"totp_enrolled": True})
    return jsonify({"totp_enrolled": True, "password_changed": True, "detail": _LOG_IN_AGAIN})


def confirm_enrolment(
    user: User, session: SessionToken, *, code: str, current: str, new: str
) -> bool:
    """C1, C2 of ``confirm``, for the API and the web pages; committed.

    Returns whether the password was changed too (``new`` given: every
    session has then ended).
    """
    if user.totp_enrolled:
        raise ConflictError("TOTP is already enrolled for you")
    if user.totp_secret is None:
        raise ConflictError("no TOTP secret to confirm: call /api/v1/auth/totp/enroll first")
    services = _services()
    now = services.clock()
    if new:
        _check_password_change(user, current=current, new=new, now=now)
    try:
        step = otp.consume(g.db, user, code, now=now, box=secrets_box())
    except otp.CodeRefusedError as refused:
        raise _refused_enrolment_code(user, refused, now) from None
    user.totp_enrolled = True
    # This session has now shown both factors, like a login with this code.
    session.login_step = max(session.login_step, step)
    _audit(Action.TOTP_ENROL, "success", user, detail={"stage": "confirmed"})
    if not new:
        g.db.commit()
        return False
    ended = users.change_password(g.db, user, new=new, now=now, config=services.config)
    _audit(Action.PASSWORD_CHANGE, "success", user, detail={"sessions_ended": ended})
    g.db.commit()
    return True


@blueprint.post("/password")
@allow(*ALL_ROLES, during_first_login=True)
def change_password() -> ResponseReturnValue:
    body = _json_body()
    current, new = _text(body, "current_password"), _text(body, "new_password")
    change_own_password(g.user, current=current, new=new)
    return jsonify({"password_changed": True, "detail": _LOG_IN_AGAIN})


def change_own_password(user: User, *, current: str, new: str) -> None:
    """Replace ``user``'s password (API and web pages): every session ends; committed."""
    services = _services()
    now = services.clock()
    _check_password_change(user, current=current, new=new, now=now)
    ended = users.change_password(g.db, user, new=new, now=now, config=services.config)
    _audit(Action.PASSWORD_CHANGE, "success", user, detail={"sessions_ended": ended})
    g.db.commit()


_LOG_IN_AGAIN = "every session has ended: log in again with your new password and a new code"


def _check_password_change(user: User, *, current: str, new: str, now: datetime) -> None:
    """Refuse (audited, committed) a wrong current password or a new one the policy refuses."""
    config = _services().config
    if not passwords.verify(user.password_hash, current):
        locked_until = login.count_failure(g.db, user, now=now, config=config)
        _audit(Action.PASSWORD_CHANGE, "failure", user, detail={"reason": "wrong current"})
        if locked_until is not None:
            _audit_lock(user.name, user.role, locked_until)
        g.db.commit()
        raise AuthenticationError(
            "the current password is not correct; repeated failures lock the account"
        )
    try:
        users.check_new_password(g.db, user, new=new, config=config)
    except passwords.PasswordPolicyError as exc:
        _audit(Action.PASSWORD_CHANGE, "refused", user, detail={"problems": len(exc.problems)})
        g.db.commit()
        raise UnprocessableError(
            str(exc), problems=list(exc.problems), field="new_password"
        ) from None


def _refused_enrolment_code(
    user: User, refused: otp.CodeRefusedError, now: datetime
) -> UnprocessableError:
    """Audit and count a refused confirmation code (C1), commit; the error to answer."""
    config = _services().config
    locked_until = login.count_failure(g.db, user, now=now, config=config)
    replayed = isinstance(refused, otp.ReplayedCodeError)  # R25: it leaked
    outcome = Outcome.REPLAY if replayed else Outcome.FAILURE
    _audit(Action.TOTP_ENROL, outcome, user, detail={"stage": "confirm", "reason": refused.reason})
    detail = (
        "that code does not match the secret being enrolled: check that the device's clock"
        " is right and enter the code it shows now (the secret is the same: keep the entry)"
    )
    if locked_until is not None:
        otp.discard_pending(user)
        _audit(Action.TOTP_ENROL, "failure", user, detail={"stage": "discarded"})
        _audit_lock(user.name, user.role, locked_until)
        detail = (
            "too many wrong codes: the secret being enrolled was discarded and the account"
            f" is locked until {_iso(locked_until)}; then log in again, delete the old entry"
            " from your authenticator and enrol the new secret"
        )
    g.db.commit()
    return UnprocessableError(detail, field="otp")


@blueprint.post("/logout")
@allow(*ALL_ROLES, during_first_login=True)
def logout() -> ResponseReturnValue:
    log_out(g.user, g.session)
    return "", 204


def log_out(user: User, session: SessionToken) -> None:
    """End ``session`` (the API's and the web pages' logout); audited, committed."""
    sessions.revoke(g.db, session)
    _audit(Action.LOGOUT, "success", user)
    g.db.commit()


@blueprint.get("/me")
@allow(*ALL_ROLES, during_first_login=True)
def me() -> ResponseReturnValue:
    user: User = g.user
    last_at = users.aware(user.last_login_at) if user.last_login_at else None
    g.db.commit()  # keeps the session's idle timer renewed by this request
    return jsonify(
        {
            "name": user.name,
            "role": user.role,
            "must_change_password": user.must_change_password,
            "totp_enrolled": user.totp_enrolled,
            "last_login": _login_record(last_at, user.last_login_source),
            "session_expires_at": _iso(users.aware(g.session.expires_at)),
        }
    )


def _login_attempt(now: datetime) -> login.Attempt:
    """The login in the request; one that cannot be read is marked, for ``login.attempt``.

    Never raises on the body: a malformed login is refused by the core,
    counted and audited like any failed one.
    """
    body = _json_object()
    source = _source()
    if body is None:
        return login.Attempt(
            name="", password="", code=None, source=source, now=now, malformed="not a JSON object"
        )
    name, password, code = body.get("username"), body.get("password"), body.get("otp")
    texts = isinstance(name, str) and isinstance(password, str)
    if not texts or not name or not password or not isinstance(code, str | None):
        return login.Attempt(
            name=name if isinstance(name, str) else "",
            password="",
            code=None,
            source=source,
            now=now,
            malformed="username and password must be non-empty strings, otp a string",
        )
    return login.Attempt(name=name, password=password, code=code or None, source=source, now=now)


def _audit_failed_login(attempt: login.Attempt, failure: login.LoginFailedError) -> None:
    role = failure.user.role if failure.user is not None else ""
    name = users.printable(attempt.name)
    if isinstance(failure, login.SourceThrottledError):
        _audit_throttled(attempt, failure)
        return
    if failure.locked:
        until = _iso(failure.locked_until) if failure.locked_until else ""
        _record(Action.LOGIN_LOCKED, "refused", name, role, detail={"until": until})
        return
    # R25: a replayed code leaked; its own outcome, and it counted like any failure.
    outcome = Outcome.REPLAY if failure.replayed else Outcome.FAILURE
    _record(Action.LOGIN, outcome, name, role, detail={"reason": failure.reason})
    if failure.locked_until is not None:
        _audit_lock(name, role, failure.locked_until)


def _audit_throttled(attempt: login.Attempt, failure: login.SourceThrottledError) -> None:
    """R27: a throttled source's refusals, one entry per window with their count."""
    refusal = refusals.Refusal(
        action=Action.LOGIN.value,
        actor="-",  # the names tried while throttled vary; the source is the key
        role="-",
        source=attempt.source,
        route=f"{request.method} {request.path}",
        reason=failure.reason,
        status=failure.status,
        now=attempt.now,
    )
    window = _services().config.refusal_audit_window
    for event in refusals.tally(g.db, refusal, window=window):
        record(event)


def _audit_lock(name: str, role: str, until: datetime) -> None:
    failures = _services().config.max_failed_logins
    _record(
        Action.LOGIN_LOCKED,
        "failure",
        name,
        role,
        detail={"until": _iso(until), "failures": failures},
    )


def _audit(
    action: Action, outcome: str, user: User, *, detail: dict[str, Any] | None = None
) -> None:
    _record(action, outcome, user.name, user.role, detail=detail or {})


def _record(action: Action, outcome: str, actor: str, role: str, *, detail: dict[str, Any]) -> None:
    # recording.record refuses the action (503) if its entry cannot be written.
    record(
        request_event(
            action.value,
            object=f"user:{actor[:64]}",
            outcome=outcome,
            detail=detail,
            actor=actor[:64],
            role=role,
        )
    )


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services


def _source() -> str:
    return (request.remote_addr or "")[:64]


def _json_body() -> dict[str, Any]:
    body = _json_object()
    if body is None:
        raise BadRequestError("send a JSON object with Content-Type: application/json")
    return body


def _json_object() -> dict[str, Any] | None:
    """The request's JSON object; None if it is not one, or nested too deep to read."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # json's decoder refuses nesting deeper than the stack
        return None
    return body if isinstance(body, dict) else None


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadRequestError(f"'{key}' is required and must be a string")
    return value


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _login_record(at: datetime | None, source: str | None) -> dict[str, str] | None:
    return None if at is None else {"at": _iso(at), "source": source or ""}
