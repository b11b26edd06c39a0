"""``fwserver``: set up, run and inspect the update server.

Commands are thin over library functions. Command groups that belong to one
concern live beside it (users, audit, repository, serve) and are registered
here by explicit import: a missing one is an import error at start.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from update_server.cli_audit import audit
from update_server.cli_backup import backup, restore
from update_server.cli_bundle import bundle
from update_server.cli_common import ErrorGroup, data_dir_option
from update_server.cli_db import db
from update_server.cli_deployments import deployment, fleet, group
from update_server.cli_devices import device, user_scope
from update_server.cli_repo import import_repo, renew, repo
from update_server.cli_sbom import sbom
from update_server.cli_serve import serve
from update_server.cli_status import status
from update_server.cli_users import user
from update_server.setup import init_data_dir
from update_server.tls import CA_CERT_FILE, TLS_DIR


@click.group(cls=ErrorGroup)
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
    for leftover in result.removed:
        click.echo(f"removed {leftover}, left by an interrupted 'fwserver init'", err=True)
    click.echo(f"initialised {result.config.data_dir}")
    ca = result.config.data_dir / TLS_DIR / CA_CERT_FILE
    click.echo(f"  TLS CA for devices and fwsign (--ca): {ca}")
    for role, uri in sorted(result.config.online_keys.items()):
        click.echo(f"  {role:<14} {uri}")
    if result.so_pin:
        click.echo(
            "security-officer PIN of the online token (shown once, store it offline):"
            f" {result.so_pin}"
        )


for _command in (user, audit, import_repo, renew, repo, serve, status, db, device, backup, restore):
    main.add_command(_command)
user.add_command(user_scope)
main.add_command(deployment)
main.add_command(group)
main.add_command(fleet)
main.add_command(sbom)
main.add_command(bundle)
