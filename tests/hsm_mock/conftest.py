"""Fixtures of the software HSM tests: a small-KDF token, a session, a key maker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from hsm_mock import Algorithm, KeyInfo, Purpose, Session, Token
from tests.clocks import FakeClock
from tests.hsm_mock.helpers import FAST_KDF, SO_PIN, USER_PIN


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    return tmp_path / "token"


@pytest.fixture
def token(token_dir: Path) -> Token:
    return Token.init(
        token_dir,
        so_pin=SO_PIN,
        user_pin=USER_PIN,
        kdf=FAST_KDF,
        clock=FakeClock(tick=timedelta(seconds=1)),
    )


@pytest.fixture
def session(token: Token) -> Session:
    return token.login(USER_PIN)


@pytest.fixture
def make_key(session: Session) -> Callable[..., KeyInfo]:
    """Generate a key for ``purpose`` (label defaults to the purpose)."""

    def make(
        purpose: Purpose, algorithm: Algorithm = Algorithm.ED25519, label: str | None = None
    ) -> KeyInfo:
        return session.generate(label=label or purpose.value, purpose=purpose, algorithm=algorithm)

    return make
