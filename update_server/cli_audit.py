"""``fwserver audit``: check, export and checkpoint the audit log (R27, R28, R32, R61).

Thin commands over ``update_server.audit``:

* ``verify --data-dir D`` checks the stored log (streaming) against every
  signed checkpoint and the head anchored in the data directory (a cut
  tail); ``verify --export FILE [--key K]`` checks an export
  offline with the audit public key. Exit status 0 when intact, 1 otherwise
  (the first bad sequence number and why on stderr).
* ``export --data-dir D --output FILE`` signs the current head (unless
  ``--no-checkpoint``) and writes the log as JSON lines, atomically.
* ``checkpoint --data-dir D`` signs the current head now.

Exporting and signing are recorded in the log itself, as the operator's
actions. ``export`` and ``verify`` first append the refusal counts whose
window has ended (R27, ``auth.refusals`` C3), so that what they read holds
every refusal of a quiet server; otherwise ``verify`` only reads, so it can
run against a read-only copy (counts it cannot append there are named in
a warning). Reads use an engine that takes no write lock, so a long check
of a live SQLite database does not stall the server.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from securesystemslib.signer import Signer
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fwcommon.cli import warn
from update_server.audit.actions import Action
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.chain import Event
from update_server.audit.checkpoint import (
    AuditReport,
    checkpoint_now,
    verify_database,
)
from update_server.audit.errors import AuditError
from update_server.audit.export import atomic_output, verify_export, write_export
from update_server.audit.public_key import audit_public_key, load_public_key
from update_server.audit.store import append
from update_server.audit.vocabulary import Actor, audit_event
from update_server.auth import refusals
from update_server.cli_common import cli_services, command_now
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.db import make_engine, require_existing, transaction
from update_server.migrations import check_schema

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FWSERVER_DATA_DIR",
    help="The server's data directory.",
)


@click.group()
def audit() -> None:
    """Check, export and sign the tamper-evident audit log."""


@audit.command()
@data_dir_option
@click.option(
    "--export",
    "export_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Check this export file offline instead of the database.",
)
@click.option(
    "--key",
    "key_ref",
    help="Audit public key for --export: key file (JSON or PEM) or token URI "
    "[default: the data directory's audit key].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    *,
    data_dir: Path | None,
    export_file: Path | None,
    key_ref: str | None,
    as_json: bool,
) -> None:
    """Check the log's hash chain, signed checkpoints and anchored head; exit 1 if tampered with."""
    if export_file is not None:
        key = load_public_key(key_ref) if key_ref else audit_public_key(_config(data_dir))
        report = verify_export(export_file, key)
    else:
        config = _config(data_dir)
        unaudited = _audit_ended_refusals(config)
        with _reading(config) as session:
            key = audit_public_key(config)
            anchor = read_anchor(anchor_file(config.data_dir))
            every = config.audit_checkpoint_every
            report = verify_database(session, key, anchor=anchor, every=every)
        report = replace(report, warnings=(*report.warnings, *unaudited))
    _show(report, as_json=as_json)
    if not report.ok:
        ctx.exit(1)


@audit.command()
@data_dir_option
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The JSON lines file to write (replaced atomically).",
)
@click.option(
    "--checkpoint/--no-checkpoint",
    "sign_head",
    default=True,
    help="Sign the current head first, so the export is signed to its end [yes].",
)
def export(*, data_dir: Path | None, output: Path, sign_head: bool) -> None:
    """Write every entry and the latest signed checkpoint as JSON lines (backup)."""
    config, target = _config(data_dir), str(output.absolute())
    with _writing(config) as (factory, signer):
        with transaction(factory) as session:
            window = config.refusal_audit_window
            refusals.append_ended(session, now=command_now(), window=window)
            append(session, _event(Action.AUDIT_EXPORT, target, "success"))
            if sign_head:
                checkpoint_now(session, signer(), now=command_now())
        try:
            with _reading(config) as session, atomic_output(output) as out:
                summary = write_export(session, out)
        except (OSError, SQLAlchemyError) as exc:
            with transaction(factory) as session:
                detail = {"error": type(exc).__name__}
                append(session, _event(Action.AUDIT_EXPORT, target, "failure", detail))
            raise
    signed = f", signed up to entry {summary.checkpoint.seq}" if summary.checkpoint else ""
    click.echo(f"exported {summary.entries} entries to {output}{signed}")


@audit.command()
@data_dir_option
def checkpoint(*, data_dir: Path | None) -> None:
    """Sign the current head of the log with the audit key now."""
    with _writing(_config(data_dir)) as (factory, signer), transaction(factory) as session:
        append(session, _event(Action.AUDIT_CHECKPOINT, "audit_log", "success"))
        signed = checkpoint_now(session, signer(), now=command_now())
    click.echo(f"signed the head at entry {signed.seq}: {signed.head_hash} (key {signed.keyid})")


def _audit_ended_refusals(config: ServerConfig) -> tuple[str, ...]:
    """Append the refusal counts whose window has ended; a warning if they cannot be.

    Nothing is written when there are none, so a read-only copy stays readable.
    """
    now, window = command_now(), config.refusal_audit_window
    with _reading(config) as session:
        if not refusals.any_ended(session, now=now, window=window):
            return ()
    try:
        with _writing(config) as (factory, _signer), transaction(factory) as session:
            refusals.append_ended(session, now=now, window=window)
    except (OSError, SQLAlchemyError, AuditError) as exc:  # verify reports all the same
        return (
            f"refusal counts whose window has ended are not in the log ({type(exc).__name__}):"
            " check the log again where the server's database can be written",
        )
    return ()


def _config(data_dir: Path | None) -> ServerConfig:
    if data_dir is None:
        raise click.UsageError("give --data-dir (or FWSERVER_DATA_DIR)")
    if not (data_dir / CONFIG_FILE).is_file():
        raise AuditError(f"{data_dir} is not a server data directory: run 'fwserver init'")
    return ServerConfig.load(data_dir)


@contextmanager
def _writing(config: ServerConfig) -> Iterator[tuple[sessionmaker[Session], Callable[[], Signer]]]:
    """Sessions that append like the server's (checkpoint cadence, syslog)."""
    with cli_services(config.data_dir) as services:
        yield services.sessions, functools.cache(lambda: services.signer("audit"))


@contextmanager
def _reading(config: ServerConfig) -> Iterator[Session]:
    engine = _read_engine(config.database_url)
    try:
        check_schema(engine)  # M3
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


WALK_TIMEOUT = 3600.0  # seconds: a verify or export of years of entries


def _read_engine(url: str) -> Engine:
    require_existing(url)
    if url.startswith("sqlite"):
        # Not make_engine: its BEGIN IMMEDIATE would hold the write lock for
        # the whole walk. A plain SELECT reads one WAL snapshot and blocks no one.
        return create_engine(url, connect_args={"timeout": 30})
    # A walk of the whole log from the command line is no request: the
    # server's per-request bound (database_timeout) would cut a large one.
    return make_engine(url, timeout=WALK_TIMEOUT)


def _event(action: Action, target: str, outcome: str, detail: Any = None) -> Event:
    actor = Actor(_local_user(), "local", "local")
    return audit_event(
        action, actor=actor, object=target, outcome=outcome, time=command_now(), detail=detail
    )


def _local_user() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"local:uid{os.getuid()}"


def _show(report: AuditReport, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    elif report.ok:
        click.echo(report.summary())
    else:
        click.echo(report.summary(), err=True)
    for warning in report.warnings if not as_json else ():
        warn(warning)
