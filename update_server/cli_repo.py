"""``fwserver import``, ``renew``, ``repo status``, ``repo sweep``: the repository.

Thin commands over ``publication``: each loads the configuration, does one
thing, audits it like the HTTP side would, and prints a short summary. A
refusal is one line on stderr and exit status 1.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from fwcommon.cli import warn
from update_server import audit
from update_server.app import Services
from update_server.audit import Actor, audit_event
from update_server.audit.actions import Action
from update_server.cli_common import cli_services, command_now, data_dir_option, load_config
from update_server.config import ServerConfig
from update_server.db import after_commit_error, commit_checked
from update_server.freeze import state as freeze_state
from update_server.freeze.errors import FrozenError
from update_server.publication.bootstrap import ImportResult, import_repository
from update_server.publication.errors import PublicationError
from update_server.publication.renewal import due_roles, renew_at, renew_if_due
from update_server.publication.repository import OnlineRepository
from update_server.publication.status import published_status
from update_server.publication.sweep import sweep
from update_server.tls import TlsError, expiry_warnings, served_tls, status_line


def _cli_actor() -> Actor:
    return Actor("fwserver", "cli", "localhost")


def _fail(exc: PublicationError) -> click.ClickException:
    return click.ClickException(f"{exc.message} [rule: {exc.rule}]")


@click.command("import")
@data_dir_option
@click.option(
    "--targets-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Where the signed firmware files are (DIR/<target path> or DIR/<file name>);"
    " each is checked against its signed length and hashes and published too.",
)
@click.option(
    "--allow-missing-files",
    is_flag=True,
    help="Publish even if signed targets have no file (devices cannot download them"
    " until fwsign publish uploads them).",
)
@click.argument("repo_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def import_repo(
    data_dir: Path, targets_dir: Path | None, allow_missing_files: bool, repo_dir: Path
) -> None:
    """Verify the repository fwsign made in REPO_DIR and publish it (once).

    Every signed target needs its file, from --targets-dir: without one the
    import is refused and nothing is published, unless --allow-missing-files.
    """
    with cli_services(data_dir) as services:
        result = _import(
            services, repo_dir, targets_dir=targets_dir, allow_missing_files=allow_missing_files
        )
    click.echo(f"imported root v{result.root}, {len(result.roles)} targets role(s)")
    click.echo(f"published snapshot v{result.snapshot}, timestamp v{result.timestamp}")
    if result.targets_stored:
        click.echo(f"published the file of {len(result.targets_stored)} signed target(s)")
    if result.targets_without_files:
        warn(
            f"{len(result.targets_without_files)} signed target(s) have no file on"
            " the server; devices cannot download them until 'fwsign publish' uploads them:"
        )
        for path in result.targets_without_files:
            click.echo(f"  {path}", err=True)


@click.command("renew")
@data_dir_option
@click.option("--force", is_flag=True, help="Renew snapshot and timestamp even if not due.")
def renew(data_dir: Path, force: bool) -> None:
    """Sign new snapshot/timestamp if due (the server also does this by itself)."""
    with cli_services(data_dir) as services:
        try:
            renewed = renew_if_due(services, services.clock(), force=force)
        except PublicationError as exc:
            raise _fail(exc) from None
    click.echo(f"renewed {', '.join(renewed)}" if renewed else "nothing due")


@click.group("repo")
def repo() -> None:
    """Inspect the published repository; tidy uploads in progress."""


@repo.command("status")
@data_dir_option
def status_command(data_dir: Path) -> None:
    """Versions and expiries of the published roles, when renewal is due, and TLS.

    The TLS line says until when the served certificate and its CA are good;
    the warnings are those of ``serve --check`` (a CA a year before it
    expires, the served certificate 30 days before). Nothing is renewed here.
    """
    config = load_config(data_dir)
    now = command_now()
    repo = OnlineRepository(config.repository_dir, now=now)
    try:
        status: dict[str, Any] = published_status(repo)
    except PublicationError as exc:
        raise _fail(exc) from None
    lines = _bins_by_line(repo)
    bins = {name for names in lines.values() for name in names}
    for role, info in status["roles"].items():
        if role in bins:
            continue
        click.echo(f"{role:<24} v{info['version']:<6} expires {info['expires']}")
        listed = [status["roles"][name] for name in lines.get(role, ()) if name in status["roles"]]
        if listed:
            versions = sorted({entry["version"] for entry in listed})
            span = f"v{versions[0]}" if len(versions) == 1 else f"v{versions[0]}-v{versions[-1]}"
            first = min(entry["expires"] for entry in listed)
            click.echo(f"  {len(listed)} hashed bins        {span:<7} first expiry {first}")
    due = due_roles(repo, now, fraction=config.renew_at_fraction)
    for role in ("snapshot", "timestamp"):
        info = status[role]
        when = renew_at(repo, role, config.renew_at_fraction).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = "renewal due" if role in due else f"renewed from {when}"
        click.echo(f"{role:<24} v{info['version']:<6} expires {info['expires']} ({state})")
    _tls_status(config, now)


def _tls_status(config: ServerConfig, now: datetime) -> None:
    """T5 (``tls.py``) where operators look; a TLS problem is a warning, not a failure."""
    try:
        files = served_tls(config, now=now)
    except TlsError as exc:
        warn(f"TLS: {exc}")
        return
    click.echo(status_line(files, now=now))
    for warning in expiry_warnings(files, now=now):
        warn(warning)


def _bins_by_line(repo: OnlineRepository) -> dict[str, list[str]]:
    """Each product line with hashed bins, and its bins (one summary line in ``repo status``)."""
    lines = {}
    for line, signed in repo.walk_named_roles():
        succinct = signed.delegations.succinct_roles if signed.delegations else None
        if succinct is not None:
            lines[line] = list(succinct.get_roles())
    return lines


@repo.command("sweep")
@data_dir_option
def sweep_command(data_dir: Path) -> None:
    """Expire uploads left open too long, remove staging (the server also does this)."""
    with cli_services(data_dir) as services:
        try:
            swept = sweep(services, now=services.clock(), wait=60.0)
        except PublicationError as exc:
            raise _fail(exc) from None
    lifetime = services.config.upload_lifetime
    click.echo(f"expired {len(swept.expired)} upload(s) open longer than {for_people(lifetime)}")
    for upload_id in swept.expired:
        click.echo(f"  release:{upload_id}")
    click.echo(f"removed {len(swept.removed)} staging director(ies)")


_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def for_people(duration: timedelta) -> str:
    """``duration`` as a person says it: ``1 day``, ``2 hours``, ``1 hour 30 minutes``."""
    left = int(duration.total_seconds())
    parts = []
    for unit, seconds in _UNITS:
        count, left = divmod(left, seconds)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def _import(
    services: Services, repo_dir: Path, *, targets_dir: Path | None, allow_missing_files: bool
) -> ImportResult:
    """Import with its audit entry committed just before the commit point."""
    now = services.clock()
    db = services.sessions()
    try:
        # Freeze F3: held (FOR SHARE) until the commit before the timestamp is published.
        freeze_state.refuse_if_frozen(db)
        entry = audit_event(
            Action.PUBLISH,
            actor=_cli_actor(),
            object="repository:import",
            outcome="success",
            time=now,
            detail={
                "directory": str(repo_dir),
                "targets_dir": str(targets_dir) if targets_dir else None,
                "allow_missing_files": allow_missing_files,
            },
        )
        audit.append(db, entry)
        result = import_repository(
            services.config,
            services.signer,
            repo_dir,
            now,
            before_timestamp=db.commit,
            targets_dir=targets_dir,
            allow_missing_files=allow_missing_files,
        )
    except FrozenError as frozen:
        db.rollback()
        _audit_refusal(services, Action.PUBLISH, "repository:import", "freeze-F3", frozen.detail)
        raise click.ClickException(frozen.detail) from None
    except PublicationError as exc:
        db.rollback()
        _audit_refusal(services, Action.PUBLISH, "repository:import", exc.rule, exc.message)
        raise _fail(exc) from None
    finally:
        unanchored = after_commit_error(db)  # R27/R28: imported, but not reported done
        db.close()
    if unanchored is not None:
        raise unanchored
    return result


def _audit_refusal(services: Services, action: Action, obj: str, rule: str, reason: str) -> None:
    db = services.sessions()
    try:
        audit.append(
            db,
            audit_event(
                action,
                actor=_cli_actor(),
                object=obj,
                outcome="refused",
                time=services.clock(),
                detail={"rule": rule, "reason": reason[:500]},
            ),
        )
        commit_checked(db)
    finally:
        db.close()
