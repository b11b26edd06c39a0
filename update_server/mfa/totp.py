"""TOTP (RFC 6238) as the server uses it: 6 digits, 30 s steps, window +/-1.

Pure: the secret, the code and ``now`` are values; pyotp computes the codes
and compares them in constant time. This module only says *which* time step
a code matches; refusing a step used before is the caller's job
(``auth.otp.consume``, R25 anti-replay), because that needs the database.
"""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "fwupdate"
DIGITS = 6
INTERVAL = 30
#: Steps accepted either side of the current one (clock drift, typing time).
WINDOW = 1
#: 32 base32 characters: 160 bits, RFC 4226's recommended secret length.
SECRET_CHARS = 32


def new_secret() -> str:
    """A fresh random base32 secret (pyotp draws from ``secrets``)."""
    return str(pyotp.random_base32(length=SECRET_CHARS))


def provisioning_uri(secret: str, *, name: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as a QR code or typed)."""
    return str(_totp(secret).provisioning_uri(name=name, issuer_name=ISSUER))


def step_at(now: datetime) -> int:
    """The time step (counter) that ``now`` falls in."""
    return int(_aware(now).timestamp()) // INTERVAL


def match(secret: str, code: str, *, now: datetime) -> int | None:
    """The time step within the window whose code is ``code``, or None.

    Anything but exactly six ASCII digits is refused before any comparison.
    """
    if not well_formed(code):
        return None
    totp = _totp(secret)
    current = step_at(now)
    found = None
    # Compare against every step of the window, in constant time each, so the
    # time taken does not say which step matched (or whether one did).
    for step in range(current - WINDOW, current + WINDOW + 1):
        if pyotp.utils.strings_equal(code, totp.generate_otp(step)) and found is None:
            found = step
    return found


def code_at(secret: str, step: int) -> str:
    """The code of ``step`` (for tests and for the first-login walkthrough)."""
    return str(_totp(secret).generate_otp(step))


def well_formed(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now
