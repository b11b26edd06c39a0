"""Fixtures of the web page tests: the app over HTTPS in Flask's test client.

The pages' cookies are ``Secure`` and ``__Host-`` named and the CSRF check
wants a same-site Referer over HTTPS, so the client talks to
``https://localhost`` and ``Browser`` sends the Referer a browser sends.
The real-browser tests (``test_browser_*``) have their own server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import RUN_START, FakeClock
from tests.hsm_mock.helpers import FAST_KDF
from tests.web.pages import Browser
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.setup import init_data_dir


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(RUN_START)


@pytest.fixture(autouse=True)
def _fast_hashing(fast_hashing: None) -> None:
    """Every web test logs people in: cheap hashing (the root conftest's one fixture)."""


@pytest.fixture
def config(tmp_path: Path) -> ServerConfig:
    return init_data_dir(tmp_path / "data", kdf=FAST_KDF).config


@pytest.fixture
def app(config: ServerConfig, clock: FakeClock) -> Iterator[Flask]:
    application = create_app(config, clock=clock, signer_loader=signer_loader(config))
    application.testing = True
    yield application
    application.extensions["fw"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(app: Flask) -> Browser:
    return Browser(app.test_client())
