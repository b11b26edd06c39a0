"""Alembic's environment: run on the connection the caller opened (``migrations._config``).

Online only: the server upgrades the database it is configured with, inside
the caller's transaction (M4). There is no ``alembic.ini`` and no offline SQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from update_server.db import table_metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("fwserver migrations run on a connection: use update_server.migrations")
context.configure(
    connection=connection,
    target_metadata=table_metadata(),
    compare_type=True,
    # SQLite alters a table by copying it; later migrations use batch_alter_table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
