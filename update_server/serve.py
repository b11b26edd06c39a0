"""``fwserver serve``: the app under gunicorn, over TLS only.

The master process binds one TLS listener (127.0.0.1 unless told otherwise;
every interface only when ``--host`` says so on the command line, never by a
configuration file alone) and forks ``workers`` processes; each builds its
own app after the fork (``wsgi.build_app``: database engine, online signers,
renewal thread). TLS 1.2 is the minimum, with ECDHE and AEAD ciphers only
(``tls.server_profile``); there is no plain-HTTP listener. Each connection's
TLS context is built from the certificate on disk, which the worker renews
from the server's CA when it is due (``tls.LeafKeeper``).
SIGTERM is a graceful stop: requests in flight finish (up to
``GRACEFUL_TIMEOUT``), then the workers and the master exit.
Each run counts its metrics in a fresh, empty directory the master makes
before it forks and removes when it exits; a worker that exits is marked
dead there, its counts kept (``observability.metrics`` P2).
"""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import SQLAlchemyError

from update_server.clock import system_clock
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.db import DatabaseMissingError, make_engine
from update_server.mfa import passwords
from update_server.migrations import check_schema
from update_server.observability import metrics
from update_server.tls import (
    TLS_DIR,
    WILDCARD_HOSTS,
    LeafKeeper,
    TlsFiles,
    certificate_names,
    expiry_warnings,
    fingerprint,
    server_names,
    server_profile,
    server_tls,
    status_line,
)
from update_server.wsgi import build_app

logger = logging.getLogger(__name__)

#: gthread workers: a long firmware upload holds one thread, not a whole
#: worker, and does not trip the worker heartbeat timeout.
THREADS_PER_WORKER = 4
GRACEFUL_TIMEOUT = 30


class ServeError(RuntimeError):
    """The server cannot start as configured; the message says why."""


@dataclass(frozen=True)
class ServePlan:
    """What ``run`` starts: a checked configuration, its TLS files and what to warn about."""

    config: ServerConfig
    tls: TlsFiles
    #: TLS certificates that need the operator (tls.expiry_warnings), at
    #: ``now``, and a wildcard bind that answers only default host names.
    warnings: tuple[str, ...] = ()
    status: str = ""


def prepare(config: ServerConfig, *, host_given: bool, now: datetime | None = None) -> ServePlan:
    """Check everything that can be checked before gunicorn starts."""
    if config.host in WILDCARD_HOSTS and not host_given:
        raise ServeError(
            f"the configuration binds every interface ({config.host or 'empty host'});"
            " pass --host explicitly to confirm, or use --host 127.0.0.1"
        )
    if not (config.data_dir / CONFIG_FILE).is_file():
        raise ServeError(f"{config.data_dir} is not a server data directory; run 'fwserver init'")
    _check_database(config.database_url)
    try:  # fails closed before serving, and the workers inherit it loaded
        passwords.common_passwords()
    except passwords.PasswordCorpusError as exc:
        raise ServeError(str(exc)) from None
    now = now or datetime.now(UTC)
    tls = server_tls(config, now=now)
    warnings = (*expiry_warnings(tls, now=now), *default_hosts_warning(config))
    return ServePlan(config, tls, warnings=warnings, status=status_line(tls, now=now))


def default_hosts_warning(config: ServerConfig) -> list[str]:
    """Every interface bound, but only the default host names answered: say which."""
    if config.host not in WILDCARD_HOSTS or config.trusted_host_names:
        return []
    return [
        f"binding every interface ({config.host or 'empty host'}) with trusted_hosts unset:"
        f" only {', '.join(certificate_names(config))} (loopback and the certificate's names)"
        " are answered, any other Host gets 400; set trusted_hosts to the names devices use"
    ]


def _check_database(url: str) -> None:
    try:
        engine = make_engine(url)
    except DatabaseMissingError as exc:
        raise ServeError(str(exc)) from None
    try:
        check_schema(engine)  # connects; M3: refuses a schema this code does not know
    except SQLAlchemyError as exc:
        # The URL may hold a password: name the driver's complaint only.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ServeError(f"cannot reach the database: {reason}") from None
    finally:
        engine.dispose()


