"""``fwserver init``: a new data directory, ready to serve.

It creates the directories, the key that encrypts TOTP secrets at rest, the
database schema, the TLS CA that devices are provisioned with (``tls/ca.crt``,
its key 0600; ``serve`` issues the served certificate from it), and (unless
keys are configured) a mock-HSM token holding the four online keys, one
purpose each (R47), with a random user PIN in a 0600 file and a random
security-officer PIN shown once. Nothing is overwritten: an existing data
directory is refused.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fwcommon.files import atomic_write
from hsm_mock import Algorithm, KdfParams, Purpose, Token, private_key_uri
from update_server.config import CONFIG_FILE, ONLINE_ROLES, ServerConfig
from update_server.db import make_engine
from update_server.keys import pin_file
from update_server.migrations import upgrade
from update_server.tls import TLS_DIR, make_ca

PURPOSES = {
    "snapshot": Purpose.SNAPSHOT,
    "timestamp": Purpose.TIMESTAMP,
    "audit": Purpose.AUDIT,
    "authorization": Purpose.AUTHORIZATION,
}


class SetupError(RuntimeError):
    """The data directory cannot be created as asked."""


@dataclass(frozen=True)
class InitResult:
    config: ServerConfig
    so_pin: str | None


def init_data_dir(
    data_dir: Path,
    *,
    database_url: str = "",
    online_keys: dict[str, str] | None = None,
    kdf: KdfParams | None = None,
    now: datetime | None = None,
) -> InitResult:
    """Create ``data_dir``; return its configuration and the SO PIN (shown once)."""
    if (data_dir / CONFIG_FILE).exists():
        raise SetupError(f"{data_dir} is already a server data directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    so_pin = None
    if online_keys is None:
        online_keys, so_pin = _make_token(data_dir, kdf)
    config = ServerConfig(
        data_dir=data_dir,
        database_url=database_url,
        online_keys=online_keys,
        hsm_pin_file=pin_file(data_dir) if so_pin else None,
    )
    for directory in (config.repository_dir, config.staging_dir):
        directory.mkdir(exist_ok=True)
    atomic_write(config.secrets_key_file, secrets.token_bytes(32), mode=0o600)
    make_ca(data_dir / TLS_DIR, now=now or datetime.now(UTC))
    engine = make_engine(config.database_url)
    try:
        upgrade(engine)  # M2: the schema is the migrations' head
    finally:
        engine.dispose()
    settings = {k: v for k, v in config.to_json().items() if k != "data_dir"}
    atomic_write(data_dir / CONFIG_FILE, json.dumps(settings, indent=2).encode(), mode=0o600)
    return InitResult(config, so_pin)


def _make_token(data_dir: Path, kdf: KdfParams | None) -> tuple[dict[str, str], str]:
    so_pin, user_pin = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    token = Token.init(data_dir / "hsm", so_pin=so_pin, user_pin=user_pin, kdf=kdf)
    session = token.login(user_pin)
    for role in ONLINE_ROLES:
        session.generate(label=role, purpose=PURPOSES[role], algorithm=Algorithm.ED25519)
    session.close()
    atomic_write(pin_file(data_dir), user_pin.encode(), mode=0o600)
    return {role: private_key_uri(token.path, role) for role in ONLINE_ROLES}, so_pin
