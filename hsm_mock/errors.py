"""Errors of the software HSM.

One base class, a few leaves. Messages say what was refused and, where it
helps, what to do; they never contain a PIN or key material. The CLI turns
them into a message on stderr and a non-zero exit status.
"""

from __future__ import annotations


class HSMError(Exception):
    """Base class of every error raised by ``hsm_mock``."""


class TokenError(HSMError):
    """The token directory is missing, malformed, already exists or cannot be written."""


class PinPolicyError(HSMError, ValueError):
    """A new PIN does not meet the PIN policy (length, SO and user PIN differ)."""


class PinIncorrectError(HSMError):
    """A PIN was wrong; ``remaining`` attempts are left before the token locks."""

    def __init__(self, message: str, *, remaining: int) -> None:
        super().__init__(message)
        self.remaining = remaining


class TokenLockedError(HSMError):
    """The token refuses every PIN: too many wrong ones were entered."""


class PurposeMismatchError(HSMError):
    """R47 "one key, one use": the key's purpose does not cover the payload."""


class PayloadRefusedError(HSMError):
    """The payload is not canonical JSON with a known ``_type``: nothing may sign it."""


class KeyNotFoundError(HSMError):
    """No key with this label is on the token."""


class KeyMismatchError(HSMError, ValueError):
    """The public key a caller expects is not the one the token holds under that label."""


class KeyIntegrityError(HSMError):
    """A key file was altered on disk: its sealed private key no longer opens."""


class UsageLogError(HSMError):
    """The usage log cannot be written, or its hash chain is broken at ``seq``."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class InvalidURIError(HSMError, ValueError):
    """A ``fwhsm:`` private key URI is malformed (also a ``ValueError``, as Signer expects)."""