def check_port(host: str, port: int) -> None:
    """Refuse a port already taken before gunicorn starts (it would retry for seconds).

    Bound briefly with ``SO_REUSEADDR`` like gunicorn's own listener, so a
    port left in TIME_WAIT by a stopped server is free; port 0 is always free.
    """
    if port == 0:
        return
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServeError(f"cannot bind {host!r}: {exc.strerror}; pass another --host") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {port} on {host or '*'} is in use (another fwserver?):"
                    " stop it or pass --port"
                ) from None
            raise ServeError(
                f"cannot bind port {port} on {host or '*'}: {exc.strerror}; pass another"
                " --port or --host"
            ) from None


def url_of(host: str, port: int) -> str:
    """The URL clients use (a wildcard bind is reached locally at 127.0.0.1)."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class TlsContext:
    """gunicorn's ``ssl_context`` hook, called for each connection.

    gunicorn's default context (the certificate on disk), restricted to the
    server profile (R26); with fwserver's own CA, the leaf is renewed first
    if it is due (R5: a long-running server never serves an expired one).
    """

    keeper: LeafKeeper | None

    def __call__(
        self, _conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        if self.keeper is None:
            return server_profile(default_ssl_context_factory())
        return server_profile(self.keeper.load(default_ssl_context_factory))


def tls_context(plan: ServePlan) -> TlsContext:
    config = plan.config
    if config.tls_cert is not None:
        return TlsContext(keeper=None)
    keeper = LeafKeeper(config.data_dir / TLS_DIR, server_names(config), clock=system_clock)
    return TlsContext(keeper)


class FirmwareServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: no command line, no config file read."""

    def __init__(
        self,
        plan: ServePlan,
        *,
        app_factory: Callable[[ServerConfig], Flask],
        metrics_dir: Path | None = None,
    ) -> None:
        self.plan = plan
        self.app_factory = app_factory
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        config, tls = self.plan.config, self.plan.tls
        settings: dict[str, Any] = {
            "bind": [bind_address(config.host, config.port)],
            "workers": config.workers,
            "worker_class": "gthread",
            "threads": THREADS_PER_WORKER,
            "certfile": str(tls.cert),
            "keyfile": str(tls.key),
            "ssl_context": tls_context(self.plan),
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "preload_app": False,
            "proc_name": "fwserver",
            # gunicorn's control socket is a second way in; we do not need it.
            "control_socket_disable": True,
            "errorlog": "-",
            "loglevel": "info",
            "when_ready": self._when_ready,
            "child_exit": _child_exit,
            "on_exit": self._on_exit,
        }
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.app_factory(self.plan.config)

    def _on_exit(self, _arbiter: Any) -> None:
        """In the master only, once every worker has stopped: this run's metrics go."""
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _when_ready(self, arbiter: Any) -> None:
        port = arbiter.LISTENERS[0].getsockname()[1]
        click.echo(f"serving {url_of(self.plan.config.host, port)}")
        describe_tls(self.plan)
        if self.metrics_dir is not None:
            click.echo(f"metrics: every worker counts in {self.metrics_dir} (removed at exit)")
        sys.stdout.flush()


def describe_tls(plan: ServePlan) -> None:
    """What devices are given as ``--ca``, and until when the certificates are good."""
    if plan.tls.ca is None:
        click.echo(f"CA certificate for clients: the CA that issued {plan.tls.cert}")
    else:
        click.echo(f"CA certificate for clients: {plan.tls.ca}")
        click.echo(f"  SHA-256 fingerprint {fingerprint(plan.tls.ca)}")
    click.echo(plan.status)


def _child_exit(_arbiter: Any, worker: Any) -> None:
    metrics.worker_exited(worker.pid)


def run(plan: ServePlan, *, app_factory: Callable[[ServerConfig], Flask] = build_app) -> None:
    """Run until SIGTERM or SIGINT; gunicorn exits the process when it stops.

    The metrics directory is made and named before gunicorn forks a worker
    (P2, P3), and removed by the master's ``on_exit``.
    """
    directory = Path(tempfile.mkdtemp(prefix="fwserver-metrics-"))
    metrics.use_multiprocess_dir(directory)
    FirmwareServer(plan, app_factory=app_factory, metrics_dir=directory).run()
