"""What a backup or a restore refuses; the message says what to do."""

from __future__ import annotations


class BackupError(RuntimeError):
    """A backup or restore cannot be done as asked; nothing was changed."""


class ArchiveError(BackupError):
    """The archive is not one ``fwserver backup`` made, or was changed since (A2)."""
