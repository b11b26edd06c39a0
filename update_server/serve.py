"""``fwserver serve``: the app under gunicorn, over TLS only.

The master process binds one TLS listener (127.0.0.1 unless told otherwise;
every interface only when ``--host`` says so on the command line, never by a
configuration file alone) and forks ``workers`` processes; each builds its
own app after the fork (``wsgi.build_app``: database engine, online signers,
renewal thread). TLS 1.2 is the minimum; there is no plain-HTTP listener.
SIGTERM is a graceful stop: requests in flight finish (up to
``GRACEFUL_TIMEOUT``), then the workers and the master exit.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import SQLAlchemyError

from update_server.config import CONFIG_FILE, ServerConfig
from update_server.db import make_engine
from update_server.tls import WILDCARD_HOSTS, TlsFiles, fingerprint, server_tls
from update_server.wsgi import build_app

logger = logging.getLogger(__name__)

#: gthread workers: a long firmware upload holds one thread, not a whole
#: worker, and does not trip the worker heartbeat timeout.
THREADS_PER_WORKER = 4
GRACEFUL_TIMEOUT = 30
MIN_TLS = ssl.TLSVersion.TLSv1_2


class ServeError(RuntimeError):
    """The server cannot start as configured; the message says why."""


@dataclass(frozen=True)
class ServePlan:
    """What ``run`` starts: a checked configuration and its TLS files."""

    config: ServerConfig
    tls: TlsFiles


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
    return ServePlan(config=config, tls=server_tls(config, now=now or datetime.now(UTC)))


def _check_database(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        # The URL may hold a password: name the driver's complaint only.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ServeError(f"cannot reach the database: {reason}") from None
    finally:
        engine.dispose()


def url_of(host: str, port: int) -> str:
    """The URL clients use (a wildcard bind is reached locally at 127.0.0.1)."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_context(
    _conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """gunicorn's ``ssl_context`` hook: its default context, TLS 1.2 at least."""
    context = default_ssl_context_factory()
    context.minimum_version = MIN_TLS
    return context


class FirmwareServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: no command line, no config file read."""

    def __init__(self, plan: ServePlan, *, app_factory: Callable[[ServerConfig], Flask]) -> None:
        self.plan = plan
        self.app_factory = app_factory
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
            "ssl_context": tls_context,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "preload_app": False,
            "proc_name": "fwserver",
            # gunicorn's control socket is a second way in; we do not need it.
            "control_socket_disable": True,
            "errorlog": "-",
            "loglevel": "info",
            "when_ready": self._when_ready,
        }
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.app_factory(self.plan.config)

    def _when_ready(self, arbiter: Any) -> None:
        port = arbiter.LISTENERS[0].getsockname()[1]
        click.echo(f"serving {url_of(self.plan.config.host, port)}")
        click.echo(f"CA certificate for clients: {self.plan.tls.ca}")
        click.echo(f"  SHA-256 fingerprint {fingerprint(self.plan.tls.ca)}")
        sys.stdout.flush()


def run(plan: ServePlan, *, app_factory: Callable[[ServerConfig], Flask] = build_app) -> None:
    """Run until SIGTERM or SIGINT; gunicorn exits the process when it stops."""
    FirmwareServer(plan, app_factory=app_factory).run()
