"""Errors of the alerts package."""

from __future__ import annotations

from update_server.config import ConfigError


class AlertError(Exception):
    """Base of the alerts' errors."""


class AlertConfigError(AlertError, ConfigError):
    """A webhook cannot be used as configured; the message says what to fix."""
