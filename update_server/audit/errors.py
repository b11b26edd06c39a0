"""Errors of the audit log. Messages say what is wrong and what to do; they
never quote a secret. The CLI and the views translate them at their edge."""

from __future__ import annotations


class AuditError(Exception):
    """Base of every audit error."""


class CheckpointError(AuditError):
    """A checkpoint cannot be made, or one does not verify with the audit key."""


class ExportFormatError(AuditError):
    """An export file is not in the format ``fwserver audit export`` writes."""


class AnchorError(AuditError):
    """The head of the log could not be anchored outside the database.

    Fail closed (R27, R28): the action being recorded is refused, or, when
    its transaction already committed, answered as a failure, and every
    later action is refused until anchoring works again.
    """
