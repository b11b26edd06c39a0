"""``fwserver init``: a new data directory, ready to serve, made whole or not at all.

It creates the directories, the key that encrypts TOTP secrets at rest, the
key that signs the web pages' CSRF tokens (``web_secret_key``), the database
schema, the TLS CA that devices are provisioned with (``tls/ca.crt``,
its key 0600) and the first certificate the server serves, issued from it
(``serve`` renews it when due), and (unless keys are configured) a mock-HSM
token holding the four online keys, one purpose each (R47), with a random
user PIN in a 0600 file and a random security-officer PIN shown once.

I1 Atomic: everything is built in a hidden sibling directory
(``.<name>.init-*``, same file system) and renamed into place last; on any
error it is removed, and a SQLite database made outside it for this init
too. A directory a killed init left behind is removed by the next init.
I2 Nothing is overwritten: an existing data directory, or any non-empty
directory, is refused with what to do instead; so is a database that
already holds tables (another server's: its people, audit log and TOTP
secrets sealed with another key), before anything is written to it.
I3 Paths inside the data directory are written into ``server.json``
relative to it (config C1), so they hold after the rename and after a move.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, inspect, make_url

from fwcommon.files import atomic_write, fsync_dir
from hsm_mock import Algorithm, KdfParams, Purpose, Token, private_key_uri
from update_server.config import CONFIG_FILE, ONLINE_ROLES, ServerConfig, sqlite_file
from update_server.db import make_engine
from update_server.keys import pin_file
from update_server.migrations import upgrade
from update_server.tls import TLS_DIR, make_ca, managed_tls, server_names

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
    #: Directories of interrupted inits that were removed first.
    removed: tuple[Path, ...] = ()


def init_data_dir(
    data_dir: Path,
    *,
    database_url: str = "",
    online_keys: dict[str, str] | None = None,
    kdf: KdfParams | None = None,
    now: datetime | None = None,
) -> InitResult:
    """Create ``data_dir``; return its configuration and the SO PIN (shown once)."""
    data_dir = data_dir.absolute()
    _check_free(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    removed = remove_interrupted(data_dir)
    database_url = _absolute_sqlite(database_url)
    outside_db = sqlite_file(database_url)
    made_db = outside_db is not None and not outside_db.exists()
    work = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=_work_prefix(data_dir)))
    try:
        so_pin = _build(work, database_url, online_keys, kdf, now or datetime.now(UTC))
        _place(work, data_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if made_db and outside_db is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{outside_db}{suffix}").unlink(missing_ok=True)
        raise
    return InitResult(ServerConfig.load(data_dir, env={}), so_pin, removed)


def remove_interrupted(data_dir: Path) -> tuple[Path, ...]:
    """Remove what inits of ``data_dir`` that were killed left beside it (I1)."""
    leftovers = tuple(sorted(data_dir.parent.glob(f"{_work_prefix(data_dir)}*")))
    for leftover in leftovers:
        shutil.rmtree(leftover)
    return leftovers


def _work_prefix(data_dir: Path) -> str:
    return f".{data_dir.name}.init-"


def _check_free(data_dir: Path) -> None:
    if (data_dir / CONFIG_FILE).exists():
        raise SetupError(
            f"{data_dir} is already a server data directory: use it as it is; to start"
            " over, move it aside (it holds the database and the keys: keep it as a backup)"
            " and run 'fwserver init' again"
        )
    if data_dir.exists() and not data_dir.is_dir():
        raise SetupError(f"{data_dir} exists and is not a directory: choose another --data-dir")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise SetupError(
            f"{data_dir} is not empty and is no server data directory (no {CONFIG_FILE}):"
            " choose a new --data-dir, or empty this one and run 'fwserver init' again"
        )


def _absolute_sqlite(database_url: str) -> str:
    """A SQLite URL given on the command line is relative to the current directory."""
    file = sqlite_file(database_url)
    if file is None or file.is_absolute():
        return database_url
    absolute = make_url(database_url).set(database=str(file.absolute()))
    return absolute.render_as_string(hide_password=False)


def _build(
    work: Path,
    database_url: str,
    online_keys: dict[str, str] | None,
    kdf: KdfParams | None,
    now: datetime,
) -> str | None:
    """Everything a data directory holds, in ``work``; the SO PIN if a token was made."""
    work.chmod(0o700)
    so_pin = None
    if online_keys is None:
        online_keys, so_pin = _make_token(work, kdf)
    config = ServerConfig(
        data_dir=work,
        database_url=database_url,
        online_keys=online_keys,
        hsm_pin_file=pin_file(work) if so_pin else None,
    )
    for directory in (config.repository_dir, config.staging_dir):
        directory.mkdir()
    atomic_write(config.secrets_key_file, secrets.token_bytes(32), mode=0o600)
    web_secret_key(config)
    make_ca(work / TLS_DIR, now=now)
    managed_tls(work / TLS_DIR, names=server_names(config), now=now)
    engine = make_engine(config.database_url, create=True)
    try:
        _refuse_used_database(engine)
        upgrade(engine)  # M2: the schema is the migrations' head
    finally:
        engine.dispose()
    settings = json.dumps(config.to_file_json(), indent=2).encode()
    atomic_write(work / CONFIG_FILE, settings, mode=0o600)
    return so_pin


def web_secret_key(config: ServerConfig) -> bytes:
    """The web pages' SECRET_KEY (``config.web_secret_key_file``), made if absent (0600).

    A data directory made before the web pages existed gets its key when the
    server starts. Each worker calls this: the first to link its key into
    place wins (``os.link`` never replaces a file), the others read that
    one, so every worker signs with the same key and none reads a half-written
    file.
    """
    path = config.web_secret_key_file
    if not path.exists():
        staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        atomic_write(staged, secrets.token_bytes(32), mode=0o600)
        try:
            os.link(staged, path)
        except FileExistsError:
            pass  # another worker made it first: use that one
        finally:
            staged.unlink()
        fsync_dir(path.parent)
    key = path.read_bytes()
    if len(key) < 32:
        raise SetupError(
            f"{path} holds {len(key)} bytes, not a key of 32: move it aside and restart the"
            " server to make a new one (everyone then logs in to the web pages again)"
        )
    return key


def _refuse_used_database(engine: Engine) -> None:
    """I2: a new server starts on an empty database, never on another's."""
    with engine.connect() as connection:
        tables = sorted(inspect(connection).get_table_names())
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        where = engine.url.render_as_string(hide_password=True)
        raise SetupError(
            f"the database {where} already holds tables ({shown}), so it belongs to another"
            " server: nothing was changed; give an empty database (--database-url), or run"
            " the server whose data directory uses this one"
        )


def _place(work: Path, data_dir: Path) -> None:
    """The rename that makes the data directory appear whole (over an empty one at most)."""
    try:
        work.rename(data_dir)
    except OSError as exc:
        raise SetupError(f"cannot create {data_dir}: {exc.strerror}") from None
    fsync_dir(data_dir.parent)


def _make_token(data_dir: Path, kdf: KdfParams | None) -> tuple[dict[str, str], str]:
    so_pin, user_pin = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    token = Token.init(data_dir / "hsm", so_pin=so_pin, user_pin=user_pin, kdf=kdf)
    session = token.login(user_pin)
    for role in ONLINE_ROLES:
        session.generate(label=role, purpose=PURPOSES[role], algorithm=Algorithm.ED25519)
    session.close()
    atomic_write(pin_file(data_dir), user_pin.encode(), mode=0o600)
    return {role: private_key_uri(token.path, role) for role in ONLINE_ROLES}, so_pin
