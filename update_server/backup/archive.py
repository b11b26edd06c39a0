"""The backup archive: one tar, a manifest of SHA-256 hashes, checked whole before use.

A1 The archive is a gzip'ed tar of regular files named ``files/<path in the
data directory>`` or ``database/<table>.jsonl``, each read once while it is
written and hashed as it goes, then ``manifest.json`` last, listing each with
its size, SHA-256 and mode. Nothing else is written: no directory, link or
device entry.
A2 ``verify`` reads the whole archive and writes nothing. It refuses (``ArchiveError``,
naming the member and what to do): a member that is not a regular file (a
symbolic or hard link, a device, a directory), a name that is absolute,
holds ``..``, ``.``, an empty or a backslash part, or lies outside the two
folders, a member twice, anything after the manifest, no manifest, a member
the manifest does not list, a listed one that is missing, and any size or
SHA-256 that differs.
A3 ``extract`` writes the verified members under a directory it is given,
at paths it builds itself from the checked names (never ``tarfile.extract``),
hashing again as it writes: an archive changed between the two reads is
refused too. Modes keep the owner's bits and the group's and others' read bits
(and search bits, for directories, whose modes the manifest lists) only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from update_server.backup.errors import ArchiveError

MANIFEST = "manifest.json"
FORMAT = "fwserver-backup"
VERSION = 1
FILES = "files"
DATABASE = "database"
_CHUNK = 1024 * 1024
_REFUSED = "refused, nothing was restored"


@dataclass(frozen=True)
class Member:
    """One file of the archive as the manifest lists it."""

    name: str
    size: int
    sha256: str
    mode: int

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "mode": self.mode}


@dataclass(frozen=True)
class Manifest:
    """What the archive holds and how to restore it (A1)."""

    made_at: str
    schema: str
    engine: str
    tables: tuple[str, ...]
    members: dict[str, Member]
    #: Mode of each directory under ``files/`` (no tar entry: A1).
    directories: dict[str, int]

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "made_at": self.made_at,
            "schema": self.schema,
            "engine": self.engine,
            "tables": list(self.tables),
            "members": {name: member.to_json() for name, member in sorted(self.members.items())},
            "directories": dict(sorted(self.directories.items())),
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT or body.get("version") != VERSION:
                raise ArchiveError(
                    f"{MANIFEST}: not a {FORMAT} version {VERSION} manifest: this archive was"
                    " not made by 'fwserver backup', or by a version this fwserver does not read"
                )
            members = {
                name: Member(name, int(item["size"]), str(item["sha256"]), int(item["mode"]))
                for name, item in body["members"].items()
            }
            return cls(
                made_at=str(body["made_at"]),
                schema=str(body["schema"]),
                engine=str(body["engine"]),
                tables=tuple(str(table) for table in body["tables"]),
                members=members,
                directories={str(k): int(v) for k, v in body["directories"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"{MANIFEST}: unreadable ({exc}): the archive is damaged") from None


class _Hashing(io.RawIOBase):
    """Reads ``size`` bytes of ``source`` and hashes what it hands on (one read of the file)."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        self._source, self._left, self.digest = source, size, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(min(len(buffer), self._left))
        self.digest.update(chunk)
        self._left -= len(chunk)
        memoryview(buffer)[: len(chunk)] = chunk
        return len(chunk)


