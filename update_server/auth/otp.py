"""TOTP codes checked against the database: each time step is used once.

The pure check (which step a code matches) is ``mfa.totp``; this module adds
what needs the database. A step is recorded in ``UsedTotp``, whose primary
key (user, step) makes reuse impossible even for two requests racing on two
workers: the second insert fails, inside a SAVEPOINT so the request's own
transaction carries on (R25 anti-replay). The row is part of the request's
transaction: the code is spent when that transaction commits, so a view
that takes a fresh code commits its outcome (success, or the audited
refusal).

TOTP secrets are kept sealed (``mfa.secretbox``) and bound to the user's id
and name, so a sealed secret moved to another row does not open.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server.errors import AuthenticationError
from update_server.mfa import totp
from update_server.mfa.secretbox import SecretBox, SecretBoxError
from update_server.models import UsedTotp, User

logger = logging.getLogger(__name__)

REFUSED = (
    "one-time code refused: enter the current code from your authenticator app;"
    " each code works once, and not the one used to log in"
)


def consume(
    db: Session,
    user: User,
    code: str,
    *,
    now: datetime,
    after_step: int = 0,
    box: SecretBox | None = None,
) -> int:
    """Accept ``code`` once for ``user`` and return its time step, or raise.

    The step must be later than ``after_step`` (a sensitive action needs a
    code not used for the login). Raises ``AuthenticationError``. ``box``
    defaults to the running app's secrets key.
    """
    secret = open_secret(user, box or app_box())
    step = totp.match(secret, code, now=now) if secret is not None else None
    if step is None or step <= after_step:
        raise AuthenticationError(REFUSED)
    try:
        with db.begin_nested():
            db.add(UsedTotp(user_id=user.id, step=step, used_at=now))
            db.flush()
    except IntegrityError:
        # R25: this step was used before, possibly by a request racing us.
        raise AuthenticationError(REFUSED) from None
    return step


def new_secret(user: User, box: SecretBox) -> str:
    """Give ``user`` a new (not yet confirmed) secret; returns it in clear, once."""
    secret = totp.new_secret()
    user.totp_secret = box.seal(secret.encode(), context=secret_context(user))
    user.totp_enrolled = False
    return secret


def open_secret(user: User, box: SecretBox) -> str | None:
    """The user's secret in clear, or None if there is none or it does not open."""
    if user.totp_secret is None:
        return None
    try:
        return box.open(user.totp_secret, context=secret_context(user)).decode()
    except SecretBoxError as exc:
        logger.warning("TOTP secret of user id %s does not open: %s", user.id, exc)
        return None


def secret_context(user: User) -> bytes:
    """Associated data binding a sealed secret to its row (id and name)."""
    if user.id is None:
        raise ValueError("flush the user before sealing a secret for it")
    return f"fwupdate/totp/v1/{user.id}/{user.name}".encode()


def app_box() -> SecretBox:
    """The secrets key of the running app (``ServerConfig.secrets_key_file``)."""
    from flask import current_app  # noqa: PLC0415 - only views reach this default

    return SecretBox.from_file(current_app.extensions["fw"].config.secrets_key_file)
