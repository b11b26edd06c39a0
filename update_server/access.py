"""Who may call what: default deny, checked in one place (R6, R9).

Every view declares its access with ``@public`` or ``@allow(roles...)``;
a view that declares nothing is refused to everyone. ``enforce`` runs
before every request: it authenticates the bearer token (the session
cookie on web pages, never on the API: W1), checks the role,
keeps a person who has not finished first login (new password, TOTP
enrolment) to the endpoints that finish it, and for sensitive actions
(``fresh_otp=True``) consumes a fresh TOTP code from the ``X-OTP`` header:
one not used before, not even for this session's login (two-step
confirmation, R9), and commits its use before the view runs, so that a
view's rollback never makes it good again (R25).

A view marked ``@device_route`` is a device's, not a person's: it opens
only to an RFC 9421 signature by an accepted device's key
(``devices.authentication``, rules D1-D6), never to a person's session;
and a device's signature opens no person's route (it is no session).

Every refusal it makes (401, 403) is audited (R27): who (the person, or
``-`` without a session), what (method and route), from where, and why
(``Refused``). A flood is coalesced, never dropped (``auth.refusals``):
the first refusal of a key in a window is an entry at once, the rest one
entry with their count once the window has ended; tallies whose window
has ended are written at the next refusal or authenticated request, and
without traffic by the renewal thread and ``fwserver audit export/verify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from flask import current_app, g, request

from update_server.audit.actions import Action
from update_server.audit.chain import Outcome
from update_server.audit.recording import record, request_event
from update_server.auth import login, otp, refusals, sessions
from update_server.devices.authentication import authenticate as authenticate_device
from update_server.devices.signatures import DeviceRequestRefused
from update_server.errors import AuthenticationError, ForbiddenError, ServerError
from update_server.mfa.secretbox import SecretBox
from update_server.models import Role, SessionToken, User

F = TypeVar("F", bound=Callable[..., Any])
OTP_HEADER = "X-OTP"
#: The web pages' session: the same ``SessionToken`` as the API's bearer
#: token, in a ``__Host-`` cookie (Secure, Path=/, no Domain).
SESSION_COOKIE = "__Host-fw_session"
#: Blueprints whose routes are web pages: session from the cookie only (W1).
WEB_BLUEPRINTS = frozenset({"web"})
#: The form field of a web page's fresh one-time code (``fresh_otp=True``).
OTP_FIELD = "otp"


class Refused(StrEnum):
    """Why the access layer refused a request (the audit entry's reason)."""

    UNDECLARED = "no access rule"
    SESSION = "no valid session"
    SESSION_ENDED = "session ended"
    ROLE = "role not allowed"
    FIRST_LOGIN = "first login not finished"
    OTP_MISSING = "one-time code missing"


@dataclass(frozen=True)
class Access:
    """What a view requires."""

    public: bool = False
    #: Only a signed request of an accepted device (``@device_route``).
    device: bool = False
    roles: frozenset[Role] = frozenset()
    fresh_otp: bool = False
    during_first_login: bool = False


def public(view: F) -> F:
    """Anyone may call this view (devices, health checks, login itself)."""
    view.fw_access = Access(public=True)  # type: ignore[attr-defined]
    return view


def device_route(view: F) -> F:
    """Only an accepted device, by a signed request (R10), may call this view; no person."""
    view.fw_access = Access(device=True)  # type: ignore[attr-defined]
    return view


def allow(
    *roles: Role, fresh_otp: bool = False, during_first_login: bool = False
) -> Callable[[F], F]:
    """Only these roles may call the view; optionally with a fresh TOTP code."""
    if not roles:
        raise ValueError("allow() needs at least one role; use @public for everyone")
    access = Access(
        roles=frozenset(roles), fresh_otp=fresh_otp, during_first_login=during_first_login
    )

    def mark(view: F) -> F:
        view.fw_access = access  # type: ignore[attr-defined]
        return view

    return mark


ALL_ROLES: tuple[Role, ...] = tuple(Role)


def access_of(view: Callable[..., Any] | None) -> Access | None:
    return getattr(view, "fw_access", None)


def enforce() -> None:
    """``before_request``: apply the view's ``Access``, or deny (and audit the refusal)."""
    if request.endpoint is None:
        return  # Flask answers 404/405 itself
    access = access_of(current_app.view_functions.get(request.endpoint))
    if access is None:
        raise _refused(
            Refused.UNDECLARED,
            ForbiddenError("this endpoint declares no access rule and is closed"),
        )
    if access.public:
        return
    services = current_app.extensions["fw"]
    if access.device:
        _authenticate_device(services)
        return
    token = _session_token()
    now = services.clock()
    try:
        user, session = sessions.authenticate(g.db, token, now=now, config=services.config)
    except sessions.SessionEndedError as exc:
        # An ended session's token (stolen, perhaps): the refusal names its owner.
        raise _refused(Refused.SESSION_ENDED, exc, user=exc.user) from None
    except AuthenticationError as exc:
        raise _refused(Refused.SESSION, exc) from None
    g.user, g.session = user, session
    audit_ended_refusals(now)
    # The session's last use is recorded now, whatever the view does later,
    # so that idle expiry counts from the last request (not the last write).
    g.db.commit()
    if user.role not in {role.value for role in access.roles}:
        raise _refused(Refused.ROLE, ForbiddenError(f"role {user.role} may not do this"))
    if (user.must_change_password or not user.totp_enrolled) and not access.during_first_login:
        raise _refused(
            Refused.FIRST_LOGIN,
            ForbiddenError(
                "finish your first login: set a new password and enrol TOTP, then log in again"
            ),
        )
    if access.fresh_otp:
        if is_web_page() and request.method == "POST":
            # W3 first: a forged form must neither spend a code nor count as a failure.
            current_app.extensions["csrf"].protect()
        _confirm_with_fresh_code(user, session, services)


def is_web_page() -> bool:
    """Whether the request is for a web page: a route of ``WEB_BLUEPRINTS`` or nested in one."""
    return any(name in WEB_BLUEPRINTS for name in request.blueprints)


def _session_token() -> str:
    """The session token this route takes: the web cookie on pages, the bearer token elsewhere.

    W1 A web page (``WEB_BLUEPRINTS``) reads the ``SESSION_COOKIE`` only;
    every other route reads ``Authorization: Bearer`` only. A browser sends
    a cookie by itself, on requests another site makes it send: a cookie
    that opened an API route would make the API CSRF-able. The pages are
    protected by their CSRF tokens (``web``) and ``SameSite=Strict``.
    """
    if is_web_page():
        return request.cookies.get(SESSION_COOKIE, "")
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else ""


def _authenticate_device(services: Any) -> None:
    """A ``@device_route``: the request's device signature (D1-D6), or a 401 audited."""
    config = services.config
    try:
        authenticate_device(g.db, now=services.clock(), skew=config.device_request_skew)
    except DeviceRequestRefused as refused:
        g.db.rollback()
        raise _refused(
            refused.reason, AuthenticationError(str(refused)), device=refused.device_id
        ) from None
    g.db.commit()  # the nonce is spent and last_seen_at stands, whatever the view does


def _refused(
    reason: StrEnum, error: ServerError, *, user: User | None = None, device: str | None = None
) -> ServerError:
    """Audit this refusal, coalesced (``auth.refusals``), and commit; returns ``error``.

    Who: ``user``, else the request's authenticated user, else the device
    whose signature verified (``device:<id>``), else ``-``.
    """
    services = current_app.extensions["fw"]
    user = user if user is not None else g.get("user")
    who, role = (user.name, user.role) if user is not None else ("-", "-")
    if user is None and device is not None:
        who, role = f"device:{device}", "device"
    refusal = refusals.Refusal(
        action=Action.ACCESS_REFUSED,
        actor=who,
        role=role,
        source=request.remote_addr or "-",
        route=f"{request.method} {request.url_rule.rule if request.url_rule else request.path}",
        reason=reason.value,
        status=error.status,
        now=services.clock(),
    )
    for event in refusals.tally(g.db, refusal, window=services.config.refusal_audit_window):
        record(event)
    g.db.commit()
    return error


def audit_ended_refusals(now: datetime) -> None:
    """Audit the counts of refusal windows that have ended (C3), in this request's transaction."""
    window = current_app.extensions["fw"].config.refusal_audit_window
    for event in refusals.flush(g.db, now=now, window=window):
        record(event)


def _confirm_with_fresh_code(user: User, session: SessionToken, services: Any) -> None:
    """Consume the ``X-OTP`` code; a wrong one counts like a failed login (R9).

    Without the count, a stolen session token could guess confirmation codes
    at a sensitive endpoint without limit. Each wrong code is audited and
    counted against the person's name; at the limit the name is locked and
    every session of the person ends. A web page's form sends its code in
    the ``OTP_FIELD`` field instead of the header (a form sets no header).
    """
    web = is_web_page()
    code = request.form.get(OTP_FIELD, "").strip() if web else request.headers.get(OTP_HEADER, "")
    if not code:
        where = "the form's one-time code field" if web else f"the {OTP_HEADER} header"
        raise _refused(
            Refused.OTP_MISSING,
            AuthenticationError(f"this action needs a fresh one-time code in {where}"),
        )
    now = services.clock()
    try:
        otp.consume(g.db, user, code, now=now, box=secrets_box(), after_step=session.login_step)
    except otp.CodeRefusedError as refused:
        # R25: a replayed code counts like a wrong one, and is audited as a replay.
        locked_until = login.count_failure(g.db, user, now=now, config=services.config)
        detail = {"reason": refused.reason}
        if locked_until:
            detail["locked_until"] = locked_until.isoformat()
        replayed = isinstance(refused, otp.ReplayedCodeError)
        outcome = Outcome.REPLAY if replayed else Outcome.REFUSED
        record(
            request_event(Action.OTP_CONFIRM, object=request.path, outcome=outcome, detail=detail),
            commit=True,
        )
        raise
    # R25: the code is spent now, whatever the view does next: a view that refuses
    # and rolls its work back must not roll back the code's use with it (a refused
    # approval would otherwise leave the same code good for another try).
    g.db.commit()


def secrets_box() -> SecretBox:
    """The running app's TOTP secrets key (``ServerConfig.secrets_key_file``)."""
    return SecretBox.from_file(current_app.extensions["fw"].config.secrets_key_file)


def declared(views: Iterable[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """Views that declare no access (for a test that every route is covered)."""
    return [view for view in views if access_of(view) is None]
