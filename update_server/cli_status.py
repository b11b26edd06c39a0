"""``fwserver status``: the server's status on its own host (R38), for people and monitors.

Thin over ``observability.status``: the same object ``GET /api/v1/status``
answers, read from the data directory and the database, printed as lines
(or as JSON with ``--json``), warnings on stderr. Nothing is changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fwcommon.cli import warn
from update_server.cli_common import cli_services, data_dir_option
from update_server.db import transaction
from update_server.observability.status import server_status

#: The exit status: ready and nothing to warn about, not ready, ready with warnings.
OK, NOT_READY, WARNINGS = 0, 2, 3
#: Delegated roles listed one by one; past that, counted (a line may have 2,048 bins).
LISTED_DELEGATIONS = 8
TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")


@click.command("status")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(data_dir: Path, as_json: bool) -> None:
    """Versions, mode, readiness, keys, metadata expiries, fleet, deployments, alerts.

    The same as GET /api/v1/status, read from DATA_DIR and its database.
    Warnings (a readiness check failed, metadata expired or expiring, a
    renewal overdue) go to stderr. Exit status, for monitoring: 0 ready
    with nothing to warn about; 2 not ready (database, repository or
    online keys: see the warnings); 3 ready, with warnings; 1 the status
    could not be read at all (no data directory, a configuration error,
    a database that does not open or is at another schema).
    """
    with cli_services(data_dir) as services, transaction(services.sessions) as db:
        report = server_status(services, db)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    for line in report["warnings"]:
        warn(line)
    raise SystemExit(exit_status(report))


def exit_status(report: dict[str, Any]) -> int:
    if not report["ready"]["ready"]:
        return NOT_READY
    return WARNINGS if report["warnings"] else OK


def _print(report: dict[str, Any]) -> None:
    server, mode, ready = report["server"], report["mode"], report["ready"]
    click.echo(
        f"fwserver {server['version']}, database schema {server['schema']}"
        f" (this fwserver needs {server['schema_expected']})"
    )
    if mode["mode"] == "frozen":
        click.echo(f"mode: FROZEN since {mode['since']} by {mode['frozen_by']}: {mode['reason']}")
    else:
        click.echo("mode: normal")
    failed = [check for check, state in ready["checks"].items() if state != "ok"]
    click.echo("ready: yes" if ready["ready"] else f"ready: NO ({', '.join(failed)} failed)")
    click.echo("online keys:")
    for role, key in report["online_keys"].items():
        click.echo(f"  {role:<14} {_key_line(key)}")
    _print_metadata(report["metadata"]["roles"])
    _print_fleet(report["fleet"])
    _print_deployments(report["deployments"])
    _print_alerts(report["alerts"])


def _key_line(key: dict[str, Any]) -> str:
    if "error" in key:
        return f"does not load: {key['error']}"
    trusted = key.get("trusted_by_root")
    note = "" if trusted is None else (" (trusted by root)" if trusted else " (NOT in root)")
    return f"keyid {key['keyid']}{note}"


def _print_metadata(roles: dict[str, dict[str, Any]]) -> None:
    if not roles:
        click.echo("metadata: none published ('fwserver import')")
        return
    click.echo("metadata:")
    delegated = sorted((name for name in roles if name not in TOP_LEVEL), key=_expiry(roles))
    for name in [*(r for r in TOP_LEVEL if r in roles), *delegated[:LISTED_DELEGATIONS]]:
        info = roles[name]
        renew = f" (renewed from {info['renew_at']})" if "renew_at" in info else ""
        click.echo(f"  {name:<24} v{info['version']:<6} expires {info['expires']}{renew}")
    if len(delegated) > LISTED_DELEGATIONS:
        more = len(delegated) - LISTED_DELEGATIONS
        click.echo(f"  and {more} more delegated roles, expiring later")


def _expiry(roles: dict[str, dict[str, Any]]) -> Any:
    return lambda name: (roles[name]["expires"], name)


def _print_fleet(fleet: dict[str, Any]) -> None:
    states = ", ".join(f"{state} {count}" for state, count in fleet["by_state"].items() if count)
    click.echo(f"fleet: {fleet['devices']} device(s)" + (f": {states}" if states else ""))
    for title, key in (("by model", "by_model"), ("by running version", "by_running_version")):
        counts = ", ".join(f"{name} {count}" for name, count in sorted(fleet[key].items()))
        if counts:
            click.echo(f"  accepted, {title}: {counts}")


def _print_deployments(deployments: list[dict[str, Any]]) -> None:
    click.echo(f"deployments in progress: {len(deployments) or 'none'}")
    for row in deployments:
        started = sum(wave["started"] for wave in row["waves"])
        counts = ", ".join(f"{name} {n}" for name, n in row["statuses"].items() if n)
        click.echo(
            f"  {row['id']:>5} {row['state']:<18} {row['target_path']}: waves {started}"
            f"/{len(row['waves'])}" + (f"; {counts}" if counts else "")
        )


def _print_alerts(alerts: dict[str, Any]) -> None:
    if not alerts["webhooks"]:
        click.echo("alert webhooks: none configured (alerts go to syslog only)")
        return
    click.echo(f"alert delivery backlog: {alerts['undelivered']} undelivered")
    for hook in alerts["webhooks"]:
        line = f"  {hook['webhook']}: {hook['undelivered']} undelivered"
        if hook["oldest"] is not None:
            line += f", oldest {hook['oldest']}"
        if hook["last_error"]:
            line += f", last error: {hook['last_error']}"
        click.echo(line)
