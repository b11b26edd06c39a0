"""TOTP (RFC 6238) as the server uses it: 6 digits, 30 s steps, window +/-1.

Pure: the secret, the code, ``now`` and the last accepted step are values;
pyotp computes the codes and compares them in constant time. The rules:

- T1: a secret is 32 to 128 characters of RFC 4648 base32 (A-Z, 2-7), a
  whole number of bytes (a multiple of 8 characters), no padding: at
  least 160 bits, RFC 4226's recommendation. Every function that takes a
  secret refuses any other with ``TotpSecretError``, so a short, mistyped
  or damaged secret is never used as stored.
- T2: a code is exactly six ASCII digits, refused before any comparison.
- T3 (R25 anti-replay, OWASP ASVS 2.8.4): ``check`` accepts a code only for
  a time step later than the last one accepted for the person. A right
  code of that step or an earlier one is ``REPLAYED``: it was used, or
  seen, before (a leaked code), which is not the same event as a wrong
  one. Holding the last step across workers is the caller's job
  (``auth.otp.consume``), because that needs the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pyotp

ISSUER = "fwupdate"
DIGITS = 6
INTERVAL = 30
#: Steps accepted either side of the current one (clock drift, typing time).
WINDOW = 1
#: 32 base32 characters: 160 bits, RFC 4226's recommended secret length.
SECRET_CHARS = 32
MAX_SECRET_CHARS = 128
_BASE32 = re.compile(r"[A-Z2-7]+")


class TotpSecretError(ValueError):
    """A TOTP secret that must not be used (T1); the message says what is wrong."""


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    #: A right code of a step not later than the last accepted one (T3).
    REPLAYED = "replayed"
    WRONG = "wrong"


@dataclass(frozen=True)
class CodeCheck:
    verdict: Verdict
    #: The matched time step (None for a wrong code).
    step: int | None


def new_secret() -> str:
    """A fresh random base32 secret (pyotp draws from ``secrets``)."""
    return check_secret(str(pyotp.random_base32(length=SECRET_CHARS)))


def check_secret(secret: str) -> str:
    """``secret`` if T1 holds, else ``TotpSecretError`` (the secret is never quoted)."""
    if not SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS or len(secret) % 8:
        raise TotpSecretError(
            f"a TOTP secret must be {SECRET_CHARS} to {MAX_SECRET_CHARS} base32 characters,"
            f" a multiple of 8 (this one has {len(secret)}): enrol TOTP again"
        )
    if _BASE32.fullmatch(secret) is None:
        raise TotpSecretError(
            "a TOTP secret must be base32 (A-Z and 2-7, no padding): enrol TOTP again"
        )
    return secret


def check(secret: str, code: str, *, now: datetime, last_step: int) -> CodeCheck:
    """Whether ``code`` is accepted now, after ``last_step`` was (T3)."""
    step = match(secret, code, now=now)
    if step is None:
        return CodeCheck(Verdict.WRONG, None)
    return CodeCheck(Verdict.ACCEPTED if step > last_step else Verdict.REPLAYED, step)


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
    return pyotp.TOTP(check_secret(secret), digits=DIGITS, interval=INTERVAL)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now
