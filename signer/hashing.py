"""Streaming hashing of firmware images.

Images may be several GiB: they are read in fixed chunks into one reused
buffer, so memory stays flat whatever the size, and hashed once with SHA-256
(the hash TUF targets carry here). ``progress`` is told how many bytes each
chunk held, for a progress bar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    length: int
    sha256: str


def hash_file(path: Path, *, progress: Callable[[int], object] | None = None) -> FileDigest:
    """Length and SHA-256 of ``path``, read once in constant memory."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    length = 0
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            length += count
            if progress is not None:
                progress(count)
    return FileDigest(length, digest.hexdigest())
