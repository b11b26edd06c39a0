"""``fwserver backup``: the server's state in one archive, taken while it runs.

B1 What goes in: every regular file of the data directory (configuration,
the key sealing TOTP secrets, the web pages' key, the TLS CA and
certificate, the audit log's anchored head, the mock-HSM token with its
encrypted online keys and usage log, the published repository), and the
database (``backup.database``). What stays out: the database's own files
(exported instead), the token's user PIN file (B3), uploads in progress
(``staging/``, ``incoming/``) and lock files. A symbolic link or any other
non-regular file in the data directory is refused: the archive would not be
the state the server runs on. Files the configuration names outside the
data directory (a served certificate, webhook secrets, a PKCS#11 token) are
not in the archive; the command names them.
B2 Consistent: the whole backup holds the publication lock (no publication
or renewal moves the repository meanwhile, they wait), the token is read
under its own lock, and the anchored head is read before the database's
snapshot, so the restored log holds the head its anchor names.
B3 The PIN that opens the token is not in the archive: the archive alone
does not give the online keys; the restore is given the PIN.
B4 The archive appears whole or not at all (written beside it, fsync'ed,
renamed), never over an existing file; the backup is audited
(``server.backup``, its SHA-256 in the detail), a failed one too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from hsm_mock import SCHEME as TOKEN_SCHEME
from hsm_mock.signer import parse_uri
from update_server.backup import database
from update_server.backup.archive import DATABASE, FILES, ArchiveWriter, Manifest, hash_file
from update_server.backup.errors import BackupError
from update_server.config import ServerConfig, sqlite_file
from update_server.publication.lock import publication_lock

#: Directories of the data directory whose content is work in progress (B1).
SKIPPED_DIRS = frozenset({"staging", "incoming"})
#: How long the backup waits for a publication in progress to finish.
LOCK_WAIT = 300.0


@dataclass(frozen=True)
class BackupResult:
    archive: Path
    sha256: str
    manifest: Manifest
    #: Files the configuration uses outside the data directory: not in the archive (B1).
    outside: tuple[Path, ...]


def make_backup(config: ServerConfig, output: Path, *, now: datetime) -> BackupResult:
    """Write the archive of ``config``'s server to ``output`` (B1-B4; the caller audits)."""
    output = output.absolute()
    data_dir = config.data_dir.absolute()
    if output.exists():
        raise BackupError(f"{output} exists: choose a new file name (nothing is overwritten)")
    if output.is_relative_to(data_dir):
        raise BackupError(f"{output} is inside the data directory: write the backup elsewhere")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        staged = work / "archive.tar.gz"
        manifest = _write(config, staged, work, now)
        digest, _ = hash_file(staged)
        _place(staged, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(output, digest, manifest, outside_files(config))


def _write(config: ServerConfig, staged: Path, work: Path, now: datetime) -> Manifest:
    with staged.open("xb") as out, publication_lock(config.data_dir, timeout=LOCK_WAIT):
        writer = ArchiveWriter(out)
        for relative, mode in data_directories(config):
            writer.add_directory(f"{FILES}/{relative}", mode)
        for relative, path in data_files(config):
            with _token_lock(config, path):
                writer.add_file(f"{FILES}/{relative}", path, path.stat().st_mode)
        schema, tables = database.export(config.database_url, work)
        for name, table_file in tables.items():
            writer.add_file(f"{DATABASE}/{name}.jsonl", table_file, 0o600)
        engine = "sqlite" if sqlite_file(config.database_url) is not None else "postgresql"
        manifest = writer.close(made_at=now.isoformat(), schema=schema, engine=engine)
        out.flush()
        os.fsync(out.fileno())
    return manifest


def data_files(config: ServerConfig) -> list[tuple[PurePosixPath, Path]]:
    """B1: the files of the data directory an archive holds, the anchored head first (B2)."""
    data_dir = config.data_dir.absolute()
    skipped = _skipped_files(config)
    found: list[tuple[PurePosixPath, Path]] = []
    for directory, subdirs, names in os.walk(data_dir):
        here = Path(directory)
        if here == data_dir:
            subdirs[:] = [name for name in subdirs if name not in SKIPPED_DIRS]
        subdirs.sort()
        for name in [*sorted(names), *(d for d in subdirs if (here / d).is_symlink())]:
            path = here / name
            if path in skipped or name.endswith(".lock"):
                continue
            _refuse_special(path)
            found.append((PurePosixPath(path.relative_to(data_dir).as_posix()), path))
    found.sort(key=lambda item: (item[0].name != "audit-head.json", str(item[0])))
    return found


def data_directories(config: ServerConfig) -> list[tuple[PurePosixPath, int]]:
    """The data directory's folders (work-in-progress ones too, empty) and their modes."""
    data_dir = config.data_dir.absolute()
    found = []
    for directory, subdirs, _ in os.walk(data_dir):
        here = Path(directory)
        if here == data_dir:
            found += [
                (PurePosixPath(name), (here / name).stat().st_mode)
                for name in subdirs
                if name in SKIPPED_DIRS and not (here / name).is_symlink()
            ]
            subdirs[:] = [name for name in subdirs if name not in SKIPPED_DIRS]
        for name in subdirs:
            path = here / name
            if not path.is_symlink():
                found.append(
                    (PurePosixPath(path.relative_to(data_dir).as_posix()), path.stat().st_mode)
                )
    return sorted(found)


def _skipped_files(config: ServerConfig) -> set[Path]:
    skipped = set()
    database_file = sqlite_file(config.database_url)
    if database_file is not None:
        skipped |= {Path(f"{database_file}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")}
    if config.hsm_pin_file is not None:
        skipped.add(config.hsm_pin_file)
    return {path.absolute() for path in skipped}


def _refuse_special(path: Path) -> None:
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise BackupError(
            f"{path} is a symbolic link or not a regular file: a backup holds the data"
            " directory's own files only; replace it by the file itself, or move it out"
        )


def outside_files(config: ServerConfig) -> tuple[Path, ...]:
    """B1: what the configuration uses outside the data directory."""
    data_dir = config.data_dir.absolute()
    paths = [config.tls_cert, config.tls_key, config.metrics_token_file]
    for hook in config.alert_webhooks:
        paths += [hook.secret_file, hook.ca_file]
    paths += [_token_dir(uri) for uri in config.online_keys.values()]
    return tuple(
        sorted({p for p in paths if p is not None and not p.absolute().is_relative_to(data_dir)})
    )


def _token_dir(uri: str) -> Path | None:
    return parse_uri(uri)[0] if uri.startswith(f"{TOKEN_SCHEME}:") else None


@contextmanager
def _token_lock(config: ServerConfig, path: Path) -> Iterator[None]:
    """B2: a token file is read under the token's own lock (one read-modify-write at a time)."""
    tokens = {_token_dir(uri) for uri in config.online_keys.values()} - {None}
    lock = next((t / ".lock" for t in tokens if t is not None and path.is_relative_to(t)), None)
    if lock is None or not lock.is_file():
        yield
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _place(staged: Path, output: Path) -> None:
    """B4: the archive appears whole, never over another file."""
    os.link(staged, output)
    directory = os.open(output.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
