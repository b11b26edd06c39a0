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

import importlib
import logging
import os
from pathlib import Path

from flask import Flask

from update_server.app import create_app
from update_server.config import ConfigError, ServerConfig
from update_server.keys import signer_loader

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "FWSERVER_DATA_DIR"
RENEWAL_MODULE = "update_server.publication.renewal"


def create(data_dir: str | None = None) -> Flask:
    """The app for the data directory given, or named by ``FWSERVER_DATA_DIR``."""
    directory = data_dir or os.environ.get(DATA_DIR_ENV)
    if not directory:
        raise ConfigError(f"no data directory: set {DATA_DIR_ENV}")
    return build_app(ServerConfig.load(Path(directory)))


def build_app(config: ServerConfig) -> Flask:
    """One worker's app, with the online signers, and timestamp renewal started."""
    app = create_app(config, signer_loader=signer_loader(config))
    start_renewal(app)
    return app


def start_renewal(app: Flask) -> object | None:
    """Start the timestamp/snapshot renewal thread; return it (None if there is none).

    The renewer runs in every worker; it takes the publication lock, so one
    renewal happens however many workers wake up.
    """
    try:
        module = importlib.import_module(RENEWAL_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is None or not RENEWAL_MODULE.startswith(exc.name):
            raise
        return None
    start = getattr(module, "start_renewal_thread", None)
    if start is None:
        return None
    thread: object = start(app)
    logger.info("timestamp and snapshot renewal started in worker %d", os.getpid())
    return thread
