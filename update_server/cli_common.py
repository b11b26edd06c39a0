"""What every ``fwserver`` command shares: its error boundary, data directory and clock.

Commands take the time from ``command_clock()``: the system clock, or the clock
their caller put in click's context object (a test's fixed clock, passed to
everything the test drives).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from fwcommon.cli import Failure, ToolGroup
from hsm_mock.errors import HSMError
from update_server.app import Services, build_services
from update_server.audit.errors import AuditError
from update_server.audit.recording import bind_sessions
from update_server.clock import Clock, system_clock
from update_server.config import CONFIG_FILE, ConfigError, ServerConfig
from update_server.db import DatabaseMissingError, transaction
from update_server.errors import ServerError
from update_server.keys import KeyConfigError, signer_loader
from update_server.migrations import SchemaError
from update_server.setup import SetupError


@dataclass(frozen=True)
class CommandClock:
    """Put in click's ``obj`` to run commands on another clock than the system's."""

    clock: Clock


def command_clock() -> Clock:
    """The running command's clock (``CommandClock`` in its context, else the system's)."""
    context = click.get_current_context(silent=True)
    given = context.find_object(CommandClock) if context is not None else None
    return given.clock if given is not None else system_clock


def command_now() -> datetime:
    return command_clock()()


_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    KeyConfigError,
    SetupError,
    SchemaError,
    DatabaseMissingError,
    AuditError,
    HSMError,
    OSError,
)


class ErrorGroup(ToolGroup):
    """``fwserver``'s root: expected errors become one line on stderr and exit status 1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, tool="fwserver", errors=(*_ERRORS, SQLAlchemyError), **kwargs)

    def failure(self, exc: Exception) -> Failure:
        if isinstance(exc, SQLAlchemyError):
            # The driver's own words; SQLAlchemy's text would quote parameters.
            cause = exc.orig if isinstance(exc, DBAPIError) else type(exc).__name__
            return Failure(f"database: {cause}")
        return super().failure(exc)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FWSERVER_DATA_DIR",
    required=True,
    help="The server's data directory.",
)


def load_config(data_dir: Path) -> ServerConfig:
    """The configuration of an existing data directory, or a clear error."""
    if not (data_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{data_dir} is not a server data directory: run 'fwserver init'")
    return ServerConfig.load(data_dir)


@contextmanager
def cli_services(data_dir: Path) -> Iterator[Services]:
    """What a command needs, built like the server's: database, clock, online keys.

    Audit entries appended through these sessions get the server's
    checkpoint cadence and syslog copy (audit.recording.bind_sessions).
    """
    config = load_config(data_dir)
    services = build_services(config, clock=command_clock(), signer_loader=signer_loader(config))
    bind_sessions(services.sessions, config, lambda: services.signer("audit"))
    try:
        yield services
    finally:
        services.engine.dispose()


@contextmanager
def database(data_dir: Path) -> Iterator[Session]:
    """One transaction on the server's database; a refusal becomes one line (its detail)."""
    try:
        with cli_services(data_dir) as services, transaction(services.sessions) as db:
            yield db
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None
