"""Errors of the repository core.

One base class, a few leaves. Each message says what was wrong and, where it
helps, what to do about it; the CLI and the server translate these into exit
codes and HTTP statuses at their boundary.
"""

from __future__ import annotations


class RepositoryError(Exception):
    """Base class of every error raised by ``repo_metadata``."""


class InvalidFieldError(RepositoryError, ValueError):
    """A value read from outside is malformed; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidMetadataError(RepositoryError):
    """Metadata breaks one of our strict rules; ``rule`` names which."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} [rule: {rule}]")
        self.rule = rule


class UpdateRejectedError(RepositoryError):
    """A proposed new version of a role may not replace the trusted one.

    ``rule`` is a stable identifier of the rule that failed (for logs, the
    audit trail and tests); the message explains it to a person.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} [rule: {rule}]")
        self.rule = rule
