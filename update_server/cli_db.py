"""``fwserver db``: the database schema, where it is, and bringing it to this fwserver's.

The server refuses to run on a schema other than its own (M3 in
``update_server.migrations``). After installing a newer fwserver: stop the
server, back the database up, run ``fwserver db upgrade``, start the server.
"""

from __future__ import annotations

from pathlib import Path

import click

from update_server import migrations
from update_server.cli_common import data_dir_option, load_config
from update_server.db import make_engine

#: Seconds a migration may take (the server's per-request bound would cut a large one).
MIGRATION_TIMEOUT = 3600.0


@click.group()
def db() -> None:
    """See and upgrade the database schema (migrations)."""


@db.command()
@data_dir_option
def current(data_dir: Path) -> None:
    """Print the database's schema revision and the one this fwserver needs."""
    engine = make_engine(load_config(data_dir).database_url)
    try:
        with engine.connect() as connection:
            found = migrations.current(connection)
            problem = migrations.schema_problem(connection)
    finally:
        engine.dispose()
    click.echo(f"database schema: {found or 'none'}; this fwserver: {migrations.head()}")
    click.echo(f"  {problem}" if problem is not None else "  up to date")


@db.command()
@data_dir_option
def upgrade(data_dir: Path) -> None:
    """Bring the database schema to this fwserver's (stop the server and back up first).

    One transaction: a failure leaves the schema as it was. A database made
    before migrations is adopted only if its schema is exactly the baseline.
    """
    engine = make_engine(load_config(data_dir).database_url, timeout=MIGRATION_TIMEOUT)
    try:
        done = migrations.upgrade(engine)
    finally:
        engine.dispose()
    if done.adopted:
        click.echo(
            f"adopted a database made before migrations: its schema is the baseline"
            f" {migrations.BASELINE}"
        )
    if done.before != done.after:
        click.echo(f"database schema upgraded from {done.before or 'none'} to {done.after}")
    elif not done.adopted:
        click.echo(f"database schema already at {done.after}: nothing to do")
