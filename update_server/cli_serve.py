"""``fwserver serve``: run the server under gunicorn with TLS (attached by ``cli``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fwcommon.cli import warn
from update_server.cli_common import command_now, data_dir_option
from update_server.config import ConfigError, ServerConfig
from update_server.serve import ServeError, check_port, describe_tls, prepare, run
from update_server.tls import TlsError


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
    """
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
    if os.geteuid() == 0:
        warn("running as root; run the server as an unprivileged user")
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
