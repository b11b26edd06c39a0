"""``fwserver``: set up, run and inspect the update server.

Commands are thin over library functions. Command groups that belong to one
concern live beside it (users, audit, serve) and are attached here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hsm_mock.errors import HSMError
from update_server.app import Services, build_services
from update_server.audit.errors import AuditError
from update_server.audit.recording import bind_sessions
from update_server.clock import system_clock
from update_server.config import CONFIG_FILE, ConfigError, ServerConfig
from update_server.keys import KeyConfigError, signer_loader
from update_server.setup import SetupError, init_data_dir

_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    KeyConfigError,
    SetupError,
    AuditError,
    HSMError,
    OSError,
)


class _Group(click.Group):
    """Expected errors become one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except SQLAlchemyError as exc:
            # The driver's own words; SQLAlchemy's text would quote parameters.
            cause = exc.orig if isinstance(exc, DBAPIError) else type(exc).__name__
            click.echo(f"error: database: {cause}", err=True)
            ctx.exit(1)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FWSERVER_DATA_DIR",
    required=True,
    help="The server's data directory (env FWSERVER_DATA_DIR).",
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
    services = build_services(config, clock=system_clock, signer_loader=signer_loader(config))
    bind_sessions(services.sessions, config, lambda: services.signer("audit"))
    try:
        yield services
    finally:
        services.engine.dispose()


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr.")
def main(verbose: int) -> None:
    """Run the firmware distribution server."""
    logging.basicConfig(level=logging.WARNING - 10 * verbose, stream=sys.stderr)


@main.command()
@data_dir_option
@click.option("--database-url", default="", help="SQLAlchemy URL [SQLite in the data dir].")
def init(data_dir: Path, database_url: str) -> None:
    """Create the data directory, database and online keys (mock HSM)."""
    result = init_data_dir(data_dir, database_url=database_url)
    click.echo(f"initialised {data_dir}")
    for role, uri in sorted(result.config.online_keys.items()):
        click.echo(f"  {role:<14} {uri}")
    if result.so_pin:
        click.echo(
            "security-officer PIN of the online token (shown once, store it offline):"
            f" {result.so_pin}"
        )


def _attach_commands() -> None:
    """Attach the commands that live beside their concern (top-level ones only)."""
    import importlib  # noqa: PLC0415

    for module_name, names in _ATTACHED.items():
        try:
            module = importlib.import_module(f"update_server.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"update_server.{module_name}":
                raise
            continue
        for name in names:
            command = getattr(module, name, None)
            if isinstance(command, click.Command):
                main.add_command(command)


_ATTACHED = {
    "cli_users": ("user",),
    "cli_audit": ("audit",),
    "cli_repo": ("import_repo", "renew", "repo"),
    "cli_serve": ("serve",),
}
_attach_commands()
