"""The WSGI entry point: one app per gunicorn worker.

``fwserver serve`` uses ``build_app`` for each worker it forks. To run the
server under a gunicorn of your own (behind nginx, say), point it at the
factory and the data directory::

    FWSERVER_DATA_DIR=/srv/fw gunicorn 'update_server.wsgi:create()' \\
        --certfile ... --keyfile ...

Nothing happens at import: the app, its database engine and its background
renewal thread are made after the fork, in the worker that uses them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask

from update_server.alerts.worker import AlertWorker, start_alert_worker
from update_server.app import create_app
from update_server.config import ConfigError, ServerConfig
from update_server.keys import signer_loader
from update_server.publication.renewal import RenewalThread, start_renewal_thread

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "FWSERVER_DATA_DIR"
#: Where a worker's app keeps its renewal thread (to stop it, in tests).
RENEWAL_EXTENSION = "fw_renewal"
#: Where a worker's app keeps its alert delivery thread.
ALERTS_EXTENSION = "fw_alerts"


def create(data_dir: str | None = None) -> Flask:
    """The app for the data directory given, or named by ``FWSERVER_DATA_DIR``."""
    directory = data_dir or os.environ.get(DATA_DIR_ENV)
    if not directory:
        raise ConfigError(f"no data directory: set {DATA_DIR_ENV}")
    return build_app(ServerConfig.load(Path(directory)))


def build_app(config: ServerConfig) -> Flask:
    """One worker's app, with the online signers, timestamp renewal and alert delivery started."""
    app = create_app(config, signer_loader=signer_loader(config))
    app.extensions[RENEWAL_EXTENSION] = start_renewal(app)
    app.extensions[ALERTS_EXTENSION] = start_alerts(app)
    return app


def start_alerts(app: Flask) -> AlertWorker:
    """Start this worker's alert delivery thread (R31); return it.

    Imported by name like the renewer: a server without it would keep its
    alerts in the outbox for ever. A webhook's secret file that is missing
    or unsafe fails the start (``AlertConfigError``).
    """
    worker = start_alert_worker(app)
    logger.info("alert delivery started in worker %d", os.getpid())
    return worker


def start_renewal(app: Flask) -> RenewalThread:
    """Start the timestamp/snapshot renewal thread of this worker; return it.

    The renewer runs in every worker; it takes the publication lock, so one
    renewal happens however many workers wake up. It is imported by name at
    the top of this module: a server without it would let the timestamp
    expire (a freeze of every device), so a missing renewer fails the start.
    """
    thread = start_renewal_thread(app)
    logger.info("timestamp and snapshot renewal started in worker %d", os.getpid())
    return thread
