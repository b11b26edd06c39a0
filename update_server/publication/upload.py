"""Streaming a firmware upload to staging while checking it against its signed target.

The core of ``PUT /api/v1/releases/<id>/targets/<path>``, free of Flask: it
reads a stream in 1 MiB chunks, hashes each chunk with every algorithm the
target lists and writes it to a temporary file beside its final place, so
memory stays flat whatever the size. It stops reading the moment the bytes
go past the signed length (TUF endless-data attack) and refuses a wrong
final length or hash; only bytes that match are synced and renamed into
place. A disk that refuses the bytes (full, read-only) is a
``StorageFullError`` or ``StorageReadOnlyError``, the partial file removed.
The staged file is named by its SHA-256, never by the target path, so no
name in a request can reach outside the staging directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from fwcommon.files import fsync_dir
from update_server.publication.errors import RejectedError, TooLargeError, storage_refusals
from update_server.publication.release import HASH_SIZES, ExpectedTarget

CHUNK_BYTES = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Received:
    """What was staged: the signed target's path, length and SHA-256."""

    path: str
    length: int
    sha256: str


def staged_file(directory: Path, target: ExpectedTarget) -> Path:
    """Where ``target``'s bytes are staged: named by the SHA-256 alone."""
    digest = target.sha256
    if len(digest) != HASH_SIZES["sha256"] or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError("a staged file is named by a hex SHA-256")
    return directory / digest


def check_declared_length(target: ExpectedTarget, declared: int | None, *, limit: int) -> None:
    """Refuse before reading anything when the declared size is already too large."""
    if target.length > limit:
        raise TooLargeError(
            "upload-too-large",
            f"{target.path} is signed as {target.length} bytes, above the limit of {limit}",
        )
    if declared is not None and declared > target.length:
        raise TooLargeError(
            "length-exceeded",
            f"{declared} bytes sent for {target.path}, which is signed as {target.length} bytes",
        )


def receive(
    stream: Readable,
    target: ExpectedTarget,
    *,
    directory: Path,
    limit: int,
    declared: int | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> Received:
    """Stream ``stream`` into ``directory`` as ``target``'s bytes, or raise.

    ``TooLargeError`` past the signed length or ``limit`` (reading stops at
    once); ``RejectedError`` (``wrong-length``, ``wrong-hash``) if the
    complete bytes differ from what was signed. Nothing is left behind on
    failure.
    """
    check_declared_length(target, declared, limit=limit)
    destination = staged_file(directory, target)
    with storage_refusals(f"staging {target.path}"):
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{destination.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                digests = _copy(stream, out, target, on_chunk)
                out.flush()
                os.fsync(out.fileno())
            _compare(target, digests)
            # Firmware is public (TUF makes any mirror safe): readable by the
            # web server's group like the metadata (fwcommon.files, 0644).
            Path(tmp).chmod(0o644)
            Path(tmp).replace(destination)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()
            raise
        fsync_dir(directory)
    return Received(target.path, target.length, target.sha256)


def _copy(
    stream: Readable,
    out: BinaryIO,
    target: ExpectedTarget,
    on_chunk: Callable[[int], object] | None,
) -> dict[str, str]:
    hashers = {algorithm: hashlib.new(algorithm) for algorithm in target.hashes}
    total = 0
    while chunk := stream.read(CHUNK_BYTES):
        total += len(chunk)
        if total > target.length:
            raise TooLargeError(
                "length-exceeded",
                f"more than the {target.length} signed bytes of {target.path} were sent;"
                " upload stopped",
            )
        for hasher in hashers.values():
            hasher.update(chunk)
        out.write(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    if total != target.length:
        raise RejectedError(
            "wrong-length",
            f"{target.path}: received {total} bytes, signed as {target.length};"
            " upload the complete file",
        )
    return {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}


def _compare(target: ExpectedTarget, digests: dict[str, str]) -> None:
    for algorithm, expected in target.hashes.items():
        if digests[algorithm] != expected:
            raise RejectedError(
                "wrong-hash",
                f"{target.path}: the {algorithm} of the bytes received is not the signed one;"
                " upload the very file that was signed",
            )
