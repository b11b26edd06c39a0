"""Refusals of the failsafe freeze, as the server's HTTP errors (``rules`` F1-F4)."""

from __future__ import annotations

from update_server.errors import BadRequestError, ConflictError, ForbiddenError, LockedError


class FrozenError(LockedError):
    """F3: a change the freeze stops (publication, authorization, deployment): 423."""


class AlreadyFrozenError(ConflictError):
    """F1: the system is frozen already."""


class NotFrozenError(ConflictError):
    """F2: there is no freeze to leave."""


class SameOfficerError(ConflictError):
    """F2: the pending vote to leave is this officer's own; another officer must vote."""


class NotOfficerError(ForbiddenError):
    """F1, F2: only a security officer enters or leaves the freeze."""


class ReasonError(BadRequestError):
    """F1: the reason is missing, too long, or holds control characters."""