class ArchiveWriter:
    """Streams files into a new archive, each read once, and writes the manifest last (A1)."""

    def __init__(self, output: IO[bytes]) -> None:
        # Closed by ``close``, after the manifest.
        self._tar = tarfile.open(fileobj=output, mode="w:gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._members: dict[str, Member] = {}
        self._directories: dict[str, int] = {}

    def add_directory(self, name: str, mode: int) -> None:
        check_name(name)
        self._directories[name] = mode & 0o777

    def add_file(self, name: str, source: Path, mode: int) -> None:
        """``source`` as it is when opened: the first ``size`` bytes of that open file."""
        check_name(name)
        with source.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            self._add(name, stream, size, mode)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        check_name(name)
        self._add(name, io.BytesIO(data), len(data), mode)

    def _add(self, name: str, stream: IO[bytes], size: int, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, mode & 0o777
        reader = _Hashing(stream, size)
        self._tar.addfile(info, io.BufferedReader(reader))
        self._members[name] = Member(name, size, reader.digest.hexdigest(), info.mode)

    def close(self, *, made_at: str, schema: str, engine: str) -> Manifest:
        tables = tuple(
            PurePosixPath(name).stem for name in self._members if name.startswith(f"{DATABASE}/")
        )
        manifest = Manifest(
            made_at, schema, engine, tables, dict(self._members), dict(self._directories)
        )
        data = manifest.to_bytes()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o600
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        return manifest


def hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify(archive: Path) -> Manifest:
    """A2: check every member against the manifest; write nothing; return the manifest."""
    found: dict[str, tuple[int, str]] = {}
    manifest: Manifest | None = None
    with _open(archive) as tar:
        for info in _members(archive, tar):
            if manifest is not None:
                raise ArchiveError(f"member {info.name!r} follows {MANIFEST}: {_REFUSED}")
            if info.name == MANIFEST and info.isreg():
                manifest = Manifest.from_bytes(b"".join(_stream(tar, info)))
                continue
            _check_member(info, found)
            digest = hashlib.sha256()
            for chunk in _stream(tar, info):
                digest.update(chunk)
            found[info.name] = (info.size, digest.hexdigest())
    if manifest is None:
        raise ArchiveError(f"{archive}: no {MANIFEST}: not a backup archive, or cut short")
    _check_listing(manifest, found)
    return manifest


def extract(archive: Path, manifest: Manifest, into: Path) -> None:
    """A3: write each verified member under ``into`` (its path under ``files/``/``database/``)."""
    found: dict[str, tuple[int, str]] = {}
    for name in sorted(manifest.directories):
        check_name(name)
        into.joinpath(*PurePosixPath(name).parts).mkdir(parents=True, mode=0o700)
    with _open(archive) as tar:
        for info in _members(archive, tar):
            if info.name == MANIFEST:
                continue
            _check_member(info, found)
            listed = manifest.members.get(info.name)
            if listed is None:
                raise ArchiveError(f"member {info.name!r} is not in the manifest: {_REFUSED}")
            target = into.joinpath(*PurePosixPath(info.name).parts)
            _make_parents(into, target.parent)
            found[info.name] = (info.size, _write(_stream(tar, info), target))
            target.chmod(listed.mode & 0o744)
    _check_listing(manifest, found)
    for name, mode in sorted(manifest.directories.items(), reverse=True):
        into.joinpath(*PurePosixPath(name).parts).chmod(mode & 0o755)


def _make_parents(into: Path, directory: Path) -> None:
    """Directories the manifest does not list are the owner's only."""
    for level in reversed([directory, *directory.parents]):
        if level.is_relative_to(into) and not level.exists():
            level.mkdir(mode=0o700)


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:gz")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive}: not a readable backup archive ({exc})") from None


def _members(archive: Path, tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        while (info := tar.next()) is not None:
            yield info
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive}: damaged or truncated ({exc})") from None


def check_name(name: str) -> None:
    """A2: a member's name is a plain relative path under ``files/`` or ``database/``."""
    parts = name.split("/")
    bad = (
        name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts)
        or len(parts) < 2
        or parts[0] not in (FILES, DATABASE)
    )
    if bad:
        raise ArchiveError(
            f"member {name!r} would be written outside the data directory or is not a"
            " backup member: refused, nothing was restored"
        )


def _stream(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    source = tar.extractfile(info)
    if source is None:  # pragma: no cover - regular files always have content
        raise ArchiveError(f"member {info.name!r} has no content")
    try:
        while chunk := source.read(_CHUNK):
            yield chunk
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"member {info.name!r}: damaged or truncated ({exc})") from None


def _check_member(info: tarfile.TarInfo, found: dict[str, tuple[int, str]]) -> None:
    if not info.isreg():
        kind = "a link" if info.issym() or info.islnk() else "not a regular file"
        raise ArchiveError(f"member {info.name!r} is {kind}: {_REFUSED}")
    check_name(info.name)
    if info.name in found:
        raise ArchiveError(f"member {info.name!r} appears twice: {_REFUSED}")


def _write(chunks: Iterator[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _check_listing(manifest: Manifest, found: dict[str, tuple[int, str]]) -> None:
    """A2: the members found are exactly the manifest's, each of its size and SHA-256."""
    unlisted = sorted(set(found) - set(manifest.members))
    if unlisted:
        raise ArchiveError(f"member {unlisted[0]!r} is not in the manifest: {_REFUSED}")
    missing = sorted(set(manifest.members) - set(found))
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ArchiveError(f"the archive lacks member(s) its manifest lists: {shown}; {_REFUSED}")
    for name, (size, digest) in sorted(found.items()):
        listed = manifest.members[name]
        if (size, digest) != (listed.size, listed.sha256):
            raise ArchiveError(
                f"member {name!r}: {size} bytes, SHA-256 {digest}, but the manifest says"
                f" {listed.size} bytes, {listed.sha256}: the archive was changed or damaged;"
                " nothing was restored"
            )
