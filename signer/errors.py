"""Errors of the offline signer.

``SignerError`` is what every ``fwsign`` command turns into a one-line
message and exit status 1; the repository core's errors are shown the same
way. Messages say what was wrong and what to do.
"""

from __future__ import annotations


class SignerError(Exception):
    """A signing operation cannot go ahead; nothing was written."""


class KeyNotAuthorizedError(SignerError):
    """The key given is not one the role's delegator names."""
