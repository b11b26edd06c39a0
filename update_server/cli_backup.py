"""``fwserver backup`` and ``fwserver restore`` (R32, R61): thin over ``update_server.backup``.

Both are audited as the operator on the server's host (``cli:<login>``):
the backup in the running server's log (its archive's SHA-256, to compare
with ``sha256sum`` before a restore), the restore as the restored log's
newest entry. A refusal exits 1 with one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from update_server.app import Services, build_services
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.audit.recording import bind_sessions
from update_server.backup.archive import Manifest
from update_server.backup.errors import BackupError
from update_server.backup.make import make_backup
from update_server.backup.restore import Recorder, restore_backup
from update_server.cli_common import cli_services, command_clock, data_dir_option
from update_server.cli_users import operator_login
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader


def _actor() -> Actor:
    return Actor(f"cli:{operator_login()}"[:64], "operator", "local")


@click.command()
@data_dir_option
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive to write (a new file, outside the data directory).",
)
def backup(data_dir: Path, output: Path) -> None:
    """Write the server's state (database, repository, configuration, keys) to one archive.

    The database must be at this fwserver's schema (M3), as for every command:
    back up before installing a newer fwserver, then upgrade.
    """
    with cli_services(data_dir) as services:
        try:
            result = make_backup(services.config, output, now=services.clock())
        except (BackupError, OSError) as exc:
            _audit(services, "failure", {"archive": str(output), "reason": str(exc)[:200]})
            raise click.ClickException(f"backup failed, nothing written: {exc}") from None
        detail = {
            "archive": str(result.archive),
            "sha256": result.sha256,
            "schema": result.manifest.schema,
            "files": len(result.manifest.members),
        }
        _audit(services, "success", detail)
    click.echo(f"backup written: {result.archive}")
    click.echo(f"  sha256 {result.sha256} (audited; compare before restoring)")
    click.echo(f"  {len(result.manifest.members)} files, database schema {result.manifest.schema}")
    click.echo("  the token's PIN is not in it: keep hsm.pin offline, apart from the archive")
    for path in result.outside:
        click.echo(f"  not in the archive (outside the data directory): {path}", err=True)


def _audit(services: Services, outcome: str, detail: dict[str, Any]) -> None:
    with transaction(services.sessions) as db:
        event = audit_event(
            Action.SERVER_BACKUP,
            actor=_actor(),
            object="server",
            outcome=outcome,
            time=services.clock(),
            detail=detail,
        )
        append(db, event)


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@data_dir_option
@click.option(
    "--database-url",
    default="",
    help="An empty database for the restored server [SQLite in the new data dir for a"
    " SQLite backup; the archive's URL for a PostgreSQL one].",
)
@click.option(
    "--hsm-pin-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The token's user PIN (the backed-up server's hsm.pin, kept offline)"
    " [or FWSERVER_HSM_PIN].",
)
def restore(archive: Path, data_dir: Path, database_url: str, hsm_pin_file: Path | None) -> None:
    """Restore ARCHIVE into a new, empty data directory and database (checked first, atomic)."""
    pin = hsm_pin_file.read_text().strip() if hsm_pin_file is not None else None
    try:
        result = restore_backup(
            archive, data_dir, database_url=database_url, pin=pin, record=_record_restore(archive)
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {result.config.data_dir} from {archive}")
    click.echo(f"  made at {result.manifest.made_at}, database schema {result.manifest.schema}")
    click.echo("  check it: fwserver audit verify --data-dir " + str(result.config.data_dir))


def _record_restore(source: Path) -> Recorder:
    def record(config: ServerConfig, manifest: Manifest) -> None:
        services = build_services(
            config, clock=command_clock(), signer_loader=signer_loader(config)
        )
        bind_sessions(services.sessions, config, lambda: services.signer("audit"))
        detail = {"archive": source.name, "made_at": manifest.made_at, "schema": manifest.schema}
        try:
            with transaction(services.sessions) as db:
                event = audit_event(
                    Action.SERVER_RESTORE,
                    actor=_actor(),
                    object="server",
                    outcome="success",
                    time=services.clock(),
                    detail=detail,
                )
                append(db, event)
        finally:
            services.engine.dispose()

    return record
