"""``fwserver serve``: run the server under gunicorn with TLS (attached by ``cli``).

- U1 (R6) The server never runs as root: ``fwserver serve`` (``--check``
  too, which may renew the certificate) run with effective user id 0 exits
  1 with what to do, before it reads or opens anything, so no file in the
  data directory (database, -wal/-shm, TLS key) is made root's. A flaw in a
  server that faces the network must not hand over the machine. The
  refusal is not audited: auditing would open the database as root.
- U2 There is no flag to serve as root anyway: the deployment's systemd unit
  runs it as its own user (``deploy/systemd/fwserver.service``), and by
  hand ``runuser -u fwupdate -- fwserver serve ...`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from fwcommon.cli import warn
from update_server.cli_common import command_now, data_dir_option
from update_server.config import ConfigError, ServerConfig
from update_server.serve import ServeError, check_port, describe_tls, prepare, run
from update_server.tls import TlsError

#: The user the deployment runs the server as (deploy/systemd, deploy/Dockerfile).
SERVICE_USER = "fwupdate"
#: U1: read at each run (tests of the other rules run in-process as root).
effective_uid: Callable[[], int] = os.geteuid


def root_refusal(euid: int, data_dir: Path) -> str | None:
    """U1: why a process with effective user id ``euid`` may not serve, or None."""
    if euid != 0:
        return None
    return (
        "refusing to run as root (R6): a flaw in a server that faces the network would hand"
        " over the whole machine. Run it as an unprivileged user that owns the data directory:"
        f" the systemd unit deploy/systemd/fwserver.service does (User={SERVICE_USER}), or by"
        f" hand: runuser -u {SERVICE_USER} -- fwserver serve --data-dir {data_dir}"
    )


@click.command()
@data_dir_option
@click.option("--host", help="Address to bind [configuration, else 127.0.0.1].")
@click.option("--port", type=int, help="TCP port; 0 picks a free one [configuration, 8443].")
@click.option("--workers", type=int, help="Worker processes [configuration, 2].")
@click.option("--check", is_flag=True, help="Check, renew the TLS certificate if due, and exit.")
def serve(
    data_dir: Path, host: str | None, port: int | None, workers: int | None, check: bool
) -> None:
    """Serve the repository and the API over HTTPS until SIGTERM.

    Without tls_cert/tls_key in the configuration the server has its own CA
    in DATA_DIR/tls/: give devices its ca.crt (--ca). The certificate it
    serves is issued by that CA and renewed 30 days before it expires. It
    warns a year before the CA expires (devices need a new one by then) and
    30 days before a certificate it cannot renew; so does 'repo status'.

    It refuses to run as root (R6): run it as the user that owns DATA_DIR.
    """
    refusal = root_refusal(effective_uid(), data_dir)
    if refusal is not None:
        raise click.ClickException(refusal)
    changes = {
        name: value
        for name, value in (("host", host), ("port", port), ("workers", workers))
        if value is not None
    }
    try:
        config = ServerConfig.load(data_dir).with_changes(**changes)
        plan = prepare(config, host_given=host is not None, now=command_now())
        if not check:
            check_port(config.host, config.port)
    except (ConfigError, ServeError, TlsError) as exc:
        raise click.ClickException(str(exc)) from None
    if plan.tls.generated:
        click.echo(f"issued a TLS certificate from the server's CA: {plan.tls.cert}", err=True)
    for warning in plan.warnings:
        warn(warning)
    if check:
        describe_tls(plan)
        return
    run(plan)


if __name__ == "__main__":
    serve()
