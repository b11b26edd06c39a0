"""Errors of the device client.

Each refusal carries the ``EventType`` it is logged as, so that the event
log, the status and the exit code all say the same thing.
"""

from __future__ import annotations

from client.events import EventType


class ClientError(Exception):
    """Base of every error the client reports."""

    event = EventType.ERROR

    def __init__(self, message: str, *, event: EventType | None = None) -> None:
        super().__init__(message)
        if event is not None:
            self.event = event


class ProvisioningError(ClientError):
    """The state directory is missing, not provisioned, or inconsistent."""


class UpdateRefusedError(ClientError):
    """An update was refused; ``event`` names the attack or reason."""


class InstallError(ClientError):
    """Writing or checking a slot failed; the running firmware is untouched."""


class FailsafeError(ClientError):
    """The device is in failsafe mode: only a signed recovery may change it."""

    event = EventType.FAILSAFE_REFUSED
