"""Errors of publication, before they become HTTP statuses in ``views``.

Each carries a stable ``rule`` (for the audit trail, tests and the client)
and a message a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from update_server.storage import storage_failure


class PublicationError(Exception):
    """Base of every publication error; ``rule`` names what failed."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class RejectedError(PublicationError):
    """Uploaded metadata or bytes are refused (HTTP 422)."""


class TooLargeError(PublicationError):
    """More bytes than allowed: the signed length or a size limit (HTTP 413)."""


class StaleError(PublicationError):
    """The trusted state moved or a target is missing: rebuild or finish (HTTP 409)."""


class ExpiredError(PublicationError):
    """The upload stayed open past ``upload_lifetime``: start a new one (HTTP 410)."""


class BusyError(PublicationError):
    """Another publication holds the lock for too long (HTTP 503)."""


class NotInitialisedError(PublicationError):
    """No repository is published yet: run ``fwserver import`` (HTTP 503)."""


class BrokenRepositoryError(PublicationError):
    """The published files are inconsistent or an online key does not fit (HTTP 500)."""


class UnknownReleaseError(PublicationError):
    """No such upload session of this user (HTTP 404)."""


class NotAllowedError(PublicationError):
    """The uploader's role may not change this role (HTTP 403)."""


class StorageFullError(PublicationError):
    """The disk, a quota or a file-size limit refused a write (HTTP 507); undone."""


class StorageReadOnlyError(PublicationError):
    """A directory the server writes is read-only (HTTP 503); undone."""


@contextmanager
def storage_refusals(what: str) -> Iterator[None]:
    """Within the block, a write the disk refuses becomes a ``StorageFullError`` or
    ``StorageReadOnlyError``; every other ``OSError`` passes unchanged.

    The writer inside has already undone its work (temporary files removed,
    the switch rolled back) when the exception leaves it.
    """
    try:
        yield
    except OSError as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        kind = StorageFullError if failure == "full" else StorageReadOnlyError
        raise kind(
            f"storage-{failure}",
            f"{what}: the server's storage is {failure}, nothing was changed;"
            " tell the administrator, then try again",
        ) from exc
