"""TOTP codes checked against the database: each time step is used once.

Interface fixed here; implemented by the MFA work (see mfa/totp.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from update_server.models import User


def consume(db: Session, user: User, code: str, *, now: datetime, after_step: int = 0) -> int:
    """Accept ``code`` once for ``user`` and return its time step, or raise.

    The step must be later than ``after_step`` (a sensitive action needs a
    code not used for the login). Raises ``AuthenticationError``.
    """
    raise NotImplementedError
