"""Errors of the update server, and their HTTP form (RFC 9457 problem+json).

Views raise ``ServerError`` leaves; one error handler turns them into a JSON
problem with a message a person can act on. Nothing else reaches a client:
an unexpected exception becomes a generic 500 with no traceback.
"""

from __future__ import annotations

from typing import Any


class ServerError(Exception):
    """Base of every error the server reports to a client."""

    status = 500
    title = "Internal server error"

    def __init__(self, detail: str, *, retry_after: int | None = None, **extra: Any) -> None:
        """``retry_after``: seconds after which the same request may succeed (a busy
        lock or database), sent as ``Retry-After``; None when retrying is no answer."""
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.retry_after = retry_after


class BadRequestError(ServerError):
    status = 400
    title = "Bad request"


class AuthenticationError(ServerError):
    """Login failed; the message never says which factor was wrong."""

    status = 401
    title = "Authentication failed"


class ForbiddenError(ServerError):
    status = 403
    title = "Forbidden"


class NotFoundError(ServerError):
    status = 404
    title = "Not found"


class ConflictError(ServerError):
    status = 409
    title = "Conflict"


class GoneError(ServerError):
    """The resource existed and is closed for good (an expired upload)."""

    status = 410
    title = "Gone"


class PayloadTooLargeError(ServerError):
    status = 413
    title = "Payload too large"


class UnprocessableError(ServerError):
    """A well-formed request whose content is refused (e.g. a bad signature)."""

    status = 422
    title = "Unprocessable content"


class LockedError(ServerError):
    status = 423
    title = "Locked"


class TooManyRequestsError(ServerError):
    status = 429
    title = "Too many requests"


class ServiceUnavailableError(ServerError):
    status = 503
    title = "Service unavailable"


class InsufficientStorageError(ServerError):
    """The server's disk (or its database's) is full: nothing was changed."""

    status = 507
    title = "Insufficient storage"


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The body of an ``application/problem+json`` response."""
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
