"""``fwserver restore``: an archive of ``fwserver backup`` into a new, empty data directory.

R1 Into an empty place only: the data directory must not exist or be an empty
directory, and the database must hold no table; anything else is refused
before a byte is written.
R2 The whole archive is checked first (``archive.verify``: every hash, no
link, no path outside, nothing missing or added); a bad archive is refused
with nothing written anywhere.
R3 Atomic, like ``fwserver init``: the data directory is built in a hidden
sibling (``.<name>.restore-*``), its database filled (``database.import_rows``,
upgraded to this fwserver's schema) and the restore audited in the restored
log (``server.restore``, signed and anchored with the restored audit key),
then renamed into place last. On any error the sibling is removed and the
database emptied again (a SQLite file this restore made, removed).
R4 The database: ``database_url`` if given; else SQLite in the new data
directory (``server.db``) for an archive of SQLite, and the archive's own
URL for one of PostgreSQL (an empty database made for it). ``server.json``
is the archive's with that URL.
R5 The token's user PIN (not in the archive, ``make`` B3) is written to the
PIN file the configuration names, 0600, when given; without it (nor
``FWSERVER_HSM_PIN``) a restore of a server whose PIN lives in a file is
refused: the restored server could not sign, nor the restore be audited.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from fwcommon.files import atomic_write, fsync_dir
from update_server.backup import archive, database
from update_server.backup.archive import DATABASE, FILES, Manifest
from update_server.backup.errors import BackupError
from update_server.config import CONFIG_FILE, ServerConfig, sqlite_file
from update_server.keys import PIN_ENV

#: Appends the restore's audit entry to the restored server's log (R3).
Recorder = Callable[[ServerConfig, Manifest], None]


@dataclass(frozen=True)
class RestoreResult:
    config: ServerConfig
    manifest: Manifest


def restore_backup(
    source: Path,
    data_dir: Path,
    *,
    database_url: str,
    pin: str | None,
    record: Recorder,
) -> RestoreResult:
    """R1-R5: restore ``source`` into ``data_dir``; ``record`` audits it before it is placed."""
    data_dir = data_dir.absolute()
    _check_empty(data_dir)
    manifest = archive.verify(source)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restore-"))
    made_file: Path | None = None
    try:
        archive.extract(source, manifest, work)
        built = work / FILES
        built.chmod(0o700)
        config = _configure(built, manifest, database_url, pin)
        made_file = _new_sqlite_file(config.database_url, built)
        tables = {name: work / DATABASE / f"{name}.jsonl" for name in manifest.tables}
        database.import_rows(config.database_url, manifest.schema, tables)
        record(config, manifest)
        _place(built, data_dir)
    except BaseException:
        if made_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{made_file}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(ServerConfig.load(data_dir, env={}), manifest)


def _check_empty(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} exists and is not a directory: choose another --data-dir")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise BackupError(
            f"{data_dir} is not empty: a backup is restored into a new or empty data directory"
            " only (nothing was changed); choose another --data-dir, or move this one aside"
        )


def _configure(built: Path, manifest: Manifest, database_url: str, pin: str | None) -> ServerConfig:
    """R4, R5: the archive's configuration with the new database, and the PIN file."""
    if not (built / CONFIG_FILE).is_file():
        raise BackupError(f"the archive holds no {CONFIG_FILE}: it is no server's backup")
    archived = ServerConfig.load(built, env={})
    url = database_url or (
        f"sqlite:///{built / 'server.db'}" if manifest.engine == "sqlite" else archived.database_url
    )
    config = archived.with_changes(database_url=_absolute_sqlite(url))
    pin_file = config.hsm_pin_file
    if pin is not None and pin_file is not None and pin_file.is_relative_to(built):
        atomic_write(pin_file, pin.encode(), mode=0o600)
    elif pin_file is not None and pin_file.is_relative_to(built) and not os.environ.get(PIN_ENV):
        raise BackupError(
            "the token's user PIN is not in the archive: give it (--hsm-pin-file, the"
            f" {pin_file.name} of the server backed up, kept offline) or set {PIN_ENV};"
            " nothing was restored"
        )
    settings = json.dumps(config.to_file_json(), indent=2).encode()
    atomic_write(built / CONFIG_FILE, settings, mode=0o600)
    return config


def _absolute_sqlite(url: str) -> str:
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    return make_url(url).set(database=str(file.absolute())).render_as_string(hide_password=False)


def _new_sqlite_file(url: str, built: Path) -> Path | None:
    """The SQLite file this restore makes outside the data directory (removed if it fails)."""
    file = sqlite_file(url)
    if file is None or file.is_relative_to(built):
        return None
    if file.exists():
        raise BackupError(
            f"{file} exists: a backup is restored into a new database only; nothing was changed"
        )
    return file


def _place(built: Path, data_dir: Path) -> None:
    try:
        built.rename(data_dir)
    except OSError as exc:
        raise BackupError(f"cannot create {data_dir}: {exc.strerror}") from None
    fsync_dir(data_dir.parent)
